"""The console's queries (netspectra.storage.console) against stores filled from a real capture.

``gnutella.pcap`` goes through the engine into the embedded chdb (and into a real ClickHouse server,
18.16 in CI) as two snapshots 60 s apart — the first half of the packets, then all of them (test_api's
store). Every answer is checked against truth computed here from the golden flows of
tests/golden/expected (Wireshark-checked): totals, per-dimension sums, per-bucket sums in the traffic's
own time, filters (CIDR included, both families) against Python's ipaddress, the sorted and paged flows,
the host report, the live view's rates between the two snapshots (against the API's window queries),
completion values, the declared sample, and a ``flows`` table of records of another shape than
NetSpectra's own (made here in a database of its own) lighting up as a source with every column it has
(NetSpectra's own ``flows`` table: test_console_records).
"""

from __future__ import annotations

import ipaddress
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from test_api import FLOWS, T1_NS, T2_NS, config_text, fill_store, iso_ns

from netspectra.config import Config, parse_config_text
from netspectra.storage import console as cs
from netspectra.storage.filter import compile_filter
from netspectra.storage.queries import FlowFilter, aggregate_flows, flow_details
from netspectra.storage.store import ClickHouseStore, connect_store

KEYS = ("SrcIP", "DstIP", "SrcPort", "DstPort", "Protocol")
TASKS = {"per_five_tuple": KEYS, "per_src": ("SrcIP",)}


@dataclass
class Filled:
    cfg: Config
    store: ClickHouseStore
    catalog: cs.Catalog

    @property
    def five(self) -> cs.Source:
        return self.catalog.source("per_five_tuple")


def filled(clickhouse: dict[str, object]) -> Iterator[Filled]:
    cfg = parse_config_text(config_text(clickhouse))
    fill_store(cfg)
    store = connect_store(cfg.aggregator.exact.writers[0].params)
    try:
        yield Filled(cfg, store, cs.catalog(store, TASKS))
    finally:
        store.close()


@pytest.fixture(scope="module")
def chdb(chdb_data_dir: Path) -> Iterator[Filled]:
    db = f"ns_console_{uuid.uuid4().hex[:10]}"
    yield from filled({"data_dir": str(chdb_data_dir), "database": db, "history_resolution": "60s"})


@pytest.fixture(scope="module")
def server(clickhouse_server: Any) -> Iterator[Filled]:
    yield from filled(clickhouse_server.config(history_resolution="60s"))


def row_key(r: dict[str, str]) -> tuple[Any, ...]:
    return (r["SrcIP"], r["DstIP"], int(r["SrcPort"]), int(r["DstPort"]), int(r["Protocol"]))


def typed(r: dict[str, str], field: str) -> Any:
    return r[field] if field.endswith("IP") else int(r[field])


def sums(rows: list[dict[str, str]]) -> tuple[int, int, int]:
    return (
        sum(int(r["PacketCount"]) for r in rows),
        sum(int(r["ByteCount"]) for r in rows),
        len({row_key(r) for r in rows}),
    )


ALL = sums(FLOWS)


# ---- catalog -----------------------------------------------------------------------------------------


def test_catalog_reads_the_schema(chdb: Filled) -> None:
    cat = chdb.catalog
    assert [s.id for s in cat.sources] == ["flow_metrics:per_five_tuple", "flow_metrics:per_src"]
    five, src = cat.sources
    assert list(five.fields) == list(KEYS) and five.keys == KEYS
    assert [f.kind for f in five.fields.values()] == ["ip", "ip", "int", "int", "int"]
    assert five.axes == ("first", "snapshot") and five.sample_column == "FlowHash"
    assert list(src.fields) == ["SrcIP"]  # the columns per_src does not key on are NULL: not offered
    doc = cat.to_dict()
    present = {t["name"]: t["present"] for t in doc["tables"]}
    assert present["flow_metrics"] and present["heavy_hitters"] and present["alerts"]
    # migration 2 made the flows table; no flows task wrote to it: no source of it
    assert present["flows"] and present["rollup_1m"]  # migration 4 made the rollup tables: not sources yet
    assert present["exporters"]  # migration 5: listed, not a source (no traffic)
    assert (
        cat.source(None) is five
        and cat.source("per_src") is src
        and cat.source("flow_metrics:per_src") is src
    )
    with pytest.raises(cs.ConsoleError, match="unknown source 'nope'; this store has flow_metrics:per_five"):
        cat.source("nope")
    # key fields beyond the five-tuple (migration 3): a task keyed on them has them as fields and keys
    wide = cs.catalog(chdb.store, {"wide": ("SrcIP", "ExporterAddress", "VlanID", "InIf")}).source("wide")
    assert list(wide.fields) == ["SrcIP", "VlanID", "ExporterAddress", "InIf"] == list(wide.keys)
    assert [f.kind for f in wide.fields.values()] == ["ip", "int", "ip", "int"]


# ---- visualize -----------------------------------------------------------------------------------------


