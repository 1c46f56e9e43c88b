"""The ``rollup`` aggregator kind: traffic per 1-minute, 5-minute and 1-hour bucket of its own time and per
tuple of dimensions (protocol, AS numbers, countries, networks, exporters, interfaces), for the rollup
tables and the ``TopN`` query.

A task entry of ``aggregator.rollup.tasks``::

    aggregator:
      types: [sketch, exact, rollup]
      rollup:
        writers:
          - {type: clickhouse, enabled: true, snapshot_interval: 60s, clickhouse: {...}}
        tasks:
          - name: traffic
            dimensions: [Protocol, SrcAS, DstAS, SrcCountry, DstCountry]   # empty or absent: auto
            close_after: 2m          # traffic time after a bucket's end before it closes
            max_entries: 262144      # open entries per resolution (memory bound)

``dimensions`` absent (or empty) means *auto*: ``Protocol``, ``Exporter``, ``InIf``, ``OutIf`` and every
enrichment column the ``enrichment`` section can fill (AS numbers with an ASN database or networks with
an ``asn``, countries likewise, the network attributes some network sets, the exporter and interface
classes the classifier rules set). The enrichment stage computes exactly the enrichment columns the
tasks' dimensions name (:meth:`RollupAggregator.dimensions`).

Snapshots are :class:`~netspectra.rollup.task.RollupRows` — increments (see
:mod:`netspectra.rollup.task`) — delivered with ``write_rollups`` (the ClickHouse writer stores them in
``rollup_1m``/``rollup_5m``/``rollup_1h``, the Parquet writer as files). Alert metric: ``rollup_rows``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field, field_validator

from netspectra.config.base import (
    GoDuration,
    Problem,
    TaskConfig,
    format_go_duration,
    human_bytes,
    value_errors_at,
)
from netspectra.engine.kind import AggregatorKind, Metric
from netspectra.rollup.dims import BY_NAME, NAMES, RESOLUTIONS, parse_dimension

if TYPE_CHECKING:
    from netspectra.config.enrichment import EnrichmentConfig
    from netspectra.config.models import Config
    from netspectra.engine.groups import EngineTask, TaskGroup
    from netspectra.storage.base import SnapshotMeta

#: Dimensions every auto task has (0 / "" for captures: the flow-export columns).
BASE_DIMENSIONS: tuple[str, ...] = ("Protocol", "Exporter", "InIf", "OutIf")
DEFAULT_MAX_ENTRIES = 1 << 18


class RollupTaskConfig(TaskConfig):
    """One rollup task: traffic per time bucket and per tuple of ``dimensions``."""

    _hints: ClassVar[dict[str, str]] = {
        "dims": "dimensions",
        "keys": "dimensions",
        "key_fields": "dimensions",
    }

    #: The dimensions the rows are keyed on (docs/storage.md lists them); empty: auto (module docstring).
    dimensions: tuple[str, ...] = ()
    #: Traffic time past a bucket's end after which the bucket's entries close (later rows open new ones).
    close_after: GoDuration = timedelta(minutes=2)
    #: Open entries per resolution at most; when full, the oldest half of the buckets closes early.
    max_entries: int = Field(DEFAULT_MAX_ENTRIES, ge=16, le=1 << 28)

    @field_validator("dimensions", mode="before")
    @classmethod
    def _dimensions(cls, v: Any) -> Any:
        if v is None:
            return ()
        if isinstance(v, str):
            v = [v]
        if not isinstance(v, list | tuple):
            raise ValueError("write dimensions as a list of names, e.g. [Protocol, SrcAS, DstAS]")
        seen: set[str] = set()
        bad: list[Problem] = []  # every bad name, each at its index
        for i, name in enumerate(v):
            if not isinstance(name, str):
                bad.append(
                    ((i,), f"{name!r} is not a dimension name; dimensions are {', '.join(NAMES)}", name)
                )
                continue
            try:
                parse_dimension(name)
            except ValueError as exc:
                bad.append(((i,), str(exc), name))
                continue
            if name in seen:
                bad.append(((i,), f"{name!r} is named twice; name each dimension once", name))
            seen.add(name)
        if bad:
            raise value_errors_at(bad)
        return tuple(v)

    @field_validator("close_after")
    @classmethod
    def _close_after(cls, v: timedelta) -> timedelta:
        if v < timedelta(0) or v > timedelta(days=7):
            raise ValueError(f"{format_go_duration(v)!r} must be between 0s and 168h, e.g. 2m")
        return v


def auto_dimensions(enrichment: EnrichmentConfig) -> tuple[str, ...]:
    """The dimensions of a task that names none: :data:`BASE_DIMENSIONS` and the enrichment columns
    ``enrichment`` can fill."""
    from netspectra.config.enrichment import NETWORK_ATTRIBUTES

    g = enrichment.geoip
    nets = list(enrichment.networks.values())
    out = list(BASE_DIMENSIONS)
    if g.asn_database.strip() or any(n.asn for n in nets):
        out += ["SrcAS", "DstAS"]
    if g.country_database.strip() or any(n.country for n in nets):
        out += ["SrcCountry", "DstCountry"]
    for attr in NETWORK_ATTRIBUTES:
        if any(getattr(n, attr) for n in nets):
            out += [f"SrcNet{attr.capitalize()}", f"DstNet{attr.capitalize()}"]
    exporter_rules = " ".join(enrichment.classifiers.exporters)
    if any(e.name for e in enrichment.exporters.values()):
        out.append("ExporterName")
    for attr, calls in (
        ("Group", ("Classify(", "ClassifyGroup")),
        ("Role", ("ClassifyRole",)),
        ("Site", ("ClassifySite",)),
        ("Region", ("ClassifyRegion",)),
        ("Tenant", ("ClassifyTenant",)),
    ):
        if any(c in exporter_rules for c in calls):
            out.append(f"Exporter{attr}")
    interface_rules = " ".join(enrichment.classifiers.interfaces)
    for attr, calls in (
        ("Boundary", ("ClassifyExternal", "ClassifyInternal")),
        ("Connectivity", ("ClassifyConnectivity",)),
        ("Provider", ("ClassifyProvider",)),
    ):
        if any(c in interface_rules for c in calls):
            out += [f"InIf{attr}", f"OutIf{attr}"]
    return tuple(out)


def task_dimensions(cfg: Config, task: RollupTaskConfig) -> tuple[str, ...]:
    """The dimensions of ``task`` under ``cfg``: its own, or :func:`auto_dimensions`."""
    return task.dimensions or auto_dimensions(cfg.enrichment)


def _ns(td: timedelta) -> int:
    return (td.days * 86_400 + td.seconds) * 1_000_000_000 + td.microseconds * 1_000


def _slot_bytes(words: int) -> int:
    from netspectra.rollup.layout import record_words

    # the entry's record (netspectra.rollup.layout), its epoch, and a touched slot (the finest table)
    return 8 * record_words(words) + 8 + 8


class RollupAggregator(AggregatorKind):
    """The ``rollup`` aggregator (see the module docstring)."""

    name = "rollup"
    task_model = RollupTaskConfig
    description = "traffic per 1 min / 5 min / 1 h of its own time and per dimensions (AS, country, ...)"
    metrics: ClassVar[Mapping[str, Metric]] = {
        "rollup_rows": Metric(
            "rollup_rows", "rollup rows in the snapshot (changed since the previous)", unit="rows"
        ),
    }

    def dimensions(self, cfg: Config, task: Any) -> tuple[str, ...]:
        return tuple(d for d in task_dimensions(cfg, task) if BY_NAME[d].enriched)

    def coded_dimensions(self, cfg: Config, task: Any) -> tuple[str, ...]:
        """The address sides' columns of ``task``: it keys on their side codes
        (:mod:`netspectra.rollup.codes`), given the configuration's network classes at build."""
        from netspectra.enrich.columns import SIDE_COLUMNS
        from netspectra.rollup.task import RollupTask

        if not (cfg.enrichment.enabled and RollupTask.compact_key):
            return ()
        side = {c for cols in SIDE_COLUMNS.values() for c in cols}
        return tuple(d for d in self.dimensions(cfg, task) if d in side)

    def memory_bytes(self, task: Any) -> int:
        # the most the tables grow to: 2 slots per entry at max_entries, per resolution (key words,
        # netspectra.rollup.keyplan: the most an auto task can have)
        from netspectra.rollup.keyplan import CHUNK, KeyPlan

        words = KeyPlan.of([BY_NAME[d].bits for d in (task.dimensions or NAMES)]).key_words
        # plus the working copy of CHUNK rows' key words (uint32), a column at a time and a row at a time
        return len(RESOLUTIONS) * 2 * task.max_entries * _slot_bytes(words) + 2 * CHUNK * words * 4

    def memory_detail(self, task: Any) -> str:
        return (
            f"{len(RESOLUTIONS)} tables of up to {2 * task.max_entries:,} slots for max_entries "
            f"{task.max_entries:,} (they grow to that with the distinct buckets and dimension tuples; "
            f"{human_bytes(self.memory_bytes(task))} with the working copy of the key words of "
            "8,192 rows at a time, 8 bytes per word and row)"
        )

    def build_group(self, cfg: Config, *, writers: bool = True) -> TaskGroup:
        from netspectra.config import ConfigError
        from netspectra.engine.groups import RecordsTask, TaskGroup, build_writers
        from netspectra.rollup.task import RollupParams, RollupTask

        section = cfg.aggregator.group(self.name)
        errors: list[str] = []
        tasks: list[EngineTask] = []
        for i, t in enumerate(section.tasks):
            try:
                params = RollupParams(
                    task_dimensions(cfg, t), close_after_ns=_ns(t.close_after), max_entries=t.max_entries
                )
                classes = None
                if self.coded_dimensions(cfg, t):  # keyed on the side codes the enrichment stage adds
                    from netspectra.enrich.networks import compiled_networks

                    enr = cfg.enrichment
                    classes = compiled_networks(enr.networks, enr.geoip.cache_dir).class_attr
                tasks.append(RecordsTask(RollupTask(t.name, params, net_classes=classes)))
            except ValueError as exc:
                errors.append(f"aggregator.{self.name}.tasks[{i}] ({t.name}): {exc}")
        built = build_writers(section.writers, self.name, errors) if writers else ()
        if errors:
            raise ConfigError(errors, path=cfg.source)
        return TaskGroup(self.name, tuple(tasks), built, self.deliver)

    def deliver(self, writer: Any, snap: Any, meta: SnapshotMeta) -> None:
        writer.write_rollups(snap, meta)

    def warm_up(self, tasks: Sequence[Any] | None) -> None:
        import numpy as np

        from netspectra.batch import PacketBatch
        from netspectra.rollup.task import RollupParams, RollupTask

        # the flow-tuple codes (a capture's and an export's), the side codes (netspectra.rollup.codes)
        dims = ("Protocol", "Exporter", "SrcAS", "SrcNetName", "DstCountry")
        task = RollupTask("warm_up", RollupParams(dims), capacity=16, net_classes=np.zeros((5, 1), np.uint16))
        for export in (False, True):
            b = PacketBatch.empty(2, PacketBatch.EXPORT_COLUMNS if export else ())
            for column in b.columns():
                getattr(b, column)[...] = 0
            b.ts_ns[:] = np.array([0, 3_600 * 10**9], np.int64)
            task.update(b.with_dims({"SrcCode": np.zeros(2, np.uint64), "DstCode": np.zeros(2, np.uint64)}))
        task._make_room(0)  # the growth kernel
        fine = task.tables[0]
        fine.open_buckets()  # an early close's (max_entries)
        task._flush()  # (a close comes after a carry)
        fine.rehash(int(np.iinfo(np.int64).min), fine.cap)  # the kernel of a close (close_in_place)
        task.finish()
        task.drain()

    # -- reports ------------------------------------------------------------------------------------

    report_key: ClassVar[str] = "rollup_tasks"

    def summary_rows(self, snap: Any) -> list[tuple[str, str]]:
        s = snap.summary
        if s is None or s.first_ns is None:
            return []
        minutes = (s.last_ns - s.first_ns) // 60_000_000_000 + 1
        return [(f"Traffic timeline ({snap.task_name})", f"{minutes:,} minute(s) of traffic time")]

    def report(self, task: Any, snap: Any, top: int) -> dict[str, Any]:
        from netspectra.output.timefmt import format_ts_ns

        s = snap.summary
        doc: dict[str, Any] = {"name": snap.task_name, "dimensions": list(snap.dimensions)}
        if s is None:
            return doc
        doc.update(
            packets=s.packets,
            bytes=s.bytes,
            first_bucket=format_ts_ns(s.first_ns) if s.first_ns is not None else None,
            last_bucket=format_ts_ns(s.last_ns) if s.last_ns is not None else None,
            rows=dict(s.rows_out),
            clamped_rows=s.clamped,
            empty_rows=s.empty_rows,
            top={
                name: [{"value": v, "packets": p, "bytes": b} for v, p, b in values]
                for name, values in top_values(snap, top).items()
            }
            if top
            else {},
        )
        return doc

    def render(self, task: Any, snap: Any, top: int) -> list[Any]:
        from rich.markup import escape
        from rich.table import Table

        s = snap.summary
        if s is None or not top:
            return []
        out: list[Any] = []
        unknown: list[str] = []  # dimensions without a known value: one line, not a table each
        for name, values in top_values(snap, top).items():
            if not values or (len(values) == 1 and values[0][0] in ("", "0")):
                unknown.append(name)
                continue
            t = Table(title=f"Top {name} by bytes — task {snap.task_name}", title_justify="left")
            t.add_column(name)
            t.add_column("Packets", justify="right")
            t.add_column("Bytes", justify="right")
            t.add_column("Share", justify="right")
            for value, p, b in values:
                share = f"{100 * b / s.bytes:.1f} %" if s.bytes else "-"
                t.add_row(escape(value) if value not in ("", "0") else "(unknown)", f"{p:,}", f"{b:,}", share)
            out.append(t)
        if unknown:
            # a dimension the user named must not vanish from the report without a word (a country
            # database that knows none of the capture's addresses, a capture without flow exports)
            why = "no traffic" if not s.packets else "every row unknown"
            out.append(
                f"Task {escape(snap.task_name)}: no known value ({why}) for {escape(', '.join(unknown))}"
            )
        return out

    # -- alerting -----------------------------------------------------------------------------------

    def metric_values(self, metric: str, snap: Any) -> float:
        if metric == "rollup_rows":
            return float(len(snap))
        raise ValueError(f"{metric!r} is not a metric of rollup tasks; they have {', '.join(self.metrics)}")


def top_values(snap: Any, top: int) -> dict[str, list[tuple[str, int, int]]]:
    """Per dimension of ``snap``'s task, its ``top`` values by bytes since the start: ``(text, packets,
    bytes)`` (text ``""``/``"0"``: unknown)."""
    import numpy as np

    # a handful of values: the plain formatter, not the Arrow one (pyarrow's import costs a report that
    # writes no file ~25 ms)
    from netspectra.key_columns import ip_text

    s = snap.summary
    out: dict[str, list[tuple[str, int, int]]] = {}
    for name in snap.dimensions:
        dim = BY_NAME[name]
        tally = s.tallies.get(name)
        rows = []
        for key, p, b in tally.top(top) if tally is not None else ():
            if dim.kind == "number":
                text = str(key[0])
            elif dim.kind == "address":
                raw = np.array(key, np.uint32).view(np.uint8)
                text = ip_text(raw.tobytes()) if raw.any() else ""
            else:
                words = snap.dictionaries.get(name, ("",))
                text = words[key[0]] if key[0] < len(words) else f"#{key[0]}"
            rows.append((text, p, b))
        out[name] = rows
    return out


KIND = RollupAggregator()
