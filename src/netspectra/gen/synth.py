"""Synthetic CAIDA-like header traces with planted heavy hitters, super-spreaders and DDoS victims.

:func:`generate` writes a classic little-endian pcap (Ethernet link type) whose records hold only
headers (Ethernet [+ 802.1Q] + IPv4/IPv6 + TCP/UDP/ICMP), while each record's original length is a
realistic wire length. Beside it, it writes a JSON "truth" document with the exact totals and the
true values of every planted entity, computed from the flow table that produced the file.

Traffic model
-------------
* Background: ``flows`` distinct five-tuples; the flow of rank ``r`` (0-based) gets
  ``1 + (packets_left * (r + 1) ** -zipf / H)`` packets (largest-remainder rounding, so the counts
  are exactly Zipf with no sampling noise and every flow has at least one packet). Clients and
  servers come from address pools; server popularity is Zipf(1), so many flows share a server.
* IPv6, VLAN tags and the protocol are assigned per flow along a low-discrepancy sequence over the
  size ranks, so the requested fractions hold both for flows and (up to the few largest flows) for
  packets.
* Heavy hitters: ``K`` sources in 198.18.0.0/24 (RFC 2544 benchmarking space, never used by the
  background), sharing ``hh_share`` of all packets (source ``i`` weighted ``1/sqrt(i+1)``, so their
  ranking is unambiguous), each over up to 64 flows to distinct destinations.
* Super-spreaders: ``K`` sources in 198.18.1.0/24, each sending one TCP SYN to ``spread`` distinct
  destinations.
* DDoS victims: ``K`` destinations in 198.18.2.0/24, each hit by ``ddos_sources`` distinct sources
  with 1 to 4 packets each (SYN flood to port 80 for even victims, DNS-amplification-like UDP from
  port 53 for odd ones).
* Order and time: packets of all flows are interleaved uniformly at random (each chunk of the file
  draws its share of every flow's remaining packets from a multivariate hypergeometric, so the whole
  file is one uniformly random interleaving built in bounded memory). Packet ``i`` of ``N`` gets the
  timestamp ``start + (i + u_i) * duration / N``, ``u_i`` uniform in [0, 1): non-decreasing, spread
  evenly over ``duration``.

Everything derives from one ``numpy.random.Generator`` seeded with ``seed``: the same parameters
give a byte-identical file (for a given numpy version, whose generators are stable).
"""

from __future__ import annotations

import ipaddress
import json
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from netspectra.atomic import atomic_file
from netspectra.gen import kernels as k

log = logging.getLogger(__name__)

DEFAULT_START = datetime(2024, 1, 1, tzinfo=UTC)
PCAP_MAGIC_US = 0xA1B2C3D4
PCAP_MAGIC_NS = 0xA1B23C4D
LINKTYPE_ETHERNET = 1
#: Snap length written in the file header: above every record's captured length (headers only).
SNAPLEN = 128

# first octets the background may use for IPv4: public unicast space, minus 10/8, 127/8 and
# 198/8 (198.18.0.0/15 holds the planted entities, so they never collide with the background)
_V4_FIRST_OCTETS = np.array([o for o in range(1, 224) if o not in (10, 127, 198)], dtype=np.uint32)
_PLANT_HH = 0xC6120000  # 198.18.0.0
_PLANT_SS = 0xC6120100  # 198.18.1.0
_PLANT_DDOS = 0xC6120200  # 198.18.2.0
_MAX_PLANTED = 256  # one /24 for each kind
_HH_FLOWS = 64
_EPHEMERAL = (32768, 61000)

_TCP_SERVICES = (
    np.array([443, 80, 22, 25, 993, 8080, 3389, 8443], np.uint16),
    np.array([0.55, 0.2, 0.05, 0.04, 0.04, 0.05, 0.03, 0.04]),
)
_UDP_SERVICES = (
    np.array([53, 443, 123, 3478, 500, 1194, 4500, 5353], np.uint16),
    np.array([0.4, 0.3, 0.08, 0.07, 0.04, 0.04, 0.04, 0.03]),
)
_SCAN_PORTS = np.array([22, 23, 445, 3389, 80, 8080, 5900, 1433], np.uint16)
_VLAN_POOL = 8  # the tagged flows spread over this many VLAN IDs


