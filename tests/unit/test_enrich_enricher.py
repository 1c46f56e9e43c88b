"""The enrichment stage: networks (longest prefix, inherited attributes, overrides), classifiers per
(exporter, interface) pair with their cache, dictionaries, and database reloads between batches."""

from __future__ import annotations

import ipaddress
import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from mmdb_writing import write_mmdb

from netspectra.config.enrichment import EnrichmentConfig
from netspectra.enrich.codes import BOUNDARIES, COUNTRY_CODES
from netspectra.enrich.columns import BY_NAME, COLUMNS
from netspectra.enrich.enricher import Enricher


def a16(*texts: str) -> np.ndarray:
    out = []
    for t in texts:
        a = ipaddress.ip_address(t)
        v = ((0xFFFF << 32) | int(a)) if a.version == 4 else int(a)
        out.append(np.frombuffer(v.to_bytes(16, "big"), np.uint8))
    return np.stack(out)


def build(**cfg: object) -> Enricher:
    return Enricher.from_config(EnrichmentConfig.model_validate(cfg), background=False)


def texts(e: Enricher, *addrs: str) -> dict[str, list]:
    a = a16(*addrs)
    out = e.enrich(a, a)
    return {k: list(out.text(k)) for k in out.columns if k.startswith("Src")}


NETWORKS = {
    "10.0.0.0/8": {"name": "corp", "role": "internal", "site": "hq", "tenant": "acme"},
    "10.1.0.0/16": {"name": "lab", "site": "par1"},  # role and tenant inherited
    "10.1.2.0/24": {"role": "servers"},  # name (lab) and site (par1) inherited
    "10.1.2.128/25": "dmz",  # a bare string is the name
    "192.0.2.0/24": {"name": "customers", "asn": 64512, "country": "fr"},
    "::/0": {"region": "earth"},  # holds ::ffff:0:0/96: every IPv4 address too
    "2001:db8::/32": {"name": "doc6", "region": "eu"},
    "2001:db8:1::/48": {"role": "servers"},
    "::ffff:198.51.100.0/120": {"name": "mapped-spelling"},
}


def test_networks_longest_prefix_and_inheritance() -> None:
    e = build(networks=NETWORKS)
    got = texts(
        e,
        "10.9.9.9",
        "10.1.9.9",
        "10.1.2.3",
        "10.1.2.200",
        "11.0.0.1",
        "2001:db8:1::5",
        "2001:db8:2::5",
        "2001:db9::1",
        "198.51.100.7",
        "192.0.2.1",
    )
    assert got["SrcNetName"] == [
        "corp",
        "lab",
        "lab",
        "dmz",
        "",
        "doc6",
        "doc6",
        "",
        "mapped-spelling",
        "customers",
    ]
    assert got["SrcNetRole"] == ["internal", "internal", "servers", "servers", "", "servers", "", "", "", ""]
    assert got["SrcNetSite"] == ["hq", "par1", "par1", "par1", "", "", "", "", "", ""]
    assert got["SrcNetTenant"] == ["acme"] * 4 + [""] * 6
    assert got["SrcNetRegion"] == ["earth"] * 5 + ["eu", "eu", "earth", "earth", "earth"]
    assert got["SrcAS"] == [0] * 9 + [64512]
    assert got["SrcCountry"] == [""] * 9 + ["FR"]


def test_network_overrides_win_over_databases(tmp_path: Path) -> None:
    db = write_mmdb(
        tmp_path / "db.mmdb",
        [("192.0.0.0/8", {"autonomous_system_number": 3356, "country": {"iso_code": "US"}})],
    )
    e = build(geoip={"asn_database": str(db), "country_database": str(db)}, networks=NETWORKS)
    got = texts(e, "192.0.2.1", "192.0.3.1")
    assert got["SrcAS"] == [64512, 3356]
    assert got["SrcCountry"] == ["FR", "US"]


def test_dictionaries_are_stable_and_shared_by_both_sides() -> None:
    e = build(networks=NETWORKS)
    a = a16("10.1.2.3", "2001:db8:1::1")
    out = e.enrich(a, a[::-1].copy())
    assert out.dictionaries["SrcNetName"] == out.dictionaries["DstNetName"]
    assert out.dictionaries["SrcNetName"][:4] == ("", "corp", "lab", "dmz")  # configuration order
    assert out.dictionaries["SrcCountry"] == COUNTRY_CODES
    assert out.columns["SrcNetName"].tolist() == out.columns["DstNetName"][::-1].tolist()
    again = e.enrich(a, a)
    assert again.columns["SrcNetName"].tolist() == out.columns["SrcNetName"].tolist()
    for name in ("SrcAS", "SrcCountry", "SrcNetName"):
        assert out.columns[name].dtype == np.dtype(BY_NAME[name].dtype)


