"""ClickHouse cluster mode against real servers (Debian's clickhouse-server 18.16 in CI).

Two servers form a two-shard cluster without ZooKeeper: ``netspectra storage init`` runs the DDL on each
host (no ``ON CLUSTER``), the normal writers insert into the Distributed tables, and the query functions
give the same answers as a single node (the golden totals of gnutella.pcap), with the rows spread over
both shards and every flow on one shard. With Debian's ``zookeeper`` package, two replicas of one shard
show ``ON CLUSTER`` DDL and replication; without it that test is skipped with the reason.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import test_clickhouse as single_node
from test_clickhouse import HISTORY, Step, expected_all, write_steps
from typer.testing import CliRunner

from conftest import ClickHouseServer, start_cluster, start_zookeeper, unique_database
from netspectra.batch import PacketBatch
from netspectra.cli.main import app
from netspectra.config.aggregator import ExactWriterConfig
from netspectra.sketches.base import HitterType
from netspectra.storage import WriterError
from netspectra.storage.clickhouse import ClickHouseStore, ClickHouseWriter
from netspectra.storage.clickhouse_config import ClickHouseConfig
from netspectra.storage.migrations import LATEST, MIGRATIONS, SCHEMA_TABLE, LayoutError
from netspectra.storage.queries import aggregate_flows, heavy_hitters, task_names, trace_flow
from netspectra.storage.schema import TABLES

#: The module fixtures of the single-node tests: the capture and its six snapshots over two periods.
batch = single_node.batch
steps = single_node.steps

CLUSTER = "ns_two_shards"
REPLICATED = "ns_replicas"
FIVE = ("SrcIP", "DstIP", "SrcPort", "DstPort", "Protocol")


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[ClickHouseServer]]:
    servers = start_cluster(tmp_path_factory.mktemp("ch-cluster"), CLUSTER, [1, 1])
    try:
        yield servers
    finally:
        for s in servers:
            s.stop()


def cluster_cfg(server: ClickHouseServer, database: str, **extra: object) -> dict[str, object]:
    return server.config(database, cluster=CLUSTER, history_resolution=HISTORY, **extra)


def config_file(path: Path, ch: dict[str, object]) -> Path:
    """A configuration whose exact and sketch groups write to ``ch``."""
    items = ", ".join(f"{k}: {v!r}" if isinstance(v, str) else f"{k}: {v}" for k, v in ch.items())
    writer = f"{{type: clickhouse, enabled: true, clickhouse: {{{items}}}}}"
    path.write_text(
        "aggregator:\n  types: [exact, sketch]\n"
        f"  exact:\n    tasks: [{{name: five, key_fields: [SrcIP, DstIP]}}]\n    writers: [{writer}]\n"
        f"  sketch:\n    tasks: [{{name: cm, skt_type: 0, flow_fields: [SrcIP]}}]\n    writers: [{writer}]\n"
    )
    return path


def cli(*args: str) -> Any:
    return CliRunner().invoke(app, list(args))


FLOW_ROW = (
    "TaskName, PeriodStartNs, ifNull(SrcIP, ''), ifNull(DstIP, ''), ifNull(SrcPort, 0), ifNull(DstPort, 0), "
    "ifNull(Protocol, 0)"
)


def local_rows(
    server: ClickHouseServer, database: str, table: str, columns: str = FLOW_ROW
) -> list[tuple[Any, ...]]:
    store = ClickHouseStore(ClickHouseConfig(**server.config(database)))
    store.open()
    try:
        return store.query(f"SELECT {columns} FROM {store.table(table)}")
    finally:
        store.close()


@pytest.fixture(scope="module")
def stored(
    shards: list[ClickHouseServer], steps: list[Step], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, ClickHouseStore, ClickHouseStore]]:
    """The six snapshots written through the normal writers into the cluster (after ``storage init``) and
    into a single-node database of the first server: (database, cluster store, single-node store)."""
    database = unique_database()
    path = config_file(tmp_path_factory.mktemp("cfg") / "cluster.yaml", cluster_cfg(shards[0], database))
    result = cli("storage", "init", "--config", str(path))
    assert result.exit_code == 0, result.output
    cluster = write_steps(cluster_cfg(shards[0], database), steps)
    single = write_steps(shards[0].config(unique_database(), history_resolution=HISTORY), steps)
    yield database, cluster, single
    cluster.close()
    single.close()


# --------------------------------------------------------------------------------------------------
# storage init
# --------------------------------------------------------------------------------------------------


def test_init_dry_run_prints_the_ddl_of_every_node_and_runs_nothing(
    shards: list[ClickHouseServer], tmp_path: Path
) -> None:
    database = unique_database()
    path = config_file(tmp_path / "c.yaml", cluster_cfg(shards[0], database))
    result = cli("storage", "init", "--config", str(path), "--dry-run")
    assert result.exit_code == 0, result.output
    out = result.output
    assert "no ZooKeeper: the DDL runs on each host in turn" in out
    assert "ON CLUSTER" not in out.split("mode:", 1)[1]
    for s in shards:
        assert f"-- on {s.address}" in out
        # database, version table, a local and a Distributed table per table, their ALTERs (columns a
        # migration adds), a row per version
        alters = 2 * sum(len(m.adds) for m in MIGRATIONS)
        assert out.count(f"-- on {s.address}") == 2 + 2 * len(TABLES) + alters + len(MIGRATIONS)
    assert f"CREATE TABLE IF NOT EXISTS `{database}`.`flow_metrics_local`" in out
    assert f"ENGINE = Distributed('{CLUSTER}', '{database}', 'flow_metrics_local', FlowHash)" in out
    # nothing was created
    store = ClickHouseStore(ClickHouseConfig(**shards[1].config(database)))
    store.open()
    try:
        assert store.query("SELECT count() FROM system.databases WHERE name = %(d)s", {"d": database}) == [
            (0,)
        ]
    finally:
        store.close()


def test_init_creates_local_and_distributed_tables_on_every_node_once(
    shards: list[ClickHouseServer], tmp_path: Path
) -> None:
    database = unique_database()
    path = config_file(tmp_path / "c.yaml", cluster_cfg(shards[0], database))
    first = cli("storage", "init", "--config", str(path))
    assert first.exit_code == 0, first.output
    every = ", ".join(str(m.version) for m in MIGRATIONS)
    assert "mode: per_host" in first.output and f"applied: {every}; now {LATEST}" in first.output
    for s in shards:
        tables = (
            "flow_metrics",
            "flow_metrics_local",
            "heavy_hitters_local",
            "alerts",
            "flows_local",
            "flows",
        )
        for t in (*tables, SCHEMA_TABLE):
            assert f"created  {s.address}: {database}.{t}" in first.output
    again = cli("storage", "init", "--config", str(path))
    assert again.exit_code == 0, again.output
    assert f"applied: none (up to date); now {LATEST}" in again.output and "created" not in again.output
    status = cli("storage", "status", "--config", str(path))
    assert status.exit_code == 0, status.output
    for s in shards:
        assert f"{s.address}: schema version {LATEST}" in status.output
    assert "Distributed" in status.output and "ReplacingMergeTree" in status.output


def test_chdb_refuses_cluster_settings() -> None:
    with pytest.raises(ValueError, match=r"needs a ClickHouse server \(clickhouse.host\).*chdb"):
        ClickHouseConfig(cluster=CLUSTER)


def test_unknown_cluster_is_a_clear_error(shards: list[ClickHouseServer]) -> None:
    ch = shards[0].config(unique_database(), cluster="no_such_cluster")
    w = ClickHouseWriter(ExactWriterConfig(type="clickhouse", enabled=True, clickhouse=ch), "exact")
    with pytest.raises(WriterError, match=r"no cluster 'no_such_cluster' in system\.clusters"):
        w.open()
    w.close()


# --------------------------------------------------------------------------------------------------
# The same answers as one node, rows on both shards
# --------------------------------------------------------------------------------------------------


def test_totals_equal_the_single_node_and_the_golden_summary(stored: Any, batch: PacketBatch) -> None:
    _, cluster, single = stored
    result = aggregate_flows(cluster)
    assert result == aggregate_flows(single) == expected_all(batch, np.arange(len(batch)))
    five = next(s for s in result if s.task_name == "five")
    assert (five.total_packets, five.total_bytes, five.flow_count) == (3882, 577490, 937)
    assert task_names(cluster) == task_names(single)


def test_past_states_windows_traces_and_hitters_equal_the_single_node(stored: Any, steps: list[Step]) -> None:
    _, cluster, single = stored
    for step in steps:
        end = step.meta.snapshot_ts_ns
        assert aggregate_flows(cluster, end_ns=end) == aggregate_flows(single, end_ns=end)
        start = steps[0].meta.snapshot_ts_ns + 1
        if start <= end:
            window = aggregate_flows(cluster, end_ns=end, start_ns=start)
            assert window == aggregate_flows(single, end_ns=end, start_ns=start)
    for src in ("10.0.2.15", "192.0.2.99"):
        assert trace_flow(cluster, "five", {"SrcIP": src}) == trace_flow(single, "five", {"SrcIP": src})
    for task, kind in (("cm", HitterType.COUNT), ("cm", HitterType.SIZE), ("ss", HitterType.SPREAD)):
        got = heavy_hitters(cluster, task, kind, limit=50)
        assert got == heavy_hitters(single, task, kind, limit=50) and got


def test_rows_are_spread_over_both_shards_and_each_flow_on_one(
    stored: Any, shards: list[ClickHouseServer]
) -> None:
    database, cluster, _ = stored
    per_node = [local_rows(s, database, "flow_metrics_local") for s in shards]
    assert all(len(rows) > 100 for rows in per_node), [len(r) for r in per_node]
    total = cluster.query(f"SELECT count() FROM {cluster.table('flow_metrics')}")[0][0]
    assert sum(map(len, per_node)) == total
    # the flow key decides the shard: no (task, period, flow) has rows on both
    assert not set(per_node[0]) & set(per_node[1])
    # FINAL works per shard: with every version of a flow on one shard it keeps one row per flow and bucket
    final = cluster.query(
        f"SELECT count() FROM {cluster.table('flow_metrics')} FINAL WHERE TaskName = 'five' "
        "AND PeriodStartNs = (SELECT min(PeriodStartNs) FROM " + cluster.table("flow_metrics") + ")"
    )[0][0]
    distinct = cluster.query(
        "SELECT uniqExact(SrcIP, DstIP, SrcPort, DstPort, Protocol, Bucket) "
        f"FROM {cluster.table('flow_metrics')} "
        "WHERE TaskName = 'five' AND PeriodStartNs = (SELECT min(PeriodStartNs) FROM "
        + cluster.table("flow_metrics")
        + ")"
    )[0][0]
    assert final == distinct


def test_flow_records_on_a_cluster_read_back_once_each(shards: list[ClickHouseServer]) -> None:
    """Flow records go through the Distributed ``flows`` table, a record's retried write lands on the
    shard of its first, and ``list_flows`` (FINAL over the Distributed table) gives each record once."""
    from test_flow_records_store import expected, run_task, sort_identity, write_all

    from netspectra.flows.task import FlowParams
    from netspectra.storage.flow_records import FlowRecordFilter, list_flows

    increments = {"gnu": run_task("gnu", ["gnutella.pcap"], FlowParams(splt=3, idle_timeout_ns=15 * 10**9))}
    database = unique_database()
    store = write_all(cluster_cfg(shards[0], database), increments)
    try:
        want = expected(increments, "gnu")
        per_node = [
            local_rows(s, database, "flows_local", "TaskName, FirstSeenNs, SrcIP, DstIP, SrcPort, DstPort")
            for s in shards
        ]
        assert all(per_node) and not set(per_node[0]) & set(per_node[1])
        page = list_flows(store, FlowRecordFilter(task="gnu"), limit=10_000)
        assert page.total == want.num_rows
        assert sort_identity(page.records).equals(sort_identity(want))
    finally:
        store.close()


def test_rollups_on_a_cluster_equal_the_traffic(shards: list[ClickHouseServer]) -> None:
    """The engine's rollup rows (retried writes, three periods) through the Distributed rollup tables:
    every version of a row on one shard (the task and bucket's), both shards used, and every range of every
    resolution read back (FINAL over the Distributed tables) equal to the traffic."""
    from test_rollup_store import check_ranges, run_engine, traffic

    from netspectra.storage.store import connect_store

    database = unique_database()
    ch = cluster_cfg(shards[0], database)
    batches = traffic(seed=8)
    run_engine(ch, batches)
    per_node = [local_rows(s, database, "rollup_1m_local", "TaskName, BucketNs") for s in shards]
    assert all(per_node) and not set(per_node[0]) & set(per_node[1])
    store = connect_store(ClickHouseConfig(**ch))
    try:
        check_ranges(store, batches, seed=2)
    finally:
        store.close()


def test_analyze_store_into_the_cluster_gives_the_golden_totals(
    shards: list[ClickHouseServer], tmp_path: Path
) -> None:
    """``netspectra analyze … --store`` (the engine, its writers and alert sink) with a cluster config; no
    ``storage init`` before: the writers' open() creates and migrates the tables."""
    from test_analyze_store import check_store, config_text

    database = unique_database()
    conf = tmp_path / "c.yaml"
    conf.write_text(config_text(shards[0].config(database, cluster=CLUSTER)))
    check_store(conf, tmp_path)
    per_node = [len(local_rows(s, database, "flow_metrics_local")) for s in shards]
    assert min(per_node) > 100, per_node


def test_retention_drops_periods_on_every_node(shards: list[ClickHouseServer], steps: list[Step]) -> None:
    database = unique_database()
    store = write_steps(cluster_cfg(shards[0], database), steps[:3])
    try:
        assert aggregate_flows(store)
        dropped = store.expire(retention_ns=1, now_ns=steps[-1].meta.snapshot_ts_ns + 10**18)
        assert dropped
        assert aggregate_flows(store) == []
        for s in shards:
            assert local_rows(s, database, "flow_metrics_local") == []
    finally:
        store.close()


def _set_version(server: ClickHouseServer, database: str, version: int) -> None:
    store = ClickHouseStore(ClickHouseConfig(**server.config(database)))
    store.open()
    try:
        store.execute(
            f"INSERT INTO {store.table(SCHEMA_TABLE)} (Version, AppliedAt, Description) "
            "SELECT %(v)s, now(), 'from the future'",
            {"v": version},
        )
    finally:
        store.close()


def test_a_newer_schema_version_is_refused(shards: list[ClickHouseServer], tmp_path: Path) -> None:
    database = unique_database()
    ch = cluster_cfg(shards[0], database)
    store = ClickHouseStore(ClickHouseConfig(**ch))
    store.open()
    try:
        assert store.ensure_schema().mode == "per_host"
        # up to date: a restart checks the connected node only
        assert store.ensure_schema().mode == "checked"
        assert store.ensure_schema(every_node=True).mode == "per_host"
    finally:
        store.close()
    # storage init checks every node: a newer version on the second one is refused, naming it
    _set_version(shards[1], database, LATEST + 1)
    path = config_file(tmp_path / "c.yaml", ch)
    result = cli("storage", "init", "--config", str(path))
    assert result.exit_code == 1
    assert f"schema version {LATEST + 1} ({shards[1].address}: {LATEST + 1})" in result.output
    assert "upgrade NetSpectra" in result.output
    # a writer refuses a newer version on the node it connects to
    _set_version(shards[0], database, LATEST + 1)
    w = ClickHouseWriter(ExactWriterConfig(type="clickhouse", enabled=True, clickhouse=ch), "exact")
    with pytest.raises(WriterError, match=rf"schema version {LATEST + 1} .*upgrade NetSpectra"):
        w.open()
    w.close()


# --------------------------------------------------------------------------------------------------
# Another layout on an existing database is refused, naming node, table and engines
# --------------------------------------------------------------------------------------------------


def _engines(server: ClickHouseServer, database: str) -> dict[str, str]:
    store = ClickHouseStore(ClickHouseConfig(**server.config(database)))
    store.open()
    try:
        rows = store.query("SELECT name, engine FROM system.tables WHERE database = %(d)s", {"d": database})
        return {str(n): str(e) for n, e in rows}
    finally:
        store.close()


def test_cluster_mode_on_a_single_node_database_is_refused_before_any_ddl(
    shards: list[ClickHouseServer],
) -> None:
    database = unique_database()
    single = ClickHouseStore(ClickHouseConfig(**shards[0].config(database)))
    single.open()
    try:
        assert single.ensure_schema().mode == "single"
    finally:
        single.close()
    before = [_engines(s, database) for s in shards]
    for every_node in (False, True):  # a writer's check and `storage init` alike
        store = ClickHouseStore(ClickHouseConfig(**cluster_cfg(shards[0], database)))
        store.open()
        try:
            with pytest.raises(LayoutError) as err:
                store.ensure_schema(every_node=every_node)
        finally:
            store.close()
        text = str(err.value)
        assert (
            f"{shards[0].address}: {database}.flow_metrics is ReplacingMergeTree(TimestampNs), expected "
            f"Distributed('{CLUSTER}', '{database}', 'flow_metrics_local', FlowHash)" in text
        )
        assert f"{database}.alerts is MergeTree" in text and "alerts_local is" not in text
        assert shards[1].address not in text  # nothing there yet: nothing wrong there
        assert "point clickhouse.database at a new database" in text and "docs/storage.md" in text
    # refused before any data table was created on either node
    after = [_engines(s, database) for s in shards]
    assert after[0] == before[0] and set(after[1]) <= {SCHEMA_TABLE}


def test_independent_single_nodes_joined_into_a_cluster_are_refused_naming_each_node(
    shards: list[ClickHouseServer],
) -> None:
    """Case B: every node at the latest version with plain tables: the engines are named, not a
    misleading "alerts_local exists without the columns"."""
    database = unique_database()
    for s in shards:
        st = ClickHouseStore(ClickHouseConfig(**s.config(database)))
        st.open()
        st.ensure_schema()
        st.close()
    store = ClickHouseStore(ClickHouseConfig(**cluster_cfg(shards[0], database)))
    store.open()
    try:
        with pytest.raises(LayoutError) as err:
            store.ensure_schema(every_node=True)
    finally:
        store.close()
    text = str(err.value)
    for s in shards:
        assert f"{s.address}: {database}.heavy_hitters is ReplacingMergeTree(TimestampNs)" in text
    assert "without the columns" not in text


@pytest.mark.parametrize(
    ("change", "table", "found"),
    [
        ({"sharding_key": "task"}, "flow_metrics", "FlowHash"),
        ({"local_suffix": "_shard"}, "flow_metrics", "'flow_metrics_local'"),
        ({"replicated": True}, "flow_metrics_local", "is ReplacingMergeTree"),
    ],
)
def test_switching_the_cluster_layout_is_refused(
    shards: list[ClickHouseServer], change: dict[str, object], table: str, found: str
) -> None:
    database = unique_database()
    store = ClickHouseStore(ClickHouseConfig(**cluster_cfg(shards[0], database)))
    store.open()
    try:
        store.ensure_schema()
    finally:
        store.close()
    store = ClickHouseStore(ClickHouseConfig(**cluster_cfg(shards[0], database, **change)))
    store.open()
    try:
        with pytest.raises(LayoutError) as err:
            store.ensure_schema()  # the fast path of a writer does not take the node for up to date
    finally:
        store.close()
    text = str(err.value)
    assert f"{shards[0].address}: {database}.{table} is " in text and found in text, text
    assert f"{shards[1].address}: {database}.{table} is " in text, text
    # and back to one node: plain tables expected, Distributed found
    single = ClickHouseStore(ClickHouseConfig(**shards[0].config(database)))
    single.open()
    try:
        with pytest.raises(LayoutError, match=r"flow_metrics is Distributed\('ns_two_shards'.* expected "):
            single.ensure_schema()
    finally:
        single.close()


# --------------------------------------------------------------------------------------------------
# Replicated: two replicas of one shard, ON CLUSTER (needs ZooKeeper)
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def replicas(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[ClickHouseServer]]:
    zk = start_zookeeper(tmp_path_factory.mktemp("zookeeper"))
    try:
        servers = start_cluster(
            tmp_path_factory.mktemp("ch-replicas"), REPLICATED, [2], zookeeper=("127.0.0.1", zk.port)
        )
        try:
            yield servers
        finally:
            for s in servers:
                s.stop()
    finally:
        zk.stop()


def test_replicated_cluster_uses_on_cluster_and_replicates(
    replicas: list[ClickHouseServer], steps: list[Step], batch: PacketBatch, tmp_path: Path
) -> None:
    database = unique_database()
    ch = replicas[0].config(database, cluster=REPLICATED, replicated=True, history_resolution=HISTORY)
    path = config_file(tmp_path / "r.yaml", ch)
    dry = cli("storage", "init", "--config", str(path), "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert f"-- on ON CLUSTER {REPLICATED}" in dry.output and "ZooKeeper found" in dry.output
    assert (
        f"ReplicatedReplacingMergeTree('/clickhouse/tables/{{shard}}/{database}/flow_metrics_local'"
        in dry.output
    )
    result = cli("storage", "init", "--config", str(path))
    assert result.exit_code == 0, result.output
    assert "mode: on_cluster" in result.output
    for s in replicas:
        assert f"created  {s.address}: {database}.flow_metrics_local" in result.output
    store = write_steps(ch, steps)
    try:
        assert aggregate_flows(store) == expected_all(batch, np.arange(len(batch)))
        # every replica has every row (replication), whichever one the Distributed insert went to
        total = store.query(f"SELECT count() FROM {store.table('flow_metrics')}")[0][0]
        deadline = time.monotonic() + 30
        while True:
            counts = [len(local_rows(s, database, "flow_metrics_local")) for s in replicas]
            if counts == [total, total] or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert counts == [total, total]
    finally:
        store.close()


# --------------------------------------------------------------------------------------------------
# Schema version 3 on a cluster: the key columns added to the local and the Distributed tables
# --------------------------------------------------------------------------------------------------


def test_version_2_cluster_gets_the_key_columns_on_every_node(
    shards: list[ClickHouseServer], steps: list[Step], tmp_path: Path
) -> None:
    """A cluster database whose flow_metrics (local and Distributed, on both shards) predates the key
    columns: ``storage init`` adds them node by node (local tables with their sorting key, Distributed
    tables), rows written before still answer, and a task keyed on SrcAS stores through the Distributed
    table onto both shards."""
    import dataclasses

    from netspectra.storage.cluster import Layout
    from netspectra.storage.schema import ADDED_KEY_COLUMNS, FLOW_METRICS, FLOW_PRIMARY_KEY

    database = unique_database()
    ch = cluster_cfg(shards[0], database)
    old = dataclasses.replace(
        FLOW_METRICS,
        columns=tuple(c for c in FLOW_METRICS.columns if c[0] not in ADDED_KEY_COLUMNS),
        order_by=FLOW_PRIMARY_KEY,
        primary_key="",
    )
    layout = Layout.from_config(ClickHouseConfig(**ch))
    for s in shards:
        store = ClickHouseStore(ClickHouseConfig(**s.config(database)))
        store.open()
        try:
            store.execute(f"CREATE DATABASE IF NOT EXISTS {store.db}")
            store.execute(old.create_sql(layout.qualified(layout.local_name("flow_metrics"))))
            dist = (CLUSTER, database, layout.local_name("flow_metrics"), old.sharding_expression("flow"))
            store.execute(old.create_sql(layout.qualified("flow_metrics"), distributed=dist))
        finally:
            store.close()
    five = steps[0].flows["five"]
    w = ClickHouseWriter(ExactWriterConfig(type="clickhouse", enabled=True, clickhouse=ch), "exact")
    store = ClickHouseStore(ClickHouseConfig(**ch))
    store.open()
    try:
        from netspectra.storage.clickhouse import flow_rows

        store.insert("flow_metrics", flow_rows(five, steps[0].meta, 60))  # a row of schema version 2
    finally:
        store.close()
    result = cli("storage", "init", "--config", str(config_file(tmp_path / "c.yaml", ch)))
    assert result.exit_code == 0, result.output
    for s in shards:
        for table in ("flow_metrics_local", "flow_metrics"):
            store = ClickHouseStore(ClickHouseConfig(**s.config(database)))
            store.open()
            try:
                cols = {str(r[0]) for r in store.query(
                    "SELECT name FROM system.columns WHERE database = %(d)s AND table = %(t)s",
                    {"d": database, "t": table})}  # fmt: skip
            finally:
                store.close()
            assert set(ADDED_KEY_COLUMNS) <= cols, (s.address, table)
    from netspectra.tasks.exact import ExactTask

    by_port = ExactTask("by_vlan_port", ["DstPort", "VlanID"])
    by_port.update(single_node.read_capture())
    with w:
        w.write_flows(by_port.snapshot(), steps[0].meta)
    store = ClickHouseStore(ClickHouseConfig(**ch))
    store.open()
    try:
        totals = {t.task_name: t for t in aggregate_flows(store)}
        task_rows = {t: totals[t].total_packets for t in totals}
        assert task_rows["five"] == five.total_packets
        assert task_rows["by_vlan_port"] == by_port.snapshot().total_packets
        assert trace_flow(store, "by_vlan_port", {"VlanID": 0}).total_packets == task_rows["by_vlan_port"]
    finally:
        store.close()
    assert all(local_rows(s, database, "flow_metrics_local", "count()")[0][0] > 0 for s in shards)
