"""The ``sketch`` aggregator kind: sketch tasks (heavy hitters, super-spreaders) in fixed memory.

A task entry of ``aggregator.sketch.tasks`` is ``name``, ``skt_type`` (the sketch kind: ``0``/``1`` as
in the original, or a kind name), ``flow_fields``, ``element_fields``, ``seed`` and the sketch kind's own
parameters (``width``, ``depth``, thresholds, ...), all on one level as the original writes them; the
kind's model validates its parameters and reports errors under the task's key. Alert metrics:
``heavy_hitter_count`` (packets per flow; on a kind without a packet list, the spreads, as the
original), ``heavy_hitter_size`` (bytes per flow) and ``super_spreader_spread`` (distinct elements per
flow), each available where the sketch kind reports the matching heavy-hitter type.

Hash seeds are fixed by default (:data:`DEFAULT_SEED`): the same input gives the same answers on every
run and after every engine restart. ``seed: random`` draws a seed per run (logged).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field, PrivateAttr, ValidationInfo, field_validator, model_serializer, model_validator

from netspectra.config.base import FieldList, TaskConfig, fields_list, revalidate
from netspectra.engine.kind import AggregatorKind, FlowValue, Metric
from netspectra.fields import FIELD_NAMES, key_length
from netspectra.kinds import SKETCHES, KindError
from netspectra.sketches.kind import HitterType, SketchKind, sketch_kind_name

if TYPE_CHECKING:
    from netspectra.engine.groups import EngineTask
    from netspectra.storage.base import SnapshotMeta

#: The hash seed of a task that configures none (reproducible by default; ``seed: random`` to draw one).
DEFAULT_SEED = 0x4E657453  # "NetS"

#: Keys of a sketch task entry that every sketch kind has; the rest belong to the kind's parameters.
_COMMON_KEYS = ("name", "skt_type", "flow_fields", "element_fields", "seed")


class SketchTaskConfig(TaskConfig):
    """One sketch task (see the module docstring). ``params`` is the sketch kind's parameters model."""

    _hints: ClassVar[dict[str, str]] = {"key": "flow_fields", "elementkey": "element_fields"}

    #: The original's number (0 CountMin, 1 SuperSpread) for built-in kinds, else the kind's name.
    skt_type: int | str
    #: The flow: whose heavy-hitter counters or whose spread is estimated.
    flow_fields: FieldList
    #: The elements whose distinct count is the spread (required by kinds that count elements).
    element_fields: FieldList = ()
    #: Hash seed: fixed by default (:data:`DEFAULT_SEED`); ``random`` draws one per run (logged).
    seed: int | Literal["random"] = Field(DEFAULT_SEED)
    #: The sketch kind's parameters (validated by its model from the keys beside the common ones).
    params: Any = None

    _kind: SketchKind | None = PrivateAttr(default=None)

    @model_validator(mode="before")
    @classmethod
    def _gather_params(cls, data: Any) -> Any:
        # the keys beside the common ones are the sketch kind's parameters
        if not isinstance(data, dict) or "params" in data:
            return data
        out = {k: v for k, v in data.items() if k in _COMMON_KEYS}
        out["params"] = {k: v for k, v in data.items() if k not in _COMMON_KEYS}
        return out

    @field_validator("skt_type", mode="before")
    @classmethod
    def _skt_type(cls, value: Any) -> int | str:
        try:
            return SKETCHES.get(sketch_kind_name(value)).number
        except KindError as exc:
            raise ValueError(str(exc)) from None

    @field_validator("params", mode="before")
    @classmethod
    def _params(cls, raw: Any, info: ValidationInfo) -> Any:
        if "skt_type" not in info.data:
            return raw  # the skt_type's own error is reported
        kind = SKETCHES.get(sketch_kind_name(info.data["skt_type"]))
        if isinstance(raw, kind.params_model):
            return raw
        return revalidate(kind.params_model, raw or {})

    @field_validator("seed", mode="before")
    @classmethod
    def _seed(cls, v: Any) -> Any:
        if isinstance(v, str) and v.strip().lower() == "random":
            return "random"
        if isinstance(v, bool) or (isinstance(v, int) and not 0 <= v < 2**64):
            raise ValueError(f"{v!r} is not a seed; write an integer in [0, 2^64) or random")
        return v

    @field_validator("flow_fields")
    @classmethod
    def _flow(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return fields_list(v, "flow_fields", required=True)

    @field_validator("element_fields")
    @classmethod
    def _elem(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return fields_list(v, "element_fields", required=False)

    @model_validator(mode="after")
    def _elements(self) -> SketchTaskConfig:
        if self.kind.uses_elements and not self.element_fields:
            raise ValueError(
                f"element_fields is empty; a {self.kind.title} task (skt_type {self.skt_type}) counts "
                f"distinct element_fields per flow: list at least one of {', '.join(FIELD_NAMES)}"
            )
        resolved = self.kind.resolve(
            self.params, key_length(self.flow_fields), key_length(self.element_fields)
        )
        if resolved is not self.params:
            return self.model_copy(update={"params": resolved})
        return self

    @property
    def kind(self) -> SketchKind:
        """The sketch kind of this task."""
        if self._kind is None:
            self._kind = SKETCHES.get(sketch_kind_name(self.skt_type))
        return self._kind

    def memory_bytes(self) -> int:
        """Bytes the task's sketch allocates."""
        return self.kind.memory_bytes(
            self.params, key_length(self.flow_fields), key_length(self.element_fields)
        )

    @classmethod
    def known_keys(cls, data: dict[str, Any]) -> dict[str, Any]:
        keys = {k: v for k, v in super().known_keys(data).items() if k != "params"}
        try:
            kind = SKETCHES.get(sketch_kind_name(data.get("skt_type")))
        except (KindError, ValueError):
            return keys
        keys.update(kind.params_model.known_keys(data))
        return keys

    @model_serializer(mode="wrap")
    def _flat(self, handler: Any) -> Any:
        # the effective configuration shows the kind's parameters beside the common keys, as written
        out = handler(self)
        params = out.pop("params", None) if isinstance(out, dict) else None
        if isinstance(params, dict):
            out.update(params)
        return out


_HITTER_TITLES = {
    HitterType.COUNT: ("Heavy hitters by packets", "Packets"),
    HitterType.SIZE: ("Heavy hitters by bytes", "Bytes"),
    HitterType.SPREAD: ("Super-spreaders", "Distinct elements"),
}


def _threshold(task: Any, kind: HitterType) -> int:
    """The threshold a sketch task reports ``kind`` heavy hitters at (0 if the sketch has none)."""
    return int(task.sketch.thresholds().get(kind, 0)) if hasattr(task.sketch, "thresholds") else 0


def _builtin_sketch_kinds() -> list[SketchKind]:
    return [SKETCHES.get(name) for name in SKETCHES.builtins]


def _hitters(snap: Any, kind: HitterType) -> Sequence[FlowValue]:
    h = snap.hitters.get(kind)
    return list(h) if h is not None else []


class SketchAggregator(AggregatorKind):
    """The ``sketch`` aggregator (see the module docstring)."""

    name = "sketch"
    task_model = SketchTaskConfig
    description = "sketches in fixed memory: heavy hitters, super-spreaders"
    metrics: ClassVar[Mapping[str, Metric]] = {
        "heavy_hitter_count": Metric(
            "heavy_hitter_count", "packets per flow (heavy hitters by packets)", per_flow=True
        ),
        "heavy_hitter_size": Metric(
            "heavy_hitter_size", "bytes per flow (heavy hitters by bytes)", per_flow=True, suffix=" bytes"
        ),
        "super_spreader_spread": Metric(
            "super_spreader_spread", "distinct elements per flow (super-spreaders)", per_flow=True
        ),
    }
    #: The heavy-hitter type each metric reads.
    METRIC_TYPES: ClassVar[dict[str, HitterType]] = {
        "heavy_hitter_count": HitterType.COUNT,
        "heavy_hitter_size": HitterType.SIZE,
        "super_spreader_spread": HitterType.SPREAD,
    }

    def columns_for(self, tasks: Sequence[Any]) -> tuple[str, ...]:
        """``vlan_id`` when a task keys flows or elements on VlanID (readers and probes decode it)."""
        fields = {f for t in tasks for f in (*t.flow_fields, *(t.element_fields or ()))}
        return ("vlan_id",) if "VlanID" in fields else ()

    def memory_bytes(self, task: Any) -> int:
        return task.memory_bytes()

    def memory_detail(self, task: Any) -> str:
        return task.kind.memory_detail(task.params)

    def metric_problem(self, task: Any, metric: str) -> str | None:
        base = super().metric_problem(task, metric)
        if base is not None:
            return base
        kind = task.kind
        if metric == "heavy_hitter_count":
            return None  # the original compares the spreads of a SuperSpread task under this metric
        wanted = self.METRIC_TYPES[metric]
        if wanted in kind.hitter_types:
            return None
        able = [k for k in _builtin_sketch_kinds() if wanted in k.hitter_types]
        need = (
            " or ".join(f"{k.title} task (skt_type {k.number})" for k in able)
            or f"sketch reporting {wanted.name}"
        )
        have = [
            m for m, t in self.METRIC_TYPES.items() if t in kind.hitter_types or m == "heavy_hitter_count"
        ]
        return f"{metric!r} needs a {need} but {task.name!r} is a {kind.title} task; use {' or '.join(have)}"

    def build_task(self, task: Any) -> EngineTask:
        from netspectra.engine.groups import ConcurrentTask
        from netspectra.sketches.base import SketchTask

        return ConcurrentTask(SketchTask.from_config(task))

    def deliver(self, writer: Any, snap: Any, meta: SnapshotMeta) -> None:
        writer.write_hitters(snap, meta)

    def warm_up(self, tasks: Sequence[Any] | None) -> None:
        from netspectra.batch import PacketBatch
        from netspectra.sketches.base import SketchTask
        from netspectra.sketches.variants import SKETCH_VARIANTS

        if tasks is None:  # every variant of every built-in kind
            pairs = {
                (name, v)
                for name in SKETCHES.builtins
                for v in SKETCH_VARIANTS.get(SKETCHES.get(name).skt_type, {"": ""})
            }
        else:
            pairs = {(t.kind.name, getattr(t.params, "variant", "")) for t in tasks}
        batch = PacketBatch.empty(2)
        _fill(batch)
        for name, variant in sorted(pairs):
            kind = SKETCHES.get(name)
            small = {"variant": variant, "width": 64, "depth": 2, "m": 8}
            if variant not in ("mv", "original"):
                small = {"variant": variant, "memory": 16384, "m": 8 if variant == "spreadsketch" else 0}
            # the configured tasks' variants were validated with the configuration: these known-good
            # values need no validator, whose first build (and pydantic's plugin scan) cost a cached
            # start ~20 ms; an image build (no tasks) validates every variant's
            model = kind.params_model
            made = model.model_validate(small) if tasks is None else model.model_construct(**small)
            params = kind.resolve(made, 16, 16)
            task = SketchTask.from_config(
                SketchTaskConfig.model_construct(
                    name="warm_up",
                    skt_type=kind.number,
                    flow_fields=("SrcIP",),
                    element_fields=("DstIP",),
                    seed=1,
                    params=params,
                )
            )
            task.update(batch)
            if tasks is None:  # an image build: the Arrow output's kernels too (see AggregatorKind)
                task.snapshot().to_arrow()

    report_key: ClassVar[str] = "sketch_tasks"

    def report(self, task: Any, snap: Any, top: int) -> dict[str, Any]:
        p = task.params
        return {
            "name": p.name,
            "skt_type": p.skt_type,
            "flow_fields": list(p.flow_fields),
            "element_fields": list(p.element_fields),
            "seed": p.seed,
            "memory_bytes": task.memory_bytes,
            "unknown_key_rows": dict(getattr(task, "missing_key_rows", {}) or {}),
            "heavy_hitters": {
                t.name.lower(): {
                    "count": len(h),
                    "threshold": _threshold(task, t),
                    "top": [{"flow": f, "value": v} for f, v in h.to_list()[:top]],
                }
                for t, h in sorted(snap.hitters.items())
            },
        }

    def render(self, task: Any, snap: Any, top: int) -> list[Any]:
        from rich.table import Table
        from rich.text import Text

        out: list[Any] = []
        flow = " ".join(task.flow_fields)
        for kind, hitters in sorted(snap.hitters.items()):
            title, unit = _HITTER_TITLES[HitterType(kind)]
            shown = hitters.to_list()[:top]
            threshold = _threshold(task, HitterType(kind))
            over = f"at or over the threshold of {threshold:,} {unit.lower()}" if threshold else "reported"
            head = Text.assemble(
                (title, "bold"),
                f" — task {task.name}: {len(hitters):,} flow(s) {over}",
                f", top {len(shown)}" if len(shown) < len(hitters) else "",
            )
            out.append(head)
            if not shown:
                continue
            t = Table()
            t.add_column(f"Flow ({flow})", overflow="fold")
            t.add_column(unit, justify="right")
            for f, v in shown:
                t.add_row(f, f"{v:,}")
            out.append(t)
        return out

    def metric_values(self, metric: str, snap: Any) -> Sequence[FlowValue]:
        if metric == "heavy_hitter_count":
            if HitterType.COUNT in snap.hitters:
                return _hitters(snap, HitterType.COUNT)
            return _hitters(snap, HitterType.SPREAD)
        if metric in self.METRIC_TYPES:
            return _hitters(snap, self.METRIC_TYPES[metric])
        raise ValueError(f"{metric!r} is not a metric of sketch tasks; they have {', '.join(self.metrics)}")


def _fill(batch: Any) -> None:
    batch.ts_ns[:] = 0
    batch.src_ip[:] = 0
    batch.dst_ip[:] = 0
    batch.src_port[:] = 0
    batch.dst_port[:] = 0
    batch.protocol[:] = 6
    batch.length[:] = 60


KIND = SketchAggregator()
