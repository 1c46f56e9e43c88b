"""The enrichment stage: one object built from ``enrichment`` that turns a batch's addresses (and, for
exported flows, exporter and interfaces) into the columns of :mod:`netspectra.enrich.columns`.

Contract (what the pipeline relies on):

* :meth:`Enricher.enrich` takes whole arrays and returns whole arrays (numpy, one value per row); no
  per-row Python. Addresses are ``(n, 16)`` uint8 rows, IPv4 as ``::ffff:a.b.c.d`` (the batch's form).
* **One table per batch.** A call reads the current :class:`~netspectra.enrich.table.LookupTable` once
  and uses it for every row, so a reload never mixes two databases' answers within one batch;
  :attr:`EnrichedBatch.generation` says which table answered.
* **Reload between batches.** At the start of a call (at most every ``geoip.check_interval``) the
  database files are stat'ed (size, mtime, inode); a changed file is compiled in a background thread
  (the batches go on with the old table meanwhile) and the new table is swapped in at the start of a
  later call. ``reload(wait=True)`` does the same at once (tests, an admin action).
* **Nothing fails the batch.** A missing or damaged database leaves its columns at 0 (unknown): the
  error is logged once per problem, counted (``load_errors``), and every row enriched without it is
  counted (``unenriched_rows``); the file is tried again when it changes. A classifier rule that fails
  leaves its attribute unknown and is counted.
* Thread-safe: several workers may call :meth:`enrich` at once.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from netspectra.config.enrichment import NETWORK_ATTRIBUTES, EnrichmentConfig
from netspectra.counters import Counter, LabeledCounter
from netspectra.enrich.cache import TableCache, cache_dir
from netspectra.enrich.classify import Classifier
from netspectra.enrich.codes import BOUNDARIES, COUNTRY_CODES
from netspectra.enrich.columns import COLUMNS, SIDE_CODES
from netspectra.enrich.kernels import N_MISSES, enrich_side
from netspectra.enrich.mmdb import DatabaseError, FileSignature, Kind, LoadedDatabase, load_databases
from netspectra.enrich.networks import CompiledNetworks, compiled_networks
from netspectra.enrich.table import LookupTable, build_table

log = logging.getLogger(__name__)

GEOIP_SOURCES: tuple[Kind, ...] = ("asn", "country")
_ALIAS_KINDS = ("compat", "6to4", "teredo")
_NET_COLUMNS = tuple(f"Net{a.capitalize()}" for a in NETWORK_ATTRIBUTES)
_ALL_COLUMNS = frozenset(c.name for c in COLUMNS)
_SIDE_COLUMNS = {
    side: (f"{side}AS", f"{side}Country", *(f"{side}{n}" for n in _NET_COLUMNS)) for side in ("Src", "Dst")
}
_EXPORTER_COLUMNS = tuple(c.name for c in COLUMNS if c.needs == "exporter")
_IF_COLUMNS = {p: (f"{p}IfBoundary", f"{p}IfConnectivity", f"{p}IfProvider") for p in ("In", "Out")}
#: uint16 elements per 64 bytes: each side's columns start at a multiple of it within a BlockPool block
_LINE = 32


@dataclass(frozen=True)
class EnrichedBatch:
    """The columns of one batch (name -> array of n values, see :mod:`netspectra.enrich.columns`), the
    dictionaries of its string columns (column name -> code -> text; append-only, so this copy decodes
    every code of this batch), the generation of the table that answered, and the rows without an
    answer per column (``misses``)."""

    columns: dict[str, np.ndarray]
    dictionaries: dict[str, tuple[str, ...]]
    generation: int
    misses: dict[str, int] = field(default_factory=dict)

    def text(self, name: str) -> np.ndarray:
        """Column ``name`` decoded to text (object array); numbers as they are. For output and tests."""
        values = self.columns[name]
        if name not in self.dictionaries:
            return values
        return np.asarray(self.dictionaries[name], dtype=object)[values.astype(np.intp)]


@dataclass
class _Source:
    """A configured database: what is loaded, and what was last tried."""

    kind: Kind
    path: str
    loaded: LoadedDatabase | None = None
    tried: FileSignature | None = None
    error: str | None = None
    #: The configuration warned that the path names no usable database (EnrichmentConfig.warnings).
    said: bool = False


class EnrichmentCounters:
    """Counters for metrics (monotonic): rows and batches enriched; ``unenriched_rows`` by source
    (``asn``, ``country``: rows enriched while that database was configured but not loaded);
    ``misses`` by column (rows whose answer was unknown); ``reloads`` and ``load_errors`` by source."""

    def __init__(self) -> None:
        self.rows = Counter()
        self.batches = Counter()
        self.unenriched_rows = LabeledCounter()
        self.misses = LabeledCounter()
        self.reloads = LabeledCounter()
        self.load_errors = LabeledCounter()
        self.reload_seconds = Counter()


class Enricher:
    """The enrichment stage of one configuration (see the module docstring). Build with
    :meth:`from_config`; call :meth:`enrich` per batch; :meth:`close` stops a background reload."""

    def __init__(
        self,
        cfg: EnrichmentConfig,
        *,
        clock: Callable[[], float] = time.monotonic,
        background: bool = True,
        bits4: int | None = None,
        bits6: int | None = None,
        said_problems: bool = False,
    ) -> None:
        """``said_problems``: the configuration's warnings were shown (they name the database paths that
        name no usable file: :meth:`EnrichmentConfig.database_problems`); the first failed load of such a
        database is then logged at INFO, not repeated as a warning."""
        if sys.byteorder != "little":  # the kernel reads addresses as little-endian words
            raise RuntimeError("enrichment needs a little-endian machine")
        self.cfg = cfg
        self._clock = clock
        self._background = background
        self._bits = (bits4, bits6)
        self.counters = EnrichmentCounters()
        self._networks: CompiledNetworks = compiled_networks(cfg.networks, cfg.geoip.cache_dir)
        self.classifier = Classifier(cfg)
        self._sources: dict[Kind, _Source] = {}
        # what the configuration's warnings said already (logged when a command loaded it): the first
        # failed load of such a database is not warned about again ("says so once")
        said = cfg.database_problems() if said_problems else {}
        for kind, path in (("asn", cfg.geoip.asn_database), ("country", cfg.geoip.country_database)):
            if path.strip():
                self._sources[kind] = _Source(kind, path.strip(), said=f"{kind}_database" in said)
                self.counters.unenriched_rows.touch(kind)
                self.counters.load_errors.touch(kind)
                self.counters.reloads.touch(kind)
        self._interval = cfg.geoip.check_interval.total_seconds()
        # compiled databases and tables kept between runs (only worth it with a database to walk)
        self.cache = TableCache(cache_dir(cfg.geoip.cache_dir) if self._sources else None)
        self._lock = threading.Lock()  # loads and table builds, one at a time
        self._swap_lock = threading.Lock()  # hands a built table over to the batches
        self._generation = 0
        self._pending: LookupTable | None = None
        self._thread: threading.Thread | None = None
        self._last_check = -float("inf")
        self._closed = False
        self._attr_cache: dict[tuple[int, tuple[int, ...]], np.ndarray] = {}
        self._blocks = BlockPool()
        for group in self._groups(list(self._sources.values())):
            self._load(group)
        self._table: LookupTable = self._build()
        self._last_check = self._clock()

    @classmethod
    def from_config(cls, cfg: EnrichmentConfig, **kw: Any) -> Enricher:
        """The stage for ``cfg`` (``enrichment`` of the root configuration): databases loaded now (a
        missing or damaged one is logged and left out), networks and classifiers compiled."""
        return cls(cfg, **kw)

    # ----------------------------------------------------------------------------------------------
    # Loading
    # ----------------------------------------------------------------------------------------------

    def _load(self, group: list[_Source]) -> bool:
        """(Re)load the sources of one file (one walk for all); True if a new version of any was
        loaded. A problem is logged once per change of problem, and counted every time."""
        path = group[0].path
        signature = FileSignature.of(path)
        t0 = time.perf_counter()
        try:
            kinds = tuple(s.kind for s in group)
            results: dict[Kind, LoadedDatabase | DatabaseError] = self.cache.load_databases(
                path, kinds, lambda: load_databases(path, kinds)
            )
        except DatabaseError as exc:
            results = {s.kind: exc for s in group}
        self.counters.reload_seconds.inc(time.perf_counter() - t0)
        changed = False
        for src in group:
            first = src.tried is None
            src.tried = signature
            got = results[src.kind]
            if isinstance(got, DatabaseError):
                self.counters.load_errors.inc(src.kind)
                if src.error != got.problem:
                    keeps = "keeps the previous version" if src.loaded is not None else "runs without it"
                    # the first try of a database the configuration's warning named: said once already
                    level = logging.INFO if src.said and first else logging.WARNING
                    log.log(level, "enrichment: %s database %s; enrichment %s", src.kind, got, keeps)
                src.error = got.problem
                continue
            if src.loaded is not None:
                self.counters.reloads.inc(src.kind)
            src.loaded, src.error = got, None
            changed = True
            log.info(
                "enrichment: %s database %s loaded in %.2f s", src.kind, got.describe(), got.load_seconds
            )
        return changed

    def _groups(self, sources: list[_Source]) -> list[list[_Source]]:
        by_path: dict[str, list[_Source]] = {}
        for s in sources:
            by_path.setdefault(s.path, []).append(s)
        return list(by_path.values())

    def _build(self) -> LookupTable:
        loaded = [s.loaded for s in self._sources.values() if s.loaded is not None]
        masks = tuple(sum(db.field for db in loaded if alias in db.aliases) for alias in _ALIAS_KINDS)
        nets = self._networks
        self._generation += 1
        return self.cache.build_table(
            build_table,
            [db.steps4 for db in loaded] + [nets.steps4],
            [db.steps6 for db in loaded] + [nets.steps6],
            masks=masks,  # type: ignore[arg-type]
            net_asn=nets.net_asn,
            net_cc=nets.net_cc,
            net_attr=nets.net_attr,
            bits4=self._bits[0],
            bits6=self._bits[1],
            generation=self._generation,
            sources={
                **{db.kind: db.describe() for db in loaded},
                "networks": f"{nets.count} networks",
            },
        )

    def _changed(self) -> list[_Source]:
        return [s for s in self._sources.values() if FileSignature.of(s.path) != s.tried]

    def _reload_changed(self) -> None:
        with self._lock:
            groups = self._groups(self._changed())
            if not any([self._load(g) for g in groups]):  # a list: try every changed file
                return
            table = self._build()
            with self._swap_lock:
                self._pending = table

    def reload(self, *, wait: bool = True) -> bool:
        """Check the files now; load the changed ones and prepare a new table. With ``wait`` the new table
        is in use when this returns (True if there is one); otherwise the work runs in the background and
        the table is swapped in at the start of a later :meth:`enrich`."""
        if wait:
            self._reload_changed()
            return self._swap()
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(
                target=self._reload_in_background, name="enrich-reload", daemon=True
            )
            self._thread.start()
        return False

    def _reload_in_background(self) -> None:
        try:
            self._reload_changed()
        except Exception:  # never silent: the batches go on with the current table
            self.counters.load_errors.inc("reload")
            log.exception("enrichment: building a new table failed; the current one stays in use")

    def _swap(self) -> bool:
        if self._pending is None:  # the common case, without a lock
            return False
        with self._swap_lock:
            pending, self._pending = self._pending, None
            if pending is None:
                return False
            self._table = pending
            return True

    def _between_batches(self) -> LookupTable:
        self._swap()
        if self._sources and not self._closed:
            now = self._clock()
            if now - self._last_check >= self._interval:
                self._last_check = now
                if self._changed():
                    self.reload(wait=not self._background)
        return self._table

    def close(self) -> None:
        """Stop checking the files; waits for a background load in flight."""
        self._closed = True
        if self._thread is not None:
            self._thread.join()

    # ----------------------------------------------------------------------------------------------
    # State
    # ----------------------------------------------------------------------------------------------

    @property
    def table(self) -> LookupTable:
        """The table the next batch will use (after any pending swap)."""
        return self._pending or self._table

    def status(self) -> dict[str, Any]:
        """Per source: ``loaded`` (bool), ``path``, ``description``, ``error``; and the table's generation."""
        out: dict[str, Any] = {"generation": self._table.generation, "table_bytes": self._table.nbytes}
        for kind, s in self._sources.items():
            out[kind] = {
                "path": s.path,
                "loaded": s.loaded is not None,
                "description": s.loaded.describe() if s.loaded is not None else "",
                "error": s.error or "",
            }
        return out

    def metrics(self) -> dict[str, Any]:
        """The counters as plain numbers (for the ops exporter)."""
        c = self.counters
        cc = self.classifier.counters
        return {
            "rows": c.rows.value,
            "batches": c.batches.value,
            "unenriched_rows": c.unenriched_rows.as_dict(),
            "misses": c.misses.as_dict(),
            "reloads": c.reloads.as_dict(),
            "load_errors": c.load_errors.as_dict(),
            "reload_seconds": c.reload_seconds.value,
            "table_generation": self._table.generation,
            "classifier_evaluations": cc.evaluations.value,
            "classifier_cache_clears": cc.cache_clears.value,
            "classifier_errors": cc.errors.value,
            "dictionary_full": cc.dictionary_full.value,
        }

    def dictionaries(self) -> dict[str, tuple[str, ...]]:
        """Column name -> its dictionary now (code -> text), for every string column."""
        nets = self._networks.dictionaries
        cls = self.classifier.dictionaries
        named: dict[str, tuple[str, ...]] = {"country": COUNTRY_CODES, "boundary": BOUNDARIES}
        named.update({a: d.values() for a, d in nets.items()})
        named.update({a: d.values() for a, d in cls.items()})
        return {c.name: named[c.dictionary] for c in COLUMNS if c.dictionary is not None}

    # ----------------------------------------------------------------------------------------------
    # The batch
    # ----------------------------------------------------------------------------------------------

    def enrich(
        self,
        src_ip: np.ndarray,
        dst_ip: np.ndarray,
        *,
        exporter: np.ndarray | None = None,
        in_if: np.ndarray | None = None,
        out_if: np.ndarray | None = None,
        columns: Collection[str] | None = None,
        codes: Collection[str] = (),
    ) -> EnrichedBatch:
        """The enrichment columns of one batch.

        ``src_ip``/``dst_ip``: ``(n, 16)`` uint8. Gives ``Src*``/``Dst*`` columns. With ``exporter``
        (``(n, 16)`` uint8) also the ``Exporter*`` columns; with ``exporter`` and ``in_if``/``out_if``
        (uint32 interface indexes) the ``InIf*``/``OutIf*`` columns. ``columns`` (names of
        :data:`~netspectra.enrich.columns.COLUMNS`; default: all) limits the work to what is asked for:
        a side none of whose columns is asked is not looked up, a network attribute not asked is not
        gathered, the classifiers run only for asked exporter or interface columns; the answer holds the
        asked columns that its inputs can give. ``codes`` (sides, ``"Src"``/``"Dst"``): also the side's
        code column (:data:`~netspectra.enrich.columns.SIDE_CODES`, uint64, see
        :func:`~netspectra.enrich.kernels.side_code`), with the dictionaries of every text column of the
        side (the codes decode to them). ``ValueError`` for arrays of the wrong shape or dtype and for a
        name that is not a column or a side.
        """
        want = _ALL_COLUMNS if columns is None else frozenset(columns)
        unknown = want - _ALL_COLUMNS
        if unknown:
            raise ValueError(f"not enrichment columns: {sorted(unknown)}")
        coded_sides = frozenset(codes)
        if coded_sides - set(SIDE_CODES):
            raise ValueError(f"not sides: {sorted(coded_sides - set(SIDE_CODES))}")
        src = _words(src_ip, "src_ip")
        dst = _words(dst_ip, "dst_ip")
        n = src.shape[0]
        if dst.shape[0] != n:
            raise ValueError(f"src_ip has {n} rows but dst_ip has {dst.shape[0]}")
        table = self._between_batches()  # the one table of this batch
        cols: dict[str, np.ndarray] = {}
        misses: dict[str, int] = {}
        sides = []
        for side, words in (("Src", src), ("Dst", dst)):
            names = [c for c in _SIDE_COLUMNS[side] if c in want]
            if names or side in coded_sides:  # a side none of whose columns is asked is not looked up
                # the network attributes asked that some network sets; the others are all unknown (zeros)
                gather = tuple(j for j in table.used_attributes if f"{side}{_NET_COLUMNS[j]}" in want)
                sides.append((side, words, names, gather, 4 if side in coded_sides else 0))
        # the looked-up columns of both sides: views of one block (code 4 elements, AS 2, country and
        # attributes 1), each side starting at a multiple of 64 bytes into the block (the code and AS
        # columns stay aligned for their uint64 / uint32 views: numpy's allocations are 16-byte aligned)
        # (AS and country are not written when no column of the side is asked: only the code)
        span = [-(-n * (3 * bool(s[2]) + c + len(g)) // _LINE) * _LINE for *s, g, c in sides]
        block = self._blocks.get(sum(span))
        at = 0
        no_code = np.empty(0, np.uint64)
        for (side, words, names, gather, c), size in zip(sides, span, strict=True):
            args = (*table.kernel_args(used_only=True)[:-1], self._attr_rows(table, gather))
            code = block[at : at + c * n].view(np.uint64) if c else no_code
            a = c + 3 if names else c
            asn = block[at + c * n : at + (c + 2) * n].view(np.uint32) if names else np.empty(0, np.uint32)
            cc = block[at + (c + 2) * n : at + (c + 3) * n] if names else np.empty(0, np.uint16)
            attr = block[at + a * n : at + (a + len(gather)) * n].reshape(len(gather), n)
            at += size
            miss = np.zeros(N_MISSES, np.int64)
            enrich_side(words, *args, asn, cc, attr, miss, self._networks.net_class, code)
            if c:
                cols[SIDE_CODES[side]] = code
            got = {f"{side}AS": asn, f"{side}Country": cc}
            for j, name in enumerate(_NET_COLUMNS):
                column = f"{side}{name}"
                if column in want:  # zeros (calloc'ed pages) for an attribute no network sets
                    got[column] = attr[gather.index(j)] if j in gather else np.zeros(n, np.uint16)
            cols.update((c, got[c]) for c in names)
            misses[f"{side}AS"], misses[f"{side}Country"], misses[f"{side}Net"] = (int(x) for x in miss[:3])
        if exporter is not None:
            ex = _words(exporter, "exporter")
            if ex.shape[0] != n:
                raise ValueError(f"exporter has {ex.shape[0]} rows, the addresses {n}")
            if any(c in want for c in _EXPORTER_COLUMNS):
                codes = self.classifier.exporters(ex)
                for j, name in enumerate(("Name", "Group", "Role", "Site", "Region", "Tenant")):
                    if f"Exporter{name}" in want:
                        cols[f"Exporter{name}"] = codes[j]
            for prefix, ifx in (("In", in_if), ("Out", out_if)):
                if ifx is None or not any(c in want for c in _IF_COLUMNS[prefix]):
                    continue
                ifx = np.asarray(ifx)
                if ifx.shape != (n,) or ifx.dtype.kind not in "ui":
                    raise ValueError(f"{prefix.lower()}_if must be {n} integers, got {ifx.dtype} {ifx.shape}")
                b, conn, prov = self.classifier.interfaces(ex, ifx.astype(np.uint32, copy=False))
                for column, values in zip(_IF_COLUMNS[prefix], (b, conn, prov), strict=True):
                    if column in want:
                        cols[column] = values
        elif in_if is not None or out_if is not None:
            raise ValueError("in_if/out_if need the exporter addresses (exporter=...)")
        self._count(n, misses, table)
        dicts = self.dictionaries()
        coded = {name for side in coded_sides for name in _SIDE_COLUMNS[side]}
        return EnrichedBatch(
            cols,
            {name: d for name, d in dicts.items() if name in cols or name in coded},
            table.generation,
            misses,
        )

    def _attr_rows(self, table: LookupTable, rows: tuple[int, ...]) -> np.ndarray:
        """``net_attr`` restricted to ``rows`` (contiguous), cached per table."""
        if rows == table.used_attributes:
            return table.used_net_attr
        key = (table.generation, rows)
        got = self._attr_cache.get(key)
        if got is None:
            got = np.ascontiguousarray(table.net_attr[list(rows)], dtype=np.uint16)
            if len(self._attr_cache) > 16:
                self._attr_cache.clear()
            self._attr_cache[key] = got
        return got

    def _count(self, n: int, misses: dict[str, int], table: LookupTable) -> None:
        c = self.counters
        c.rows.inc(n)
        c.batches.inc()
        for kind in self._sources if misses else ():  # only when addresses were looked up
            if kind not in table.sources:  # configured, but this batch's table was built without it
                c.unenriched_rows.inc(kind, n)
        for name, value in misses.items():
            c.misses.inc(name, value)


class BlockPool:
    """The ``uint16`` blocks whose views are a batch's looked-up columns, reused once nothing refers to them.

    A batch's columns are fresh memory otherwise: 16 bytes a row and side (8 MB for a 262,144-row batch
    of both sides), every page of it faulted in and zeroed by the kernel on first write. As the capture
    reader's batches (:class:`~netspectra.capture.reader._OutputPool`), a block is handed out again only
    when reference counts say that no one holds it or any view of it any more (a task, a queue or a
    writer that keeps a batch or one of its columns keeps the block out of the pool: it is never
    overwritten); else a fresh one is made. At most :data:`KEEP` blocks are kept. Thread-safe."""

    KEEP = 6

    def __init__(self) -> None:
        self._blocks: list[np.ndarray] = []
        self._free: list[int] = []  # each block's reference count when nothing else refers to it
        self._lock = threading.Lock()

    def _refs(self, i: int) -> int:
        # the same references on the stack at every call: the list's and the argument's
        return sys.getrefcount(self._blocks[i])

    def get(self, size: int) -> np.ndarray:
        """A block of ``size`` elements (uninitialised) that no one else refers to: a free kept block of
        at least that size (its head: batches of an engine vary in size), else a new one."""
        with self._lock:
            spare = -1  # a free block too small, replaced when the pool is full
            for i in range(len(self._blocks)):
                if self._refs(i) == self._free[i]:
                    if self._blocks[i].shape[0] >= size:
                        # a view's base is the block itself: while any view of it lives, it is not free
                        return self._blocks[i][:size]
                    spare = i
            block = np.empty(size, np.uint16)
            if len(self._blocks) < self.KEEP:
                self._blocks.append(block)
                self._free.append(0)
                i = len(self._blocks) - 1
            elif spare >= 0:
                i = spare
                self._blocks[i] = block
            else:
                return block  # every kept block is in use: this one is not kept
            del block
            self._free[i] = self._refs(i)
            return self._blocks[i]


def _words(addrs: np.ndarray, what: str) -> np.ndarray:
    """``(n, 16)`` uint8 addresses as ``(n, 2)`` uint64 words (a view when contiguous)."""
    a = np.asarray(addrs)
    if a.dtype != np.uint8 or a.ndim != 2 or a.shape[1] != 16:
        raise ValueError(f"{what} must be (n, 16) uint8 addresses, got {a.dtype} {a.shape}")
    return np.ascontiguousarray(a).view(np.uint64)
