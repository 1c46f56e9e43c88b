"""The common interface of the sketches, their heavy-hitter results, and the sketch task of the engine.

* :class:`Sketch` — what every sketch algorithm implements. A subclass declares what it answers with
  ``skt_type`` (``class CountMinSketch(Sketch, skt_type=0)``); several classes answer the same type
  (the task's ``variant`` chooses). :func:`sketch_class` finds the class of a (type, variant) in the
  one table of :mod:`netspectra.sketches.variants` (a plugin sketch kind, named in ``skt_type``, through
  its :class:`~netspectra.sketches.kind.SketchKind`), importing its module on first use.
* :class:`HeavyHitters` — raw results: keys (bytes) and values, deduplicated, sorted.
* :class:`SketchTask` — one configured sketch task: encodes a :class:`~netspectra.batch.PacketBatch`
  into keys (flow, or flow‖element for sketches that count elements) and feeds the sketch;
  :meth:`SketchTask.snapshot` gives a :class:`SketchSnapshot` whose :meth:`~SketchSnapshot.to_arrow` has
  the columns of the original's ``heavy_hitters`` table minus ``Timestamp``.

Heavy-hitter types, as the original's ``heavy_hitters.Type`` column: 0 = count (packets), 1 = size
(bytes), 2 = spread (distinct elements).
"""

from __future__ import annotations

import logging
import secrets
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from netspectra.batch import PacketBatch
from netspectra.key_columns import Decoder, MissingFields
from netspectra.sketches.keys import decode_flows, encode_flow_element, encode_keys, validate_fields
from netspectra.sketches.kind import HitterType
from netspectra.sketches.sketch_kind import DEFAULT_SEED

if TYPE_CHECKING:
    import pyarrow as pa

log = logging.getLogger(__name__)


@cache
def heavy_hitters_schema() -> pa.Schema:
    """Arrow schema of :meth:`SketchSnapshot.to_arrow` (the original's ``heavy_hitters`` minus
    ``Timestamp``); also the module attribute ``HEAVY_HITTERS_SCHEMA``. Built on first use: pyarrow costs
    ~20 ms of start-up that a command printing a report does not need (issue 19)."""
    import pyarrow as pa

    return pa.schema(
        [
            pa.field("TaskName", pa.string(), nullable=False),
            pa.field("Flow", pa.string(), nullable=False),
            pa.field("Value", pa.uint64(), nullable=False),
            pa.field("Type", pa.uint8(), nullable=False),
        ]
    )


