"""The offline run: capture files through the engine, the one path of ``netspectra analyze``.

Reader → :meth:`~netspectra.engine.manager.Manager.submit` (blocking: never drops) → every task of every
running group → writers. Without ``--store`` there is no period and no configured writer, so the result
is the whole input; the tasks run on the manager's workers (one ordered lane per task: the answers do
not depend on the number of workers) while the reading thread decodes the next batch, or *inline* (in
the reading thread: no queue, no worker thread) when one CPU is all there is. With ``--store`` it runs
as a live engine does (workers, periodic snapshots, period resets, a final snapshot of every task to
every configured writer). ``--out`` is one more writer,
:class:`ResultsWriter`, that receives the final snapshot of every task and writes it as one file per
task. The readers decode the optional columns the running kinds need (flow records: TCP flags, VLAN,
ICMP, IP length), and the end of the input ends every open flow record (``end_of_input``). With an
``enrichment`` section that some task reads, the manager's enrichment stage enriches every batch once
(:mod:`netspectra.engine.enrichment`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING, Any

from netspectra.atomic import why_not_written
from netspectra.batch import PacketBatch
from netspectra.capture.reader import DEFAULT_BATCH_SIZE
from netspectra.config.loader import ConfigError
from netspectra.config.models import Config
from netspectra.engine.enrichment import EnrichmentStage
from netspectra.engine.groups import GroupWriter
from netspectra.engine.kind import columns_needed, key_field_errors
from netspectra.engine.manager import Clock, Manager
from netspectra.engine.registry import build_groups
from netspectra.offline.analyzer import AnalysisResult, analyze_files
from netspectra.storage.base import SnapshotMeta

if TYPE_CHECKING:
    from netspectra.output.flow_table import TableStream

#: The optional columns a capture's batches can carry (never the flow-export ones).
CAPTURE_COLUMNS = tuple(c for c in PacketBatch.OPTIONAL if c not in PacketBatch.EXPORT_COLUMNS)

log = logging.getLogger(__name__)


#: Rows of flow records :class:`ResultsWriter` gathers before it writes them into the file, as a part
#: (a Parquet row group) of their own, when the records come in parts (:meth:`ResultsWriter.spill`).
STREAM_ROWS = 1 << 18


class ResultsWriter:
    """``--out``: the latest snapshot of every task as ``<out>/<task>.parquet`` (or ``.csv``), written
    atomically; the columns are the snapshot's table (``flow_metrics`` for exact tasks,
    ``heavy_hitters`` for sketch tasks, the flow records of flows tasks). Only final snapshots are
    written (it has no interval), so the files hold the run's result; a flows task's snapshots are
    increments, so its file holds every record it handed out, in the order handed out (with periods,
    ``--store``: every period's, the file written again at each period's end).

    ``stream`` (the run has no periods and no other reader: ``analyze --out`` without ``--store``): a
    flows task may hand its records out as they end (:meth:`spill`), and they are written into the
    file's temporary file every :data:`STREAM_ROWS` records until the final snapshot makes it the file:
    memory follows the open flows, not every record of the capture. :attr:`written` lists the files in
    the order written.

    A file that cannot be written (no space, a directory in its place, …) is not retried: the writer
    says why in :attr:`errors` (and the log) and goes on with the other tasks (a later period's write of
    the same file, if it succeeds, clears it); a task whose file failed while its records streamed in
    writes nothing more (its later records are dropped, not gathered)."""

    def __init__(self, out: Path, *, csv: bool = False, stream: bool = False) -> None:
        self.out = out
        self.csv = csv
        self.stream = stream
        self.written: list[Path] = []
        self._errors: dict[str, str] = {}  # per task, why its file is not written
        self._records: dict[str, list[Any]] = {}
        self._streams: dict[str, TableStream] = {}
        self._failed: set[str] = set()  # tasks whose streamed file failed
        # a task's parts come from a worker (spills) and from its group's writer thread (snapshots): one
        # lock per task, so that one task's long write does not hold up another group's writer
        self._locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()  # the dictionaries themselves
        #: Why nothing more is written (:meth:`hold`), or None.
        self.held: str | None = None

    @property
    def errors(self) -> list[str]:
        """One line per file not written (or written in part and then removed): its path and why."""
        return sorted(self._errors.values())

    def __repr__(self) -> str:
        return f"ResultsWriter({str(self.out)!r}, csv={self.csv})"

    def open(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)

    def close(self) -> None:
        pass  # every group's writer closes it: see end()

    def end(self) -> None:
        """The run is over (every writer closed): a file whose records were streaming in and whose final
        snapshot never came is removed (its temporary file), and said in :attr:`errors`."""
        with self._lock:
            for task, stream in self._streams.items():
                stream.abort()
                self._fail(task, "the run ended before the task's final snapshot")
            self._streams.clear()

    def hold(self, why: str) -> None:
        """Write nothing from now on (the files already in the directory stay as they are), because
        ``why``: a run that read no packet at all, every input having failed (a mistyped name), would
        otherwise replace earlier results with empty tables."""
        self.held = why
        log.warning("--out: %s", why)

    def _task_lock(self, task: str) -> threading.Lock:
        with self._lock:
            return self._locks.setdefault(task, threading.Lock())

    def write(self, snap: Any, meta: SnapshotMeta) -> None:
        """Write one task's snapshot (any snapshot with ``task_name`` and ``to_arrow()``)."""
        if self.held:
            return
        with self._task_lock(snap.task_name):
            self._write_table(snap.task_name, snap.to_arrow)

    def spill(self, snap: Any) -> None:
        """A part of a flows task's records (:meth:`netspectra.flows.task.FlowTask.spill_to`), before its
        final snapshot: gathered, then written into the file's temporary file every :data:`STREAM_ROWS`
        records. ``TypeError`` for another kind's snapshot (only flow records are whole as they come)."""
        if getattr(snap, "kind", None) != "flows":
            raise TypeError(f"ResultsWriter.spill takes flow records, not {type(snap).__name__}")
        if not self.stream:
            raise RuntimeError("ResultsWriter.spill: this writer does not stream (stream=False)")
        with self._task_lock(snap.task_name):
            self._gather(snap, final=False)

    def write_flow_records(self, snap: Any, meta: SnapshotMeta) -> None:
        """Gather a flows task's records; write all of them so far at a final snapshot."""
        if self.held:
            return
        with self._task_lock(snap.task_name):
            self._gather(snap, final=meta.final)

    def _gather(self, snap: Any, *, final: bool) -> None:
        import pyarrow as pa

        task = snap.task_name
        if task in self._failed:
            return  # its file failed: said once (errors), nothing more is kept for it
        parts = self._records.setdefault(task, [])
        parts.append(snap.to_arrow())
        stream = self._streams.get(task)
        if not self.stream or (final and stream is None):
            # the file in one write of every record so far: at every final snapshot (one per period), or
            # when the records never reached a part of their own
            if final:
                self._write_table(task, lambda: pa.concat_tables(parts))
                if self.stream:
                    del self._records[task]
            return
        if sum(t.num_rows for t in parts) < STREAM_ROWS and not final:
            return
        try:
            if stream is None:
                from netspectra.output.flow_table import TableStream

                stream = self._streams[task] = TableStream(self._path(task), csv=self.csv)
            whole = pa.concat_tables(parts)
            parts.clear()
            if whole.num_rows or stream.rows == 0:
                stream.write(whole)
            if final:
                del self._streams[task], self._records[task]
                self._mark_written(stream.commit())
        except Exception as exc:  # (the stream removed its temporary file)
            self._streams.pop(task, None)
            self._records.pop(task, None)
            self._failed.add(task)
            self._fail(task, why_not_written(exc))

    def write_rollups(self, snap: Any, meta: SnapshotMeta) -> None:
        """Gather a rollup task's rows; write their totals so far at a final snapshot."""
        if self.held:
            return
        with self._task_lock(snap.task_name):
            parts = self._records.setdefault(snap.task_name, [])
            parts.append((meta.period_start_ns, snap))
            if meta.final:
                from netspectra.rollup.task import RollupRows

                combined = RollupRows.combine(parts)
                if combined is not None:
                    # the text columns as dictionaries, written as strings: no string per row is made
                    # (write_parquet's store_schema; the CSV writer writes a dictionary's values)
                    self._write_table(
                        snap.task_name,
                        lambda: combined.to_arrow(dictionary=True).drop_columns(["Epoch"]),
                        store_schema=False,
                    )

    def _path(self, task: str) -> Path:
        from netspectra.storage.files import safe_name

        return self.out / f"{safe_name(task)}.{'csv' if self.csv else 'parquet'}"

    def _write_table(self, task: str, table: Callable[[], Any], *, store_schema: bool = True) -> None:
        """Write the table ``table()`` makes as task ``task``'s file; a failure is noted (:attr:`errors`).
        ``store_schema``: :func:`~netspectra.output.flow_table.write_parquet`'s."""
        from netspectra.output.flow_table import write_csv, write_parquet

        try:
            if self.csv:
                path = write_csv(table(), self._path(task))
            else:
                path = write_parquet(table(), self._path(task), store_schema=store_schema)
        except Exception as exc:
            self._fail(task, why_not_written(exc))
        else:
            self._errors.pop(task, None)  # (an earlier period's failed write is made good)
            self._mark_written(path)

    def _fail(self, task: str, why: str) -> None:
        message = f"--out: {self._path(task)} (task {task}) not written: {why}"
        self._errors[task] = message
        log.info("%s", message)  # (reported by the caller: OfflineRun.out_errors)

    def _mark_written(self, path: Path) -> None:
        if path not in self.written:
            self.written.append(path)

    # the aggregator kinds deliver through these
    write_flows = write
    write_hitters = write
    write_exporters = write


