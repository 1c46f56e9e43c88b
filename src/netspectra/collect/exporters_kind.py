"""The ``exporters`` aggregator kind: per flow exporter, its last seen time, sampling rates, records,
packets and bytes — what ``netspectra query exporters`` lists.

A task entry of ``aggregator.exporters.tasks``::

    aggregator:
      types: [exact, sketch, exporters]
      exporters:
        writers:
          - {type: clickhouse, enabled: true, snapshot_interval: 60s, clickhouse: {...}}
        tasks:
          - name: exporters

``netspectra up --collect`` and ``netspectra analyze --flow-export`` add one (:func:`with_exporters_task`)
when the configuration has none, with the exact group's enabled ClickHouse writers; a separate
``netspectra engine`` fed by ``netspectra collect`` runs it when its configuration names it as above.
Snapshots are :class:`~netspectra.collect.exporters_task.ExportersSnapshot` objects (state since the period
began), delivered with ``write_exporters`` (the ClickHouse writer stores them in the ``exporters`` table).
Alert metrics: ``exporters`` (how many sent records) and ``records_without_sampling_rate``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field

from netspectra.config.base import TaskConfig
from netspectra.engine.kind import AggregatorKind, Metric

if TYPE_CHECKING:
    from netspectra.config.models import Config
    from netspectra.engine.groups import EngineTask
    from netspectra.storage.base import SnapshotMeta


class ExportersTaskConfig(TaskConfig):
    """One exporters task (one is enough: it keeps every exporter)."""

    #: Exporters kept (rows of further ones are counted, not kept).
    max_exporters: int = Field(100_000, ge=1, le=1 << 22)


class ExportersAggregator(AggregatorKind):
    """The ``exporters`` aggregator (see the module docstring)."""

    name = "exporters"
    task_model = ExportersTaskConfig
    description = "flow exporters: last seen, sampling rates, records, packets and bytes per exporter"
    metrics: ClassVar[Mapping[str, Metric]] = {
        "exporters": Metric("exporters", "exporters whose records the task has seen", unit="exporters"),
        "records_without_sampling_rate": Metric(
            "records_without_sampling_rate", "records whose sampling rate is unknown (0)", unit="records"
        ),
    }

    def build_task(self, task: Any) -> EngineTask:
        from netspectra.collect.exporters_task import ExportersTask
        from netspectra.engine.groups import LockedTask

        return LockedTask(ExportersTask(task.name, task.max_exporters))

    def deliver(self, writer: Any, snap: Any, meta: SnapshotMeta) -> None:
        writer.write_exporters(snap, meta)

    def warm_up(self, tasks: Sequence[Any] | None) -> None:
        return  # numpy only: nothing to compile

    # -- reports ------------------------------------------------------------------------------------

    report_key: ClassVar[str] = "exporter_tasks"

    def summary_rows(self, snap: Any) -> list[tuple[str, str]]:
        return [(f"Exporters ({snap.task_name})", f"{len(snap):,}")]

    def report(self, task: Any, snap: Any, top: int) -> dict[str, Any]:
        return {
            "name": snap.task_name,
            "exporters": snap.rows(),
            "rows_without_exporter": snap.rows_without_exporter,
            "rows_over_limit": snap.rows_over_limit,
        }

    def render(self, task: Any, snap: Any, top: int) -> list[Any]:
        from rich.table import Table

        from netspectra.output.timefmt import format_ts_ns

        if not len(snap):
            return []
        t = Table(title=f"Exporters — task {snap.task_name}", title_justify="left")
        for name, justify in (
            ("Exporter", "left"), ("Last record (UTC)", "left"), ("Records", "right"), ("Packets", "right"),
            ("Bytes", "right"), ("Sampling rates", "left"),
        ):  # fmt: skip
            t.add_column(name, justify=justify)  # type: ignore[arg-type]
        for r in snap.rows():
            rates = ", ".join(str(k) for k in r["sampling_rates"]) or "-"
            t.add_row(
                r["exporter"],
                format_ts_ns(r["last_ns"]),
                f"{r['records']:,}",
                f"{r['packets']:,}",
                f"{r['bytes']:,}",
                rates,
            )
        return [t]

    # -- alerting -----------------------------------------------------------------------------------

    def metric_values(self, metric: str, snap: Any) -> float:
        if metric == "exporters":
            return float(len(snap))
        if metric == "records_without_sampling_rate":
            return float(int(snap.records_without_rate.sum()))
        raise ValueError(
            f"{metric!r} is not a metric of exporters tasks; they have {', '.join(self.metrics)}"
        )


def with_exporters_task(cfg: Config) -> Config:
    """``cfg`` running the ``exporters`` kind: unchanged when ``aggregator.types`` has it and its section
    has tasks; else with one task named ``exporters`` (``flow_exporters`` when that name is taken), and
    ``exporters`` added to the types. A section without writers gets the exact group's enabled
    ``clickhouse`` writers, so that the exporters go to the store the totals go to."""
    from netspectra.config.aggregator import WriterConfig, group_model

    agg = cfg.aggregator
    group = agg.group("exporters")
    if "exporters" in agg.types and group.tasks:
        return cfg
    taken = {t.name for _, g in agg.running_groups() for t in g.tasks}
    name = "exporters" if "exporters" not in taken else "flow_exporters"
    tasks = group.tasks or (ExportersTaskConfig(name=name),)
    writers = group.writers or tuple(
        WriterConfig(type=w.type, enabled=True, snapshot_interval=w.snapshot_interval, params=w.params)
        for w in agg.exact.writers
        if w.enabled and w.type == "clickhouse"
    )
    section = group_model(ExportersTaskConfig)(writers=writers, tasks=tasks)
    types = agg.types if "exporters" in agg.types else (*agg.types, "exporters")
    new_agg = agg.model_copy(update={"groups": {**agg.groups, "exporters": section}, "types": types})
    return cfg.model_copy(update={"aggregator": new_agg})


KIND = ExportersAggregator()