def test_columns_are_pooled_blocks_never_overwritten_while_held() -> None:
    """A batch's looked-up columns are views of a pooled block (BlockPool): a block comes back only when no
    column of it is held, so a kept batch keeps its answers, and a released one's memory is reused."""
    e = build(networks=NETWORKS)
    first = a16("10.1.2.3", "192.0.2.9", "2001:db8:1::1", "8.8.8.8")
    other = a16("8.8.8.8", "10.0.0.1", "10.1.2.200", "2001:db8::5")
    kept = e.enrich(first, other)
    want = {k: v.copy() for k, v in kept.columns.items()}
    bases = {id(v.base) for v in kept.columns.values()}
    assert len(bases) == 1  # every looked-up column of both sides: one block
    for _ in range(2 * e._blocks.KEEP):  # a kept batch's block is never handed out again
        got = e.enrich(other, first)
        assert id(next(iter(got.columns.values())).base) not in bases
        assert got.columns["SrcNetName"].tolist() == want["DstNetName"].tolist()
        assert got.columns["DstAS"].tolist() == want["SrcAS"].tolist()
        del got
    for k, v in kept.columns.items():
        assert v.tolist() == want[k].tolist(), k
    one = kept.columns["SrcNetSite"]  # a single column held keeps the whole block out of the pool
    del kept
    again = e.enrich(other, first)
    assert id(again.columns["SrcAS"].base) != id(one.base)
    assert one.tolist() == want["SrcNetSite"].tolist()
    block = id(again.columns["SrcAS"].base)
    del again
    reused = e.enrich(first, other)  # nothing holds that block now: reused, and filled anew
    assert id(reused.columns["SrcAS"].base) == block
    for k, v in reused.columns.items():
        assert v.tolist() == want[k].tolist(), k
    odd = e.enrich(first[:3], other[:3])  # an odd row count: every column aligned, C-contiguous
    for k, v in odd.columns.items():
        assert v.flags.aligned and v.flags.c_contiguous, k
        assert v.tolist() == want[k][:3].tolist(), k
    del odd, reused
    block = id(e.enrich(first, other).columns["SrcAS"].base)  # freed again at once
    smaller = e.enrich(first[:2], other[:2])  # a smaller batch: the head of a free larger block
    assert id(smaller.columns["SrcAS"].base) == block
    assert smaller.columns["DstNetName"].tolist() == want["DstNetName"][:2].tolist()
    assert id(e.enrich(first, other).columns["SrcAS"].base) != block  # held by `smaller`: another one
    plain = build()  # no network attributes: a side is 3 words a row, an odd count of them here
    got = plain.enrich(first[:3], other[:3])
    assert got.columns["DstAS"].flags.aligned and got.columns["DstAS"].flags.c_contiguous
    assert got.columns["DstAS"].tolist() == plain.enrich(other[:3], first[:3]).columns["SrcAS"].tolist()


def test_columns_contract() -> None:
    names = [c.name for c in COLUMNS]
    required = ("SrcAS", "DstAS", "SrcCountry", "DstCountry", "SrcNetName", "DstNetName", "SrcNetRole")
    required += ("DstNetRole", "InIfBoundary", "OutIfBoundary", "InIfProvider", "OutIfProvider")
    assert set(required) <= set(names)
    e = build()
    n = 5
    a = a16(*["1.2.3.4"] * n)
    out = e.enrich(a, a, exporter=a, in_if=np.arange(n, dtype=np.uint32), out_if=np.zeros(n, np.uint16))
    assert set(out.columns) == set(names)
    for c in COLUMNS:
        assert out.columns[c.name].dtype == np.dtype(c.dtype), c.name
        assert out.columns[c.name].shape == (n,)
        assert (c.kind == "dict") == (c.name in out.dictionaries)


INTERFACE_RULES = [
    'ClassifyConnectivityRegex(Interface.Description, "^(?i)(transit|pni|ppni|ix):? ", "$1") && '
    'ClassifyProviderRegex(Interface.Description, "^\\\\S+?\\\\s(\\\\S+)", "$1") && ClassifyExternal()',
    "Interface.Index in [1, 2] && ClassifyExternal()",
    "ClassifyInternal()",
]
EXPORTERS = {
    "192.0.2.0/24": {"name": "th2-ncs55a1-1.example.fr"},
    "192.0.2.7": {
        "name": "milan-ncs5k8-2.example.it",
        "default": {"description": "core link"},
        "if_indexes": {
            10: {"name": "Gi0/0/10", "description": "Transit: Cogent 1-3834938493"},
            11: {"name": "Gi0/0/11", "description": "PNI: Netflix (WL6-1190)"},
        },
    },
}
EXPORTER_RULES = [
    'ClassifySiteRegex(Exporter.Name, "^([^-]+)-", "$1")',
    'Exporter.Name endsWith ".it" && ClassifyRegion("italy")',
    'Exporter.Name endsWith ".fr" && ClassifyRegion("france")',
    'Exporter.IP startsWith "192.0.2." && ClassifyRole("edge")',
]


