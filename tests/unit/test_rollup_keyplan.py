"""The rollup tables keyed on packed words (netspectra.rollup.keyplan) hand out what tables keyed on the
rows' words hand out: every snapshot's rows (identities, epochs, values), the open entries and the summary,
through colliding and unknown values, missing columns, several minutes, early closes, ends and periods."""

from __future__ import annotations

import numpy as np
import pytest
from tests.unit.test_rollup_task import MIN, T0, _play, make_batch

from netspectra.batch import PacketBatch
from netspectra.rollup import kernels as kern
from netspectra.rollup.dims import BY_NAME
from netspectra.rollup.keyplan import Field, KeyPlan
from netspectra.rollup.task import RollupParams, RollupTask

#: Every width a dimension has: 8 (Protocol, InIfBoundary), 16 (codes), 32 (AS, interfaces), 128.
WIDE = (
    "Protocol", "Exporter", "InIf", "OutIf", "SrcAS", "DstAS", "SrcCountry", "DstCountry",
    "SrcNetName", "DstNetName", "SrcNetRole", "DstNetRole", "SrcNetSite", "DstNetSite", "SrcNetRegion",
    "DstNetRegion", "SrcNetTenant", "DstNetTenant", "InIfBoundary", "OutIfConnectivity",
)  # fmt: skip
_CODES = [c for c in WIDE if BY_NAME[c].bits <= 16 and c != "Protocol"]


def test_key_plan_packs_narrow_values_first_fit() -> None:
    plan = KeyPlan.of([8, 128, 16, 32, 16, 16, 8])
    assert plan.row_words == 1 + 4 + 1 + 1 + 1 + 1 + 1 and plan.key_words == 4 + 1 + 1 + 1
    assert plan.fields == (
        Field(0, 0, 0, 8),  # a shared word: 8 + 16 bits, then 8 more
        Field(1, 1, 0, 128),
        Field(5, 0, 8, 16),
        Field(6, 5, 0, 32),
        Field(7, 6, 0, 16),
        Field(8, 6, 16, 16),
        Field(9, 0, 24, 8),
    )
    assert not plan.identity
    flat = KeyPlan.of([8, 128, 16, 32], pack=False)
    assert flat.identity and flat.key_words == flat.row_words == 7
    assert all(not f.packed for f in flat.fields)
    auto = KeyPlan.of([BY_NAME[d].bits for d in WIDE[:18]])  # the benchmark's 18 auto dimensions
    assert (auto.row_words, auto.key_words) == (21, 15)
    for bad in (0, 12, 48):
        with pytest.raises(ValueError, match="bits"):
            KeyPlan.of([bad])


def test_unpacking_packed_words_matches_the_reference() -> None:
    rng = np.random.default_rng(2)
    task = RollupTask("t", RollupParams(WIDE))
    flat = task.plan.key_words  # the packed words; then the flow-tuple code
    keys = rng.integers(0, 2**32, (300, flat), dtype=np.uint64).astype(np.uint32)
    plan_only = RollupTask("p", RollupParams(tuple(d.name for d in task._rest)))
    assert plan_only.plan == task.plan and plan_only._identity is False
    got = plan_only.unpack(keys)
    assert (plan_only._decode_args[3] < 0).all()  # no tables: shifts and masks only
    assert got.tolist() == kern.decode_words_ref(keys, *plan_only._decode_args, np.zeros((0, 1), np.uint32))
    # a row's words made from its values come back as those values
    b = _batch(rng, 500, T0, MIN, export=True)
    words = task.dimension_words(b)
    RollupTask.compact_key = False
    try:
        flat = RollupTask("f", RollupParams(WIDE)).dimension_words(b)
    finally:
        RollupTask.compact_key = True
    assert np.array_equal(words, flat)


def _batch(rng: np.random.Generator, n: int, t0: int, span: int, export: bool = False) -> PacketBatch:
    """Rows whose codes collide often (few values, many unknown), AS numbers of all widths; some
    columns left out at random (unknown)."""
    b = make_batch(rng, n, t0, span, export)
    dims: dict[str, np.ndarray] = {}
    for name in _CODES:
        if rng.random() < 0.15:
            continue  # the column is missing: 0 for every row
        dtype = np.uint8 if BY_NAME[name].bits == 8 else np.uint16
        top = 2**16 - 1 if name.endswith("Country") else 3
        codes = rng.integers(0, 4, n)
        dims[name] = np.where(codes == 3, top, codes).astype(dtype)  # the widest code a field holds
    for name in ("SrcAS", "DstAS"):
        dims[name] = rng.choice(np.array([0, 15169, 2**32 - 1], np.uint32), n)
    return b.with_dims(dims)


