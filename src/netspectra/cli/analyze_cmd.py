"""``netspectra analyze``: offline analysis of capture files (the original's ``pcap-analyzer``)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from netspectra.alerting.alerter import AlertingConfigError, attach_alerter
from netspectra.capture.names import ethertype_name, linktype_name, protocol_name
from netspectra.capture.status import MAX_WIRE_LENGTH
from netspectra.cli.common import ConfigOption, console, err_console, fail
from netspectra.config import ConfigError, load_config
from netspectra.engine import run_offline
from netspectra.offline.analyzer import AnalysisResult, analyze_files
from netspectra.offline.warmup import warm_up
from netspectra.output.flow_table import write_csv, write_parquet
from netspectra.output.timefmt import format_ts_ns
from netspectra.sketches.base import HitterType, SketchSnapshot, SketchTask
from netspectra.storage.alerts import alert_sink_for
from netspectra.tasks.exact import ExactTask, FlowSnapshot

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
            help="Directory for results: one file per task, named <task>.parquet (or .csv with --csv), with "
            "the columns of the original's flow_metrics table.",
            file_okay=False,
        ),
    ] = None,
    csv: Annotated[bool, typer.Option("--csv", help="Write CSV instead of Parquet into --out.")] = False,
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
    top: Annotated[
        int, typer.Option("--top", "-n", min=0, help="Rows in each top-flows table (0: none).")
    ] = 10,
    json_out: Annotated[
        bool,
        typer.Option("--json", help="Print the summary as one JSON document on stdout instead of tables."),
    ] = False,
    batch_size: Annotated[
        int, typer.Option("--batch-size", min=1, help="Packets per columnar batch.", rich_help_panel="Tuning")
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
    bytes and flows), the top flows, heavy hitters by packets and by bytes, and super-spreaders. With --out it
    writes every exact task's flows (columns of the original's flow_metrics table) and every sketch task's
    list (columns of its heavy_hitters table: TaskName, Flow, Value, Type with Type 0 packets, 1 bytes,
    2 spread). A damaged file (pcap, pcapng, or gzip of either: cut short, corrupt, bad CRC) is analysed up to
    the damage, every packet before it counted, reported with its byte offset, and the exit status is 1
    (also for a missing or unreadable file; the other files are still analysed); trailing garbage after gzip
    data is ignored with a warning, as gzip does. Configuration and usage errors exit with 2.
    """
    try:
        cfg = load_config(config)
    except ConfigError as exc:
        raise fail(str(exc)) from None
    types = cfg.aggregator.types
    exact_cfg = cfg.aggregator.exact.tasks if "exact" in types else ()
    sketch_cfg = cfg.aggregator.sketch.tasks if "sketch" in types else ()
    if not exact_cfg and not sketch_cfg:
        raise fail("the configuration has no task to run (aggregator.types and its exact/sketch tasks)")
    exact_tasks: list[ExactTask] = []
    sketch_tasks: list[SketchTask] = []
    if not store:
        exact_tasks = [ExactTask(t.name, t.key_fields) for t in exact_cfg]
        try:
            sketch_tasks = [SketchTask.from_config(t) for t in sketch_cfg]
        except ValueError as exc:
            raise fail(f"sketch task: {exc}") from None
    if out is not None:
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise fail(f"cannot create output directory {out}: {exc.strerror}") from None

    show_progress = err_console.is_terminal if progress is None else progress
    with err_console.status("preparing kernels (compiled once after installation, then cached) ...") as st:
        if not show_progress:
            st.stop()
        took = warm_up({int(t.skt_type) for t in sketch_cfg})
    log.info("kernels ready in %.2f s", took)
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=err_console,
        disable=not show_progress,
        transient=True,
    ) as bar:
        current: dict[str, Any] = {}

        def on_file_start(path: Path, size: int) -> None:
            current["id"] = bar.add_task(path.name, total=size or None)

        def on_progress(done: int) -> None:
            if "id" in current:
                bar.update(current["id"], completed=done)

        engine_metrics: dict[str, Any] | None = None
        if store:
            try:
                result, manager = run_offline(
                    files,
                    cfg,
                    writers=True,
                    batch_size=batch_size,
                    on_file_start=on_file_start,
                    progress=on_progress,
                    # the original's pcap-analyzer ran the alerter too: rules checked on the final state
                    on_manager=lambda m: attach_alerter(m, cfg, sink=alert_sink_for(cfg)),
                )
            except (ConfigError, AlertingConfigError) as exc:
                raise fail(str(exc)) from None
            exact_tasks = [manager.task(t.name).task for t in exact_cfg]
            sketch_tasks = [manager.task(t.name).task for t in sketch_cfg]
            engine_metrics = manager.metrics_dict()
        else:
            result = analyze_files(
                files,
                [*exact_tasks, *sketch_tasks],
                batch_size=batch_size,
                on_file_start=on_file_start,
                progress=on_progress,
            )

    snapshots = [t.snapshot() for t in exact_tasks]
    sketches = [t.snapshot() for t in sketch_tasks]
    written: list[Path] = []
    if out is not None:
        for snap in [*snapshots, *sketches]:
            path = out / f"{snap.task_name}.{'csv' if csv else 'parquet'}"
            (write_csv if csv else write_parquet)(snap.to_arrow(), path)
            written.append(path)

    if json_out:
        doc = _summary_dict(result, snapshots, top, written)
        doc["sketch_tasks"] = [_sketch_dict(t, s, top) for t, s in zip(sketch_tasks, sketches, strict=True)]
        if engine_metrics is not None:
            doc["store"] = engine_metrics["writers"]
        print(json.dumps(doc, indent=2))
    else:
        _print_summary(result, snapshots, top, written)
        _print_sketches(sketch_tasks, sketches, top)
        if engine_metrics is not None:
            _print_store(engine_metrics)
    lost = _store_losses(engine_metrics)
    for line in lost:
        err_console.print(f"[bold red]error:[/] {line}", highlight=False, soft_wrap=True)
    for err in result.errors:
        err_console.print(f"[bold red]error:[/] {err}", highlight=False, soft_wrap=True)
    if result.errors or lost:
        raise typer.Exit(1)


