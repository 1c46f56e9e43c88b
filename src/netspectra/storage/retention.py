"""Retention: whole partitions dropped once their newest row is older than the table's retention.

Each declared table (:class:`~netspectra.storage.schema.Table`) says which UTC-ns column dates its rows
(``retention_time``) and which ``clickhouse`` key holds its retention (``retention_setting``; today every
table uses ``retention``, a rollup would have its own). :func:`expire` finds the partitions whose newest
row is older than ``now - retention`` and drops them (``ALTER TABLE … DROP PARTITION``; in cluster mode
on the local table of every node, the Distributed table holds no rows).

Not a row TTL, on purpose: 18.16 has none, and for ``flow_metrics`` a row TTL would be wrong even where
it exists — the writer stores only changed flows, so a flow that went quiet early in a long period has
only old rows while its period still runs; dropping partitions whose *newest* row is old never touches a
running period. See docs/storage.md ("Retention").
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection
from datetime import timedelta
from typing import TYPE_CHECKING

from netspectra.storage.cluster import cluster_nodes, node_stores
from netspectra.storage.schema import (
    EXPORTER_TABLE,
    FLOW_RECORDS_TABLE,
    FLOW_TABLE,
    HITTER_TABLE,
    ROLLUP_TABLES,
    TABLES,
    Table,
)

if TYPE_CHECKING:
    from netspectra.storage.clickhouse_config import ClickHouseConfig
    from netspectra.storage.store import ClickHouseStore

log = logging.getLogger(__name__)


def retention_of(cfg: ClickHouseConfig, table: Table) -> int:
    """The retention of ``table`` under ``cfg`` in ns (0: kept forever, or never expired)."""
    if not table.retention_time:
        return 0
    value: timedelta | None = getattr(cfg, table.retention_setting)
    return int(value.total_seconds() * 1e9) if value else 0


def retentions(cfg: ClickHouseConfig, tables: Collection[str] | None = None) -> dict[str, int]:
    """Every table (of ``tables``; default: all) with a retention under ``cfg``: name → retention in ns."""
    return {
        name: ns
        for name, t in TABLES.items()
        if (tables is None or name in tables) and (ns := retention_of(cfg, t))
    }


#: The tables a group's writer writes: the retentions of its ``clickhouse`` section apply to them, the
#: defaults included.
GROUP_TABLES: dict[str, tuple[str, ...]] = {
    "exact": (FLOW_TABLE,),
    "sketch": (HITTER_TABLE,),
    "flows": (FLOW_RECORDS_TABLE,),
    "rollup": ROLLUP_TABLES,
    "exporters": (EXPORTER_TABLE,),
}


def expired_by(cfg: ClickHouseConfig, group: str) -> frozenset[str]:
    """The tables whose old partitions the writer of ``group`` with section ``cfg`` drops: its own group's
    tables, and every table whose retention key the section sets itself (``retention: 168h`` in the
    exact writer's section drops old periods of every table kept by ``retention``, as it always did).
    Not a default of another group's table: the rollup retentions default to a week, 90 days and two
    years in every section, and an exact writer applying them would drop the 1-minute rows after a
    week where the rollup writer's section says 30 days."""
    own = set(GROUP_TABLES.get(group, ()))
    return frozenset(
        name for name, t in TABLES.items() if name in own or t.retention_setting in cfg.model_fields_set
    )


def expire(
    store: ClickHouseStore,
    retention_ns: int | None = None,
    now_ns: int | None = None,
    tables: Collection[str] | None = None,
) -> list[int]:
    """Drop the expired partitions of every table (of ``tables``; default: all) and return them, in table
    order (``YYYYMMDD`` days).

    ``retention_ns`` overrides every table's configured retention; without it each table's own applies
    (tables without one are kept). ``now_ns``: the present (default: the clock).
    """
    now = time.time_ns() if now_ns is None else now_ns
    dropped: list[int] = []
    for name, table in TABLES.items():
        if tables is not None and name not in tables:
            continue
        keep = retention_of(store.cfg, table) if retention_ns is None else retention_ns
        sql = table.expired_partitions_sql(store.table(name))
        if not keep or not sql:
            continue
        for (partition,) in store.query(sql, {"cutoff_ns": max(now - keep, 0)}):
            day = int(partition)  # an integer from the server: safe to write into the statement
            _drop_partition(store, name, day)
            log.info("ClickHouse %s: dropped %s partition %d (retention)", store, name, day)
            dropped.append(day)
    return dropped


def _drop_partition(store: ClickHouseStore, table: str, day: int) -> None:
    """Drop a partition of ``table``; in cluster mode of its local table on every node."""
    layout = store.layout
    if not layout.clustered:
        store.execute(f"ALTER TABLE {store.table(table)} DROP PARTITION {day}")
        return
    local = layout.qualified(layout.local_name(table))
    with node_stores(store, cluster_nodes(store)) as stores:
        for node in stores.values():
            node.execute(f"ALTER TABLE {local} DROP PARTITION {day}")


__all__ = ["GROUP_TABLES", "expire", "expired_by", "retention_of", "retentions"]
