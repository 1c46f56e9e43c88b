"""Schema versions on the embedded engine (chdb): migrations applied once, databases of NetSpectra from
before versioning adopted, newer versions refused, and ``netspectra storage init`` / ``status``."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from typer.testing import CliRunner

from netspectra.cli.main import app
from netspectra.config.aggregator import ExactWriterConfig
from netspectra.storage import StorageError, WriterError
from netspectra.storage.clickhouse import ClickHouseStore, ClickHouseWriter, connect_store
from netspectra.storage.clickhouse_config import ClickHouseConfig
from netspectra.storage.migrations import (
    LATEST,
    MIGRATIONS,
    SCHEMA_TABLE,
    SchemaVersionError,
    migrate,
    status,
)
from netspectra.storage.schema import CREATE_TABLES, TABLES

# versions in order; a number reserved by a branch not merged yet may be missing
ALL_VERSIONS = [m.version for m in MIGRATIONS]


def cfg(chdb_data_dir: Path) -> ClickHouseConfig:
    return ClickHouseConfig(data_dir=str(chdb_data_dir), database=f"ns_mig_{uuid.uuid4().hex[:10]}")


def versions(store: ClickHouseStore) -> list[int]:
    return [
        int(v) for (v,) in store.query(f"SELECT Version FROM {store.table(SCHEMA_TABLE)} ORDER BY Version")
    ]


def test_new_database_is_migrated_once(chdb_data_dir: Path) -> None:
    store = ClickHouseStore(cfg(chdb_data_dir))
    store.open()
    try:
        first = migrate(store)
        assert (first.mode, first.before, first.applied, first.version) == (
            "single",
            {"local": 0},
            ALL_VERSIONS,
            LATEST,
        )
        assert {t.split(".")[-1] for t in first.created} >= {
            "flow_metrics",
            "heavy_hitters",
            "alerts",
            SCHEMA_TABLE,
        }
        again = migrate(store)
        assert (again.applied, again.created, again.version) == ([], [], LATEST)
        assert versions(store) == ALL_VERSIONS
        found, tables = status(store)
        assert found == {"local": LATEST}
        assert {t.table for t in tables} == {*TABLES, SCHEMA_TABLE}
    finally:
        store.close()


def test_database_from_before_versioning_is_adopted_with_its_rows(chdb_data_dir: Path) -> None:
    store = ClickHouseStore(cfg(chdb_data_dir))
    store.open()
    try:
        store.execute(f"CREATE DATABASE {store.db}")
        for ddl in CREATE_TABLES.values():  # what NetSpectra created before schema versions existed
            store.execute(ddl.format(db=store.db))
        store.execute(
            f"INSERT INTO {store.table('alerts')} (TimestampNs, TaskName, RuleName, Metric, Operator, "
            "Threshold, Value, Flow, Subject, Delivered, Failed, AiStatus, Final) "
            "SELECT 1, 't', 'r', 'm', '>', 1, 2, NULL, 's', '[]', '{}', 'ok', 0"
        )
        report = migrate(store)
        # version 1 adopted (its tables are there), the later versions applied: their tables created
        later = [f"local: {store.database}.{t}" for m in MIGRATIONS[1:] for t in m.creates]
        assert report.applied == ALL_VERSIONS
        assert sorted(report.created) == sorted([f"local: {store.database}.{SCHEMA_TABLE}", *later])
        assert store.query(f"SELECT count() FROM {store.table('alerts')}") == [(1,)]
    finally:
        store.close()


def test_newer_schema_is_refused(chdb_data_dir: Path) -> None:
    ch = cfg(chdb_data_dir)
    connect_store(ch).close()
    store = ClickHouseStore(ch)
    store.open()
    try:
        store.execute(
            f"INSERT INTO {store.table(SCHEMA_TABLE)} (Version, AppliedAt, Description) "
            "SELECT %(v)s, now(), 'x'",
            {"v": LATEST + 1},
        )
        with pytest.raises(SchemaVersionError, match=rf"schema version {LATEST + 1} .*upgrade NetSpectra"):
            migrate(store)
    finally:
        store.close()
    with pytest.raises(SchemaVersionError):
        connect_store(ch)
    w = ClickHouseWriter(ExactWriterConfig(type="clickhouse", enabled=True, clickhouse=ch), "exact")
    with pytest.raises(WriterError, match=f"knows versions up to {LATEST}"):
        w.open()
    w.close()


def test_embedded_store_refuses_a_cluster_even_past_validation(chdb_data_dir: Path) -> None:
    ch = cfg(chdb_data_dir).model_copy(update={"cluster": "ns"})  # model_copy does not validate
    store = ClickHouseStore(ch)
    with pytest.raises(StorageError, match="needs a ClickHouse server"):
        store.open()
    assert not store.is_open


def _config(tmp_path: Path, ch: ClickHouseConfig) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(
        "aggregator:\n  types: [exact]\n  exact:\n    tasks: [{name: five, key_fields: [SrcIP]}]\n"
        "    writers: [{type: clickhouse, enabled: true, clickhouse: "
        f"{{data_dir: '{ch.data_dir}', database: {ch.database}}}}}]\n"
    )
    return path


def test_storage_init_cli_on_chdb(chdb_data_dir: Path, tmp_path: Path) -> None:
    ch = cfg(chdb_data_dir)
    path = _config(tmp_path, ch)
    runner = CliRunner()
    dry = runner.invoke(app, ["storage", "init", "--config", str(path), "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "nothing connected" in dry.output
    assert f"CREATE DATABASE IF NOT EXISTS `{ch.database}`;" in dry.output
    assert f"CREATE TABLE IF NOT EXISTS `{ch.database}`.`flow_metrics` (" in dry.output
    # the database and netspectra_schema, each table, the ALTERs (migrations 3 and 6), a version row per
    # migration
    alters = sum(len(m.adds) for m in MIGRATIONS)
    assert alters == 2 and dry.output.count("-- on local") == 2 + len(TABLES) + alters + len(MIGRATIONS)
    store = ClickHouseStore(ch)
    store.open()
    try:  # the dry run created nothing
        assert store.query("SELECT count() FROM system.databases WHERE name = %(d)s", {"d": ch.database}) == [
            (0,)
        ]
    finally:
        store.close()
    run = runner.invoke(app, ["storage", "init", "--config", str(path)])
    assert run.exit_code == 0, run.output
    every = ", ".join(str(v) for v in ALL_VERSIONS)
    assert f"schema version before: local 0; applied: {every}; now {LATEST}" in run.output
    assert f"created  local: {ch.database}.flow_metrics" in run.output
    again = runner.invoke(app, ["storage", "init", "--config", str(path)])
    assert (
        "applied: none (up to date)" in again.output
        and f"existing local: {ch.database}.alerts" in again.output
    )
    st = runner.invoke(app, ["storage", "status", "--config", str(path)])
    assert st.exit_code == 0 and f"local: schema version {LATEST}" in st.output
    assert "ReplacingMergeTree" in st.output


def test_storage_status_of_an_embedded_store_not_made_yet_creates_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`storage status` looks: with no data directory yet it says so (exit 0) and leaves none behind."""
    monkeypatch.chdir(tmp_path)
    data = tmp_path / "store"
    path = _config(tmp_path, ClickHouseConfig(data_dir=str(data)))
    st = CliRunner().invoke(app, ["storage", "status", "--config", str(path)])
    assert st.exit_code == 0, st.output
    assert "no data directory yet" in st.output and str(data) in st.output
    assert not data.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["c.yaml"]


def test_storage_help_explains() -> None:
    out = CliRunner().invoke(app, ["storage", "--help"])
    assert out.exit_code == 0
    assert "init" in out.output and "status" in out.output and "cluster" in out.output


def test_node_version_is_the_newest_with_every_earlier_migration_recorded() -> None:
    """A version recorded beyond a missing one does not count (a build that reserved the missing one
    skipped it): the missing migration runs. Newer than LATEST stays, to be refused."""
    from netspectra.storage.migrations import node_version

    every = [m.version for m in MIGRATIONS]
    assert node_version([]) == 0
    assert node_version(every) == LATEST
    assert node_version([*every, *every]) == LATEST  # a version recorded twice
    assert node_version([1, 2, 5]) == 2  # made while 3 was reserved
    assert node_version([1, 2, 3, 5]) == (3 if 4 in every else 5)  # 4 reserved: not a migration here
    assert node_version([1, 3]) == 1
    assert node_version([*every, LATEST + 1]) == LATEST + 1