@dataclass
class OfflineRun:
    """What :func:`run_offline` gives: the reading result, the stopped manager (its tasks hold the final
    state), the files ``--out`` wrote, sorted by path (the writers finish in any order; a report that
    lists them should not change from run to run), and one line per file ``--out`` could not write
    (:attr:`ResultsWriter.errors`, sorted too)."""

    result: AnalysisResult
    manager: Manager
    written: list[Path] = field(default_factory=list)
    out_errors: list[str] = field(default_factory=list)

    def __iter__(self) -> Any:  # ``result, manager = run_offline(...)``
        return iter((self.result, self.manager))


class _Submitter:
    """Looks like a task to :func:`~netspectra.offline.analyzer.analyze_files`; submits to a manager."""

    name = "engine"

    def __init__(self, manager: Manager) -> None:
        self.manager = manager

    def update(self, batch: Any) -> None:
        self.manager.submit(batch, block=True)


def check_key_fields(cfg: Config, *, flow_export: bool = False) -> None:
    """:class:`~netspectra.config.ConfigError` naming every running task's key field that capture files
    cannot supply (``InIf``, ``OutIf``, ``ExporterAddress``: see
    :func:`~netspectra.engine.kind.key_field_errors`). ``flow_export``: the files hold flow exports,
    whose rows carry those columns: nothing to refuse."""
    if flow_export:
        return
    errors = key_field_errors(cfg, CAPTURE_COLUMNS, "analyze of capture files")
    if errors:
        raise ConfigError(errors, path=cfg.source)


