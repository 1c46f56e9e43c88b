"""Offline flow exports: captures of NetFlow/IPFIX/sFlow datagrams through the collector's path into tasks.

``netspectra analyze --flow-export FILE.pcap`` (the usual way to debug an exporter: ``tcpdump -w
exports.pcap udp port 2055``). Every UDP payload of the capture (:func:`~.capture.datagrams_from_capture`,
the capture time as the receive time) goes through the same :class:`~.decoder.FlowDecoder` and
:func:`~.batches.flow_batch` as a live collector's datagrams, and the rows go to the tasks — so a capture
of an exporter's output and the live collector give the same rows. Data sets waiting for a template when
the input ends are counted as dropped.

The outcome is an :class:`~netspectra.offline.analyzer.AnalysisResult` whose ``flow_export`` holds
:func:`export_summary` (the ``analyze`` report shows it in place of the capture summary).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from netspectra.capture.errors import CaptureError
from netspectra.capture.stats import CaptureStats
from netspectra.collect.batches import FlowBatchStats, flow_batch
from netspectra.collect.capture import CaptureDatagramStats, datagrams_from_capture
from netspectra.collect.decoder import FlowDecoder
from netspectra.config.collect import CollectConfig
from netspectra.offline.analyzer import AnalysisResult, BatchTask, FileResult

log = logging.getLogger(__name__)

__all__ = ["analyze_exports", "export_summary"]


def analyze_exports(
    paths: Sequence[Path],
    tasks: Sequence[BatchTask],
    *,
    collect: CollectConfig | None = None,
    ports: tuple[int, ...] = (),
    extras: bool = False,
    on_file_start: Callable[[Path, int], None] | None = None,
) -> AnalysisResult:
    """Decode the export datagrams of every capture in ``paths`` (in order, one decoder: templates carry
    over from one file to the next, as a collector's would) and feed the rows to every task.

    ``ports``: only UDP datagrams to these destination ports (empty: every UDP datagram; anything that is
    not an export is then a decode error, counted by reason). A damaged or unreadable capture is recorded
    in its :class:`FileResult` after every datagram before the damage went to the tasks.
    """
    decoder = FlowDecoder(collect)
    rows = FlowBatchStats()
    cap = CaptureDatagramStats()
    result = AnalysisResult()
    first = last = None
    t0 = time.perf_counter()
    for path in paths:
        path = Path(path)
        fr = FileResult(path=path, stats=CaptureStats())
        if on_file_start is not None:
            on_file_start(path, 0)
        before = cap.records
        try:
            for dg in datagrams_from_capture(path, ports=ports, stats=cap):
                fr.format = fr.format or "capture"
                batch = flow_batch(decoder.decode(dg).records, extras=extras, stats=rows)
                if len(batch):
                    lo, hi = int(batch.ts_ns.min()), int(batch.ts_ns.max())
                    first = lo if first is None else min(first, lo)
                    last = hi if last is None else max(last, hi)
                    for task in tasks:
                        task.update(batch)
            fr.format = fr.format or "capture"
        except CaptureError as exc:
            fr.error = exc
            if cap.records > before:
                fr.format = fr.format or "capture"
            log.debug("capture error in %s: %s", path, exc)
        fr.stats.records = cap.records - before
        result.files.append(fr)
        result.stats.records += fr.stats.records
    decoder.close()  # sets still waiting for a template: counted as dropped
    result.elapsed_s = time.perf_counter() - t0
    result.flow_export = export_summary(decoder, rows, cap, first, last, result.elapsed_s)
    return result


def export_summary(
    decoder: FlowDecoder,
    rows: FlowBatchStats,
    cap: CaptureDatagramStats,
    first_ns: int | None,
    last_ns: int | None,
    elapsed_s: float,
) -> dict[str, Any]:
    """The flow-export part of ``analyze --json`` (and of its report)."""
    d = decoder.stats.as_dict()
    d.pop("collected_at_ns", None)
    records = int(d["totals"]["records"])
    return {
        "frames": cap.records,
        "datagrams": cap.datagrams,
        "frames_skipped": dict(cap.skipped),
        **d,
        "rows": rows.as_dict(),
        "first_ts_ns": first_ns,
        "last_ts_ns": last_ns,
        "records_per_second": records / elapsed_s if elapsed_s > 0 else 0.0,
    }


def summary_rows(fx: dict[str, Any]) -> list[tuple[str, str]]:
    """The rows of the report's flow-export summary (label, value)."""
    from netspectra.output.timefmt import format_ts_ns

    tot = fx["totals"]
    r = fx["rows"]
    out = [
        ("Frames read", f"{fx['frames']:,}"),
        ("Export datagrams (UDP payloads)", f"{fx['datagrams']:,}"),
    ]
    for reason, n in sorted(fx["frames_skipped"].items()):
        out.append((f"  frames skipped: {reason.replace('_', ' ')}", f"{n:,}"))
    out += [
        ("Exporters", f"{len(fx['exporters']):,}"),
        ("Flow records decoded", f"{tot['records']:,}"),
        (
            "sFlow counter records: decoded / interfaces kept",
            f"{tot['interface_counters']:,} / {tot['interfaces']:,}",
        ),
        ("Decode errors", f"{tot['decode_errors']:,}"),
        (
            "Sets before their template: decoded / dropped",
            f"{tot['pending_decoded_sets']:,} / {tot['pending_dropped_sets']:,}",
        ),
        ("Sequence gaps (lost export datagrams)", f"{tot['sequence_gaps']:,}"),
        ("Records without a sampling rate", f"{tot['records_without_sampling_rate']:,}"),
        ("Records without a flow key (not IP)", f"{sum(r['not_keyed'].values()):,}"),
        ("Rows (records with a flow key)", f"{r['rows']:,}"),
        ("Packets they stand for (× sampling rate)", f"{r['packets']:,}"),
        ("Bytes they stand for (× sampling rate)", f"{r['bytes']:,}"),
    ]
    if fx["first_ts_ns"] is not None:
        out.append(("First record end (UTC)", format_ts_ns(fx["first_ts_ns"])))
        out.append(("Last record end (UTC)", format_ts_ns(fx["last_ts_ns"])))
    return out


def exporter_rows(fx: dict[str, Any]) -> list[list[str]]:
    """One row per exporter for the report: address, protocols, datagrams, records, sampling rates,
    templates, sequence gaps, decode errors."""
    out = []
    for e, x in fx["exporters"].items():
        rates = ", ".join(f"{k}" for k in x["sampling_rates"]) or "-"
        out.append(
            [
                e,
                "/".join(x["kinds"]),
                f"{x['datagrams']:,}",
                f"{x['records']:,}",
                rates,
                f"{x['templates']:,}",
                f"{x['sequence_gaps']:,}",
                f"{x['decode_errors']:,}",
            ]
        )
    return out


#: The columns of the report's interfaces table: (title, value of an :meth:`.InterfaceTable.snapshot` row).
INTERFACE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("Exporter", ""),
    ("ifIndex", "if_index"),
    ("Status", ""),
    ("Speed", "if_speed"),
    ("In octets", "in_octets"),
    ("In packets", "in_packets"),
    ("In errors", "in_errors"),
    ("In discards", "in_discards"),
    ("Out octets", "out_octets"),
    ("Out packets", "out_packets"),
    ("Out errors", "out_errors"),
    ("Out discards", "out_discards"),
    ("Last sample (UTC)", ""),
)


