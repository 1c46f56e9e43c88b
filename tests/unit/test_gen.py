"""Tests of the synthetic trace generator (``netspectra gen``).

The written traces are read back independently: record headers with ``struct`` (dpkt does not expose
the original length) and packet contents with ``dpkt``; every figure of the truth JSON must match.
"""

from __future__ import annotations

import ipaddress
import json
import struct
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dpkt
import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from netspectra.gen import kernels as k
from netspectra.gen.synth import GenParams, _allocate, build_flows, default_truth_path, generate

SMALL: dict[str, Any] = dict(
    packets=20_000,
    flows=2_000,
    seed=7,
    heavy_hitters=4,
    hh_share=0.10,
    super_spreaders=2,
    spread=1_000,
    ddos_victims=2,
    ddos_sources=500,
)
PLANTED_NET = ipaddress.ip_network("198.18.0.0/15")


# ---------------------------------------------------------------------------------------------------
# independent reader


@dataclass
class Trace:
    magic: int
    ts: list[int]  # (sec, frac) folded to the file's unit
    caplen: list[int]
    wire: list[int]
    five: list[tuple[str, str, int, int, int]]
    v6: list[bool]
    vlan: list[bool]
    ip_len: list[int]  # IPv4 total length / 40 + IPv6 payload length
    ipv4_hdr_ok: list[bool]


def _ones_sum(b: bytes) -> int:
    s = sum(struct.unpack(f">{len(b) // 2}H", b))
    while s > 0xFFFF:
        s = (s & 0xFFFF) + (s >> 16)
    return s


def read_trace(path: Path) -> Trace:
    raw = path.read_bytes()
    magic, vmaj, vmin, _, _, snap, link = struct.unpack_from("<IHHiIII", raw, 0)
    assert (vmaj, vmin, link) == (2, 4, 1)
    ts, caplen, wire = [], [], []
    off = 24
    while off < len(raw):
        sec, frac, cap, orig = struct.unpack_from("<IIII", raw, off)
        ts.append(sec * (10**9 if magic == 0xA1B23C4D else 10**6) + frac)
        caplen.append(cap)
        wire.append(orig)
        assert cap <= snap
        off += 16 + cap
    assert off == len(raw)

    t = Trace(magic, ts, caplen, wire, [], [], [], [], [])
    with open(path, "rb") as fh:
        for _, buf in dpkt.pcap.Reader(fh):
            eth = dpkt.ethernet.Ethernet(buf)
            ip = eth.data
            t.vlan.append(bool(getattr(eth, "vlan_tags", None)))  # set only on tagged frames
            if isinstance(ip, dpkt.ip.IP):
                t.v6.append(False)
                src, dst = str(ipaddress.IPv4Address(ip.src)), str(ipaddress.IPv4Address(ip.dst))
                proto, t_len = ip.p, ip.len
                t.ipv4_hdr_ok.append(_ones_sum(bytes(ip)[:20]) == 0xFFFF)
            else:
                assert isinstance(ip, dpkt.ip6.IP6)
                t.v6.append(True)
                src, dst = str(ipaddress.IPv6Address(ip.src)), str(ipaddress.IPv6Address(ip.dst))
                proto, t_len = ip.nxt, 40 + ip.plen
            l4 = ip.data
            ports = (l4.sport, l4.dport) if proto in (6, 17) else (0, 0)
            t.five.append((src, dst, *ports, proto))
            t.ip_len.append(t_len)
    return t


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Trace, Path]:
    out = tmp_path_factory.mktemp("gen") / "small.pcap"
    truth = generate(out, **SMALL)
    return truth, read_trace(out), out


# ---------------------------------------------------------------------------------------------------
# kernels against their references


def _kernel_inputs(seed: int, n: int) -> tuple[Any, ...]:
    p = GenParams(
        packets=6_000, flows=400, seed=seed, ipv6=0.3, vlan=0.3, tcp=0.5, udp=0.3, icmp=0.2,
        heavy_hitters=2, hh_share=0.1, super_spreaders=1, spread=200, ddos_victims=2, ddos_sources=100,
    )  # fmt: skip
    rng = np.random.default_rng(seed)
    table, _ = build_flows(p, rng)
    idx = rng.integers(0, len(table), size=n).astype(np.int32)
    u = rng.random((3, n))
    ts = 1_704_067_200_000_000_000 + np.sort(rng.integers(0, 60 * 10**9, size=n))
    return table, idx, u, ts