def run_offline(
    paths: Sequence[str | PathLike[str]],
    cfg: Config,
    *,
    writers: bool = True,
    out: Path | None = None,
    csv: bool = False,
    batch_size: int = DEFAULT_BATCH_SIZE,
    num_workers: int | None = None,
    inline: bool | None = None,
    clock: Clock | None = None,
    on_file_start: Callable[[Path, int], None] | None = None,
    progress: Callable[[int], None] | None = None,
    on_manager: Callable[[Manager], Any] | None = None,
    on_reading_done: Callable[[], None] | None = None,
    flow_export: bool = False,
    export_ports: tuple[int, ...] = (),
    **options: Any,
) -> OfflineRun:
    """Analyse capture files through the engine (see the module docstring).

    ``writers``: the configuration's writers are used, with its period (as a live engine); False: no
    configured writer and no period (the tasks hold the whole input). ``out``: also write every task's
    final snapshot there (``csv`` for CSV). ``inline`` (default: when ``writers`` is False and one
    worker is all the CPUs allow) applies batches in the reading thread instead of worker threads.
    ``on_manager(manager)`` runs after the manager is built and before it starts (attach the alerter
    there). ``on_reading_done()`` runs once every file is read, before the tasks finish their last batches
    and hand out their final results (``--out``: the files are written then; a progress display says so).

    Raises :class:`~netspectra.config.ConfigError` for a bad configuration (also a key field capture
    files cannot supply: :func:`check_key_fields`), before any file is read.
    Capture damage is reported per file in the result, as by
    :func:`~netspectra.offline.analyzer.analyze_files`. If reading raises anything else, the manager is
    still stopped (what was read is written) and the exception propagates. ``result.elapsed_s`` covers
    reading and applying every batch, not closing the writers.

    ``flow_export``: the files are captures of NetFlow/IPFIX/sFlow exports; their UDP payloads (to
    ``export_ports`` only, when given) go through the collector's decoder into the tasks
    (:func:`netspectra.collect.offline.analyze_exports`; ``result.flow_export`` holds its accounting).
    """
    check_key_fields(cfg, flow_export=flow_export)
    groups = build_groups(cfg, writers=writers)
    results: ResultsWriter | None = None
    if out is not None:
        # without periods and with no other reader, records may stream into the files as they end
        results = ResultsWriter(out, csv=csv, stream=not writers and on_manager is None)
        groups = [
            replace(g, writers=(*g.writers, GroupWriter(f"{g.name}/out", results, None, "--out")))
            for g in groups
        ]
    agg = cfg.aggregator
    if "enrichment" not in options:
        options["enrichment"] = EnrichmentStage.from_config(cfg)
        if options["enrichment"] is None and cfg.enrichment.enabled:
            # every task of the run is here: a section nothing reads is a configuration that does not do
            # what its author meant (the stage alone says so at INFO: other commands run task subsets)
            log.warning(
                "the enrichment section is configured but no task of this run reads an enrichment column "
                "(a rollup task's dimensions, a key field such as SrcAS): nothing is enriched; add a "
                "rollup task (aggregator.types: [..., rollup] and rollup: {tasks: [{name: traffic}]}) or "
                "key a task on an enrichment column (docs/enrichment.md)"
            )
    workers = num_workers if num_workers is not None else _workers(agg.num_workers)
    if inline is None:
        # with a second CPU, decoding (reading thread) and the tasks (workers) overlap: measured 1.5-2.5x
        # faster on the 2-core VM for the shipped tasks; on one CPU the queue would only add work
        inline = not writers and workers <= 1
    extras = bool(columns_needed(cfg))
    manager = Manager(
        groups,
        period=agg.period if writers else None,
        num_workers=workers,
        queue_packets=_queue_packets(agg.size_of_packet_channel, batch_size, inline or flow_export),
        clock=clock,
        inline=inline,
        # only an alerter attached here looks at the tasks during the run; without one, a group with
        # no writer (no --out, no --store) keeps no closed rollup rows nor ended flows until the end
        peeks=on_manager is not None,
        # the files' time is the packets' own: the milliseconds between the last batch and a snapshot
        # or the stop are no quiet time of the traffic (with them, flows within that much of their idle
        # timeout at the end ended "idle" or "end_of_input" from one run to the next)
        idle_clock=False,
        **options,
    )
    if on_manager is not None:  # e.g. attach the alerter before anything is counted
        on_manager(manager)
    if results is not None and results.stream:
        # --out is the only reader of every task, and it takes records as they come: a records task
        # hands its ended records to the file as they pile up instead of keeping them to the end
        for g in groups:
            for t in g.tasks:
                if t.incremental:
                    t.spill_to(results.spill)
    manager.start()
    try:
        t0 = time.perf_counter()
        if flow_export:
            from netspectra.collect.offline import analyze_exports

            result = analyze_exports(
                [Path(p) for p in paths],
                [_Submitter(manager)],
                collect=cfg.collect,
                ports=export_ports,
                extras=extras,
                on_file_start=on_file_start,
            )
        else:
            result = analyze_files(
                [Path(p) for p in paths],
                [_Submitter(manager)],
                batch_size=batch_size,
                on_file_start=on_file_start,
                progress=progress,
                extras=extras,
                # workers apply the batches while this thread decodes: small batches at both ends of
                # a file let them start sooner and leave them less after the last read. Not with a
                # records task: it hands out what ended at batch ends, so its records' order follows
                # where batches end (their set does not); those runs keep the batches they had.
                ramp=not inline and not any(t.incremental for g in groups for t in g.tasks),
            )
        if on_reading_done is not None:
            on_reading_done()
        manager.flush()
        result.elapsed_s = time.perf_counter() - t0
        if (
            results is not None
            and result.files
            and result.stats.records == 0
            and len(result.errors) == len(result.files)
        ):
            results.hold(
                f"no input could be read (each of the {len(result.files)} file(s) failed, see the errors): "
                f"nothing written; the files in {out} are left as they were"
            )
    finally:
        manager.stop(end_of_input=True)
        if results is not None:
            results.end()
    if results is None:
        return OfflineRun(result, manager)
    return OfflineRun(result, manager, sorted(results.written), results.errors)


#: Reader batches the offline engine's queue holds at least (``aggregator.size_of_packet_channel``
#: permitting fewer; an empty queue admits any batch).
OFFLINE_QUEUE_BATCHES = 2


def _queue_packets(configured: int, batch_size: int, keep: bool) -> int:
    """The offline engine's queue bound: the configured one, at least :data:`OFFLINE_QUEUE_BATCHES` of the
    reader's batches. A batch leaves the queue once every task applied it; with room for one only, the
    tasks that finish a batch early waited for the slowest at every batch (the next was not in the queue
    yet), while the reader, done decoding, waited too. With two, they start the next one: on the 2-core
    VM the 5 M-packet trace's run took 40-130 ms less with the shipped tasks, ~150 ms less with an
    enriched rollup (whose heavier reading thread waited longest), for one more batch in memory.
    ``keep``: the configured bound as it is (inline runs have no queue to widen; flow exports arrive in
    batches of one datagram's records, tens of rows, thousands of which two reader batches' worth would
    hold)."""
    if keep:
        return configured
    return max(configured, OFFLINE_QUEUE_BATCHES * batch_size)


def _workers(configured: int) -> int:
    from netspectra.engine.manager import default_num_workers

    return default_num_workers(configured)
