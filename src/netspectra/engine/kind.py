"""Aggregator kinds: what an aggregator type (``exact``, ``sketch``, a plugin's) declares and builds.

An :class:`AggregatorKind` is the one place that knows an aggregator type. It declares

* ``task_model`` — the pydantic model of one entry of ``aggregator.<kind>.tasks`` (the configuration
  validates every task with it, and reports errors under the task's key);
* ``metrics`` — the alert metrics its tasks offer (:class:`Metric`: scalar, or per flow), and which
  of them a given task can compute (:meth:`AggregatorKind.metric_problem`);
* ``memory_bytes`` — what a task will allocate up front (checked against ``aggregator.max_memory``);
* ``needs_columns`` — the optional :class:`~netspectra.batch.PacketBatch` columns its tasks use (readers
  and probes of a configuration that runs the kind decode them: :func:`columns_needed`);
* ``dimensions`` — the enrichment columns a task reads from ``batch.dims`` (the engine's enrichment
  stage computes only what some task reads: :func:`dimensions_needed`);

and builds, on demand, its :class:`~netspectra.engine.groups.TaskGroup` (tasks wrapped for the engine,
the group's writers, how a snapshot reaches a writer), the values its metrics take on a snapshot, and
its kernels' warm-up. Everything else — configuration, alerting, API, storage, ``analyze`` — asks the
kind. A kind module imports its heavy implementation (numba kernels, pyarrow) only inside the methods
that build it, so validating a configuration stays cheap.

Registration is one line in :data:`netspectra.kinds.AGGREGATORS` for a built-in, or an entry point in the
``netspectra.aggregators`` group for a plugin whose object is an :class:`AggregatorKind` instance. A
plugin's entry point may also be a plain factory ``(Config) -> TaskGroup`` (the earlier plugin form):
it is wrapped in a :class:`FactoryKind`, which has no task model (its section of the configuration is
not validated) and no metrics.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from netspectra.kinds import KindError

if TYPE_CHECKING:
    from netspectra.config.base import Section
    from netspectra.config.models import Config
    from netspectra.engine.groups import EngineTask, TaskGroup
    from netspectra.storage.base import SnapshotMeta

#: One fired per-flow metric item: (flow text, value).
FlowValue = tuple[str, int]


@dataclass(frozen=True, slots=True)
class Metric:
    """An alert metric of an aggregator kind.

    ``per_flow`` False: :meth:`AggregatorKind.metric_values` gives one number per snapshot, compared
    with the rule's threshold; True: it gives ``(flow, value)`` items, each compared, and the rule fires
    with the items that pass. ``unit`` follows an observed number in messages (``packets``); ``suffix``
    follows each item's value in tables (`` bytes``).
    """

    name: str
    description: str
    per_flow: bool = False
    unit: str = ""
    suffix: str = ""


class AggregatorKind:
    """Base of every aggregator kind (see the module docstring). Subclasses set the class attributes
    and override :meth:`build_task` (or :meth:`build_group` for a group that is more than its tasks).
    """

    #: The aggregator type's name: the key under ``aggregator`` and the entry of ``aggregator.types``.
    name: str = ""
    #: The model of one task entry; None for kinds whose section is not validated (legacy factories).
    task_model: type[Section] | None = None
    #: Alert metrics by name.
    metrics: ClassVar[Mapping[str, Metric]] = {}
    #: One line for ``--help`` and listings.
    description: str = ""
    #: Optional PacketBatch columns its tasks use (``PacketBatch.OPTIONAL`` names); () for none.
    needs_columns: ClassVar[tuple[str, ...]] = ()

    def __repr__(self) -> str:
        return f"<aggregator kind {self.name!r}>"

    # -- configuration ----------------------------------------------------------------------------

    def check(self, tasks: Sequence[Any], path: str) -> tuple[list[str], list[str]]:
        """Problems that span the tasks of this kind (the task model checks each task alone):
        ``(errors, warnings)``, each line starting with its key path (``path`` is ``aggregator.<kind>``)."""
        return [], []

    def columns_for(self, tasks: Sequence[Any]) -> tuple[str, ...]:
        """The optional PacketBatch columns these configured tasks of the kind use beyond
        :attr:`needs_columns` (e.g. the columns of their key fields); () by default."""
        return ()

    def memory_bytes(self, task: Any) -> int:
        """Bytes ``task`` allocates when built (0 when it grows with the traffic instead)."""
        return 0

    def dimensions(self, cfg: Config, task: Any) -> tuple[str, ...]:
        """The enrichment columns (names of :data:`netspectra.enrich.columns.COLUMNS`) ``task`` reads from
        a batch's ``dims``; ``cfg`` is the whole configuration (its ``enrichment`` says what can be
        known). None by default: the engine computes only the columns some task reads."""
        return ()

    def coded_dimensions(self, cfg: Config, task: Any) -> tuple[str, ...]:
        """Those of :meth:`dimensions` that ``task`` reads through its side's code column
        (:data:`netspectra.enrich.columns.SIDE_CODES`) instead of the column itself: the engine computes
        the code and leaves the column out unless another task reads it. None by default."""
        return ()

    def memory_detail(self, task: Any) -> str:
        """What :meth:`memory_bytes` is made of, for messages (e.g. ``depth 3 x width 1048576``)."""
        return ""

    def metric_problem(self, task: Any, metric: str) -> str | None:
        """Why ``task`` cannot compute ``metric`` (a message ending in the fix), or None if it can."""
        if metric in self.metrics:
            return None
        return (
            f"{metric!r} is not a metric of {self.name} tasks; {self.name} tasks have "
            f"{', '.join(self.metrics) or '(none)'}"
        )

    # -- building ---------------------------------------------------------------------------------

    def build_task(self, task: Any) -> EngineTask:
        """The engine task for one validated task entry; ``ValueError`` if it cannot be built."""
        raise TypeError(f"aggregator kind {self.name!r} does not build single tasks")

    def deliver(self, writer: Any, snap: Any, meta: SnapshotMeta) -> None:
        """Hand one snapshot of one of this kind's tasks to one of its writers."""
        raise TypeError(f"aggregator kind {self.name!r} has no writers")

    def build_group(self, cfg: Config, *, writers: bool = True) -> TaskGroup:
        """The group for ``cfg``: one engine task per ``aggregator.<name>.tasks`` entry and (``writers``)
        the group's enabled writers — not even created without (a writer's construction may load a
        storage engine). :class:`~netspectra.config.ConfigError` lists every task and writer that cannot
        be built, each by its key."""
        from netspectra.config import ConfigError
        from netspectra.engine.groups import TaskGroup, build_writers

        section = cfg.aggregator.group(self.name)
        errors: list[str] = []
        tasks: list[EngineTask] = []
        for i, t in enumerate(section.tasks):
            try:
                tasks.append(self.build_task(t))
            except ValueError as exc:
                errors.append(f"aggregator.{self.name}.tasks[{i}] ({t.name}): {exc}")
        built = build_writers(section.writers, self.name, errors) if writers else ()
        if errors:
            raise ConfigError(errors, path=cfg.source)
        return TaskGroup(self.name, tuple(tasks), built, self.deliver)

    def warm_up(self, tasks: Sequence[Any] | None) -> None:
        """Compile (or load from numba's cache) the kernels ``tasks`` will run (None: every variant of
        the kind); nothing by default. The conversion of snapshots to Arrow belongs to the ``None`` case
        only (an image build): a run converts only when it writes files, and a report-only ``analyze``
        should not load pyarrow's compute module (50-70 ms) for it."""

    # -- reports (``netspectra analyze``) -----------------------------------------------------------

    #: Key of this kind's task list in ``analyze --json``.
    report_key: ClassVar[str] = ""

    def summary_rows(self, snap: Any) -> list[tuple[str, str]]:
        """Rows this task adds to the capture summary table (label, value)."""
        return []

    def report_snapshot(self, task: Any, top: int) -> Any:
        """What :meth:`report` and :meth:`render` read of ``task`` at the end of ``analyze`` (``top``: the
        rows of its lists they show): its final snapshot; a kind may give a lighter object that answers
        what its report reads (the exact kind: :meth:`~netspectra.tasks.exact.ExactTask.summary`)."""
        return task.snapshot()

    def report(self, task: Any, snap: Any, top: int) -> dict[str, Any]:
        """The task's part of ``analyze --json`` (``top`` rows of its lists)."""
        return {"name": snap.task_name}

    def render(self, task: Any, snap: Any, top: int) -> list[Any]:
        """The task's sections of ``analyze``'s terminal report: rich renderables."""
        return []

    # -- alerting ---------------------------------------------------------------------------------

    def metric_values(self, metric: str, snap: Any) -> float | Sequence[FlowValue]:
        """The value of ``metric`` on one snapshot of this kind's task: a number for a scalar metric,
        ``(flow, value)`` items for a per-flow one."""
        raise ValueError(f"{metric!r} is not a metric of {self.name} tasks")