def test_classifiers_per_exporter_and_interface() -> None:
    e = build(exporters=EXPORTERS, classifiers={"interfaces": INTERFACE_RULES, "exporters": EXPORTER_RULES})
    n = 6
    ex = a16("192.0.2.7", "192.0.2.7", "192.0.2.7", "192.0.2.1", "192.0.2.1", "203.0.113.1")
    in_if = np.array([10, 11, 99, 1, 10, 10], np.uint32)
    out_if = np.array([11, 10, 10, 3, 3, 2], np.uint32)
    a = a16(*["1.1.1.1"] * n)
    out = e.enrich(a, a, exporter=ex, in_if=in_if, out_if=out_if)
    t = {k: list(out.text(k)) for k in out.columns}
    assert t["InIfBoundary"] == ["external", "external", "internal", "external", "internal", "internal"]
    assert t["InIfConnectivity"] == ["transit", "pni", "", "", "", ""]
    assert t["InIfProvider"] == ["cogent", "netflix", "", "", "", ""]
    assert t["OutIfProvider"] == ["netflix", "cogent", "cogent", "", "", ""]
    assert t["OutIfBoundary"] == ["external", "external", "external", "internal", "internal", "external"]
    assert t["ExporterName"] == ["milan-ncs5k8-2.example.it"] * 3 + ["th2-ncs55a1-1.example.fr"] * 2 + [""]
    assert t["ExporterSite"] == ["milan"] * 3 + ["th2"] * 2 + [""]
    assert t["ExporterRegion"] == ["italy"] * 3 + ["france"] * 2 + [""]
    assert t["ExporterRole"] == ["edge"] * 5 + [""]
    assert out.dictionaries["InIfBoundary"] == BOUNDARIES


def test_classifiers_run_per_pair_not_per_row() -> None:
    e = build(exporters=EXPORTERS, classifiers={"interfaces": INTERFACE_RULES, "exporters": EXPORTER_RULES})
    rng = np.random.default_rng(1)
    n = 100_000
    ex = a16("192.0.2.7", "192.0.2.1", "198.51.100.1")[rng.integers(0, 3, n)]
    in_if = rng.integers(0, 20, n).astype(np.uint32)
    out_if = rng.integers(0, 20, n).astype(np.uint32)
    a = a16(*["1.1.1.1"] * n)
    first = e.enrich(a, a, exporter=ex, in_if=in_if, out_if=out_if)
    pairs = len(
        {(bytes(x), int(i)) for x, i in zip(ex, np.concatenate([in_if]), strict=True)}
        | {(bytes(x), int(i)) for x, i in zip(ex, out_if, strict=True)}
    )
    evaluations = e.metrics()["classifier_evaluations"]
    assert evaluations == 3 + pairs  # every exporter once, every (exporter, interface) once
    again = e.enrich(a, a, exporter=ex, in_if=in_if, out_if=out_if)
    assert e.metrics()["classifier_evaluations"] == evaluations  # all from the cache
    for k in first.columns:
        assert again.columns[k].tolist() == first.columns[k].tolist()
    # Row by row, the answer is the one of its pair's first row.
    cogent = first.dictionaries["InIfProvider"].index("cogent")
    is_cogent = (ex == a16("192.0.2.7")[0]).all(axis=1) & (in_if == 10)
    assert (first.columns["InIfProvider"][is_cogent] == cogent).all()
    assert (first.columns["InIfProvider"][~is_cogent] != cogent).all()


def test_classifier_cache_is_bounded() -> None:
    e = build(exporters=EXPORTERS, classifiers={"interfaces": INTERFACE_RULES, "cache_size": 16})
    n = 40
    ex = a16(*["192.0.2.7"] * n)
    ifx = np.arange(n, dtype=np.uint32)
    a = a16(*["1.1.1.1"] * n)
    out = e.enrich(a, a, exporter=ex, in_if=ifx)
    assert e.metrics()["classifier_cache_clears"] >= 2
    t = list(out.text("InIfBoundary"))
    assert t[10] == t[11] == t[1] == "external" and t[0] == t[12] == "internal"


def test_bad_input_arrays() -> None:
    e = build()
    a = a16("1.1.1.1", "2.2.2.2")
    with pytest.raises(ValueError, match="src_ip must be"):
        e.enrich(a.astype(np.uint16), a)
    with pytest.raises(ValueError, match="2 rows but dst_ip has 1"):
        e.enrich(a, a[:1])
    with pytest.raises(ValueError, match="need the exporter"):
        e.enrich(a, a, in_if=np.zeros(2, np.uint32))
    with pytest.raises(ValueError, match="in_if must be 2 integers"):
        e.enrich(a, a, exporter=a, in_if=np.zeros(3, np.uint32))
    empty = e.enrich(a[:0], a[:0])
    assert empty.columns["SrcAS"].shape == (0,)


