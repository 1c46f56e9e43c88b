"""The cache of compiled enrichment tables: a second start reads what the first compiled (the same answers),
a changed database is compiled again, a damaged entry is recomputed, ``off`` keeps nothing."""

from __future__ import annotations

import json
import mmap
import os
import time
from pathlib import Path

import numpy as np
import pytest
from mmdb_writing import write_mmdb

from netspectra.config.enrichment import EnrichmentConfig
from netspectra.enrich import cache as cache_mod
from netspectra.enrich import networks as networks_mod
from netspectra.enrich.enricher import Enricher


def _db(path: Path, asn: int) -> Path:
    entries = [
        (f"{a}.0.0.0/8", {"autonomous_system_number": asn + a, "country": {"iso_code": "FR"}})
        for a in range(1, 60)
    ]
    entries.append(("2001:db8::/32", {"autonomous_system_number": asn, "country": {"iso_code": "DE"}}))
    tmp = path.with_suffix(".tmp")
    write_mmdb(tmp, entries)
    os.replace(tmp, path)
    return path


def _enricher(db: Path, cache_dir: str) -> Enricher:
    cfg = EnrichmentConfig.model_validate(
        {
            "geoip": {"asn_database": str(db), "country_database": str(db), "cache_dir": cache_dir},
            "networks": {"10.1.0.0/16": {"name": "lab"}},
        }
    )
    return Enricher.from_config(cfg, background=False)


def _addresses(n: int = 5000) -> np.ndarray:
    rng = np.random.default_rng(1)
    a = np.zeros((n, 16), np.uint8)
    a[:, 10:12] = 0xFF
    a[:, 12:] = rng.integers(0, 256, (n, 4))
    a[:20, 12:14] = [10, 1]  # in the networks map
    a[-10:] = 0
    a[-10:, :4] = [0x20, 0x01, 0x0D, 0xB8]
    return a


def test_a_second_start_reads_the_compiled_tables(tmp_path: Path) -> None:
    db = _db(tmp_path / "asn.mmdb", 100)
    first = _enricher(db, str(tmp_path / "cache"))
    assert (first.cache.hits, first.cache.misses) == (0, 2)  # the database walk and the table build
    second = _enricher(db, str(tmp_path / "cache"))
    assert (second.cache.hits, second.cache.misses) == (2, 0)
    a = _addresses()
    x, y = first.enrich(a, a[::-1]), second.enrich(a, a[::-1])
    for name in x.columns:
        assert np.array_equal(x.columns[name], y.columns[name]), name
    assert (x.columns["SrcAS"] > 0).sum() > 1000 and (x.columns["SrcNetName"] > 0).any()
    t1, t2 = first.table, second.table
    assert np.array_equal(t1.idx4, t2.idx4) and np.array_equal(t1.steps6.vals, t2.steps6.vals)
    assert second.status()["asn"]["loaded"] and "networks" in second.status()["asn"]["description"]
    # a copy of the same file elsewhere is the same entry (keyed by the bytes, not the name)
    copy = tmp_path / "copy.mmdb"
    copy.write_bytes(db.read_bytes())
    assert _enricher(copy, str(tmp_path / "cache")).cache.hits == 2


def test_a_changed_database_is_compiled_again(tmp_path: Path) -> None:
    db = _db(tmp_path / "asn.mmdb", 100)
    _enricher(db, str(tmp_path / "cache"))
    _db(db, 500)  # same name, new content
    e = _enricher(db, str(tmp_path / "cache"))
    assert e.cache.misses == 2
    a = _addresses(10)
    a[:] = 0
    a[:, 10:12] = 0xFF
    a[:, 12] = 7
    assert set(e.enrich(a, a).columns["SrcAS"].tolist()) == {507}


