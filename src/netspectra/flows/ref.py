"""Plain-Python reference of the flows task: the same records, from a dict of flow objects.

:class:`ReferenceFlows` states the semantics of :mod:`netspectra.flows.kernels` and
:mod:`netspectra.flows.records` once more, packet by packet, sharing no code with them: the
bidirectional key (an unordered pair of endpoints, protocol, VLAN), the source (the first packet's
sender), the deadlines and their reasons, the TCP endpoint states and Zeek's ``conn_state``, Welford's
running statistics, SPLT. Its :meth:`ReferenceFlows.records` are rows with the columns of
:meth:`~netspectra.flows.records.FlowRecords.to_arrow`, times and durations as integer nanoseconds;
tests require the kernel's records to be identical. Per-packet Python: thousands of packets per test,
never the production path. The table's capacity (``max_flows``) is not modelled: use a large one.
"""

from __future__ import annotations

import ipaddress
import math
from dataclasses import dataclass, field
from typing import Any

from netspectra.batch import PacketBatch
from netspectra.flows.task import FlowParams

V4_PREFIX = bytes(10) + b"\xff\xff"
COUNT_MAX = 0xFFFF
FIN, SYN, RST, ACK = 0x01, 0x02, 0x04, 0x10
INACTIVE, SYN_SENT, SYN_ACK_SENT, PARTIAL, ESTABLISHED, CLOSED, RESET = range(7)


def ip_text(raw: bytes) -> str:
    """An address as the records write it: IPv4 dotted (for IPv4-mapped), else RFC 5952."""
    if raw[:12] == V4_PREFIX:
        return str(ipaddress.IPv4Address(raw[12:]))
    return ipaddress.IPv6Address(raw).compressed


@dataclass
class _Running:
    """Welford's running mean and M2 plus min/max."""

    n: int = 0
    mean: float = 0.0
    m2: float = 0.0
    lo: int = 0
    hi: int = 0

    def add(self, x: int) -> None:
        self.n += 1
        if self.n == 1:
            self.mean, self.m2, self.lo, self.hi = float(x), 0.0, x, x
            return
        self.lo, self.hi = min(self.lo, x), max(self.hi, x)
        delta = x - self.mean
        self.mean += delta / self.n
        self.m2 += delta * (x - self.mean)

    def stddev(self) -> float:
        return math.sqrt(max(self.m2, 0.0) / (self.n - 1)) if self.n > 1 else 0.0


@dataclass
class _Flow:
    src: bytes
    dst: bytes
    sport: int
    dport: int
    proto: int
    vlan: int
    first: int
    last: list[int]
    pkts: list[int] = field(default_factory=lambda: [0, 0])
    bytes: list[int] = field(default_factory=lambda: [0, 0])
    ipb: list[int] = field(default_factory=lambda: [0, 0])
    flags: list[int] = field(default_factory=lambda: [0, 0])
    syn: list[int] = field(default_factory=lambda: [0, 0])
    fin: list[int] = field(default_factory=lambda: [0, 0])
    rst: list[int] = field(default_factory=lambda: [0, 0])
    state: list[int] = field(default_factory=lambda: [INACTIVE, INACTIVE])
    established: list[bool] = field(default_factory=lambda: [False, False])
    syn_then_rst: bool = False
    flags_known: bool = False
    iplen_known: bool = False
    icmp: list[int | None] = field(default_factory=lambda: [None, None])
    weighted: list[bool] = field(default_factory=lambda: [False, False])
    sizes: list[_Running] = field(default_factory=lambda: [_Running(), _Running()])
    iats: list[_Running] = field(default_factory=lambda: [_Running(), _Running()])
    splt: list[tuple[int, int]] = field(default_factory=list)

    @property
    def ended(self) -> bool:
        """The TCP end condition: a RST from either side, or FIN from both."""
        o, r = self.state
        return RESET in (o, r) or (o == CLOSED and r == CLOSED)

    def tcp(self, d: int, f: int) -> None:
        """Zeek's endpoint state machine, as far as flags tell it (see the kernels' ``_tcp``)."""
        e, p = self.state[d], self.state[1 - d]
        if f & RST:
            if d == 0 and e == SYN_SENT:
                self.syn_then_rst = True
            e = RESET
        elif e in (CLOSED, RESET):
            pass
        elif f & FIN:
            e = CLOSED
        elif f & SYN:
            if e == INACTIVE:
                e = SYN_ACK_SENT if f & ACK else SYN_SENT
        elif e == INACTIVE:
            e = PARTIAL
        elif e in (SYN_SENT, SYN_ACK_SENT) and f & ACK:
            if e == SYN_SENT and p == SYN_ACK_SENT:
                p = ESTABLISHED
                self.established[1 - d] = True
            e = ESTABLISHED
            self.established[d] = True
        self.state[d], self.state[1 - d] = e, p

    def conn_state(self) -> str | None:
        if self.proto == 17:
            return "SF" if self.pkts[1] else "S0"
        if self.proto != 6:
            return "OTH"
        if not self.flags_known:
            return None
        o, r = self.state
        o_inactive = o in (INACTIVE, PARTIAL)
        r_inactive = r in (INACTIVE, PARTIAL)
        if r == RESET:
            if o in (SYN_SENT, SYN_ACK_SENT) or (o == RESET and not any(self.established)):
                return "REJ"
            return "RSTRH" if o_inactive else "RSTR"
        if o == RESET:
            if r_inactive:
                return "RSTOS0" if self.syn_then_rst else "OTH"
            return "RSTO"
        if o == CLOSED and r == CLOSED:
            return "SF"
        if o == CLOSED:
            return "SH" if r_inactive else "S2"
        if r == CLOSED:
            return "SHR" if o_inactive else "S3"
        if o == SYN_SENT and r == INACTIVE:
            return "S0"
        if o == ESTABLISHED and r == ESTABLISHED:
            return "S1"
        return "OTH"