class FactoryKind(AggregatorKind):
    """A plugin given as a factory ``(Config) -> TaskGroup`` (the earlier plugin form): no task model,
    no metrics; the factory builds the whole group."""

    def __init__(self, name: str, factory: Callable[[Config], TaskGroup]) -> None:
        self.name = name
        self.factory = factory

    def build_group(self, cfg: Config, *, writers: bool = True) -> TaskGroup:
        group = self.factory(cfg)
        return group if writers or not isinstance(group, _task_group()) else group.without_writers()


def _task_group() -> type:
    from netspectra.engine.groups import TaskGroup

    return TaskGroup


def columns_needed(cfg: Config, types: Sequence[str] | None = None) -> tuple[str, ...]:
    """The optional PacketBatch columns the aggregator kinds of ``types`` (default: ``aggregator.types``)
    use: what a reader or probe feeding this configuration should decode. Unknown types are skipped
    (building the groups reports them)."""
    wanted: dict[str, None] = {}
    for name, kind in _known_kinds(cfg, types):
        wanted.update(dict.fromkeys(getattr(kind, "needs_columns", ())))
        section = getattr(cfg.aggregator, name, None)
        tasks = getattr(section, "tasks", None) or ()
        columns_for = getattr(kind, "columns_for", None)
        if tasks and columns_for is not None:
            # a legacy kind's tasks are not validated entries: nothing to add
            with contextlib.suppress(AttributeError, TypeError):
                wanted.update(dict.fromkeys(columns_for(tasks)))
    return tuple(wanted)


