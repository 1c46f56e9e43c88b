"""``aggregator``: the engine's section — its task groups, one per aggregator kind, and their writers.

The section knows no kind by name. ``aggregator.<kind>`` exists for every aggregator kind of
:data:`netspectra.kinds.AGGREGATORS` (built-in or plugin) and holds ``writers`` and ``tasks``; each task
is validated by the kind's ``task_model`` and each writer entry by its writer kind's parameters model
(under the kind's key, e.g. ``clickhouse: {...}``), with errors reported under their keys
(``aggregator.exact.tasks[0].key_fields[2]``, ``aggregator.sketch.writers[1].clickhouse.port``).
A writer kind must serve the group it is listed in (the ``gob`` kind stores only exact flows).
"""

# No `from __future__ import annotations` here: pydantic reads the models' annotations as objects instead
# of evaluating strings when a class is made (~3 ms of every command's start for the configuration's models).
from datetime import timedelta
from functools import cache
from typing import Annotated, Any, ClassVar

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    create_model,
    field_validator,
    model_serializer,
    model_validator,
)

from netspectra.config.base import (
    ByteSize,
    Child,
    GoDuration,
    Section,
    checked_duration,
    not_a_string,
    physical_memory_bytes,
    revalidate,
    value_error_at,
)
from netspectra.kinds import AGGREGATORS, WRITERS, KindError, did_you_mean

#: Without ``aggregator.max_memory``, the sketches and tables allocated up front may take this share
#: of the machine's physical memory.
DEFAULT_MEMORY_FRACTION = 0.5


def _aggregator_type(value: str) -> str:
    try:
        return AGGREGATORS.check_name(value)
    except KindError as exc:
        raise ValueError(str(exc)) from None


class WriterConfig(Section):
    """One entry of ``writers``: a sink fed with a snapshot of every task of its group.

    ``params`` holds the writer kind's parameters (written under the kind's key, e.g. ``clickhouse:``).
    """

    #: The group a subclass is bound to (``ExactWriterConfig``: exact); None = from validation context.
    _group: ClassVar[str | None] = None

    type: str
    #: Go's zero value: a writer is off unless ``enabled: true``.
    enabled: bool = False
    #: Time between snapshots; absent or 0 -> no periodic snapshot (only the final one at stop).
    snapshot_interval: GoDuration | None = None
    #: The writer kind's parameters (its model), validated from the entry's ``<kind key>:`` block.
    params: Any = None

    @model_validator(mode="before")
    @classmethod
    def _gather_params(cls, data: Any) -> Any:
        # The kind's block (``clickhouse: {...}``) becomes ``params``; the other kinds' blocks are dropped.
        if not isinstance(data, dict) or "params" in data or not isinstance(data.get("type"), str):
            return data
        try:
            key = WRITERS.get(data["type"]).key if data["type"] in WRITERS.names() else None
        except KindError:
            key = None
        out = {k: v for k, v in data.items() if k in ("type", "enabled", "snapshot_interval")}
        out["params"] = (data.get(key) if key else None) or {}
        return out

    @field_validator("type")
    @classmethod
    def _type(cls, name: str, info: ValidationInfo) -> str:
        group = cls._group or (info.context or {}).get("group")
        valid = [n for n in WRITERS.names() if group is None or _serves(n, group)]
        if name not in valid:
            where = f"of the {group} group" if group else "here"
            raise ValueError(
                f"{name!r} is not a writer type {where}{did_you_mean(name, valid)}; "
                f"valid types are {', '.join(valid)}"
            )
        try:
            WRITERS.get(name)
        except KindError as exc:
            raise ValueError(str(exc)) from None
        return name

    @field_validator("params", mode="before")
    @classmethod
    def _params(cls, raw: Any, info: ValidationInfo) -> Any:
        name = info.data.get("type")
        if name is None:
            return raw  # the type's own error is reported
        kind = WRITERS.get(name)
        if isinstance(raw, kind.params_model):
            return raw
        return revalidate(kind.params_model, raw or {}, (kind.key,))

    @field_validator("snapshot_interval")
    @classmethod
    def _interval(cls, v: timedelta | None) -> timedelta | None:
        if v is None:
            return None
        return checked_duration(v, "write e.g. 60s, or 0 for no periodic snapshot") or None

    @model_serializer(mode="wrap")
    def _flat(self, handler: Any) -> Any:
        out = handler(self)
        if isinstance(out, dict) and "params" in out:
            params = out.pop("params")
            out[WRITERS.get(self.type).key] = params
        return out

    @classmethod
    def known_keys(cls, data: dict[str, Any]) -> dict[str, Child]:
        keys: dict[str, Child] = {k: (None, False) for k in ("type", "enabled", "snapshot_interval")}
        for name in WRITERS.builtins:  # the original's entries may carry every built-in kind's block
            keys[WRITERS.get(name).key] = (None, False)
        name = data.get("type")
        if isinstance(name, str) and name in WRITERS.names():
            try:
                kind = WRITERS.get(name)
            except KindError:
                return keys
            keys[kind.key] = (kind.params_model, False)
        return keys

    def with_params(self, **update: Any) -> "WriterConfig":
        """A copy whose parameters have ``update`` applied (e.g. ``data_dir`` of an embedded ClickHouse)."""
        return self.model_copy(update={"params": self.params.model_copy(update=update)})