class ReferenceFlows:
    """The records a :class:`~netspectra.flows.task.FlowTask` with ``params`` makes (see the module
    docstring). Feed batches with :meth:`update`, end with :meth:`finish`, read :attr:`records`."""

    def __init__(self, name: str, params: FlowParams) -> None:
        self.name = name
        self.params = params
        self.flows: dict[tuple[Any, ...], _Flow] = {}
        self.records: list[dict[str, Any]] = []
        self.clock: int | None = None

    def _reason(self, fl: _Flow, now: int) -> str | None:
        p = self.params
        ended = p.tcp_end and fl.ended
        quiet = max(fl.last) + (p.tcp_end_grace_ns if ended else p.idle_timeout_ns)
        long = fl.first + p.active_timeout_ns
        if now >= quiet or now >= long:  # the earlier deadline names the reason (idle wins a tie)
            return ("tcp_end" if ended else "idle") if quiet <= long else "active"
        return None

    def update(self, batch: PacketBatch) -> None:
        has = {c: getattr(batch, c) is not None for c in PacketBatch.OPTIONAL}
        for i in range(len(batch)):
            ts = int(batch.ts_ns[i])
            start, packets, octets = ts, 1, int(batch.length[i])
            if batch.weighted:
                packets, octets = int(batch.packets[i]), int(batch.octets[i])  # type: ignore[index]
                if packets == 0:
                    continue  # a record of no packet stands for nothing
                if batch.flow_start_ns is not None:
                    start, ts = sorted((int(batch.flow_start_ns[i]), ts))
            # a record of several packets, or of one over a span of time, is not one packet
            multi = packets != 1 or octets >= 1 << 32 or start != ts
            if self.clock is not None and ts < self.clock - self.params.idle_timeout_ns:
                self.finish("end_of_input")  # another time base: everything open ends, time starts again
                self.clock = None
            t = ts if self.clock is None or ts >= self.clock else self.clock
            self.clock = t
            src, dst = bytes(batch.src_ip[i]), bytes(batch.dst_ip[i])
            sport, dport, proto = int(batch.src_port[i]), int(batch.dst_port[i]), int(batch.protocol[i])
            vlan = int(batch.vlan_id[i]) & 0xFFF if has["vlan_id"] else 0
            f = int(batch.tcp_flags[i]) if has["tcp_flags"] else 0
            icmp = int(batch.icmp_type_code[i]) if has["icmp_type_code"] else None
            iplen = int(batch.ip_length[i]) if has["ip_length"] else 0
            length = int(batch.length[i])
            key = (*sorted([(src, sport), (dst, dport)]), proto, vlan)
            fl = self.flows.get(key)
            if fl is not None:
                reason = self._reason(fl, start if multi else t)
                if reason is None and self.params.tcp_end and f & SYN and not f & ACK and fl.ended:
                    reason = "tcp_end"
                if reason is not None:
                    self._emit(fl, reason)
                    fl = None
            if fl is None:
                fl = _Flow(src, dst, sport, dport, proto, vlan, start if multi else t, [t, t])
                self.flows[key] = fl
                d = 0
            else:
                d = 0 if (src, sport) == (fl.src, fl.sport) else 1
            if multi:
                # a flow-export record: its counts and time, its flags as one packet; nothing per packet
                fl.pkts[d] = min(fl.pkts[d] + packets, (1 << 64) - 1)
                fl.bytes[d] = min(fl.bytes[d] + octets, (1 << 64) - 1)
                fl.first = min(fl.first, start)
                fl.last[d] = t
                fl.weighted[d] = True
                self._flags(fl, d, proto, f, icmp, has["tcp_flags"])
                continue
            before = fl.pkts[d]
            fl.pkts[d] += 1
            fl.bytes[d] += length
            fl.ipb[d] += iplen
            fl.iplen_known |= has["ip_length"]
            fl.sizes[d].add(length)
            if before:
                fl.iats[d].add(t - fl.last[d])
            fl.last[d] = t
            self._flags(fl, d, proto, f, icmp, has["tcp_flags"])
            if len(fl.splt) < self.params.splt:
                fl.splt.append((length, d))

    @staticmethod
    def _flags(fl: _Flow, d: int, proto: int, f: int, icmp: int | None, has_flags: bool) -> None:
        if proto == 6 and has_flags:
            fl.flags_known = True
            if f:
                fl.flags[d] |= f
                fl.tcp(d, f)
                fl.syn[d] += bool(f & SYN)
                fl.fin[d] += bool(f & FIN)
                fl.rst[d] += bool(f & RST)
        elif proto in (1, 58) and icmp is not None and fl.icmp[d] is None:
            fl.icmp[d] = icmp

    def finish(self, reason: str = "end_of_input") -> None:
        for fl in list(self.flows.values()):
            self._emit(fl, (self._reason(fl, self.clock) if self.clock is not None else None) or reason)

    def _emit(self, fl: _Flow, reason: str) -> None:
        key = (*sorted([(fl.src, fl.sport), (fl.dst, fl.dport)]), fl.proto, fl.vlan)
        del self.flows[key]
        stats = self.params.statistics
        last = max(fl.last)
        tcp = fl.proto == 6 and fl.flags_known
        row: dict[str, Any] = {
            "TaskName": self.name,
            "SrcIP": ip_text(fl.src),
            "DstIP": ip_text(fl.dst),
            "SrcPort": fl.sport,
            "DstPort": fl.dport,
            "Protocol": fl.proto,
            "VlanID": fl.vlan,
            "FirstSeen": fl.first,
            "LastSeen": last,
            "Duration": last - fl.first,
            "SrcToDstPackets": fl.pkts[0],
            "SrcToDstBytes": fl.bytes[0],
            "DstToSrcPackets": fl.pkts[1],
            "DstToSrcBytes": fl.bytes[1],
            "EndReason": reason,
            "ConnState": None if fl.proto == 6 and any(fl.weighted) else fl.conn_state(),
            "SrcToDstIPBytes": fl.ipb[0] if fl.iplen_known and not fl.weighted[0] else None,
            "DstToSrcIPBytes": fl.ipb[1] if fl.iplen_known and not fl.weighted[1] else None,
        }
        names = ("SrcToDst", "DstToSrc")
        for d in (0, 1):
            row[f"{names[d]}TCPFlags"] = fl.flags[d] if tcp else None
        for d in (0, 1):
            for flag, counts in (("SYN", fl.syn), ("FIN", fl.fin), ("RST", fl.rst)):
                row[f"{names[d]}{flag}"] = min(counts[d], COUNT_MAX) if tcp and not fl.weighted[d] else None
        for d in (0, 1):
            row[f"{names[d]}ICMPTypeCode"] = fl.icmp[d] if fl.proto in (1, 58) else None
        for d in (0, 1):
            sz, iat = fl.sizes[d], fl.iats[d]
            if fl.weighted[d]:  # only the mean is known: bytes over packets
                row[f"{names[d]}SizeMin"] = row[f"{names[d]}SizeMax"] = row[f"{names[d]}SizeStddev"] = None
                row[f"{names[d]}SizeMean"] = fl.bytes[d] / fl.pkts[d] if stats else None
                for stat in ("Min", "Max", "Mean", "Stddev"):
                    row[f"{names[d]}IAT{stat}"] = None
                continue
            has_sz = stats and sz.n > 0
            has_iat = stats and iat.n > 0
            row[f"{names[d]}SizeMin"] = sz.lo if has_sz else None
            row[f"{names[d]}SizeMax"] = sz.hi if has_sz else None
            row[f"{names[d]}SizeMean"] = sz.mean if has_sz else None
            row[f"{names[d]}SizeStddev"] = sz.stddev() if has_sz else None
            row[f"{names[d]}IATMin"] = iat.lo if has_iat else None
            row[f"{names[d]}IATMax"] = iat.hi if has_iat else None
            row[f"{names[d]}IATMean"] = round(iat.mean) if has_iat else None
            row[f"{names[d]}IATStddev"] = round(iat.stddev()) if has_iat else None
        if self.params.splt:
            row["SpltSize"] = None if any(fl.weighted) else [size for size, _ in fl.splt]
            row["SpltDirection"] = None if any(fl.weighted) else [d for _, d in fl.splt]
        self.records.append(row)
