"""The exact task: numba index and rows vs plain-Python references, snapshots, reset, memory, Arrow output."""

from __future__ import annotations

import ipaddress
import os
import zlib

import numpy as np
import pyarrow as pa
import pytest

from netspectra.batch import PacketBatch
from netspectra.fields import FIELD_NAMES, validate_fields
from netspectra.output.flow_table import FLOW_TABLE_SCHEMA
from netspectra.tasks import exact_kernels as kern
from netspectra.tasks.exact import MAX_LOAD_DEN, MAX_LOAD_NUM, ExactTask, FlowSnapshot
from netspectra.tasks.exact_ref import (
    ReferenceFlows,
    hash_compact_ref,
    hash_wide_ref,
    index_shift_ref,
    reference_table,
)
from netspectra.tasks.exact_store import GrowableWords

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


def test_hash_kernels_match_python_references() -> None:
    rng = np.random.default_rng(1)
    words = rng.integers(0, 2**63, (200, 5), dtype=np.uint64) * np.uint64(2) + rng.integers(
        0, 2, (200, 5), dtype=np.uint64
    )
    words[:10] = 0
    words[10:20, :4] = 0
    for row in words:
        ints = [int(x) for x in row]
        assert int(kern.hash_wide(*row)) == hash_wide_ref(*ints)
        assert int(kern.hash_compact(row[0], row[4])) == hash_compact_ref(ints[0], ints[4])
    for k in range(4, 33):
        assert int(kern.index_shift(1 << k)) == index_shift_ref(1 << k) == 64 - k


def _rows(task: ExactTask) -> tuple[np.ndarray, np.ndarray]:
    """The task's live compact and wide rows as (flows, words) arrays."""
    rows = task._rows.array[: int(task._state[0]) * kern.ROW_WORDS].reshape(-1, kern.ROW_WORDS)
    wide = task._wide.array[: int(task._state[1]) * kern.WIDE_ROW_WORDS].reshape(-1, kern.WIDE_ROW_WORDS)
    return rows, wide


@pytest.mark.parametrize("key_fields", TASKS, ids=["-".join(t) for t in TASKS])
def test_table_identical_to_python_reference_through_growth(key_fields: list[str]) -> None:
    """Kernels and their Python twins build the same index, rows and wide rows, slot by slot, across
    several index rebuilds and wide-array growths."""
    rng = np.random.default_rng(7)
    batches = [make_batch(rng, 700, n_addr=9, n_ports=4) for _ in range(3)] + [distinct_batch(rng, 300)]
    task = ExactTask("t", key_fields, capacity_hint=1)
    for b in batches:
        task.update(b)
    index, rows, wide = reference_table(batches, key_fields, 16, (MAX_LOAD_NUM, MAX_LOAD_DEN))
    assert task.capacity == index.shape[0]
    np.testing.assert_array_equal(task._index, index)
    got_rows, got_wide = _rows(task)
    np.testing.assert_array_equal(got_rows, rows)
    np.testing.assert_array_equal(got_wide, wide)
    if key_fields == FIVE:
        assert task.capacity > 16 and len(wide) > 0 and len(rows) > 0  # both kinds of rows, and growth


def test_small_pool_really_collides() -> None:
    """The seeded pools above put distinct keys on the same home slot, so probing is exercised."""
    rng = np.random.default_rng(7)
    task = ExactTask("t", FIVE, capacity_hint=1)
    task.update(make_batch(rng, 2000, n_addr=9, n_ports=4))
    used, wide_used = (int(x) for x in task._state)
    home = kern.home_slots(task.capacity, task._rows.array, task._wide.array, used, wide_used)
    assert len(np.unique(home)) < len(task)
    occupied = np.flatnonzero(task._index)
    refs = (task._index[occupied] & np.uint64(0xFFFF_FFFF)).astype(np.int64)
    wide_ref = int(kern.WIDE_REF)
    at = np.where(refs & wide_ref, used + (refs & ~wide_ref), refs) - 1  # snapshot row of each slot
    assert sorted(at.tolist()) == list(range(len(task)))
    assert np.any(occupied != home[at])  # some flows sit away from their home slot


