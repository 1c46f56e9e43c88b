"""The DDL of the table layouts (one node, cluster, replicated cluster) and the order of migration plans.

No server needed; tests/integration/test_clickhouse_cluster.py runs the statements on real 18.16 servers.
"""

from __future__ import annotations

import pytest

from netspectra.storage.clickhouse_config import ClickHouseConfig
from netspectra.storage.cluster import DATA_TABLES, Layout
from netspectra.storage.migrations import LATEST, MIGRATIONS, SCHEMA_TABLE, plan
from netspectra.storage.schema import CREATE_TABLES, create_table_sql, quote_identifier


def layout(**kw: object) -> Layout:
    cfg = ClickHouseConfig(host="ch1", database="netdb", **kw)
    return Layout.from_config(cfg)


def test_single_node_ddl_is_the_schema_of_before() -> None:
    got = layout().create_data_tables_sql()
    # the tables of schema version 1 as they always were, then the later ones
    want = [
        CREATE_TABLES[t].format(db="`netdb`").replace(f"`netdb`.{t} (", f"`netdb`.{quote_identifier(t)} (")
        for t in CREATE_TABLES
    ]
    assert got[: len(want)] == want
    assert DATA_TABLES[: len(want)] == tuple(CREATE_TABLES)
    assert len(got) == len(DATA_TABLES)
    assert "ON CLUSTER" not in " ".join(layout().create_data_tables_sql(on_cluster=True))
    assert layout().local_name("flow_metrics") == "flow_metrics"


def _by_table(stmts: list[str]) -> dict[str, str]:
    """``CREATE TABLE`` statements by the table's name (back quotes removed)."""
    return {s.split(" (", 1)[0].split("`.`", 1)[1].split("`", 1)[0]: s for s in stmts}


def test_cluster_ddl_local_tables_then_distributed_tables() -> None:
    stmts = layout(cluster="ns").create_data_tables_sql()
    heads = [s.split(" (", 1)[0] for s in stmts]
    assert heads == [f"CREATE TABLE IF NOT EXISTS `netdb`.`{t}_local`" for t in DATA_TABLES] + [
        f"CREATE TABLE IF NOT EXISTS `netdb`.`{t}`" for t in DATA_TABLES
    ]
    by = _by_table(stmts)
    assert "ENGINE = ReplacingMergeTree(TimestampNs)" in by["flow_metrics_local"]
    assert "ORDER BY (TaskName" in by["flow_metrics_local"]
    assert "ENGINE = MergeTree()" in by["alerts_local"]
    assert by["flow_metrics"].endswith("ENGINE = Distributed('ns', 'netdb', 'flow_metrics_local', FlowHash)")
    assert by["heavy_hitters"].endswith(
        "ENGINE = Distributed('ns', 'netdb', 'heavy_hitters_local', cityHash64(TaskName, Flow))"
    )
    assert by["alerts"].endswith(
        "ENGINE = Distributed('ns', 'netdb', 'alerts_local', cityHash64(TaskName, RuleName))"
    )
    # a flow record's rows (a retried write) meet on one shard, where FINAL folds them
    assert by["flows"].endswith("ENGINE = Distributed('ns', 'netdb', 'flows_local', FlowHash)")
    # every version of a rollup row too: the same task and bucket
    for res in ("1m", "5m", "1h"):
        assert "ENGINE = ReplacingMergeTree(TimestampNs)" in by[f"rollup_{res}_local"]
        assert by[f"rollup_{res}"].endswith(
            f"ENGINE = Distributed('ns', 'netdb', 'rollup_{res}_local', cityHash64(TaskName, BucketNs))"
        )
    assert "PARTITION BY toYYYYMM(" in by["rollup_1h_local"]
    assert "PARTITION BY toYYYYMMDD(" in by["rollup_1m_local"]
    # an exporter's rows of a period (snapshots replacing each other) meet on one shard too
    assert by["exporters"].endswith(
        "ENGINE = Distributed('ns', 'netdb', 'exporters_local', cityHash64(TaskName, Exporter))"
    )
    # the Distributed tables have the same columns, ALIAS columns included (queries use Timestamp etc.)
    n = len(DATA_TABLES)
    for local, dist in zip(stmts[:n], stmts[n:], strict=True):
        assert local.split(" (", 1)[1].split("\n)\n")[0] == dist.split(" (", 1)[1].split("\n)\n")[0]
    assert all("ON CLUSTER" not in s for s in stmts)
    on = layout(cluster="ns").create_data_tables_sql(on_cluster=True)
    assert all(" ON CLUSTER `ns` (" in s for s in on)


def test_replicated_ddl_fills_database_and_table_and_leaves_server_macros() -> None:
    stmts = layout(cluster="ns", replicated=True).create_data_tables_sql()
    assert (
        "ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/netdb/flow_metrics_local', "
        "'{replica}', TimestampNs)"
    ) in stmts[0]
    assert (
        "ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/netdb/alerts_local', '{replica}')"
        in stmts[2]
    )
    custom = layout(
        cluster="ns", replicated=True, zookeeper_path="/zk/{layer}-{shard}/{table}", replica_name="{host}"
    )
    assert (
        "ReplicatedReplacingMergeTree('/zk/{layer}-{shard}/flow_metrics_local', '{host}', TimestampNs)"
        in (custom.create_data_tables_sql()[0])
    )
    assert "Distributed(" in _by_table(stmts)["flow_metrics"]  # the Distributed tables are not replicated


