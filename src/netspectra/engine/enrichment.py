"""The enrichment stage of the engine: every batch enriched once, before any task sees it.

Where tasks run — the engine service, ``netspectra up``, ``netspectra analyze`` — the
:class:`~netspectra.engine.manager.Manager` owns at most one :class:`EnrichmentStage` (one
:class:`~netspectra.enrich.enricher.Enricher`, one set of databases in memory, per process) and applies it
in :meth:`~netspectra.engine.manager.Manager.submit`: the batch the tasks get is
``batch.with_dims(columns, dictionaries)``.

Contract:

* **Nothing configured, nothing done.** Without an ``enrichment`` section (or when no task reads an
  enrichment column) there is no stage: batches go to the tasks untouched, at no cost.
* **Only what is read is computed.** The stage computes the columns some task reads (the union of
  :meth:`~netspectra.engine.kind.AggregatorKind.dimensions` over the running tasks): a side of the
  batch no column of which is read is not looked up, a network attribute nobody reads is not gathered.
  A side's columns that tasks read only through its side code (a rollup task,
  :meth:`~netspectra.engine.kind.AggregatorKind.coded_dimensions`) are handed over as that one column
  (``SrcCode``/``DstCode``, :data:`netspectra.enrich.columns.SIDE_CODES`), not as arrays
  (:func:`~netspectra.engine.kind.enrichment_reads`).
* **One table per batch, reloads between batches** (the Enricher's contract): a database that changes
  is compiled in the background and swapped in between two batches; no batch is lost or waits for it,
  and no batch mixes two versions' answers.
* **Nothing fails a batch.** A missing or damaged database: the service starts without it, logs it once,
  and counts every row enriched without it (``unenriched_rows{source}``). Should the stage itself fail on
  a batch (a bug), the batch goes on with every column unknown, counted (``errors``, ``unenriched_rows
  {stage}``) and logged (rate-limited) — the tasks never lose it.

Counters: :meth:`EnrichmentStage.metrics` (Prometheus: ``netspectra_enrichment_*``, docs/operations.md),
:meth:`EnrichmentStage.summary` (``analyze --json``, the engine's summary).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from netspectra.counters import Counter, RateLimitedLog
from netspectra.enrich.columns import SIDE_CODES

if TYPE_CHECKING:
    from netspectra.batch import PacketBatch
    from netspectra.config.models import Config
    from netspectra.enrich.enricher import Enricher

log = logging.getLogger(__name__)


class EnrichmentStage:
    """Enriches batches with ``columns`` (names of :data:`netspectra.enrich.columns.COLUMNS`) by one
    :class:`~netspectra.enrich.enricher.Enricher` (see the module docstring). Thread-safe."""

    def __init__(
        self,
        enricher: Enricher,
        columns: Iterable[str],
        *,
        arrays: Iterable[str] | None = None,
        codes: Iterable[str] = (),
    ) -> None:
        from netspectra.enrich.columns import COLUMNS, SIDE_CODES

        self.enricher = enricher
        order = {c.name: i for i, c in enumerate(COLUMNS)}
        self.columns: tuple[str, ...] = tuple(sorted(set(columns), key=order.__getitem__))
        #: The columns computed as arrays of the batch (default: all of :attr:`columns`); the others are
        #: read through the side codes of :attr:`codes` only (netspectra.engine.kind.enrichment_reads).
        self.arrays: tuple[str, ...] = (
            self.columns if arrays is None else tuple(sorted(set(arrays), key=order.__getitem__))
        )
        self.codes: tuple[str, ...] = tuple(s for s in SIDE_CODES if s in set(codes))
        self._dtypes = {c.name: np.dtype(c.dtype) for c in COLUMNS}
        self._dtypes.update((SIDE_CODES[s], np.dtype(np.uint64)) for s in self.codes)
        self.errors = Counter()
        self.seconds = Counter()
        self._error_log = RateLimitedLog(log, 60.0)

    def __repr__(self) -> str:
        return f"EnrichmentStage(columns={list(self.columns)}, codes={list(self.codes)})"

    @classmethod
    def from_config(
        cls, cfg: Config, columns: Iterable[str] | None = None, *, types: Sequence[str] | None = None
    ) -> EnrichmentStage | None:
        """The stage of ``cfg``'s ``enrichment`` section computing ``columns`` as arrays (default: what
        the tasks of the aggregator kinds ``types`` read, by default of the running ones:
        :func:`~netspectra.engine.kind.enrichment_reads`, side codes included); ``None`` when the section
        configures nothing or no column is read (logged). Loads the databases now (a missing or damaged
        one is logged once and left out)."""
        if not cfg.enrichment.enabled:
            return None  # before the imports: the enrichment modules are ~10 ms of every command's start-up
        from netspectra.engine.kind import enrichment_reads
        from netspectra.enrich.enricher import Enricher

        arrays: tuple[str, ...] | None = None
        codes: tuple[str, ...] = ()
        if columns is not None:
            wanted = tuple(columns)
        else:
            wanted, arrays, codes = enrichment_reads(cfg, types)
        if not wanted:
            log.info(
                "enrichment is configured but no running task reads an enrichment column (a rollup "
                "task's dimensions, a key field): nothing is computed"
            )
            return None
        t0 = time.perf_counter()
        enricher = Enricher.from_config(cfg.enrichment, said_problems=cfg.warnings_logged)
        stage = cls(enricher, wanted, arrays=arrays, codes=codes)
        log.info(
            "enrichment: %s ready in %.2f s (%s)",
            ", ".join(stage.columns),
            time.perf_counter() - t0,
            "; ".join(stage.enricher.table.sources.values()) or "nothing loaded",
        )
        return stage

    def apply(self, batch: PacketBatch) -> PacketBatch:
        """``batch`` with its enrichment columns (see the module docstring: never raises for a valid
        batch)."""
        t0 = time.perf_counter()
        try:
            out = self.enricher.enrich(
                batch.src_ip,
                batch.dst_ip,
                exporter=batch.exporter,
                in_if=batch.in_if if batch.exporter is not None else None,
                out_if=batch.out_if if batch.exporter is not None else None,
                columns=self.arrays,
                codes=self.codes,
            )
            dims, dictionaries = dict(out.columns), dict(out.dictionaries)
        except Exception:
            self.errors.inc()
            self.enricher.counters.unenriched_rows.inc("stage", len(batch))
            self._error_log.log(
                logging.ERROR, "enrichment failed on a batch; its rows go on unknown", exc_info=True
            )
            dims, dictionaries = {}, {}
        n = len(batch)
        for name in (*self.arrays, *(SIDE_CODES[s] for s in self.codes)):
            if name not in dims:  # columns the batch's inputs cannot give (no exporter): unknown
                dims[name] = np.zeros(n, self._dtypes[name])
        self.seconds.inc(time.perf_counter() - t0)
        return batch.with_dims(dims, dictionaries or None)

    def close(self) -> None:
        """Stop checking the database files (waits for a background load in flight)."""
        self.enricher.close()

    def metrics(self) -> dict[str, Any]:
        """The Enricher's counters plus the stage's own (``errors``, ``seconds``) and the columns."""
        return {
            **self.enricher.metrics(),
            "errors": int(self.errors.value),
            "seconds": float(self.seconds.value),
            "columns": list(self.columns),
        }

    def status(self) -> dict[str, Any]:
        """Per database: path, loaded, description, error (the Enricher's)."""
        return self.enricher.status()

    def summary(self) -> dict[str, Any]:
        """What a run's summary shows: rows, rows left unenriched by source, database status, columns."""
        m = self.metrics()
        return {
            "columns": m["columns"],
            "rows": m["rows"],
            "unenriched_rows": m["unenriched_rows"],
            "load_errors": m["load_errors"],
            "reloads": m["reloads"],
            "errors": m["errors"],
            "seconds": m["seconds"],
            "databases": {k: v for k, v in self.status().items() if isinstance(v, dict)},
        }


def summary_rows(summary: dict[str, Any]) -> list[tuple[str, Any]]:
    """The readable rows of :meth:`EnrichmentStage.summary` (the engine's report, ``analyze``)."""
    rows: list[tuple[str, Any]] = [
        ("Columns", ", ".join(summary["columns"])),
        ("Rows enriched", f"{summary['rows']:,}"),
    ]
    for source, db in summary["databases"].items():
        state = db["description"] if db["loaded"] else f"not loaded: {db['error'] or 'missing'}"
        rows.append((f"{source} database", state))
    for source, n in sorted(summary["unenriched_rows"].items()):
        db = summary["databases"].get(source)
        if n or (db is not None and not db["loaded"]):
            # rows enriched while this source's database was not loaded, not lookups that found nothing
            # (a user read "Rows without asn 0" beside a 98 % "(unknown)" SrcAS as a contradiction);
            # not shown for a database loaded the whole run (a 0 there read as a warning)
            rows.append((f"Rows without {source} database (not loaded)", f"{n:,}"))
    if summary["errors"]:
        rows.append(("Batches the stage failed on", f"{summary['errors']:,}"))
    return rows
