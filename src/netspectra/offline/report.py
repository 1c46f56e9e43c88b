"""The report of an offline run: the capture summary, packets by reason, and each task's sections.

The capture part (files, packets, bytes, skipped and truncated packets by reason) is the same for every
run; each task's part comes from its aggregator kind (:meth:`~netspectra.engine.kind.AggregatorKind.
report` for ``--json``, :meth:`~netspectra.engine.kind.AggregatorKind.render` for the terminal), so a
new kind shows its results without changes here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from netspectra.capture.names import ethertype_name, linktype_name
from netspectra.capture.status import MAX_WIRE_LENGTH
from netspectra.engine.kind import AggregatorKind
from netspectra.kinds import AGGREGATORS
from netspectra.offline.analyzer import AnalysisResult, FileResult
from netspectra.output.timefmt import format_ts_ns


@dataclass(frozen=True)
class TaskResult:
    """One task's final state: its kind, the runtime task (``ExactTask``, ``SketchTask``, ...) and its
    snapshot."""

    kind: AggregatorKind
    task: Any
    snapshot: Any


def file_problem(f: FileResult) -> str | None:
    """``"not read"`` for a file that could not be opened as a capture, ``"damaged"`` for one read up to
    damage, None for a good file."""
    if f.error is None:
        return None
    return "damaged" if f.format else "not read"


def summary_dict(
    result: AnalysisResult, tasks: list[TaskResult], top: int, written: list[Path]
) -> dict[str, Any]:
    """``analyze --json``: the capture accounting, then each kind's task list under its report key."""
    st = result.stats.as_dict()
    doc: dict[str, Any] = {
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
    }
    for t in tasks:
        key = t.kind.report_key or f"{t.kind.name}_tasks"
        doc.setdefault(key, []).append(t.kind.report(t.task, t.snapshot, top))
    for name in AGGREGATORS.builtins:  # the built-in lists are always there, empty or not
        kind = AGGREGATORS.get(name)
        doc.setdefault(kind.report_key or f"{name}_tasks", [])
    doc["written"] = [str(p) for p in written]
    if result.flow_export is not None:
        doc["flow_export"] = result.flow_export
    return doc


def render(result: AnalysisResult, tasks: list[TaskResult], top: int) -> list[Any]:
    """The terminal report: the capture summary (left out when no file could be read at all), packets
    by reason, then every task's sections in configuration order."""
    from rich.table import Table

    out: list[Any] = []
    st = result.stats
    if result.flow_export is not None:
        out.extend(_flow_export_tables(result, tasks))
    elif any(f.format for f in result.files):
        summary = Table(
            title="Capture summary", show_header=False, title_justify="left", box=None, pad_edge=False
        )
        summary.add_column(style="bold")
        summary.add_column(justify="right")
        problems = [p for p in (file_problem(f) for f in result.files) if p]
        detail = ", ".join(f"{problems.count(p)} {p}" for p in ("not read", "damaged") if p in problems)
        summary.add_row("Files", f"{len(result.files)}" + (f" ({detail})" if detail else ""))
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
        for t in tasks:
            for label, value in t.kind.summary_rows(t.snapshot):
                summary.add_row(label, value)
        summary.add_row("Elapsed", f"{result.elapsed_s:.3f} s")
        summary.add_row("Rate", rate(result.packets_per_second))
        out.append(summary)

    reasons = reason_rows(result)
    if reasons:
        t = Table(title="Skipped and truncated packets by reason", title_justify="left")
        t.add_column("Reason")
        t.add_column("Detail")
        t.add_column("Packets", justify="right")
        for reason, detail, n in reasons:
            t.add_row(reason, detail, f"{n:,}")
        out.append(t)
    if not any(f.format for f in result.files) and result.flow_export is None:
        return out
    for task in tasks:
        out.extend(task.kind.render(task.task, task.snapshot, top))
    return out


def _flow_export_tables(result: AnalysisResult, tasks: list[TaskResult]) -> list[Any]:
    """``analyze --flow-export``: the collector's summary and one row per exporter."""
    from rich.table import Table

    from netspectra.collect.offline import INTERFACE_COLUMNS, exporter_rows, interface_rows, summary_rows

    fx = result.flow_export
    assert fx is not None
    summary = Table(
        title="Flow-export summary", show_header=False, title_justify="left", box=None, pad_edge=False
    )
    summary.add_column(style="bold")
    summary.add_column(justify="right")
    problems = [p for p in (file_problem(f) for f in result.files) if p]
    detail = ", ".join(f"{problems.count(p)} {p}" for p in ("not read", "damaged") if p in problems)
    summary.add_row("Files", f"{len(result.files)}" + (f" ({detail})" if detail else ""))
    for label, value in summary_rows(fx):
        summary.add_row(label, value)
    for t in tasks:
        for label, value in t.kind.summary_rows(t.snapshot):
            summary.add_row(label, value)
    summary.add_row("Elapsed", f"{result.elapsed_s:.3f} s")
    summary.add_row("Rate", f"{fx['records_per_second']:,.0f} records/s")
    out: list[Any] = [summary]
    rows = exporter_rows(fx)
    if rows:
        t = Table(title="Exporters", title_justify="left")
        for name in ("Exporter", "Protocols", "Datagrams", "Records", "Sampling rates", "Templates",
                     "Sequence gaps", "Decode errors"):  # fmt: skip
            t.add_column(
                name, justify="left" if name in ("Exporter", "Protocols", "Sampling rates") else "right"
            )
        for r in rows:
            t.add_row(*r)
        out.append(t)
    if_rows, left = interface_rows(fx)
    if if_rows:
        t = Table(
            title="Interfaces (last sFlow counters; status admin/oper)",
            title_justify="left",
            caption=f"{left:,} more in --json (flow_export.interfaces)" if left else None,
        )
        for name, _ in INTERFACE_COLUMNS:
            t.add_column(
                name, justify="left" if name in ("Exporter", "Status", "Last sample (UTC)") else "right"
            )
        for r in if_rows:
            t.add_row(*r)
        out.append(t)
    return out


def rate(pps: float) -> str:
    """``1.23 M packets/s`` or ``12,345 packets/s``."""
    return f"{pps / 1e6:,.2f} M packets/s" if pps >= 1e6 else f"{pps:,.0f} packets/s"


def reason_rows(result: AnalysisResult) -> list[tuple[str, str, int]]:
    """``(reason, detail, packets)`` of every packet that is not in a flow, or only partly."""
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