@pytest.mark.parametrize("seed", [1, 2])
def test_wire_lengths_kernel_matches_reference(seed: int) -> None:
    table, idx, u, _ = _kernel_inputs(seed, 5000)
    hdr = k.header_bytes(table.v6, table.proto)
    got = np.empty(idx.shape[0], np.uint32)
    k.wire_lengths(idx, u[1], u[2], table.profile, hdr, table.vlan, k.PROFILE_TABLE, got)
    want = k.wire_lengths_ref(idx, u[1], u[2], table.profile, hdr, table.vlan, k.PROFILE_TABLE)
    np.testing.assert_array_equal(got, want)
    # every profile component and both tag states were exercised, and the floor holds
    assert len(np.unique(got)) > 100
    assert (got >= 60).all() and (got <= 1518).all()


@pytest.mark.parametrize("nanosecond", [False, True])
def test_write_records_kernel_matches_reference(nanosecond: bool) -> None:
    table, idx, u, ts = _kernel_inputs(3, 4000)
    hdr = k.header_bytes(table.v6, table.proto)
    wire = k.wire_lengths_ref(idx, u[1], u[2], table.profile, hdr, table.vlan, k.PROFILE_TABLE)
    F = len(table)
    init_seq = np.random.default_rng(9).integers(0, 1 << 32, size=F)
    states = [(np.zeros(F, np.int64), init_seq.copy(), np.zeros(F, np.int64)) for _ in range(2)]
    cols = (table.src, table.dst, table.sport, table.dport, table.proto, table.v6, table.vlan, table.kind)
    buf = np.zeros(idx.shape[0] * k.MAX_RECORD, np.uint8)
    # two calls on halves: the state carried between chunks must give the same bytes as one pass
    h = idx.shape[0] // 2
    n1 = k.write_records(buf, ts[:h], idx[:h], wire[:h], *cols, *states[0], nanosecond)
    n2 = k.write_records(buf[n1:], ts[h:], idx[h:], wire[h:], *cols, *states[0], nanosecond)
    ref = k.write_records_ref(ts, idx, wire, *cols, *states[1], nanosecond)
    assert bytes(buf[: n1 + n2]) == ref
    for a, b in zip(states[0], states[1], strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(states[0][2], np.bincount(idx, weights=wire, minlength=F).astype(np.int64))
    kinds = {(int(table.proto[f]), int(table.v6[f]), int(table.vlan[f]) != 0) for f in np.unique(idx)}
    assert {(6, 0, False), (17, 1, True), (1, 0, False), (58, 1, False)} <= kinds


# ---------------------------------------------------------------------------------------------------
# the trace agrees with its truth


def test_totals_match_readback(small: tuple[dict[str, Any], Trace, Path]) -> None:
    truth, t, path = small
    tot = truth["totals"]
    assert t.magic == 0xA1B2C3D4
    assert len(t.wire) == tot["packets"] == SMALL["packets"]
    assert sum(t.wire) == tot["bytes"]
    assert len(set(t.five)) == tot["distinct_five_tuples"]
    assert len({f[0] for f in t.five}) == tot["distinct_src_ips"]
    assert len({f[1] for f in t.five}) == tot["distinct_dst_ips"]
    assert sum(t.v6) == tot["ipv6_packets"]
    assert sum(t.vlan) == tot["vlan_packets"]
    protos = Counter(f[4] for f in t.five)
    assert tot["protocol_packets"] == {"tcp": protos[6], "udp": protos[17], "icmp": protos[1] + protos[58]}
    assert truth["pcap"]["file_bytes"] == path.stat().st_size
    assert json.loads(default_truth_path(path).read_text())["totals"] == tot


def test_headers_are_consistent(small: tuple[dict[str, Any], Trace, Path]) -> None:
    _, t, _ = small
    # header trace: only headers are captured, the wire length follows from the IP length
    for cap, wire, tag, ip_len in zip(t.caplen, t.wire, t.vlan, t.ip_len, strict=True):
        assert 42 <= cap <= 78 and cap <= wire
        assert wire == max(60, 14 + ip_len) + 4 * tag
    assert all(t.ipv4_hdr_ok)
    assert all(f[2] == f[3] == 0 for f in t.five if f[4] in (1, 58))
    # timestamps: non-decreasing, inside [start, start + duration)
    start_us = 1_704_067_200 * 10**6
    assert t.ts == sorted(t.ts)
    assert start_us <= t.ts[0] and t.ts[-1] < start_us + 60 * 10**6
    assert t.ts[-1] - t.ts[0] > 59 * 10**6


def test_planted_entities_match_readback(small: tuple[dict[str, Any], Trace, Path]) -> None:
    truth, t, _ = small
    pk: Counter[str] = Counter()
    by: Counter[str] = Counter()
    dsts: defaultdict[str, set[str]] = defaultdict(set)
    srcs: defaultdict[str, set[str]] = defaultdict(set)
    for (src, dst, *_), wire in zip(t.five, t.wire, strict=True):
        pk[src] += 1
        by[src] += wire
        dsts[src].add(dst)
        srcs[dst].add(src)

    hh = truth["heavy_hitters"]
    assert len(hh) == SMALL["heavy_hitters"]
    for r in hh:
        assert (pk[r["src_ip"]], by[r["src_ip"]]) == (r["packets"], r["bytes"])
    assert sum(r["packets"] for r in hh) == round(SMALL["hh_share"] * SMALL["packets"])
    assert [r["packets"] for r in hh] == sorted((r["packets"] for r in hh), reverse=True)

    ss = truth["super_spreaders"]
    assert len(ss) == SMALL["super_spreaders"]
    for r in ss:
        assert len(dsts[r["src_ip"]]) == r["distinct_dst"] == SMALL["spread"]
        assert pk[r["src_ip"]] == r["packets"]

    dd = truth["ddos_victims"]
    assert len(dd) == SMALL["ddos_victims"]
    for r in dd:
        assert len(srcs[r["dst_ip"]]) == r["distinct_src"] == SMALL["ddos_sources"]
        assert sum(1 for f in t.five if f[1] == r["dst_ip"]) == r["packets"]

    top = truth["top_sources"]
    assert [r["packets"] for r in top] == sorted(pk.values(), reverse=True)[: len(top)]
    assert all((pk[r["src_ip"]], by[r["src_ip"]]) == (r["packets"], r["bytes"]) for r in top)


def _background(t: Trace) -> list[int]:
    """Indices of packets of background flows (neither address in the planted 198.18.0.0/15)."""
    return [
        i
        for i, f in enumerate(t.five)
        if not (ipaddress.ip_address(f[0]) in PLANTED_NET or ipaddress.ip_address(f[1]) in PLANTED_NET)
    ]


def test_background_flow_sizes_are_exactly_zipf(small: tuple[dict[str, Any], Trace, Path]) -> None:
    truth, t, _ = small
    bg = _background(t)
    sizes = np.array(sorted(Counter(t.five[i] for i in bg).values(), reverse=True))
    F = SMALL["flows"]
    assert sizes.shape[0] == F
    want = 1 + _allocate(len(bg) - F, np.arange(1, F + 1, dtype=np.float64) ** -1.1)
    np.testing.assert_array_equal(sizes, want)
    top_share = sizes[: F // 100].sum() / sizes.sum()
    assert top_share > 0.35, top_share  # top 1% of flows carry over a third of the packets
    assert truth["parameters"]["zipf"] == 1.1


def test_ipv6_vlan_and_protocol_fractions(small: tuple[dict[str, Any], Trace, Path]) -> None:
    _, t, _ = small
    bg = _background(t)
    flows: dict[tuple[str, str, int, int, int], tuple[bool, bool]] = {}
    for i in bg:
        flows[t.five[i]] = (t.v6[i], t.vlan[i])
    F = len(flows)
    assert abs(sum(v for v, _ in flows.values()) / F - 0.10) < 0.005
    assert abs(sum(g for _, g in flows.values()) / F - 0.05) < 0.005
    protos = Counter(f[4] for f in flows)
    assert abs(protos[6] / F - 0.85) < 0.005
    assert abs((protos[1] + protos[58]) / F - 0.03) < 0.005
    # planted traffic is IPv4, untagged
    planted = set(range(len(t.five))) - set(bg)
    assert not any(t.v6[i] or t.vlan[i] for i in planted)


# ---------------------------------------------------------------------------------------------------
# determinism, options, errors


TINY: dict[str, Any] = dict(
    packets=3_000, flows=300, heavy_hitters=2, hh_share=0.1, super_spreaders=1, spread=300,
    ddos_victims=1, ddos_sources=200,
)  # fmt: skip


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path: Path) -> None:
    a = generate(tmp_path / "a.pcap", seed=11, chunk=700, **TINY)
    b = generate(tmp_path / "b.pcap", seed=11, chunk=700, **TINY)
    c = generate(tmp_path / "c.pcap", seed=12, chunk=700, **TINY)
    assert (tmp_path / "a.pcap").read_bytes() == (tmp_path / "b.pcap").read_bytes()
    assert (tmp_path / "a.pcap").read_bytes() != (tmp_path / "c.pcap").read_bytes()
    for key in ("totals", "heavy_hitters", "super_spreaders", "ddos_victims", "top_sources"):
        assert a[key] == b[key]
    assert a["totals"] != c["totals"]
    assert (tmp_path / "a.truth.json").exists() and not (tmp_path / "a.pcap.part").exists()


def test_nanosecond_start_and_truth_path(tmp_path: Path) -> None:
    truth_file = tmp_path / "elsewhere.json"
    truth = generate(
        tmp_path / "n.pcap", seed=1, nanosecond=True, start="2025-06-01T12:00:00+02:00", duration=2.5,
        truth_path=truth_file, **TINY,
    )  # fmt: skip
    t = read_trace(tmp_path / "n.pcap")
    assert t.magic == 0xA1B23C4D
    start_ns = 1_748_772_000 * 10**9
    assert start_ns <= t.ts[0] and t.ts[-1] < start_ns + 2_500_000_000
    assert t.ts == sorted(t.ts)
    assert truth["parameters"]["start"] == "2025-06-01T12:00:00+02:00"
    assert json.loads(truth_file.read_text())["totals"]["packets"] == TINY["packets"]
    assert not (tmp_path / "n.truth.json").exists()


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"packets": -1}, "--packets"),
        ({"flows": 0}, "--flows"),
        ({"zipf": 0.0}, "--zipf"),
        ({"ipv6": 1.5}, "--ipv6"),
        ({"tcp": 0.5}, "sum to 1"),
        ({"duration": -1.0}, "--duration"),
        ({"packets": 1000}, "too small"),
        ({"start": "not a time"}, "--start"),
    ],
)
def test_bad_parameters_are_named(tmp_path: Path, bad: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        generate(tmp_path / "x.pcap", **{**TINY, **bad})
    assert not list(tmp_path.iterdir())


def test_unwritable_path_raises_and_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        generate(tmp_path / "missing" / "x.pcap", **TINY)
    with pytest.raises(TypeError, match="unknown"):
        generate(tmp_path / "x.pcap", colour="red", **TINY)


# ---------------------------------------------------------------------------------------------------
# command line


def _cli_app() -> typer.Typer:
    from netspectra.cli import main

    return main.app


def _cli_tiny() -> list[str]:
    return [f"--{k.replace('_', '-')}={v}" for k, v in TINY.items()]


def test_cli_writes_trace_truth_and_summary(tmp_path: Path) -> None:
    out = tmp_path / "cli.pcap"
    res = CliRunner().invoke(_cli_app(), ["gen", str(out), "--seed", "5", "--ns", *_cli_tiny()])
    assert res.exit_code == 0, res.output
    truth = json.loads((tmp_path / "cli.truth.json").read_text())
    assert truth["totals"]["packets"] == TINY["packets"]
    assert truth["parameters"]["nanosecond"] is True
    assert "198.18.0.1" in res.output and "3,000" in res.output
    t = read_trace(out)
    assert len(t.wire) == TINY["packets"] and t.magic == 0xA1B23C4D
    # the API with the same options writes the same bytes
    generate(tmp_path / "api.pcap", seed=5, nanosecond=True, **TINY)
    assert (tmp_path / "api.pcap").read_bytes() == out.read_bytes()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--packets", "-5"], "packets"),
        (["--zipf", "0"], "--zipf"),
        (["--tcp", "0.2"], "sum to 1"),
        (["--start", "noon"], "--start"),
    ],
)
def test_cli_rejects_bad_values(tmp_path: Path, args: list[str], message: str) -> None:
    res = CliRunner().invoke(_cli_app(), ["gen", str(tmp_path / "x.pcap"), *_cli_tiny(), *args])
    assert res.exit_code == 2
    assert message in res.output
    assert not (tmp_path / "x.pcap").exists()


def test_cli_unwritable_directory(tmp_path: Path) -> None:
    res = CliRunner().invoke(_cli_app(), ["gen", str(tmp_path / "no" / "x.pcap"), *_cli_tiny()])
    assert res.exit_code == 2
    assert "does not exist" in res.output


def test_cli_help_explains_every_option() -> None:
    res = CliRunner().invoke(_cli_app(), ["gen", "--help"], env={"COLUMNS": "200"})
    assert res.exit_code == 0
    options = (
        "packets flows zipf duration start ipv6 vlan heavy-hitters super-spreaders ddos-victims seed ns truth"
    )
    for opt in [*options.split(), "config"]:
        assert f"--{opt}" in res.output
