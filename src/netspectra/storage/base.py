"""The writer interface of the engine: what a sink of snapshots implements, and how kinds are found.

A :class:`Writer` serves one task group (``"exact"``, ``"sketch"``, ``"flows"`` or ``"rollup"``) and
receives, at every snapshot of that group, one call per task: :meth:`Writer.write_flows` with a
:class:`~netspectra.tasks.exact.FlowSnapshot` (exact group), :meth:`Writer.write_hitters` with a
:class:`~netspectra.sketches.base.SketchSnapshot` (sketch group), :meth:`Writer.write_flow_records`
with :class:`~netspectra.flows.records.FlowRecords` (flows group: the records that ended since the
previous snapshot — increments, not state) or :meth:`Writer.write_rollups` with
:class:`~netspectra.rollup.task.RollupRows` (rollup group: increments of rollup rows), each with the
:class:`SnapshotMeta` saying when the snapshot was taken and which aggregation period it belongs to.

Contract between the engine and every writer:

* ``open()`` before the first write, ``close()`` after the last; ``open`` may raise :class:`WriterError`
  (server down, unwritable directory) and may be called again after such a failure.
* A write either stores the whole snapshot of that task or raises :class:`WriterError`, in which case
  the engine may call it again later with the same snapshot and meta (writes are idempotent: the same
  snapshot written twice stores the same thing once, or replaces the earlier copy).
* Writers never modify the snapshots (they are read-only and shared with other writers and threads).
* One writer object is called by one thread at a time (the engine's snapshotter of that writer).

What a kind of writer declares (its parameters model, the groups it serves) is its
:class:`~netspectra.storage.kinds.WriterKind`, registered in :data:`netspectra.kinds.WRITERS` (built-ins
one line each; plugins through the ``netspectra.writers`` entry-point group). A subclass defined with
``kind=...`` (``class MyWriter(Writer, kind="mine")``) is also found by that registry in the process
that defined it; its ``params_model`` and ``groups`` class attributes are read when present.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar, Self

if TYPE_CHECKING:
    from netspectra.config.aggregator import WriterConfig
    from netspectra.flows.records import FlowRecords
    from netspectra.rollup.task import RollupRows
    from netspectra.sketches.base import SketchSnapshot
    from netspectra.tasks.exact import FlowSnapshot

log = logging.getLogger(__name__)

#: The group of a writer is the aggregator kind it stores (``exact``, ``sketch``, a plugin's, ...).
Group = str
#: The built-in groups (a writer kind that declares no groups serves these).
GROUPS: tuple[str, ...] = ("exact", "sketch", "flows")

#: Entry-point group through which other packages provide writer kinds (a WriterKind or Writer subclass).
ENTRY_POINT_GROUP = "netspectra.writers"

_REGISTRY: dict[str, type[Writer]] = {}


@dataclass(frozen=True, slots=True)
class SnapshotMeta:
    """When a snapshot was taken and which aggregation period its data belongs to.

    ``snapshot_ts_ns``: UTC wall-clock time of the snapshot, ns since the epoch. ``period_start_ns``: UTC
    start of the aggregation period (the data is cumulative since then; a reset starts a new period).
    ``final``: this is the last snapshot of its period, taken just before the reset (or at stop).
    Both times must be non-negative integers.
    """

    snapshot_ts_ns: int
    period_start_ns: int
    final: bool = False

    def __post_init__(self) -> None:
        for name in ("snapshot_ts_ns", "period_start_ns"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"SnapshotMeta.{name} must be a non-negative int (ns), got {value!r}")


class StorageError(Exception):
    """A storage operation failed for a reason outside the caller's arguments (I/O, server, engine)."""


class WriterError(StorageError):
    """A write (or open) that failed, e.g. the server is down: the engine retries it later."""