def _serves(name: str, group: str) -> bool:
    try:
        return group in WRITERS.get(name).groups
    except KindError:
        return True  # a plugin that fails to load is reported when its type is checked


class ExactWriterConfig(WriterConfig):
    """A writer of the ``exact`` group."""

    _group: ClassVar[str | None] = "exact"


class SketchWriterConfig(WriterConfig):
    """A writer of the ``sketch`` group."""

    _group: ClassVar[str | None] = "sketch"


class GroupConfig(Section):
    """``aggregator.<kind>``: the tasks of one aggregator kind and the writers of their snapshots.

    ``tasks`` are instances of the kind's task model (the per-kind subclass made by :func:`group_model`).
    """

    writers: tuple[WriterConfig, ...] = ()
    tasks: tuple[Any, ...] = ()

    @field_validator("writers", mode="before")
    @classmethod
    def _writers(cls, v: Any) -> Any:
        return not_a_string(v)

    @field_validator("tasks", mode="before")
    @classmethod
    def _tasks(cls, v: Any) -> Any:
        return not_a_string(v)


@cache
def group_model(task_model: type[Section]) -> type[GroupConfig]:
    """The :class:`GroupConfig` subclass whose ``tasks`` are validated with ``task_model``."""
    return create_model(
        f"{task_model.__name__.removesuffix('Config')}GroupConfig",
        __base__=GroupConfig,
        tasks=(tuple[task_model, ...], ()),  # type: ignore[valid-type]
    )


@cache
def empty_group() -> GroupConfig:
    """The section of a kind the configuration does not write (one instance, made on first use: an
    instance made at import would build the model's schema, which waits for a validation; see
    :class:`~netspectra.config.base.Section`)."""
    return GroupConfig()


