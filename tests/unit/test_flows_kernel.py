"""The flow-record table (numba kernels + FlowTask) against its plain-Python reference, and its limits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from netspectra.batch import PacketBatch
from netspectra.capture.reader import CaptureReader
from netspectra.flows import kernels as kern
from netspectra.flows.records import FlowRecords, conn_states
from netspectra.flows.ref import ReferenceFlows
from netspectra.flows.task import FlowParams, FlowTask, capacity_for

NS = 1_000_000_000
CAPTURES = Path(__file__).resolve().parents[1] / "data" / "captures"
V4 = np.frombuffer(bytes(10) + b"\xff\xff", np.uint8)

#: The optional columns a captured packet has (the flow-export columns make a row a record).
PACKET_COLUMNS = tuple(c for c in PacketBatch.OPTIONAL if c not in PacketBatch.EXPORT_COLUMNS)


def rows_of(records: FlowRecords) -> list[dict]:
    """The records as the reference writes them: times and durations as integer nanoseconds."""
    table = records.to_arrow()
    cols = {}
    for name in table.column_names:
        col = table.column(name)
        if pa.types.is_timestamp(col.type) or pa.types.is_duration(col.type):
            col = col.cast(pa.int64())
        cols[name] = col.to_pylist()
    return [dict(zip(cols, v, strict=True)) for v in zip(*cols.values(), strict=True)]


def order(rows: list[dict]) -> list[dict]:
    return sorted(rows, key=lambda r: (r["FirstSeen"], r["SrcIP"], r["DstIP"], r["SrcPort"], r["DstPort"],
                                       r["Protocol"], r["VlanID"], r["LastSeen"]))  # fmt: skip


def run_task(batches: list[PacketBatch], params: FlowParams, **kw) -> FlowRecords:
    task = FlowTask("t", params, **kw)
    parts = []
    for b in batches:
        task.update(b)
        parts.append(task.drain())
    task.finish("end_of_input")
    parts.append(task.drain())
    return FlowRecords.concat(parts)


def run_ref(batches: list[PacketBatch], params: FlowParams) -> list[dict]:
    ref = ReferenceFlows("t", params)
    for b in batches:
        ref.update(b)
    ref.finish("end_of_input")
    return ref.records


def assert_agree(batches: list[PacketBatch], params: FlowParams, **kw) -> list[dict]:
    got = order(rows_of(run_task(batches, params, **kw)))
    want = order(run_ref(batches, params))
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert g == w, {k: (g[k], w.get(k)) for k in g if g[k] != w.get(k)}
    return got


def synthetic(
    n: int, seed: int, *, endpoints: int = 12, span_s: float = 600.0, optional: bool = True
) -> PacketBatch:
    """Random packets between a few endpoints (so flows repeat, reverse and time out), with random TCP
    flags, ICMP codes, VLANs and some packets out of order."""
    rng = np.random.default_rng(seed)
    hosts = rng.integers(0, 256, (endpoints, 16)).astype(np.uint8)
    hosts[: endpoints // 2, :12] = V4
    b = PacketBatch.empty(n, PACKET_COLUMNS if optional else ())
    ts = np.sort(rng.integers(0, int(span_s * NS), n)) + 1_700_000_000 * NS
    late = rng.random(n) < 0.02
    ts[late] -= rng.integers(0, 5 * NS, late.sum())
    b.ts_ns[:] = ts
    s = rng.integers(0, endpoints, n)
    d = rng.integers(0, endpoints, n)
    b.src_ip[:] = hosts[s]
    b.dst_ip[:] = hosts[d]
    ports = np.array([80, 443, 53, 5000, 12345], np.uint16)
    b.src_port[:] = ports[rng.integers(0, 3, n)]
    b.dst_port[:] = ports[rng.integers(0, 3, n)]
    b.protocol[:] = rng.choice(np.array([6, 6, 6, 17, 1, 58, 47], np.uint8), n)
    b.length[:] = rng.integers(40, 1600, n)
    if optional:
        flag_choices = np.array([0x02, 0x12, 0x10, 0x18, 0x11, 0x14, 0x04, 0x01, 0x00, 0x10, 0x10], np.uint8)
        b.tcp_flags[:] = np.where(b.protocol == 6, rng.choice(flag_choices, n), 0)
        b.vlan_id[:] = rng.choice(np.array([0, 0, 0, 7, 4095], np.uint16), n)
        b.icmp_type_code[:] = np.where(
            np.isin(b.protocol, (1, 58)), rng.choice(np.array([0x0800, 0x0000, 0x0303], np.uint16), n), 0
        )
        b.ip_length[:] = b.length - 14
    for c in ("src_port", "dst_port"):
        getattr(b, c)[~np.isin(b.protocol, (6, 17))] = 0
    return b


PARAMS = [
    FlowParams(),
    FlowParams(idle_timeout_ns=30 * NS, active_timeout_ns=120 * NS, splt=5),
    FlowParams(
        idle_timeout_ns=15 * NS, active_timeout_ns=60 * NS, tcp_end=True, tcp_end_grace_ns=2 * NS, splt=3
    ),
    FlowParams(idle_timeout_ns=20 * NS, statistics=False),
]


@pytest.mark.parametrize("params", PARAMS, ids=["defaults", "short+splt", "tcp_end", "no-stats"])
@pytest.mark.parametrize("seed", [1, 2])
def test_random_packets_agree_with_reference(params: FlowParams, seed: int) -> None:
    batches = [synthetic(700, seed * 10 + k) for k in range(3)]
    batches = [b.take(np.argsort(b.ts_ns, kind="stable")) for b in batches[:1]] + batches[1:]
    rows = assert_agree(batches, params)
    reasons = {r["EndReason"] for r in rows}
    assert "idle" in reasons or params.idle_timeout_ns > 100 * NS
    if params.tcp_end:
        assert "tcp_end" in reasons


@pytest.mark.parametrize("params", PARAMS[1:3], ids=["short+splt", "tcp_end"])
def test_every_slow_path_agrees(params: FlowParams) -> None:
    """A table that starts at 16 slots, an outbox of one row and a scan after every batch: growth,
    outbox refills, scans with backward-shift deletion and lookups after deletion all run."""
    batches = [synthetic(300, 40 + k, endpoints=40) for k in range(6)]
    assert_agree(batches, params, capacity_hint=1, outbox_rows=1, scan_interval_ns=1)


def test_batches_without_optional_columns_agree() -> None:
    batches = [synthetic(500, 7, optional=False), synthetic(500, 8, optional=False)]
    rows = assert_agree(batches, PARAMS[1])
    tcp = [r for r in rows if r["Protocol"] == 6]
    assert tcp and all(r["ConnState"] is None and r["SrcToDstTCPFlags"] is None for r in tcp)
    assert all(r["SrcToDstIPBytes"] is None and r["VlanID"] == 0 for r in rows)


@pytest.mark.parametrize(
    "name",
    [
        "gnutella.pcap",
        "tcp-handshake-nano.pcap",
        "mixed-vlan-mpls.pcap",
        "sctp.pcap",
        "ipv6_fragments.pcapng",
    ],
)
def test_real_captures_agree_with_reference(name: str) -> None:
    path = CAPTURES / name
    if not path.exists():
        pytest.skip(f"{name} is not in the repository's captures")
    batches = list(CaptureReader(path, extras=True, batch_size=512))
    for params in (FlowParams(splt=8), FlowParams(idle_timeout_ns=NS, tcp_end=True)):
        assert_agree(batches, params)


# --- hand-built connections: states, reasons, directions ------------------------------------------


def packets(rows: list[tuple[float, int, int, int, int]], *, proto: int = 6, icmp: int = 0) -> PacketBatch:
    """Packets (time s, from A (0) or B (1), flags, length, vlan), A = 10.0.0.1:1234, B = 10.0.0.2:80."""
    n = len(rows)
    b = PacketBatch.empty(n, PACKET_COLUMNS)
    a = np.concatenate([V4, [10, 0, 0, 1]]).astype(np.uint8)
    z = np.concatenate([V4, [10, 0, 0, 2]]).astype(np.uint8)
    for i, (t, frm, flags, length, vlan) in enumerate(rows):
        b.ts_ns[i] = int(t * NS)
        b.src_ip[i], b.dst_ip[i] = (a, z) if frm == 0 else (z, a)
        b.src_port[i], b.dst_port[i] = (
            ((1234, 80) if frm == 0 else (80, 1234)) if proto in (6, 17) else (0, 0)
        )
        b.protocol[i] = proto
        b.length[i] = length
        b.tcp_flags[i] = flags if proto == 6 else 0
        b.vlan_id[i] = vlan
        b.icmp_type_code[i] = icmp if proto in (1, 58) else 0
        b.ip_length[i] = length - 14
    return b


SYN_, SYNACK, ACK_, PSHACK, FINACK, RST_, RSTACK = 0x02, 0x12, 0x10, 0x18, 0x11, 0x04, 0x14
CONNECTIONS = {
    # name: (packets, expected ConnState)
    "S0": ([(0, 0, SYN_, 60, 0), (1, 0, SYN_, 60, 0)], "S0"),
    "S1": (
        [(0, 0, SYN_, 60, 0), (0.1, 1, SYNACK, 60, 0), (0.2, 0, ACK_, 54, 0), (0.3, 0, PSHACK, 200, 0)],
        "S1",
    ),
    "SF": (
        [
            (0, 0, SYN_, 60, 0),
            (0.1, 1, SYNACK, 60, 0),
            (0.2, 0, ACK_, 54, 0),
            (0.3, 0, FINACK, 54, 0),
            (0.4, 1, FINACK, 54, 0),
            (0.5, 0, ACK_, 54, 0),
        ],
        "SF",
    ),
    "REJ": ([(0, 0, SYN_, 60, 0), (0.1, 1, RSTACK, 54, 0)], "REJ"),
    "RSTO": (
        [(0, 0, SYN_, 60, 0), (0.1, 1, SYNACK, 60, 0), (0.2, 0, ACK_, 54, 0), (0.3, 0, RSTACK, 54, 0)],
        "RSTO",
    ),
    "RSTR": (
        [(0, 0, SYN_, 60, 0), (0.1, 1, SYNACK, 60, 0), (0.2, 0, ACK_, 54, 0), (0.3, 1, RST_, 54, 0)],
        "RSTR",
    ),
    "RSTOS0": ([(0, 0, SYN_, 60, 0), (0.1, 0, RST_, 54, 0)], "RSTOS0"),
    # the source is the first sender: mid-stream data from A, then B resets or closes
    "RSTRH": ([(0, 0, PSHACK, 300, 0), (0.1, 1, RST_, 54, 0)], "RSTRH"),
    "SH": ([(0, 0, SYN_, 60, 0), (0.1, 0, FINACK, 54, 0)], "SH"),
    "SHR": ([(0, 0, PSHACK, 300, 0), (0.1, 1, FINACK, 54, 0)], "SHR"),
    "S2": (
        [(0, 0, SYN_, 60, 0), (0.1, 1, SYNACK, 60, 0), (0.2, 0, ACK_, 54, 0), (0.3, 0, FINACK, 54, 0)],
        "S2",
    ),
    "S3": (
        [(0, 0, SYN_, 60, 0), (0.1, 1, SYNACK, 60, 0), (0.2, 0, ACK_, 54, 0), (0.3, 1, FINACK, 54, 0)],
        "S3",
    ),
    "OTH-midstream": ([(0, 0, PSHACK, 500, 0), (0.1, 1, ACK_, 54, 0)], "OTH"),
}


@pytest.mark.parametrize("name", list(CONNECTIONS))
def test_conn_state_of_hand_built_connections(name: str) -> None:
    rows, want = CONNECTIONS[name]
    batch = packets([(1000 + t, *rest) for t, *rest in rows])
    got = assert_agree([batch], FlowParams())
    assert len(got) == 1 and got[0]["ConnState"] == want


def test_source_is_first_sender_and_directions_are_counted() -> None:
    rows = [(10, 1, SYNACK, 60, 5), (10.5, 0, ACK_, 54, 5), (11, 1, PSHACK, 300, 5), (12, 1, PSHACK, 400, 5)]
    (r,) = assert_agree([packets(rows)], FlowParams(splt=3))
    assert (r["SrcIP"], r["SrcPort"], r["DstIP"], r["DstPort"]) == ("10.0.0.2", 80, "10.0.0.1", 1234)
    assert (r["SrcToDstPackets"], r["SrcToDstBytes"], r["DstToSrcPackets"], r["DstToSrcBytes"]) == (
        3,
        760,
        1,
        54,
    )
    assert (r["SrcToDstTCPFlags"], r["DstToSrcTCPFlags"]) == (SYNACK | PSHACK, ACK_)
    assert r["VlanID"] == 5 and r["SrcToDstIPBytes"] == 760 - 3 * 14
    assert r["SpltSize"] == [60, 54, 300] and r["SpltDirection"] == [0, 1, 0]
    assert (r["SrcToDstIATMin"], r["SrcToDstIATMax"]) == (NS, 1 * NS) and r["DstToSrcIATMin"] is None
    assert r["SrcToDstSizeMin"] == 60 and r["SrcToDstSizeMax"] == 400


def test_idle_active_and_tcp_end_split_records() -> None:
    idle = FlowParams(idle_timeout_ns=10 * NS, active_timeout_ns=100 * NS)
    rows = [(0, 0, PSHACK, 100, 0), (5, 1, ACK_, 54, 0), (15.0, 0, PSHACK, 100, 0), (16, 0, ACK_, 54, 0)]
    got = assert_agree([packets(rows)], idle)
    assert [(r["SrcToDstPackets"], r["DstToSrcPackets"], r["EndReason"]) for r in got] == [
        (1, 1, "idle"),  # 15 - 5 = 10 s of silence: the deadline is reached exactly
        (2, 0, "end_of_input"),
    ]
    active = FlowParams(idle_timeout_ns=10 * NS, active_timeout_ns=20 * NS)
    rows = [(t, 0, ACK_, 54, 0) for t in range(0, 45, 5)]
    got = assert_agree([packets(rows)], active)
    assert [(r["SrcToDstPackets"], r["EndReason"]) for r in got] == [
        (4, "active"),
        (4, "active"),
        (1, "end_of_input"),
    ]
    tcp_end = FlowParams(tcp_end=True, tcp_end_grace_ns=2 * NS)
    sf = [r for r in CONNECTIONS["SF"][0]]
    again = [(3 + t, *rest) for t, *rest in CONNECTIONS["S1"][0]]  # port reuse after the close
    got = assert_agree([packets(sf + again)], tcp_end)
    assert [(r["ConnState"], r["EndReason"]) for r in got] == [("SF", "tcp_end"), ("S1", "end_of_input")]
    # a SYN right after a RST starts the next connection at once, grace or not
    got = assert_agree([packets(CONNECTIONS["REJ"][0] + [(0.2, 0, SYN_, 60, 0)])], tcp_end)
    assert [(r["ConnState"], r["EndReason"]) for r in got] == [("REJ", "tcp_end"), ("S0", "end_of_input")]
    # without TCP end expiry the same packets are one record
    got = assert_agree([packets(sf + again)], FlowParams())
    assert len(got) == 1


def test_icmp_type_and_code_per_direction_and_not_in_the_key() -> None:
    request = packets([(0, 0, 0, 98, 0), (2, 0, 0, 98, 0)], proto=1, icmp=0x0800)
    reply = packets([(1, 1, 0, 98, 0)], proto=1, icmp=0x0000)
    got = assert_agree([PacketBatch.concat([request.head(1), reply, request.slice(1, 2)])], FlowParams())
    assert len(got) == 1
    r = got[0]
    assert (r["SrcToDstPackets"], r["DstToSrcPackets"]) == (2, 1)
    assert (r["SrcToDstICMPTypeCode"], r["DstToSrcICMPTypeCode"]) == (0x0800, 0x0000)
    assert r["ConnState"] == "OTH" and r["SrcToDstTCPFlags"] is None


def test_truncated_tcp_header_counts_without_flags() -> None:
    b = packets([(0, 0, SYN_, 60, 0), (0.1, 1, 0, 54, 0), (0.2, 0, ACK_, 54, 0)])  # flags cut: 0
    (r,) = assert_agree([b], FlowParams())
    assert (r["SrcToDstPackets"], r["DstToSrcPackets"]) == (2, 1)
    assert (r["DstToSrcTCPFlags"], r["DstToSrcSYN"]) == (0, 0)


def test_vlans_are_separate_flows() -> None:
    b = packets([(0, 0, SYN_, 60, 0), (0.1, 0, SYN_, 60, 10), (0.2, 1, SYNACK, 60, 10)])
    got = assert_agree([b], FlowParams())
    assert sorted((r["VlanID"], r["DstToSrcPackets"]) for r in got) == [(0, 0), (10, 1)]


def test_counters_saturate() -> None:
    task = FlowTask("t", FlowParams())
    n = kern.COUNT_MAX + 10
    b = packets([(0, 0, SYN_, 60, 0)] * 1)
    big = PacketBatch.concat([b] * n)
    task.update(big)
    task.finish()
    (r,) = task.drain().to_arrow().to_pylist()
    assert r["SrcToDstSYN"] == kern.COUNT_MAX and r["SrcToDstPackets"] == n


# --- the table's limits ---------------------------------------------------------------------------


def test_full_table_evicts_the_least_recently_active_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    params = FlowParams(max_flows=64)
    task = FlowTask("t", params)
    rng = np.random.default_rng(3)
    n = 2000
    b = PacketBatch.empty(n, PACKET_COLUMNS)
    b.ts_ns[:] = np.arange(n) * 1_000_000
    b.src_ip[:] = np.concatenate([V4, [10, 0, 0, 1]])
    b.dst_ip[:] = np.concatenate([V4, [10, 0, 0, 2]])
    b.src_port[:] = np.arange(n) % 500 + 1000  # 500 flows, seen round-robin
    b.dst_port[:] = 80
    b.protocol[:] = 17
    b.length[:] = rng.integers(60, 100, n)
    for c in PACKET_COLUMNS:
        getattr(b, c)[:] = 0
    peak = 0
    for part in range(0, n, 100):
        task.update(b.slice(part, part + 100))
        peak = max(peak, task.open_flows)
    assert peak <= 64 and task.capacity <= capacity_for(64)
    task.finish()
    recs = task.drain()
    assert recs.packets.sum() == n  # every packet is in a record
    counts = recs.reason_counts()
    assert counts["table_full"] > 0 and task.evicted == counts["table_full"]
    assert recs.summary is not None and recs.summary.by_reason["table_full"] == counts["table_full"]
    assert "table full (max_flows 64)" in caplog.text
    # the evicted ones are the least recently active: each evicted record's last packet is older than
    # the newest packet at the time (a round-robin over 500 flows never revisits within 64 packets)
    tab = recs.to_arrow()
    ev = tab.filter(pa.compute.equal(tab["EndReason"], "table_full"))
    assert pa.compute.max(ev["SrcToDstPackets"]).as_py() == 1


def test_drain_hands_each_record_out_once_and_peek_leaves_them() -> None:
    task = FlowTask("t", FlowParams(idle_timeout_ns=NS))
    task.update(packets([(0, 0, SYN_, 60, 0), (5, 0, SYN_, 60, 0)]))
    assert task.pending == 1 and len(task.peek()) == 1 and task.pending == 1
    first = task.drain()
    assert len(first) == 1 and task.pending == 0 and len(task.drain()) == 0
    task.tick(10 * NS)  # the engine has been quiet: the second record is due
    second = task.drain()
    assert len(second) == 1 and second.to_arrow()["EndReason"].to_pylist() == ["idle"]
    assert second.summary.by_reason["idle"] == 2 and second.summary.open_flows == 0
    task.finish("shutdown")
    assert len(task.drain()) == 0


def test_conn_states_of_non_tcp() -> None:
    udp_one = packets([(0, 0, 0, 60, 0)], proto=17)
    udp_two = packets([(0, 0, 0, 60, 0), (1, 1, 0, 60, 0)], proto=17)
    for b, want in ((udp_one, "S0"), (udp_two, "SF")):
        task = FlowTask("t")
        task.update(b)
        task.finish()
        recs = task.drain()
        assert [conn_states(recs.rows)[0]] != [0]
        assert recs.to_arrow()["ConnState"].to_pylist() == [want]


def test_a_jump_back_in_time_starts_a_new_time_base() -> None:
    """Within one batch, packets 1000 s older than the newest (another capture's clock): every open flow
    ends with end_of_input and the older packets make records of their own time."""
    newer, older = synthetic(400, 61), synthetic(400, 62)
    older.ts_ns[:] -= 1000 * NS
    batch = PacketBatch.concat([newer.take(np.argsort(newer.ts_ns)), older.take(np.argsort(older.ts_ns))])
    task = FlowTask("t", PARAMS[1])
    task.update(batch)
    assert task.time_resets == 1
    rows = assert_agree([batch], PARAMS[1])
    first_older = int(older.ts_ns.min())
    assert min(r["FirstSeen"] for r in rows if r["FirstSeen"] < int(newer.ts_ns.min())) == first_older