def test_totals_on_both_axes_are_the_captures(chdb: Filled) -> None:
    for axis in ("first", "snapshot"):
        v = cs.visualize(chdb.store, chdb.five, axis=axis)
        assert (v.total.packets, v.total.bytes, v.total.flows) == ALL, axis
        assert v.sample == 1 and v.series[0].key == {} and v.other.packets == 0
        for m, total in zip(cs.METRICS, ALL, strict=True):
            assert sum(v.total.values[m]) == total or m == "flows"
    # the snapshot axis: all the traffic at the two snapshot times
    v = cs.visualize(chdb.store, chdb.five, axis="snapshot", points=1000)
    assert v.times[0] <= T1_NS and v.times[-1] <= T2_NS < v.times[-1] + v.step_ns


@pytest.mark.parametrize(
    "dims", [["DstPort"], ["Protocol"], ["SrcIP", "Protocol"], ["DstIP", "DstPort", "SrcPort"]]
)
def test_top_n_by_dimensions_with_other(chdb: Filled, dims: list[str]) -> None:
    groups: dict[tuple[Any, ...], list[dict[str, str]]] = defaultdict(list)
    for r in FLOWS:
        groups[tuple(typed(r, d) for d in dims)].append(r)
    truth = {k: sums(rows) for k, rows in groups.items()}
    for metric, i in (("bytes", 1), ("packets", 0), ("flows", 2)):
        v = cs.visualize(chdb.store, chdb.five, dims=dims, metric=metric, limit=7)
        ranked = sorted(truth.items(), key=lambda kv: (-kv[1][i], kv[0]))[:7]
        got = [(tuple(s.key[d] for d in dims), (s.packets, s.bytes, s.flows)) for s in v.series]
        assert [t for _, t in got] == [t for _, t in ranked], metric
        assert all(truth[k] == t for k, t in got)  # ties may order differently; each value is exact
        rest = [t for k, t in truth.items() if k not in {k for k, _ in got}]
        assert (v.other.packets, v.other.bytes, v.other.flows) == tuple(
            sum(t[i] for t in rest) for i in range(3)
        )
        assert (v.total.packets, v.total.bytes, v.total.flows) == ALL
        for s in [*v.series, v.other]:
            assert sum(s.values["packets"]) == s.packets and sum(s.values["bytes"]) == s.bytes


