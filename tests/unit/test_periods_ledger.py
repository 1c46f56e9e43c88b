"""The JetStream period ledger's resume rules: every crash point leads to the same periods.

The consumer's steps at a period end are: (1) record the close (``end_seq``, ``next_start_ns``),
(2) hand the finals to the writers and wait until written, (3) acknowledge ``end_seq``, (4) record the
new period. A graceful stop is (1)-(3) with no next start. The integration test
``test_jetstream_restart_resumes_the_stored_period`` runs the real thing against nats-server and
ClickHouse; here each crash point's plan is checked.
"""

from __future__ import annotations

import pytest

from netspectra.engine.periods_ledger import PeriodRecord, ResumePlan, resume_plan

S, N = 1_000 * 10**9, 2_000 * 10**9


def test_no_record_starts_fresh() -> None:
    assert resume_plan(None, 0) == ResumePlan(None)
    assert resume_plan(None, 57) == ResumePlan(None)


def test_death_inside_a_period_resumes_it() -> None:
    # the period began after the acknowledged prefix; its stored rows get replaced
    assert resume_plan(PeriodRecord(S), 40) == ResumePlan(S, resumed=True)


def test_death_after_recording_a_close_closes_again_at_the_same_place() -> None:
    # crash between (1) and (3): replay up to end_seq into the same period, then the same next start
    assert resume_plan(PeriodRecord(S, 90, N), 40) == ResumePlan(
        S, resumed=True, close_at_seq=90, next_start_ns=N
    )


def test_death_after_the_acknowledgement_starts_the_recorded_next_period() -> None:
    # crash between (3) and (4)
    assert resume_plan(PeriodRecord(S, 90, N), 90) == ResumePlan(N)


def test_after_a_graceful_stop_a_fresh_period_starts() -> None:
    # the stopped engine's final snapshot stays; reusing its period start would overwrite it
    assert resume_plan(PeriodRecord(S, 90, None), 90) == ResumePlan(None)
    # ...unless its acknowledgement never happened (a writer lost data): then it is resumed
    assert resume_plan(PeriodRecord(S, 90, None), 40) == ResumePlan(S, resumed=True, close_at_seq=90)


def test_records_round_trip_and_bad_ones_are_refused() -> None:
    for rec in (PeriodRecord(S), PeriodRecord(S, 9, N), PeriodRecord(S, 9, None)):
        assert PeriodRecord.from_bytes(rec.to_bytes()) == rec
    for bad in (b"", b"{}", b"[1]", b'{"period_start_ns": "x"}', b"\xff"):
        with pytest.raises(ValueError, match="not a period record"):
            PeriodRecord.from_bytes(bad)


def test_a_resumed_open_period_carries_how_far_to_read_back() -> None:
    # an earlier successor stopped before reading back up to 120: the next one must get there first
    assert resume_plan(PeriodRecord(S, replay_until=120), 40) == ResumePlan(S, resumed=True, replay_until=120)
    assert PeriodRecord.from_bytes(PeriodRecord(S, replay_until=120).to_bytes()).replay_until == 120


def test_the_graceful_stop_mark() -> None:
    assert PeriodRecord(S, 90, None).stopped
    assert not PeriodRecord(S).stopped  # running (or crashed) inside a period
    assert not PeriodRecord(S, 90, N).stopped  # closing a period: running (or crashed) at a period end
