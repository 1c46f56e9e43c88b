"""The exact task: numba hash table vs plain-Python references, snapshots, reset, Arrow output."""

from __future__ import annotations

import ipaddress
import zlib

import numpy as np
import pyarrow as pa
import pytest

from netspectra.batch import PacketBatch
from netspectra.fields import FIELD_NAMES, validate_fields
from netspectra.output.flow_table import FLOW_TABLE_SCHEMA
from netspectra.tasks import exact_kernels as kern
from netspectra.tasks.exact import MAX_LOAD_DEN, MAX_LOAD_NUM, ExactTask, FlowSnapshot
from netspectra.tasks.exact_ref import ReferenceFlows, hash_key_ref, reference_table

FIVE = ["SrcIP", "DstIP", "SrcPort", "DstPort", "Protocol"]
TASKS = [FIVE, ["SrcIP"], ["DstIP", "DstPort"], ["Protocol"], ["DstPort", "SrcIP", "Protocol"]]


def _addresses(rng: np.random.Generator, k: int, v6_share: float) -> np.ndarray:
    """``k`` distinct-ish addresses, a share of them IPv6, the rest IPv4-mapped."""
    out = rng.integers(0, 256, (k, 16), dtype=np.uint8)
    v4 = rng.random(k) >= v6_share
    out[v4, :10] = 0
    out[v4, 10:12] = 0xFF
    # Some IPv6 rows with long zero runs, some IPv4 rows differing only in the last byte.
    out[~v4 & (rng.random(k) < 0.5), 4:12] = 0
    return out


def make_batch(
    rng: np.random.Generator,
    n: int,
    n_addr: int = 6,
    n_ports: int = 3,
    v6_share: float = 0.3,
    ts_range: tuple[int, int] = (-(10**9), 10**12),
) -> PacketBatch:
    """A batch drawn from a small pool of values: keys repeat heavily and many differ in one field."""
    pool = _addresses(rng, n_addr, v6_share)
    ports = rng.integers(0, 65536, n_ports).astype(np.uint16)
    return PacketBatch(
        ts_ns=rng.integers(*ts_range, n).astype(np.int64),  # unordered, some before 1970
        src_ip=np.ascontiguousarray(pool[rng.integers(0, n_addr, n)]),
        dst_ip=np.ascontiguousarray(pool[rng.integers(0, n_addr, n)]),
        src_port=ports[rng.integers(0, n_ports, n)],
        dst_port=ports[rng.integers(0, n_ports, n)],
        protocol=np.array([6, 17, 1, 0], np.uint8)[rng.integers(0, 4, n)],
        length=rng.integers(0, 70000, n).astype(np.uint32),
    )


def distinct_batch(rng: np.random.Generator, n: int) -> PacketBatch:
    """``n`` packets that are (almost surely) ``n`` distinct five-tuple flows."""
    return make_batch(rng, n, n_addr=n, n_ports=max(n, 3), v6_share=0.5)


def snapshot_dict(snap: FlowSnapshot) -> dict[tuple, list[int]]:
    return {
        (
            bytes(snap.src_ip[i]),
            bytes(snap.dst_ip[i]),
            int(snap.src_port[i]),
            int(snap.dst_port[i]),
            int(snap.protocol[i]),
        ): [int(snap.first_ns[i]), int(snap.last_ns[i]), int(snap.packets[i]), int(snap.bytes[i])]
        for i in range(len(snap))
    }


# --- fields -----------------------------------------------------------------------------------------