def test_buckets_are_the_flows_first_packets(chdb: Filled) -> None:
    v = cs.visualize(chdb.store, chdb.five, dims=["Protocol"], metric="bytes", points=60)
    assert len(v.times) <= 60 and v.times == [v.times[0] + i * v.step_ns for i in range(len(v.times))]
    first = min(iso_ns(r["StartTime"]) for r in FLOWS)
    last = max(iso_ns(r["StartTime"]) for r in FLOWS)
    assert (v.start_ns, v.end_ns) == (first, last)
    expect: dict[int, Counter[int]] = defaultdict(Counter)
    for r in FLOWS:
        expect[int(r["Protocol"])][(iso_ns(r["StartTime"]) - v.times[0]) // v.step_ns] += int(r["ByteCount"])
    for s in v.series:
        got = {i: b for i, b in enumerate(s.values["bytes"]) if b}
        assert got == dict(expect[s.key["Protocol"]]), s.key


def test_a_range_selects_flows_by_first_packet(chdb: Filled) -> None:
    starts = sorted(iso_ns(r["StartTime"]) for r in FLOWS)
    lo, hi = starts[len(starts) // 4], starts[3 * len(starts) // 4]
    inside = [r for r in FLOWS if lo <= iso_ns(r["StartTime"]) <= hi]
    v = cs.visualize(chdb.store, chdb.five, start_ns=lo, end_ns=hi)
    assert (v.total.packets, v.total.bytes, v.total.flows) == sums(inside)
    assert (v.start_ns, v.end_ns) == (lo, hi)


def test_the_snapshot_axis_is_the_apis_window(chdb: Filled) -> None:
    """Traffic counted by the snapshots in [start, end] = AggregateFlows with start_time/end_time."""
    for lo, hi in ((0, T1_NS), (T1_NS + 1, T2_NS), (T1_NS, T2_NS), (0, T2_NS)):
        v = cs.visualize(chdb.store, chdb.five, axis="snapshot", start_ns=lo, end_ns=hi)
        (api,) = aggregate_flows(chdb.store, end_ns=hi, start_ns=lo, task="per_five_tuple")
        assert (v.total.packets, v.total.bytes, v.total.flows) == (
            api.total_packets,
            api.total_bytes,
            api.flow_count,
        )
    half = cs.visualize(chdb.store, chdb.five, axis="snapshot", start_ns=0, end_ns=T1_NS)
    assert 0 < half.total.packets < ALL[0]


def in_net(text: str, net: str) -> bool:
    return ipaddress.ip_address(text) in ipaddress.ip_network(net) or (
        ipaddress.ip_address(text).version == 4
        and ipaddress.ip_network(net).version == 6
        and ipaddress.ip_address("::ffff:" + text) in ipaddress.ip_network(net)
    )


FILTERS: list[tuple[str, Callable[[dict[str, str]], bool]]] = [
    ("DstPort IN (80, 443, 6346)", lambda r: int(r["DstPort"]) in (80, 443, 6346)),
    ("Protocol = udp", lambda r: r["Protocol"] == "17"),
    ("NOT Protocol = tcp", lambda r: r["Protocol"] != "6"),
    ("SrcIP << 10.0.0.0/8", lambda r: in_net(r["SrcIP"], "10.0.0.0/8")),
    ("SrcIP !<< 10.0.0.0/8", lambda r: not in_net(r["SrcIP"], "10.0.0.0/8")),
    ("DstIP << ff00::/8", lambda r: in_net(r["DstIP"], "ff00::/8")),
    ("SrcIP << fe80::/10 OR DstIP << 224.0.0.0/4",
     lambda r: in_net(r["SrcIP"], "fe80::/10") or in_net(r["DstIP"], "224.0.0.0/4")),
    ("SrcIP << ::/0", lambda r: True),
    ("SrcIP << ::ffff:0:0/96", lambda r: ":" not in r["SrcIP"]),
    ("SrcIP << 10.0.2.15/32 AND DstPort >= 1024",
     lambda r: r["SrcIP"] == "10.0.2.15" and int(r["DstPort"]) >= 1024),
    ("SrcPort > 1024 AND DstPort <= 1900", lambda r: int(r["SrcPort"]) > 1024 and int(r["DstPort"]) <= 1900),
    ("SrcIP = 10.0.2.15 OR DstIP = '10.0.2.15'", lambda r: "10.0.2.15" in (r["SrcIP"], r["DstIP"])),
    ("DstIP IN (ff02::c, 239.255.255.250)", lambda r: r["DstIP"] in ("ff02::c", "239.255.255.250")),
    ("DstPort NOT IN (53) AND NOT (Protocol = 17 OR Protocol = 58)",
     lambda r: r["DstPort"] != "53" and r["Protocol"] not in ("17", "58")),
]  # fmt: skip


@pytest.mark.parametrize(("text", "pred"), FILTERS, ids=[f for f, _ in FILTERS])
def test_filters_select_what_python_selects(
    chdb: Filled, text: str, pred: Callable[[dict[str, str]], bool]
) -> None:
    expect = [r for r in FLOWS if pred(r)]
    assert expect or text.startswith("DstIP IN"), "a filter that selects nothing tests little"
    flt = compile_filter(text, chdb.five.fields)
    v = cs.visualize(chdb.store, chdb.five, flt=flt)
    assert (v.total.packets, v.total.bytes, v.total.flows) == sums(expect) if expect else v.total.packets == 0
    page = cs.flow_list(chdb.store, chdb.five, flt=flt, limit=1000)
    assert sorted(tuple(r[:5]) for r in page.rows) == sorted(row_key(r) for r in expect)


# ---- flows -----------------------------------------------------------------------------------------------


def test_flows_sorted_and_paged(chdb: Filled) -> None:
    by_bytes = sorted(FLOWS, key=lambda r: (-int(r["ByteCount"]), row_key(r)))
    page = cs.flow_list(chdb.store, chdb.five, limit=20)
    assert page.columns == [*KEYS, "FirstSeen", "LastSeen", "Packets", "Bytes"]
    assert page.more
    want = [
        [
            *row_key(r),
            iso_ns(r["StartTime"]),
            iso_ns(r["EndTime"]),
            int(r["PacketCount"]),
            int(r["ByteCount"]),
        ]
        for r in by_bytes[:20]
    ]
    assert page.rows == want
    nxt = cs.flow_list(chdb.store, chdb.five, offset=20, limit=20)
    assert [r[:5] for r in nxt.rows] == [list(row_key(r)) for r in by_bytes[20:40]]
    last = cs.flow_list(chdb.store, chdb.five, offset=len(FLOWS) - 5, limit=20)
    assert len(last.rows) == 5 and not last.more
    asc = cs.flow_list(chdb.store, chdb.five, sort="srcport", descending=False, limit=len(FLOWS))
    assert asc.sort == "SrcPort" and [r[2] for r in asc.rows] == sorted(int(r["SrcPort"]) for r in FLOWS)
    first = cs.flow_list(chdb.store, chdb.five, sort="FirstSeen", descending=False, limit=5)
    assert [r[5] for r in first.rows] == sorted(iso_ns(r["StartTime"]) for r in FLOWS)[:5]
    with pytest.raises(cs.ConsoleError, match="cannot sort by 'Nope'; sort by one of "):
        cs.flow_list(chdb.store, chdb.five, sort="Nope")
    # a near miss names the column meant (sort is taken in any case, and so is the near miss)
    for typo in ("Pakets", "firstseen_", "dstprt"):
        want = {"Pakets": "Packets", "firstseen_": "FirstSeen", "dstprt": "DstPort"}[typo]
        with pytest.raises(cs.ConsoleError, match=rf"cannot sort by '{typo}' \(did you mean '{want}'\?\)"):
            cs.flow_list(chdb.store, chdb.five, sort=typo)


def test_flows_on_the_snapshot_axis_are_the_traffic_in_the_window(chdb: Filled) -> None:
    page = cs.flow_list(chdb.store, chdb.five, axis="snapshot", start_ns=T1_NS + 1, end_ns=T2_NS, limit=1000)
    api = flow_details(chdb.store, "per_five_tuple", FlowFilter(), T1_NS + 1, T2_NS, 0, 10_000)
    got = {tuple(r[:5]): (r[7], r[8]) for r in page.rows}
    want = {
        tuple(typed(k, f) if f in k else None for f in KEYS): (p, b)  # type: ignore[arg-type]
        for k, _, _, p, b in api
    }
    assert got == want and 0 < len(got) < len(FLOWS)


# ---- host ------------------------------------------------------------------------------------------------


def test_host_report(chdb: Filled) -> None:
    ip = "10.0.2.15"
    out = [r for r in FLOWS if r["SrcIP"] == ip]
    inn = [r for r in FLOWS if r["DstIP"] == ip]
    h = cs.host_report(chdb.store, chdb.five, "::ffff:10.0.2.15", limit=5)
    assert h.ip == ip
    assert tuple(h.totals["out"].values()) == sums(out)
    assert tuple(h.totals["in"].values()) == sums(inn)
    assert (
        sum(h.timeline["out"]["bytes"]) == sums(out)[1] and sum(h.timeline["in"]["packets"]) == sums(inn)[0]
    )

    def top(rows: list[dict[str, str]], field: str) -> list[list[Any]]:
        g: dict[Any, list[dict[str, str]]] = defaultdict(list)
        for r in rows:
            g[typed(r, field)].append(r)
        ranked = sorted(g.items(), key=lambda kv: (-sums(kv[1])[1], -sums(kv[1])[0], str(kv[0])))
        return [[k, *sums(v)[:2], len(v)] for k, v in ranked[:5]]

    assert h.facets["peers_out"] == top(out, "DstIP")
    assert h.facets["peers_in"] == top(inn, "SrcIP")
    assert [r[1:] for r in h.facets["ports_out"]] == [r[1:] for r in top(out, "DstPort")]
    assert {r[0] for r in h.facets["protocols"]} == {int(r["Protocol"]) for r in out + inn}
    assert cs.host_hitters(chdb.store, ip)  # the CountMin and SuperSpread tasks report 10.0.2.15
    assert all(ip in e["flow"].split(" ") for e in cs.host_hitters(chdb.store, ip))
    with pytest.raises(cs.ConsoleError, match="is not an IP address"):
        cs.host_report(chdb.store, chdb.five, "10.0.0.256")
    src_only = cs.host_report(chdb.store, chdb.catalog.source("per_src"), ip)
    assert src_only.totals["out"]["bytes"] == sums(out)[1] and "peers_out" not in src_only.facets


# ---- live ------------------------------------------------------------------------------------------------


def test_live_is_the_newest_period_and_the_rates_between_its_snapshots(chdb: Filled) -> None:
    lv = cs.live_report(chdb.store, chdb.five, limit=5)
    assert (lv.snapshot_ns, lv.previous_ns) == (T2_NS, T1_NS)
    assert (lv.totals["packets"], lv.totals["bytes"], lv.totals["flows"]) == ALL
    (window,) = aggregate_flows(chdb.store, end_ns=T2_NS, start_ns=T1_NS + 1, task="per_five_tuple")
    assert lv.rates["seconds"] == 60
    assert lv.rates["bytes"] * 60 == pytest.approx(window.total_bytes)
    assert lv.rates["packets"] * 60 == pytest.approx(window.total_packets)
    assert lv.rates["flows"] == window.flow_count
    api = flow_details(chdb.store, "per_five_tuple", FlowFilter(), T1_NS + 1, T2_NS, 0, 10_000)
    deltas = sorted((b for *_, b in api), reverse=True)[:5]
    assert [r[-1] for r in lv.by_rate] == deltas
    assert [r[6] for r in lv.by_total] == sorted((int(r["ByteCount"]) for r in FLOWS), reverse=True)[:5]


# ---- completion values, samples ------------------------------------------------------------------------


def test_field_values_are_the_most_frequent(chdb: Filled) -> None:
    counts = Counter(int(r["DstPort"]) for r in FLOWS)
    got = cs.field_values(chdb.store, chdb.five, "DstPort", "", 5)
    # ranked by stored rows (a flow changed in both snapshots has two): the busiest port leads
    assert int(got[0]) == counts.most_common(1)[0][0] and len(got) == 5 and set(map(int, got)) <= set(counts)
    assert all(v.startswith("10.") for v in cs.field_values(chdb.store, chdb.five, "SrcIP", "10.", 20))
    assert cs.field_values(chdb.store, chdb.five, "SrcIP", "no such prefix", 20) == []
    # a name of no field names the one meant (field names are exact here: the filter's completion asks
    # with the field as stored) and the fields there are
    for name, says in (
        ("DstPrt", r"'DstPrt' is not a field of \S+ \(did you mean 'DstPort'\?\); its fields are SrcIP, "),
        ("srcip", r"'srcip' is not a field of \S+ \(names are case-sensitive: did you mean 'SrcIP'\?\)"),
        ("Nope", r"'Nope' is not a field of flow_metrics:per_five_tuple; its fields are SrcIP, "),
    ):
        with pytest.raises(cs.ConsoleError, match=says):
            cs.field_values(chdb.store, chdb.five, name)


def test_a_sample_reads_whole_flows_and_says_so(chdb: Filled) -> None:
    rows = chdb.store.query(
        f"SELECT count() FROM {chdb.store.table('flow_metrics')} WHERE TaskName = 'per_five_tuple'"
    )[0][0]
    v = cs.visualize(chdb.store, chdb.five, row_budget=rows // 3)
    assert v.sample == 4 and v.rows_in_range == rows
    hashes = chdb.store.query(
        f"SELECT FlowHash, max(PacketCount), max(ByteCount) FROM {chdb.store.table('flow_metrics')} "
        "WHERE TaskName = 'per_five_tuple' GROUP BY PeriodStartNs, FlowHash"
    )
    bound = cs.sample_bound(4)
    kept = [(p, b) for h, p, b in hashes if h <= bound]
    assert v.total.packets == 4 * sum(p for p, _ in kept) and v.total.bytes == 4 * sum(b for _, b in kept)
    assert v.total.flows == 4 * len(kept)
    assert abs(v.total.flows - ALL[2]) < 0.5 * ALL[2]  # an estimate, of the right size
    exact = cs.visualize(chdb.store, chdb.five, row_budget=rows // 3, exact=True)
    assert exact.sample == 1 and exact.total.packets == ALL[0]


def test_bad_requests(chdb: Filled) -> None:
    for kwargs, says in (
        ({"dims": ["Nope"]}, "'Nope' is not a dimension of flow_metrics:per_five_tuple; its dimensions"),
        # a near miss names the dimension meant (as TopN and the task names do)
        ({"dims": ["DstPrt"]}, r"'DstPrt' is not a dimension of \S+ \(did you mean 'DstPort'\?\)"),
        # dims are matched in any case: a near miss in another case is named too, as the source spells it
        ({"dims": ["dstprt"]}, r"'dstprt' is not a dimension of \S+ \(did you mean 'DstPort'\?\)"),
        ({"dims": ["DstPort", "dstport"]}, "listed twice"),
        ({"metric": "bits"}, "metric 'bits' is not one of"),
        ({"axis": "wall"}, "axis 'wall' is not one of"),
        ({"limit": 0}, "limit must be 1..50"),
        ({"start_ns": 5, "end_ns": 4}, "start is after end"),
    ):
        with pytest.raises(cs.ConsoleError, match=says):
            cs.visualize(chdb.store, chdb.five, **kwargs)  # type: ignore[arg-type]
    with pytest.raises(cs.ConsoleError, match="not a dimension"):
        cs.visualize(chdb.store, chdb.catalog.source("per_src"), dims=["DstPort"])


# ---- a flows table of records of another shape lights up as a source ----------------------------------

RECORD_COLUMNS = (
    ("TaskName", "String"), ("SrcIP", "String"), ("DstIP", "String"), ("SrcPort", "UInt16"),
    ("DstPort", "UInt16"), ("Protocol", "UInt8"), ("VlanID", "UInt16"), ("FirstSeenNs", "Int64"),
    ("LastSeenNs", "Int64"), ("SrcToDstPackets", "UInt64"), ("SrcToDstBytes", "UInt64"),
    ("DstToSrcPackets", "UInt64"), ("DstToSrcBytes", "UInt64"), ("EndReason", "LowCardinality(String)"),
    ("ConnState", "Nullable(String)"), ("SrcToDstTCPFlags", "Nullable(UInt8)"), ("DurationNs", "Int64"),
    ("SrcToDstSizeMean", "Nullable(Float64)"), ("FlowHash", "UInt64"), ("SrcAS", "UInt32"),
    ("DstAS", "UInt32"),
)  # fmt: skip


def test_a_flows_table_becomes_a_source(chdb: Filled) -> None:
    """Made here in a database of its own (a MergeTree, fewer columns, AS numbers): the catalog offers it
    with every column, and the views read both directions."""
    cfg = chdb.cfg.aggregator.exact.writers[0].params.model_copy(
        update={"database": f"ns_rec_{uuid.uuid4().hex[:8]}"}
    )
    store = connect_store(cfg)
    try:
        cols = ", ".join(f"{n} {t}" for n, t in RECORD_COLUMNS)
        # the store made NetSpectra's own flows table (migration 2; test_console_records reads that one):
        # this one is of another shape, a plain MergeTree (read without FINAL)
        store.execute(f"DROP TABLE {store.table('flows')}")
        store.execute(
            f"CREATE TABLE {store.table('flows')} ({cols}) ENGINE = MergeTree() "
            "ORDER BY (TaskName, FirstSeenNs)"
        )
        base = 1_700_000_000 * 10**9
        s = 10**9
        recs = [
            ("records", "10.0.0.1", "10.0.0.2", 40000, 443, 6, 0, base, base + 5 * s, 10, 1000, 8, 9000,
             "idle", "SF", 27, 5 * s, 100.0, 1, 64500, 15169),
            ("records", "10.0.0.1", "10.0.0.3", 40001, 80, 6, 0, base + s, base + 2 * s, 1, 60, 1, 60,
             "tcp_end", "REJ", 2, s, None, 2**63, 64500, 13335),
            ("records", "2001:db8::1", "2001:db8::2", 5353, 5353, 17, 7, base + 3 * s, base + 3 * s, 1, 90,
             0, 0, "end_of_input", None, None, 0, 90.0, 3, 0, 0),
        ]  # fmt: skip
        data = pa.table(
            {n: pa.array([r[i] for r in recs], _arrow(t)) for i, (n, t) in enumerate(RECORD_COLUMNS)}
        )
        store.insert("flows", data)
        cat = cs.catalog(store, {})
        (src,) = [s for s in cat.sources if s.table == "flows"]
        assert src.id == "flows:records" and src.kind == "records" and src.axes == ("first",)
        assert list(src.fields) == [
            "SrcIP", "DstIP", "SrcPort", "DstPort", "Protocol", "VlanID", "EndReason", "ConnState",
            "SrcToDstTCPFlags", "DurationNs", "SrcAS", "DstAS",
        ]  # fmt: skip
        assert src.keys == ("SrcIP", "DstIP", "SrcPort", "DstPort", "Protocol", "VlanID")
        assert src.extra == ("SrcToDstSizeMean",) and src.sample_column == "FlowHash" and not src.final
        assert {t["name"]: t["present"] for t in cat.to_dict()["tables"]}["flows"]
        v = cs.visualize(store, src, dims=["ConnState"], metric="bytes")
        assert [(s.key["ConnState"], s.bytes, s.packets) for s in v.series] == [
            ("SF", 10_000, 18), ("REJ", 120, 2), (None, 90, 1),
        ]  # fmt: skip
        assert (v.total.bytes, v.total.flows) == (10_210, 3)
        page = cs.flow_list(
            store, src, flt=compile_filter("EndReason != 'idle' AND SrcIP << 10.0.0.0/8", src.fields)
        )
        # the key, then when and how much, then the record's other columns
        assert page.columns == [
            *src.keys, "FirstSeen", "LastSeen", "Packets", "Bytes", "EndReason", "ConnState",
            "SrcToDstTCPFlags", "DurationNs", "SrcAS", "DstAS", "SrcToDstSizeMean",
        ]  # fmt: skip
        assert page.rows == [
            ["10.0.0.1", "10.0.0.3", 40001, 80, 6, 0, base + 10**9, base + 2 * 10**9, 2, 120, "tcp_end",
             "REJ", 2, 10**9, 64500, 13335, None],
        ]  # fmt: skip
        h = cs.host_report(store, src, "2001:db8::1")
        assert h.totals["out"] == {"packets": 1, "bytes": 90, "flows": 1}
        # enrichment pairs light up on the host page: its own AS, its peers' AS
        h = cs.host_report(store, src, "10.0.0.1")
        assert h.facets["own_AS"] == [["64500", 20, 10_120, 2]]
        assert h.facets["peers_AS"] == [["15169", 18, 10_000, 1], ["13335", 2, 120, 1]]
        v = cs.visualize(store, src, dims=["DstAS"], flt=compile_filter("SrcAS = AS64500", src.fields))
        assert [(s.key["DstAS"], s.bytes) for s in v.series] == [(15169, 10_000), (13335, 120)]
        with pytest.raises(cs.ConsoleError, match="live view reads the flow_metrics"):
            cs.live_report(store, src)
    finally:
        store.execute(f"DROP DATABASE IF EXISTS {store.db}")
        store.close()


def _arrow(ch_type: str) -> pa.DataType:
    inner = ch_type.removeprefix("Nullable(").removeprefix("LowCardinality(").rstrip(")")
    return {
        "String": pa.string(), "UInt8": pa.uint8(), "UInt16": pa.uint16(), "UInt32": pa.uint32(),
        "UInt64": pa.uint64(), "Int64": pa.int64(), "Float64": pa.float64(),
    }[inner]  # fmt: skip


# ---- the same answers from a ClickHouse server (18.16 in CI) --------------------------------------------


def answers(f: Filled) -> dict[str, Any]:
    five = f.five
    cidr = compile_filter("SrcIP << 10.0.0.0/8 OR DstIP << ff00::/8 OR SrcIP !<< ::/1", five.fields)
    out: dict[str, Any] = {
        "catalog": [s.to_dict() for s in f.catalog.sources],
        "viz": cs.visualize(f.store, five, dims=["SrcIP", "DstPort"], limit=5).to_dict(),
        "viz_snap": cs.visualize(f.store, five, axis="snapshot", start_ns=T1_NS + 1, end_ns=T2_NS).to_dict(),
        "viz_cidr": cs.visualize(f.store, five, flt=cidr, dims=["Protocol"]).to_dict(),
        "flows": cs.flow_list(f.store, five, limit=30).to_dict(),
        "flows_snap": cs.flow_list(f.store, five, axis="snapshot", start_ns=T1_NS + 1, limit=30).to_dict(),
        "host": cs.host_report(f.store, five, "10.0.2.15").to_dict(),
        "hitters": cs.host_hitters(f.store, "10.0.2.15"),
        "live": cs.live_report(f.store, five).to_dict(),
        "values": cs.field_values(f.store, five, "DstIP", "ff0", 10),
    }
    for doc in out.values():
        if isinstance(doc, dict):
            doc.pop("elapsedMs", None)
    out["live"].pop("source")
    return out


def test_the_server_gives_the_same_answers(chdb: Filled, server: Filled) -> None:
    got, want = answers(server), answers(chdb)
    for name in want:
        assert got[name] == want[name], name
    assert want["viz"]["total"]["packets"] == ALL[0]


@pytest.mark.parametrize("sort", [*KEYS, "FirstSeen", "LastSeen", "Packets", "Bytes"])
def test_flows_from_candidates_equal_flows_from_every_state(
    chdb: Filled, sort: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A page is first looked for among the flows of the top stored rows (no grouping of every flow);
    whatever it finds must be what grouping every flow gives (ties, deep pages, both directions)."""
    from netspectra.storage.console import flows as flows_module

    pages = [(o, lim, d) for o in (0, 37, 600) for lim in (10, 50) for d in (True, False)]
    fast = [
        cs.flow_list(chdb.store, chdb.five, sort=sort, offset=o, limit=lim, descending=d)
        for o, lim, d in pages
    ]
    monkeypatch.setattr(flows_module, "_TRIES", 0)  # straight to grouping every flow
    full = [
        cs.flow_list(chdb.store, chdb.five, sort=sort, offset=o, limit=lim, descending=d)
        for o, lim, d in pages
    ]
    for a, b, p in zip(fast, full, pages, strict=True):
        assert (a.rows, a.more) == (b.rows, b.more), p


def test_an_empty_store_answers_empty(chdb: Filled) -> None:
    """A store with the tables and no rows yet (a fresh `netspectra up`): every view answers, empty."""
    cfg = chdb.cfg.aggregator.exact.writers[0].params.model_copy(
        update={"database": f"ns_empty_{uuid.uuid4().hex[:8]}"}
    )
    store = connect_store(cfg)
    try:
        five = cs.catalog(store, TASKS).source(None)
        v = cs.visualize(store, five, dims=["DstPort"])
        assert (v.total.packets, v.series, v.other.packets) == (0, [], 0) and len(v.times) == 1
        assert cs.flow_list(store, five).rows == []
        assert cs.live_report(store, five).snapshot_ns is None
        h = cs.host_report(store, five, "10.0.0.1")
        assert h.totals["out"] == {"packets": 0, "bytes": 0, "flows": 0} and h.facets["peers_out"] == []
        assert cs.field_values(store, five, "DstPort") == []
    finally:
        store.execute(f"DROP DATABASE IF EXISTS {store.db}")
        store.close()


# ---- the threshold pass of the flows list on a larger store with ties ---------------------------------


@contextmanager
def _tied_store(f: Filled) -> Iterator[tuple[ClickHouseStore, cs.Source]]:
    """3000 five-tuple flows in a database of their own, 3 snapshots each (cumulative counters), 600 of them
    also in a second period; bytes and packets from few distinct values (many ties)."""
    params = f.cfg.aggregator.exact.writers[0].params.model_copy(
        update={"database": f"ns_ties_{uuid.uuid4().hex[:8]}"}
    )
    store = connect_store(params)
    t0 = 1_704_067_200 * 10**9
    fl, k = "intDiv(number, 3)", "(number % 3 + 1)"
    columns = (
        "TimestampNs, PeriodStartNs, Bucket, TaskName, FlowHash, SrcIP, DstIP, SrcPort, DstPort, Protocol, "
        "StartNs, EndNs, ByteCount, PacketCount"
    )
    for period, flows in ((t0, 3000), (t0 + 3600 * 10**9, 600)):
        store.execute(
            f"INSERT INTO {store.table('flow_metrics')} ({columns}) "
            f"SELECT {period} + {k} * 60000000000 AS ts, {period}, "
            f"toDateTime(intDiv(ts, 1000000000), 'UTC'), 'per_five_tuple', cityHash64({fl}), "
            f"concat('10.0.', toString(intDiv({fl}, 256)), '.', toString({fl} % 256)), '192.168.0.1', "
            f"toUInt16(1024 + {fl}), toUInt16(443), toUInt8(6), "
            f"toInt64({period} + ({fl} * 7919 % 300) * 1000000000) AS s, toInt64(s + {k}), "
            f"toUInt64({k} * ({fl} * 2654435761 % 40)), toUInt64({k} * ({fl} % 7)) FROM numbers({flows * 3})"
        )
    try:
        yield store, cs.catalog(store, TASKS).source("per_five_tuple")
    finally:
        store.execute(f"DROP DATABASE IF EXISTS {store.db}")
        store.close()


_TIED_FILTER = "SrcPort >= 1500"
_TIED_CASES = [
    (sort, o, lim, d, fl, lo)
    for sort in ("Bytes", "Packets", "FirstSeen", "LastSeen")
    for o, lim in ((0, 50), (37, 10), (700, 50))
    for d in (True, False)
    for fl, lo in ((False, None), (True, 1_704_067_200 * 10**9 + 100 * 10**9))
]


def _tied_pages(store: ClickHouseStore, five: cs.Source) -> list[tuple[list[list[Any]], bool]]:
    flt = compile_filter(_TIED_FILTER, five.fields)
    out = []
    for sort, o, lim, d, fl, lo in _TIED_CASES:
        p = cs.flow_list(
            store, five, sort=sort, offset=o, limit=lim, descending=d, flt=flt if fl else None, start_ns=lo
        )
        out.append((p.rows, p.more))
    return out


@pytest.mark.parametrize("where", ["chdb", "server"])
def test_the_threshold_pass_equals_every_state_grouped(
    where: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The flows page found by a threshold from a hash sample (then the flows at or beyond it) is the page
    of every flow state grouped — on data with ties at every cut, deep pages, both directions, a filter and
    a range; also when the threshold misses (too few flows beyond it: the plain query answers)."""
    from netspectra.storage.console import flows as flows_module

    f = request.getfixturevalue(where)
    with _tied_store(f) as (store, five):
        sqls: list[str] = []
        query = store.query

        def spy(sql: str, params: Any = None, *a: Any, **kw: Any) -> Any:
            sqls.append(sql)
            return query(sql, params, *a, **kw)

        monkeypatch.setattr(flows_module, "THRESHOLD_SAMPLE", 4)  # a sample of 750 flows of 3000
        monkeypatch.setattr(store, "query", spy)
        fast = _tied_pages(store, five)
        assert sum("GROUP BY FlowHash ORDER BY v" in s for s in sqls) >= len(_TIED_CASES)  # the pass ran
        monkeypatch.setattr(flows_module, "THRESHOLD_SLACK", 0)  # a threshold too far out: detected
        missed = _tied_pages(store, five)
        monkeypatch.setattr(flows_module, "_TRIES", 0)  # straight to grouping every flow
        full = _tied_pages(store, five)
        monkeypatch.undo()
        for a, b, m, c in zip(fast, full, missed, _TIED_CASES, strict=True):
            assert a == b == m, c
        assert all(rows for rows, _ in full[:4])


@pytest.mark.parametrize("where", ["chdb", "server"])
def test_the_apis_extent_is_reused_while_the_parts_are_the_same(
    where: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The API keeps a source's extent (a scan of a time column) while the table's active parts are the
    same, however old; a write (new parts) makes it read again, and the new extent is the store's."""
    from netspectra.api import console as api_console
    from netspectra.api.grpc_service import QueryCore

    f = request.getfixturevalue(where)
    core = QueryCore(f.cfg)
    try:
        with _tied_store(f) as (store, five):
            console = api_console.Console(core)
            monkeypatch.setattr(console, "store", lambda: store)
            monkeypatch.setattr(api_console, "CATALOG_TTL_S", 0.0)  # only the parts keep it
            scans: list[str] = []
            query = store.query

            def spy(sql: str, params: Any = None, *a: Any, **kw: Any) -> Any:
                if "min(StartNs)" in sql:
                    scans.append(sql)
                return query(sql, params, *a, **kw)

            monkeypatch.setattr(store, "query", spy)
            first = console.extent(five, "first")
            assert first == cs.extent(store, five, "first") and len(scans) == 2
            assert console.extent(five, "first") == first and len(scans) == 2  # reused
            later = first[1] + 10**9
            store.execute(
                f"INSERT INTO {store.table('flow_metrics')} (TimestampNs, PeriodStartNs, Bucket, TaskName, "
                "FlowHash, StartNs, EndNs, ByteCount, PacketCount) "
                f"SELECT {later}, {later}, toDateTime({later // 10**9}, 'UTC'), 'per_five_tuple', 1, "
                f"{later}, {later}, 1, 1"
            )
            assert console.extent(five, "first") == (first[0], later) and len(scans) == 3
    finally:
        core.close()
