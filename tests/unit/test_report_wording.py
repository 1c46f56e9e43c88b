"""Words of reports a new user misread: the enrichment summary of ``analyze`` and the reason a top-N
names for its rollup table."""

from __future__ import annotations

from netspectra.engine.enrichment import summary_rows
from netspectra.storage.clickhouse_config import ClickHouseConfig
from netspectra.storage.rollups import choose_rollup

HOUR_NS = 3600 * 10**9


def _summary(unenriched: dict[str, int], loaded: bool) -> dict[str, object]:
    db = {"loaded": loaded, "description": "GeoLite2-ASN", "error": "" if loaded else "no such file"}
    return {
        "columns": ["SrcAS"],
        "rows": 10,
        "unenriched_rows": unenriched,
        "databases": {"asn": db},
        "errors": 0,
    }


def test_enrichment_summary_says_the_rows_lacked_a_database_not_an_answer() -> None:
    rows = dict(summary_rows(_summary({"asn": 0}, loaded=True)))
    assert not [k for k in rows if k.startswith("Rows without")]  # loaded all along: nothing to say
    rows = dict(summary_rows(_summary({"asn": 4}, loaded=True)))  # loaded after a while (it appeared)
    assert rows["Rows without asn database (not loaded)"] == "4"
    assert "Rows without asn" not in rows  # the old label read as "rows whose AS is unknown"
    rows = dict(summary_rows(_summary({"asn": 10}, loaded=False)))
    assert rows["Rows without asn database (not loaded)"] == "10"
    assert rows["asn database"] == "not loaded: no such file"


def test_rollup_reason_reads_as_a_sentence_for_an_open_range() -> None:
    now = 1_800_000_000 * 10**9
    open_ended = choose_rollup(ClickHouseConfig(), now - 30 * 24 * HOUR_NS, None, now_ns=now)
    assert open_ended.table == "rollup_1h"
    assert open_ended.reason == "rollup_1h: the coarsest table (the range has no start or no end)"
    assert "no bound" not in open_ended.reason
    bounded = choose_rollup(ClickHouseConfig(), now - 30 * 24 * HOUR_NS, now, now_ns=now)
    assert bounded.reason == "rollup_1h: the coarsest table with buckets within a 100th of the range"
    wanted = choose_rollup(ClickHouseConfig(), now - HOUR_NS, now, 300, now_ns=now)
    assert wanted.reason == "rollup_5m: the coarsest table with buckets within the 300 s resolution wanted"
