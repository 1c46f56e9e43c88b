"""Writing export datagrams: NetFlow v5, v9, IPFIX and sFlow v5, byte for byte per their RFCs.

For tests (regression datagrams, fuzzing seeds, exporters' corner cases), benchmarks (pre-built
datagrams) and tools. Every function returns ``bytes``; values are Python ints (addresses as text,
4/16 packed bytes, or ints). Nothing here validates beyond what packing needs: hostile datagrams are
the point of some callers.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from netspectra.collect import ie

Addr = str | bytes | int


def _a4(a: Addr) -> bytes:
    if isinstance(a, int):
        return a.to_bytes(4, "big")
    if isinstance(a, bytes):
        return a[-4:]
    return ipaddress.IPv4Address(a).packed


def _a16(a: Addr) -> bytes:
    if isinstance(a, int):
        return a.to_bytes(16, "big")
    if isinstance(a, bytes):
        return a
    ip = ipaddress.ip_address(a)
    return ip.packed if ip.version == 6 else b"\x00" * 10 + b"\xff\xff" + ip.packed


# --------------------------------------------------------------------------------------------------
# NetFlow v5
# --------------------------------------------------------------------------------------------------


def netflow5(
    records: Sequence[Mapping[str, object]],
    *,
    uptime_ms: int = 100_000,
    unix_s: int = 1_700_000_000,
    unix_ns: int = 0,
    sequence: int = 0,
    engine_type: int = 0,
    engine_id: int = 0,
    sampling: int = 0,
    count: int | None = None,
) -> bytes:
    """A v5 datagram. Record keys: ``src``, ``dst``, ``nexthop``, ``input``, ``output``, ``packets``,
    ``bytes``, ``first``, ``last`` (ms of uptime), ``sport``, ``dport``, ``tcp_flags``, ``proto``,
    ``tos``, ``src_as``, ``dst_as``, ``src_mask``, ``dst_mask`` (missing: 0). ``count`` overrides the
    header count (to write a lying header)."""
    head = struct.pack(
        ">HHIIIIBBH",
        5,
        len(records) if count is None else count,
        uptime_ms,
        unix_s,
        unix_ns,
        sequence,
        engine_type,
        engine_id,
        sampling,
    )
    body = b"".join(
        struct.pack(
            ">4s4s4sHHIIIIHHBBBBHHBBH",
            _a4(r.get("src", 0)),  # type: ignore[arg-type]
            _a4(r.get("dst", 0)),  # type: ignore[arg-type]
            _a4(r.get("nexthop", 0)),  # type: ignore[arg-type]
            r.get("input", 0),
            r.get("output", 0),
            r.get("packets", 1),
            r.get("bytes", 64),
            r.get("first", uptime_ms),
            r.get("last", uptime_ms),
            r.get("sport", 0),
            r.get("dport", 0),
            0,
            r.get("tcp_flags", 0),
            r.get("proto", 6),
            r.get("tos", 0),
            r.get("src_as", 0),
            r.get("dst_as", 0),
            r.get("src_mask", 0),
            r.get("dst_mask", 0),
            0,
        )
        for r in records
    )
    return head + body


# --------------------------------------------------------------------------------------------------
# NetFlow v9 and IPFIX
# --------------------------------------------------------------------------------------------------

#: A field specifier: ``(type, length)`` or ``(type, length, enterprise)``.
Field = tuple[int, int] | tuple[int, int, int]


def _spec(f: Field, ipfix: bool) -> bytes:
    t, ln = f[0], f[1]
    pen = f[2] if len(f) > 2 else 0  # type: ignore[misc]
    if pen and ipfix:
        return struct.pack(">HHI", t | 0x8000, ln, pen)
    return struct.pack(">HH", t, ln)


def set_(set_id: int, body: bytes, pad_to: int = 4) -> bytes:
    """A set (flowset): id, length, body, zero padding to a multiple of ``pad_to`` (1: none)."""
    pad = (-(4 + len(body))) % pad_to if pad_to > 1 else 0
    return struct.pack(">HH", set_id, 4 + len(body) + pad) + body + b"\x00" * pad


def template_record(template_id: int, fields: Sequence[Field], ipfix: bool = False) -> bytes:
    return struct.pack(">HH", template_id, len(fields)) + b"".join(_spec(f, ipfix) for f in fields)


def v9_template_set(templates: Iterable[tuple[int, Sequence[Field]]]) -> bytes:
    return set_(0, b"".join(template_record(t, f) for t, f in templates))


def v9_options_template_set(template_id: int, scope: Sequence[Field], fields: Sequence[Field]) -> bytes:
    body = struct.pack(">HHH", template_id, 4 * len(scope), 4 * len(fields))
    body += b"".join(_spec(f, False) for f in (*scope, *fields))
    return set_(1, body)


def ipfix_template_set(templates: Iterable[tuple[int, Sequence[Field]]]) -> bytes:
    return set_(2, b"".join(template_record(t, f, True) for t, f in templates), pad_to=1)


def ipfix_options_template_set(template_id: int, scope: Sequence[Field], fields: Sequence[Field]) -> bytes:
    body = struct.pack(">HHH", template_id, len(scope) + len(fields), len(scope))
    body += b"".join(_spec(f, True) for f in (*scope, *fields))
    return set_(3, body, pad_to=1)


def ipfix_withdrawal(template_id: int, options: bool = False) -> bytes:
    """An IPFIX template withdrawal (``template_id`` 2 or 3: all templates / options templates)."""
    if options:
        return set_(3, struct.pack(">HH", template_id, 0), pad_to=1)
    return set_(2, struct.pack(">HH", template_id, 0), pad_to=1)


def encode_value(value: object, length: int, ipfix: bool = True) -> bytes:
    """One field value: an int (big-endian, ``length`` bytes), or bytes (an address, or the content
    of a variable-length field when ``length`` is 65535)."""
    if length == ie.VARLEN and ipfix:
        data = value if isinstance(value, bytes) else int(value).to_bytes(8, "big")  # type: ignore[call-overload]
        if len(data) < 255:
            return bytes([len(data)]) + data
        return b"\xff" + struct.pack(">H", len(data)) + data
    if isinstance(value, bytes):
        return value[:length].ljust(length, b"\x00")
    if isinstance(value, str):
        return _a4(value) if length == 4 else _a16(value)
    return (int(value) & ((1 << (8 * length)) - 1)).to_bytes(length, "big")  # type: ignore[call-overload]


def data_record(fields: Sequence[Field], values: Mapping[int, object], ipfix: bool = True) -> bytes:
    """A data record of a template: ``values`` by field type (missing: 0 / empty)."""
    out = b""
    for f in fields:
        t, ln = f[0], f[1]
        key = t if len(f) < 3 or not f[2] else (f[2], t)  # type: ignore[misc]
        out += encode_value(values.get(key, b"" if ln == ie.VARLEN else 0), ln, ipfix)  # type: ignore[call-overload]
    return out


def data_set(template_id: int, records: Iterable[bytes], pad_to: int = 4) -> bytes:
    return set_(template_id, b"".join(records), pad_to=pad_to)


def netflow9(
    sets: Sequence[bytes],
    *,
    uptime_ms: int = 100_000,
    unix_s: int = 1_700_000_000,
    sequence: int = 0,
    source_id: int = 0,
    count: int | None = None,
) -> bytes:
    """A v9 datagram of ``sets`` (the header count is the number of sets unless given)."""
    return struct.pack(
        ">HHIIII", 9, len(sets) if count is None else count, uptime_ms, unix_s, sequence, source_id
    ) + b"".join(sets)


def ipfix(
    sets: Sequence[bytes],
    *,
    export_s: int = 1_700_000_000,
    sequence: int = 0,
    domain: int = 0,
    length: int | None = None,
) -> bytes:
    """An IPFIX message of ``sets`` (``length`` overrides the header's message length)."""
    body = b"".join(sets)
    return (
        struct.pack(">HHIII", 10, 16 + len(body) if length is None else length, export_s, sequence, domain)
        + body
    )


# --------------------------------------------------------------------------------------------------
# sFlow v5
# --------------------------------------------------------------------------------------------------


def _xdr_opaque(data: bytes) -> bytes:
    return data + b"\x00" * ((-len(data)) % 4)


def sflow_record(enterprise: int, fmt: int, data: bytes) -> bytes:
    return struct.pack(">II", (enterprise << 12) | fmt, len(data)) + data


def raw_header_record(header: bytes, frame_length: int, *, protocol: int = 1, stripped: int = 4) -> bytes:
    body = struct.pack(">IIII", protocol, frame_length, stripped, len(header)) + _xdr_opaque(header)
    return sflow_record(0, 1, body)


def ipv4_record(
    src: Addr,
    dst: Addr,
    *,
    length: int = 64,
    proto: int = 6,
    sport: int = 0,
    dport: int = 0,
    tcp_flags: int = 0,
    tos: int = 0,
) -> bytes:
    return sflow_record(
        0, 3, struct.pack(">II4s4sIIII", length, proto, _a4(src), _a4(dst), sport, dport, tcp_flags, tos)
    )


def ipv6_record(
    src: Addr,
    dst: Addr,
    *,
    length: int = 64,
    proto: int = 6,
    sport: int = 0,
    dport: int = 0,
    tcp_flags: int = 0,
    prio: int = 0,
) -> bytes:
    return sflow_record(
        0, 4, struct.pack(">II16s16sIIII", length, proto, _a16(src), _a16(dst), sport, dport, tcp_flags, prio)
    )


def switch_record(src_vlan: int, dst_vlan: int, src_prio: int = 0, dst_prio: int = 0) -> bytes:
    return sflow_record(0, 1001, struct.pack(">IIII", src_vlan, src_prio, dst_vlan, dst_prio))


def flow_sample(
    records: Sequence[bytes],
    *,
    sequence: int = 1,
    source_id: int = 1,
    rate: int = 1,
    pool: int = 0,
    drops: int = 0,
    input: int = 0,
    output: int = 0,
    expanded: bool = False,
) -> bytes:
    """A flow sample (``expanded``: format 3, with interfaces as (format 0, value))."""
    if expanded:
        body = struct.pack(
            ">IIIIIIIIIII", sequence, 0, source_id, rate, pool, drops, 0, input, 0, output, len(records)
        )
        return sflow_record(0, 3, body + b"".join(records))
    body = struct.pack(">IIIIIIII", sequence, source_id, rate, pool, drops, input, output, len(records))
    return sflow_record(0, 1, body + b"".join(records))


def generic_if_counters(**values: int) -> bytes:
    """A generic interface counters record (0:1); keys as InterfaceCounters.WIRE (missing: 0)."""
    from netspectra.collect.records import InterfaceCounters

    body = b"".join(
        struct.pack(">Q" if w == 8 else ">I", values.get(name, 0)) for name, w in InterfaceCounters.WIRE
    )
    return sflow_record(0, 1, body)


def counter_sample(
    records: Sequence[bytes], *, sequence: int = 1, source_id: int = 1, expanded: bool = False
) -> bytes:
    if expanded:
        return sflow_record(
            0, 4, struct.pack(">IIII", sequence, 0, source_id, len(records)) + b"".join(records)
        )
    return sflow_record(0, 2, struct.pack(">III", sequence, source_id, len(records)) + b"".join(records))


def sflow(
    samples: Sequence[bytes],
    *,
    agent: Addr = "192.0.2.1",
    sub_agent: int = 0,
    sequence: int = 1,
    uptime_ms: int = 1000,
    count: int | None = None,
) -> bytes:
    """An sFlow v5 datagram (IPv4 agent for a dotted address, else IPv6)."""
    if isinstance(agent, str) and ":" in agent:
        head = struct.pack(">II16s", 5, 2, _a16(agent))
    else:
        head = struct.pack(">II4s", 5, 1, _a4(agent))
    n = len(samples) if count is None else count
    return head + struct.pack(">IIII", sub_agent, sequence, uptime_ms, n) + b"".join(samples)


def ethernet_ipv4_tcp(
    src: Addr, dst: Addr, sport: int, dport: int, *, payload: int = 0, vlans: Sequence[int] = ()
) -> bytes:
    """A frame header: Ethernet (with 802.1Q tags), IPv4 (total length for ``payload`` bytes), TCP."""
    eth = b"\x02\x00\x00\x00\x00\x01\x02\x00\x00\x00\x00\x02"
    for v in vlans:
        eth += struct.pack(">HH", 0x8100, v)
    eth += b"\x08\x00"
    ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 40 + payload, 1, 0, 64, 6, 0, _a4(src), _a4(dst))
    tcp = struct.pack(">HHIIBBHHH", sport, dport, 1, 0, 0x50, 0x10, 1024, 0, 0)
    return eth + ip + tcp


