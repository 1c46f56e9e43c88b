"""Every query of the stored flows and heavy hitters: the original's three (AggregateFlows, TraceFlow,
QueryHeavyHitters) done right, and those of the HTTP/Grafana face (time series, top flows).

All SQL that reads these tables lives here (the alert history's in :mod:`~netspectra.storage.alerts`):
the gRPC and HTTP services call these functions with typed arguments and never build SQL. Each function
runs its statements through a :class:`~netspectra.storage.store.ClickHouseStore`, so they are identical
on the embedded engine, on a ClickHouse 18.16 server and on a cluster's Distributed tables, with every
value bound client-side (:func:`~netspectra.storage.schema.bind`): no task name, flow key or filter value
can change a query. Times are UTC nanoseconds since the epoch (``int``).

How rows become answers (the tables are described in :mod:`netspectra.storage.schema`):

* A flow's **state as of** ``end_ns`` is its newest row with ``TimestampNs <= end_ns``, per aggregation
  period (``argMax(…, TimestampNs)`` grouped by period and flow key). Rows carry counters cumulative
  since the period start, so a flow's **total** is the sum of its per-period states: totals stay right
  across resets (the original took one ``argMax`` over all periods and lost every earlier period).
* With ``start_ns``, a flow's traffic **in the window** is its state as of ``end_ns`` minus its state as
  of just before ``start_ns`` (its newest row with ``TimestampNs < start_ns`` in the same period, else 0);
  flows without packets in the window are left out. Windows are as precise as the snapshots: packets
  are attributed to the snapshot that first saw them. Past states are kept at the writer's
  ``history_resolution`` (newer versions within a bucket are merged into the bucket's newest row).
* Filters on a field a task does not key on match nothing for that task (the column is NULL there).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, get_args

import numpy as np

from netspectra.fields import BY_NAME
from netspectra.output.addr import ips_to_text, parse_ip
from netspectra.sketches.base import HitterType
from netspectra.storage.schema import FLOW_TABLE, HITTER_TABLE, KEY_COLUMNS, key_expression
from netspectra.storage.sums import exact, high_word, low_word, ordered_words, saturated, total, word_sums

if TYPE_CHECKING:
    from netspectra.storage.store import ClickHouseStore

log = logging.getLogger(__name__)

#: ``limit`` of :func:`heavy_hitters` when 0 or negative is asked (the original returned nothing).
DEFAULT_HITTERS_LIMIT = 10
#: Largest ``limit`` served; bigger requests are cut to it.
MAX_HITTERS_LIMIT = 10_000
#: Flow keys accepted by :func:`trace_flow` and :meth:`FlowFilter.from_keys`: the original's whitelist
#: (the five) and every other key field (:mod:`netspectra.fields`).
FLOW_KEYS: tuple[str, ...] = KEY_COLUMNS
#: The longest text a filter on a dictionary field (a country, a network name, ...) takes.
MAX_TEXT_FILTER = 256
_ATTRS = {
    "SrcIP": "src_ip",
    "DstIP": "dst_ip",
    "SrcPort": "src_port",
    "DstPort": "dst_port",
    "Protocol": "protocol",
}
_MAX = {"src_port": 65535, "dst_port": 65535, "protocol": 255}


@dataclass(frozen=True, slots=True)
class TaskSummary:
    """Totals of one exact task (the original's ``TaskSummary``); ``flow_count`` counts distinct flow keys
    (a flow seen in several periods counts once)."""

    task_name: str
    total_bytes: int
    total_packets: int
    flow_count: int


@dataclass(frozen=True, slots=True)
class FlowLifecycle:
    """What the rows matching a flow's keys say (the original's ``FlowLifecycle``).

    ``first_seen_ns``/``last_seen_ns``: first and last packet of the matching flows (UTC ns; with a window,
    of the flows active in it — the first packet may lie before the window). ``total_packets`` and
    ``total_bytes``: their traffic, summed over periods (in the window, if one is given). ``flow_count``:
    how many distinct flows matched (more than one when the keys name only part of the task's key).
    """

    first_seen_ns: int
    last_seen_ns: int
    total_packets: int
    total_bytes: int
    flow_count: int


def _ip_text(value: str | bytes, key: str) -> str:
    try:
        if isinstance(value, bytes | bytearray):
            if len(value) not in (4, 16):
                raise ValueError(f"{len(value)} bytes")
            raw = bytes(value) if len(value) == 16 else b"\x00" * 10 + b"\xff\xff" + bytes(value)
            row = np.frombuffer(raw, np.uint8)
        else:
            row = parse_ip(value)
    except ValueError as exc:
        raise ValueError(f"{key}: {value!r} is not an IP address ({exc})") from None
    # the text the writers store: IPv4 (also IPv4-mapped) dotted, IPv6 RFC 5952
    return ips_to_text(row.reshape(1, 16))[0]


def _number(value: str | int, key: str, top: int) -> int:
    if isinstance(value, bool):
        raise ValueError(f"{key}: {value!r} is not a number")
    if isinstance(value, str):
        if not value.strip().isdigit():
            raise ValueError(f"{key}: {value!r} is not a number between 0 and {top}")
        value = int(value.strip())
    if not isinstance(value, int) or not 0 <= value <= top:
        raise ValueError(f"{key}: {value!r} is not a number between 0 and {top}")
    return value


def _field_value(name: str, value: str | int | bytes) -> str | int:
    """A filter value of key field ``name`` (not one of the five) as the column stores it."""
    f = BY_NAME[name]
    if f.is_ip:
        return _ip_text(value, name)
    if f.kind == "dict":
        if not isinstance(value, str) or len(value) > MAX_TEXT_FILTER:
            raise ValueError(f"{name}: {value!r} is not a text of at most {MAX_TEXT_FILTER} characters")
        # a country or a class the classifiers set has one spelling in the store: read as TopN reads it
        # ("fr" is FR, "Cogent" is cogent; "externl" is no boundary); names and other text as written
        from netspectra.storage.rollups import stored_text

        return stored_text(name, value)
    if f.text_prefix and isinstance(value, str) and value.strip().upper().startswith(f.text_prefix):
        value = value.strip()[len(f.text_prefix) :]  # AS64500 as well as 64500
    return _number(value, name, (1 << (8 * f.key_bytes)) - 1)


@dataclass(frozen=True, slots=True)
class FlowFilter:
    """Flow-key conditions (``None`` = no condition); values are checked and normalised on creation.

    Addresses take text (IPv4, IPv6, IPv4-mapped IPv6 — stored as the plain IPv4 text) or raw 4/16 bytes;
    ports 0–65535 and the protocol 0–255 take ints or decimal text. ``fields``: conditions on the other
    key fields, ``(name, value)`` pairs — interfaces and VLANs as numbers, AS numbers as numbers or
    ``AS64500``, the exporter as an address, dictionary fields (countries, network names, ...) as their
    text (``""``: unknown). Bad values and names that are not key fields raise ``ValueError``.
    """

    src_ip: str | None = None
    dst_ip: str | None = None
    src_port: int | None = None
    dst_port: int | None = None
    protocol: int | None = None
    fields: tuple[tuple[str, Any], ...] = ()

    def __post_init__(self) -> None:
        for column, attr in _ATTRS.items():
            value: Any = getattr(self, attr)
            if value is None:
                continue
            if attr in _MAX:
                object.__setattr__(self, attr, _number(value, column, _MAX[attr]))
            else:
                object.__setattr__(self, attr, _ip_text(value, column))
        checked = []
        for name, value in self.fields:
            if name not in BY_NAME or name in _ATTRS:
                raise ValueError(f"unsupported flow key: {name}")
            checked.append((name, _field_value(name, value)))
        object.__setattr__(self, "fields", tuple(checked))

    @classmethod
    def from_keys(cls, keys: Mapping[str, str | int | bytes]) -> FlowFilter:
        """From the original's ``flow_keys`` map (``{"SrcIP": "10.0.0.1", "DstPort": "443"}``), which may
        name any key field (``{"SrcAS": "AS64500", "InIf": "3"}``); another key raises
        ``ValueError("unsupported flow key: X")``."""
        args: dict[str, Any] = {}
        fields: list[tuple[str, Any]] = []
        for key in sorted(keys):  # sorted, as the refactored original: stable error and SQL order
            if key in _ATTRS:
                args[_ATTRS[key]] = keys[key]
            elif key in BY_NAME:
                fields.append((key, keys[key]))
            else:
                from netspectra.kinds import did_you_mean

                raise ValueError(f"unsupported flow key: {key}{did_you_mean(key, BY_NAME)}")
        return cls(**args, fields=tuple(fields))

    def conditions(self) -> tuple[list[str], dict[str, object]]:
        """SQL conditions on ``flow_metrics`` and their parameters (``f_<column>``)."""
        conds: list[str] = []
        params: dict[str, object] = {}
        for column, attr in _ATTRS.items():
            value = getattr(self, attr)
            if value is not None:
                conds.append(f"{column} = %(f_{column})s")
                params[f"f_{column}"] = value
        for column, value in self.fields:
            conds.append(f"{column} = %(f_{column})s")
            params[f"f_{column}"] = value
        return conds, params


def _check_times(start_ns: int | None, end_ns: int | None) -> None:
    for name, v in (("start_ns", start_ns), ("end_ns", end_ns)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 0):
            raise ValueError(f"{name} must be a non-negative int (ns since the epoch, UTC), got {v!r}")
    if start_ns is not None and end_ns is not None and start_ns > end_ns:
        raise ValueError(f"start_ns {start_ns} is after end_ns {end_ns}")


def _state_columns(start_ns: int | None) -> str:
    """Per flow and period: traffic as of the end minus traffic before the start (0 without a start)."""
    if start_ns is None:
        return (
            "argMax(ByteCount, TimestampNs) AS B, argMax(PacketCount, TimestampNs) AS P, "
            "argMax(StartNs, TimestampNs) AS S, argMax(EndNs, TimestampNs) AS E"
        )
    before = "TimestampNs < %(start)s"

    def delta(column: str) -> str:
        # UInt64 - UInt64 is an Int64 in ClickHouse, negative for a difference >= 2**63 (a hostile
        # counter): toUInt64 of it is the difference again (counters only grow within a period; one
        # that shrank counts 0 rather than a wrapped giant)
        now, then = f"argMax({column}, TimestampNs)", f"argMaxIf({column}, TimestampNs, {before})"
        return f"toUInt64(if({now} >= {then}, {now} - {then}, 0))"

    return (
        f"{delta('ByteCount')} AS B, {delta('PacketCount')} AS P, "
        "argMax(StartNs, TimestampNs) AS S, argMax(EndNs, TimestampNs) AS E"
    )


_KEYS = ", ".join(KEY_COLUMNS)
# uniqExact skips rows with a NULL argument: count keys with the NULLs of absent fields made values
_DISTINCT_FLOWS = f"uniqExact({', '.join(key_expression(c) for c in KEY_COLUMNS)})"


def _time_bounds(
    where: list[str], params: dict[str, object], start_ns: int | None, end_ns: int | None
) -> None:
    """Rows up to the end go into the states; the start is a parameter of :func:`_state_columns`."""
    if end_ns is not None:
        where.append("TimestampNs <= %(end)s")
        params["end"] = end_ns
    if start_ns is not None:
        params["start"] = start_ns


def _flow_states_sql(store: ClickHouseStore, where: list[str], start_ns: int | None) -> str:
    """One row per (task, period, flow): the flow's key and its :func:`_state_columns`."""
    cond = " AND ".join(where) if where else "1"
    return (
        f"SELECT TaskName, {_KEYS}, {_state_columns(start_ns)} FROM {store.table(FLOW_TABLE)} "
        f"WHERE {cond} GROUP BY TaskName, PeriodStartNs, {_KEYS}"
    )


def aggregate_flows(
    store: ClickHouseStore,
    end_ns: int | None = None,
    task: str | None = None,
    start_ns: int | None = None,
    filters: FlowFilter | None = None,
) -> list[TaskSummary]:
    """Per exact task (ordered by name): bytes, packets and flows as of ``end_ns`` (default: the newest
    data), summed over periods; with ``start_ns``, only the traffic between the two (see the module
    docstring). ``task`` limits to one task; ``filters`` to the flows matching every given key field.
    Tasks without matching traffic are absent from the list."""
    _check_times(start_ns, end_ns)
    where, params = (filters or FlowFilter()).conditions()
    if task is not None:
        where.append("TaskName = %(task)s")
        params["task"] = task
    _time_bounds(where, params, start_ns, end_ns)
    sql = (
        f"SELECT TaskName, {word_sums('B', 'B')}, {word_sums('P', 'P')}, {_DISTINCT_FLOWS} AS Flows "
        f"FROM ({_flow_states_sql(store, where, start_ns)}) WHERE P > 0 GROUP BY TaskName ORDER BY TaskName"
    )
    return [
        TaskSummary(str(t), total(bh, bl), total(ph, pl), int(n))
        for t, bh, bl, ph, pl, n in store.query(sql, params)
    ]


def trace_flow(
    store: ClickHouseStore,
    task: str,
    flow_keys: Mapping[str, str | int | bytes],
    end_ns: int | None = None,
    start_ns: int | None = None,
) -> FlowLifecycle | None:
    """The lifecycle of the flows of ``task`` matching ``flow_keys`` (field → value, e.g.
    ``{"SrcIP": "10.0.0.1", "DstPort": "80"}``) as of ``end_ns``, in ``[start_ns, end_ns]`` if a start is
    given; ``None`` when nothing matches. Unknown keys: ``ValueError("unsupported flow key: X")``; bad
    values: ``ValueError``. Totals are summed over periods (the original took the largest row)."""
    _check_times(start_ns, end_ns)
    where, params = FlowFilter.from_keys(flow_keys).conditions()
    where.insert(0, "TaskName = %(task)s")
    params["task"] = task
    _time_bounds(where, params, start_ns, end_ns)
    sql = (
        f"SELECT {_DISTINCT_FLOWS} AS Flows, min(S) AS First, max(E) AS Last, "
        f"{word_sums('P', 'P')}, {word_sums('B', 'B')} "
        f"FROM ({_flow_states_sql(store, where, start_ns)}) WHERE P > 0"
    )
    rows = store.query(sql, params)
    if not rows or int(rows[0][0]) == 0:
        return None
    flows, first, last, ph, pl, bh, bl = rows[0]
    return FlowLifecycle(int(first), int(last), total(ph, pl), total(bh, bl), int(flows))


def heavy_hitters(
    store: ClickHouseStore,
    task: str,
    type_: int | HitterType,
    end_ns: int | None = None,
    start_ns: int | None = None,
    limit: int = DEFAULT_HITTERS_LIMIT,
) -> list[tuple[str, int]]:
    """``[(flow, value)]`` of a sketch task, largest first (ties by flow text): each flow's newest value
    among the snapshots of ``[start_ns, end_ns]``, within the newest period that has snapshots there (so
    heavy hitters of earlier periods never linger, as they did in the original).

    ``type_``: 0 count (packets), 1 size (bytes), 2 spread. ``limit`` <= 0 → :data:`DEFAULT_HITTERS_LIMIT`
    (the original answered nothing); above :data:`MAX_HITTERS_LIMIT` → cut to it.
    """
    _check_times(start_ns, end_ns)
    if isinstance(type_, bool) or int(type_) not in tuple(HitterType):
        raise ValueError(
            f"type {type_!r} is not a heavy-hitter type; valid types are 0 (count), 1 (size), 2 (spread)"
        )
    if limit <= 0:
        limit = DEFAULT_HITTERS_LIMIT
    elif limit > MAX_HITTERS_LIMIT:
        log.info("heavy_hitters: limit %d cut to %d", limit, MAX_HITTERS_LIMIT)
        limit = MAX_HITTERS_LIMIT
    where = ["TaskName = %(task)s", "Type = %(type)s"]
    params: dict[str, object] = {"task": task, "type": int(type_), "limit": int(limit)}
    if end_ns is not None:
        where.append("TimestampNs <= %(end)s")
        params["end"] = end_ns
    if start_ns is not None:
        where.append("TimestampNs >= %(start)s")
        params["start"] = start_ns
    cond = " AND ".join(where)
    table = store.table(HITTER_TABLE)
    sql = (
        f"SELECT Flow, argMax(Value, TimestampNs) AS V FROM {table} WHERE {cond} "
        f"AND PeriodStartNs = (SELECT max(PeriodStartNs) FROM {table} WHERE {cond}) "
        "GROUP BY Flow ORDER BY V DESC, Flow ASC LIMIT %(limit)s"
    )
    return [(str(flow), int(value)) for flow, value in store.query(sql, params)]


def hitter_span(store: ClickHouseStore, task: str, type_: int | HitterType) -> tuple[int, int] | None:
    """The first and last snapshot times of ``task``'s stored hitters of ``type_`` (UTC ns), or ``None``
    when it stored none."""
    sql = (
        f"SELECT count(), min(TimestampNs), max(TimestampNs) FROM {store.table(HITTER_TABLE)} "
        "WHERE TaskName = %(task)s AND Type = %(type)s"
    )
    rows = store.query(sql, {"task": task, "type": int(type_)})
    if not rows or int(rows[0][0]) == 0:
        return None
    return int(rows[0][1]), int(rows[0][2])


def task_names(store: ClickHouseStore) -> list[str]:
    """Names of the tasks with stored data (exact tasks first, each group sorted)."""
    flows = store.query(f"SELECT DISTINCT TaskName FROM {store.table(FLOW_TABLE)} ORDER BY TaskName")
    hitters = store.query(f"SELECT DISTINCT TaskName FROM {store.table(HITTER_TABLE)} ORDER BY TaskName")
    names = [str(r[0]) for r in flows]
    return names + [str(r[0]) for r in hitters if str(r[0]) not in names]


def flow_details(
    store: ClickHouseStore,
    task: str,
    filt: FlowFilter,
    start_ns: int | None,
    end_ns: int | None,
    offset: int,
    limit: int,
) -> list[tuple[dict[str, str], int, int, int, int]]:
    """The flows of ``task`` matching ``filt``, ordered by key: ``(keys, first_ns, last_ns, packets,
    bytes)`` each, rows ``offset`` to ``offset + limit``. Same per-period state SQL as
    :func:`trace_flow` (every value bound), grouped per flow."""
    _check_times(start_ns, end_ns)
    where, params = filt.conditions()
    where.insert(0, "TaskName = %(task)s")
    params.update(task=task, offset=int(offset), limit=int(limit))
    _time_bounds(where, params, start_ns, end_ns)
    sql = (
        f"SELECT {_KEYS}, min(S), max(E), {word_sums('P', 'P')}, {word_sums('B', 'B')} "
        f"FROM ({_flow_states_sql(store, where, start_ns)}) "
        f"WHERE P > 0 GROUP BY {_KEYS} ORDER BY {_KEYS} LIMIT %(offset)s, %(limit)s"
    )
    out = []
    k = len(FLOW_KEYS)
    for row in store.query(sql, params):
        keys = {name: str(v) for name, v in zip(FLOW_KEYS, row[:k], strict=True) if v is not None}
        packets, nbytes = total(*row[k + 2 : k + 4]), total(*row[k + 4 : k + 6])
        out.append((keys, int(row[k]), int(row[k + 1]), packets, nbytes))
    return out


# --------------------------------------------------------------------------------------------------
# Time series and top flows (the HTTP / Grafana face)
# --------------------------------------------------------------------------------------------------

#: What a series of an exact task counts: packets and bytes (summed over its flows), or distinct flows.
SeriesMetric = Literal["packets", "bytes", "flows"]
SERIES_METRICS: tuple[str, ...] = get_args(SeriesMetric)


@dataclass(frozen=True, slots=True)
class FlowTotals:
    """One flow's traffic in a range: its key fields (``None`` where the task does not key on them),
    packets and bytes."""

    keys: dict[str, str | int | None]
    packets: int
    bytes: int


def snapshot_times(
    store: ClickHouseStore, task: str, start_ns: int | None = None, end_ns: int | None = None
) -> list[int]:
    """The times (UTC ns, ascending) of the newest stored snapshot of each history bucket of exact
    ``task`` within ``[start_ns, end_ns]``: the instants at which every flow's state is still stored,
    whatever merges did (so :func:`aggregate_flows` with ``end_ns`` = such a time is exact)."""
    _check_times(start_ns, end_ns)
    where = ["TaskName = %(task)s"]
    params: dict[str, object] = {"task": task}
    if start_ns is not None:
        where.append("TimestampNs >= %(start)s")
        params["start"] = start_ns
    if end_ns is not None:
        where.append("TimestampNs <= %(end)s")
        params["end"] = end_ns
    sql = (
        f"SELECT max(TimestampNs) AS T FROM {store.table(FLOW_TABLE)} WHERE {' AND '.join(where)} "
        "GROUP BY Bucket ORDER BY T"
    )
    return [int(r[0]) for r in store.query(sql, params)]


def total_increments(
    store: ClickHouseStore, task: str, metric: SeriesMetric, end_ns: int | None = None
) -> list[tuple[int, int]]:
    """``[(snapshot time, increment of the task's total at that time)]``, by time, over every stored row
    of exact ``task`` up to ``end_ns``: the running sum of the increments at ``t`` is the total as of
    ``t``.

    packets/bytes: per flow and period, the rows sorted by time and differenced (counters are cumulative
    within a period; rows of one flow at one time — a retried write — count once), summed per time.
    flows: each distinct flow key counts 1 at its first row. One scan of the task's rows, whatever the
    number of points (a query per point would scan the table once per point).
    """
    if metric not in SERIES_METRICS:
        raise ValueError(f"metric {metric!r} is not one of {', '.join(SERIES_METRICS)}")
    _check_times(None, end_ns)
    where = ["TaskName = %(task)s"]
    params: dict[str, object] = {"task": task}
    if end_ns is not None:
        where.append("TimestampNs <= %(end)s")
        params["end"] = end_ns
    cond = " AND ".join(where)
    table = store.table(FLOW_TABLE)
    if metric == "flows":
        sql = (
            f"SELECT F, count() FROM (SELECT min(TimestampNs) AS F FROM {table} WHERE {cond} "
            f"GROUP BY {_KEYS}) GROUP BY F ORDER BY F"
        )
    else:
        column = "PacketCount" if metric == "packets" else "ByteCount"
        versions = (
            f"SELECT PeriodStartNs, {_KEYS}, TimestampNs, max({column}) AS V FROM {table} WHERE {cond} "
            f"GROUP BY PeriodStartNs, {_KEYS}, TimestampNs"
        )
        per_flow = (
            f"SELECT arraySort(groupArray((TimestampNs, V))) AS s FROM ({versions}) "
            f"GROUP BY PeriodStartNs, {_KEYS}"
        )

        # differences of each 32-bit word apart (Int64, |d| < 2**32), summed apart: exact whatever the
        # counters (a toInt64 of a counter >= 2**63 is negative; netspectra.storage.sums)
        def diffs(word: Callable[[str], str]) -> str:
            v, prev = word("tupleElement(s[i], 2)"), word("tupleElement(s[i - 1], 2)")
            return f"arrayMap(i -> toInt64({v}) - if(i = 1, toInt64(0), toInt64({prev})), arrayEnumerate(s))"

        deltas = (
            "SELECT arrayMap(x -> tupleElement(x, 1), s) AS ts, "
            f"{diffs(high_word)} AS dh, {diffs(low_word)} AS dl FROM ({per_flow})"
        )
        sql = (
            f"SELECT T, sum(DH), sum(DL) FROM ({deltas}) ARRAY JOIN ts AS T, dh AS DH, dl AS DL "
            "GROUP BY T ORDER BY T"
        )
        return [(int(t), exact(h, lo)) for t, h, lo in store.query(sql, params)]
    return [(int(t), int(d)) for t, d in store.query(sql, params)]


def totals_series(
    store: ClickHouseStore,
    task: str,
    metric: SeriesMetric,
    start_ns: int | None = None,
    end_ns: int | None = None,
    max_points: int = 0,
) -> list[tuple[int, int]]:
    """``[(time_ns, total)]`` of exact ``task``: its total ``metric`` as of each of its
    :func:`snapshot_times` in the range, each equal to :func:`aggregate_flows` with that ``end_ns``
    (summed over periods; ``flows`` counts distinct keys). More points than ``max_points`` (> 0) are
    thinned evenly: the values stay exact, fewer instants are shown. Two queries."""
    if isinstance(max_points, bool) or not isinstance(max_points, int) or max_points < 0:
        raise ValueError(f"max_points must be a non-negative int, got {max_points!r}")
    times = snapshot_times(store, task, start_ns, end_ns)
    if len(times) > max_points > 0:
        step = len(times) / max_points
        times = [times[min(len(times) - 1, int((i + 1) * step) - 1)] for i in range(max_points)]
    if not times:
        return []
    increments = total_increments(store, task, metric, times[-1])
    points: list[tuple[int, int]] = []
    running, k = 0, 0  # exact; each point saturated at 2**64 - 1
    for t in times:
        while k < len(increments) and increments[k][0] <= t:
            running += increments[k][1]
            k += 1
        points.append((t, saturated(running)))
    return points


def top_flows(
    store: ClickHouseStore,
    task: str,
    start_ns: int | None = None,
    end_ns: int | None = None,
    limit: int = 10,
) -> list[FlowTotals]:
    """The ``limit`` flows of exact ``task`` with the most bytes (ties: more packets, then key): without
    ``start_ns`` their totals as of ``end_ns``, with it the traffic between the two — the per-period flow
    states of :func:`trace_flow`."""
    _check_times(start_ns, end_ns)
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ValueError(f"limit must be a positive int, got {limit!r}")
    where = ["TaskName = %(task)s"]
    params: dict[str, object] = {"task": task, "limit": limit}
    _time_bounds(where, params, start_ns, end_ns)
    # ordered by the exact sums' words (netspectra.storage.sums): never by a wrapped sum
    (p1, p0), (b1, b0) = ordered_words("SPH", "SPL"), ordered_words("SBH", "SBL")
    sql = (
        f"SELECT {_KEYS}, {word_sums('P', 'SP')}, {word_sums('B', 'SB')} "
        f"FROM ({_flow_states_sql(store, where, start_ns)}) WHERE P > 0 GROUP BY {_KEYS} "
        f"ORDER BY {b1} DESC, {b0} DESC, {p1} DESC, {p0} DESC, {_KEYS} LIMIT %(limit)s"
    )
    out = []
    for row in store.query(sql, params):
        keys = dict(zip(FLOW_KEYS, row[: len(FLOW_KEYS)], strict=True))
        out.append(FlowTotals(keys, total(*row[-4:-2]), total(*row[-2:])))
    return out