@dataclass(frozen=True)
class GenParams:
    """Parameters of one generated trace; :meth:`validate` states the accepted ranges."""

    packets: int = 1_000_000
    flows: int = 100_000
    seed: int = 0
    zipf: float = 1.1
    duration: float = 60.0
    start: datetime = DEFAULT_START
    ipv6: float = 0.10
    vlan: float = 0.05
    tcp: float = 0.85
    udp: float = 0.12
    icmp: float = 0.03
    heavy_hitters: int = 5
    hh_share: float = 0.30
    super_spreaders: int = 2
    spread: int = 5000
    ddos_victims: int = 1
    ddos_sources: int = 5000
    nanosecond: bool = False
    chunk: int = 1_000_000

    def validate(self) -> None:
        """Raise ``ValueError`` naming the option (``--flag``) and the accepted range of a bad value."""

        def need(ok: bool, opt: str, what: str, value: object) -> None:
            if not ok:
                raise ValueError(f"--{opt.replace('_', '-')} must be {what}, got {value!r}")

        need(self.packets >= 1, "packets", "at least 1", self.packets)
        need(self.flows >= 1, "flows", "at least 1", self.flows)
        need(self.seed >= 0, "seed", "a non-negative integer", self.seed)
        need(math.isfinite(self.zipf) and self.zipf > 0, "zipf", "a positive exponent", self.zipf)
        need(
            math.isfinite(self.duration) and self.duration > 0,
            "duration",
            "positive (seconds)",
            self.duration,
        )
        need(self.start.tzinfo is not None, "start", "a time with a time zone", self.start)
        for name in ("ipv6", "vlan", "tcp", "udp", "icmp"):
            v = getattr(self, name)
            need(math.isfinite(v) and 0 <= v <= 1, name, "a fraction in [0, 1]", v)
        mix = self.tcp + self.udp + self.icmp
        if abs(mix - 1) > 1e-6:
            raise ValueError(f"--tcp + --udp + --icmp must sum to 1, got {mix:g}")
        for name in ("heavy_hitters", "super_spreaders", "ddos_victims"):
            v = getattr(self, name)
            need(0 <= v <= _MAX_PLANTED, name, f"between 0 and {_MAX_PLANTED}", v)
        need(0 < self.hh_share < 1, "hh_share", "a fraction in (0, 1)", self.hh_share)
        need(1 <= self.spread <= 1 << 22, "spread", "between 1 and 4194304", self.spread)
        need(1 <= self.ddos_sources <= 1 << 24, "ddos_sources", "between 1 and 16777216", self.ddos_sources)
        need(self.chunk >= 1, "chunk", "at least 1", self.chunk)
        need(
            self.end_ns < (1 << 32) * 1_000_000_000,
            "start",
            "before 2106 (pcap seconds are 32-bit)",
            self.start,
        )
        need(self.start_ns >= 0, "start", "after 1970-01-01", self.start)

    @property
    def start_ns(self) -> int:
        """Start time in nanoseconds since the Unix epoch."""
        delta = self.start - datetime(1970, 1, 1, tzinfo=UTC)
        return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000

    @property
    def end_ns(self) -> int:
        """End of the covered interval (exclusive), nanoseconds since the Unix epoch."""
        return self.start_ns + round(self.duration * 1e9)


def parse_start(text: str) -> datetime:
    """An ISO-8601 time; without a zone it is taken as UTC. ``ValueError`` if it does not parse."""
    try:
        t = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"--start must be an ISO-8601 time such as 2024-01-01T00:00:00Z, got {text!r}"
        ) from None
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)


def default_truth_path(path: Path) -> Path:
    """``OUT.truth.json`` beside ``OUT.pcap`` (``OUT.pcap`` loses its suffix, others keep theirs)."""
    name = path.name[: -len(".pcap")] if path.name.endswith(".pcap") else path.name
    return path.with_name(name + ".truth.json")


# ---------------------------------------------------------------------------------------------------
# flow table


@dataclass
class FlowTable:
    """Per-flow attributes (one row per distinct five-tuple) and planned packet counts."""

    src: np.ndarray  # uint8 (F, 16)
    dst: np.ndarray  # uint8 (F, 16)
    sport: np.ndarray  # uint16
    dport: np.ndarray  # uint16
    proto: np.ndarray  # uint8
    v6: np.ndarray  # uint8 0/1
    vlan: np.ndarray  # uint16, 0 = untagged
    kind: np.ndarray  # uint8, kernels.KIND_*
    profile: np.ndarray  # uint8, kernels.PROFILE_*
    count: np.ndarray  # int64, packets planned for the flow

    @classmethod
    def concat(cls, tables: list[FlowTable]) -> FlowTable:
        return cls(
            *(
                np.ascontiguousarray(np.concatenate([getattr(t, n) for t in tables]))
                for n in cls.__annotations__
            )
        )

    def __len__(self) -> int:
        return int(self.count.shape[0])