def test_tags_spare_rows_of_other_flows() -> None:
    """A slot's tag is its flow's hash high half: equal tags (so row loads) only for the flow itself."""
    rng = np.random.default_rng(8)
    task = ExactTask("t", FIVE, capacity_hint=1)
    task.update(distinct_batch(rng, 5000))
    slots = task._index[task._index != 0]
    assert len(slots) == len(task) and len(np.unique(slots >> np.uint64(32))) >= len(slots) - 2
    for s in slots.tolist():
        ref = np.uint64(s & 0xFFFF_FFFF)
        assert s >> 32 == int(kern.ref_hash(task._rows.array, task._wide.array, ref)) >> 32


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


@pytest.mark.parametrize("v6_share", [0.0, 0.5, 1.0])
def test_growth_at_every_size_keeps_every_flow(v6_share: float) -> None:
    """Flow counts around every load limit of the index and of the wide array, one and many batches."""
    rng = np.random.default_rng(int(v6_share * 10) + 40)
    limits = [c * MAX_LOAD_NUM // MAX_LOAD_DEN for c in (16, 32, 64, 128, 256, 1024)]
    sizes = sorted({1, 2, *(m + d for m in limits for d in (-1, 0, 1))})
    for flows in sizes:
        b = make_batch(rng, flows, n_addr=flows, n_ports=max(flows, 3), v6_share=v6_share)
        whole, pieces = ExactTask("t", FIVE, capacity_hint=1), ExactTask("t", FIVE, capacity_hint=1)
        whole.update(b)
        ref = ReferenceFlows(FIVE)
        ref.update(b)
        for lo in range(0, flows, 7):
            pieces.update(b.take(np.arange(lo, min(lo + 7, flows))))
        assert snapshot_dict(whole.snapshot()) == snapshot_dict(pieces.snapshot()) == ref.flows, flows
        assert len(whole) <= whole.capacity * MAX_LOAD_NUM // MAX_LOAD_DEN
        np.testing.assert_array_equal(_rows(whole)[0], _rows(pieces)[0])  # same rows, in the same order


def test_rows_never_move_on_growth() -> None:
    """Growing rebuilds the index only: the rows already there keep their place and values."""
    rng = np.random.default_rng(9)
    task = ExactTask("t", FIVE, capacity_hint=1)
    task.update(distinct_batch(rng, 40))
    before_rows, before_wide = (a.copy() for a in _rows(task))
    cap = task.capacity
    task.update(distinct_batch(rng, 3000))
    assert task.capacity > cap
    rows, wide = _rows(task)
    np.testing.assert_array_equal(rows[: len(before_rows)], before_rows)
    np.testing.assert_array_equal(wide[: len(before_wide)], before_wide)


def test_compact_and_wide_addresses_never_mix() -> None:
    """IPv4-mapped addresses are stored in 4 bytes, others in 16: neighbours across that line stay apart.

    ``::`` and ``::ffff:0.0.0.0``, ``::ffff:a.b.c.d`` and the IPv4-compatible ``::a.b.c.d``, one
    IPv4 side and one IPv6 side: every pair is two flows, and each comes back as it went in.
    """
    addrs = ["::", "::ffff:0.0.0.0", "::ffff:10.1.2.3", "::10.1.2.3", "0:0:0:0:0:1:a01:203", "2001:db8::1",
             "::ffff:255.255.255.255", "ffff::ffff:0:0"]  # fmt: skip
    packed = np.array([list(ipaddress.IPv6Address(a).packed) for a in addrs], np.uint8)
    pairs = [(i, j) for i in range(len(addrs)) for j in range(len(addrs))]
    n = len(pairs)
    b = PacketBatch(
        np.arange(n, dtype=np.int64), np.ascontiguousarray(packed[[p[0] for p in pairs]]),
        np.ascontiguousarray(packed[[p[1] for p in pairs]]), np.full(n, 7, np.uint16),
        np.full(n, 9, np.uint16), np.full(n, 17, np.uint8), np.full(n, 100, np.uint32),
    )  # fmt: skip
    for fields in TASKS:
        task, ref = ExactTask("t", fields), ReferenceFlows(fields)
        for _ in range(2):
            task.update(b)
            ref.update(b)
        assert snapshot_dict(task.snapshot()) == ref.flows, fields
    task = ExactTask("t", FIVE)
    task.update(b)
    rows, wide = _rows(task)
    v4 = {"::ffff:0.0.0.0", "::ffff:10.1.2.3", "::ffff:255.255.255.255"}
    want_wide = sum(1 for i, j in pairs if not (addrs[i] in v4 and addrs[j] in v4))
    assert len(rows) + len(wide) == n and len(wide) == want_wide


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
    limit = task.capacity * MAX_LOAD_NUM // MAX_LOAD_DEN
    assert limit >= 1000
    assert task.memory_bytes == task.capacity * 8 + limit * kern.ROW_WORDS * 8 + max(16, limit // 8) * 72
    assert len(task) == 0 and len(task.snapshot()) == 0
    task.update(distinct_batch(np.random.default_rng(4), 5000))
    limit = task.capacity * MAX_LOAD_NUM // MAX_LOAD_DEN
    assert task.memory_bytes == task.capacity * 8 + limit * 48 + task._wide.nbytes
    assert task._wide.nbytes >= int(task._state[1]) * 72


def test_capacity_hint_beyond_one_table_is_refused() -> None:
    with pytest.raises(ValueError, match="capacity_hint"):
        ExactTask("t", FIVE, capacity_hint=1 << 33)


def test_full_table_refuses_and_keeps_what_it_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    from netspectra.tasks import exact

    monkeypatch.setattr(exact, "_MAX_CAPACITY", 64)  # at most 48 flows
    task = ExactTask("t", FIVE, capacity_hint=1)
    b = distinct_batch(np.random.default_rng(14), 100)
    with pytest.raises(OverflowError, match="48 flows fill the largest table"):
        task.update(b)
    snap = task.snapshot()
    assert len(task) == len(snap) == 48
    assert task.packets == snap.total_packets == 48 and task.bytes == snap.total_bytes
    assert snap.total_bytes == int(b.length[:48].sum())


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith(field + ":"))


@pytest.mark.skipif(not os.access("/proc/self/clear_refs", os.W_OK), reason="needs Linux's peak-RSS reset")
def test_peak_memory_per_flow() -> None:
    """Issue 19's bound: the task's whole footprint, growth peaks included, under 120 bytes per flow.

    (The array-of-structs table it replaced peaked at 180-250 bytes per flow: 72-byte slots at load
    0.31-0.625, and old and new table alive together while rehashing.)
    """
    rng = np.random.default_rng(10)
    batches = [make_batch(rng, 250_000, n_addr=250_000, n_ports=60_000, v6_share=0.1) for _ in range(4)]
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")  # the peak RSS starts again from the current RSS
    base = _status_kib("VmRSS")
    task = ExactTask("t", FIVE)
    for b in batches:
        task.update(b)
    peak = (_status_kib("VmHWM") - base) * 1024 / len(task)
    assert len(task) > 900_000
    assert peak < 120, f"{peak:.0f} bytes per flow"


def test_growable_words_resize_keeps_values_and_zeroes_new_words() -> None:
    g = GrowableWords(1000)
    assert g.array.shape == (1000,) and not g.array.any() and g.nbytes == 8000
    g.array[:] = np.arange(1000, dtype=np.uint64)
    g.resize(300_000)
    assert g.array.shape == (300_000,) and g.array[:1000].tolist() == list(range(1000))
    assert not g.array[1000:].any()
    g.resize(10)
    assert g.array.tolist() == list(range(10))
    g.resize(20)
    assert g.array[:10].tolist() == list(range(10)) and not g.array[10:].any()


def test_growable_words_copies_when_a_view_is_held() -> None:
    """A view kept elsewhere must stay valid: the resize copies instead of moving the mapping under it."""
    g = GrowableWords(5000)
    g.array[:] = 7
    held = g.array[:100]
    g.resize(1_000_000)
    assert (held == 7).all() and (g.array[:5000] == 7).all() and not g.array[5000:].any()
    held[:] = 1  # still writable memory, but no longer the array's
    assert (g.array[:100] == 7).all()


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs Linux /proc")
def test_growable_words_capacity_costs_no_resident_memory() -> None:
    base = _status_kib("VmRSS")
    g = GrowableWords(1 << 27)  # 1 GiB of address space
    g.resize(1 << 28)
    assert _status_kib("VmRSS") - base < 64 * 1024
    g.array[: 1 << 20] = 1  # 8 MiB written
    assert _status_kib("VmRSS") - base < 72 * 1024


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
    # the rows a report prints, built without Arrow, are Arrow's rows (times as integer ns)
    times = table.set_column(6, "StartTime", table.column(6).cast(pa.int64()))
    times = times.set_column(7, "EndTime", table.column(7).cast(pa.int64()))
    assert snap.to_rows() == times.to_pylist()


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


def _same_snapshot(a: FlowSnapshot, b: FlowSnapshot) -> bool:
    return (
        len(a) == len(b)
        and all(np.array_equal(getattr(a, c), getattr(b, c)) for c in FlowSnapshot.ARRAYS)
        and a.extra.keys() == b.extra.keys()
        and all(np.array_equal(a.extra[k], b.extra[k]) for k in a.extra)
    )


@pytest.mark.parametrize("by", ["bytes", "packets"])
@pytest.mark.parametrize("v6_share", [0.0, 0.4, 1.0])
@pytest.mark.parametrize(
    "key_fields", [*TASKS, [*FIVE, "VlanID"]], ids=["-".join(t) for t in [*TASKS, [*FIVE, "VlanID"]]]
)
def test_summary_answers_what_the_snapshot_answers(key_fields: list[str], v6_share: float, by: str) -> None:
    """``summary(n, by)``: the flow count, the totals and ``top(k, by)`` for every k <= n equal the full
    snapshot's, row for row (compact and wide rows, ties at the n-th value, extra key words)."""
    rng = np.random.default_rng(7)
    task = ExactTask("t", key_fields)
    for _ in range(3):
        b = make_batch(rng, 4000, n_addr=40, n_ports=6, v6_share=v6_share)
        sizes = np.array([100, 100, 100, 1500], np.uint32)[rng.integers(0, 4, 4000)]  # many ties
        b = PacketBatch(b.ts_ns, b.src_ip, b.dst_ip, b.src_port, b.dst_port, b.protocol, sizes)
        task.update(b.with_columns(vlan_id=(b.src_port % 3).astype(np.uint16)))
    snap = task.snapshot()
    assert len(snap) >= (4 if key_fields == ["Protocol"] else 50)
    for n in (0, 1, 3, 10, 49, len(snap) - 1, len(snap), len(snap) + 5):
        s = task.summary(n, by=by)
        assert (len(s), s.total_packets, s.total_bytes) == (len(snap), snap.total_packets, snap.total_bytes)
        assert (s.task_name, s.key_fields) == (snap.task_name, snap.key_fields)
        assert len(s.leaders) >= min(n, len(snap))
        for k in {0, 1, n // 2, n}:
            if k <= n:
                assert _same_snapshot(s.top(k, by=by), snap.top(k, by=by)), (n, k)
    with pytest.raises(ValueError, match="top 3 flows"):
        task.summary(3, by=by).top(4, by=by)
    with pytest.raises(ValueError):
        task.summary(3, by="flows")  # type: ignore[arg-type]
    empty = ExactTask("e", key_fields).summary(10)
    assert (len(empty), empty.total_packets, empty.total_bytes, len(empty.top(10))) == (0, 0, 0, 0)


def test_summary_totals_are_the_flows_sums_when_a_counter_saturates() -> None:
    """Weighted rows whose counts pass 2**64 - 1: a flow's counters saturate, the task's totals do not;
    the summary's totals are the snapshot's (the flows' sums), as for any other task."""
    rng = np.random.default_rng(3)
    b = make_batch(rng, 4, n_addr=2, n_ports=1, v6_share=0.0)
    big = np.full(4, 1 << 63, np.uint64)
    task = ExactTask("t", FIVE)
    task.update(b.with_columns(packets=big, octets=big))
    snap = task.snapshot()
    assert task.packets > (1 << 64) - 1 and snap.total_packets < task.packets
    s = task.summary(2)
    assert (len(s), s.total_packets, s.total_bytes) == (len(snap), snap.total_packets, snap.total_bytes)
    assert _same_snapshot(s.top(2), snap.top(2))