def test_a_damaged_entry_is_recomputed_and_off_keeps_nothing(tmp_path: Path) -> None:
    db = _db(tmp_path / "asn.mmdb", 100)
    cache = tmp_path / "cache"
    _enricher(db, str(cache))
    entries = sorted(cache.glob("*/arrays.bin"))
    assert len(entries) == 2
    for data in entries:  # an index that is not JSON
        (data.parent / "index.json").write_bytes(b"not an index")
    e = _enricher(db, str(cache))
    assert e.cache.misses == 2 and e.enrich(_addresses(), _addresses()).columns["SrcAS"].any()
    assert all(p.stat().st_size > 100 for p in cache.glob("*/arrays.bin"))  # replaced by good entries
    for data in cache.glob("*/arrays.bin"):  # data cut short: the index's arrays do not fit (no SIGBUS)
        with open(data, "r+b") as f:
            f.truncate(data.stat().st_size // 2)
    e = _enricher(db, str(cache))
    assert e.cache.misses == 2 and e.enrich(_addresses(), _addresses()).columns["SrcAS"].any()
    # an entry cut short (its files gone) and a file of the earlier format: recomputed, replaced
    for entry in cache.iterdir():
        for array in entry.iterdir():
            array.unlink()
    (cache / "table-0123.npz").write_bytes(b"PK")
    e = _enricher(db, str(cache))
    assert e.cache.misses == 2 and len(list(cache.glob("*/arrays.bin"))) == 2
    off = _enricher(db, "off")
    assert off.cache.directory is None and (off.cache.hits, off.cache.misses) == (0, 0)


def test_entries_are_pruned_to_the_newest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cache_mod, "KEEP", 3)
    cache = tmp_path / "cache"
    for v in range(4):
        _enricher(_db(tmp_path / "asn.mmdb", 100 + v), str(cache))
    assert len([p for p in cache.iterdir() if not p.name.startswith("digest-")]) == 3