@pytest.mark.parametrize(
    ("key", "expr"), [("flow", "FlowHash"), ("task", "cityHash64(TaskName)"), ("random", "rand()")]
)
def test_sharding_keys(key: str, expr: str) -> None:
    stmts = layout(cluster="ns", sharding_key=key, local_suffix="_shard").create_data_tables_sql()
    assert _by_table(stmts)["flow_metrics"].endswith(
        f"Distributed('ns', 'netdb', 'flow_metrics_shard', {expr})"
    )


def test_names_are_quoted_everywhere() -> None:
    evil = "c`l'u\\s"
    lay = Layout(database="d'b`", cluster=evil)
    stmt = lay.create_data_tables_sql(on_cluster=True)[len(DATA_TABLES)]
    assert stmt.startswith("CREATE TABLE IF NOT EXISTS `d'b\\``.`flow_metrics` ON CLUSTER `c\\`l'u\\\\s` (")
    assert "Distributed('c`l\\'u\\\\s', 'd\\'b`', 'flow_metrics_local', FlowHash)" in stmt
    with pytest.raises(ValueError, match="sharding expression"):
        create_table_sql("flow_metrics", "`d`.`t`", distributed=("c", "d", "t", "1; DROP TABLE x"))


def test_plans_in_order() -> None:
    creates = [len(m.creates) for m in MIGRATIONS]
    adds = [len(m.adds) for m in MIGRATIONS]
    single = plan(layout())
    # the database and the schema table, then per migration its tables, its ALTERs and its version row
    versions = [m.version for m in MIGRATIONS]  # 1, 2, ... (a version reserved for a branch skipped)
    assert [s.target for s in single] == ["local"] * (2 + sum(creates) + sum(adds) + len(MIGRATIONS))
    assert single[0].sql == "CREATE DATABASE IF NOT EXISTS `netdb`"
    assert single[1].sql.startswith(f"CREATE TABLE IF NOT EXISTS `netdb`.`{SCHEMA_TABLE}` (Version UInt32")
    assert [s.records for s in single if s.records] == versions
    assert single[-1].records == LATEST and single[-1].sql.startswith(f"INSERT INTO `netdb`.`{SCHEMA_TABLE}`")
    assert plan(layout(), versions={"local": LATEST})[2:] == []  # nothing pending
    # an ALTER runs only where its table lacks the columns
    alters = [s for s in single if s.sql.startswith("ALTER TABLE")]
    assert len(alters) == sum(adds) and all(s.unless_columns is not None for s in alters)

    nodes = ["a:9000", "b:9000"]
    per_host = plan(layout(cluster="ns"), "per_host", nodes)
    want = ["a:9000"] * 2 + ["b:9000"] * 2
    for n, a in zip(creates, adds, strict=True):  # local and Distributed tables (and ALTERs) on each node
        want += ["a:9000"] * (2 * (n + a)) + ["b:9000"] * (2 * (n + a)) + nodes
    assert [s.target for s in per_host] == want
    # a node at a version gets no second row for it; the idempotent DDL runs for the other
    partial = plan(layout(cluster="ns"), "per_host", nodes, {"a:9000": 1})
    assert [(s.target, s.records) for s in partial if s.records] == [("b:9000", 1)] + [
        (node, v) for v in versions[1:] for node in nodes
    ]

    on = plan(layout(cluster="ns"), "on_cluster", nodes)
    want = ["ON CLUSTER ns"] * 2
    for n, a in zip(creates, adds, strict=True):  # tables ON CLUSTER, column changes node by node
        want += ["ON CLUSTER ns"] * (2 * n) + nodes * (2 * a) + nodes
    assert [s.target for s in on] == want
    assert on[0].sql == "CREATE DATABASE IF NOT EXISTS `netdb` ON CLUSTER `ns`"
    assert " ON CLUSTER `ns` (Version" in on[1].sql


def test_config_rejects_inconsistent_cluster_settings() -> None:
    with pytest.raises(ValueError, match=r"cluster \('ns'\) needs a ClickHouse server.*chdb"):
        ClickHouseConfig(cluster="ns")
    with pytest.raises(ValueError, match=r"replicated needs clickhouse\.cluster"):
        ClickHouseConfig(host="h", replicated=True)
    with pytest.raises(ValueError, match=r"'flw' is not a sharding key.*did you mean 'flow'"):
        ClickHouseConfig(host="h", cluster="ns", sharding_key="flw")
    with pytest.raises(ValueError, match=r"containing \{table\}"):
        ClickHouseConfig(host="h", cluster="ns", zookeeper_path="/clickhouse/tables/{shard}")
    with pytest.raises(ValueError, match="suffix"):
        ClickHouseConfig(host="h", cluster="ns", local_suffix="")
    cfg = ClickHouseConfig(host="h")
    assert (cfg.cluster, cfg.replicated, cfg.sharding_key, cfg.local_suffix) == ("", False, "flow", "_local")