def enrichment_reads(
    cfg: Config, types: Sequence[str] | None = None
) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """What the tasks of ``types`` (default: ``aggregator.types``) read from the enrichment stage:
    ``(columns, arrays, sides)``: every column they read (:func:`dimensions_needed`), those some task
    reads as a column of the batch, and the sides (``Src``/``Dst``) whose code column some task reads
    (:meth:`AggregatorKind.coded_dimensions`)."""
    from netspectra.enrich.columns import SIDE_COLUMNS

    columns = dimensions_needed(cfg, types)
    arrays: dict[str, None] = dict.fromkeys(_key_field_dims(cfg, types))
    sides: dict[str, None] = {}
    for name, kind in _known_kinds(cfg, types):
        read = getattr(kind, "dimensions", None)
        coded = getattr(kind, "coded_dimensions", None)
        for task in cfg.aggregator.group(name).tasks:
            via_code = set(coded(cfg, task)) if coded is not None else set()
            for d in read(cfg, task) if read is not None else ():
                if d not in via_code:
                    arrays[d] = None
            for side, names in SIDE_COLUMNS.items():
                if via_code & set(names):
                    sides[side] = None
    return columns, tuple(c for c in columns if c in arrays), tuple(sides)


def _known_kinds(cfg: Config, types: Sequence[str] | None) -> Iterator[tuple[str, Any]]:
    """``(name, kind)`` of the aggregator kinds of ``types`` (default: ``aggregator.types``) that are
    registered; unknown types are skipped (building the groups reports them)."""
    from netspectra.kinds import AGGREGATORS, KindError

    for name in cfg.aggregator.types if types is None else types:
        try:
            kind = AGGREGATORS.get(name)
        except KindError:
            continue
        yield name, kind