def test_tables_are_mapped_not_copied_and_keyed_without_hashing_the_databases(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = _db(tmp_path / "asn.mmdb", 100)
    _enricher(db, str(tmp_path / "cache"))
    hashed: list[int] = []
    digest = cache_mod._digest

    def counting(*parts: object, **kw: object) -> str:
        known = kw.get("known") or (lambda a: None)
        hashed.extend(p.nbytes for p in parts if isinstance(p, np.ndarray) and known(p) is None)  # type: ignore[operator]
        return digest(*parts, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(cache_mod, "_digest", counting)
    e = _enricher(db, str(tmp_path / "cache"))
    assert (e.cache.hits, e.cache.misses) == (2, 0)
    # the table's key hashed only the networks map's arrays, not the database's (named by its key)
    database_bytes = sum(s.loaded.steps4.starts.nbytes for s in e._sources.values() if s.loaded)
    assert 0 < sum(hashed) < database_bytes
    # the arrays are views of files mapped copy-on-write: writable, as the kernels were compiled for
    t = e.table
    base = t.idx4
    while isinstance(base, np.ndarray):
        base = base.base
    base = base.obj if isinstance(base, memoryview) else base
    assert isinstance(base, mmap.mmap) and t.idx4.flags.writeable and type(t.idx4) is np.ndarray


def test_default_directory_follows_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cache_mod.cache_dir("") == tmp_path / "netspectra" / "enrich"
    assert cache_mod.cache_dir(" off ") is None
    assert cache_mod.cache_dir("~/x") == Path.home() / "x"


def test_a_database_hash_is_remembered_until_the_file_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The hash of a database file is remembered under its identity and change marks: a second start
    does not read the file to hash it; a file rewritten in place with the same size and its old
    modification time set back (its change time moved) is hashed again and compiled again; a malformed
    memo is hashed again; a file changed in the last SETTLE_S seconds is never remembered."""
    db = _db(tmp_path / "asn.mmdb", 100)
    cache = tmp_path / "cache"
    hashed: list[str] = []
    digest = cache_mod.file_digest

    def counting(path: str) -> str:
        hashed.append(path)
        return digest(path)

    monkeypatch.setattr(cache_mod, "file_digest", counting)
    _enricher(db, str(cache))
    assert len(hashed) == 1 and not list(cache.glob("digest-*"))  # just written: not remembered
    monkeypatch.setattr(cache_mod, "SETTLE_S", -1.0)
    _enricher(db, str(cache))
    assert len(hashed) == 2 and len(list(cache.glob("digest-*"))) == 1
    e = _enricher(db, str(cache))
    assert len(hashed) == 2 and (e.cache.hits, e.cache.misses) == (2, 0)  # not read again
    # rewritten in place: same inode and size, the old modification time set back
    old = db.stat()
    other = _db(tmp_path / "other.mmdb", 150).read_bytes()  # AS numbers of as many bytes
    assert len(other) == old.st_size
    time.sleep(0.05)  # past a tick of the file system's clock: the change time moves
    db.write_bytes(other)
    os.utime(db, ns=(old.st_atime_ns, old.st_mtime_ns))
    now = db.stat()
    assert (now.st_ino, now.st_size, now.st_mtime_ns) == (old.st_ino, old.st_size, old.st_mtime_ns)
    e = _enricher(db, str(cache))
    assert len(hashed) == 3 and e.cache.misses == 2
    a = _addresses(10)
    a[:] = 0
    a[:, 10:12] = 0xFF
    a[:, 12] = 7
    assert set(e.enrich(a, a).columns["SrcAS"].tolist()) == {157}
    for memo in cache.glob("digest-*"):
        memo.write_text("not a digest")
    e = _enricher(db, str(cache))
    assert len(hashed) == 4 and e.cache.hits == 2
    assert sum(len(m.read_text()) == 32 for m in cache.glob("digest-*")) == 1  # the file's, rewritten
    _enricher(db, str(cache))
    assert len(hashed) == 4


def _networks_map(n: int, site: str = "par") -> dict[str, object]:
    nets: dict[str, object] = {
        f"10.{i // 256}.{i % 256}.0/24": {"name": f"net{i % 37}", "role": "lan", "site": site}
        for i in range(n)
    }
    nets["10.0.0.0/8"] = {"name": "corp", "region": "eu", "asn": 64500, "country": "FR"}
    nets["2001:db8::/32"] = {"name": "doc", "tenant": "t1"}
    return nets


def _same_compilation(a: networks_mod.CompiledNetworks, b: networks_mod.CompiledNetworks) -> None:
    for f in ("net_asn", "net_cc", "net_attr", "net_class", "class_attr"):
        x, y = getattr(a, f), getattr(b, f)
        assert x.dtype == y.dtype and np.array_equal(x, y), f
    for s, t in ((a.steps4, b.steps4), (a.steps6, b.steps6)):
        for f in vars(s):
            assert getattr(s, f).dtype == getattr(t, f).dtype and np.array_equal(getattr(s, f), getattr(t, f))
    assert a.count == b.count
    assert {k: d.values() for k, d in a.dictionaries.items()} == {
        k: d.values() for k, d in b.dictionaries.items()
    }


def test_a_large_networks_map_is_compiled_once_and_read_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    setting = str(tmp_path / "cache")
    nets = EnrichmentConfig.model_validate({"networks": _networks_map(300)}).networks
    assert len(nets) >= networks_mod.CACHE_MIN_NETWORKS
    monkeypatch.setattr(networks_mod, "_COMPILED", [])  # no compilation of an earlier test in memory
    fresh = networks_mod.compile_networks(nets)
    first = networks_mod.compiled_networks(nets, setting)
    _same_compilation(first, fresh)
    assert len(list((tmp_path / "cache").glob("networks-*"))) == 1

    def refused(_: object) -> None:
        raise AssertionError("compiled again")

    monkeypatch.setattr(networks_mod, "_COMPILED", [])  # a new process: the entry on disk only
    monkeypatch.setattr(networks_mod, "compile_networks", refused)
    again = networks_mod.compiled_networks(nets, setting)
    _same_compilation(again, fresh)
    assert again.dictionaries["name"].code("corp") == fresh.dictionaries["name"].code("corp")
    # another map (one attribute changed; the same entries in another order) is another key
    monkeypatch.undo()
    monkeypatch.setattr(networks_mod, "_COMPILED", [])
    other = EnrichmentConfig.model_validate({"networks": _networks_map(300, site="ber")}).networks
    reordered = dict(reversed(list(nets.items())))
    keys = {networks_mod.networks_key(m) for m in (nets, other, reordered)}
    assert len(keys) == 3
    _same_compilation(networks_mod.compiled_networks(other, setting), networks_mod.compile_networks(other))
    assert len(list((tmp_path / "cache").glob("networks-*"))) == 2


@pytest.mark.parametrize("damage", ["file_missing", "meta_garbage"])
def test_an_incomplete_networks_entry_is_compiled_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, damage: str
) -> None:
    """An entry with a file missing (a process killed mid-write, another's pruning) or a damaged one is
    removed and compiled again at the next start, never an error."""
    setting = str(tmp_path / "cache")
    nets = EnrichmentConfig.model_validate({"networks": _networks_map(150)}).networks
    monkeypatch.setattr(networks_mod, "_COMPILED", [])
    fresh = networks_mod.compiled_networks(nets, setting)
    (entry,) = (tmp_path / "cache").glob("networks-*")
    if damage == "file_missing":
        (entry / "arrays.bin").unlink()
    else:  # a whole entry whose meta array is not JSON
        cache = cache_mod.TableCache(tmp_path / "cache")
        arrays = {k: np.array(v) for k, v in (cache._read(entry) or {}).items()}
        arrays["meta"] = np.frombuffer(b"{not json", np.uint8)
        cache._write(entry, arrays)
    monkeypatch.setattr(networks_mod, "_COMPILED", [])  # a new process
    again = networks_mod.compiled_networks(nets, setting)
    _same_compilation(again, fresh)
    monkeypatch.setattr(networks_mod, "_COMPILED", [])
    monkeypatch.setattr(networks_mod, "compile_networks", lambda _: pytest.fail("compiled again"))
    _same_compilation(networks_mod.compiled_networks(nets, setting), fresh)  # the entry was rewritten whole


def test_the_networks_key_follows_the_compiler_source(monkeypatch: pytest.MonkeyPatch) -> None:
    nets = EnrichmentConfig.model_validate({"networks": _networks_map(3)}).networks
    before = networks_mod.networks_key(nets)
    monkeypatch.setattr(networks_mod, "_compiler_fingerprint", lambda: "another compiler")
    assert networks_mod.networks_key(nets) != before


def test_small_networks_maps_and_cache_off_write_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(networks_mod, "_COMPILED", [])
    small = EnrichmentConfig.model_validate({"networks": _networks_map(3)}).networks
    assert len(small) < networks_mod.CACHE_MIN_NETWORKS
    networks_mod.compiled_networks(small, str(tmp_path / "a"))
    assert not (tmp_path / "a").exists()  # compiling it is cheaper than reading an entry
    large = EnrichmentConfig.model_validate({"networks": _networks_map(300)}).networks
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    networks_mod.compiled_networks(large, "off")
    assert not (tmp_path / "xdg").exists()
    monkeypatch.setattr(networks_mod, "_COMPILED", [])
    _same_compilation(networks_mod.compiled_networks(large), networks_mod.compile_networks(large))
    assert not (tmp_path / "xdg").exists()  # no setting (None): no disk cache


def test_a_restored_dictionary_gives_the_same_codes() -> None:
    from netspectra.enrich.codes import Dictionary

    d = Dictionary(["corp", "lab", "corp", "", "edge"])
    r = Dictionary.restored(d.values())
    assert r.values() == d.values() == ("", "corp", "lab", "edge")
    assert [r.code(v) for v in ("", "corp", "lab", "edge")] == [0, 1, 2, 3]
    assert r.code("new") == d.code("new") == 4  # and it grows as the original would
    for bad in ((), ("corp",), ("", "a", "a")):
        with pytest.raises(ValueError):
            Dictionary.restored(bad)
    with pytest.raises(ValueError):
        Dictionary.restored(("", "a", "b"), capacity=2)


def test_an_index_with_a_negative_dimension_is_refused(tmp_path: Path) -> None:
    """A damaged index whose shape holds -1 would read "the rest of the file" as an array: refused, the
    entry removed (computed again by its caller), never a wrong array."""
    cache = cache_mod.TableCache(tmp_path / "cache")
    entry = tmp_path / "cache" / "table-x"
    entry.mkdir(parents=True)
    cache_mod._save(entry, {"a": np.arange(40, dtype=np.uint64), "b": np.arange(8, dtype=np.uint32)})
    assert np.array_equal(cache._read(entry)["a"], np.arange(40))  # type: ignore[index]
    index = json.loads((entry / "index.json").read_text())
    index["arrays"]["a"][1] = [-1]
    (entry / "index.json").write_text(json.dumps(index))
    assert cache._read(entry) is None and not entry.exists()
