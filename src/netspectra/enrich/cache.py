"""A disk cache of compiled enrichment tables, so that a command starts in milliseconds, not seconds.

Loading a large database means walking half a million networks with the reader and merging and indexing
the step functions: seconds of CPU at every start of ``netspectra analyze`` (measured: 3 s of walk and
1.7 s of table build for a 520 k-network database). Both results depend only on their inputs, so they
are kept on disk and reused when the inputs are the same:

* :func:`load_databases` — the compiled answers of one database file, keyed by a hash of the file's
  *bytes* (not its name or date: a replaced file is a new key, a copy elsewhere the same one) and the
  kinds of answer asked. The hash of a file is itself remembered (a ``digest-*`` file of the cache, see
  :meth:`TableCache.file_digest`) under the file's identity and change marks — device, inode, size,
  modification and change times to the nanosecond —, so a start reads those instead of hashing the whole
  file again (27 MB: ~40 ms); any change of the file (a write changes its change time, which no one can
  set back; a replaced file is a new inode) is a new identity, whose bytes are hashed;
* :func:`build_table` — the merged and indexed lookup table, keyed by a hash of every input array and
  parameter;
* :meth:`TableCache.arrays` — any other arrays under a content key the caller makes: the compiled
  ``networks`` map (:func:`netspectra.enrich.networks.compiled_networks`, keyed by the map's text:
  2,000 networks compile in ~25 ms, read back in ~1 ms).

Content-addressed keys cannot go stale. The table's key names each database's arrays by that database's
own key (they are a function of it) instead of hashing their bytes again: hashing 60-90 MB of arrays cost
more than reading them. An entry is a directory of two files — the arrays' bytes one after another and a
JSON index of their names, types, shapes and offsets (no pickles) —, written into a temporary directory
renamed into place (atomic: a reader sees a whole entry or none), and memory-mapped copy-on-write when
read — writable arrays, as the kernels were compiled for, whose pages come from the page cache as the
lookups touch them instead of being copied at start (an 87 MB table: ~50 ms of copying and CRC checks of
``.npz`` before; one ``.npy`` file per array, 33 for an enriched start, cost ~8 ms of opening and header
parsing, one mapping per entry ~1 ms). A mapped entry deleted by the pruning of another process stays
readable by the processes that mapped it (POSIX). The newest :data:`KEEP` entries are kept, older ones
deleted (``.npz`` entries of the earlier format too). The cache never fails a load: an entry that cannot
be read or written is logged (debug), removed, and the result computed as without a cache.

The directory: ``enrichment.geoip.cache_dir``; empty → ``$XDG_CACHE_HOME/netspectra/enrich`` (else
``~/.cache/netspectra/enrich``); ``off`` → no cache.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import mmap
import os
import shutil
import tempfile
import weakref
from collections.abc import Callable, Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np

from netspectra.hugepages import advise_huge_pages

log = logging.getLogger(__name__)

#: Bump when the format of a cached entry or of what it holds changes.
FORMAT = 3
#: An entry's files: the arrays' names, types, shapes and offsets; their bytes.
_INDEX = "index.json"
_DATA = "arrays.bin"
#: Each array starts at a multiple of this many bytes of the data file (a cache line).
_ALIGN = 64
#: Entries kept (the newest by use).
KEEP = 12
_CHUNK = 1 << 20
#: Name prefix of the remembered file hashes (:meth:`TableCache.file_digest`), the newest KEEP kept.
_MEMO = "digest-"
#: A database changed less than this many seconds ago is hashed at every start (see file_digest).
SETTLE_S = 2.0


def cache_dir(setting: str) -> Path | None:
    """The cache directory of a ``cache_dir`` setting (see the module docstring); None when off."""
    from netspectra.user_cache import user_cache_dir

    return user_cache_dir(setting, "enrich")


def file_digest(path: str) -> str:
    """A hash of the file's bytes (hex)."""
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _digest(*parts: Any, known: Callable[[np.ndarray], str | None] = lambda a: None) -> str:
    """A hash of ``parts``: arrays by their dtype, shape and bytes — or by the name ``known`` gives them
    (an array that is a function of a cache key) —, anything else by its ``repr``."""
    h = hashlib.blake2b(digest_size=16)
    for p in parts:
        if isinstance(p, np.ndarray):
            name = known(p)
            if name is not None:
                h.update(b"known:" + name.encode())
            else:
                h.update(str((p.dtype.str, p.shape)).encode())
                h.update(memoryview(np.ascontiguousarray(p)).cast("B"))
        else:
            h.update(repr(p).encode())
        h.update(b"\x00")
    return h.hexdigest()