def _mapped(u32: np.ndarray) -> np.ndarray:
    """IPv4 addresses (uint32) as IPv4-mapped 16-byte rows."""
    out = np.zeros((u32.shape[0], 16), dtype=np.uint8)
    out[:, 10:12] = 0xFF
    out[:, 12:] = u32.astype(">u4").view(np.uint8).reshape(-1, 4)
    return out


def _random_v4(rng: np.random.Generator, n: int, *, distinct: bool) -> np.ndarray:
    """``n`` random public IPv4 addresses (uint32) outside 10/8, 127/8 and 198/8."""
    if not distinct:
        first = rng.choice(_V4_FIRST_OCTETS, size=n)
        return (first << 24) | rng.integers(0, 1 << 24, size=n, dtype=np.uint32)
    got = np.empty(0, dtype=np.uint32)
    while got.shape[0] < n:
        more = _random_v4(rng, n - got.shape[0] + 64, distinct=False)
        cand = np.concatenate([got, more])
        _, first_at = np.unique(cand, return_index=True)
        got = cand[np.sort(first_at)]  # keep draw order so the result does not depend on sorting
    return got[:n]


def _random_v6(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` random global-unicast IPv6 addresses (2000::/4 ... 2f00::) as 16-byte rows."""
    out = rng.integers(0, 256, size=(n, 16), dtype=np.uint8)
    out[:, 0] = 0x20 | (out[:, 0] & 0x0F)
    return out


def _allocate(total: int, weights: np.ndarray) -> np.ndarray:
    """Split ``total`` into integers proportional to ``weights`` (largest remainder, ties by index)."""
    if total <= 0:
        return np.zeros(weights.shape[0], dtype=np.int64)
    share = weights / weights.sum() * total
    base = np.floor(share).astype(np.int64)
    left = total - int(base.sum())
    if left > 0:
        order = np.argsort(-(share - base), kind="stable")
        base[order[:left]] += 1
    return base


def _low_discrepancy(rng: np.random.Generator, n: int, alpha: float) -> np.ndarray:
    """Kronecker sequence ``frac(u0 + i * alpha)``: every prefix is spread evenly over [0, 1)."""
    return np.modf(rng.random() + np.arange(n, dtype=np.float64) * alpha)[0]


def _five_tuple_keys(
    src: np.ndarray, dst: np.ndarray, sport: np.ndarray, dport: np.ndarray, proto: np.ndarray
) -> np.ndarray:
    """One 37-byte opaque key per row (np.void), for uniqueness tests with ``np.unique``."""
    n = src.shape[0]
    raw = np.empty((n, 37), dtype=np.uint8)
    raw[:, :16] = src
    raw[:, 16:32] = dst
    raw[:, 32:34] = sport.astype(">u2").view(np.uint8).reshape(n, 2)
    raw[:, 34:36] = dport.astype(">u2").view(np.uint8).reshape(n, 2)
    raw[:, 36] = proto
    return raw.view(np.dtype((np.void, 37))).ravel()


def _background(rng: np.random.Generator, p: GenParams, n_packets: int) -> FlowTable:
    F = p.flows
    rank_w = np.arange(1, F + 1, dtype=np.float64) ** -p.zipf
    count = 1 + _allocate(n_packets - F, rank_w)  # index = size rank: counts are non-increasing

    v6 = (_low_discrepancy(rng, F, 0.6180339887498949) < p.ipv6).astype(np.uint8)
    tagged = _low_discrepancy(rng, F, 0.41421356237309515) < p.vlan
    vids = rng.choice(np.arange(2, 4095, dtype=np.uint16), size=_VLAN_POOL, replace=False)
    vlan = np.where(tagged, vids[rng.integers(0, _VLAN_POOL, size=F)], 0).astype(np.uint16)
    u = _low_discrepancy(rng, F, 0.7320508075688772)
    proto_cls = np.where(u < p.tcp, 0, np.where(u < p.tcp + p.udp, 1, 2))
    proto = np.choose(proto_cls, [k.PROTO_TCP, k.PROTO_UDP, k.PROTO_ICMP]).astype(np.uint8)
    proto[(proto_cls == 2) & (v6 == 1)] = k.PROTO_ICMPV6
    profile = np.choose(proto_cls, [k.PROFILE_TCP, k.PROFILE_UDP, k.PROFILE_ICMP]).astype(np.uint8)

    n_clients, n_servers = max(1, F // 4), max(1, F // 20)
    pools = {
        "c4": _mapped(_random_v4(rng, n_clients, distinct=True)),
        "s4": _mapped(_random_v4(rng, n_servers, distinct=True)),
        "c6": _random_v6(rng, n_clients),
        "s6": _random_v6(rng, n_servers),
    }
    server_w = 1.0 / np.arange(1, n_servers + 1, dtype=np.float64)
    server = rng.choice(n_servers, size=F, p=server_w / server_w.sum())
    client = rng.integers(0, n_clients, size=F)
    is6 = v6.astype(bool)
    srv_ip = np.where(is6[:, None], pools["s6"][server], pools["s4"][server])
    cli_ip = np.where(is6[:, None], pools["c6"][client], pools["c4"][client])

    srv_port = np.zeros(F, dtype=np.uint16)
    for cls, (ports, pw) in ((0, _TCP_SERVICES), (1, _UDP_SERVICES)):
        sel = proto_cls == cls
        srv_port[sel] = rng.choice(ports, size=int(sel.sum()), p=pw)
    cli_port = rng.integers(*_EPHEMERAL, size=F).astype(np.uint16)
    icmp = proto_cls == 2
    cli_port[icmp] = 0
    # half of the flows are the server's direction of a conversation; ICMP flows are echo requests
    reverse = (rng.random(F) < 0.5) & ~icmp

    def assemble() -> tuple[np.ndarray, ...]:
        rv = reverse[:, None]
        return (
            np.where(rv, srv_ip, cli_ip),
            np.where(rv, cli_ip, srv_ip),
            np.where(reverse, srv_port, cli_port),
            np.where(reverse, cli_port, srv_port),
        )

    # five-tuples must be distinct: redraw the client side of duplicates until they are
    for attempt in range(100):
        src, dst, sport, dport = assemble()
        _, first_at = np.unique(_five_tuple_keys(src, dst, sport, dport, proto), return_index=True)
        dup = np.ones(F, dtype=bool)
        dup[first_at] = False
        n_dup = int(dup.sum())
        if n_dup == 0:
            break
        log.debug("background: redrawing %d duplicate five-tuples (attempt %d)", n_dup, attempt)
        client = rng.integers(0, n_clients, size=n_dup)
        cli_ip[dup] = np.where(is6[dup][:, None], pools["c6"][client], pools["c4"][client])
        cli_port[dup] = np.where(icmp[dup], 0, rng.integers(*_EPHEMERAL, size=n_dup)).astype(np.uint16)
    else:  # pragma: no cover - needs absurd pool exhaustion
        raise RuntimeError("could not draw distinct background five-tuples")

    return FlowTable(
        src=src,
        dst=dst,
        sport=sport,
        dport=dport,
        proto=proto,
        v6=v6,
        vlan=vlan,
        kind=np.full(F, k.KIND_NORMAL, np.uint8),
        profile=profile,
        count=count,
    )


def _uniform_table(
    src: np.ndarray,
    dst: np.ndarray,
    sport: np.ndarray,
    dport: np.ndarray,
    proto: int,
    kind: int,
    profile: int,
    count: np.ndarray,
) -> FlowTable:
    n = src.shape[0]
    return FlowTable(
        src=src,
        dst=dst,
        sport=sport.astype(np.uint16),
        dport=dport.astype(np.uint16),
        proto=np.full(n, proto, np.uint8),
        v6=np.zeros(n, np.uint8),
        vlan=np.zeros(n, np.uint16),
        kind=np.full(n, kind, np.uint8),
        profile=np.full(n, profile, np.uint8),
        count=count.astype(np.int64),
    )


def _heavy_hitters(rng: np.random.Generator, p: GenParams) -> list[FlowTable]:
    K = p.heavy_hitters
    if K == 0:
        return []
    per_src = _allocate(round(p.hh_share * p.packets), 1.0 / np.sqrt(np.arange(1, K + 1)))
    if per_src.min() < 1:
        raise ValueError(f"--hh-share {p.hh_share:g} of {p.packets} packets leaves a heavy hitter no packet")
    tables = []
    for i in range(K):
        m = int(min(_HH_FLOWS, per_src[i]))
        count = 1 + _allocate(int(per_src[i]) - m, 1.0 / np.arange(1, m + 1))
        src = _mapped(np.full(m, _PLANT_HH + 1 + i, np.uint32))
        dst = _mapped(_random_v4(rng, m, distinct=True))
        # a busy server: sends from 443 to many clients
        sport = np.full(m, 443)
        dport = rng.integers(*_EPHEMERAL, size=m)
        tables.append(
            _uniform_table(src, dst, sport, dport, k.PROTO_TCP, k.KIND_NORMAL, k.PROFILE_TCP, count)
        )
    return tables


def _super_spreaders(rng: np.random.Generator, p: GenParams) -> list[FlowTable]:
    tables = []
    for i in range(p.super_spreaders):
        D = p.spread
        src = _mapped(np.full(D, _PLANT_SS + 1 + i, np.uint32))
        dst = _mapped(_random_v4(rng, D, distinct=True))
        sport = rng.integers(*_EPHEMERAL, size=D)
        dport = np.full(D, _SCAN_PORTS[i % _SCAN_PORTS.shape[0]])
        tables.append(
            _uniform_table(
                src, dst, sport, dport, k.PROTO_TCP, k.KIND_SYN, k.PROFILE_MIN, np.ones(D, np.int64)
            )
        )
    return tables


def _ddos(rng: np.random.Generator, p: GenParams) -> list[FlowTable]:
    tables = []
    for i in range(p.ddos_victims):
        S = p.ddos_sources
        src = _mapped(_random_v4(rng, S, distinct=True))
        dst = _mapped(np.full(S, _PLANT_DDOS + 1 + i, np.uint32))
        count = rng.integers(1, 5, size=S)
        if i % 2 == 0:  # SYN flood on a web server
            sport, dport = rng.integers(1024, 65536, size=S), np.full(S, 80)
            t = _uniform_table(src, dst, sport, dport, k.PROTO_TCP, k.KIND_SYN, k.PROFILE_MIN, count)
        else:  # reflected DNS answers
            sport, dport = np.full(S, 53), rng.integers(1024, 65536, size=S)
            t = _uniform_table(src, dst, sport, dport, k.PROTO_UDP, k.KIND_NORMAL, k.PROFILE_UDP_FLOOD, count)
        tables.append(t)
    return tables


def build_flows(p: GenParams, rng: np.random.Generator) -> tuple[FlowTable, dict[str, slice]]:
    """The complete flow table of a trace and the row range of each group (background, planted kinds).

    Raises ``ValueError`` when ``p.packets`` cannot hold the planted traffic plus one packet for each
    background flow.
    """
    planted = {
        "heavy_hitters": _heavy_hitters(rng, p),
        "super_spreaders": _super_spreaders(rng, p),
        "ddos_victims": _ddos(rng, p),
    }
    planted_packets = sum(int(t.count.sum()) for ts in planted.values() for t in ts)
    bg_packets = p.packets - planted_packets
    if bg_packets < p.flows:
        raise ValueError(
            f"--packets {p.packets} is too small: the planted traffic takes {planted_packets} packets "
            f"and each of the {p.flows} background flows needs at least one; use --packets >= "
            f"{planted_packets + p.flows} or fewer/smaller planted entities (--hh-share, --spread, "
            "--ddos-sources, ...)"
        )
    tables = [_background(rng, p, bg_packets)]
    groups = {"background": slice(0, p.flows)}
    at = p.flows
    for name, ts in planted.items():
        n = sum(len(t) for t in ts)
        groups[name] = slice(at, at + n)
        at += n
        tables.extend(ts)
    return FlowTable.concat(tables), groups


# ---------------------------------------------------------------------------------------------------
# writing


def _file_header(nanosecond: bool) -> bytes:
    magic = PCAP_MAGIC_NS if nanosecond else PCAP_MAGIC_US
    return (
        np.array([magic], "<u4").tobytes()
        + np.array([2, 4], "<u2").tobytes()
        + np.array([0, 0, SNAPLEN, LINKTYPE_ETHERNET], "<u4").tobytes()
    )


def _ip_text(row: np.ndarray) -> str:
    b = bytes(row)
    if b[:12] == bytes(10) + b"\xff\xff":
        return str(ipaddress.IPv4Address(b[12:]))
    return str(ipaddress.IPv6Address(b))


def generate(
    path: str | os.PathLike[str],
    *,
    packets: int = 1_000_000,
    flows: int = 100_000,
    seed: int = 0,
    truth_path: str | os.PathLike[str] | None = None,
    write_truth: bool = True,
    progress: Callable[[int, int], None] | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Write a synthetic header trace to ``path`` and return its truth document (also written as JSON).

    ``options`` are the other fields of :class:`GenParams` (``zipf``, ``duration``, ``start`` as a
    ``datetime`` or ISO string, ``ipv6``, ``vlan``, ``tcp``/``udp``/``icmp``, ``heavy_hitters``,
    ``hh_share``, ``super_spreaders``, ``spread``, ``ddos_victims``, ``ddos_sources``, ``nanosecond``,
    ``chunk``). The truth goes to ``truth_path`` (default :func:`default_truth_path`) unless
    ``write_truth`` is false. ``progress(done, total)`` is called after each chunk of packets.

    The file is written to ``path + ".part"`` and renamed at the end, so ``path`` never holds a
    partial trace. Raises ``ValueError`` for bad parameters, ``OSError`` when a file cannot be written.
    Memory is bounded by the flow table plus ``chunk`` packets (about 130 bytes per packet).
    """
    if isinstance(options.get("start"), str):
        options["start"] = parse_start(options["start"])
    unknown = set(options) - set(GenParams.__dataclass_fields__)
    if unknown:
        raise TypeError(f"generate() got unknown options: {', '.join(sorted(unknown))}")
    p = GenParams(packets=packets, flows=flows, seed=seed, **options)
    p.validate()
    out = Path(path)
    tpath = Path(truth_path) if truth_path is not None else default_truth_path(out)
    t0 = time.perf_counter()

    rng = np.random.default_rng(p.seed)
    table, groups = build_flows(p, rng)
    n_flows = len(table)
    log.info("generating %d packets over %d flows into %s", p.packets, n_flows, out)

    f_npk = np.zeros(n_flows, np.int64)
    f_seq = rng.integers(0, 1 << 32, size=n_flows, dtype=np.int64)  # initial sequence numbers
    f_bytes = np.zeros(n_flows, np.int64)
    f_hdr = k.header_bytes(table.v6, table.proto)
    chunk = min(p.chunk, p.packets)
    buf = np.empty(chunk * k.MAX_RECORD, dtype=np.uint8)
    wire = np.empty(chunk, dtype=np.uint32)
    flow_ids = np.arange(n_flows, dtype=np.int32 if n_flows < 2**31 else np.int64)
    remaining = table.count.copy()
    step_ns = (p.end_ns - p.start_ns) / p.packets
    file_bytes = 0

    with atomic_file(out, buffering=0) as fh:
        file_bytes += fh.write(_file_header(p.nanosecond))
        done = 0
        while done < p.packets:
            m = min(chunk, p.packets - done)
            if m == p.packets - done:
                take = remaining.copy()
            else:
                take = rng.multivariate_hypergeometric(remaining, m, method="marginals")
            remaining -= take
            idx = np.repeat(flow_ids, take)
            rng.shuffle(idx)
            u = rng.random((3, m))
            pos = np.arange(done, done + m, dtype=np.float64) + u[0]
            ts = p.start_ns + (pos * step_ns).astype(np.int64)
            w = wire[:m]
            k.wire_lengths(idx, u[1], u[2], table.profile, f_hdr, table.vlan, k.PROFILE_TABLE, w)
            nb = k.write_records(
                buf,
                ts,
                idx,
                w,
                table.src,
                table.dst,
                table.sport,
                table.dport,
                table.proto,
                table.v6,
                table.vlan,
                table.kind,
                f_npk,
                f_seq,
                f_bytes,
                p.nanosecond,
            )
            file_bytes += fh.write(memoryview(buf)[:nb])
            done += m
            if progress is not None:
                progress(done, p.packets)
    if not np.array_equal(f_npk, table.count):  # the kernel must have written exactly the plan
        raise AssertionError("generator bug: packets written per flow differ from the plan")

    truth = _truth(p, table, groups, f_bytes, out, file_bytes)
    truth["elapsed_s"] = round(time.perf_counter() - t0, 3)
    if write_truth:
        tpath.write_text(json.dumps(truth, indent=2) + "\n")
        truth["truth_path"] = str(tpath)
    log.info("wrote %d packets (%d bytes) in %.2fs", p.packets, file_bytes, truth["elapsed_s"])
    return truth


def _truth(
    p: GenParams, t: FlowTable, groups: dict[str, slice], f_bytes: np.ndarray, out: Path, file_bytes: int
) -> dict[str, Any]:
    """Exact totals and planted values, computed from the flow table and the bytes the kernel wrote."""
    src_v = t.src.view(np.dtype((np.void, 16))).ravel()
    dst_v = t.dst.view(np.dtype((np.void, 16))).ravel()
    live = t.count > 0
    srcs, src_inv = np.unique(src_v[live], return_inverse=True)
    src_pk = np.bincount(src_inv, weights=t.count[live]).astype(np.int64)
    src_by = np.bincount(src_inv, weights=f_bytes[live]).astype(np.int64)
    top = np.argsort(-src_pk, kind="stable")[:20]
    keys = _five_tuple_keys(t.src[live], t.dst[live], t.sport[live], t.dport[live], t.proto[live])

    def planted_rows(name: str) -> np.ndarray:
        sl = groups[name]
        return np.arange(sl.start, sl.stop)

    hh, ss, dd = [], [], []
    for ip in np.unique(src_v[planted_rows("heavy_hitters")]):
        sel = src_v == ip
        hh.append(
            {
                "src_ip": _ip_text(np.frombuffer(ip, np.uint8)),
                "packets": int(t.count[sel].sum()),
                "bytes": int(f_bytes[sel].sum()),
                "flows": int(sel.sum()),
            }
        )
    for ip in np.unique(src_v[planted_rows("super_spreaders")]):
        sel = src_v == ip
        ss.append(
            {
                "src_ip": _ip_text(np.frombuffer(ip, np.uint8)),
                "distinct_dst": int(np.unique(dst_v[sel]).size),
                "packets": int(t.count[sel].sum()),
                "bytes": int(f_bytes[sel].sum()),
            }
        )
    for ip in np.unique(dst_v[planted_rows("ddos_victims")]):
        sel = dst_v == ip
        dd.append(
            {
                "dst_ip": _ip_text(np.frombuffer(ip, np.uint8)),
                "distinct_src": int(np.unique(src_v[sel]).size),
                "packets": int(t.count[sel].sum()),
                "bytes": int(f_bytes[sel].sum()),
            }
        )
    hh.sort(key=lambda r: -r["packets"])

    params = asdict(p)
    params["start"] = p.start.isoformat().replace("+00:00", "Z")
    proto_pk = {
        name: int(t.count[np.isin(t.proto, nums)].sum())
        for name, nums in (("tcp", [6]), ("udp", [17]), ("icmp", [1, 58]))
    }
    return {
        "generator": "netspectra gen",
        "parameters": params,
        "pcap": {
            "path": str(out),
            "file_bytes": file_bytes,
            "linktype": LINKTYPE_ETHERNET,
            "timestamp_resolution": "ns" if p.nanosecond else "us",
            "snaplen": SNAPLEN,
            "captured": "headers only: Ethernet [+802.1Q] + IPv4/IPv6 + TCP/UDP/ICMP; "
            "orig_len is the wire length",
        },
        "five_tuple": "(src_ip, dst_ip, src_port, dst_port, protocol); ICMP/ICMPv6 have ports 0",
        "totals": {
            "packets": int(t.count.sum()),
            "bytes": int(f_bytes.sum()),
            "distinct_five_tuples": int(np.unique(keys).size),
            "distinct_src_ips": int(srcs.size),
            "distinct_dst_ips": int(np.unique(dst_v[live]).size),
            "ipv6_packets": int(t.count[t.v6 != 0].sum()),
            "vlan_packets": int(t.count[t.vlan != 0].sum()),
            "protocol_packets": proto_pk,
            "first_ts_ns_at_least": p.start_ns,
            "last_ts_ns_below": p.end_ns,
        },
        "heavy_hitters": hh,
        "super_spreaders": ss,
        "ddos_victims": dd,
        "top_sources": [
            {
                "src_ip": _ip_text(np.frombuffer(srcs[i], np.uint8)),
                "packets": int(src_pk[i]),
                "bytes": int(src_by[i]),
            }
            for i in top
        ],
    }
