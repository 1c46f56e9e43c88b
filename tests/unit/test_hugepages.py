"""Huge-page advice on the large mappings (netspectra.hugepages): the capture file, the enrichment cache's
compiled tables, the rollup tables — checked in the kernel's own account of the mappings
(``/proc/self/smaps``: ``hg`` in ``VmFlags`` is ``MADV_HUGEPAGE``)."""

from __future__ import annotations

import mmap
from pathlib import Path

import numpy as np
import pytest

from netspectra import hugepages
from netspectra.capture.source import MmapSource
from netspectra.enrich import cache as cache_mod
from netspectra.rollup.task import _Table

THP = Path("/sys/kernel/mm/transparent_hugepage/enabled")
needs_thp = pytest.mark.skipif(
    not THP.exists() or not hasattr(mmap, "MADV_HUGEPAGE"), reason="no transparent huge pages here"
)


def _vm_flags(address: int) -> list[str]:
    """The ``VmFlags`` of the mapping that holds ``address`` (``AssertionError`` when none does)."""
    flags: list[str] | None = None
    inside = False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        head = line.split(" ", 1)[0]
        if "-" in head and ":" not in head:
            lo, hi = (int(x, 16) for x in head.split("-"))
            inside = lo <= address < hi
        elif inside and line.startswith("VmFlags:"):
            flags = line.split()[1:]
    assert flags is not None, f"no mapping holds {address:#x}"
    return flags


@needs_thp
def test_an_advised_mapping_is_marked_and_an_unadvised_one_not() -> None:
    advised = mmap.mmap(-1, 4 << 20, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    plain = mmap.mmap(-1, 4 << 20, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    assert hugepages.advise_huge_pages(advised)
    assert "hg" in _vm_flags(np.frombuffer(advised, np.uint8).ctypes.data)
    assert "hg" not in _vm_flags(np.frombuffer(plain, np.uint8).ctypes.data)


def test_without_the_advice_the_mapping_is_left_as_it_is(monkeypatch: pytest.MonkeyPatch) -> None:
    mm = mmap.mmap(-1, 1 << 16, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    monkeypatch.delattr(mmap, "MADV_HUGEPAGE", raising=False)
    assert not hugepages.advise_huge_pages(mm)  # a platform without it

    class Refusing:
        def madvise(self, advice: int) -> None:
            raise OSError(22, "Invalid argument")  # a kernel built without transparent huge pages

    monkeypatch.setattr(mmap, "MADV_HUGEPAGE", 14, raising=False)
    assert not hugepages.advise_huge_pages(Refusing())  # type: ignore[arg-type]


@needs_thp
def test_the_capture_mapping_is_advised(tmp_path: Path) -> None:
    p = tmp_path / "raw.bin"
    p.write_bytes(bytes(range(256)) * 64)
    with MmapSource(p, window_bytes=4096) as src:
        assert "hg" in _vm_flags(src.window().ctypes.data)


@needs_thp
def test_the_compiled_tables_are_mapped_advised(tmp_path: Path) -> None:
    cache = cache_mod.TableCache(tmp_path / "cache")
    entry = tmp_path / "cache" / "table-x"
    entry.mkdir(parents=True)
    cache_mod._save(entry, {"idx": np.arange(1 << 16, dtype=np.uint64)})
    got = cache._read(entry)
    assert got is not None and np.array_equal(got["idx"], np.arange(1 << 16))
    assert "hg" in _vm_flags(got["idx"].ctypes.data)


@needs_thp
def test_a_mapped_rollup_table_is_advised() -> None:
    table = _Table(5, 1 << 16, True)  # 4 MB of records: a mapping of its own
    assert table._map is not None
    assert "hg" in _vm_flags(table.rec.ctypes.data)
    assert "hg" in _vm_flags(table.epoch.ctypes.data)  # read at random too (prefetched every row)
    table.grow(1 << 17)
    assert "hg" in _vm_flags(table.rec.ctypes.data)
    assert "hg" in _vm_flags(table.epoch.ctypes.data)


@needs_thp
def test_growable_words_are_advised_only_when_asked() -> None:
    from netspectra.tasks.exact_store import GrowableWords

    rows, epochs = GrowableWords(1 << 16), GrowableWords(1 << 16, huge=True)
    assert "hg" not in _vm_flags(rows.array.ctypes.data)  # appended in order: small pages (exact_store)
    assert "hg" in _vm_flags(epochs.array.ctypes.data)
    epochs.resize(1 << 18)
    assert "hg" in _vm_flags(epochs.array.ctypes.data)
