"""Key fields beyond the five, end to end: tasks keyed on enrichment columns and on export fields, over a
real capture enriched by the real Enricher (the MMDB test databases of ../shared/data/mmdb and a
``networks`` map), and over flow-export rows made from that capture; stored in ClickHouse (chdb and the
18.16 server) and queried back; and the schema migration that adds their columns to ``flow_metrics``.

Every expectation is computed independently of the task: grouped with numpy from the Enricher's columns
and the packets each row stands for.
"""

from __future__ import annotations

import dataclasses
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from netspectra.batch import PacketBatch
from netspectra.capture.reader import CaptureReader
from netspectra.config.aggregator import ExactWriterConfig, SketchWriterConfig
from netspectra.config.enrichment import EnrichmentConfig
from netspectra.enrich.enricher import Enricher
from netspectra.key_columns import ip_text
from netspectra.sketches.base import SketchTask
from netspectra.storage import SnapshotMeta
from netspectra.storage.clickhouse import ClickHouseStore, ClickHouseWriter, connect_store, flow_rows
from netspectra.storage.clickhouse_config import ClickHouseConfig
from netspectra.storage.migrations import LATEST, MIGRATIONS, SCHEMA_TABLE, migrate, plan
from netspectra.storage.queries import (
    FlowFilter,
    aggregate_flows,
    flow_details,
    heavy_hitters,
    top_flows,
    trace_flow,
)
from netspectra.storage.schema import ADDED_KEY_COLUMNS, FLOW_METRICS, FLOW_PRIMARY_KEY, FLOW_TABLE
from netspectra.tasks.exact import ExactTask
from netspectra.weights import expand_rows

ROOT = Path(__file__).resolve().parents[1]
CAPTURE = ROOT / "data" / "captures" / "gnutella.pcap"
MMDB = ROOT.parent.parent / "shared" / "data" / "mmdb"
T0 = 1_704_067_200 * 10**9
NETWORKS = {
    "10.0.0.0/8": {"name": "lan", "asn": 64512, "country": "fr", "site": "home"},
    "0.0.0.0/2": {"asn": 65001, "country": "de"},
    "64.0.0.0/2": {"asn": 65002, "country": "us", "name": "west"},
    "128.0.0.0/2": {"asn": 65003},  # no country: unknown
}
EXPORTERS = ("192.0.2.1", "2001:db8::7")


def unique_database() -> str:
    return f"ns_keys_{uuid.uuid4().hex[:12]}"


def a16(text: str) -> np.ndarray:
    import ipaddress

    a = ipaddress.ip_address(text)
    v = ((0xFFFF << 32) | int(a)) if a.version == 4 else int(a)
    return np.frombuffer(v.to_bytes(16, "big"), np.uint8)


def enricher() -> Enricher:
    geoip = {}
    if (MMDB / "GeoLite2-ASN-Test.mmdb").exists():  # the shared test databases, where they are
        geoip = {"asn_database": str(MMDB / "GeoLite2-ASN-Test.mmdb"),
                 "country_database": str(MMDB / "GeoLite2-Country-Test.mmdb")}  # fmt: skip
    cfg = EnrichmentConfig.model_validate({"geoip": geoip, "networks": NETWORKS})
    return Enricher.from_config(cfg, background=False)


def enrich(e: Enricher, b: PacketBatch) -> PacketBatch:
    kw: dict[str, Any] = {}
    if b.exporter is not None:
        kw = {"exporter": b.exporter, "in_if": b.in_if, "out_if": b.out_if}
    out = e.enrich(b.src_ip, b.dst_ip, **kw)
    return b.with_dims(out.columns, out.dictionaries)