def _validate_groups(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        return value
    out: dict[str, Any] = {}
    problems: list[Any] = []  # every group's errors, reported together
    for name, raw in value.items():
        try:
            kind = AGGREGATORS.get(name)
        except KindError as exc:
            problems.extend(value_error_at((name,), str(exc), raw).errors())
            continue
        if kind.task_model is None or isinstance(raw, GroupConfig):  # a plugin factory's own section
            out[name] = raw
            continue
        try:
            out[name] = revalidate(group_model(kind.task_model), raw or {}, (name,), context={"group": name})
        except ValidationError as exc:
            problems.extend(exc.errors())
    if problems:
        raise ValidationError.from_exception_data(
            "AggregatorConfig",
            [
                {
                    "type": e["type"],
                    "loc": e["loc"],
                    "input": e["input"],
                    **({"ctx": e["ctx"]} if "ctx" in e else {}),
                }
                for e in problems
            ],
        )
    return out


class AggregatorConfig(Section):
    """``aggregator``: the engine."""

    _hints: ClassVar[dict[str, str]] = {
        "type": "types (a list, e.g. [exact, sketch])",
        "tasks": "exact.tasks or sketch.tasks",
    }

    #: Task groups to run: aggregator kinds (exact, sketch, plugins). Go's zero value: none.
    types: Annotated[
        tuple[Annotated[str, AfterValidator(_aggregator_type)], ...], BeforeValidator(not_a_string)
    ] = ()
    #: All tasks are reset every period (after a final snapshot); absent or 0 -> never.
    period: GoDuration | None = None
    #: Worker threads applying batches to the tasks; at least 1.
    num_workers: int = Field(16, ge=1)
    #: Bounded queue between transport and workers; 0 -> 10000.
    size_of_packet_channel: int = Field(10000, ge=0)
    #: The most the tasks may allocate up front (sketches), e.g. ``8GiB``; absent -> half of the
    #: machine's physical memory (of the machine that checks the configuration). An addition.
    max_memory: ByteSize | None = None
    #: ``aggregator.<kind>`` sections by kind name (validated by each kind; see the module docstring).
    groups: Annotated[dict[str, Any], AfterValidator(_validate_groups)] = Field(default_factory=dict)

    _memory_default: int | None = PrivateAttr(default=None)

    @model_validator(mode="before")
    @classmethod
    def _collect_groups(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        names = set(AGGREGATORS.names())
        groups = dict(data.get("groups") or {})
        rest: dict[str, Any] = {}
        for key, value in data.items():
            if key in names:
                groups[key] = value
            elif key != "groups":
                rest[key] = value
        rest["groups"] = groups
        return rest

    @field_validator("types")
    @classmethod
    def _types(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(dict.fromkeys(v))  # "exact" twice is harmless: one group

    @field_validator("period")
    @classmethod
    def _period(cls, v: timedelta | None) -> timedelta | None:
        if v is None:
            return None
        return checked_duration(v, "write e.g. 720h, or 0 for no periodic reset") or None

    @field_validator("size_of_packet_channel")
    @classmethod
    def _channel(cls, v: int) -> int:
        return v or 10000

    @field_validator("max_memory")
    @classmethod
    def _max_memory(cls, v: int | None) -> int | None:
        if v is not None and v <= 0:
            raise ValueError("must be positive; write e.g. 8GiB, or leave it out for half of physical memory")
        return v

    @property
    def memory_limit(self) -> int:
        """``max_memory``, or the default share of physical memory (no limit if the platform hides it)."""
        if self.max_memory is not None:
            return self.max_memory
        phys = physical_memory_bytes()
        return int(phys * DEFAULT_MEMORY_FRACTION) if phys else 2**63 - 1

    def group(self, name: str) -> GroupConfig:
        """``aggregator.<name>`` (an empty group when the section is absent)."""
        g = self.groups.get(name)
        return g if isinstance(g, GroupConfig) else empty_group()

    @property
    def exact(self) -> GroupConfig:
        """``aggregator.exact``."""
        return self.group("exact")

    @property
    def sketch(self) -> GroupConfig:
        """``aggregator.sketch``."""
        return self.group("sketch")

    def running_groups(self) -> list[tuple[str, GroupConfig]]:
        """``(kind, section)`` of every kind in ``types`` that has a validated section, in ``types`` order."""
        return [
            (name, self.group(name)) for name in self.types if isinstance(self.groups.get(name), GroupConfig)
        ]

    @model_serializer(mode="wrap")
    def _flat(self, handler: Any) -> Any:
        out = handler(self)
        if isinstance(out, dict):
            groups = out.pop("groups", None) or {}
            out.update(groups)
        return out

    @classmethod
    def known_keys(cls, data: dict[str, Any]) -> dict[str, Child]:
        keys = {k: v for k, v in super().known_keys(data).items() if k != "groups"}
        for name in AGGREGATORS.names():
            if name in data:
                try:
                    kind = AGGREGATORS.get(name)
                except KindError:
                    keys[name] = (None, False)
                    continue
                keys[name] = (group_model(kind.task_model), False) if kind.task_model else (None, False)
        return keys