def test_validate_key_fields_keeps_config_order() -> None:
    assert validate_fields(["DstPort", "SrcIP"]) == ("DstPort", "SrcIP")
    assert validate_fields(tuple(FIELD_NAMES)) == FIELD_NAMES


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (["SrcIP", "Bogus"], "'Bogus'"),
        (["srcip"], "did you mean 'SrcIP'"),
        (["SrcIP", "SrcIP"], "listed twice"),
        ([], "empty"),
        ("SrcIP", "list of field names"),
    ],
)
def test_validate_key_fields_rejects(fields: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        validate_fields(fields)
    if fields and not isinstance(fields, str) and fields != ["SrcIP", "SrcIP"]:
        assert "SrcIP, DstIP, SrcPort, DstPort, Protocol" in str(info.value)


def test_task_rejects_unknown_field_at_construction() -> None:
    with pytest.raises(ValueError, match="key_fields: unknown field 'Port'"):
        ExactTask("t", ["SrcIP", "Port"])


# --- kernels vs references --------------------------------------------------------------------------


def test_hash_kernel_matches_python_reference() -> None:
    rng = np.random.default_rng(1)
    words = rng.integers(0, 2**63, (200, 5), dtype=np.uint64) * np.uint64(2) + rng.integers(
        0, 2, (200, 5), dtype=np.uint64
    )
    words[:10] = 0
    words[10:20, :4] = 0
    for row in words:
        assert int(kern.hash_key(*row)) == hash_key_ref(*(int(x) for x in row))
    cap = 1 << 12
    slots = kern.home_slots(words, cap)
    assert slots.tolist() == [hash_key_ref(*(int(x) for x in row)) & (cap - 1) for row in words]


@pytest.mark.parametrize("key_fields", TASKS, ids=["-".join(t) for t in TASKS])
def test_table_identical_to_python_reference_through_growth(key_fields: list[str]) -> None:
    """Kernels and their Python twins build the same table, slot by slot, across several rehashes."""
    rng = np.random.default_rng(7)
    batches = [make_batch(rng, 700, n_addr=9, n_ports=4) for _ in range(3)] + [distinct_batch(rng, 300)]
    task = ExactTask("t", key_fields, capacity_hint=1)
    for b in batches:
        task.update(b)
    ref = reference_table(batches, key_fields, 16, (MAX_LOAD_NUM, MAX_LOAD_DEN))
    assert task.capacity == ref.shape[0]
    np.testing.assert_array_equal(task._table, ref)


def test_small_pool_really_collides() -> None:
    """The seeded pools above put distinct keys on the same home slot, so probing is exercised."""
    rng = np.random.default_rng(7)
    task = ExactTask("t", FIVE, capacity_hint=1)
    task.update(make_batch(rng, 2000, n_addr=9, n_ports=4))
    used = task._table[task._table[:, kern.MISC] != 0, :5]
    home = kern.home_slots(np.ascontiguousarray(used), task.capacity)
    assert len(np.unique(home)) < len(used)
    slots = np.flatnonzero(task._table[:, kern.MISC] != 0)
    assert np.any(slots != home)  # some rows sit away from their home slot (rows are in slot order)


@pytest.mark.parametrize("key_fields", TASKS, ids=["-".join(t) for t in TASKS])
@pytest.mark.parametrize("v6_share", [0.0, 0.4, 1.0])
def test_flows_match_dict_reference(key_fields: list[str], v6_share: float) -> None:
    rng = np.random.default_rng(zlib.crc32(f"{key_fields}{v6_share}".encode()))  # stable across runs
    task = ExactTask("t", key_fields, capacity_hint=4)
    ref = ReferenceFlows(key_fields)
    for n in (1, 500, 0, 1500, 3000):
        b = make_batch(rng, n, n_addr=12, n_ports=5, v6_share=v6_share)
        task.update(b)
        ref.update(b)
    snap = task.snapshot()
    assert snapshot_dict(snap) == ref.flows
    assert len(task) == len(snap) == len(ref.flows)
    assert task.packets == snap.total_packets == 5001
    assert task.bytes == snap.total_bytes == sum(v[3] for v in ref.flows.values())


def test_growth_through_many_rehashes_in_one_and_many_batches() -> None:
    rng = np.random.default_rng(3)
    big = distinct_batch(rng, 30_000)
    task = ExactTask("t", FIVE, capacity_hint=1)
    task.update(big)  # 16 -> 65536 slots inside a single update
    assert task.capacity == 65536 and len(task) == len(snapshot_dict(task.snapshot()))
    ref = ReferenceFlows(FIVE)
    ref.update(big)
    for _ in range(4):
        b = distinct_batch(rng, 5000)
        task.update(b)
        ref.update(b)
        task.update(big.take(np.arange(0, 30_000, 7)))
        ref.update(big.take(np.arange(0, 30_000, 7)))
    assert snapshot_dict(task.snapshot()) == ref.flows
    assert len(task) <= task.capacity * MAX_LOAD_NUM // MAX_LOAD_DEN
    assert task.capacity & (task.capacity - 1) == 0


def test_first_last_are_min_max_whatever_the_order() -> None:
    """Deliberate difference from the original: EndTime is the latest timestamp, not the last processed."""
    ip = np.zeros((1, 16), np.uint8)
    ip[0, 10:] = [255, 255, 10, 0, 0, 1]

    def one(ts: int) -> PacketBatch:
        return PacketBatch(
            np.array([ts], np.int64), ip.copy(), ip.copy(), np.array([1], np.uint16),
            np.array([2], np.uint16), np.array([6], np.uint8), np.array([100], np.uint32),
        )  # fmt: skip

    task = ExactTask("t", FIVE)
    for ts in (30, 10, 20, -5, 25):
        task.update(one(ts))
    snap = task.snapshot()
    assert (snap.first_ns[0], snap.last_ns[0], snap.packets[0], snap.bytes[0]) == (-5, 30, 5, 500)


def test_byte_counts_exceed_32_bits() -> None:
    rng = np.random.default_rng(5)
    b = make_batch(rng, 10, n_addr=1, n_ports=1)
    b = PacketBatch(b.ts_ns, b.src_ip, b.dst_ip, b.src_port, b.dst_port,
                    np.full(10, 6, np.uint8), np.full(10, 2**32 - 1, np.uint32))  # fmt: skip
    task = ExactTask("t", ["Protocol"])
    task.update(b)
    task.update(b)
    snap = task.snapshot()
    assert snap.bytes.tolist() == [20 * (2**32 - 1)] and task.bytes == 20 * (2**32 - 1)
    assert snap.bytes.dtype == np.uint64 and snap.packets.dtype == np.uint64


def test_read_only_zero_copy_input() -> None:
    """Batches received from the transport are read-only views of a message buffer."""
    rng = np.random.default_rng(11)
    b = make_batch(rng, 400)
    ro = []
    for c in PacketBatch.COLUMNS:
        a = getattr(b, c)
        ro.append(np.frombuffer(a.tobytes(), dtype=a.dtype).reshape(a.shape))
    rb = PacketBatch(*ro)
    assert not rb.ts_ns.flags.writeable
    task, ref = ExactTask("t", FIVE), ReferenceFlows(FIVE)
    task.update(rb)
    ref.update(b)
    assert snapshot_dict(task.snapshot()) == ref.flows


def test_invalid_batch_is_rejected() -> None:
    b = make_batch(np.random.default_rng(0), 10)
    bad = PacketBatch(
        b.ts_ns, b.src_ip, b.dst_ip, b.src_port.astype(np.int32), b.dst_port, b.protocol, b.length
    )
    task = ExactTask("t", FIVE)
    with pytest.raises(ValueError, match="src_port"):
        task.update(bad)
    assert len(task) == 0 and task.packets == 0


# --- snapshot and reset -----------------------------------------------------------------------------


def test_snapshot_is_an_isolated_read_only_copy() -> None:
    rng = np.random.default_rng(12)
    task = ExactTask("t", FIVE, capacity_hint=4)
    task.update(make_batch(rng, 1000))
    snap = task.snapshot()
    frozen = snapshot_dict(snap)
    copies = {n: getattr(snap, n).copy() for n in FlowSnapshot.ARRAYS}
    for _ in range(3):
        task.update(make_batch(rng, 2000, n_addr=20))  # grows the table, updates existing flows too
    for n, a in copies.items():
        np.testing.assert_array_equal(getattr(snap, n), a)
        assert not getattr(snap, n).flags.writeable
    assert snapshot_dict(snap) == frozen
    assert task.snapshot().total_packets == 7000 and snap.total_packets == 1000
    with pytest.raises(ValueError):
        snap.packets[0] = 0


def test_reset_forgets_everything_and_counts_afresh() -> None:
    rng = np.random.default_rng(13)
    task = ExactTask("t", ["SrcIP", "DstIP"], capacity_hint=16)
    initial_capacity = task.capacity
    task.update(distinct_batch(rng, 20_000))
    grown = task.capacity
    before = task.snapshot()
    task.reset()
    assert len(task) == 0 and task.packets == 0 and task.bytes == 0 and len(task.snapshot()) == 0
    assert task.capacity == grown  # sized for the last period
    assert len(before) == 20_000  # an earlier snapshot is unaffected
    b = make_batch(rng, 300)
    ref = ReferenceFlows(["SrcIP", "DstIP"])
    ref.update(b)
    task.update(b)
    assert snapshot_dict(task.snapshot()) == ref.flows and task.packets == 300
    flows = len(task)
    task.reset()
    # A small period lets the table shrink back to what that period needed.
    assert initial_capacity <= task.capacity < grown
    assert task.capacity * MAX_LOAD_NUM // MAX_LOAD_DEN >= flows


def test_memory_bytes_and_len() -> None:
    task = ExactTask("t", FIVE, capacity_hint=1000)
    assert task.memory_bytes == task.capacity * kern.ROW_WORDS * 8
    assert task.capacity * MAX_LOAD_NUM // MAX_LOAD_DEN >= 1000
    assert len(task) == 0 and len(task.snapshot()) == 0


# --- ordering, Arrow, keys --------------------------------------------------------------------------


@pytest.mark.parametrize("by", ["bytes", "packets"])
def test_sorted_and_top_are_deterministic(by: str) -> None:
    rng = np.random.default_rng(21)
    task = ExactTask("t", FIVE)
    b = make_batch(rng, 3000, n_addr=8, n_ports=3)
    b = PacketBatch(b.ts_ns, b.src_ip, b.dst_ip, b.src_port, b.dst_port, b.protocol,
                    np.full(3000, 100, np.uint32))  # fmt: skip  # equal sizes: many ties
    task.update(b)
    snap = task.snapshot()
    d = snapshot_dict(snap)
    other = "packets" if by == "bytes" else "bytes"
    col = {"packets": 2, "bytes": 3}
    want = sorted(d.items(), key=lambda kv: (-kv[1][col[by]], -kv[1][col[other]], kv[0]))
    got = snap.sorted(by)
    assert list(snapshot_dict(got).items()) == want
    for n in (0, 1, 7, 50, len(snap), len(snap) + 5):
        top = snap.top(n, by=by)
        assert list(snapshot_dict(top).items()) == want[:n]
    with pytest.raises(ValueError):
        snap.top(3, by="flows")  # type: ignore[arg-type]


@pytest.mark.parametrize("key_fields", TASKS, ids=["-".join(t) for t in TASKS])
def test_to_arrow_schema_nulls_and_values(key_fields: list[str]) -> None:
    rng = np.random.default_rng(31)
    task = ExactTask("per_flow", key_fields)
    task.update(make_batch(rng, 2000, n_addr=10, v6_share=0.5))
    snap = task.snapshot().sorted("packets")
    table = snap.to_arrow()
    assert table.schema.equals(FLOW_TABLE_SCHEMA, check_metadata=True)
    assert table.column_names == [
        "TaskName", "SrcIP", "DstIP", "SrcPort", "DstPort", "Protocol",
        "StartTime", "EndTime", "ByteCount", "PacketCount",
    ]  # fmt: skip
    assert table.num_rows == len(snap)
    assert set(table.column("TaskName").to_pylist()) == {"per_flow"}
    for field, col in [("SrcIP", "src_ip"), ("DstIP", "dst_ip")]:
        values = table.column(field).to_pylist()
        if field in key_fields:
            want = []
            for row in getattr(snap, col):
                a = ipaddress.IPv6Address(bytes(row))
                want.append(str(a.ipv4_mapped) if a.ipv4_mapped else str(a))
            assert values == want
        else:
            assert table.column(field).null_count == table.num_rows
    for field, col in [("SrcPort", "src_port"), ("DstPort", "dst_port"), ("Protocol", "protocol")]:
        if field in key_fields:
            assert table.column(field).to_pylist() == getattr(snap, col).tolist()
        else:
            assert table.column(field).null_count == table.num_rows
    assert table.column("StartTime").cast(pa.int64()).to_pylist() == snap.first_ns.tolist()
    assert table.column("EndTime").cast(pa.int64()).to_pylist() == snap.last_ns.tolist()
    assert table.column("ByteCount").to_pylist() == snap.bytes.tolist()
    assert table.column("PacketCount").to_pylist() == snap.packets.tolist()
    assert str(table.schema.field("StartTime").type) == "timestamp[ns, tz=UTC]"


def test_snapshot_checks_its_columns() -> None:
    snap = ExactTask("t", FIVE).snapshot()
    cols = {n: getattr(snap, n) for n in FlowSnapshot.ARRAYS}
    with pytest.raises(ValueError, match="bytes"):
        FlowSnapshot("t", ("SrcIP",), **{**cols, "bytes": np.zeros(0, np.int64)})
    with pytest.raises(ValueError, match="src_ip"):
        FlowSnapshot("t", ("SrcIP",), **{**cols, "src_ip": np.zeros((1, 16), np.uint8)})


def test_empty_snapshot_to_arrow() -> None:
    table = ExactTask("t", FIVE).snapshot().to_arrow()
    assert table.num_rows == 0 and table.schema.equals(FLOW_TABLE_SCHEMA)


def test_flow_keys_in_the_originals_format() -> None:
    ip = np.zeros((2, 16), np.uint8)
    ip[0, 10:] = [255, 255, 10, 0, 0, 1]
    ip[1] = list(ipaddress.IPv6Address("2001:db8::2").packed)
    b = PacketBatch(
        np.array([1, 2], np.int64), ip[[0, 1]], ip[[1, 0]], np.array([1234, 80], np.uint16),
        np.array([80, 1234], np.uint16), np.array([6, 17], np.uint8), np.array([60, 70], np.uint32),
    )  # fmt: skip
    five = ExactTask("t", FIVE)
    five.update(b)
    assert sorted(five.snapshot().flow_keys()) == [
        "10.0.0.1-2001:db8::2-1234-80-6",
        "2001:db8::2-10.0.0.1-80-1234-17",
    ]
    partial = ExactTask("t", ["DstPort", "SrcIP"])
    partial.update(b)
    assert sorted(partial.snapshot().flow_keys()) == ["1234-2001:db8::2", "80-10.0.0.1"]
