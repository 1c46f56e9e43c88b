"""Flow records as data: the snapshot of a flows task, its Arrow table, and Zeek's connection states.

A :class:`FlowRecords` holds ended flow records in the kernel's row layout
(:mod:`netspectra.flows.kernels`) and turns them into an Arrow table with :meth:`FlowRecords.to_arrow`
(the columns of :data:`FLOW_RECORDS_SCHEMA`, plus the SPLT lists when the task keeps them). It is also
what a flows task hands to its writers: see :mod:`netspectra.flows.task` for which records a snapshot
holds.

Connection state (``ConnState``, Zeek's ``conn_state`` vocabulary) is derived from the two endpoint
states the kernel tracks from the TCP flags (:func:`conn_states`); the rules are Zeek's
``conn_state()`` function over those states:

=========  ===========================================================================================
state      rule (``o``: the source's endpoint state, ``r``: the destination's; *inactive* = INACTIVE or
           PARTIAL, i.e. no SYN seen from that side)
=========  ===========================================================================================
REJ        ``r`` RESET and ``o`` SYN_SENT or SYN_ACK_SENT; or both RESET and no side ever
           ESTABLISHED (Zeek: both RESET and no payload — payload sizes are not tracked here)
RSTRH      ``r`` RESET, ``o`` inactive (a SYN-ACK or data, then a reset, from the responder alone)
RSTR       ``r`` RESET otherwise
RSTOS0     ``o`` RESET, ``r`` inactive, and ``o`` went from SYN_SENT straight to RESET
OTH        ``o`` RESET, ``r`` inactive, otherwise
RSTO       ``o`` RESET otherwise
SF         both CLOSED (FIN from both sides)
SH         ``o`` CLOSED, ``r`` inactive
S2         ``o`` CLOSED otherwise
SHR        ``r`` CLOSED, ``o`` inactive
S3         ``r`` CLOSED otherwise
S0         ``o`` SYN_SENT and ``r`` INACTIVE (a SYN, no answer)
S1         both ESTABLISHED (handshake seen, not closed)
OTH        anything else (mid-stream traffic, no SYN seen)
=========  ===========================================================================================

UDP flows are ``SF`` with packets both ways, ``S0`` with packets one way (Zeek's rule: the source is
always active); other protocols are ``OTH``. A TCP flow whose packets came without the ``tcp_flags``
column (a probe that does not decode it) has no state (null), nor flag columns.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np
import pyarrow as pa

from netspectra.flows import kernels as kern
from netspectra.output.addr import ips_to_arrow
from netspectra.output.flow_table import TIMESTAMP_TYPE

DURATION_TYPE = pa.duration("ns")

#: ``ConnState`` values, in code order (code 0 = no state).
CONN_STATES: tuple[str, ...] = (
    "",
    "S0",
    "S1",
    "SF",
    "REJ",
    "S2",
    "S3",
    "RSTO",
    "RSTR",
    "RSTOS0",
    "RSTRH",
    "SH",
    "SHR",
    "OTH",
)
_CODE = {name: i for i, name in enumerate(CONN_STATES)}

#: ``EndReason`` values by code (see :mod:`netspectra.flows.kernels`).
END_REASONS: dict[int, str] = dict(kern.REASON_NAMES)


def _dir_fields(prefix: str) -> list[pa.Field]:
    return [
        pa.field(f"{prefix}SizeMin", pa.uint32()),
        pa.field(f"{prefix}SizeMax", pa.uint32()),
        pa.field(f"{prefix}SizeMean", pa.float64()),
        pa.field(f"{prefix}SizeStddev", pa.float64()),
        pa.field(f"{prefix}IATMin", DURATION_TYPE),
        pa.field(f"{prefix}IATMax", DURATION_TYPE),
        pa.field(f"{prefix}IATMean", DURATION_TYPE),
        pa.field(f"{prefix}IATStddev", DURATION_TYPE),
    ]


#: The columns of a flow record (without the SPLT lists, which follow when the task keeps them).
FLOW_RECORDS_SCHEMA = pa.schema(
    [
        pa.field("TaskName", pa.string(), nullable=False),
        pa.field("SrcIP", pa.string(), nullable=False),
        pa.field("DstIP", pa.string(), nullable=False),
        pa.field("SrcPort", pa.uint16(), nullable=False),
        pa.field("DstPort", pa.uint16(), nullable=False),
        pa.field("Protocol", pa.uint8(), nullable=False),
        pa.field("VlanID", pa.uint16(), nullable=False),
        pa.field("FirstSeen", TIMESTAMP_TYPE, nullable=False),
        pa.field("LastSeen", TIMESTAMP_TYPE, nullable=False),
        pa.field("Duration", DURATION_TYPE, nullable=False),
        pa.field("SrcToDstPackets", pa.uint64(), nullable=False),
        pa.field("SrcToDstBytes", pa.uint64(), nullable=False),
        pa.field("DstToSrcPackets", pa.uint64(), nullable=False),
        pa.field("DstToSrcBytes", pa.uint64(), nullable=False),
        pa.field("EndReason", pa.string(), nullable=False),
        pa.field("ConnState", pa.string()),
        pa.field("SrcToDstIPBytes", pa.uint64()),
        pa.field("DstToSrcIPBytes", pa.uint64()),
        pa.field("SrcToDstTCPFlags", pa.uint8()),
        pa.field("DstToSrcTCPFlags", pa.uint8()),
        pa.field("SrcToDstSYN", pa.uint32()),
        pa.field("SrcToDstFIN", pa.uint32()),
        pa.field("SrcToDstRST", pa.uint32()),
        pa.field("DstToSrcSYN", pa.uint32()),
        pa.field("DstToSrcFIN", pa.uint32()),
        pa.field("DstToSrcRST", pa.uint32()),
        pa.field("SrcToDstICMPTypeCode", pa.uint16()),
        pa.field("DstToSrcICMPTypeCode", pa.uint16()),
        *_dir_fields("SrcToDst"),
        *_dir_fields("DstToSrc"),
    ]
)
SPLT_FIELDS = (
    pa.field("SpltSize", pa.list_(pa.uint32())),
    pa.field("SpltDirection", pa.list_(pa.uint8())),
)

SortBy = Literal["bytes", "packets"]


def conn_states(rows: np.ndarray) -> np.ndarray:
    """``ConnState`` codes (indexes into :data:`CONN_STATES`; 0 = none) of records in row layout."""
    misc = rows[:, kern.MISC]
    proto = (misc & np.uint64(0xFF)).astype(np.uint8)
    tcpw = rows[:, kern.TCP]
    o = ((tcpw >> np.uint64(kern.STATE_SHIFT)) & np.uint64(7)).astype(np.int8)
    r = ((tcpw >> np.uint64(kern.STATE_SHIFT + 3)) & np.uint64(7)).astype(np.int8)
    o_in = (o == kern.INACTIVE) | (o == kern.PARTIAL)
    r_in = (r == kern.INACTIVE) | (r == kern.PARTIAL)
    est = (tcpw & np.uint64(kern.EST_SEEN | kern.EST_SEEN << 1)) != 0
    syn_rst = (tcpw & np.uint64(kern.SYN_THEN_RST)) != 0
    c = _CODE
    tcp = np.select(
        [
            (r == kern.RESET)
            & ((o == kern.SYN_SENT) | (o == kern.SYN_ACK_SENT) | ((o == kern.RESET) & ~est)),
            (r == kern.RESET) & o_in,
            r == kern.RESET,
            (o == kern.RESET) & r_in & syn_rst,
            (o == kern.RESET) & r_in,
            o == kern.RESET,
            (r == kern.CLOSED) & (o == kern.CLOSED),
            (o == kern.CLOSED) & r_in,
            o == kern.CLOSED,
            (r == kern.CLOSED) & o_in,
            r == kern.CLOSED,
            (o == kern.SYN_SENT) & (r == kern.INACTIVE),
            (o == kern.ESTABLISHED) & (r == kern.ESTABLISHED),
        ],
        [
            c[s]
            for s in (
                "REJ",
                "RSTRH",
                "RSTR",
                "RSTOS0",
                "OTH",
                "RSTO",
                "SF",
                "SH",
                "S2",
                "SHR",
                "S3",
                "S0",
                "S1",
            )
        ],
        c["OTH"],
    )
    tcp = np.where((tcpw & np.uint64(kern.FLAGS_KNOWN)) != 0, tcp, 0)
    udp = np.where(rows[:, kern.PKTS + 1] > 0, c["SF"], c["S0"])
    return np.where(proto == 6, tcp, np.where(proto == 17, udp, c["OTH"])).astype(np.uint8)


@dataclass(frozen=True)
class FlowSummary:
    """What a flows task has done since it started: records by end reason, open flows, the largest
    records (by bytes, both directions), packets that came late."""

    by_reason: dict[str, int]
    open_flows: int
    top: FlowRecords
    out_of_order: int = 0
    packets: int = 0

    @property
    def records(self) -> int:
        """Records ended so far."""
        return sum(self.by_reason.values())


@dataclass(frozen=True, eq=False)
class FlowRecords:
    """Ended flow records of one flows task, read-only and columnar (see the module docstring).

    ``rows`` is an ``(m, HOT)`` uint64 array in the kernel's layout (MISC carries the end reason), or
    ``(m, HOT + STATS)`` with each record's statistics row after its hot row (the task keeps
    statistics); ``splt`` an ``(m, splt_n)`` int32 array of the first packet sizes, each stored as
    ``size + 1`` (negative: destination to source; 0: no such packet). ``summary``, on the snapshots a
    task hands out, describes the task as a whole at that moment (:class:`FlowSummary`).
    """

    #: The aggregator kind that produces these snapshots (alerting and writers ask it).
    kind: ClassVar[str] = "flows"
    #: Snapshots are increments: each holds records no other snapshot holds (see netspectra.flows.task).
    incremental: ClassVar[bool] = True

    task_name: str
    rows: np.ndarray
    splt: np.ndarray
    summary: FlowSummary | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        widths = (kern.HOT, kern.HOT + kern.STATS)
        if self.rows.ndim != 2 or self.rows.shape[1] not in widths or self.rows.dtype != np.uint64:
            raise ValueError(
                f"FlowRecords.rows: {self.rows.dtype} {self.rows.shape}, expected uint64 (m, {widths[0]}) "
                f"or (m, {widths[1]})"
            )
        if self.splt.ndim != 2 or self.splt.shape[0] != self.rows.shape[0] or self.splt.dtype != np.int32:
            raise ValueError(f"FlowRecords.splt: {self.splt.dtype} {self.splt.shape}, expected int32 (m, n)")
        self.rows.flags.writeable = False
        self.splt.flags.writeable = False

    @classmethod
    def empty(cls, task_name: str, splt_n: int = 0, statistics: bool = True) -> FlowRecords:
        """No record, in the shape of a task with these options."""
        width = kern.HOT + (kern.STATS if statistics else 0)
        return cls(task_name, np.zeros((0, width), np.uint64), np.zeros((0, splt_n), np.int32))

    @classmethod
    def concat(cls, parts: Sequence[FlowRecords]) -> FlowRecords:
        """The records of ``parts`` (at least one, all of one task) in order."""
        if len(parts) == 1:
            return parts[0]
        return cls(
            parts[0].task_name,
            np.concatenate([p.rows for p in parts]),
            np.concatenate([p.splt for p in parts]),
        )

    def __len__(self) -> int:
        return int(self.rows.shape[0])

    @property
    def splt_n(self) -> int:
        """SPLT entries per record (0: the task keeps none)."""
        return int(self.splt.shape[1])

    @property
    def statistics(self) -> bool:
        """Whether the records carry size and inter-arrival statistics."""
        return self.rows.shape[1] > kern.HOT

    def take(self, index: np.ndarray) -> FlowRecords:
        """The records selected by an integer or boolean index, in that order (no summary)."""
        return FlowRecords(
            self.task_name, np.ascontiguousarray(self.rows[index]), np.ascontiguousarray(self.splt[index])
        )

    def with_summary(self, summary: FlowSummary) -> FlowRecords:
        return FlowRecords(self.task_name, self.rows, self.splt, summary)

    # -- columns ------------------------------------------------------------------------------------

    @property
    def reasons(self) -> np.ndarray:
        """End reason codes (keys of :data:`END_REASONS`)."""
        return ((self.rows[:, kern.MISC] >> np.uint64(56)) & np.uint64(0xF)).astype(np.uint8)

    @property
    def packets(self) -> np.ndarray:
        """Packets of each record, both directions."""
        return self.rows[:, kern.PKTS] + self.rows[:, kern.PKTS + 1]

    @property
    def bytes(self) -> np.ndarray:
        """Wire bytes of each record, both directions."""
        return self.rows[:, kern.BYTES] + self.rows[:, kern.BYTES + 1]

    def reason_counts(self) -> dict[str, int]:
        """Records by end reason (every reason, 0 included)."""
        counts = np.bincount(self.reasons, minlength=max(END_REASONS) + 1)
        return {name: int(counts[code]) for code, name in END_REASONS.items()}

    def oriented(self) -> dict[str, np.ndarray]:
        """Source and destination address words and ports as the record states them (the source is
        the sender of the first packet): ``src`` and ``dst`` (m, 2) uint64, ``sport``, ``dport``."""
        r = self.rows
        swap = (r[:, kern.MISC] & kern.SWAP) != 0
        lo = r[:, kern.LO_A : kern.LO_B + 1]
        hi = r[:, kern.HI_A : kern.HI_B + 1]
        lo_port = ((r[:, kern.MISC] >> np.uint64(24)) & np.uint64(0xFFFF)).astype(np.uint16)
        hi_port = ((r[:, kern.MISC] >> np.uint64(8)) & np.uint64(0xFFFF)).astype(np.uint16)
        return {
            "src": np.where(swap[:, None], hi, lo),
            "dst": np.where(swap[:, None], lo, hi),
            "sport": np.where(swap, hi_port, lo_port),
            "dport": np.where(swap, lo_port, hi_port),
        }

    def sort_order(self, by: SortBy = "bytes") -> np.ndarray:
        """Rows by ``by`` (both directions) descending, then the other counter, then first seen, then
        the key: fully deterministic."""
        primary, secondary = (self.bytes, self.packets) if by == "bytes" else (self.packets, self.bytes)
        r = self.rows
        key = (
            r[:, kern.MISC] & kern.KEY_MASK,
            r[:, kern.HI_B],
            r[:, kern.HI_A],
            r[:, kern.LO_B],
            r[:, kern.LO_A],
        )
        return np.lexsort((*key, r[:, kern.FIRST].view(np.int64), ~secondary, ~primary))

    def top(self, n: int, by: SortBy = "bytes") -> FlowRecords:
        """The ``n`` largest records by ``by``, largest first."""
        return self.take(self.sort_order(by)[: max(0, n)])

    def to_arrow(self) -> pa.Table:
        """The records as an Arrow table: :data:`FLOW_RECORDS_SCHEMA`, then ``SpltSize`` and
        ``SpltDirection`` (lists, direction 0 = source to destination) when the task keeps SPLT.

        Addresses are text (IPv4 dotted, IPv6 RFC 5952), times UTC nanoseconds, durations ns.
        Columns that do not apply are null: flag columns outside TCP (or without the flags column),
        ICMP columns outside ICMP, size statistics of a direction without packets, inter-arrival
        statistics of a direction with fewer than two packets, IP bytes without the ip_length column,
        and every statistic when the task does not keep them. A direction that got a row of several
        packets (a flow-export record) has a size mean (its bytes over its packets) but no size min,
        max or stddev, no inter-arrival statistics, no SYN/FIN/RST counts and no IP bytes; a TCP
        record with such a row has no ConnState, and any record with one no SPLT lists.
        """
        # one transposing copy: every column below is then a contiguous row of ``c`` (a strided column
        # of the record rows costs a cache miss per value, forty times over)
        c = np.ascontiguousarray(self.rows.T)
        m = len(self)
        o = self.oriented()
        misc = c[kern.MISC]
        proto = (misc & np.uint64(0xFF)).astype(np.uint8)
        tcpw = c[kern.TCP]
        first = c[kern.FIRST].view(np.int64)
        last = np.maximum(c[kern.LAST].view(np.int64), c[kern.LAST + 1].view(np.int64))
        is_tcp = (proto == 6) & ((tcpw & np.uint64(kern.FLAGS_KNOWN)) != 0)
        iplen_known = (tcpw & np.uint64(kern.IPLEN_KNOWN)) != 0
        # a direction with a row of several packets (a flow-export record): what needs each packet is
        # unknown there (see the kernels' module docstring)
        weighted = [(tcpw & np.uint64(kern.WEIGHTED << d)) != 0 for d in (0, 1)]
        any_weighted = weighted[0] | weighted[1]
        states = conn_states(self.rows)
        # a TCP state needs the order of the flags; a record gives only their union
        states = np.where(any_weighted & (proto == 6), 0, states).astype(np.uint8)
        reasons = self.reasons

        def ts(a: np.ndarray) -> pa.Array:
            return pa.array(a, pa.int64()).cast(TIMESTAMP_TYPE)

        def dur(a: np.ndarray, valid: np.ndarray | None = None) -> pa.Array:
            return pa.array(np.asarray(a, np.int64), pa.int64(), mask=None if valid is None else ~valid).cast(
                DURATION_TYPE
            )

        def masked(a: np.ndarray, typ: pa.DataType, valid: np.ndarray) -> pa.Array:
            return pa.array(a, typ, mask=~valid)

        def dictionary(codes: np.ndarray, names: Sequence[str], valid: np.ndarray | None = None) -> pa.Array:
            arr = pa.DictionaryArray.from_arrays(
                pa.array(codes.astype(np.int32), mask=None if valid is None else ~valid),
                pa.array(list(names)),
            )
            return arr.cast(pa.string())

        reason_names = [END_REASONS.get(i, "") for i in range(16)]
        cols: dict[str, pa.Array] = {
            "TaskName": dictionary(np.zeros(m, np.int32), [self.task_name]),
            "SrcIP": ips_to_arrow(np.ascontiguousarray(o["src"]).view(np.uint8).reshape(m, 16)),
            "DstIP": ips_to_arrow(np.ascontiguousarray(o["dst"]).view(np.uint8).reshape(m, 16)),
            "SrcPort": pa.array(o["sport"], pa.uint16()),
            "DstPort": pa.array(o["dport"], pa.uint16()),
            "Protocol": pa.array(proto, pa.uint8()),
            "VlanID": pa.array(((misc >> np.uint64(40)) & np.uint64(0xFFF)).astype(np.uint16), pa.uint16()),
            "FirstSeen": ts(first),
            "LastSeen": ts(last),
            "Duration": dur(last - first),
            "SrcToDstPackets": pa.array(c[kern.PKTS], pa.uint64()),
            "SrcToDstBytes": pa.array(c[kern.BYTES], pa.uint64()),
            "DstToSrcPackets": pa.array(c[kern.PKTS + 1], pa.uint64()),
            "DstToSrcBytes": pa.array(c[kern.BYTES + 1], pa.uint64()),
            "EndReason": dictionary(reasons, reason_names),
            "ConnState": dictionary(states, CONN_STATES, states != 0),
            "SrcToDstIPBytes": masked(c[kern.IPB], pa.uint64(), iplen_known & ~weighted[0]),
            "DstToSrcIPBytes": masked(c[kern.IPB + 1], pa.uint64(), iplen_known & ~weighted[1]),
        }
        for d, name in ((0, "SrcToDst"), (1, "DstToSrc")):
            cols[f"{name}TCPFlags"] = masked(((tcpw >> np.uint64(8 * d)) & np.uint64(0xFF)).astype(np.uint8),
                                             pa.uint8(), is_tcp)  # fmt: skip
        cnt = c[kern.CNT]
        for d, name in ((0, "SrcToDst"), (1, "DstToSrc")):
            for word, shift, flag in (
                (tcpw, kern.SYN_SHIFT + 16 * d, "SYN"),
                (cnt, kern.FIN_SHIFT + 32 * d, "FIN"),
                (cnt, kern.RST_SHIFT + 32 * d, "RST"),
            ):
                count = ((word >> np.uint64(shift)) & np.uint64(kern.COUNT_MAX)).astype(np.uint32)
                cols[f"{name}{flag}"] = masked(count, pa.uint32(), is_tcp & ~weighted[d])
        for d, name in ((0, "SrcToDst"), (1, "DstToSrc")):
            seen = (tcpw & np.uint64(kern.ICMP_SEEN << d)) != 0
            code = ((cnt >> np.uint64(kern.ICMP_SHIFT + 16 * d)) & np.uint64(0xFFFF)).astype(np.uint16)
            cols[f"{name}ICMPTypeCode"] = masked(code, pa.uint16(), seen & ((proto == 1) | (proto == 58)))
        # the statistics rows (zeros standing in when the task keeps none: every value is then null)
        st = c[kern.HOT :] if self.statistics else np.zeros((kern.STATS, m), np.uint64)
        f = st.view(np.float64)
        for d, name in ((0, "SrcToDst"), (1, "DstToSrc")):
            n = c[kern.PKTS + d].astype(np.float64)
            has = (c[kern.PKTS + d] > 0) & self.statistics
            each = has & ~weighted[d]  # every packet's size was seen
            mm = st[kern.SZMM + 3 * d]
            cols[f"{name}SizeMin"] = masked(
                (mm & np.uint64(0xFFFF_FFFF)).astype(np.uint32), pa.uint32(), each
            )
            cols[f"{name}SizeMax"] = masked((mm >> np.uint64(32)).astype(np.uint32), pa.uint32(), each)
            with np.errstate(invalid="ignore", divide="ignore"):
                mean = np.where(weighted[d], c[kern.BYTES + d] / np.maximum(n, 1.0), f[kern.SZMEAN + 3 * d])
            cols[f"{name}SizeMean"] = masked(mean, pa.float64(), has)
            cols[f"{name}SizeStddev"] = masked(_stddev(f[kern.SZM2 + 3 * d], n), pa.float64(), each)
            k = n - 1
            has_iat = (c[kern.PKTS + d] > 1) & self.statistics & ~weighted[d]
            ia = kern.IATMIN + 4 * d
            cols[f"{name}IATMin"] = dur(st[ia].view(np.int64), has_iat)
            cols[f"{name}IATMax"] = dur(st[ia + 1].view(np.int64), has_iat)
            cols[f"{name}IATMean"] = dur(np.rint(f[ia + 2]).astype(np.int64), has_iat)
            cols[f"{name}IATStddev"] = dur(np.rint(_stddev(f[ia + 3], k)).astype(np.int64), has_iat)
        arrays = [cols[fld.name] for fld in FLOW_RECORDS_SCHEMA]
        fields = list(FLOW_RECORDS_SCHEMA)
        if self.splt_n:
            sizes, dirs = _splt_lists(self.splt, any_weighted)
            arrays += [sizes, dirs]
            fields += list(SPLT_FIELDS)
        return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def _stddev(m2: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Sample standard deviation from Welford's M2 over ``n`` values (0 for a single value)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 1, np.sqrt(np.maximum(m2, 0.0) / np.maximum(n - 1, 1)), 0.0)


def _splt_lists(splt: np.ndarray, unknown: np.ndarray) -> tuple[pa.Array, pa.Array]:
    # entries are ±(size + 1): + source to destination, - back, 0 no packet (see the kernels);
    # ``unknown`` records (rows of several packets) have null lists
    splt = np.where(unknown[:, None], 0, splt)
    present = splt != 0
    lengths = present.sum(axis=1)
    offsets = np.zeros(splt.shape[0] + 1, np.int32)
    np.cumsum(lengths, out=offsets[1:])
    values = splt[present].astype(np.int64)  # row-major: each record's packets in order
    mask = pa.array(unknown) if unknown.any() else None
    sizes = pa.ListArray.from_arrays(
        pa.array(offsets), pa.array((np.abs(values) - 1).astype(np.uint32)), mask=mask
    )
    dirs = pa.ListArray.from_arrays(pa.array(offsets), pa.array((values < 0).astype(np.uint8)), mask=mask)
    return sizes, dirs


def jsonable_rows(table: pa.Table) -> list[dict[str, Any]]:
    """``table``'s rows as JSON-able dicts: times ISO 8601 UTC with nanoseconds, durations in ns."""
    from netspectra.output.timefmt import format_ts_ns

    cols = {}
    for name in table.column_names:
        col = table.column(name)
        if pa.types.is_timestamp(col.type):
            cols[name] = [None if v is None else format_ts_ns(v) for v in col.cast(pa.int64()).to_pylist()]
        elif pa.types.is_duration(col.type):
            cols[name] = col.cast(pa.int64()).to_pylist()
        else:
            cols[name] = col.to_pylist()
    return [dict(zip(cols, values, strict=True)) for values in zip(*cols.values(), strict=True)]
