"""The console over NetSpectra's own ``flows`` table (migration 2, ``schema.FLOWS``): flow records of real
flows tasks written by the real ``clickhouse`` writer, each increment written twice (a retried write that
the ``ReplacingMergeTree`` keeps once only after a merge), on chdb and on a real ClickHouse server (18.16
in CI).

The records come from test_flow_records_store's tasks (gnutella: IPv4 TCP/UDP with statistics and SPLT;
ip6_esp + QinQ: IPv6 and VLANs). Every answer is checked against the same computation done here on the
Arrow records the tasks produced (:meth:`FlowRecords.to_arrow`): the catalog offers every task with the
table's typed columns (state, flags, end reason, VLAN, statistics) and none of the writer's bookkeeping;
totals count each record once; group-bys, filters, buckets in the traffic's time, the sorted flows list
and the host page equal the Arrow truth; the server gives the chdb answers.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from test_flow_records_store import expected, run_task, unique_database, write_all

from netspectra.flows.records import FlowRecords
from netspectra.flows.task import FlowParams
from netspectra.storage import console as cs
from netspectra.storage.filter import compile_filter
from netspectra.storage.store import ClickHouseStore

KEY = ("SrcIP", "DstIP", "SrcPort", "DstPort", "Protocol", "VlanID")


@pytest.fixture(scope="module")
def increments() -> dict[str, list[FlowRecords]]:
    return {
        "gnu": run_task(
            "gnu", ["gnutella.pcap"], FlowParams(splt=8, statistics=True, idle_timeout_ns=15 * 10**9)
        ),
        "v6vlan": run_task("v6vlan", ["ip6_esp.pcap", "QinQpacket.pcap"], FlowParams(statistics=False)),
    }


@pytest.fixture(scope="module")
def truth(increments: dict[str, list[FlowRecords]]) -> dict[str, list[dict[str, Any]]]:
    """Per task, the records as dicts with ``P``/``B`` (both directions) and ``S`` (first packet, ns)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for task in increments:
        t = expected(increments, task)
        rows = t.drop_columns(["SpltSize", "SpltDirection"]).to_pylist()
        first = t["FirstSeen"].cast(pa.int64()).to_pylist()
        for r, s in zip(rows, first, strict=True):
            r["P"] = r["SrcToDstPackets"] + r["DstToSrcPackets"]
            r["B"] = r["SrcToDstBytes"] + r["DstToSrcBytes"]
            r["S"] = s
        out[task] = rows
    return out


@pytest.fixture(scope="module")
def stored_chdb(chdb_data_dir: Path, increments: dict[str, list[FlowRecords]]) -> Iterator[ClickHouseStore]:
    store = write_all({"data_dir": str(chdb_data_dir), "database": unique_database()}, increments)
    yield store
    store.close()


@pytest.fixture(scope="module")
def stored_server(
    clickhouse_server: Any, increments: dict[str, list[FlowRecords]]
) -> Iterator[ClickHouseStore]:
    store = write_all(clickhouse_server.config(), increments)
    yield store
    store.close()


def totals(rows: list[dict[str, Any]]) -> tuple[int, int, int]:
    """Packets, bytes and flows (distinct keys: the console's flows, as on flow_metrics)."""
    return sum(r["P"] for r in rows), sum(r["B"] for r in rows), len({tuple(r[k] for k in KEY) for r in rows})


def test_catalog_offers_every_task_of_the_flows_table(stored_chdb: ClickHouseStore) -> None:
    cat = cs.catalog(stored_chdb, {})
    assert [s.id for s in cat.sources] == ["flows:gnu", "flows:v6vlan"]
    src = cat.source("flows:gnu")
    assert src.kind == "records" and src.final and src.axes == ("first",) and src.sample_column == "FlowHash"
    assert src.keys == KEY
    fields = list(src.fields)
    for name in ("EndReason", "ConnState", "SrcToDstTCPFlags", "DstToSrcRST", "SrcToDstICMPTypeCode"):
        assert name in fields
    for name in ("TaskName", "FlowHash", "TimestampNs", "PeriodStartNs", "FirstSeenNs", "LastSeenNs"):
        assert name not in fields and name not in src.extra
    # ALIAS columns (FirstSeen, Timestamp, ...) are not columns; arrays are not offered at all
    for name in ("FirstSeen", "Timestamp", "SpltSize", "SpltDirection"):
        assert name not in fields and name not in src.extra
    assert "SrcToDstSizeMean" in src.extra and "SrcToDstPackets" not in fields
    assert {t["name"]: t["present"] for t in cat.to_dict()["tables"]}["flows"]


def test_totals_count_every_record_once(
    stored_chdb: ClickHouseStore, truth: dict[str, list[dict[str, Any]]]
) -> None:
    cat = cs.catalog(stored_chdb, {})
    for task, rows in truth.items():
        v = cs.visualize(stored_chdb, cat.source(f"flows:{task}"), exact=True)
        assert (v.total.packets, v.total.bytes, v.total.flows) == totals(rows), task
        assert v.sample == 1 and len(rows) > 10


