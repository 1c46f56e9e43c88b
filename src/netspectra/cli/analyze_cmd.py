"""``netspectra analyze``: offline analysis of capture files (the original's ``pcap-analyzer``)."""

from __future__ import annotations

import gc
import json
import logging
from contextlib import nullcontext
from pathlib import Path
from typing import Annotated, Any

import typer

from netspectra.cli.common import ConfigOption, console, err_console, fail

log = logging.getLogger(__name__)


def analyze(
    files: Annotated[
        list[Path],
        typer.Argument(
            help="Capture files: pcap or pcapng (either byte order, µs or ns), optionally gzip-compressed. "
            "The format is detected from the file's contents, not its name.",
            show_default=False,
            metavar="FILE",
        ),
    ],
    config: ConfigOption = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="Directory for results: one file per task, named <task>.parquet (or .csv with --csv; in the "
            "task's name, characters other than letters, digits, _ . and - are percent-encoded): an "
            "exact task's flows with the columns of the original's flow_metrics table, a sketch task's list "
            "with those of its heavy_hitters table, a rollup task's rows (TaskName, Resolution 1m/5m/1h, "
            "Bucket, one column per dimension, Packets, Bytes), flow records (--flows) as in docs/flows.md. "
            "A file that cannot be written (no space left, a directory in its place) is named with the "
            "reason (--json: out_errors) and the exit status is 1; the others are written. Files already "
            "there that this run does not write are left as they are; when no input could be read at all "
            "(a mistyped name), nothing is written.",
            file_okay=False,
        ),
    ] = None,
    csv: Annotated[bool, typer.Option("--csv", help="Write CSV instead of Parquet into --out.")] = False,
    flows: Annotated[
        bool,
        typer.Option(
            "--flows",
            help="Also make flow records: bidirectional flows cut by idle (120 s) and active (1800 s) "
            "timeouts, with TCP flags and Zeek's connection state, packet size and inter-arrival "
            "statistics per direction, and the reason each ended. Runs the configuration's flows tasks "
            "(aggregator.flows), or one task named flows with the defaults when it has none; with --out "
            "they are written to <out>/<task>.parquet (or .csv): flows.parquet for the default task "
            "(flow_records.parquet when another task is named flows). See docs/flows.md.",
        ),
    ] = False,
    store: Annotated[
        bool,
        typer.Option(
            "--store",
            help="Run through the engine into the configuration's enabled writers (ClickHouse: embedded chdb "
            "in clickhouse.data_dir when clickhouse.host is empty, else the server; Parquet; text), exactly "
            "as a live engine would fill them: periodic snapshots, period resets, a final snapshot of every "
            "task; the alerter's rules are checked on the final state (alerter.enabled). Exit status 1 if a "
            "writer could not store everything.",
        ),
    ] = False,
    flow_export: Annotated[
        bool,
        typer.Option(
            "--flow-export",
            help="The files are captures of flow exports (e.g. tcpdump -w exports.pcap udp port 2055): the "
            "UDP payloads — NetFlow v5, v9, IPFIX, sFlow v5, detected per datagram — are decoded exactly as "
            "netspectra collect decodes them (templates, sampling rates, sFlow sampled headers through the "
            "capture decoder) and every flow record goes to the tasks as one row of its packets and bytes "
            "times its sampling rate. The summary shows the collector's counters (datagrams, records, decode "
            "errors, sequence gaps, exporters and their sampling rates) and, for sFlow counter samples, each "
            "interface's last counters. See docs/collect.md.",
        ),
    ] = False,
    export_port: Annotated[
        list[int] | None,
        typer.Option(
            "--export-port",
            min=0,
            max=65535,
            help="With --flow-export: only UDP datagrams to this destination port (repeatable; default: "
            "every UDP datagram of the capture, others are counted as decode errors).",
        ),
    ] = None,
    top: Annotated[
        int, typer.Option("--top", "-n", min=0, help="Rows in each top-flows table (0: none).")
    ] = 10,
    json_out: Annotated[
        bool,
        typer.Option("--json", help="Print the summary as one JSON document on stdout instead of tables."),
    ] = False,
    batch_size: Annotated[
        int,
        typer.Option(
            "--batch-size",
            min=1,
            # 16 x the default: a batch's columns take ~60 B a packet and the reader keeps a few of them, so
            # a larger one only costs memory (a typo of extra digits was a numpy traceback)
            max=4_194_304,
            help="Packets per columnar batch.",
            rich_help_panel="Tuning",
        ),
    ] = 262_144,
    progress: Annotated[
        bool | None,
        typer.Option(
            "--progress/--no-progress", help="Progress bar on stderr (default: when stderr is a terminal)."
        ),
    ] = None,
) -> None:
    """Account for every flow of one or more capture files, exactly; find heavy hitters and super-spreaders.

    Runs the tasks of the configuration (without --config: the shipped configuration, the original's
    tasks: **per_five_tuple**, exact, keyed on SrcIP, DstIP, SrcPort, DstPort, Protocol; **cm_src_left**,
    a heavy-hitter sketch per SrcIP; **ss_src_dst**, a super-spreader sketch of distinct DstIPs per SrcIP)
    over every packet, prints a summary (packets, bytes, flows, skipped and truncated packets by reason,
    packets/s; records claiming a wire length above 1 MiB are damaged: counted by reason, kept out of
    bytes and flows), the top flows, heavy hitters by packets and by bytes, and super-spreaders. With --out
    it writes every exact task's flows (columns of the original's flow_metrics table) and every sketch
    task's list (columns of its heavy_hitters table: TaskName, Flow, Value, Type with Type 0 packets,
    1 bytes, 2 spread); with --flows also flow records (flows by end reason and the top connections in
    the summary, one row per record in the flows task's file: <out>/flows.parquet by default). With an
    **enrichment** section (GeoIP/ASN MMDB databases, a networks map, classifiers) every packet is
    enriched once with the columns the tasks
    read: **rollup** tasks print the top values of each dimension (SrcAS, DstCountry, SrcNetName, ...;
    --out: their rows per 1-minute, 5-minute and 1-hour bucket), exact and sketch tasks may key on those
    columns, and an "Enrichment" table says which databases loaded and how many rows went without one
    (a missing or damaged database is a warning, never an error; docs/enrichment.md). A damaged file
    (pcap, pcapng, or gzip of either: cut short, corrupt, bad CRC) is analysed up to the damage, every
    packet before it counted, reported with its byte offset, and the exit status is 1 (also for a
    missing or unreadable file; the other files are still analysed); trailing garbage after gzip data is
    ignored with a warning, as gzip does. A file --out cannot write is named with the reason and the exit
    status is 1 too (the other files are written). Configuration and usage errors exit with 2.
    """
    # imported here, not at module level: `netspectra --help` must not load the engine (start-up time)
    from netspectra import process

    if not store and process.OWN_PROCESS:  # never in a test runner's or a library user's process
        from netspectra.lazy import keep_pandas_unloaded

        keep_pandas_unloaded()  # pyarrow would import it (0.2-0.3 s) only to check argument types
    from rich.markup import escape

    from netspectra.config import ConfigError, load_config
    from netspectra.kinds import AGGREGATORS
    from netspectra.offline.report import TaskResult, render, summary_dict
    from netspectra.offline.run import check_key_fields, run_offline
    from netspectra.offline.warmup import capture_formats, warm_up

    try:
        cfg = load_config(config)
    except ConfigError as exc:
        raise fail(str(exc)) from None
    if export_port and not flow_export:
        raise fail("--export-port filters the datagrams of --flow-export: give --flow-export too")
    if csv and out is None:  # otherwise nothing is written, and nothing says so
        raise fail("--csv is the format of the files --out writes: give --out DIR too")
    if flows:
        from netspectra.flows.kind import with_flows_task

        cfg = with_flows_task(cfg)
    if flow_export:  # the exporters of the capture, listed by `query exporters` after --store
        from netspectra.collect.exporters_kind import with_exporters_task

        cfg = with_exporters_task(cfg)
    try:
        check_key_fields(cfg, flow_export=flow_export)  # before the kernels are prepared
    except ConfigError as exc:
        raise fail(str(exc)) from None
    if not any(group.tasks for _, group in cfg.aggregator.running_groups()) and not any(
        name not in cfg.aggregator.groups for name in cfg.aggregator.types
    ):
        message = "the configuration has no task to run (aggregator.types and the tasks of those groups)"
        if cfg.enrichment.enabled:  # the docs' enrichment example alone: a user expects the top AS here
            message += (
                "; the enrichment section only adds columns for tasks to read: for the top AS numbers, "
                "countries and networks add a rollup task (aggregator: {types: [rollup], rollup: {tasks: "
                "[{name: traffic}]}}; docs/enrichment.md, 'Rollups')"
            )
        raise fail(message)
    if store:
        _check_embedded_stores(cfg)
    if out is not None:
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise fail(f"cannot create output directory {out}: {exc.strerror}") from None

    show_progress = err_console.is_terminal if progress is None else progress
    formats = capture_formats(files)  # the walkers of the files' formats only (pcap, pcapng)
    if show_progress:
        with err_console.status("preparing kernels (compiled once after installation, then cached) ..."):
            took = warm_up(cfg, formats=formats, exports=bool(flow_export))
    else:  # no spinner, and rich's live display and progress modules stay unloaded (start-up time)
        took = warm_up(cfg, formats=formats, exports=bool(flow_export))
    log.info("kernels ready in %.2f s", took)
    if process.OWN_PROCESS:  # not in a test runner calling the command in-process
        # What start-up made (modules, the configuration: a 2,000-network map is ~30 k objects, the
        # kernels) lives until the command ends: kept out of the collector's full passes, which walked
        # all of it every time (~0.05 s of the 2,000-network configuration's run).
        gc.freeze()
    process.resume_gc()  # paused by the entry point for start-up (no-op otherwise)
    with _progress_bar() if show_progress else nullcontext() as bar:
        current: dict[str, Any] = {}

        def on_file_start(path: Path, size: int) -> None:
            if bar is not None:
                current["id"] = bar.add_task(path.name, total=size or None)
                current["name"] = path.name

        def on_progress(done: int) -> None:
            if "id" in current:
                bar.update(current["id"], completed=done)

        def on_reading_done() -> None:
            # the tasks' last batches and final results (with --out: the files, seconds for millions of
            # rollup rows) follow the last file's full bar: say what is going on meanwhile
            if bar is not None and "id" in current:
                what = "writing the --out files" if out is not None else "the final results"
                bar.update(current["id"], description=f"{current['name']} — finishing: {what}")

        refused: tuple[type[Exception], ...] = (ConfigError,)
        if store:  # the alerter (and its settings' errors) only with --store
            from netspectra.alerting.alerter import AlertingConfigError

            refused = (ConfigError, AlertingConfigError)

        def attach(manager: Any) -> None:
            # the original's pcap-analyzer ran the alerter too: with --store, rules checked on the final state
            from netspectra.alerting.alerter import attach_alerter
            from netspectra.storage.alerts import alert_sink_for

            attach_alerter(manager, cfg, sink=alert_sink_for(cfg))

        try:
            run = run_offline(
                files,
                cfg,
                writers=store,
                out=out,
                csv=csv,
                batch_size=batch_size,
                on_file_start=on_file_start,
                progress=on_progress,
                on_manager=attach if store else None,
                on_reading_done=on_reading_done,
                flow_export=flow_export,
                export_ports=tuple(export_port or ()),
            )
        except refused as exc:
            raise fail(str(exc)) from None

    result, manager = run.result, run.manager
    engine_metrics = manager.metrics_dict() if store else None
    tasks = []
    for group in manager.groups:
        kind = AGGREGATORS.get(group.name)
        tasks.extend(TaskResult(kind, t.task, kind.report_snapshot(t.task, top)) for t in group.tasks)
    enrichment = manager.enrichment.summary() if manager.enrichment is not None else None
    if json_out:
        doc = summary_dict(result, tasks, top, run.written)
        if out is not None:  # the files of "written" are not all there were: which not, and why
            doc["out_errors"] = run.out_errors
        if enrichment is not None:
            doc["enrichment"] = enrichment
        if engine_metrics is not None:
            doc["store"] = engine_metrics["writers"]
        print(json.dumps(doc, indent=2))
    else:
        for renderable in render(result, tasks, top):
            console.print(renderable, highlight=False)
        if enrichment is not None:
            _print_enrichment(enrichment)
        if engine_metrics is not None:
            _print_store(engine_metrics)
        for p in run.written:
            console.print(f"wrote {p}", highlight=False)
    lost = _store_losses(engine_metrics) + run.out_errors
    for line in lost:
        err_console.print(f"[bold red]error:[/] {escape(line)}", highlight=False, soft_wrap=True)
    for err in result.errors:
        err_console.print(f"[bold red]error:[/] {escape(str(err))}", highlight=False, soft_wrap=True)
    if result.errors or lost:
        raise typer.Exit(1)