def _steps(seed: int, export: bool) -> list[tuple[str, PacketBatch | None]]:
    rng = np.random.default_rng(seed)
    steps: list[tuple[str, PacketBatch | None]] = []
    for k in range(10):  # 20 s each, over three minutes and more (rows of a flow export span some)
        steps.append(("batch", _batch(rng, 300, T0 + k * 20 * 10**9, 20 * 10**9, export)))
        if k % 3 == 2:
            steps.append(("drain" if k % 2 else "peek", None))
    steps += [("finish", None), ("drain", None), ("batch", _batch(rng, 200, T0 + 10**9, 10**9, export))]
    steps += [("drain", None), ("period", None), ("batch", _batch(rng, 300, T0 + 5 * MIN, MIN, export))]
    steps += [("batch", _batch(rng, 300, T0 + 4 * MIN, 10**9, export)), ("finish", None), ("drain", None)]
    return steps


@pytest.mark.parametrize(
    ("export", "lazy", "params"),
    [
        (False, True, {"close_after_ns": 30 * 10**9}),
        (True, True, {"close_after_ns": 0}),
        (False, False, {"close_after_ns": 30 * 10**9, "max_entries": 40}),  # early closes
        (True, True, {"close_after_ns": 2 * MIN, "max_entries": 64}),
    ],
)
def test_packed_keys_hand_out_the_rows_of_full_keys(
    export: bool, lazy: bool, params: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(RollupTask, "lazy_coarse", lazy)
    steps = _steps(5, export)
    task = RollupTask("t", RollupParams(WIDE))
    assert task.words < task.row_words  # packed
    packed, _ = _play(steps, WIDE, **params)
    monkeypatch.setattr(RollupTask, "compact_key", False)
    assert RollupTask("t", RollupParams(WIDE)).words == task.row_words
    full, _ = _play(steps, WIDE, **params)
    assert packed == full
    snaps = [s for s in packed if isinstance(s, list)]
    rows = [r for s in snaps for r in s]
    assert len(rows) > 1000 and len({r[2] for r in rows}) >= 2  # rows, and epochs that moved
    words = np.array([r[3] for r in rows])
    at = {d: sum(BY_NAME[x].words for x in WIDE[: WIDE.index(d)]) for d in WIDE}
    assert (words[:, at["SrcCountry"]] == 2**16 - 1).any() and (words[:, at["SrcNetName"]] == 0).any()
    assert packed[-1][-1]["SrcNetRole"] == full[-1][-1]["SrcNetRole"]  # the summary's totals per value


def test_a_value_wider_than_its_dimension_is_refused_before_counting() -> None:
    rng = np.random.default_rng(1)
    task = RollupTask("t", RollupParams(("Protocol", "SrcNetName", "SrcNetRole")))
    good = make_batch(rng, 50, T0, 10**9).with_dims({"SrcNetName": np.arange(50, dtype=np.int64)})
    task.update(good)  # a wider column type whose values fit: accepted
    bad = make_batch(rng, 50, T0, 10**9).with_dims({"SrcNetRole": np.full(50, 70_000, np.uint32)})
    with pytest.raises(ValueError, match=r"SrcNetRole: value 70000 does not fit its 16-bit"):
        task.update(bad)
    negative = make_batch(rng, 50, T0, 10**9).with_dims({"SrcNetName": np.full(50, -1, np.int32)})
    with pytest.raises(ValueError, match="value -1"):
        task.update(negative)
    assert task.summary.packets == 50  # the refused batches counted nothing


def test_a_direct_tally_holds_the_sums_of_a_hashed_one() -> None:
    """``Marginal(direct=True)`` (kernels.add_direct, values as slots, grown to the largest seen) against
    the open-addressing tally: the same values, sums (saturating) and top values, ties included."""
    from netspectra.rollup.task import Marginal
    from netspectra.weights import COUNT_MAX

    rng = np.random.default_rng(9)
    direct, hashed = Marginal(1, cap=16, direct=True), Marginal(1, cap=16)
    for top in (5, 300, 70_000 - 4_465):  # growing twice
        values = rng.integers(0, top, (1000, 1)).astype(np.uint32)
        pk = rng.integers(1, 5, 1000).astype(np.uint64)
        by = np.where(rng.random(1000) < 0.01, COUNT_MAX, pk * 100).astype(np.uint64)
        direct.add(values, pk, by)
        hashed.add(values, pk, by)
    assert len(direct) == len(hashed) > 300
    assert direct.as_dict() == hashed.as_dict()
    assert direct.top(7) == hashed.top(7) and direct.top(10_000) == hashed.top(10_000)
    with pytest.raises(ValueError, match="one-word"):
        Marginal(2, direct=True)