def __getattr__(name: str) -> Any:
    if name == "HEAVY_HITTERS_SCHEMA":
        return heavy_hitters_schema()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _readonly(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a


@dataclass(frozen=True, slots=True, eq=False)
class HeavyHitters:
    """Heavy hitters of one type as raw keys: ``keys`` uint8 (m, L), ``values`` uint64 (m,).

    Invariants (from :meth:`from_candidates`): one row per distinct key, sorted by value descending and,
    among equal values, by key bytes ascending (deterministic, unlike the original's map order); both
    arrays are read-only copies, independent of the sketch that produced them.
    """

    keys: np.ndarray
    values: np.ndarray

    def __len__(self) -> int:
        return int(self.values.shape[0])

    @classmethod
    def from_candidates(cls, keys: np.ndarray, values: np.ndarray, threshold: int = 0) -> HeavyHitters:
        """Deduplicate ``keys`` keeping each key's largest value, keep values ``>= threshold``, sort.

        ``keys`` is (m, L) uint8, ``values`` (m,) of any unsigned integer type; both are copied.
        """
        keys = np.ascontiguousarray(keys, dtype=np.uint8)
        values = np.asarray(values).astype(np.uint64)
        if keys.ndim != 2 or keys.shape[0] != values.shape[0]:
            raise ValueError(f"keys {keys.shape} and values {values.shape} do not match")
        L = keys.shape[1]
        keep = values >= np.uint64(threshold)
        keys, values = keys[keep], values[keep]
        if keys.shape[0] == 0:
            return cls(_readonly(np.empty((0, L), np.uint8)), _readonly(np.empty(0, np.uint64)))
        if L == 0:
            return cls(_readonly(np.empty((1, 0), np.uint8)), _readonly(values.max(keepdims=True)))
        # lexicographic key order first, then value descending: the first row of each key holds its max
        by_key = np.lexsort((values.max() - values, *keys.T[::-1]))
        k, v = keys[by_key], values[by_key]
        first = np.ones(k.shape[0], dtype=bool)
        first[1:] = (k[1:] != k[:-1]).any(axis=1)
        k, v = k[first], v[first]
        # stable sort on -value keeps the ascending key order among ties
        order = np.argsort(v.max() - v, kind="stable")
        return cls(_readonly(np.ascontiguousarray(k[order])), _readonly(v[order]))

    def decode(
        self, fields: Sequence[str], dictionaries: Mapping[str, Sequence[str]] | None = None
    ) -> HeavyHitterList:
        """Flow texts (:func:`~netspectra.sketches.keys.decode_flows`) for these rows; ``dictionaries``
        decode the codes of dictionary fields."""
        return HeavyHitterList(tuple(decode_flows(self.keys, fields, dictionaries)), self.values, self.keys)


@dataclass(frozen=True, slots=True, eq=False)
class HeavyHitterList:
    """Decoded heavy hitters: ``flows[i]`` (text) has value ``values[i]``; sorted as :class:`HeavyHitters`.

    ``keys`` keeps the raw key bytes of every row (read-only), e.g. for merging across engines.
    """

    flows: tuple[str, ...]
    values: np.ndarray
    keys: np.ndarray

    def __len__(self) -> int:
        return len(self.flows)

    def __iter__(self) -> Iterator[tuple[str, int]]:
        return zip(self.flows, (int(v) for v in self.values), strict=True)

    def to_list(self) -> list[tuple[str, int]]:
        """``[(flow, value), ...]`` in order."""
        return list(self)


@dataclass(frozen=True, slots=True)
class SketchParams:
    """Every parameter of a sketch task, as the configuration names them (0 = the type's default).

    ``seed`` is already resolved to an integer (see :class:`SketchTask`).
    """

    name: str
    skt_type: int | str
    flow_fields: tuple[str, ...]
    element_fields: tuple[str, ...] = ()
    width: int = 0
    depth: int = 0
    size_threshold: int = 0
    count_threshold: int = 0
    m: int = 0
    size: int = 0
    b: float = 0.0
    base: float = 0.0
    seed: int = 0
    #: the algorithm of the type (:mod:`netspectra.sketches.variants`; "" = the type's default)
    variant: str = ""
    #: bytes the sketch may take, for the variants sized by memory (0 = the variant's rule, see each)
    memory: int = 0


class Sketch(ABC):
    """A streaming summary fed with whole batches of fixed-width keys.

    Contract for implementations:

    * ``update(keys, lengths, packets=None)``: ``keys`` is a C-contiguous uint8 (n, L) array of flow
      keys, or of flow‖element keys when the class sets ``uses_elements``; ``lengths`` uint32 (n,) wire
      lengths. One call processes the rows in order (order-dependent sketches run in numba kernels).
      With ``packets`` (uint64 (n,)) the rows are *weighted* (flow-export records): row ``i`` stands
      for ``packets[i]`` packets of that key, one after the other, of ``lengths[i]`` bytes in all
      (uint64, the record's octets), and the sketch ends as those packets would leave it
      (:mod:`netspectra.weights`; each sketch documents how exactly). A class that can do that sets
      ``accepts_weights``; :class:`SketchTask` feeds a class that does not one packet per record.
    * ``heavy_hitters()`` returns the results of the type by :class:`HitterType`; keys in the results are
      flow keys (without the element part).
    * The object is not thread-safe; :class:`SketchTask` serialises calls with a lock.
    """

    #: ``skt_type`` the class answers; set by ``__init_subclass__``.
    skt_type: ClassVar[int]
    #: Whether keys carry the element part (flow‖element) — SuperSpread does, CountMin does not.
    uses_elements: ClassVar[bool] = False
    #: Whether :meth:`update` takes ``packets`` (weighted rows); every built-in sketch does.
    accepts_weights: ClassVar[bool] = False

    def __init_subclass__(cls, skt_type: int | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if skt_type is not None:  # an abstract intermediate leaves it out
            cls.skt_type = int(skt_type)

    @classmethod
    @abstractmethod
    def from_params(cls, params: SketchParams) -> Sketch:
        """A new empty sketch for a task's parameters (0 → the type's default)."""

    @abstractmethod
    def update(self, keys: np.ndarray, lengths: np.ndarray, packets: np.ndarray | None = None) -> None:
        """Feed ``keys`` (n, L) uint8 with their wire ``lengths`` (n,) uint32, in row order; weighted rows
        with ``packets`` (n,) uint64 and their octets as ``lengths`` (see the class docstring)."""

    @abstractmethod
    def heavy_hitters(self) -> dict[HitterType, HeavyHitters]:
        """The current heavy hitters of every type the sketch reports, as independent copies."""

    @abstractmethod
    def reset(self) -> None:
        """Back to the empty state (same shape and seeds)."""

    def thresholds(self) -> dict[HitterType, int]:
        """The threshold each reported type's heavy hitters are at or over (for reports)."""
        return {}

    @property
    @abstractmethod
    def memory_bytes(self) -> int:
        """Bytes held by the sketch's arrays."""

    @abstractmethod
    def to_bytes(self) -> bytes:
        """A self-describing serialisation (header with shape, seeds, options, version, then the state)."""

    @classmethod
    @abstractmethod
    def from_bytes(cls, data: bytes) -> Sketch:
        """The sketch :meth:`to_bytes` wrote; ``ValueError`` on a foreign or damaged buffer."""

    @abstractmethod
    def merge(self, other: Sketch) -> None:
        """Fold ``other`` (same shape and seeds) into this sketch; each type documents its exactness."""


def check_weights(
    n: int, lengths: np.ndarray | None, packets: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray | None]:
    """``(lengths, packets)`` as the kernels take them: uint32 wire lengths for packets, or uint64
    octets and uint64 packets for weighted rows; ``ValueError`` for a shape that is not ``(n,)``."""
    if packets is None:
        out = np.ascontiguousarray(lengths if lengths is not None else np.zeros(n, np.uint32), np.uint32)
    else:
        packets = np.ascontiguousarray(packets, dtype=np.uint64)
        if packets.shape != (n,):
            raise ValueError(f"packets must have shape ({n},), got {packets.shape}")
        out = np.ascontiguousarray(lengths if lengths is not None else np.zeros(n, np.uint64), np.uint64)
    if out.shape != (n,):
        raise ValueError(f"lengths must have shape ({n},), got {out.shape}")
    return out, packets


def distinct_rows(keys: np.ndarray, packets: np.ndarray | None) -> np.ndarray:
    """The key rows a sketch of distinct elements takes from weighted rows: every row of at least one
    packet, once (its other packets repeat its (flow, element) pair, which such a sketch ignores)."""
    if packets is None:
        return keys
    packets = np.asarray(packets)
    if packets.shape != (np.asarray(keys).shape[0],):
        raise ValueError(f"packets must have shape ({np.asarray(keys).shape[0]},), got {packets.shape}")
    empty = packets == 0
    return np.ascontiguousarray(keys[~empty]) if empty.any() else keys


def sketch_class(skt_type: int | str, variant: str = "") -> type[Sketch]:
    """The class of (``skt_type``, ``variant``) (``""``: the type's default; a plugin kind's name has
    no variants), importing its module on first use; ``ValueError`` naming the valid choices if either
    is unknown."""
    from netspectra.sketches.variants import variant_class

    if isinstance(skt_type, str) and not skt_type.strip().isdigit():
        from netspectra.kinds import SKETCHES

        try:
            return SKETCHES.get(skt_type).sketch_class()
        except ValueError as exc:  # KindError is a ValueError
            raise ValueError(f"unknown skt_type {skt_type!r}: {exc}") from None
    return variant_class(int(skt_type), variant)


@dataclass(frozen=True, slots=True, eq=False)
class SketchSnapshot:
    """A sketch task's heavy hitters at one moment: ``hitters`` by :class:`HitterType` (read-only copies).

    A CountMin task has COUNT and SIZE lists, a SuperSpread task a SPREAD list.
    """

    #: The aggregator kind that produces these snapshots (alerting and writers ask it).
    kind: ClassVar[str] = "sketch"

    task_name: str
    skt_type: int | str
    flow_fields: tuple[str, ...]
    hitters: Mapping[HitterType, HeavyHitterList] = field(default_factory=dict)

    @property
    def count(self) -> HeavyHitterList | None:
        """Heavy hitters by packets (Type 0), if the sketch reports them."""
        return self.hitters.get(HitterType.COUNT)

    @property
    def size(self) -> HeavyHitterList | None:
        """Heavy hitters by bytes (Type 1), if the sketch reports them."""
        return self.hitters.get(HitterType.SIZE)

    @property
    def spread(self) -> HeavyHitterList | None:
        """Super-spreaders by distinct elements (Type 2), if the sketch reports them."""
        return self.hitters.get(HitterType.SPREAD)

    def __len__(self) -> int:
        return sum(len(h) for h in self.hitters.values())

    def to_arrow(self) -> pa.Table:
        """Columns ``TaskName`` string, ``Flow`` string, ``Value`` uint64, ``Type`` uint8; Type 0, 1, 2 in
        that order, each list in its own (descending) order."""
        import pyarrow as pa

        flows: list[str] = []
        values: list[np.ndarray] = []
        types: list[np.ndarray] = []
        for t in sorted(self.hitters):
            h = self.hitters[t]
            flows.extend(h.flows)
            values.append(np.asarray(h.values, dtype=np.uint64))
            types.append(np.full(len(h), int(t), dtype=np.uint8))
        n = len(flows)
        return pa.table(
            [
                pa.array([self.task_name] * n, type=pa.string()),
                pa.array(flows, type=pa.string()),
                pa.array(np.concatenate(values) if values else np.empty(0, np.uint64), type=pa.uint64()),
                pa.array(np.concatenate(types) if types else np.empty(0, np.uint8), type=pa.uint8()),
            ],
            schema=heavy_hitters_schema(),
        )


class SketchTask:
    """One configured sketch task: batches in, heavy-hitter snapshots out.

    ``seed`` None takes the fixed default seed (:data:`~netspectra.sketches.sketch_kind.DEFAULT_SEED`):
    the same input gives the same answers on every run and after every restart. ``seed="random"`` draws
    a random 64-bit seed (logged, so the run can be reproduced by configuring it), as the original
    always did. Parameters of 0 take the sketch type's defaults. ``variant`` chooses the algorithm
    (:mod:`netspectra.sketches.variants`; ``""`` = the type's default); :attr:`params` holds the
    resolved name.

    Thread safety: ``update``, ``snapshot`` and ``reset`` hold one lock, so a snapshot never sees half
    a batch and :meth:`snapshot` with ``reset=True`` loses no packet between the two (the original's
    bug 4: its resetter ran independently of its snapshotters).
    """

    def __init__(
        self,
        name: str,
        skt_type: int | str,
        flow_fields: Sequence[str],
        element_fields: Sequence[str] = (),
        width: int = 0,
        depth: int = 0,
        size_threshold: int = 0,
        count_threshold: int = 0,
        m: int = 0,
        size: int = 0,
        b: float = 0.0,
        base: float = 0.0,
        seed: int | str | None = None,
        variant: str = "",
        memory: int = 0,
    ) -> None:
        from netspectra.sketches.variants import resolve_variant

        if str(skt_type).strip().isdigit():
            variant = resolve_variant(int(skt_type), variant)
        cls = sketch_class(skt_type, variant)
        flow = validate_fields(flow_fields, "flow_fields")
        elem = validate_fields(element_fields, "element_fields", required=cls.uses_elements)
        if seed is None:
            seed = DEFAULT_SEED
        elif seed == "random":
            seed = secrets.randbits(64)
            log.info("sketch task %s: random seed %d (configure it to reproduce this run)", name, seed)
        self.params = SketchParams(
            name=name,
            skt_type=int(skt_type) if str(skt_type).isdigit() else str(skt_type),
            flow_fields=flow,
            element_fields=elem,
            width=int(width),
            depth=int(depth),
            size_threshold=int(size_threshold),
            count_threshold=int(count_threshold),
            m=int(m),
            size=int(size),
            b=float(b),
            base=float(base),
            seed=int(seed),
            variant=variant,
            memory=int(memory),
        )
        # only sketches that count elements see them in the key; CountMin ignores element_fields
        self._elem_fields = elem if cls.uses_elements else ()
        self.sketch: Sketch = cls.from_params(self.params)
        self._weights = bool(getattr(cls, "accepts_weights", False))
        self._missing = MissingFields(name, "sketch")
        self._decoder = Decoder()
        self._empty_rows = 0
        self._unweighted_rows = 0
        self._lock = threading.Lock()

    @classmethod
    def from_config(cls, cfg: Any) -> SketchTask:
        """Build from a validated :class:`~netspectra.sketches.sketch_kind.SketchTaskConfig` (its sketch
        kind's parameters in ``cfg.params``; ``seed: random`` draws a seed, logged)."""
        known = set(SketchParams.__dataclass_fields__) - {"name", "skt_type", "flow_fields", "element_fields"}
        # the fields as they are (scalars): model_dump would build the model's serializer, and with it the
        # first validator of the process and pydantic's plugin scan (~20 ms of a start whose configuration
        # came from the validated cache)
        given = type(cfg.params).model_fields if cfg.params is not None else {}
        params = {k: getattr(cfg.params, k) for k in given if k in known}
        return cls(
            name=cfg.name,
            skt_type=int(cfg.kind.skt_type) if cfg.kind.skt_type is not None else cfg.kind.name,
            flow_fields=tuple(cfg.flow_fields),
            element_fields=tuple(cfg.element_fields or ()),
            seed="random" if cfg.seed == "random" else int(cfg.seed),
            **{k: v for k, v in params.items() if k in known},
        )

    def __repr__(self) -> str:
        p = self.params
        flow = list(p.flow_fields)
        return f"SketchTask({p.name!r}, skt_type={p.skt_type}, flow={flow}, sketch={self.sketch!r})"

    @property
    def name(self) -> str:
        return self.params.name

    @property
    def flow_fields(self) -> tuple[str, ...]:
        return self.params.flow_fields

    @property
    def memory_bytes(self) -> int:
        """Bytes held by the sketch."""
        return self.sketch.memory_bytes

    def encode(self, batch: PacketBatch) -> np.ndarray:
        """The keys this task feeds its sketch for ``batch`` (flow, or flow‖element). A key field the
        batch lacks is 0 in every key (counted: :meth:`counters`); the batch's dictionaries are kept
        to decode the flows it names."""
        self._decoder.learn(batch.dictionaries)
        if self._elem_fields:
            return encode_flow_element(batch, self.params.flow_fields, self._elem_fields, self._missing)
        return encode_keys(batch, self.params.flow_fields, self._missing)

    @property
    def missing_key_rows(self) -> dict[str, int]:
        """Rows keyed under a field's unknown value because their batch lacked it, per field."""
        return self._missing.as_dict()

    def counters(self) -> dict[str, object]:
        """The task's own counters (the engine reports them per task): rows of batches without a key
        field, weighted rows of 0 packets, weighted rows a plugin sketch took as one packet."""
        return {
            "missing_key_rows": self.missing_key_rows,
            "empty_rows": self._empty_rows,
            "unweighted_rows": self._unweighted_rows,
        }

    def update(self, batch: PacketBatch) -> None:
        """Account every packet of ``batch`` (key encoding outside the lock, sketch update inside).

        A weighted row (a flow-export record) counts as the packets it stands for (``batch.packets``,
        ``batch.octets``; :mod:`netspectra.weights`); a row of 0 packets counts nothing
        (:attr:`empty_rows`). A plugin sketch class without ``accepts_weights`` gets one packet of the
        record's mean size per record, said once in the log and counted (:attr:`unweighted_rows`).
        """
        if len(batch) == 0:
            return
        packets = batch.packets
        if packets is not None:
            empty = packets == 0
            if empty.any():
                with self._lock:
                    self._empty_rows += int(empty.sum())
                batch = batch.take(~empty)
                packets = batch.packets
                if len(batch) == 0:
                    return
        keys = self.encode(batch)
        if packets is None:
            lengths = np.ascontiguousarray(batch.length, dtype=np.uint32)
            with self._lock:
                self.sketch.update(keys, lengths)
        elif self._weights:
            with self._lock:
                self.sketch.update(keys, batch.octets, packets)
        else:
            lengths = np.ascontiguousarray(batch.length, dtype=np.uint32)
            with self._lock:
                if not self._unweighted_rows:
                    log.warning(
                        "sketch task %s: its sketch (%s) does not take weighted rows; each flow-export "
                        "record counts as one packet of its mean size (counted in unweighted_rows)",
                        self.name,
                        type(self.sketch).__name__,
                    )
                self._unweighted_rows += len(batch)
                self.sketch.update(keys, lengths)

    @property
    def empty_rows(self) -> int:
        """Weighted rows of 0 packets seen (they count nothing); never reset."""
        return self._empty_rows

    @property
    def unweighted_rows(self) -> int:
        """Weighted rows fed as one packet each to a sketch that does not take weights; never reset."""
        return self._unweighted_rows

    def snapshot(self, reset: bool = False) -> SketchSnapshot:
        """The current heavy hitters, decoded to flow text; with ``reset`` the sketch is emptied in the
        same critical section (no packet falls between snapshot and reset)."""
        with self._lock:
            raw = self.sketch.heavy_hitters()
            if reset:
                self.sketch.reset()
        words = self._decoder.snapshot()
        hitters = {t: h.decode(self.params.flow_fields, words) for t, h in raw.items()}
        return SketchSnapshot(self.params.name, self.params.skt_type, self.params.flow_fields, hitters)

    def reset(self) -> None:
        """Empty the sketch (same seeds)."""
        with self._lock:
            self.sketch.reset()