def test_group_by_filter_and_buckets_equal_the_records(
    stored_chdb: ClickHouseStore, truth: dict[str, list[dict[str, Any]]]
) -> None:
    src = cs.catalog(stored_chdb, {}).source("flows:gnu")
    rows = truth["gnu"]
    v = cs.visualize(stored_chdb, src, dims=["ConnState", "EndReason"], limit=50, points=40)
    want: dict[tuple[Any, Any], list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        want[(r["ConnState"], r["EndReason"])].append(r)
    got = {(s.key["ConnState"], s.key["EndReason"]): (s.packets, s.bytes, s.flows) for s in v.series}
    assert got == {k: totals(rs) for k, rs in want.items()} and len(got) > 2
    assert v.other.bytes == 0
    # buckets in the traffic's own time: a record's traffic at its first packet
    per_bucket = [0] * len(v.times)
    for r in rows:
        per_bucket[(r["S"] - v.times[0]) // v.step_ns] += r["B"]
    assert v.total.values["bytes"] == per_bucket and sum(1 for b in per_bucket if b) > 3
    # a filter on the record's own columns
    text = "ConnState IN ('SF', 'S0') AND (DstPort < 1024 OR Protocol = udp) AND NOT EndReason = 'idle'"
    v = cs.visualize(stored_chdb, src, flt=compile_filter(text, src.fields), dims=["Protocol"])
    sel = [
        r
        for r in rows
        if r["ConnState"] in ("SF", "S0")
        and (r["DstPort"] < 1024 or r["Protocol"] == 17)
        and r["EndReason"] != "idle"
    ]
    assert sel and (v.total.packets, v.total.bytes, v.total.flows) == totals(sel)
    # IPv6 and VLANs
    src6 = cs.catalog(stored_chdb, {}).source("flows:v6vlan")
    rows6 = truth["v6vlan"]
    vlan = max(r["VlanID"] for r in rows6)
    v = cs.visualize(stored_chdb, src6, flt=compile_filter(f"VlanID = {vlan}", src6.fields), dims=["VlanID"])
    assert [(s.key["VlanID"], s.bytes) for s in v.series] == [
        (vlan, sum(r["B"] for r in rows6 if r["VlanID"] == vlan))
    ]
    # (::/0 holds the IPv4-mapped addresses, i.e. IPv4 too: outside 0.0.0.0/0 is IPv6 only)
    v = cs.visualize(stored_chdb, src6, flt=compile_filter("SrcIP !<< 0.0.0.0/0", src6.fields))
    assert v.total.bytes == sum(r["B"] for r in rows6 if ":" in r["SrcIP"]) > 0


def test_flows_list_and_host_page_equal_the_records(
    stored_chdb: ClickHouseStore, truth: dict[str, list[dict[str, Any]]]
) -> None:
    src = cs.catalog(stored_chdb, {}).source("flows:gnu")
    rows = truth["gnu"]
    page = cs.flow_list(stored_chdb, src, sort="Bytes", limit=25)
    col = {c: i for i, c in enumerate(page.columns)}
    assert [r[col["Bytes"]] for r in page.rows] == sorted((r["B"] for r in rows), reverse=True)[:25]
    assert page.more and {"ConnState", "EndReason", "SrcToDstTCPFlags", "SrcToDstSizeMean"} <= set(col)
    by_key = {(r["S"], *(r[k] for k in KEY)): r for r in rows}
    for got in page.rows:
        want = by_key[(got[col["FirstSeen"]], *(got[col[k]] for k in KEY))]
        for c in ("ConnState", "EndReason", "SrcToDstTCPFlags", "DstToSrcTCPFlags", "Packets"):
            assert got[col[c]] == (want["P"] if c == "Packets" else want[c]), c
    # every record once, paged to the end
    seen, offset = 0, 0
    while True:
        p = cs.flow_list(stored_chdb, src, sort="FirstSeen", descending=False, offset=offset, limit=1000)
        seen += len(p.rows)
        offset += len(p.rows)
        if not p.more:
            break
    assert seen == len(rows)
    host = Counter([r["SrcIP"] for r in rows] + [r["DstIP"] for r in rows]).most_common(1)[0][0]
    h = cs.host_report(stored_chdb, src, host)
    out = [r for r in rows if r["SrcIP"] == host]
    into = [r for r in rows if r["DstIP"] == host]
    assert h.totals["out"] == dict(zip(("packets", "bytes", "flows"), _records(out), strict=True))
    assert h.totals["in"] == dict(zip(("packets", "bytes", "flows"), _records(into), strict=True))
    assert sum(h.timeline["out"]["bytes"]) == sum(r["B"] for r in out)


def _records(rows: list[dict[str, Any]]) -> tuple[int, int, int]:
    """The host page counts records (rows of the relation), not distinct keys."""
    return sum(r["P"] for r in rows), sum(r["B"] for r in rows), len(rows)


def answers(store: ClickHouseStore) -> dict[str, Any]:
    cat = cs.catalog(store, {})
    src = cat.source("flows:gnu")
    flt = compile_filter("ConnState != 'SF' OR SrcToDstTCPFlags >= 16", src.fields)
    out: dict[str, Any] = {
        "catalog": [{**s.to_dict(), "final": s.final} for s in cat.sources],
        "viz": cs.visualize(store, src, dims=["ConnState", "DstPort"], limit=8, flt=flt).to_dict(),
        "flows": cs.flow_list(store, src, sort="Packets", limit=40, flt=flt).to_dict(),
        "host": cs.host_report(store, src, "10.0.2.15").to_dict(),
        "v6": cs.visualize(store, cat.source("flows:v6vlan"), dims=["VlanID", "SrcIP"]).to_dict(),
        "values": cs.field_values(store, src, "ConnState", "", 20),
    }
    for doc in out.values():
        if isinstance(doc, dict):
            doc.pop("elapsedMs", None)
    return out


def test_the_server_gives_the_same_answers(
    stored_chdb: ClickHouseStore, stored_server: ClickHouseStore
) -> None:
    want, got = answers(stored_chdb), answers(stored_server)
    for name in want:
        assert got[name] == want[name], name
    assert want["viz"]["total"]["bytes"] > 0 and want["host"]["totals"]["out"]["flows"] > 0
    i = want["flows"]["columns"].index("Packets")
    assert np.all(np.diff([r[i] for r in want["flows"]["rows"]]) <= 0)  # sorted by packets
