"""What a golden file holds for one capture; shared by tools/make_golden.py and the golden tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa

from netspectra.offline.analyzer import analyze_files
from netspectra.output.timefmt import format_ts_ns
from netspectra.tasks.exact import ExactTask

FIVE_TUPLE = ("SrcIP", "DstIP", "SrcPort", "DstPort", "Protocol")


def _analyze(capture: Path):
    task = ExactTask("per_five_tuple", FIVE_TUPLE)
    result = analyze_files([capture], [task], batch_size=4096)
    return task, result


def golden_rows(capture: Path) -> list[dict[str, Any]]:
    """Per-five-tuple flows of ``capture`` as CSV-ready dicts, sorted by key (stable text)."""
    task, _ = _analyze(capture)
    table = task.snapshot().to_arrow()
    # timestamps as integer ns: to_pylist() would round them to µs datetimes
    start = table["StartTime"].cast(pa.int64()).to_pylist()
    end = table["EndTime"].cast(pa.int64()).to_pylist()
    rows = []
    for i, r in enumerate(table.drop_columns(["StartTime", "EndTime"]).to_pylist()):
        rows.append(
            {
                "SrcIP": r["SrcIP"],
                "DstIP": r["DstIP"],
                "SrcPort": r["SrcPort"],
                "DstPort": r["DstPort"],
                "Protocol": r["Protocol"],
                "PacketCount": r["PacketCount"],
                "ByteCount": r["ByteCount"],
                "StartTime": format_ts_ns(start[i]),
                "EndTime": format_ts_ns(end[i]),
            }
        )
    rows.sort(key=lambda r: (r["SrcIP"], r["DstIP"], r["SrcPort"], r["DstPort"], r["Protocol"]))
    for r in rows:
        for k in r:
            r[k] = str(r[k])
    return rows


def golden_summary(capture: Path) -> dict[str, Any]:
    """The reader's accounting for ``capture`` (file name only, so goldens do not depend on paths)."""
    task, result = _analyze(capture)
    st = result.stats
    err = result.files[0].error
    return {
        "packets": st.records,
        "bytes": st.wire_bytes,
        "ip_packets": st.ip_packets,
        "ip_bytes": st.ip_bytes,
        "flows": len(task),
        "skipped": st.skipped,
        "truncated": st.truncated,
        "snaplen_cut": st.snaplen_cut,
        "by_status": {k: v for k, v in st.by_status.items() if v},
        "non_ip": {f"0x{k:04x}": v for k, v in sorted(st.non_ip.items())},
        "linktype_unsupported": {str(k): v for k, v in sorted(st.linktype_unsupported.items())},
        "error": None if err is None else str(err).replace(str(capture), capture.name),
    }