# --------------------------------------------------------------------------------------------------
# bulk datagrams for benchmarks
# --------------------------------------------------------------------------------------------------

#: The template of :func:`synthetic_v9`/:func:`synthetic_ipfix` records (45 bytes, as a router's IPv4
#: template: addresses, ports, protocol, flags, counters, interfaces, times, next hop).
BENCH_FIELDS: tuple[Field, ...] = (
    (8, 4),
    (12, 4),
    (7, 2),
    (11, 2),
    (4, 1),
    (6, 1),
    (1, 4),
    (2, 4),
    (10, 4),
    (14, 4),
    (22, 4),
    (21, 4),
    (15, 4),
    (5, 1),
    (16, 2),
)


def synthetic_flows(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    """``n`` random IPv4 TCP/UDP flows as column arrays (src, dst, sport, dport, proto, packets, bytes,
    input, output)."""
    rng = np.random.default_rng(seed)
    return {
        "src": rng.integers(0x0A000000, 0x0AFFFFFF, n, dtype=np.int64),
        "dst": rng.integers(0xC0000000, 0xC0FFFFFF, n, dtype=np.int64),
        "sport": rng.integers(1024, 65535, n, dtype=np.int64),
        "dport": rng.choice(np.array([53, 80, 443, 8080], np.int64), n),
        "proto": rng.choice(np.array([6, 17], np.int64), n),
        "packets": rng.integers(1, 1000, n, dtype=np.int64),
        "bytes": rng.integers(40, 1_500_000, n, dtype=np.int64),
        "input": rng.integers(1, 64, n, dtype=np.int64),
        "output": rng.integers(1, 64, n, dtype=np.int64),
    }


def _records_45(flows: dict[str, np.ndarray], uptime_ms: int) -> np.ndarray:
    """The 45-byte records of BENCH_FIELDS for ``flows``, built vectorised: (n, 45) uint8."""
    n = flows["src"].shape[0]
    rec = np.zeros((n, 45), np.uint8)
    pos = 0
    cols = [
        (flows["src"], 4),
        (flows["dst"], 4),
        (flows["sport"], 2),
        (flows["dport"], 2),
        (flows["proto"], 1),
        (np.full(n, 0x18), 1),
        (flows["bytes"], 4),
        (flows["packets"], 4),
        (flows["input"], 4),
        (flows["output"], 4),
        (np.full(n, uptime_ms - 5000), 4),
        (np.full(n, uptime_ms - 10), 4),
        (np.zeros(n), 4),
        (np.zeros(n), 1),
        (np.zeros(n), 2),
    ]
    for col, width in cols:
        v = np.asarray(col, np.uint64)
        for b in range(width):
            rec[:, pos + b] = (v >> np.uint64(8 * (width - 1 - b))) & np.uint64(0xFF)
        pos += width
    return rec


def synthetic_v9(
    n_records: int, per_datagram: int = 30, seed: int = 0, template_every: int = 0
) -> list[bytes]:
    """NetFlow v9 datagrams holding ``n_records`` records of :data:`BENCH_FIELDS` (template 256 first;
    again every ``template_every`` datagrams when > 0)."""
    return _synthetic(n_records, per_datagram, seed, template_every, ipfix_=False)


def synthetic_ipfix(
    n_records: int, per_datagram: int = 30, seed: int = 0, template_every: int = 0
) -> list[bytes]:
    """The same records as :func:`synthetic_v9`, as IPFIX messages."""
    return _synthetic(n_records, per_datagram, seed, template_every, ipfix_=True)


def _synthetic(n_records: int, per: int, seed: int, every: int, ipfix_: bool) -> list[bytes]:
    uptime = 3_600_000
    rec = _records_45(synthetic_flows(n_records, seed), uptime)
    tpl = ipfix_template_set([(256, BENCH_FIELDS)]) if ipfix_ else v9_template_set([(256, BENCH_FIELDS)])
    out: list[bytes] = []
    seq = 0
    for k, start in enumerate(range(0, n_records, per)):
        chunk = rec[start : start + per]
        ds = data_set(256, [chunk.tobytes()], pad_to=1 if ipfix_ else 4)
        sets = [tpl, ds] if (k == 0 or (every and k % every == 0)) else [ds]
        if ipfix_:
            out.append(ipfix(sets, sequence=seq, domain=1))
            seq += chunk.shape[0]
        else:
            out.append(netflow9(sets, uptime_ms=uptime, sequence=k, source_id=1))
    return out


def synthetic_sflow(
    n_samples: int, per_datagram: int = 8, seed: int = 0, header_bytes: int = 128
) -> list[bytes]:
    """sFlow datagrams of ``n_samples`` flow samples, each with a raw Ethernet/IPv4/TCP header (padded
    to ``header_bytes``) and an extended switch record — what a switch sends."""
    f = synthetic_flows(n_samples, seed)
    out: list[bytes] = []
    for seq, start in enumerate(range(0, n_samples, per_datagram)):
        samples = []
        for i in range(start, min(start + per_datagram, n_samples)):
            hdr = ethernet_ipv4_tcp(
                int(f["src"][i]), int(f["dst"][i]), int(f["sport"][i]), int(f["dport"][i]), payload=1400
            )
            hdr = hdr.ljust(header_bytes, b"\x00")[:header_bytes]
            recs = [raw_header_record(hdr, 1458), switch_record(10, 10)]
            samples.append(
                flow_sample(recs, sequence=i, rate=1000, input=int(f["input"][i]), output=int(f["output"][i]))
            )
        out.append(sflow(samples, sequence=seq))
    return out