_HITTER_TITLES = {
    HitterType.COUNT: ("Heavy hitters by packets", "Packets"),
    HitterType.SIZE: ("Heavy hitters by bytes", "Bytes"),
    HitterType.SPREAD: ("Super-spreaders", "Distinct elements"),
}


def _sketch_dict(task: SketchTask, snap: SketchSnapshot, top: int) -> dict[str, Any]:
    p = task.params
    return {
        "name": p.name,
        "skt_type": p.skt_type,
        "flow_fields": list(p.flow_fields),
        "element_fields": list(p.element_fields),
        "seed": p.seed,
        "memory_bytes": task.memory_bytes,
        "heavy_hitters": {
            t.name.lower(): {"count": len(h), "top": [{"flow": f, "value": v} for f, v in h.to_list()[:top]]}
            for t, h in sorted(snap.hitters.items())
        },
    }


def _print_sketches(tasks: list[SketchTask], snaps: list[SketchSnapshot], top: int) -> None:
    for task, snap in zip(tasks, snaps, strict=True):
        flow = " ".join(task.flow_fields)
        for kind, hitters in sorted(snap.hitters.items()):
            title, unit = _HITTER_TITLES[HitterType(kind)]
            shown = hitters.to_list()[:top]
            console.print(
                f"[bold]{title}[/] — task {task.name} ({len(hitters):,} flows over the threshold"
                f"{', top ' + str(len(shown)) if len(shown) < len(hitters) else ''})",
                highlight=False,
            )
            if not shown:
                continue
            t = Table()
            t.add_column(f"Flow ({flow})", overflow="fold")
            t.add_column(unit, justify="right")
            for f, v in shown:
                t.add_row(f, f"{v:,}")
            console.print(t)


def _flow_rows(snap: FlowSnapshot, n: int, by: str) -> list[dict[str, Any]]:
    if n == 0 or len(snap) == 0:
        return []
    return snap.top(n, by=by).to_arrow().drop_columns(["TaskName"]).to_pylist()


def _summary_dict(
    result: AnalysisResult, snapshots: list[FlowSnapshot], top: int, written: list[Path]
) -> dict[str, Any]:
    st = result.stats.as_dict()
    return {
        "files": [
            {
                "path": str(f.path),
                "format": f.format,
                "compressed": f.compressed,
                "packets": f.stats.records,
                "error": str(f.error) if f.error else None,
                "warnings": list(f.stats.warnings),
            }
            for f in result.files
        ],
        "packets": st["records"],
        "bytes": st["wire_bytes"],
        "ip_packets": st["ip_packets"],
        "ip_bytes": st["ip_bytes"],
        "skipped": st["skipped"],
        "truncated": st["truncated"],
        "snaplen_cut": st["snaplen_cut"],
        "implausible_length": st["implausible_length"],
        "ts_overflow": st["ts_overflow"],
        "by_status": st["by_status"],
        "non_ip_by_ethertype": {f"0x{k:04x}": v for k, v in st["non_ip"].items()},
        "linktype_unsupported": {str(k): v for k, v in st["linktype_unsupported"].items()},
        "first_ts_ns": st["first_ts_ns"],
        "last_ts_ns": st["last_ts_ns"],
        "warnings": st["warnings"],
        "elapsed_s": result.elapsed_s,
        "packets_per_second": result.packets_per_second,
        "tasks": [
            {
                "name": s.task_name,
                "key_fields": list(s.key_fields),
                "flows": len(s),
                "packets": s.total_packets,
                "bytes": s.total_bytes,
                "top_by_bytes": _jsonable(_flow_rows(s, top, "bytes")),
            }
            for s in snapshots
        ],
        "written": [str(p) for p in written],
    }


