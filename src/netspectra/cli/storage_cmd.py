"""``netspectra storage``: create, migrate and inspect the ClickHouse tables of a configuration."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from netspectra.cli.common import ConfigOption, console, err_console, fail, require

if TYPE_CHECKING:
    from netspectra.config.models import Config
    from netspectra.storage.clickhouse_config import ClickHouseConfig

app = typer.Typer(
    help="Create, migrate and inspect the ClickHouse tables of the configuration's clickhouse writers.\n\n"
    "Every enabled `clickhouse` writer of aggregator.exact and aggregator.sketch is a target (the same "
    "server and database once). One node (clickhouse.host empty: embedded chdb; else a server) or a "
    "cluster (clickhouse.cluster: local tables on every node plus Distributed tables over them; "
    "clickhouse.replicated: Replicated*MergeTree). Writers and the query service run the same "
    "migrations when they start; `init` does it ahead of time and shows what it does. "
    "See docs/storage.md (Cluster mode, Upgrading the schema).",
    no_args_is_help=True,
    rich_markup_mode="markdown",
)


def _targets(cfg: Config) -> list[ClickHouseConfig]:
    """The ``clickhouse`` sections of the enabled clickhouse writers, each distinct one once."""
    out: list[ClickHouseConfig] = []
    seen: set[str] = set()
    for _, _, writer in cfg.writers():
        if writer.enabled and writer.type == "clickhouse":
            key = writer.params.model_dump_json()
            if key not in seen:
                seen.add(key)
                out.append(writer.params)
    return out


def _load(config: Path | None) -> list[ClickHouseConfig]:
    from netspectra.config import ConfigError, load_config

    try:
        cfg = load_config(config)
    except ConfigError as exc:
        raise fail(str(exc), code=2) from None
    targets = _targets(cfg)
    if not targets:
        raise fail(
            f"{cfg.source}: no enabled clickhouse writer in aggregator.exact or aggregator.sketch; nothing "
            "to initialise",
            code=2,
        )
    return targets


def _describe(ch: ClickHouseConfig) -> str:
    from netspectra.storage.store import ClickHouseStore

    where = ClickHouseStore(ch).describe()
    cluster = ""
    if ch.cluster:
        cluster = f", cluster {ch.cluster!r}" + (" (replicated)" if ch.replicated else "")
    return f"{where}, database {ch.database!r}{cluster}"


@app.callback()
def _group() -> None:
    pass


@app.command()
def init(
    config: ConfigOption = None,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            help="Print every statement, in order, with where it runs (a node, or ON CLUSTER), and run "
            "nothing. One node: nothing is connected (the plan of a new database). A cluster: the server "
            "is asked (SELECTs only) for its nodes, ZooKeeper and versions.",
        ),
    ] = False,
) -> None:
    """Create the database and tables and apply pending schema migrations (idempotent).

    Reports the schema version before and after, the tables created and those already there. Refuses
    (exit 1) a database whose schema version is newer than this NetSpectra knows.
    """
    require("storage init", "store")
    from netspectra.storage.base import StorageError
    from netspectra.storage.migrations import LATEST, migrate
    from netspectra.storage.migrations import dry_run as plan_dry_run
    from netspectra.storage.store import ClickHouseStore

    failed = False
    for ch in _load(config):
        console.print(f"[bold]{_describe(ch)}[/]", highlight=False, soft_wrap=True)
        store = ClickHouseStore(ch)
        try:
            if dry_run:
                connect = bool(ch.cluster)
                if connect:
                    try:
                        store.open()
                    except StorageError as exc:
                        err_console.print(f"[yellow]warning:[/] {exc}", highlight=False, soft_wrap=True)
                        connect = False
                mode, steps, note = plan_dry_run(store, connect)
                print(f"-- {note}")
                print(f"-- mode: {mode}; schema version of this NetSpectra: {LATEST}")
                for step in steps:
                    print(f"-- on {step.target}")
                    print(f"{step.sql};")
                continue
            store.open()
            report = migrate(store)
        except StorageError as exc:
            err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
            failed = True
            continue
        finally:
            store.close()
        before = ", ".join(f"{n} {v}" for n, v in report.before.items())
        applied = ", ".join(map(str, report.applied)) or "none (up to date)"
        console.print(
            f"mode: {report.mode}; schema version before: {before}; applied: {applied}; now {report.version}",
            highlight=False,
            soft_wrap=True,
        )
        for t in report.created:
            console.print(f"  created  {t}", highlight=False, soft_wrap=True)
        for t in report.existing:
            console.print(f"  existing {t}", highlight=False, soft_wrap=True)
    if failed:
        raise typer.Exit(1)


@app.command()
def status(config: ConfigOption = None) -> None:
    """Show the schema version of every node and the tables with their engines and row counts (active
    parts; a Distributed table holds none itself)."""
    require("storage status", "store")
    from netspectra.storage.base import StorageError
    from netspectra.storage.migrations import LATEST
    from netspectra.storage.migrations import status as read_status
    from netspectra.storage.store import ClickHouseStore

    failed = False
    for ch in _load(config):
        console.print(f"[bold]{_describe(ch)}[/]", highlight=False, soft_wrap=True)
        store = ClickHouseStore(ch)
        data_dir = getattr(store.backend, "data_dir", None)  # the embedded engine's: opening creates it
        if data_dir is not None and not Path(data_dir).exists():
            console.print(
                "  embedded: no data directory yet (nothing stored; `netspectra storage init`, "
                "`analyze --store` or `up` creates it)",
                highlight=False,
                soft_wrap=True,
            )
            continue
        try:
            store.open()
            versions, tables = read_status(store)
        except StorageError as exc:
            err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
            failed = True
            continue
        finally:
            store.close()
        for node, v in versions.items():
            text = "no netspectra_schema (not initialised)" if v < 0 else str(v)
            flag = " (newer than this NetSpectra)" if v > LATEST else ""
            console.print(f"  {node}: schema version {text}{flag}", highlight=False, soft_wrap=True)
        for t in tables:
            console.print(f"  {t.node}  {t.table:<28} {t.engine:<36} {t.rows:>12} rows", highlight=False)
    if failed:
        raise typer.Exit(1)
