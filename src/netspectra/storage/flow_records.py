"""Queries of the stored flow records (the ``flows`` table, :mod:`netspectra.storage.schema`).

Flow records are final facts, one row each, written once when the record ends (a retried write replaces
its row: the table is a ``ReplacingMergeTree`` on the record's identity), so reading them needs no
per-period arithmetic as the exact tasks' cumulative rows do: :func:`list_flows` filters, sorts and pages
them, reading ``FINAL`` so a row written twice counts once. The answer has the columns of
:meth:`netspectra.flows.records.FlowRecords.to_arrow` (times as timestamps, durations as durations), so a
stored record reads back exactly as ``netspectra analyze --flows --out`` wrote it.

As everywhere in :mod:`netspectra.storage`, every value is bound client-side
(:func:`~netspectra.storage.schema.bind`), never pasted into SQL.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, get_args

import pyarrow as pa

from netspectra.storage.queries import _check_times, _ip_text, _number
from netspectra.storage.schema import FLOW_RECORD_COLUMNS, FLOW_RECORDS_TABLE

if TYPE_CHECKING:
    from netspectra.storage.store import ClickHouseStore

log = logging.getLogger(__name__)

#: ``limit`` of :func:`list_flows` when none is given, and the most it serves.
DEFAULT_FLOWS_LIMIT = 100
MAX_FLOWS_LIMIT = 10_000

#: What :func:`list_flows` sorts by: first or last packet, duration, or both directions' bytes/packets.
FlowOrder = Literal["first_seen", "last_seen", "duration", "bytes", "packets"]
FLOW_ORDERS: tuple[str, ...] = get_args(FlowOrder)
_ORDER_SQL = {
    "first_seen": "FirstSeenNs",
    "last_seen": "LastSeenNs",
    "duration": "DurationNs",
    "bytes": "(SrcToDstBytes + DstToSrcBytes)",
    "packets": "(SrcToDstPackets + DstToSrcPackets)",
}
#: The record's identity (the table's sorting key): the last tie-breaker, so pages never overlap.
_IDENTITY = "TaskName, FirstSeenNs, SrcIP, DstIP, SrcPort, DstPort, Protocol, VlanID"

#: Columns stored for bookkeeping, not part of a record.
_BOOKKEEPING = ("TimestampNs", "PeriodStartNs", "FlowHash")


def _end_reasons() -> tuple[str, ...]:
    from netspectra.flows.records import END_REASONS

    return tuple(END_REASONS.values())


def _conn_states() -> tuple[str, ...]:
    from netspectra.flows.records import CONN_STATES

    return tuple(s for s in CONN_STATES if s)


@dataclass(frozen=True, slots=True)
class FlowRecordFilter:
    """Conditions on flow records (``None`` or empty = no condition); checked and normalised on creation.

    ``host`` matches either address, ``port`` either port. ``end_reasons`` and ``conn_states`` match any
    of the listed values (``EndReason``, ``ConnState``: docs/flows.md; a value listed twice counts once).
    ``min_bytes``: both directions' bytes together at least this. Bad values raise ``ValueError`` naming
    the field.
    """

    task: str | None = None
    src_ip: str | None = None
    dst_ip: str | None = None
    host: str | None = None
    src_port: int | None = None
    dst_port: int | None = None
    port: int | None = None
    protocol: int | None = None
    vlan_id: int | None = None
    end_reasons: tuple[str, ...] = field(default=())
    conn_states: tuple[str, ...] = field(default=())
    min_bytes: int | None = None

    def __post_init__(self) -> None:
        for attr, column in (("src_ip", "SrcIP"), ("dst_ip", "DstIP"), ("host", "host")):
            value = getattr(self, attr)
            if value is not None:
                object.__setattr__(self, attr, _ip_text(value, column))
        for attr, column, top in (
            ("src_port", "SrcPort", 65535),
            ("dst_port", "DstPort", 65535),
            ("port", "port", 65535),
            ("protocol", "Protocol", 255),
            ("vlan_id", "VlanID", 4095),
            ("min_bytes", "min_bytes", 2**63 - 1),
        ):
            value = getattr(self, attr)
            if value is not None:
                object.__setattr__(self, attr, _number(value, column, top))
        for attr, column, known in (
            ("end_reasons", "EndReason", _end_reasons()),
            ("conn_states", "ConnState", _conn_states()),
        ):
            values = getattr(self, attr)
            values = (values,) if isinstance(values, str) else tuple(values or ())
            # each value once: the list is then bounded by the known values, however often one repeats
            # (100,000 repeats made a query beyond ClickHouse's max_query_size)
            values = tuple(dict.fromkeys(values))
            bad = [v for v in values if v not in known]
            if bad:
                raise ValueError(f"{column}: {', '.join(map(repr, bad))} is not one of {', '.join(known)}")
            object.__setattr__(self, attr, values)

    def conditions(self) -> tuple[list[str], dict[str, object]]:
        """SQL conditions on ``flows`` and their parameters."""
        conds: list[str] = []
        params: dict[str, object] = {}
        for attr, column in (
            ("task", "TaskName"),
            ("src_ip", "SrcIP"),
            ("dst_ip", "DstIP"),
            ("src_port", "SrcPort"),
            ("dst_port", "DstPort"),
            ("protocol", "Protocol"),
            ("vlan_id", "VlanID"),
        ):
            value = getattr(self, attr)
            if value is not None:
                conds.append(f"{column} = %(f_{attr})s")
                params[f"f_{attr}"] = value
        if self.host is not None:
            conds.append("(SrcIP = %(f_host)s OR DstIP = %(f_host)s)")
            params["f_host"] = self.host
        if self.port is not None:
            conds.append("(SrcPort = %(f_port)s OR DstPort = %(f_port)s)")
            params["f_port"] = self.port
        if self.min_bytes is not None:
            conds.append("SrcToDstBytes + DstToSrcBytes >= %(f_min_bytes)s")
            params["f_min_bytes"] = self.min_bytes
        for attr, column in (("end_reasons", "EndReason"), ("conn_states", "ConnState")):
            values: tuple[str, ...] = getattr(self, attr)
            if values:
                names = [f"f_{attr}_{i}" for i in range(len(values))]
                conds.append(f"{column} IN ({', '.join(f'%({n})s' for n in names)})")
                params.update(zip(names, values, strict=True))
        return conds, params


@dataclass(frozen=True, slots=True)
class FlowRecordPage:
    """One page of :func:`list_flows`: ``records`` (an Arrow table with the columns of
    :meth:`FlowRecords.to_arrow <netspectra.flows.records.FlowRecords.to_arrow>` and the SPLT lists, empty
    where the task keeps none) and ``total``, how many records match in all."""

    records: pa.Table
    total: int


def record_schema() -> pa.Schema:
    """The Arrow schema :func:`list_flows` answers with."""
    from netspectra.flows.records import FLOW_RECORDS_SCHEMA, SPLT_FIELDS

    return pa.schema([*FLOW_RECORDS_SCHEMA, *SPLT_FIELDS])


def _stored_name(name: str) -> str:
    # times and durations are stored as integer ns under a name ending in Ns
    stored = {n for n, _ in FLOW_RECORD_COLUMNS}
    return name if name in stored else f"{name}Ns"


def list_flows(
    store: ClickHouseStore,
    filt: FlowRecordFilter | None = None,
    start_ns: int | None = None,
    end_ns: int | None = None,
    order_by: FlowOrder = "first_seen",
    descending: bool = False,
    limit: int = DEFAULT_FLOWS_LIMIT,
    offset: int = 0,
) -> FlowRecordPage:
    """The flow records matching ``filt`` that overlap ``[start_ns, end_ns]`` (a record's first packet
    at or before the end, its last at or after the start; UTC ns), sorted by ``order_by`` (ties: the
    record's identity — task, first packet, key — so pages are stable), rows ``offset`` to
    ``offset + limit``. ``limit`` <= 0 gives :data:`DEFAULT_FLOWS_LIMIT`; above :data:`MAX_FLOWS_LIMIT`
    it is cut to it. Two queries: the page and the count."""
    _check_times(start_ns, end_ns)
    if order_by not in _ORDER_SQL:
        raise ValueError(f"order_by {order_by!r} is not one of {', '.join(FLOW_ORDERS)}")
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise ValueError(f"offset must be a non-negative int, got {offset!r}")
    if isinstance(limit, bool) or not isinstance(limit, int):
        raise ValueError(f"limit must be an int, got {limit!r}")
    if limit <= 0:
        limit = DEFAULT_FLOWS_LIMIT
    elif limit > MAX_FLOWS_LIMIT:
        log.info("list_flows: limit %d cut to %d", limit, MAX_FLOWS_LIMIT)
        limit = MAX_FLOWS_LIMIT
    where, params = (filt or FlowRecordFilter()).conditions()
    if end_ns is not None:
        where.append("FirstSeenNs <= %(end)s")
        params["end"] = end_ns
    if start_ns is not None:
        where.append("LastSeenNs >= %(start)s")
        params["start"] = start_ns
    cond = " AND ".join(where) if where else "1"
    table = f"{store.table(FLOW_RECORDS_TABLE)} FINAL"
    schema = record_schema()
    columns = ", ".join(_stored_name(f.name) for f in schema)
    direction = "DESC" if descending else "ASC"
    sql = (
        f"SELECT {columns} FROM {table} WHERE {cond} "
        f"ORDER BY {_ORDER_SQL[order_by]} {direction}, {_IDENTITY} LIMIT %(offset)s, %(limit)s"
    )
    page = store.query_arrow(sql, {**params, "limit": limit, "offset": offset})
    total = int(store.query(f"SELECT count() FROM {table} WHERE {cond}", params)[0][0])
    return FlowRecordPage(_as_records(page, schema), total)


def _as_records(page: pa.Table, schema: pa.Schema) -> pa.Table:
    arrays = []
    for i, fld in enumerate(schema):
        col = page.column(i)
        if pa.types.is_timestamp(fld.type) or pa.types.is_duration(fld.type):
            col = col.cast(pa.int64()).cast(fld.type)
        elif col.type != fld.type:
            col = col.cast(fld.type)
        arrays.append(col)
    return pa.Table.from_arrays(arrays, schema=schema)


def flow_record_tasks(store: ClickHouseStore) -> list[str]:
    """Names of the flows tasks with stored records, sorted."""
    rows = store.query(f"SELECT DISTINCT TaskName FROM {store.table(FLOW_RECORDS_TABLE)} ORDER BY TaskName")
    return [str(r[0]) for r in rows]


__all__: Sequence[str] = (
    "DEFAULT_FLOWS_LIMIT",
    "FLOW_ORDERS",
    "MAX_FLOWS_LIMIT",
    "FlowOrder",
    "FlowRecordFilter",
    "FlowRecordPage",
    "flow_record_tasks",
    "list_flows",
    "record_schema",
)
