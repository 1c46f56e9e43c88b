"""The shape of the storage layer: one backend seam, one place that chooses the engine, tables declared
once, no import cycle, and no SQL outside storage.

Structural checks on the source (the behaviour behind them is tested end to end on chdb and on 18.16
servers in tests/integration/test_clickhouse*.py).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from netspectra.storage.backend import Backend, select_backend
from netspectra.storage.backend_chdb import ChdbBackend
from netspectra.storage.backend_server import ServerBackend, tls_hint
from netspectra.storage.clickhouse_config import ClickHouseConfig
from netspectra.storage.cluster import Layout
from netspectra.storage.migrations import MIGRATIONS, Migration, _check_registry
from netspectra.storage.schema import TABLES, Table

SRC = Path(__file__).resolve().parents[2] / "src" / "netspectra"
BACKENDS = {"backend_chdb.py", "backend_server.py"}
ENGINE_MODULES = ("chdb", "clickhouse_driver")


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
    return out


def test_only_the_two_backends_know_the_engines() -> None:
    offenders = []
    for path in sorted(SRC.rglob("*.py")):
        if path.parent.name == "storage" and path.name in BACKENDS:
            continue
        engines = {m for m in _imports(path) if m.split(".")[0] in ENGINE_MODULES}
        if engines:
            offenders.append(f"{path.relative_to(SRC)}: {sorted(engines)}")
    assert offenders == []


def test_one_place_chooses_the_backend() -> None:
    assert isinstance(select_backend(ClickHouseConfig(host="db")), ServerBackend)
    assert isinstance(select_backend(ClickHouseConfig(host="db")), Backend)
    chdb = select_backend(ClickHouseConfig(data_dir="/tmp/ns-seam-unused"))
    assert isinstance(chdb, ChdbBackend) and isinstance(chdb, Backend) and not chdb.is_open
    constructed = []
    for path in sorted(SRC.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Call) and getattr(node.func, "id", "") in (
                "ChdbBackend",
                "ServerBackend",
            ):
                constructed.append(str(path.relative_to(SRC)))
    assert sorted(set(constructed)) == ["storage/backend.py"]


def test_store_and_migrations_import_without_a_cycle() -> None:
    """Each storage module imports on its own in a fresh interpreter (a cycle fails for one of them),
    and neither migrations, cluster nor retention imports the store module."""
    for name in ("migrations", "cluster", "retention", "store", "clickhouse", "queries", "alerts"):
        code = f"import netspectra.storage.{name}"
        subprocess.run([sys.executable, "-c", code], check=True)
    for name in ("migrations.py", "cluster.py", "retention.py", "schema.py", "backend.py"):
        assert "netspectra.storage.store" not in _runtime_imports(SRC / "storage" / name), name


def _runtime_imports(path: Path) -> set[str]:
    """Imports outside ``if TYPE_CHECKING:`` blocks."""
    tree = ast.parse(path.read_text(), str(path))
    out: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            return
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return out


def test_the_http_face_builds_no_sql_and_imports_nothing_private_from_storage() -> None:
    for path in sorted((SRC / "api").rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("netspectra.storage"):
                private = [a.name for a in node.names if a.name.startswith("_")]
                assert private == [], f"{path.name} imports {private} from {node.module}"
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                text = node.value.upper()
                assert not ("SELECT " in text and " FROM " in text), f"{path.name}: SQL {node.value[:60]!r}"


def test_every_table_is_declared_once_and_created_by_one_migration() -> None:
    _check_registry()
    created = [t for m in MIGRATIONS for t in m.creates]
    assert sorted(created) == sorted(TABLES)


def test_a_new_table_is_a_declaration_and_a_migration(monkeypatch: pytest.MonkeyPatch) -> None:
    """What adding the next table takes (the ``flows`` records, a rollup): a :class:`Table` in
    ``TABLES`` and a ``Migration(n + 1, …, creates=(name,))`` — its DDL on one node and on a cluster,
    its engine check and its retention follow from the declaration; a table without a migration (or
    created twice) is refused."""
    from netspectra.storage import migrations

    rollup = Table(
        "flow_rollup_1m",
        (("BucketNs", "UInt64"), ("TaskName", "String"), ("Packets", "UInt64"), ("Bytes", "UInt64")),
        order_by="TaskName, BucketNs",
        partition_by="toYYYYMM(toDateTime(intDiv(BucketNs, 1000000000), 'UTC'))",
        engine="SummingMergeTree",
        engine_args=("(Packets, Bytes)",),
        aliases=(("Bucket", "BucketNs"),),
        retention_time="BucketNs",
        retention_setting="retention",
    )
    monkeypatch.setitem(TABLES, rollup.name, rollup)
    with pytest.raises(AssertionError, match="not created \\['flow_rollup_1m'\\]"):
        _check_registry()
    v2 = Migration(MIGRATIONS[-1].version + 1, "1-minute rollups", creates=(rollup.name,))
    monkeypatch.setattr(migrations, "MIGRATIONS", (*MIGRATIONS, v2))
    monkeypatch.setattr(migrations, "LATEST", v2.version)
    migrations._check_registry()
    one = v2.sql(Layout(database="db"), False)
    assert one == [
        "CREATE TABLE IF NOT EXISTS `db`.`flow_rollup_1m` (\n    BucketNs UInt64,\n    TaskName String,\n"
        "    Packets UInt64,\n    Bytes UInt64,\n"
        "    Bucket DateTime('UTC') ALIAS toDateTime(intDiv(BucketNs, 1000000000), 'UTC')\n)\n"
        "ENGINE = SummingMergeTree((Packets, Bytes))\n"
        "PARTITION BY toYYYYMM(toDateTime(intDiv(BucketNs, 1000000000), 'UTC'))\n"
        "ORDER BY (TaskName, BucketNs)"
    ]
    cluster = v2.sql(Layout(database="db", cluster="c", replicated=True), True)
    assert [s.split(" (", 1)[0] for s in cluster] == [
        "CREATE TABLE IF NOT EXISTS `db`.`flow_rollup_1m_local` ON CLUSTER `c`",
        "CREATE TABLE IF NOT EXISTS `db`.`flow_rollup_1m` ON CLUSTER `c`",
    ]
    assert "ReplicatedSummingMergeTree('/clickhouse/tables/{shard}/db/flow_rollup_1m_local'" in cluster[0]
    assert cluster[1].endswith("Distributed('c', 'db', 'flow_rollup_1m_local', cityHash64(TaskName))")
    assert migrations.expected_engines(Layout(database="db"))["flow_rollup_1m"] == "SummingMergeTree"
    assert rollup.expired_partitions_sql("`db`.`flow_rollup_1m`").startswith(
        "SELECT toYYYYMM(toDateTime(intDiv(BucketNs, 1000000000), 'UTC')) AS p FROM `db`.`flow_rollup_1m` "
        "GROUP BY p HAVING max(BucketNs) < %(cutoff_ns)s"
    )


@pytest.mark.parametrize(
    ("message", "says"),
    [
        ("[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed", "clickhouse.ca_file"),
        ("[SSL: WRONG_VERSION_NUMBER] wrong version number", "tcp_port_secure"),
        (
            "[SSL: TLSV13_ALERT_CERTIFICATE_REQUIRED] tlsv13 alert certificate required",
            "clickhouse.cert_file",
        ),
        ("[SSL: TLSV1_ALERT_UNKNOWN_CA] tlsv1 alert unknown ca", "refused the client certificate"),
        ("Code: 193. Wrong password for user x", ""),
    ],
)
def test_tls_failures_say_what_to_check(message: str, says: str) -> None:
    hint = tls_hint(message)
    assert (says in hint) if says else hint == ""