class TableCache:
    """The cache in ``directory`` (None: caching off — every call computes)."""

    def __init__(self, directory: Path | None) -> None:
        self.directory = directory
        self.hits = 0
        self.misses = 0
        # arrays known to be a function of a database entry's key: id -> (the array, its name)
        self._known: dict[int, tuple[weakref.ref[np.ndarray], str]] = {}

    def _path(self, kind: str, key: str) -> Path | None:
        return None if self.directory is None else self.directory / f"{kind}-{key}"

    def _remember(self, array: np.ndarray, name: str) -> None:
        for i in [i for i, (ref, _) in self._known.items() if ref() is None]:  # arrays of old loads
            del self._known[i]
        self._known[id(array)] = (weakref.ref(array), name)

    def _known_name(self, array: np.ndarray) -> str | None:
        got = self._known.get(id(array))
        return got[1] if got is not None and got[0]() is array else None

    def _read(self, path: Path) -> dict[str, np.ndarray] | None:
        try:
            with open(path / _INDEX, "rb") as f:
                index = json.loads(f.read())
            with open(path / _DATA, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                # copy-on-write mapping: writable base-class arrays whose pages come from the page cache;
                # 2 MB at a time where the kernel can (the lookups read the index at random: see
                # netspectra.hugepages)
                data: Any = b""
                if size:
                    data = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)
                    advise_huge_pages(data)
            out = {}
            for name, (dtype, shape, offset) in index["arrays"].items():
                dt = np.dtype(dtype)
                count = int(np.prod(shape, dtype=np.int64))
                if (
                    dt.hasobject
                    or any(int(n) < 0 for n in shape)
                    or offset % _ALIGN
                    or offset < 0
                    or offset + count * dt.itemsize > size
                ):
                    raise ValueError(f"{name}: {dtype} {shape} at {offset} does not fit {size} bytes")
                out[name] = (
                    np.frombuffer(data, dt, count, offset).reshape(shape) if count else np.empty(shape, dt)
                )
            os.utime(path)  # most recently used: kept by the pruning
            return out
        except FileNotFoundError:
            return None
        except Exception as exc:  # a damaged or foreign entry: compute, and replace it
            log.debug("enrichment cache: %s unusable (%s); recomputed", path, exc)
            _remove(path)
            return None

    def _write(self, path: Path, arrays: dict[str, np.ndarray]) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=path.parent))
            try:
                _save(tmp, arrays)
                _remove(path)  # a damaged entry of that name (a good one is not rewritten)
                with contextlib.suppress(FileExistsError, OSError):
                    os.rename(tmp, path)  # another process may have put the same entry first
            finally:
                _remove(tmp)
            self._prune(path.parent)
        except Exception as exc:  # a read-only home, a full disk: the table is still built
            log.debug("enrichment cache: cannot write %s (%s)", path, exc)

    def _prune(self, directory: Path) -> None:
        entries = [p for p in directory.iterdir() if not p.name.startswith((".tmp-", _MEMO))]
        memos = [p for p in directory.iterdir() if p.name.startswith(_MEMO)]
        for group in (entries, memos):
            group.sort(key=_mtime, reverse=True)
            for old in group[KEEP:]:
                _remove(old)

    def file_digest(self, path: str) -> str:
        """:func:`file_digest` of ``path``, remembered in the cache under the file's identity and change
        marks (``stat``: device, inode, size, modification and change times in ns): a file whose marks are
        those of a file hashed before is not read again. A file changed in the last
        :data:`SETTLE_S` seconds is hashed every time (its marks may not have moved yet: a change within
        one tick of the file system's clock), as is everything when the cache cannot be written; an
        unreadable or malformed memo is hashed again and rewritten. Raises ``OSError`` for a missing
        file."""
        import time

        st = os.stat(path)
        marks = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        memo = None if self.directory is None else self.directory / f"{_MEMO}{_digest(FORMAT, marks)}"
        if memo is not None:
            with contextlib.suppress(OSError, UnicodeDecodeError):
                text = memo.read_text("ascii").strip()
                if len(text) == 32 and all(c in "0123456789abcdef" for c in text):
                    return text
        digest = file_digest(path)
        settled = time.time_ns() - max(st.st_mtime_ns, st.st_ctime_ns) > SETTLE_S * 1e9
        if memo is not None and settled:
            after = os.stat(path)
            if (after.st_dev, after.st_ino, after.st_size, after.st_mtime_ns, after.st_ctime_ns) == marks:
                tmp = None
                try:  # atomic: a reader sees a whole memo or none
                    memo.parent.mkdir(parents=True, exist_ok=True)
                    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=memo.parent)
                    with os.fdopen(fd, "w", encoding="ascii") as f:
                        f.write(digest)
                    os.replace(tmp, memo)
                    tmp = None
                except OSError as exc:
                    log.debug("enrichment cache: cannot write %s (%s)", memo, exc)
                finally:
                    if tmp is not None:
                        _remove(Path(tmp))
        return digest

    # -- what is cached -----------------------------------------------------------------------------

    def load_databases(
        self, path: str, kinds: tuple[str, ...], load: Callable[[], dict[str, Any]]
    ) -> dict[str, Any]:
        """``load()`` (:func:`netspectra.enrich.mmdb.load_databases` of ``path``) or its cached result;
        only complete successes (every kind loaded) are cached."""
        import time

        from netspectra.enrich.mmdb import DatabaseError, FileSignature, LoadedDatabase
        from netspectra.enrich.table import Steps4, Steps6

        if self.directory is None:
            return load()
        t0 = time.perf_counter()
        entry = None
        with contextlib.suppress(OSError):  # missing or unreadable: the loader says what is wrong
            entry = self._path("db", _digest(FORMAT, self.file_digest(path), kinds))
        if entry is not None:
            got = self._read(entry)
            if got is not None:
                for name, a in got.items():
                    self._remember(a, f"{entry.name}/{name}")
                meta = json.loads(bytes(got["meta"]).decode())
                out: dict[str, Any] = {}
                for i, kind in enumerate(kinds):
                    m = meta[i]
                    out[kind] = LoadedDatabase(
                        path=path,
                        kind=kind,  # type: ignore[arg-type]
                        signature=FileSignature.of(path),
                        database_type=m["database_type"],
                        ip_version=m["ip_version"],
                        build_epoch=m["build_epoch"],
                        steps4=Steps4(got[f"s4_{i}"], got[f"v4_{i}"]),
                        steps6=Steps6(got[f"h6_{i}"], got[f"l6_{i}"], got[f"v6_{i}"]),
                        field=m["field"],
                        aliases=frozenset(m["aliases"]),
                        networks=m["networks"],
                        without_answer=m["without_answer"],
                        load_seconds=time.perf_counter() - t0,
                    )
                self.hits += 1
                log.info("enrichment: %s compiled before, read from the cache %s", path, entry)
                return out
        self.misses += 1
        result = load()
        if entry is not None and all(not isinstance(v, DatabaseError) for v in result.values()):
            arrays: dict[str, np.ndarray] = {}
            meta = []
            for i, kind in enumerate(kinds):
                db = result[kind]
                arrays.update(
                    {
                        f"s4_{i}": db.steps4.starts,
                        f"v4_{i}": db.steps4.vals,
                        f"h6_{i}": db.steps6.hi,
                        f"l6_{i}": db.steps6.lo,
                        f"v6_{i}": db.steps6.vals,
                    }
                )
                meta.append(
                    {
                        "database_type": db.database_type,
                        "ip_version": db.ip_version,
                        "build_epoch": db.build_epoch,
                        "field": int(db.field),
                        "aliases": sorted(db.aliases),
                        "networks": db.networks,
                        "without_answer": db.without_answer,
                    }
                )
            arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
            self._write(entry, arrays)
            for name, a in arrays.items():  # what a later read of the entry gives: the same name
                self._remember(a, f"{entry.name}/{name}")
        return result

    def arrays(
        self,
        kind: str,
        key: str,
        compute: Callable[[], dict[str, np.ndarray]],
        load: Callable[[dict[str, np.ndarray]], Any] = lambda arrays: arrays,
    ) -> Any:
        """``load(compute())`` (``compute``: arrays by name; names are file stems: letters, digits,
        ``_``), or ``load`` of the arrays it gave before for the same ``kind`` and ``key`` (a text the
        caller makes that names every input of ``compute``; hashed here), read as mapped copy-on-write
        arrays (:meth:`_read`). An entry ``load`` refuses (``KeyError``, ``ValueError``, ``TypeError``:
        a file missing, left by a process killed mid-write or removed by another's pruning, or
        damaged) is removed and computed again, never an error."""
        entry = self._path(kind, _digest(FORMAT, key))
        if entry is None:
            return load(compute())
        got = self._read(entry)
        if got is not None:
            try:
                loaded = load(got)
            except (KeyError, ValueError, TypeError) as exc:
                log.debug("enrichment cache: %s unusable (%r); recomputed", entry, exc)
                _remove(entry)
            else:
                self.hits += 1
                return loaded
        self.misses += 1
        arrays = compute()
        self._write(entry, arrays)
        return load(arrays)

    def build_table(
        self, build: Callable[..., Any], steps4: Sequence[Any], steps6: Sequence[Any], **kw: Any
    ) -> Any:
        """``build(steps4, steps6, **kw)`` (:func:`netspectra.enrich.table.build_table`) or its cached
        result (``generation`` and ``sources`` are not part of the key: they are set on the result)."""
        from netspectra.enrich.table import LookupTable, Steps4, Steps6

        if self.directory is None:
            return build(steps4, steps6, **kw)
        generation, sources = kw.pop("generation", 0), kw.pop("sources", None)
        parts: list[Any] = [FORMAT]
        for s in steps4:
            parts += [s.starts, s.vals]
        parts.append("|")
        for s in steps6:
            parts += [s.hi, s.lo, s.vals]
        for k in sorted(kw):
            parts += [k, kw[k]]
        entry = self._path("table", _digest(*parts, known=self._known_name))
        assert entry is not None
        got = self._read(entry)
        if got is not None:
            self.hits += 1
            scalars = json.loads(bytes(got["meta"]).decode())
            return LookupTable(
                Steps4(got["starts4"], got["vals4"]),
                Steps6(got["hi6"], got["lo6"], got["vals6"]),
                got["idx4"],
                scalars["shift4"],
                got["idx6"],
                scalars["shift6"],
                np.uint64(scalars["masks"][0]),
                np.uint64(scalars["masks"][1]),
                np.uint64(scalars["masks"][2]),
                got["net_asn"],
                got["net_cc"],
                got["net_attr"],
                generation,
                dict(sources or {}),
            )
        self.misses += 1
        table = build(steps4, steps6, generation=generation, sources=sources, **kw)
        names = {f.name for f in fields(table)}
        assert {"steps4", "steps6", "idx4", "idx6"} <= names
        self._write(
            entry,
            {
                "starts4": table.steps4.starts,
                "vals4": table.steps4.vals,
                "hi6": table.steps6.hi,
                "lo6": table.steps6.lo,
                "vals6": table.steps6.vals,
                "idx4": table.idx4,
                "idx6": table.idx6,
                "net_asn": table.net_asn,
                "net_cc": table.net_cc,
                "net_attr": table.net_attr,
                "meta": np.frombuffer(
                    json.dumps(
                        {
                            "shift4": int(table.shift4),
                            "shift6": int(table.shift6),
                            "masks": [int(table.mask_compat), int(table.mask_6to4), int(table.mask_teredo)],
                        }
                    ).encode(),
                    np.uint8,
                ),
            },
        )
        return table


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:  # removed meanwhile (another process pruned it)
        return 0.0


def _save(directory: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write ``arrays`` as one entry's two files: their bytes one after another in :data:`_DATA` (each at a
    multiple of :data:`_ALIGN`), their names, types, shapes and offsets in :data:`_INDEX`."""
    index: dict[str, list[Any]] = {}
    at = 0
    with open(directory / _DATA, "wb") as f:
        for name, a in arrays.items():
            if a.dtype.hasobject:
                raise TypeError(f"{name}: objects are not cached")
            pad = -at % _ALIGN
            f.write(b"\0" * pad)
            at += pad
            index[name] = [a.dtype.str, list(a.shape), at]
            data = np.ascontiguousarray(a)
            f.write(memoryview(data).cast("B"))
            at += data.nbytes
    (directory / _INDEX).write_text(json.dumps({"arrays": index}))


def _remove(path: Path) -> None:
    """Remove an entry (a directory, or a file of the earlier ``.npz`` format); gone already is fine."""
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            path.unlink()
