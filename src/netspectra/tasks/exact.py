"""The exact task: every flow of every packet counted exactly (the original's ``exact`` aggregator).

A flow is the set of packets that agree on the task's ``key_fields`` (any set of the key fields of
:mod:`netspectra.fields`: the five packet fields, VlanID, ExporterAddress, InIf, OutIf, the
enrichment columns). Per flow the task keeps:

* ``first_ns`` = the smallest and ``last_ns`` = the largest timestamp of its packets. The original kept
  the timestamp of the last *processed* packet; min/max is order-independent, so out-of-order
  captures, several workers and merged snapshots give the same answer. This difference is deliberate.
* ``packets`` (+1 per packet) and ``bytes`` (+ wire length), both uint64.

Flows live in dense rows appended in order of first appearance — 48 bytes for a flow whose
addresses are IPv4 (or outside the key), 72 bytes for one with an IPv6 side — found through a compact
index of 8-byte slots (hash tag + row number, linear probing, load <= 3/4); layout and algorithms in
:mod:`netspectra.tasks.exact_kernels`. One :meth:`ExactTask.update` is one kernel call over the whole
batch (plus a growth when needed). Growth never moves a row: the row arrays grow in place
(:mod:`netspectra.tasks.exact_store`, whose capacity costs no memory until written) and only the index
is rebuilt, from itself. Memory is therefore 48-72 bytes per flow plus 10.7-21.3 bytes of index
(32 while the index doubles); :meth:`ExactTask.snapshot` decodes the rows in one pass.

Key fields beyond the five go into *extra key words* after each row's own words
(:mod:`netspectra.tasks.exact_fields`: 8 bytes per word; SrcAS + DstAS take one, an exporter address
two): the same kernel, compiled for rows with extra words, hashes and compares them too. A task keyed on
the five packet fields alone has none and runs the five-tuple code unchanged. A batch without a key
field's column (InIf of a captured packet, SrcAS without enrichment) counts its rows under the field's
unknown value, 0, says so once in the log and counts them (:meth:`ExactTask.counters`). Snapshots carry
the extra fields' values; dictionary codes become text when the snapshot is output, with the newest
dictionaries the task saw (dictionaries only grow).

Concurrency: an :class:`ExactTask` is *not* thread-safe. The kernel releases the GIL, so the caller
(the engine) must make sure one thread at a time calls ``update``, ``snapshot`` and ``reset`` on a task
(a lock per task, or one owning thread); under that rule every snapshot is consistent.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar, Literal

import numpy as np

from netspectra.batch import PacketBatch
from netspectra.fields import BY_NAME, PACKET_FIELDS, canonical, validate_fields
from netspectra.key_columns import Decoder, MissingFields, decode_codes, ip_text
from netspectra.tasks import exact_kernels as kern
from netspectra.tasks.exact_fields import ExtraLayout
from netspectra.tasks.exact_store import GrowableWords
from netspectra.weights import exact_sum

if TYPE_CHECKING:
    import pyarrow as pa

log = logging.getLogger(__name__)

#: The index grows (doubles) before more than this fraction of its slots is used.
MAX_LOAD_NUM, MAX_LOAD_DEN = 3, 4
_MIN_CAPACITY = 16
_MAX_CAPACITY = 1 << 31  # index refs are 31-bit row numbers (see exact_kernels)

SortBy = Literal["bytes", "packets"]
_COUNT_MAX = (1 << 64) - 1  # a flow's counters saturate here
_SNAPSHOT_DTYPES = {
    "src_ip": np.dtype(np.uint8),
    "dst_ip": np.dtype(np.uint8),
    "src_port": np.dtype(np.uint16),
    "dst_port": np.dtype(np.uint16),
    "protocol": np.dtype(np.uint8),
    "first_ns": np.dtype(np.int64),
    "last_ns": np.dtype(np.int64),
    "packets": np.dtype(np.uint64),
    "bytes": np.dtype(np.uint64),
}


@dataclass(frozen=True, slots=True, eq=False)
class FlowSnapshot:
    """A consistent, read-only, columnar copy of an exact task's flows at one moment.

    ``m`` rows, one per flow, in no particular order (use :meth:`sorted` or :meth:`top`). Columns:
    ``src_ip``/``dst_ip`` (m, 16) uint8, ``src_port``/``dst_port`` uint16, ``protocol`` uint8 — zero
    where the field is not in ``key_fields`` — ``first_ns``/``last_ns`` int64 ns UTC, ``packets`` and
    ``bytes`` uint64. ``extra``: the values of the key fields beyond the five (field name → (m, 16)
    uint8 for an address, (m,) of the field's dtype otherwise: dictionary codes for dictionary fields),
    and ``dictionaries`` (column name → texts) to decode those codes. The arrays are not writeable and
    share nothing with the task.
    """

    #: The aggregator kind that produces these snapshots (alerting and writers ask it).
    kind: ClassVar[str] = "exact"

    task_name: str
    key_fields: tuple[str, ...]
    src_ip: np.ndarray
    dst_ip: np.ndarray
    src_port: np.ndarray
    dst_port: np.ndarray
    protocol: np.ndarray
    first_ns: np.ndarray
    last_ns: np.ndarray
    packets: np.ndarray
    bytes: np.ndarray
    extra: Mapping[str, np.ndarray] = field(default_factory=dict)
    dictionaries: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    ARRAYS = (
        "src_ip",
        "dst_ip",
        "src_port",
        "dst_port",
        "protocol",
        "first_ns",
        "last_ns",
        "packets",
        "bytes",
    )

    def __post_init__(self) -> None:
        m = self.packets.shape[0]
        for name in self.ARRAYS:
            a = getattr(self, name)
            want_dtype, want_shape = _SNAPSHOT_DTYPES[name], ((m, 16) if name.endswith("_ip") else (m,))
            if a.dtype != want_dtype or a.shape != want_shape:
                raise ValueError(
                    f"FlowSnapshot.{name}: {a.dtype} {a.shape}, expected {want_dtype} {want_shape}"
                )
            # Read-only: a snapshot is shared by writers and threads and must never change under them.
            a.flags.writeable = False
        want = set(self.extra_fields)
        if set(self.extra) != want:
            raise ValueError(
                f"FlowSnapshot.extra has {sorted(self.extra)}; the key fields beyond the five are "
                f"{sorted(want)}"
            )
        for name, a in self.extra.items():
            f = BY_NAME[name]
            want_dtype, want_shape = np.dtype(f.dtype), ((m, 16) if f.is_ip else (m,))
            if a.dtype != want_dtype or a.shape != want_shape:
                raise ValueError(
                    f"FlowSnapshot.extra[{name}]: {a.dtype} {a.shape}, expected {want_dtype} {want_shape}"
                )
            a.flags.writeable = False

    @property
    def extra_fields(self) -> tuple[str, ...]:
        """The key fields beyond the five packet fields, in canonical order."""
        return canonical(f for f in self.key_fields if f not in PACKET_FIELDS)

    def __len__(self) -> int:
        return int(self.packets.shape[0])

    @property
    def total_packets(self) -> int:
        """Packets over all flows (an exact integer, whatever the sum)."""
        return exact_sum(self.packets)

    @property
    def total_bytes(self) -> int:
        """Bytes over all flows (an exact integer, whatever the sum)."""
        return exact_sum(self.bytes)

    def take(self, index: np.ndarray) -> FlowSnapshot:
        """The rows selected by an integer or boolean index, in that order, as a new snapshot."""
        return FlowSnapshot(
            self.task_name,
            self.key_fields,
            *(np.ascontiguousarray(getattr(self, name)[index]) for name in self.ARRAYS),
            extra={k: np.ascontiguousarray(v[index]) for k, v in self.extra.items()},
            dictionaries=self.dictionaries,
        )

    def sort_order(self, by: SortBy = "bytes") -> np.ndarray:
        """Row order: ``by`` descending, then the other counter descending, then the key ascending.

        The key order is byte order of the addresses (so IPv4-mapped rows sort among themselves
        numerically), then ports, then protocol, then the other key fields in canonical order (their
        values: dictionary fields by code); the result is fully deterministic.
        """
        primary, secondary = self._counters(by)
        return np.lexsort((*self._key_columns(), ~secondary, ~primary))

    def sorted(self, by: SortBy = "bytes") -> FlowSnapshot:
        """All rows in :meth:`sort_order`."""
        return self.take(self.sort_order(by))

    def top(self, n: int, by: SortBy = "bytes") -> FlowSnapshot:
        """The ``n`` largest flows by ``by``, in :meth:`sort_order` (ties broken deterministically)."""
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        m = len(self)
        primary, _ = self._counters(by)
        if n >= m:
            return self.sorted(by)
        if n == 0:
            return self.take(np.zeros(0, np.int64))
        # Every row that can be in the top n has a value >= the n-th largest; sort only those.
        kth = np.partition(primary, m - n)[m - n]
        cand = np.flatnonzero(primary >= kth)
        order = cand[self.take(cand).sort_order(by)]
        return self.take(order[:n])

    def to_arrow(self) -> pa.Table:
        """The flows as an Arrow table with :func:`~netspectra.output.flow_table.flow_table_schema`
        (:data:`~netspectra.output.flow_table.FLOW_TABLE_SCHEMA` for a task keyed on packet fields alone;
        the other key fields' columns follow ``Protocol``, in canonical order).

        Columns of packet fields outside ``key_fields`` are all NULL. Addresses are text (IPv4 dotted
        quad, IPv6 RFC 5952), dictionary codes their text (empty when unknown). Rows keep the
        snapshot's order.
        """
        # Arrow and the address formatter only where a table is made: a report of a capture needs
        # neither (pyarrow is ~20 ms of start-up, issue 19)
        import pyarrow as pa

        from netspectra.output.addr import ips_to_arrow
        from netspectra.output.flow_table import TIMESTAMP_TYPE, flow_table_schema

        m = len(self)
        keys = set(self.key_fields)
        schema = flow_table_schema(self.extra_fields)

        def key_col(field: str, make: pa.Array) -> pa.Array:
            typ = schema.field(field).type
            return make() if field in keys else pa.nulls(m, typ)

        arrays = [
            pa.DictionaryArray.from_arrays(pa.array(np.zeros(m, np.int32)), pa.array([self.task_name])).cast(
                pa.string()
            ),
            key_col("SrcIP", lambda: ips_to_arrow(self.src_ip)),
            key_col("DstIP", lambda: ips_to_arrow(self.dst_ip)),
            key_col("SrcPort", lambda: pa.array(self.src_port, pa.uint16())),
            key_col("DstPort", lambda: pa.array(self.dst_port, pa.uint16())),
            key_col("Protocol", lambda: pa.array(self.protocol, pa.uint8())),
            *(self._extra_column(name, schema.field(name).type) for name in self.extra_fields),
            pa.array(self.first_ns, pa.int64()).cast(TIMESTAMP_TYPE),
            pa.array(self.last_ns, pa.int64()).cast(TIMESTAMP_TYPE),
            pa.array(self.bytes, pa.uint64()),
            pa.array(self.packets, pa.uint64()),
        ]
        return pa.Table.from_arrays(arrays, schema=schema)

    def to_rows(self) -> list[dict[str, object]]:
        """The flows as :meth:`to_arrow` gives them, one dict per row in the snapshot's order, built
        without Arrow (a report prints a few rows: importing ``pyarrow.compute`` for them cost more
        than the whole analysis of a small capture). Times are integer ns UTC (``StartTime``,
        ``EndTime``), not timestamps; everything else is ``to_arrow().to_pylist()``'s value (None for
        a packet field outside ``key_fields``). One Python object per value: meant for few rows."""
        keys = set(self.key_fields)
        columns: list[tuple[str, list[object]]] = [("TaskName", [self.task_name] * len(self))]
        for name, attr in (("SrcIP", "src_ip"), ("DstIP", "dst_ip")):
            texts = [ip_text(v.tobytes()) for v in getattr(self, attr)] if name in keys else []
            columns.append((name, texts))
        for name, attr in (("SrcPort", "src_port"), ("DstPort", "dst_port"), ("Protocol", "protocol")):
            columns.append((name, getattr(self, attr).tolist() if name in keys else []))
        for name in self.extra_fields:
            f, values = BY_NAME[name], self.extra[name]
            if f.is_ip:
                columns.append((name, [ip_text(v.tobytes()) for v in values]))
            elif f.kind == "dict":
                columns.append((name, decode_codes(values, self.dictionaries.get(f.column, ()))))
            else:
                columns.append((name, values.tolist()))
        columns += [
            ("StartTime", self.first_ns.tolist()),
            ("EndTime", self.last_ns.tolist()),
            ("ByteCount", self.bytes.tolist()),
            ("PacketCount", self.packets.tolist()),
        ]
        return [{name: (vals[i] if vals else None) for name, vals in columns} for i in range(len(self))]

    def _extra_column(self, name: str, typ: pa.DataType) -> pa.Array:
        import pyarrow as pa

        from netspectra.output.addr import ips_to_arrow

        f = BY_NAME[name]
        values = self.extra[name]
        if f.is_ip:
            return ips_to_arrow(values)
        if f.kind == "dict":
            return pa.array(decode_codes(values, self.dictionaries.get(f.column, ())), pa.string())
        return pa.array(values, typ)

    def flow_keys(self) -> list[str]:
        """Each flow's key as the original printed it: key fields in config order joined by ``-``.

        E.g. ``10.0.0.1-10.0.0.2-1234-80-6`` for a five-tuple task.
        """
        import pyarrow as pa
        import pyarrow.compute as pc  # 50-70 ms to import: only where keys are printed

        table = self.to_arrow()
        parts = [pc.cast(table.column(f), pa.string()) for f in self.key_fields]
        return pc.binary_join_element_wise(*parts, "-").to_pylist()

    def _counters(self, by: str) -> tuple[np.ndarray, np.ndarray]:
        if by == "bytes":
            return self.bytes, self.packets
        if by == "packets":
            return self.packets, self.bytes
        raise ValueError(f"by must be 'bytes' or 'packets', got {by!r}")

    def _key_columns(self) -> tuple[np.ndarray, ...]:
        # lexsort: the last key is the primary one; addresses compared as big-endian words = byte order.
        src = self.src_ip.view(">u8").astype(np.uint64)
        dst = self.dst_ip.view(">u8").astype(np.uint64)
        extra: list[np.ndarray] = []
        for name in reversed(self.extra_fields):
            v = self.extra[name]
            if v.ndim == 2:
                w = np.ascontiguousarray(v).view(">u8").astype(np.uint64)
                extra += [w[:, 1], w[:, 0]]
            else:
                extra.append(v)
        return (
            *extra,
            self.protocol,
            self.dst_port,
            self.src_port,
            dst[:, 1],
            dst[:, 0],
            src[:, 1],
            src[:, 0],
        )


@dataclass(frozen=True, slots=True, eq=False)
class FlowSummary:
    """What a report shows of an exact task (:meth:`ExactTask.summary`): its flow count (``len``), the
    totals over all flows, and its largest flows by ``by`` — read like a :class:`FlowSnapshot` of the
    task for those (``top(k, by)`` for ``k <= n`` is the snapshot's ``top(k, by)``, row for row), without a
    copy of every flow. ``leaders`` holds every flow whose ``by`` counter reaches the ``n``-th largest
    (ties included, so it may hold more than ``n``); all flows when the task has at most ``n``."""

    kind: ClassVar[str] = "exact"

    task_name: str
    key_fields: tuple[str, ...]
    flows: int
    total_packets: int
    total_bytes: int
    leaders: FlowSnapshot
    n: int
    by: SortBy

    def __len__(self) -> int:
        return self.flows

    def top(self, n: int, by: SortBy = "bytes") -> FlowSnapshot:
        """The ``n`` largest flows by ``by`` (``n`` at most the summary's, ``by`` its own)."""
        if by != self.by or n > self.n:
            raise ValueError(f"this summary holds the top {self.n} flows by {self.by}, not {n} by {by}")
        return self.leaders.top(n, by)


class ExactTask:
    """Exact per-flow packet and byte counts for one ``key_fields`` set (see the module docstring).

    ``capacity_hint`` is the number of flows expected: the table starts large enough to hold that
    many without growing (it grows whenever needed, so the hint only saves index rebuilds).
    Memory per flow: a 48-byte row (72 bytes for a flow with an IPv6 address) plus 8 bytes per extra
    key word (key fields beyond the five), resident only as flows arrive, plus the index's 8-byte
    slots, 1.33 to 2.67 per flow.
    One updater at a time (not thread-safe; see the module docstring).
    """

    def __init__(self, name: str, key_fields: Sequence[str], capacity_hint: int = 1 << 16) -> None:
        self.name = name
        self.key_fields = validate_fields(key_fields)
        keys = set(self.key_fields)
        on, off = kern.ALL_ONES, np.uint64(0)
        self._masks = tuple(on if f in keys else off for f in PACKET_FIELDS)
        self._keep_src, self._keep_dst = "SrcIP" in keys, "DstIP" in keys
        # key fields beyond the five: extra key words after each row's own (None: the five-tuple path)
        extra = [f for f in self.key_fields if f not in PACKET_FIELDS]
        self._layout = ExtraLayout(extra) if extra else None
        self._nx = self._layout.words if self._layout is not None else 0
        self._rw = kern.ROW_WORDS + self._nx
        self._ww = kern.WIDE_ROW_WORDS + self._nx
        self._missing = MissingFields(name, "exact")
        self._decoder = Decoder()
        self._initial_capacity = _capacity_for(max(int(capacity_hint), 1))
        if self._initial_capacity > _MAX_CAPACITY:
            raise ValueError(
                f"capacity_hint {capacity_hint:,} exceeds the most flows one table holds "
                f"({_limit_for(_MAX_CAPACITY):,})"
            )
        self._index = np.zeros(self._initial_capacity, np.uint64)
        self._rows = GrowableWords(_limit_for(self._initial_capacity) * self._rw)
        self._wide = GrowableWords(_initial_wide_rows(self._initial_capacity) * self._ww)
        self._state = np.zeros(2, np.int64)  # compact rows used, wide rows used
        self._packets = 0
        self._bytes = 0
        self._empty_rows = 0

    def __repr__(self) -> str:
        fields = list(self.key_fields)
        return f"ExactTask({self.name!r}, {fields!r}, flows={len(self)}, capacity={self.capacity})"

    def __len__(self) -> int:
        return int(self._state[0] + self._state[1])

    @property
    def capacity(self) -> int:
        """Slots in the hash index (a power of two); it holds up to 3/4 as many flows."""
        return int(self._index.shape[0])

    @property
    def memory_bytes(self) -> int:
        """Bytes allocated by the table: the index, and the row arrays at their capacity (their part
        beyond the flows so far is address space that no page backs yet)."""
        return int(self._index.nbytes) + self._rows.nbytes + self._wide.nbytes

    @property
    def packets(self) -> int:
        """Packets accounted since creation or the last :meth:`reset`."""
        return self._packets

    @property
    def bytes(self) -> int:
        """Wire bytes accounted since creation or the last :meth:`reset`."""
        return self._bytes

    @property
    def empty_rows(self) -> int:
        """Weighted rows of 0 packets seen since creation (they count nothing; never reset)."""
        return self._empty_rows

    @property
    def missing_key_rows(self) -> dict[str, int]:
        """Rows counted under a key field's unknown value (0) because their batch lacked the field,
        per field, since creation (never reset)."""
        return self._missing.as_dict()

    @property
    def extra_layout(self) -> ExtraLayout | None:
        """Where the key fields beyond the five live in a row (None: the task has none)."""
        return self._layout

    def counters(self) -> dict[str, object]:
        """The task's own counters (the engine reports them per task)."""
        return {"missing_key_rows": self.missing_key_rows, "empty_rows": self._empty_rows}

    def update(self, batch: PacketBatch) -> None:
        """Account every packet of ``batch`` (which must satisfy :meth:`PacketBatch.validate`).

        A weighted row (a flow-export record: ``batch.packets``/``octets``) counts as the packets it
        stands for: packets and bytes add its counts (a flow's counters saturate at 2**64 - 1 rather
        than wrap), its first and last times are its ``flow_start_ns`` and ``ts_ns``; a row of 0
        packets counts nothing (:attr:`empty_rows`).

        Raises ``OverflowError`` when a new flow would not fit the largest table (about 1.6 billion
        flows), ``MemoryError`` when growth cannot allocate; the packets before that flow stay
        counted (flows and totals agree), the rest of the batch is not.
        """
        batch.validate()
        n = len(batch)
        if n == 0:
            return
        src = batch.src_ip.view(np.uint64)
        dst = batch.dst_ip.view(np.uint64)
        ts_u = batch.ts_ns.view(np.uint64)
        fstart = None if batch.flow_start_ns is None else batch.flow_start_ns.view(np.uint64)
        extra = None
        if self._layout is not None:
            extra = self._layout.pack(batch, self._missing)
            self._decoder.learn(batch.dictionaries)
        i = 0
        while True:
            i = kern.update_flows(
                self._index,
                self._rows.array,
                self._wide.array,
                self._state,
                i,
                _limit_for(self.capacity),
                src,
                dst,
                batch.src_port,
                batch.dst_port,
                batch.protocol,
                ts_u,
                batch.length,
                *self._masks,
                batch.packets,
                batch.octets,
                fstart,
                extra,
            )
            if i >= n:
                break
            try:
                self._grow()
            except BaseException:
                # Packets before i are in the rows: keep the totals in step with them.
                self._count_totals(batch, i)
                raise
        self._count_totals(batch, n)

    def _count_totals(self, batch: PacketBatch, upto: int) -> None:
        """Add rows ``0 .. upto-1`` of ``batch`` to the task's totals (exact Python integers)."""
        if batch.packets is None:
            self._packets += upto
            self._bytes += exact_sum(batch.length[:upto])
            return
        packets = batch.packets[:upto]
        octets = batch.octets[:upto]  # type: ignore[index]
        empty = packets == 0
        if empty.any():  # a record of no packet adds nothing (its octets neither), as in the kernel
            self._empty_rows += int(empty.sum())
            octets = octets[~empty]
        self._packets += exact_sum(packets)
        self._bytes += exact_sum(octets)

    def snapshot(self) -> FlowSnapshot:
        """A consistent copy of every flow; the task keeps counting (and is not reset)."""
        return self._export(self._rows.array, self._wide.array, int(self._state[0]), int(self._state[1]))

    def summary(self, n: int, by: SortBy = "bytes") -> FlowSummary:
        """The flow count, the totals over all flows and the ``n`` largest flows by ``by``, exactly as
        :meth:`snapshot` would give them (``len``, ``total_packets``, ``total_bytes``, ``top(k, by)`` for
        ``k <= n``), without a copy of every flow: only the flows whose ``by`` counter reaches the
        ``n``-th largest are decoded (a report's top 10 of 500 k flows: ~4 ms instead of ~16 ms for the
        snapshot, most of it the first touch of ~35 MB of new columns)."""
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        if by not in ("bytes", "packets"):
            raise ValueError(f"by must be 'bytes' or 'packets', got {by!r}")
        used, wide_used = int(self._state[0]), int(self._state[1])
        rows = self._rows.array[: used * self._rw].reshape(used, self._rw)
        wide = self._wide.array[: wide_used * self._ww].reshape(wide_used, self._ww)
        packets = (rows[:, kern.PACKETS], wide[:, kern.W_PACKETS])
        nbytes = (rows[:, kern.BYTES], wide[:, kern.W_BYTES])
        if self._packets <= _COUNT_MAX and self._bytes <= _COUNT_MAX:
            # No flow's counter can have saturated below totals this small, so the flows' sums are the
            # task's own totals (the same packets, rows of 0 packets left out alike).
            total_packets, total_bytes = self._packets, self._bytes
        else:
            total_packets = exact_sum(packets[0]) + exact_sum(packets[1])
            total_bytes = exact_sum(nbytes[0]) + exact_sum(nbytes[1])
        m = used + wide_used
        if n >= m:
            leaders = self.snapshot()
        else:
            # the snapshot's row order: compact rows, then wide rows
            primary = np.concatenate(nbytes if by == "bytes" else packets)
            kth = np.partition(primary, m - n)[m - n] if n else np.iinfo(np.uint64).max
            cand = np.flatnonzero(primary >= kth) if n else np.zeros(0, np.int64)
            split = int(np.searchsorted(cand, used))
            leaders = self._export(
                np.ascontiguousarray(rows[cand[:split]]).reshape(-1),
                np.ascontiguousarray(wide[cand[split:] - used]).reshape(-1),
                split,
                len(cand) - split,
            )
        return FlowSummary(self.name, self.key_fields, m, total_packets, total_bytes, leaders, n, by)

    def _export(self, rows: np.ndarray, wide: np.ndarray, used: int, wide_used: int) -> FlowSnapshot:
        """A snapshot of ``used`` compact rows of ``rows`` and ``wide_used`` wide rows of ``wide``."""
        m = used + wide_used
        src_ip = np.empty((m, 16), np.uint8)
        dst_ip = np.empty((m, 16), np.uint8)
        words = np.empty((m, self._nx), np.uint64) if self._layout is not None else None
        cols = {
            "src_port": np.empty(m, np.uint16),
            "dst_port": np.empty(m, np.uint16),
            "protocol": np.empty(m, np.uint8),
            "first_ns": np.empty(m, np.int64),
            "last_ns": np.empty(m, np.int64),
            "packets": np.empty(m, np.uint64),
            "bytes": np.empty(m, np.uint64),
        }
        kern.export_rows(
            rows,
            wide,
            used,
            wide_used,
            self._keep_src,
            self._keep_dst,
            src_ip.view(np.uint64),
            dst_ip.view(np.uint64),
            cols["src_port"],
            cols["dst_port"],
            cols["protocol"],
            cols["first_ns"].view(np.uint64),
            cols["last_ns"].view(np.uint64),
            cols["packets"],
            cols["bytes"],
            words,
        )
        extra = self._layout.unpack(words) if self._layout is not None and words is not None else {}
        return FlowSnapshot(
            self.name, self.key_fields, src_ip, dst_ip, **cols, extra=extra,
            dictionaries=self._decoder.snapshot() if extra else {},
        )  # fmt: skip

    def reset(self) -> None:
        """Forget every flow and the totals.

        The table keeps the size the last period needed (at least the initial one), so a steady
        load does not regrow every period while a one-off burst does not hold memory forever.
        """
        flows, wide_flows = len(self), int(self._state[1])
        cap = max(self._initial_capacity, _capacity_for(flows))
        if cap == self.capacity:
            self._index.fill(0)
        else:
            self._index = np.zeros(cap, np.uint64)
        self._rows.resize(_limit_for(cap) * self._rw)
        wide_rows = max(_initial_wide_rows(self._initial_capacity), wide_flows)
        self._wide.resize(min(wide_rows, _limit_for(cap)) * self._ww)
        self._state[:] = 0
        self._packets = 0
        self._bytes = 0

    def _grow(self) -> None:
        """Make room for the flow :func:`~netspectra.tasks.exact_kernels.update_flows` stopped at."""
        used, wide_used = len(self), int(self._state[1])
        if used >= _limit_for(self.capacity):
            cap = self.capacity * 2
            if cap > _MAX_CAPACITY:
                raise OverflowError(f"exact task {self.name!r}: {used:,} flows fill the largest table")
            # Rows never move: their array grows in place; only the index is rebuilt.
            self._rows.resize(_limit_for(cap) * self._rw)
            index = np.zeros(cap, np.uint64)
            moved = kern.reindex(self._index, index)
            if moved != used:
                raise AssertionError(f"reindex moved {moved} flows of {used}")  # a kernel bug, never data
            self._index = index
            log.debug("task %s: index grown to %d slots (%d flows)", self.name, cap, used)
        if wide_used >= self._wide.array.shape[0] // self._ww:
            self._wide.resize(2 * max(wide_used, 1) * self._ww)


def _capacity_for(flows: int) -> int:
    """Smallest power-of-two index capacity that holds ``flows`` within the load limit."""
    need = -(-flows * MAX_LOAD_DEN // MAX_LOAD_NUM) + 1
    return max(_MIN_CAPACITY, 1 << (need - 1).bit_length())


def _limit_for(capacity: int) -> int:
    """Most flows an index of ``capacity`` slots takes (and the rows' capacity that goes with it)."""
    return capacity * MAX_LOAD_NUM // MAX_LOAD_DEN


def _initial_wide_rows(capacity: int) -> int:
    # IPv6 flows are usually a minority; the wide array grows (without copying) when they are not.
    return max(16, _limit_for(capacity) // 8)