def _key_field_dims(cfg: Config, types: Sequence[str] | None) -> list[str]:
    """The enrichment columns named as key fields by the tasks of ``types``."""
    return [
        field
        for name, _ in _known_kinds(cfg, types)
        for task in cfg.aggregator.group(name).tasks
        for field in _task_key_field_dims(task)
    ]


def _task_key_field_dims(task: Any) -> list[str]:
    """The enrichment columns ``task`` names as key fields (exact ``key_fields``, sketch ``flow_fields``
    / ``element_fields``)."""
    from netspectra.fields import BY_NAME, KEY_FIELD_LISTS

    out: list[str] = []
    for attr in KEY_FIELD_LISTS:
        for field in getattr(task, attr, None) or ():
            f = BY_NAME.get(field)
            if f is not None and f.source == "dim":
                out.append(field)
    return out


def dimensions_needed(cfg: Config, types: Sequence[str] | None = None) -> tuple[str, ...]:
    """The enrichment columns the tasks of the aggregator kinds of ``types`` (default:
    ``aggregator.types``) read: what the enrichment stage of this configuration computes — a kind's
    ``dimensions`` (rollup dimensions) and the enrichment columns named as key fields (exact
    ``key_fields``, sketch ``flow_fields`` / ``element_fields``). Unknown types are skipped (building the
    groups reports them)."""
    wanted: dict[str, None] = {}
    for name, kind in _known_kinds(cfg, types):
        read = getattr(kind, "dimensions", None)
        for task in cfg.aggregator.group(name).tasks:
            if read is not None:
                wanted.update(dict.fromkeys(read(cfg, task)))
            wanted.update(dict.fromkeys(_task_key_field_dims(task)))
    return tuple(wanted)


def key_field_errors(cfg: Config, supplied: Sequence[str], source: str) -> list[str]:
    """Key fields of the running tasks that read an optional batch column ``source`` never supplies
    (``supplied``: the optional columns its batches can carry), one line per field naming the task's key:
    every row would count under the field's unknown value. For a run whose input is known at start
    (``analyze`` of capture files: no ``InIf``, ``OutIf``, ``ExporterAddress``); enrichment columns are
    checked by the configuration itself (what fills them is configured there)."""
    from netspectra.fields import BY_NAME, KEY_FIELD_LISTS

    errors: list[str] = []
    for _, path, task in cfg.tasks(running=True):
        for attr in KEY_FIELD_LISTS:
            for i, name in enumerate(getattr(task, attr, None) or ()):
                f = BY_NAME.get(name)
                if f is not None and f.source == "optional" and f.column not in supplied:
                    errors.append(
                        f"{path}.{attr}[{i}] ({task.name}): {source} cannot supply {name} (only flow "
                        f"exports carry it): every row would count under {name} 0; key on it where the "
                        "batches come from flow exports (netspectra collect)"
                    )
    return errors


def as_aggregator_kind(name: str, obj: Any) -> AggregatorKind:
    """The registry's check: an :class:`AggregatorKind` instance (its ``name`` must be ``name``), or a
    factory callable wrapped in a :class:`FactoryKind`; :class:`KindError` otherwise."""
    if isinstance(obj, type) and issubclass(obj, AggregatorKind):
        obj = obj()
    if isinstance(obj, AggregatorKind):
        if obj.name != name:
            raise KindError(f"its kind object is named {obj.name!r}; register it under that name")
        return obj
    if callable(obj):
        return FactoryKind(name, obj)
    raise KindError(
        f"is a {type(obj).__name__}, neither an AggregatorKind nor a factory (Config) -> TaskGroup"
    )