def _jsonable(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for r in rows:
        for k in ("StartTime", "EndTime"):
            if r.get(k) is not None:
                r[k] = r[k].isoformat().replace("+00:00", "Z")
    return rows


def _print_summary(
    result: AnalysisResult, snapshots: list[FlowSnapshot], top: int, written: list[Path]
) -> None:
    st = result.stats
    summary = Table(
        title="Capture summary", show_header=False, title_justify="left", box=None, pad_edge=False
    )
    summary.add_column(style="bold")
    summary.add_column(justify="right")
    summary.add_row(
        "Files", f"{len(result.files)}" + (f" ({len(result.errors)} damaged)" if result.errors else "")
    )
    summary.add_row("Packets", f"{st.records:,}")
    summary.add_row("Bytes (wire)", f"{st.wire_bytes:,}")
    summary.add_row("IP packets in flows", f"{st.ip_packets:,}")
    summary.add_row("Skipped (not in a flow)", f"{st.skipped:,}")
    summary.add_row("Truncated headers", f"{st.truncated:,}")
    summary.add_row("Cut by snap length", f"{st.snaplen_cut:,}")
    if st.implausible_length:
        summary.add_row("Damaged: implausible length", f"{st.implausible_length:,}")
    if st.ts_overflow:
        summary.add_row("Timestamps out of range (clamped)", f"{st.ts_overflow:,}")
    if st.warnings:
        summary.add_row("Warnings (see log)", f"{len(st.warnings):,}")
    if st.first_ts_ns is not None and st.last_ts_ns is not None:
        summary.add_row("First packet (UTC)", format_ts_ns(st.first_ts_ns))
        summary.add_row("Last packet (UTC)", format_ts_ns(st.last_ts_ns))
    for s in snapshots:
        summary.add_row(f"Flows ({s.task_name})", f"{len(s):,}")
    summary.add_row("Elapsed", f"{result.elapsed_s:.3f} s")
    summary.add_row("Rate", _rate(result.packets_per_second))
    console.print(summary)

    reasons = _reason_rows(result)
    if reasons:
        t = Table(title="Skipped and truncated packets by reason", title_justify="left")
        t.add_column("Reason")
        t.add_column("Detail")
        t.add_column("Packets", justify="right")
        for reason, detail, n in reasons:
            t.add_row(reason, detail, f"{n:,}")
        console.print(t)

    for s in snapshots:
        rows = _flow_rows(s, top, "bytes")
        if not rows:
            continue
        t = Table(title=f"Top {len(rows)} flows by bytes — task {s.task_name}", title_justify="left")
        cols = [c for c in ("SrcIP", "DstIP", "SrcPort", "DstPort", "Protocol") if c in s.key_fields]
        for c in cols:
            # fold, never cut: an address shortened with an ellipsis is a wrong address
            t.add_column(c, justify="right" if c.endswith("Port") else "left", overflow="fold")
        t.add_column("Packets", justify="right")
        t.add_column("Bytes", justify="right")
        for r in rows:
            cells = [protocol_name(r[c]) if c == "Protocol" else str(r[c]) for c in cols]
            t.add_row(*cells, f"{r['PacketCount']:,}", f"{r['ByteCount']:,}")
        console.print(t)
    for p in written:
        console.print(f"wrote {p}", highlight=False)


def _print_store(metrics: dict[str, Any]) -> None:
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
            lines.append(f"writer {name} could not store {sum(lost.values())} snapshot(s): {lost}")
    return lines


def _rate(pps: float) -> str:
    return f"{pps / 1e6:,.2f} M packets/s" if pps >= 1e6 else f"{pps:,.0f} packets/s"


def _reason_rows(result: AnalysisResult) -> list[tuple[str, str, int]]:
    st = result.stats
    rows: list[tuple[str, str, int]] = []
    for ethertype, n in sorted(st.non_ip.items(), key=lambda kv: -kv[1]):
        rows.append(("not IP", ethertype_name(ethertype), n))
    for lt, n in sorted(st.linktype_unsupported.items(), key=lambda kv: -kv[1]):
        rows.append(("link type not decoded", linktype_name(lt), n))
    for name, n in st.by_status.items():
        if n and name not in ("ok", "non_ip", "linktype_unsupported"):
            rows.append((name.replace("_", " "), _REASON_DETAIL.get(name, ""), n))
    return rows


_REASON_DETAIL = {
    "implausible_length": f"wire length above {MAX_WIRE_LENGTH >> 20} MiB: damaged record, in no byte total",
}
