"""Rollup tasks keyed on codes (netspectra.rollup.codes): the flow-tuple dictionary and the address sides'
codes hand out exactly what tasks keyed on the columns hand out (rows, identities, epochs, open entries,
summary and its per-dimension tallies), for every subset of a side's columns, IPv4 and IPv6 addresses,
networks with identical attributes, unknown values, flow exports, and a database reloaded mid-stream; and
their kernels agree with their plain-Python references."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from mmdb_writing import write_mmdb
from tests.unit.test_rollup_task import T0, _play, make_batch

from netspectra.batch import PacketBatch
from netspectra.config.enrichment import EnrichmentConfig
from netspectra.enrich.columns import SIDE_CODES, SIDE_COLUMNS
from netspectra.enrich.enricher import Enricher
from netspectra.enrich.networks import compile_networks, compiled_networks, network_classes
from netspectra.rollup import kernels as kern
from netspectra.rollup.codes import SideKey, TupleDictionary
from netspectra.rollup.dims import BY_NAME
from netspectra.rollup.task import RollupParams, RollupTask

#: Networks: nested (inheritance), IPv4 and IPv6, several with identical attributes (one class), some
#: with an AS or country override only (the class of their parent's attributes), one without attributes.
NETWORKS = {
    "10.0.0.0/8": {"name": "lan", "role": "internal", "site": "par"},
    "10.1.0.0/16": {"site": "lyo"},  # inherits name and role
    "10.2.0.0/16": {"asn": 64512},  # the parent's attributes, an AS of its own
    "10.3.0.0/16": {"name": "lan", "role": "internal", "site": "par"},  # the same as 10/8
    "192.168.0.0/16": {"name": "home", "tenant": "me", "country": "FR"},
    "172.16.0.0/12": {"region": "eu"},
    "2001:db8::/32": {"name": "doc", "role": "lab"},
    "2001:db8:1::/48": {"name": "doc", "role": "lab", "country": "DE"},  # class of its parent
    "fc00::/7": {"name": "ula", "role": "internal", "region": "eu", "tenant": "me"},
}
ADDRESSES = [
    "10.0.0.1", "10.1.2.3", "10.2.0.9", "10.3.3.3", "192.168.1.1", "172.16.5.5", "1.1.1.1", "8.8.8.8",
    "9.9.9.9", "2001:db8::1", "2001:db8:1::5", "fc00::1", "2a00::1", "::1",
]  # fmt: skip
SIDE = SIDE_COLUMNS["Src"] + SIDE_COLUMNS["Dst"]


def _mapped(text: str) -> bytes:
    import ipaddress

    a = ipaddress.ip_address(text)
    return (b"\0" * 10 + b"\xff\xff" + a.packed) if a.version == 4 else a.packed


def _asn_db(path: Path, base: int) -> Path:
    """An ASN database: 1/8, 8/8 and 2a00::/12 with AS numbers from ``base``, 10/8 with a country too."""
    return write_mmdb(
        path,
        [
            ("1.0.0.0/8", {"autonomous_system_number": base + 1}),
            ("8.0.0.0/8", {"autonomous_system_number": base + 8}),
            ("10.0.0.0/8", {"autonomous_system_number": base + 10}),
            ("2a00::/12", {"autonomous_system_number": base + 100}),
        ],
    )


def _enricher(tmp_path: Path) -> tuple[Enricher, Path]:
    db = _asn_db(tmp_path / "asn.mmdb", 100)
    cfg = EnrichmentConfig.model_validate(
        {"geoip": {"asn_database": str(db), "cache_dir": str(tmp_path / "cache")}, "networks": NETWORKS}
    )
    return Enricher(cfg, background=False), db


def _batches(
    enricher: Enricher, seed: int, export: bool, reload_at: int | None = None, db: Path | None = None
):
    """Steps of batches over three minutes and more, enriched with every side column *and* both codes
    (the column-keyed and the code-keyed tasks read the same batch); the database rewritten and reloaded
    before batch ``reload_at``."""
    rng = np.random.default_rng(seed)
    pool = np.frombuffer(b"".join(_mapped(a) for a in ADDRESSES), np.uint8).reshape(-1, 16)
    steps: list[tuple[str, PacketBatch | None]] = []
    for k in range(10):
        if k == reload_at:
            assert db is not None
            _asn_db(db, 1000)
            assert enricher.reload(wait=True)
        b = make_batch(rng, 300, T0 + k * 20 * 10**9, 20 * 10**9, export)
        b.src_ip[:] = pool[rng.integers(0, len(pool), 300)]
        b.dst_ip[:] = pool[rng.integers(0, len(pool), 300)]
        out = enricher.enrich(
            b.src_ip, b.dst_ip, exporter=b.exporter, in_if=b.in_if, out_if=b.out_if, codes=("Src", "Dst")
        )
        steps.append(("batch", b.with_dims(dict(out.columns), dict(out.dictionaries))))
        if k % 3 == 2:
            steps.append(("drain" if k % 2 else "peek", None))
    steps += [("finish", None), ("drain", None)]
    return steps


@pytest.mark.parametrize(
    "dims",
    [
        ("Protocol", "Exporter", "InIf", "OutIf", *SIDE),  # the auto task of both sides
        ("SrcAS",),
        ("SrcCountry",),
        ("DstNetRole",),  # classes that differ only in other attributes are one
        ("Protocol", "SrcNetName", "DstCountry", "DstNetSite"),
        ("InIf", "SrcAS", "SrcNetTenant", "DstAS"),
        (
            "SrcNetRegion",
            "Exporter",
            "DstNetName",
            "DstNetRole",
            "DstNetSite",
            "DstNetRegion",
            "DstNetTenant",
        ),
    ],
)
@pytest.mark.parametrize("export", [False, True])
def test_coded_keys_hand_out_the_rows_of_column_keys(
    tmp_path: Path, dims: tuple[str, ...], export: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    enricher, db = _enricher(tmp_path)
    classes = enricher._networks.class_attr
    steps = _batches(enricher, 3, export, reload_at=5, db=db)
    params = {"close_after_ns": 30 * 10**9, "max_entries": 64}
    coded, _ = _play(steps, dims, net_classes=classes, **params)
    task = RollupTask("t", RollupParams(dims), net_classes=classes)
    assert task._sides  # keyed on the side codes
    plain, _ = _play(steps, dims, **params)  # keyed on the side columns (and the flow-tuple code)
    monkeypatch.setattr(RollupTask, "compact_key", False)
    assert not RollupTask("t", RollupParams(dims), net_classes=classes)._sides
    full, _ = _play(steps, dims, **params)  # keyed on every column's words
    assert coded == plain == full
    rows = [r for s in coded if isinstance(s, list) for r in s]
    assert len(rows) > 10
    if "SrcAS" in dims:  # the reload changed the answers mid-stream: both versions were counted
        j = sum(BY_NAME[d].words for d in dims[: dims.index("SrcAS")])  # its row word
        assert {101, 1001} <= {r[3][j] for r in rows}


def test_the_auto_task_is_one_cache_line(tmp_path: Path) -> None:
    enricher, _ = _enricher(tmp_path)
    dims = ("Protocol", "Exporter", "InIf", "OutIf", *SIDE)
    task = RollupTask("t", RollupParams(dims), net_classes=enricher._networks.class_attr)
    assert task.words == 5 and task.tables[0].rw == 8  # 64 bytes a record
    # without the classes: the flow tuple coded, the AS numbers and 12 codes of 16 bits packed
    assert RollupTask("t", RollupParams(dims)).words == 1 + 2 + 6


def test_a_batch_without_codes_is_unknown_and_codes_of_another_map_are_refused(tmp_path: Path) -> None:
    enricher, _ = _enricher(tmp_path)
    classes = enricher._networks.class_attr
    rng = np.random.default_rng(1)
    task = RollupTask("t", RollupParams(("SrcAS", "SrcNetName")), net_classes=classes)
    task.update(make_batch(rng, 50, T0, 10**9).with_dims(None))  # not enriched: every value unknown
    rows = task.peek()
    assert len(rows) == 3 and not rows.words.any()
    b = make_batch(rng, 50, T0, 10**9)
    bad = np.full(50, classes.shape[1], np.uint64)  # a class the configuration does not have
    with pytest.raises(ValueError, match="another networks map"):
        task.update(b.with_dims({"SrcCode": bad, "DstCode": np.zeros(50, np.uint64)}))
    assert task.summary.packets == 50  # the refused batch counted nothing
    # a side's columns without its code (a stage built without codes): refused, not counted as unknown
    with pytest.raises(ValueError, match="carries SrcAS but not SrcCode"):
        task.update(b.with_dims({"SrcAS": np.full(50, 64500, np.uint32)}))
    assert task.summary.packets == 50


def test_network_classes_are_the_distinct_attribute_combinations() -> None:
    nets = compile_networks(EnrichmentConfig.model_validate({"networks": NETWORKS}).networks)
    assert nets.net_class[0] == 0 and not nets.class_attr[:, 0].any()  # no network: class 0, unknown
    for nid in range(nets.net_attr.shape[1]):  # a network's class holds its attributes
        assert nets.class_attr[:, nets.net_class[nid]].tolist() == nets.net_attr[:, nid].tolist()
    distinct = {tuple(c) for c in nets.net_attr.T.tolist()}
    assert nets.class_attr.shape[1] == len(distinct) < nets.net_attr.shape[1]  # identical ones share
    again, table = network_classes(nets.net_attr)
    assert np.array_equal(again, nets.net_class) and np.array_equal(table, nets.class_attr)
    cfg = EnrichmentConfig.model_validate({"networks": NETWORKS}).networks
    assert compiled_networks(cfg) is compiled_networks(dict(cfg))  # one compilation per content


def test_side_key_projects_classes_onto_the_named_attributes() -> None:
    class_attr = np.array([[0, 1, 1, 2], [0, 5, 6, 5], [0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]], np.uint16)
    full = SideKey.of("Src", SIDE_COLUMNS["Src"], class_attr)
    assert full.proj.shape == (0,) and full.hi and full.lo and full.keep_cc
    names = SideKey.of("Src", ("SrcNetName",), class_attr)
    assert names.proj.tolist() == [0, 1, 1, 2] and not names.hi and not names.keep_cc
    assert names.class_attr[0].tolist() == [0, 1, 2] and not names.class_attr[1].any()
    roles = SideKey.of("Dst", ("DstAS", "DstNetRole"), class_attr)
    assert roles.proj.tolist() == [0, 1, 2, 1] and roles.class_attr[1].tolist() == [0, 5, 6]
    asn = SideKey.of("Src", ("SrcAS",), class_attr)
    assert asn.hi and not asn.lo


def test_intern_tuples_matches_its_reference() -> None:
    rng = np.random.default_rng(4)
    d = TupleDictionary(cap=4)  # grows several times
    seen: dict[tuple[int, ...], int] = {}
    for k in range(6):
        n = 500
        proto = rng.choice(np.array([1, 6, 17, 255], np.uint8), n)
        export = k % 2 == 1
        ex = np.zeros((n, 16), np.uint8)
        ex[:, 15] = rng.integers(0, 3, n)
        exw = ex.view(np.uint32) if export else np.empty((0, 4), np.uint32)
        in_if = rng.integers(0, 4, n).astype(np.uint32) if export else np.empty(0, np.uint32)
        out_if = (
            rng.integers(0, 2**32, n, dtype=np.uint64).astype(np.uint32) if k == 5 else np.empty(0, np.uint32)
        )
        out = np.empty((n, 3), np.uint32)
        d.code(proto, exw, in_if, out_if, out, 1)
        assert out[:, 1].tolist() == kern.intern_tuples_ref(seen, proto, exw, in_if, out_if, n)
    assert len(d) == len(seen) > 100
    assert [tuple(t) for t in d.tuples[: len(d)].tolist()] == list(seen)  # code -> its words


@pytest.mark.parametrize("case", ["full", "projected", "hi only", "lo only"])
def test_side_words_matches_its_reference(case: str) -> None:
    rng = np.random.default_rng(5)
    n, k = 2000, 40
    code = (
        (rng.integers(0, 2**32, n, dtype=np.uint64) << np.uint64(32))
        | (rng.integers(0, 1024, n, dtype=np.uint64) << np.uint64(22))
        | rng.integers(0, k, n, dtype=np.uint64)
    )
    proj = rng.integers(0, 7, k).astype(np.uint32) if case == "projected" else np.empty(0, np.uint32)
    keep_cc = case != "projected"
    hi, lo = {"hi only": (0, -1), "lo only": (-1, 1)}.get(case, (0, 1))
    out = np.full((n, 2), 7, np.uint32)
    assert kern.first_foreign_class(code, k) == n
    kern.side_words(code, proj, keep_cc, k, out, hi, lo)
    rhi, rlo = kern.side_words_ref(code, proj, keep_cc)
    if hi >= 0:
        assert out[:, hi].tolist() == rhi
    if lo >= 0:
        assert out[:, lo].tolist() == rlo
    # a class out of range: its row is named
    code[n // 2] |= np.uint64((1 << 21) - 1)
    code[n - 1] |= np.uint64((1 << 21) - 1)
    assert kern.first_foreign_class(code, k) == n // 2
    assert kern.first_foreign_class(code, k) == int(np.argmax((code & np.uint64((1 << 21) - 1)) >= k))


def test_decode_words_matches_its_reference() -> None:
    """decode_words, and decode_word: one of its columns at a time."""
    rng = np.random.default_rng(6)
    keys = rng.integers(0, 2**32, (300, 3), dtype=np.uint64).astype(np.uint32)
    keys[:, 2] &= 0x3F  # a code into the tables
    luts = rng.integers(0, 2**32, (2, 64), dtype=np.uint64).astype(np.uint32)
    args = (
        np.array([0, 1, 1, 2, 2], np.int64),
        np.array([0, 0, 16, 0, 0], np.uint32),
        np.array([0xFFFFFFFF, 0xFFFF, 0xFFFF, 0x3F, 0x3F], np.uint32),
        np.array([-1, -1, -1, 0, 1], np.int64),
    )
    out = np.empty((300, 5), np.uint32)
    kern.decode_words(keys, *args, luts, out)
    assert out.tolist() == kern.decode_words_ref(keys, *args, luts)
    for r in range(5):
        column = np.empty(300, np.uint32)
        t = int(args[3][r])
        lut = luts[t] if t >= 0 else np.zeros(0, np.uint32)
        kern.decode_word(keys, args[0][r], args[1][r], args[2][r], lut, column)
        assert column.tolist() == out[:, r].tolist()


def test_the_enricher_hands_over_side_codes_only_when_asked(tmp_path: Path) -> None:
    enricher, _ = _enricher(tmp_path)
    addrs = np.frombuffer(b"".join(_mapped(a) for a in ADDRESSES), np.uint8).reshape(-1, 16)
    both = enricher.enrich(addrs, addrs[::-1].copy(), codes=("Src",))
    assert SIDE_CODES["Src"] in both.columns and SIDE_CODES["Dst"] not in both.columns
    code = both.columns["SrcCode"]
    assert (code >> np.uint64(32)).tolist() == both.columns["SrcAS"].tolist()
    assert ((code >> np.uint64(22)) & np.uint64(0x3FF)).tolist() == both.columns["SrcCountry"].tolist()
    classes = enricher._networks.class_attr[:, (code & np.uint64((1 << 21) - 1)).astype(np.intp)]
    for j, a in enumerate(("Name", "Role", "Site", "Region", "Tenant")):
        assert classes[j].tolist() == both.columns[f"SrcNet{a}"].tolist()
    only = enricher.enrich(addrs, addrs, columns=(), codes=("Src", "Dst"))
    assert set(only.columns) == {"SrcCode", "DstCode"} and np.array_equal(only.columns["SrcCode"], code)
    assert {"SrcNetName", "DstCountry"} <= set(only.dictionaries)  # what the codes decode to
    with pytest.raises(ValueError, match="not sides"):
        enricher.enrich(addrs, addrs, codes=("Left",))


def test_pending_slots_lists_the_pending_entries_after_growths() -> None:
    """A task whose finest table grows while increments are pending: they stay pending (listed again from
    the PENDING bits, kernels.pending_slots, which the numpy reference agrees with) and are carried once."""
    from netspectra.rollup.layout import PENDING

    rng = np.random.default_rng(8)
    task = RollupTask("t", RollupParams(("Protocol", "InIf")), capacity=16)
    first = make_batch(rng, 10, T0 + 10**9, 1, export=True)
    first.flow_start_ns[:] = first.ts_ns
    task.update(first)  # the watermark: a later batch of that minute closes nothing, carries nothing
    b = make_batch(rng, 4000, T0, 10**9, export=True)
    b.in_if[:] = rng.integers(0, 3000, 4000)
    b.flow_start_ns[:] = b.ts_ns  # one bucket a row
    task.update(b)  # grows from 16 slots to 8,192 with its increments pending (one minute: deferred)
    fine = task.tables[0]
    assert fine.cap >= 4096 and fine.count >= int(fine.meta[kern.M_TOUCHED]) > 2000
    got = np.empty(fine.cap, np.int64)
    n = kern.pending_slots(fine.rec32, fine.rw, got)
    assert got[:n].tolist() == np.flatnonzero(fine.state & PENDING).tolist()
    assert sorted(fine.touched[:n].tolist()) == got[:n].tolist()
    total = int(b.packets.sum()) + int(first.packets.sum())
    assert task.summary.packets == total
    marg = task.summary.marginals["InIf"]
    assert sum(p for p, _ in marg.values()) == total  # each increment tallied once


def test_pack_key_matches_its_reference() -> None:
    """pack_key: offsets packed modulo 2**64 (uint32 and uint64 values, the offset of a value below
    ``lo`` wrapping as the bucket offsets' arithmetic does)."""
    rng = np.random.default_rng(7)
    for values, lo, shift in [
        (rng.integers(5, 2**32, 100, dtype=np.uint64).astype(np.uint32), 5, 3),
        (np.array([0, 1, 2**63, 2**64 - 1], np.uint64), 2**64 - 1, 0),
        (np.array([7, 9], np.uint64), 7, 62),
    ]:
        key = np.full(len(values), 1, np.uint64)
        kern.pack_key(values, np.uint64(lo), np.uint64(shift), key)
        ref = [1 | (((int(v) - lo) % 2**64) << shift) % 2**64 for v in values.tolist()]
        assert key.tolist() == ref


@pytest.mark.parametrize("export", [False, True])
def test_combine_of_coded_rows_is_the_combine_of_their_words(tmp_path: Path, export: bool) -> None:
    """RollupRows.combine of a coded task's increments (key words and the task's tables as they were when
    each was handed out: the flow tuples' table grows between them) gives the rows, order included, of
    the combine of their decoded words, without decoding them all (its rows keep the key words); a
    part whose tables disagree with the others' (another task's) is read with its own."""
    from dataclasses import replace

    from netspectra.rollup.task import CodedWords, RollupRows

    enricher, db = _enricher(tmp_path)
    steps = _batches(enricher, 5, export, reload_at=5, db=db)
    dims = ("Protocol", "Exporter", "InIf", "OutIf", *SIDE)
    params = RollupParams(dims, close_after_ns=30 * 10**9, max_entries=64)  # early closes: sums
    task = RollupTask("t", params, capacity=16, net_classes=enricher._networks.class_attr)
    parts = []
    for what, b in steps:
        if what == "batch":
            task.update(b)  # type: ignore[arg-type]
        elif what == "finish":
            task.finish()
        elif what == "drain":
            parts.append((0, task.drain()))
    assert all(isinstance(p._words, CodedWords) for _, p in parts)
    # the last part's tables wider, with entries no key of the others uses (codes added since)
    s, p = parts[-1]
    wider = np.pad(p._words.luts, ((0, 0), (0, 3)), constant_values=9)
    parts[-1] = (s, replace(p, _words=CodedWords(p._words.keys, p._words.args, wider)))
    assert all(parts[-1][1]._words.reads(q._words) for _, q in parts)
    decoded = [(s, replace(p, _words=p._words.all())) for s, p in parts]
    got, want = RollupRows.combine(parts), RollupRows.combine(decoded)
    assert got is not None and want is not None and len(got) > 20
    assert isinstance(got._words, CodedWords)
    assert not isinstance(want._words, CodedWords)
    for name in ("resolution", "bucket", "epoch", "packets", "bytes"):
        assert np.array_equal(getattr(got, name), getattr(want, name)), name
    assert np.array_equal(got.words, want.words)
    assert sum(len(p) for _, p in parts) > len(got)  # rows of one group were summed
    # a part whose tables say otherwise: read with its own tables, not the others'
    first = next(i for i, (_, p) in enumerate(parts) if len(p))
    s, p = parts[first]
    luts = p._words.luts.copy()
    luts[luts != 0] += 1
    other = replace(p, _words=CodedWords(p._words.keys, p._words.args, luts))
    mixed = [*parts[:first], (s, other), *parts[first + 1 :]]
    assert not parts[-1][1]._words.reads(other._words)
    want = RollupRows.combine([(s, replace(p, _words=p._words.all())) for s, p in mixed])
    got = RollupRows.combine(mixed)
    assert got is not None and want is not None
    assert not isinstance(got._words, CodedWords)
    assert np.array_equal(got.words, want.words) and np.array_equal(got.packets, want.packets)
