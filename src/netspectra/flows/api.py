"""The notebook entry point: a capture's flow records as one Arrow table (``.to_pandas()`` for pandas).

::

    import netspectra.flows

    flows = netspectra.flows.read("capture.pcap")                      # pyarrow.Table, one row per record
    df = netspectra.flows.read("capture.pcap", idle_timeout=30, splt=10).to_pandas()
    df.groupby("ConnState").SrcToDstBytes.sum()

The columns are those of ``netspectra analyze --flows --out``
(:data:`~netspectra.flows.records.FLOW_RECORDS_SCHEMA`, see docs/flows.md); rows are in the order the
records ended.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pyarrow as pa

Seconds = float | int | timedelta | str


def _ns(value: Seconds, name: str) -> int:
    """``value`` (seconds, a timedelta, or a Go duration text such as ``"120s"`` as the configuration
    takes it) in nanoseconds; ``ValueError`` naming ``name`` for anything else or a value not above 0."""
    expected = "a positive number of seconds, a timedelta or a duration such as '120s'"
    if isinstance(value, str):
        from netspectra.config.base import parse_go_duration

        try:
            value = parse_go_duration(value.strip())
        except ValueError as exc:
            raise ValueError(f"{name} must be {expected}: {exc}") from None
    try:
        seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be {expected}, got {value!r}") from None
    if not seconds > 0:
        raise ValueError(f"{name} must be {expected}, got {value!r}")
    return round(seconds * 1e9)


def read(
    paths: str | PathLike[str] | Iterable[str | PathLike[str]],
    *,
    idle_timeout: Seconds = 120,
    active_timeout: Seconds = 1800,
    tcp_end: bool = False,
    tcp_end_grace: Seconds = 2,
    splt: int = 0,
    statistics: bool = True,
    max_flows: int = 1_000_000,
    name: str = "flows",
    batch_size: int = 262_144,
) -> pa.Table:
    """The flow records of one capture file or several (read in order, as one stream), as a
    :class:`pyarrow.Table` with the columns of ``netspectra analyze --flows``.

    ``idle_timeout`` and ``active_timeout`` (seconds, a :class:`~datetime.timedelta` or a duration text
    as in the configuration, ``"120s"``, ``"30m"``; nfstream's
    defaults and semantics, in packet time), ``tcp_end`` (end a TCP flow ``tcp_end_grace`` after FIN from
    both sides or a RST), ``splt`` (sizes and directions of the first N packets: ``SpltSize``,
    ``SpltDirection``), ``statistics`` (size and inter-arrival statistics per direction) and
    ``max_flows`` (open flows at most; when full the least recently active end early, ``EndReason``
    ``table_full``) are those of a ``flows`` task (docs/flows.md); every flow still open at the end
    of the input ends with ``EndReason`` ``end_of_input``. ``name`` fills ``TaskName``.

    A missing, unreadable or damaged capture raises :class:`~netspectra.capture.errors.CaptureError`
    naming the file and the byte offset; ``ValueError`` for a bad option.
    """
    import pyarrow as pa

    from netspectra.capture.reader import CaptureReader
    from netspectra.flows.records import FlowRecords
    from netspectra.flows.task import FlowParams, FlowTask

    params = FlowParams(
        idle_timeout_ns=_ns(idle_timeout, "idle_timeout"),
        active_timeout_ns=_ns(active_timeout, "active_timeout"),
        tcp_end=tcp_end,
        tcp_end_grace_ns=_ns(tcp_end_grace, "tcp_end_grace"),
        splt=splt,
        statistics=statistics,
        max_flows=max_flows,
    )
    files = [paths] if isinstance(paths, str | PathLike) else list(paths)
    task = FlowTask(name, params)
    tables: list[pa.Table] = []
    for path in files:
        for batch in CaptureReader(Path(path), batch_size=batch_size, extras=True):
            task.update(batch)
            if task.pending >= batch_size:  # hand records to Arrow as they come: bounded extra memory
                tables.append(task.drain().to_arrow())
    task.finish("end_of_input")
    tables.append(task.drain().to_arrow())
    if len(tables) == 1:
        return tables[0]
    return pa.concat_tables(tables) if tables else FlowRecords.empty(name, splt, statistics).to_arrow()