@pytest.fixture(scope="module")
def packets() -> PacketBatch:
    """The capture, enriched in four batches (the dictionaries grow from one to the next)."""
    e = enricher()
    b = CaptureReader(CAPTURE).read_all()
    parts = [enrich(e, b.slice(lo, lo + len(b) // 4 + 1)) for lo in range(0, len(b), len(b) // 4 + 1)]
    return PacketBatch.concat(parts)


def export_rows(b: PacketBatch) -> PacketBatch:
    """The capture as flow-export records: the packets of each five-tuple in runs of up to 7, one record
    per run (packets, octets, first and last time), sampled 1-in-1 or 1-in-10 (scaled), from one of two
    exporters, interfaces from the ports."""
    ports = np.stack([b.src_port, b.dst_port], axis=1).view(np.uint8)
    key = np.concatenate([b.src_ip, b.dst_ip, ports, b.protocol.reshape(-1, 1)], axis=1)
    _, flow = np.unique(key, axis=0, return_inverse=True)
    order = np.lexsort((b.ts_ns, flow))
    flow_sorted = flow[order]
    start = np.r_[True, flow_sorted[1:] != flow_sorted[:-1]]
    run = np.cumsum(start) - 1
    pos = np.arange(len(order)) - np.flatnonzero(start)[run]
    record = np.cumsum(np.r_[True, (flow_sorted[1:] != flow_sorted[:-1]) | (pos[1:] % 7 == 0)]) - 1
    n = int(record[-1]) + 1
    rows = order[np.r_[True, record[1:] != record[:-1]]]
    out = b.take(rows).with_dims(None)
    pk = np.bincount(record, minlength=n).astype(np.uint64)
    oc = np.bincount(record, weights=b.length[order].astype(np.float64), minlength=n).astype(np.uint64)
    t_first = np.full(n, np.iinfo(np.int64).max)
    np.minimum.at(t_first, record, b.ts_ns[order])
    t_last = np.full(n, np.iinfo(np.int64).min)
    np.maximum.at(t_last, record, b.ts_ns[order])
    rate = np.where(np.arange(n) % 3 == 0, 10, 1).astype(np.uint32)
    exporter = np.stack([a16(EXPORTERS[i % 2]) for i in range(n)])
    return PacketBatch(
        t_last, out.src_ip, out.dst_ip, out.src_port, out.dst_port, out.protocol,
        np.minimum(oc * rate // np.maximum(pk * rate, 1), 0xFFFF_FFFF).astype(np.uint32),
        packets=pk * rate, octets=oc * rate, sampling_rate=rate, flow_start_ns=t_first,
        in_if=(out.dst_port % 4).astype(np.uint32), out_if=(out.src_port % 3).astype(np.uint32),
        exporter=np.ascontiguousarray(exporter),
    )  # fmt: skip


@pytest.fixture(scope="module")
def exports(packets: PacketBatch) -> PacketBatch:
    b = export_rows(packets.with_dims(None))
    b.validate()
    return enrich(enricher(), b)


def grouped(values: list[np.ndarray], weights: np.ndarray) -> dict[tuple, int]:
    """Sum of ``weights`` per distinct tuple of ``values`` (numpy grouping, no task involved)."""
    cols = [v.reshape(len(weights), -1).astype(np.uint64) for v in values]
    key = np.concatenate(cols, axis=1)
    uniq, inv = np.unique(key, axis=0, return_inverse=True)
    sums = np.zeros(len(uniq), np.uint64)
    np.add.at(sums, inv.ravel(), weights.astype(np.uint64))
    return {tuple(int(x) for x in row): int(s) for row, s in zip(uniq, sums, strict=True)}


def snapshot_sums(snap: Any, fields: tuple[str, ...], column: str = "packets") -> dict[tuple, int]:
    cols = [snap.extra[f].reshape(len(snap), -1) for f in fields]
    return grouped(cols, getattr(snap, column))


# --- tasks --------------------------------------------------------------------------------------------


def test_exact_task_keyed_on_src_as_counts_what_the_enricher_says(packets: PacketBatch) -> None:
    task = ExactTask("by_as", ["SrcAS"])
    task.update(packets)
    snap = task.snapshot()
    want = grouped([packets.dims["SrcAS"]], np.ones(len(packets), np.uint64))
    assert snapshot_sums(snap, ("SrcAS",)) == want
    assert {64512, 65001, 65002} <= {k[0] for k in want}  # the networks map answered
    table = snap.sorted("packets").to_arrow()
    assert table.schema.field("SrcAS").type.bit_width == 32 and table.column("SrcIP").null_count == len(snap)
    assert task.missing_key_rows == {}


def test_dictionary_fields_are_decoded_with_the_newest_dictionary(packets: PacketBatch) -> None:
    task = ExactTask("country_site", ["SrcIP", "DstCountry", "SrcNetSite"])
    for lo in range(0, len(packets), 5000):
        task.update(packets.slice(lo, lo + 5000))
    table = task.snapshot().to_arrow()
    words = packets.dictionaries["DstCountry"]
    want = grouped([packets.dims["DstCountry"]], np.ones(len(packets), np.uint64))
    got: dict[str, int] = {}
    for country, n in zip(table.column("DstCountry").to_pylist(), table.column("PacketCount").to_pylist(),
                          strict=True):  # fmt: skip
        got[country] = got.get(country, 0) + n
    assert got == {words[k[0]]: v for k, v in want.items()}
    assert {"FR", "DE", "US", ""} <= set(got)  # "" = unknown (a network without a country)
    assert set(table.column("SrcNetSite").to_pylist()) <= {"home", ""}


def test_sketch_of_dst_country_per_src_as(packets: PacketBatch) -> None:
    """The issue's example: a spread sketch counting distinct DstCountry per SrcAS, flows shown as text."""
    task = SketchTask("countries", 1, ["SrcAS"], ["DstCountry"], memory=1 << 16, count_threshold=1, seed=3)
    task.update(packets)
    snap = task.snapshot()
    src, dst = packets.dims["SrcAS"], packets.dims["DstCountry"]
    pairs = np.unique(np.stack([src.astype(np.int64), dst.astype(np.int64)], axis=1), axis=0)
    want = {f"AS{a}": int((pairs[:, 0] == a).sum()) for a in np.unique(pairs[:, 0])}
    got = dict(snap.spread.to_list())
    assert set(got) <= set(want) and "AS64512" in got
    for flow, value in got.items():
        assert abs(value - want[flow]) <= 1, (flow, value, want[flow])
    hh = SketchTask("hh", 0, ["SrcAS", "DstCountry"], memory=1 << 16, count_threshold=1, size_threshold=1,
                    seed=3)  # fmt: skip
    hh.update(packets)
    flows = [f for f, _ in hh.snapshot().count]
    assert "AS64512 FR" in flows or any(f.startswith("AS64512 ") for f in flows)
    assert all(len(f.split(" ")) == 2 for f in flows)


def test_exact_task_on_exporter_and_interface_over_weighted_rows(exports: PacketBatch) -> None:
    task = ExactTask("by_if", ["ExporterAddress", "InIf"])
    task.update(exports)
    snap = task.snapshot()
    want = grouped([exports.exporter, exports.in_if], exports.packets)
    assert snapshot_sums(snap, ("ExporterAddress", "InIf")) == want
    want_bytes = grouped([exports.exporter, exports.in_if], exports.octets)
    assert snapshot_sums(snap, ("ExporterAddress", "InIf"), "bytes") == want_bytes
    assert set(snap.to_arrow().column("ExporterAddress").to_pylist()) == set(EXPORTERS)
    # the same task over the packets the rows stand for
    again = ExactTask("by_if", ["ExporterAddress", "InIf"])
    expanded = expand_rows(exports)
    per_row = exports.packets.astype(np.int64)  # the packets each row stands for carry its exporter
    exporter = np.ascontiguousarray(np.repeat(exports.exporter, per_row, axis=0))
    again.update(expanded.with_columns(exporter=exporter, in_if=np.repeat(exports.in_if, per_row)))
    assert snapshot_sums(again.snapshot(), ("ExporterAddress", "InIf")) == want


def test_fields_the_batch_lacks_count_under_unknown_and_are_said_once(
    packets: PacketBatch, caplog: pytest.LogCaptureFixture
) -> None:
    task = ExactTask("by_if", ["InIf", "SrcIP"])
    plain = packets.with_dims(None)
    task.update(plain)
    task.update(plain)
    assert task.missing_key_rows == {"InIf": 2 * len(plain)}
    assert sum("keys on InIf but its batches do not carry it" in r.message for r in caplog.records) == 1
    snap = task.snapshot()
    assert set(snap.extra["InIf"].tolist()) == {0} and snap.total_packets == 2 * len(plain)


# --- storage ------------------------------------------------------------------------------------------


@pytest.fixture(params=["chdb", "server"])
def ch(request: pytest.FixtureRequest) -> dict[str, object]:
    if request.param == "chdb":
        return {"data_dir": str(request.getfixturevalue("chdb_data_dir")), "database": unique_database()}
    return request.getfixturevalue("clickhouse_server").config(database=unique_database())


def test_stored_and_queried_by_the_new_key_fields(
    ch: dict[str, object], packets: PacketBatch, exports: PacketBatch
) -> None:
    tasks = {
        "by_as": (ExactTask("by_as", ["SrcAS"]), packets),
        "by_if": (ExactTask("by_if", ["ExporterAddress", "InIf", "OutIf"]), exports),
        "src_country": (ExactTask("src_country", ["SrcIP", "DstCountry"]), packets),
        "five": (ExactTask("five", ["SrcIP", "DstIP", "SrcPort", "DstPort", "Protocol"]), packets),
    }
    sketch = SketchTask("countries", 1, ["SrcAS"], ["DstCountry"], memory=1 << 16, count_threshold=1, seed=3)
    sketch.update(packets)
    meta = SnapshotMeta(T0 + 60 * 10**9, T0, True)
    snaps = {}
    writer = ClickHouseWriter(ExactWriterConfig(type="clickhouse", enabled=True, clickhouse=ch), "exact")
    hitters = ClickHouseWriter(SketchWriterConfig(type="clickhouse", enabled=True, clickhouse=ch), "sketch")
    with writer, hitters:
        for name, (task, batch) in tasks.items():
            task.update(batch)
            snaps[name] = task.snapshot()
            writer.write_flows(snaps[name], meta)
        hitters.write_hitters(sketch.snapshot(), meta)
    store = connect_store(ClickHouseConfig(**ch))
    try:
        totals = {s.task_name: s for s in aggregate_flows(store)}
        for name, snap in snaps.items():
            assert (totals[name].total_packets, totals[name].total_bytes, totals[name].flow_count) == (
                snap.total_packets, snap.total_bytes, len(snap),
            ), name  # fmt: skip
        # by AS number (either spelling)
        as_packets = grouped([packets.dims["SrcAS"]], np.ones(len(packets), np.uint64))[(64512,)]
        life = trace_flow(store, "by_as", {"SrcAS": "AS64512"})
        assert life is not None and life.total_packets == as_packets and life.flow_count == 1
        assert trace_flow(store, "by_as", {"SrcAS": 64512}) == life
        # by exporter and interface (an IPv6 exporter, as text)
        sel = (exports.exporter == a16(EXPORTERS[1])).all(axis=1) & (exports.in_if == 2)
        life = trace_flow(store, "by_if", {"ExporterAddress": EXPORTERS[1], "InIf": "2"})
        assert life is not None and life.total_packets == int(exports.packets[sel].sum())
        assert life.flow_count == len(np.unique(exports.out_if[sel]))
        # by country text, combined with a packet field
        words = packets.dictionaries["DstCountry"]
        fr = packets.dims["DstCountry"] == words.index("FR")
        got = aggregate_flows(store, task="src_country", filters=FlowFilter(fields=(("DstCountry", "FR"),)))
        assert got[0].total_packets == int(fr.sum())
        rows = flow_details(store, "by_if", FlowFilter.from_keys({"InIf": 2}), None, None, 0, 100)
        assert rows and all(k["InIf"] == "2" and "OutIf" in k and "SrcIP" not in k for k, *_ in rows)
        top = top_flows(store, "by_as", limit=3)
        assert top[0].keys["SrcAS"] is not None and top[0].keys["SrcIP"] is None
        assert heavy_hitters(store, "countries", 2)[0][0].startswith("AS")
        with pytest.raises(ValueError, match="unsupported flow key: SrcAs"):
            trace_flow(store, "by_as", {"SrcAs": "1"})
        with pytest.raises(ValueError, match="InIf"):
            trace_flow(store, "by_if", {"InIf": "2' OR 1=1"})
        with pytest.raises(ValueError, match=r"ExporterAddress.*not an IP address"):
            trace_flow(store, "by_if", {"ExporterAddress": "router-1"})
        # an address stored as text, as the writers write it
        stored = store.query(f"SELECT DISTINCT ExporterAddress FROM {store.table(FLOW_TABLE)} "
                             "WHERE TaskName = 'by_if' ORDER BY ExporterAddress")  # fmt: skip
        assert sorted(r[0] for r in stored) == sorted(ip_text(bytes(a16(e))) for e in EXPORTERS)
    finally:
        store.close()


def test_schema_2_gets_the_key_columns_and_keeps_its_rows(
    ch: dict[str, object], packets: PacketBatch
) -> None:
    """A database of schema version 2 (flow_metrics without the new columns, with rows) is migrated to 3:
    the columns are added, the rows answer as before, new tasks store their key fields; a second run and
    a new database do nothing more."""
    cfg = ClickHouseConfig(**ch)
    store = ClickHouseStore(cfg)
    store.open()
    try:
        old = dataclasses.replace(
            FLOW_METRICS,
            columns=tuple(c for c in FLOW_METRICS.columns if c[0] not in ADDED_KEY_COLUMNS),
            order_by=FLOW_PRIMARY_KEY,
            primary_key="",
        )
        store.execute(f"CREATE DATABASE IF NOT EXISTS {store.db}")
        store.execute(old.create_sql(store.table(FLOW_TABLE)))
        five = ExactTask("five", ["SrcIP", "DstIP", "SrcPort", "DstPort", "Protocol"])
        five.update(packets)
        before = five.snapshot()
        meta = SnapshotMeta(T0 + 60 * 10**9, T0, False)
        store.insert(FLOW_TABLE, flow_rows(before, meta, 3600))
        report = migrate(store)  # adopts the tables of version 1 (flow_metrics exists), then 2 and 3
        assert report.applied == [m.version for m in MIGRATIONS]
        assert any(s.sql.startswith("ALTER TABLE") for s in report.steps)
        cols = {r[0] for r in store.query(
            "SELECT name FROM system.columns WHERE database = %(d)s AND table = %(t)s",
            {"d": cfg.database, "t": FLOW_TABLE})}  # fmt: skip
        assert set(ADDED_KEY_COLUMNS) <= cols
        (create,) = store.query(f"SHOW CREATE TABLE {store.table(FLOW_TABLE)}")[0]
        assert "ifNull(ExporterTenant, '')" in create  # the sorting key got the new key columns
        again = migrate(store)
        assert again.applied == [] and not any(s.sql.startswith("ALTER") for s in again.steps)
        (total,) = aggregate_flows(store, task="five")
        assert (total.total_packets, total.flow_count) == (before.total_packets, len(before))
        by_as = ExactTask("by_as", ["SrcAS"])
        by_as.update(packets)
        store.insert(FLOW_TABLE, flow_rows(by_as.snapshot(), meta, 3600))
        assert {s.task_name: s.total_packets for s in aggregate_flows(store)} == {
            "five": before.total_packets, "by_as": len(packets)}  # fmt: skip
        versions = [int(v) for (v,) in store.query(f"SELECT Version FROM {store.table(SCHEMA_TABLE)}")]
        assert sorted(versions) == [m.version for m in MIGRATIONS]
    finally:
        store.close()


def test_a_database_that_skipped_version_3_gets_it(ch: dict[str, object], packets: PacketBatch) -> None:
    """A database migrated by a build that reserved version 3 for this work (recorded 1, 2 and 5; its
    flow_metrics without the new key columns, with rows) is at version 2 for this build: 3 adds the
    columns, 5 runs again (idempotent), the rows answer as before, and a second run does nothing."""
    cfg = ClickHouseConfig(**ch)
    store = ClickHouseStore(cfg)
    store.open()
    try:
        old = dataclasses.replace(
            FLOW_METRICS,
            columns=tuple(c for c in FLOW_METRICS.columns if c[0] not in ADDED_KEY_COLUMNS),
            order_by=FLOW_PRIMARY_KEY,
            primary_key="",
        )
        store.execute(f"CREATE DATABASE IF NOT EXISTS {store.db}")
        store.execute(old.create_sql(store.table(FLOW_TABLE)))
        # what that build ran on a new database: every statement but version 3's
        for step in plan(store.layout):
            if step.records != 3 and step.unless_columns is None:
                store.execute(step.sql)
        recorded = sorted(int(v) for (v,) in store.query(f"SELECT Version FROM {store.table(SCHEMA_TABLE)}"))
        assert 3 not in recorded and recorded == [m.version for m in MIGRATIONS if m.version != 3]
        five = ExactTask("five", ["SrcIP", "DstIP", "SrcPort", "DstPort", "Protocol"])
        five.update(packets)
        before = five.snapshot()
        store.insert(FLOW_TABLE, flow_rows(before, SnapshotMeta(T0 + 60 * 10**9, T0, False), 3600))

        report = migrate(store)
        assert report.before == {"local": 2}
        assert report.applied == [m.version for m in MIGRATIONS if m.version > 2]
        assert any(s.sql.startswith("ALTER TABLE") for s in report.steps)
        cols = {r[0] for r in store.query(
            "SELECT name FROM system.columns WHERE database = %(d)s AND table = %(t)s",
            {"d": cfg.database, "t": FLOW_TABLE})}  # fmt: skip
        assert set(ADDED_KEY_COLUMNS) <= cols
        (total,) = aggregate_flows(store, task="five")
        assert (total.total_packets, total.flow_count) == (before.total_packets, len(before))
        again = migrate(store)
        assert (again.before, again.applied) == ({"local": LATEST}, [])
    finally:
        store.close()