class Writer(ABC):
    """A sink for the snapshots of one task group (see the module docstring for the contract).

    Subclasses pass ``kind`` (and optionally ``aliases``) as class keywords to register; a class that
    passes no ``kind`` is an abstract intermediate and is not registered.
    """

    #: The kind this class registered as (``"clickhouse"``, ``"parquet"``, ``"text"``, ...).
    kind: ClassVar[str]
    #: Other kind names served by the same class (``"gob"`` for Parquet).
    aliases: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, kind: str | None = None, aliases: tuple[str, ...] = (), **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if kind is None:
            return
        for name in (kind, *aliases):
            other = _REGISTRY.get(name)
            # the same class defined again (a module reloaded) replaces itself; another class may not
            if other is not None and other.__qualname__ != cls.__qualname__:
                raise TypeError(
                    f"writer kind {name!r} is already registered by {other.__module__}.{other.__name__}"
                )
            _REGISTRY[name] = cls
        cls.kind = kind
        cls.aliases = tuple(aliases)

    def __init__(self, cfg: WriterConfig, group: str) -> None:
        if not isinstance(group, str) or not group:
            raise ValueError(f"group must be the name of an aggregator kind, got {group!r}")
        self.cfg = cfg
        self.group: Group = group  # type: ignore[assignment]  # checked just above

    def __repr__(self) -> str:
        return f"{type(self).__name__}(group={self.group!r})"

    @abstractmethod
    def open(self) -> None:
        """Connect, create tables or directories; :class:`WriterError` if that fails (retryable)."""

    def write_flows(self, snap: FlowSnapshot, meta: SnapshotMeta) -> None:
        """Store one exact task's snapshot; :class:`WriterError` on failure (nothing half-stored)."""
        self._require_group("exact", "write_flows")
        self._write_flows(snap, meta)

    def write_hitters(self, snap: SketchSnapshot, meta: SnapshotMeta) -> None:
        """Store one sketch task's heavy hitters; :class:`WriterError` on failure."""
        self._require_group("sketch", "write_hitters")
        self._write_hitters(snap, meta)

    def write_flow_records(self, snap: FlowRecords, meta: SnapshotMeta) -> None:
        """Store the flow records one flows task ended since its previous snapshot; :class:`WriterError`
        on failure (then the same snapshot comes again: store it once)."""
        self._require_group("flows", "write_flow_records")
        self._write_flow_records(snap, meta)

    def write_rollups(self, snap: RollupRows, meta: SnapshotMeta) -> None:
        """Store the rollup rows one rollup task handed out since its previous snapshot (increments of
        cumulative rows: a row replaces an earlier one of the same identity); :class:`WriterError` on
        failure (then the same snapshot comes again: store it once)."""
        self._require_group("rollup", "write_rollups")
        self._write_rollups(snap, meta)

    @abstractmethod
    def close(self) -> None:
        """Release connections and files; safe to call twice and after a failed :meth:`open`."""

    @abstractmethod
    def _write_flows(self, snap: FlowSnapshot, meta: SnapshotMeta) -> None: ...

    @abstractmethod
    def _write_hitters(self, snap: SketchSnapshot, meta: SnapshotMeta) -> None: ...

    def _write_flow_records(self, snap: FlowRecords, meta: SnapshotMeta) -> None:
        # Not abstract: writer kinds that do not declare the flows group never get here (the
        # configuration refuses them there), and existing writers need not change.
        raise TypeError(f"{type(self).__name__} does not store flow records")

    def _write_rollups(self, snap: RollupRows, meta: SnapshotMeta) -> None:
        # Not abstract, as _write_flow_records: only writer kinds that declare the rollup group get here.
        raise TypeError(f"{type(self).__name__} does not store rollups")

    def _require_group(self, group: Group, method: str) -> None:
        # A writer configured under aggregator.exact must never receive sketch data and vice versa.
        if self.group != group:
            raise TypeError(f"{method} is for the {group} group; this writer serves the {self.group} group")

    def __enter__(self) -> Self:
        self.open()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def registered_writer_classes() -> dict[str, type[Writer]]:
    """The subclasses registered in this process with ``kind=...`` (and their aliases), by kind name."""
    return dict(_REGISTRY)


def known_kinds() -> list[str]:
    """Every writer kind: built-in, provided by entry points, and defined in this process."""
    from netspectra.kinds import WRITERS

    return sorted(WRITERS.names())


def writer_class(kind: str) -> type[Writer]:
    """The class serving writer ``kind``; ``ValueError`` naming the known kinds if there is none."""
    from netspectra.kinds import WRITERS

    return WRITERS.get(kind).writer_class()