def _progress_bar() -> Any:
    """The per-file progress bar on stderr (bytes read of each capture, speed, time left)."""
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=True,
    )


def _print_enrichment(summary: dict[str, Any]) -> None:
    from rich.markup import escape
    from rich.table import Table

    from netspectra.engine.enrichment import summary_rows

    t = Table(title="Enrichment", show_header=False, title_justify="left", box=None, pad_edge=False)
    t.add_column(style="bold")
    t.add_column(overflow="fold")
    for label, value in summary_rows(summary):
        t.add_row(label, escape(str(value)))
    console.print(t)


def _print_store(metrics: dict[str, Any]) -> None:
    from rich.table import Table

    t = Table(title="Stored through the engine", title_justify="left")
    for c in ("Writer", "Snapshots written", "Failed attempts", "Dropped"):
        t.add_column(c, justify="left" if c == "Writer" else "right")
    for name, w in metrics["writers"].items():
        t.add_row(name, f"{w['written']:,}", f"{w['failed']:,}", f"{w['dropped']:,}")
    if not metrics["writers"]:
        console.print("--store: the configuration enables no writer; nothing was stored", highlight=False)
        return
    console.print(t)


def _store_losses(metrics: dict[str, Any] | None) -> list[str]:
    """One message per writer that lost data (superseded snapshots lose nothing and are not reported)."""
    if metrics is None:
        return []
    lines = []
    for name, w in metrics["writers"].items():
        lost = {k: v for k, v in w["dropped_by_reason"].items() if k != "superseded" and v}
        if lost:
            why = ", ".join(f"{v} {_LOSS_REASONS.get(k, k)}" for k, v in sorted(lost.items()))
            line = f"writer {name} could not store {sum(lost.values())} snapshot(s) ({why})"
            if w.get("open_failed"):  # (``opened`` is False after any close: it cannot tell "never")
                line += f"; opening it failed {w['open_failed']} time(s): the warnings above say why"
            lines.append(line)
    return lines


#: ``WriterMetrics.dropped`` reasons in words (``superseded`` loses nothing and is not reported).
_LOSS_REASONS = {
    "close": "still unwritten when the writer had to close",
    "attempts": "given up after the last retry",
    "overflow": "dropped from a full buffer",
}


def _check_embedded_stores(cfg: Any) -> None:
    """With ``--store``: an embedded ClickHouse data directory another process has open (a running ``up``)
    is an error before the analysis, in one line (the writers found it after the analysis, retried for
    30 s with chdb's raw log lines, and lost the results)."""
    from netspectra.storage.backend_chdb import check_not_in_use, data_dir_of
    from netspectra.storage.base import StorageError

    for _, group in cfg.aggregator.running_groups():
        for writer in group.writers:
            if writer.enabled and writer.type == "clickhouse" and not writer.params.host:
                try:
                    check_not_in_use(data_dir_of(writer.params))
                except StorageError as exc:
                    raise fail(str(exc), 1) from None