# --------------------------------------------------------------------------------------------------
# Reloads
# --------------------------------------------------------------------------------------------------


def _db(path: Path, asn: int) -> None:
    tmp = path.with_suffix(f".{asn}.tmp")
    write_mmdb(
        tmp,
        [
            ("1.0.0.0/8", {"autonomous_system_number": asn}),
            ("2001:db8::/32", {"autonomous_system_number": asn}),
        ],
    )
    os.replace(tmp, path)  # atomically, as a database updater does


def test_reload_mid_stream_loses_no_batch_and_never_mixes(tmp_path: Path) -> None:
    path = tmp_path / "asn.mmdb"
    _db(path, 100)
    e = Enricher.from_config(
        EnrichmentConfig.model_validate({"geoip": {"asn_database": str(path), "check_interval": "0s"}})
    )
    rng = np.random.default_rng(2)
    pool = np.concatenate(
        [a16(*[f"1.{i}.{j}.7" for i in range(0, 250, 25) for j in range(3)]), a16("2001:db8::9")]
    )
    seen: list[tuple[int, set[int], int]] = []  # (generation, distinct answers, rows)
    stop = threading.Event()

    def stream() -> None:
        while not stop.is_set():
            idx = rng.integers(0, pool.shape[0], 2000)
            out = e.enrich(pool[idx], pool[idx[::-1]])
            seen.append(
                (
                    out.generation,
                    set(out.columns["SrcAS"].tolist()) | set(out.columns["DstAS"].tolist()),
                    2000,
                )
            )

    worker = threading.Thread(target=stream)
    worker.start()
    try:
        for version in (200, 300):
            time.sleep(0.05)
            _db(path, version)
            deadline = time.monotonic() + 30
            while not any(version in answers for _, answers, _ in seen[-3:]) and time.monotonic() < deadline:
                time.sleep(0.01)
    finally:
        stop.set()
        worker.join()
        e.close()
    for generation, answers, _ in seen:  # one table per batch: one answer, the one of its generation
        assert len(answers) == 1, (generation, answers)
    by_generation = {g: a for g, a, _ in seen}
    assert [next(iter(by_generation[g])) for g in sorted(by_generation)] == [100, 200, 300]
    m = e.metrics()
    assert m["rows"] == sum(r for *_, r in seen)  # every batch enriched and counted
    assert m["reloads"]["asn"] == 2 and m["load_errors"]["asn"] == 0


def test_rewrite_in_place_keeps_the_previous_table(tmp_path: Path) -> None:
    """A database being copied over (damaged while half-written) never gives a wrong or empty answer."""
    path = tmp_path / "asn.mmdb"
    _db(path, 100)
    e = Enricher.from_config(
        EnrichmentConfig.model_validate({"geoip": {"asn_database": str(path), "check_interval": "0s"}}),
        background=False,
    )
    v = a16("1.2.3.4", "2001:db8::1")
    new = tmp_path / "new.mmdb"
    _db(new, 200)
    data = new.read_bytes()
    with open(path, "r+b") as f:  # a half-copied file, in place
        f.truncate(0)
        f.write(data[: len(data) // 2])
    assert e.enrich(v, v).columns["SrcAS"].tolist() == [100, 100]
    assert e.metrics()["load_errors"]["asn"] == 1
    assert (e.status()["asn"]["loaded"] and "damaged" in e.status()["asn"]["error"]) or e.status()["asn"][
        "error"
    ]
    with open(path, "r+b") as f:
        f.seek(len(data) // 2)
        f.write(data[len(data) // 2 :])
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 1_000_000))  # a distinct mtime even on coarse clocks
    out = e.enrich(v, v)
    assert out.columns["SrcAS"].tolist() == [200, 200]
    assert e.metrics()["reloads"]["asn"] == 1 and e.status()["asn"]["error"] == ""


def test_check_interval_limits_the_stat_calls(tmp_path: Path) -> None:
    path = tmp_path / "asn.mmdb"
    _db(path, 100)
    now = [0.0]
    e = Enricher.from_config(
        EnrichmentConfig.model_validate({"geoip": {"asn_database": str(path), "check_interval": "30s"}}),
        background=False,
        clock=lambda: now[0],
    )
    v = a16("1.2.3.4")
    _db(path, 200)
    now[0] = 29.0
    assert e.enrich(v, v).columns["SrcAS"].tolist() == [100]  # not checked yet
    now[0] = 30.5
    assert e.enrich(v, v).columns["SrcAS"].tolist() == [200]