def interface_rows(fx: dict[str, Any], limit: int = 50) -> tuple[list[list[str]], int]:
    """The report's interfaces table: one row per (exporter, ifIndex) with its last sFlow counters
    (:data:`INTERFACE_COLUMNS`; packets = unicast + multicast + broadcast, those the agent supports; ``-``
    for a counter it does not support), at most ``limit`` rows;
    returns the rows and how many were left out (``--json`` has them all)."""
    from netspectra.output.timefmt import format_ts_ns

    out: list[list[str]] = []
    every = [(e, r) for e, lst in fx.get("interfaces", {}).items() for r in lst]
    for e, r in every[:limit]:
        status = f"{'up' if r['admin_up'] else 'down'}/{'up' if r['oper_up'] else 'down'}"
        row = [e, str(r["if_index"]), status, _speed(int(r["if_speed"]))]
        row += ["-" if f in r["unsupported"] else f"{int(r[f]):,}" for _, f in INTERFACE_COLUMNS[4:-1]]
        row.append(format_ts_ns(int(r["received_ns"])))
        out.append(row)
    return out, max(0, len(every) - limit)


def _speed(bps: int) -> str:
    """``10 Gbit/s``, ``100 Mbit/s``; ``-`` for 0 or all ones (unknown)."""
    if bps <= 0 or bps == (1 << 64) - 1:
        return "-"
    for div, unit in ((10**12, "Tbit/s"), (10**9, "Gbit/s"), (10**6, "Mbit/s"), (10**3, "kbit/s")):
        if bps >= div:
            return f"{bps / div:g} {unit}"
    return f"{bps} bit/s"
