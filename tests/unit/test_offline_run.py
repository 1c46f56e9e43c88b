"""The offline run gives the same files whether the tasks run inline or on worker lanes."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from netspectra.config import load_config
from netspectra.flows.kind import with_flows_task
from netspectra.offline.run import run_offline

CAPTURES = Path(__file__).resolve().parents[1] / "data" / "captures"


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_ramped_batches_on_worker_lanes_write_what_inline_writes(
    tmp_path: Path, workers: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With workers and no records task the reader ramps its batches (small ones at both ends of each
    file); the shipped tasks' tables are those of an inline run of full batches, row for row."""
    import netspectra.offline.analyzer as analyzer

    ramps: list[bool] = []
    real = analyzer.CaptureReader

    def spy(*args: object, **kw: object) -> object:
        ramps.append(bool(kw.get("ramp")))
        return real(*args, **kw)

    monkeypatch.setattr(analyzer, "CaptureReader", spy)
    cfg = load_config(None)
    files = [CAPTURES / "gnutella.pcap", CAPTURES / "bot.pcap"]
    inline = run_offline(files, cfg, writers=False, out=tmp_path / "inline", inline=True, batch_size=256)
    assert ramps == [False, False]
    lanes = run_offline(
        files, cfg, writers=False, out=tmp_path / "lanes", inline=False, num_workers=workers, batch_size=256
    )
    assert ramps[2:] == [True, True]
    assert inline.result.stats == lanes.result.stats and inline.result.stats.records > 2000
    names = sorted(p.name for p in inline.written)
    assert names == sorted(p.name for p in lanes.written) and len(names) == 3
    filled = 0
    for name in names:
        a = pq.read_table(tmp_path / "inline" / name)
        assert a.equals(pq.read_table(tmp_path / "lanes" / name)), name
        filled += a.num_rows > 0
    assert filled >= 2  # flows and super-spreaders (small captures: few heavy hitters)


@pytest.mark.parametrize("workers", [2, 3])
def test_worker_lanes_write_what_inline_writes(tmp_path: Path, workers: int) -> None:
    """The shipped tasks (exact, CountMin-kind and SuperSpread-kind sketches, order-dependent) and a
    flows task over two captures: every output table equal, row for row."""
    cfg = with_flows_task(load_config(None))
    files = [CAPTURES / "gnutella.pcap", CAPTURES / "bot.pcap"]
    inline = run_offline(files, cfg, writers=False, out=tmp_path / "inline", inline=True, batch_size=4096)
    lanes = run_offline(
        files, cfg, writers=False, out=tmp_path / "lanes", inline=False, num_workers=workers, batch_size=4096
    )
    assert inline.result.stats.records == lanes.result.stats.records > 0
    names = sorted(p.name for p in inline.written)
    assert names == sorted(p.name for p in lanes.written) and len(names) >= 4
    # listed in one order whichever writer finished first (the report lists them as given)
    assert inline.written == sorted(inline.written) and lanes.written == sorted(lanes.written)
    filled = 0
    for name in names:
        a = pq.read_table(tmp_path / "inline" / name)
        b = pq.read_table(tmp_path / "lanes" / name)
        assert a.equals(b), name
        filled += a.num_rows > 0
    assert filled >= 3  # flows, records and super-spreaders at least (small captures: few heavy hitters)


def test_the_queue_holds_two_reader_batches_on_worker_lanes(tmp_path: Path) -> None:
    """With worker lanes the queue admits two of the reader's batches whatever smaller bound the
    configuration sets (the tasks done with one batch start the next); a larger bound is kept; inline
    there is no queue to widen, and flow exports (batches of one datagram) keep the configured bound.
    The tables are those of an inline run either way."""
    cfg = load_config(None)
    assert cfg.aggregator.size_of_packet_channel == 10_000
    files = [CAPTURES / "gnutella.pcap"]
    capacity: list[int] = []

    def run(name: str, **kw: object) -> list[str]:
        ran = run_offline(
            files,
            cfg,
            writers=False,
            out=tmp_path / name,
            on_manager=lambda m: capacity.append(m.metrics.queue_capacity_packets),
            **kw,  # type: ignore[arg-type]
        )
        return sorted(p.name for p in ran.written)

    run("lanes", inline=False, num_workers=2, batch_size=256)
    run("inline", inline=True, batch_size=256)
    run("big", inline=False, num_workers=2, batch_size=65_536)
    # flow exports come in batches of one datagram's records: the configured bound
    exports = Path(__file__).resolve().parents[1] / "data" / "collect" / "netflow9.pcap"
    run_offline(
        [exports],
        cfg,
        writers=False,
        flow_export=True,
        inline=False,
        num_workers=2,
        batch_size=65_536,
        on_manager=lambda m: capacity.append(m.metrics.queue_capacity_packets),
    )
    assert capacity == [10_000, 10_000, 131_072, 10_000]
    for name in run("lanes", inline=False, num_workers=2, batch_size=256):
        assert pq.read_table(tmp_path / "lanes" / name).equals(pq.read_table(tmp_path / "inline" / name))


def test_an_enrichment_section_no_task_reads_is_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The shipped tasks (exact, sketches: no enrichment column) and an enrichment section: nothing is
    enriched, and the run says so once, at WARNING, with what to add; a rollup task reads it: no warning."""
    import logging

    base = (Path(__file__).resolve().parents[2] / "configs" / "config.yaml").read_text()
    path = tmp_path / "c.yaml"
    path.write_text(base + "\nenrichment:\n  networks:\n    10.0.0.0/8: corp\n")
    cfg = load_config(path, log_warnings=False)
    with caplog.at_level(logging.WARNING):
        run = run_offline([CAPTURES / "gnutella.pcap"], cfg, writers=False)
    said = [r for r in caplog.records if "no task of this run reads an enrichment column" in r.getMessage()]
    assert (
        len(said) == 1 and said[0].levelno == logging.WARNING and "add a rollup task" in said[0].getMessage()
    )
    assert run.manager.enrichment is None
    caplog.clear()
    from netspectra.config.models import Config

    read = Config.model_validate(
        {
            "aggregator": {"types": ["rollup"], "rollup": {"tasks": [{"name": "traffic"}]}},
            "enrichment": {"networks": {"10.0.0.0/8": "corp"}},
        }
    )
    with caplog.at_level(logging.WARNING):
        run = run_offline([CAPTURES / "gnutella.pcap"], read, writers=False)
    assert run.manager.enrichment is not None
    assert not [r for r in caplog.records if "enrichment column" in r.getMessage()]
