"""The ``exact`` aggregator kind: every flow of every task counted exactly.

A task entry of ``aggregator.exact.tasks`` is ``name``, ``key_fields`` (a set of key fields of
:mod:`netspectra.fields` — the five packet fields, VlanID, ExporterAddress, InIf, OutIf, the enrichment
columns; the order is kept for display) and the original's ``num_shards`` (accepted, a partitioning hint
only). Snapshots are
:class:`~netspectra.tasks.exact.FlowSnapshot` objects (the columns of the original's ``flow_metrics``
table), delivered with ``write_flows``. Alert metrics: ``total_packets``, ``total_bytes``,
``total_flows`` — one number per snapshot.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import field_validator

from netspectra.config.base import FieldList, TaskConfig, UInt32, fields_list
from netspectra.engine.kind import AggregatorKind, Metric

if TYPE_CHECKING:
    from netspectra.engine.groups import EngineTask
    from netspectra.storage.base import SnapshotMeta

#: ``num_shards`` of 0 or at least this value becomes :data:`DEFAULT_NUM_SHARDS` (the original's rule).
MAX_NUM_SHARDS = 32768
DEFAULT_NUM_SHARDS = 256


class ExactTaskConfig(TaskConfig):
    """One exact task: every flow keyed on ``key_fields``, counted exactly."""

    _hints: ClassVar[dict[str, str]] = {"key": "key_fields"}

    #: Subset of the key fields, each at most once; order = display order.
    key_fields: FieldList
    #: 0 or >= 32768 -> 256 (the original's rule). Kept for compatibility; a partitioning hint only.
    num_shards: UInt32 = DEFAULT_NUM_SHARDS

    @field_validator("key_fields")
    @classmethod
    def _fields(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return fields_list(v, "key_fields", required=True)

    @field_validator("num_shards")
    @classmethod
    def _shards(cls, v: int) -> int:
        return DEFAULT_NUM_SHARDS if v == 0 or v >= MAX_NUM_SHARDS else v


class ExactAggregator(AggregatorKind):
    """The ``exact`` aggregator (see the module docstring)."""

    name = "exact"
    task_model = ExactTaskConfig
    description = "exact flow accounting: packets, bytes, first and last time of every flow"
    metrics: ClassVar[Mapping[str, Metric]] = {
        "total_packets": Metric("total_packets", "packets counted by the task", unit="packets"),
        "total_bytes": Metric("total_bytes", "bytes (wire length) counted by the task", unit="bytes"),
        "total_flows": Metric("total_flows", "distinct flows of the task", unit="flows"),
    }

    def build_task(self, task: Any) -> EngineTask:
        from netspectra.engine.groups import LockedTask
        from netspectra.tasks.exact import ExactTask

        return LockedTask(ExactTask(task.name, task.key_fields))

    def deliver(self, writer: Any, snap: Any, meta: SnapshotMeta) -> None:
        writer.write_flows(snap, meta)

    def warm_up(self, tasks: Sequence[Any] | None) -> None:
        from netspectra.batch import PacketBatch
        from netspectra.fields import PACKET_FIELDS
        from netspectra.tasks.exact import ExactTask

        batch = PacketBatch.empty(2)
        for column in PacketBatch.COLUMNS:
            getattr(batch, column)[:] = 0
        # the five-tuple kernel, and the one with extra key words when a task keys on other fields
        # (the warm-up batch lacks their columns: the task's unknown-value path, quietly)
        keyed = [PACKET_FIELDS]
        if any(set(t.key_fields) - set(PACKET_FIELDS) for t in tasks or ()):
            keyed.append(("SrcIP", "InIf"))
        logger = logging.getLogger("netspectra.key_columns")
        level = logger.level
        logger.setLevel(logging.ERROR)
        try:
            for fields in keyed:
                task = ExactTask("warm_up", fields, capacity_hint=4)
                task.update(batch)
                snap = task.snapshot()  # every run's report takes one (the rows' export kernel)
                if tasks is None:  # an image build: the Arrow output's kernels too (see AggregatorKind)
                    snap.to_arrow()
        finally:
            logger.setLevel(level)

    def columns_for(self, tasks: Sequence[Any]) -> tuple[str, ...]:
        """The optional columns of the key fields ``tasks`` key on (``vlan_id`` for VlanID): what a
        reader or probe feeding them decodes. Export and enrichment columns come from their stages."""
        from netspectra.fields import BY_NAME

        return tuple(
            dict.fromkeys(
                BY_NAME[f].column
                for t in tasks
                for f in t.key_fields
                if BY_NAME[f].source == "optional" and BY_NAME[f].column == "vlan_id"
            )
        )

    report_key: ClassVar[str] = "tasks"

    def summary_rows(self, snap: Any) -> list[tuple[str, str]]:
        return [(f"Flows ({snap.task_name})", f"{len(snap):,}")]

    def report_snapshot(self, task: Any, top: int) -> Any:
        # the report reads the flow count, the totals and the top flows by bytes: no copy of every flow
        return task.summary(max(top, 0), by="bytes")

    def report(self, task: Any, snap: Any, top: int) -> dict[str, Any]:
        return {
            "name": snap.task_name,
            "key_fields": list(snap.key_fields),
            "flows": len(snap),
            "packets": snap.total_packets,
            "bytes": snap.total_bytes,
            "unknown_key_rows": _unknown_rows(task),
            "top_by_bytes": _jsonable(_top_rows(snap, top)),
        }

    def render(self, task: Any, snap: Any, top: int) -> list[Any]:
        from rich.table import Table

        from netspectra.capture.names import protocol_name
        from netspectra.fields import FIELD_NAMES

        rows = _top_rows(snap, top)
        if not rows:
            return []
        unknown = _unknown_rows(task)
        caption = (
            "rows of batches without "
            + ", ".join(f"{f} ({n:,})" for f, n in unknown.items())
            + ": counted under 0 / '' (unknown)"
            if unknown
            else None
        )
        t = Table(
            title=f"Top {len(rows)} flows by bytes — task {snap.task_name}",
            title_justify="left",
            caption=caption,
            caption_justify="left",
        )
        cols = [c for c in FIELD_NAMES if c in snap.key_fields]
        for c in cols:
            # fold, never cut: an address shortened with an ellipsis is a wrong address
            t.add_column(c, justify="right" if c.endswith("Port") else "left", overflow="fold")
        t.add_column("Packets", justify="right")
        t.add_column("Bytes", justify="right")
        for r in rows:
            cells = [protocol_name(r[c]) if c == "Protocol" else str(r[c]) for c in cols]
            t.add_row(*cells, f"{r['PacketCount']:,}", f"{r['ByteCount']:,}")
        return [t]

    def metric_values(self, metric: str, snap: Any) -> float:
        if metric == "total_packets":
            return float(snap.total_packets)
        if metric == "total_bytes":
            return float(snap.total_bytes)
        if metric == "total_flows":
            return float(len(snap))
        raise ValueError(f"{metric!r} is not a metric of exact tasks; they have {', '.join(self.metrics)}")


def _unknown_rows(task: Any) -> dict[str, int]:
    """Rows the task counted under a key field's unknown value (batches without the field), by field."""
    inner = getattr(task, "task", task)
    return dict(getattr(inner, "missing_key_rows", {}) or {})


def _top_rows(snap: Any, n: int) -> list[dict[str, Any]]:
    """The ``n`` largest flows as dicts; times as integer ns (never through pandas' Timestamp)."""
    if n == 0 or len(snap) == 0:
        return []
    rows = snap.top(n, by="bytes").to_rows()
    for r in rows:
        del r["TaskName"]
    return rows


def _jsonable(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    from netspectra.output.timefmt import format_ts_ns

    for r in rows:
        for k in ("StartTime", "EndTime"):
            if r.get(k) is not None:
                r[k] = format_ts_ns(r[k])
    return rows


KIND = ExactAggregator()
