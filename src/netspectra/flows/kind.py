"""The ``flows`` aggregator kind: bidirectional flow records with timeouts, TCP flags and statistics.

A task entry of ``aggregator.flows.tasks`` (several are allowed, e.g. with different timeouts)::

    aggregator:
      types: [exact, flows]
      flows:
        writers:
          - {type: parquet, enabled: true, snapshot_interval: 60s, parquet: {root_path: ./records}}
        tasks:
          - name: flows
            idle_timeout: 120s      # nfstream's defaults
            active_timeout: 1800s
            tcp_end: false          # end a TCP flow at FIN from both sides or RST, after tcp_end_grace
            tcp_end_grace: 2s
            splt: 0                 # first N packet sizes and directions
            statistics: true        # min/max/mean/stddev of sizes and inter-arrival times per direction
            max_flows: 1000000      # open flows at most; when full, the least recently active end early

Snapshots are :class:`~netspectra.flows.records.FlowRecords` — the records that ended since the previous
snapshot (see :mod:`netspectra.flows.task` and :mod:`netspectra.engine.groups`) — delivered with
``write_flow_records`` (the Parquet and text writers store them). The task needs the decoder's optional
columns (TCP flags, VLAN, ICMP type/code, IP length): readers and probes of a configuration with a flows
task decode them (:attr:`FlowsAggregator.needs_columns`). Alert metrics: ``flow_records``,
``open_flows``, ``evicted_flows``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field, field_validator

from netspectra.config.base import GoDuration, TaskConfig, format_go_duration, human_bytes
from netspectra.engine.kind import AggregatorKind, Metric

if TYPE_CHECKING:
    from netspectra.config.models import Config
    from netspectra.engine.groups import EngineTask
    from netspectra.storage.base import SnapshotMeta

#: The decoder's optional columns a flows task uses (netspectra.capture.decode.DECODER_COLUMNS).
NEEDED_COLUMNS: tuple[str, ...] = ("tcp_flags", "vlan_id", "icmp_type_code", "ip_length")
#: At most this much packet time of any timeout (a year): larger values are a unit mistake.
_MAX_TIMEOUT = timedelta(days=366)


class FlowsTaskConfig(TaskConfig):
    """One flows task: how packets are cut into bidirectional flow records."""

    #: A flow with no packet for this long ends (reason ``idle``). nfstream's default.
    idle_timeout: GoDuration = timedelta(seconds=120)
    #: A flow this long since its first packet ends (reason ``active``); the next packet starts a new one.
    active_timeout: GoDuration = timedelta(seconds=1800)
    #: End a TCP flow once both sides sent FIN or either sent RST, ``tcp_end_grace`` after its last packet.
    tcp_end: bool = False
    tcp_end_grace: GoDuration = timedelta(seconds=2)
    #: Sizes and directions of the first N packets of each flow (SPLT); 0: none.
    splt: int = Field(0, ge=0, le=255)
    #: Min/max/mean/stddev of packet sizes and inter-arrival times per direction.
    statistics: bool = True
    #: Open flows at most: when the table is full the least recently active flows end early (reason
    #: ``table_full``, counted); memory is bounded by this.
    max_flows: int = Field(1_000_000, ge=1, le=1 << 30)

    @field_validator("idle_timeout", "active_timeout", "tcp_end_grace")
    @classmethod
    def _positive(cls, v: timedelta) -> timedelta:
        if v <= timedelta(0):
            raise ValueError(f"{format_go_duration(v)!r} must be positive, e.g. 120s")
        if v > _MAX_TIMEOUT:
            raise ValueError(f"{format_go_duration(v)!r} is more than a year; write e.g. 30m or 24h")
        return v


def _ns(td: timedelta) -> int:
    return (td.days * 86_400 + td.seconds) * 1_000_000_000 + td.microseconds * 1_000


def params_of(task: FlowsTaskConfig) -> Any:
    """The :class:`~netspectra.flows.task.FlowParams` of a validated task entry."""
    from netspectra.flows.task import FlowParams

    return FlowParams(
        idle_timeout_ns=_ns(task.idle_timeout),
        active_timeout_ns=_ns(task.active_timeout),
        tcp_end=task.tcp_end,
        tcp_end_grace_ns=_ns(task.tcp_end_grace),
        splt=task.splt,
        statistics=task.statistics,
        max_flows=task.max_flows,
    )


class FlowsAggregator(AggregatorKind):
    """The ``flows`` aggregator (see the module docstring)."""

    name = "flows"
    task_model = FlowsTaskConfig
    description = "bidirectional flow records: timeouts, TCP flags and state, statistics, SPLT"
    metrics: ClassVar[Mapping[str, Metric]] = {
        "flow_records": Metric(
            "flow_records", "flow records in the snapshot (ended since the previous)", unit="records"
        ),
        "open_flows": Metric("open_flows", "flows open in the task's table at the snapshot", unit="flows"),
        "evicted_flows": Metric(
            "evicted_flows", "records of the snapshot ended early because the table was full", unit="records"
        ),
    }
    #: Optional PacketBatch columns the tasks use (readers and probes decode them for this kind).
    needs_columns: ClassVar[tuple[str, ...]] = NEEDED_COLUMNS

    def memory_bytes(self, task: Any) -> int:
        from netspectra.flows.task import table_bytes

        return table_bytes(task.max_flows, task.splt, task.statistics)

    def memory_detail(self, task: Any) -> str:
        from netspectra.flows.task import capacity_for, row_bytes

        slots, width = capacity_for(task.max_flows), row_bytes(task.splt, task.statistics)
        return (
            f"a table of up to {slots:,} slots x {width} bytes for max_flows {task.max_flows:,} "
            f"(it grows to that as flows arrive; {human_bytes(self.memory_bytes(task))})"
        )

    def build_task(self, task: Any) -> EngineTask:
        from netspectra.engine.groups import RecordsTask
        from netspectra.flows.task import FlowTask

        return RecordsTask(FlowTask(task.name, params_of(task), capacity_hint=min(task.max_flows, 1 << 16)))

    def deliver(self, writer: Any, snap: Any, meta: SnapshotMeta) -> None:
        writer.write_flow_records(snap, meta)

    def warm_up(self, tasks: Sequence[Any] | None) -> None:
        from netspectra.flows.task import FlowParams, FlowTask

        for stats in {True, False} if tasks is None else {bool(t.statistics) for t in tasks}:
            task = FlowTask("warm_up", FlowParams(splt=2, statistics=stats), capacity_hint=4, outbox_rows=1)
            task.missing_columns.update(NEEDED_COLUMNS)  # the batch without them is on purpose: no warning
            task.update(_warm_batch(optional=True))
            task.update(_warm_batch(optional=False))
            task.tick(10**12)
            task.finish("end_of_input")
            task.drain().to_arrow()

    # -- reports ------------------------------------------------------------------------------------

    report_key: ClassVar[str] = "flow_tasks"

    def summary_rows(self, snap: Any) -> list[tuple[str, str]]:
        s = snap.summary
        if s is None:
            return []
        rows = [(f"Flow records ({snap.task_name})", f"{s.records:,}")]
        evicted = s.by_reason.get("table_full", 0)
        if evicted:
            rows.append((f"  ended early, table full ({snap.task_name})", f"{evicted:,}"))
        return rows

    def report(self, task: Any, snap: Any, top: int) -> dict[str, Any]:
        from netspectra.flows.records import jsonable_rows

        s = snap.summary
        doc: dict[str, Any] = {"name": snap.task_name, "records": s.records if s else len(snap)}
        if s is not None:
            doc["by_end_reason"] = dict(s.by_reason)
            doc["open_flows"] = s.open_flows
            doc["out_of_order_packets"] = s.out_of_order
            doc["top_by_bytes"] = jsonable_rows(s.top.top(top).to_arrow()) if top else []
        return doc

    def render(self, task: Any, snap: Any, top: int) -> list[Any]:
        from rich.table import Table

        from netspectra.capture.names import protocol_name
        from netspectra.flows.records import jsonable_rows

        s = snap.summary
        if s is None:
            return []
        out: list[Any] = []
        t = Table(title=f"Flow records by end reason — task {snap.task_name}", title_justify="left")
        t.add_column("End reason")
        t.add_column("Records", justify="right")
        for reason, n in s.by_reason.items():
            if n:
                t.add_row(reason, f"{n:,}")
        t.add_row("[bold]total[/]", f"[bold]{s.records:,}[/]")
        out.append(t)
        rows = jsonable_rows(s.top.top(top).to_arrow()) if top else []
        if rows:
            c = Table(
                title=f"Top {len(rows)} connections by bytes — task {snap.task_name}", title_justify="left"
            )
            for name, justify in (
                ("Source", "left"), ("Destination", "left"), ("Proto", "left"), ("First seen (UTC)", "left"),
                ("Duration", "right"), ("Packets →/←", "right"), ("Bytes →/←", "right"), ("State", "left"),
                ("End", "left"),
            ):  # fmt: skip
                c.add_column(name, justify=justify, overflow="fold")  # type: ignore[arg-type]
            for r in rows:
                c.add_row(
                    _endpoint(r["SrcIP"], r["SrcPort"], r["Protocol"]),
                    _endpoint(r["DstIP"], r["DstPort"], r["Protocol"]),
                    protocol_name(r["Protocol"]),
                    r["FirstSeen"],
                    f"{r['Duration'] / 1e9:.3f} s",
                    f"{r['SrcToDstPackets']:,} / {r['DstToSrcPackets']:,}",
                    f"{r['SrcToDstBytes']:,} / {r['DstToSrcBytes']:,}",
                    r["ConnState"] or "-",
                    r["EndReason"],
                )
            out.append(c)
        return out

    # -- alerting -----------------------------------------------------------------------------------

    def metric_values(self, metric: str, snap: Any) -> float:
        if metric == "flow_records":
            return float(len(snap))
        if metric == "open_flows":
            return float(snap.summary.open_flows if snap.summary is not None else 0)
        if metric == "evicted_flows":
            return float(snap.reason_counts()["table_full"])
        raise ValueError(f"{metric!r} is not a metric of flows tasks; they have {', '.join(self.metrics)}")


def with_flows_task(cfg: Config) -> Config:
    """``cfg`` running the ``flows`` kind: unchanged when ``aggregator.types`` has it and its section has
    tasks; else with the section's tasks, or one task with the defaults (named ``flows``, or
    ``flow_records`` when another task has that name), and ``flows`` added to the types. A section
    without writers gets the exact group's enabled ``clickhouse`` writers (with ``--store`` the records
    go to the ``flows`` table of the store the flows' totals go to)."""
    from netspectra.config.aggregator import WriterConfig, group_model

    agg = cfg.aggregator
    group = agg.group("flows")
    if "flows" in agg.types and group.tasks:
        return cfg
    taken = {t.name for _, g in agg.running_groups() for t in g.tasks}
    tasks = group.tasks or (FlowsTaskConfig(name="flows" if "flows" not in taken else "flow_records"),)
    writers = group.writers or tuple(
        WriterConfig(type=w.type, enabled=True, snapshot_interval=w.snapshot_interval, params=w.params)
        for w in agg.exact.writers
        if w.enabled and w.type == "clickhouse"
    )
    section = group_model(FlowsTaskConfig)(writers=writers, tasks=tasks)
    types = agg.types if "flows" in agg.types else (*agg.types, "flows")
    new_agg = agg.model_copy(update={"groups": {**agg.groups, "flows": section}, "types": types})
    return cfg.model_copy(update={"aggregator": new_agg})


def _warm_batch(optional: bool) -> Any:
    """Two packets of one TCP flow, both ways (every path of the kernels' types is compiled)."""
    import numpy as np

    from netspectra.batch import PacketBatch

    b = PacketBatch.empty(2, NEEDED_COLUMNS if optional else ())
    for column in b.columns():
        getattr(b, column)[...] = 0
    b.src_ip[0, 15] = b.dst_ip[1, 15] = 1
    b.protocol[:] = 6
    b.ts_ns[:] = np.arange(2)
    return b


def _endpoint(ip: str, port: int, proto: int) -> str:
    from rich.markup import escape

    if proto not in (6, 17, 132):
        return ip
    return escape(f"[{ip}]:{port}") if ":" in ip else f"{ip}:{port}"


KIND = FlowsAggregator()
