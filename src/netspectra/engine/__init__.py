"""The engine: task groups built from the configuration, fed batches by a manager, snapshotted to writers.

* :mod:`~netspectra.engine.registry` — aggregator types (``exact``, ``sketch``, plugins through the
  ``netspectra.aggregators`` entry points) and :func:`build_groups`.
* :mod:`~netspectra.engine.groups` — :class:`TaskGroup` and the :class:`EngineTask` adapters.
* :mod:`~netspectra.engine.manager` — :class:`Manager` (queue, workers, snapshots, periods, stop),
  the clocks, and :func:`run_offline` (``analyze --store``).
* :mod:`~netspectra.engine.resilient` — :class:`ResilientWriter`, the fail-safe writer wrapper.
* :mod:`~netspectra.engine.metrics` — the engine's counters.
"""

from netspectra.engine.groups import (
    ConcurrentTask,
    EngineTask,
    GroupWriter,
    LockedTask,
    TaskGroup,
    build_exact_group,
    build_sketch_group,
    deliver_flows,
    deliver_hitters,
)
from netspectra.engine.manager import (
    Clock,
    Manager,
    ManagerStoppedError,
    ManualClock,
    SystemClock,
    default_num_workers,
    run_offline,
)
from netspectra.engine.metrics import EngineMetrics, WriterMetrics
from netspectra.engine.registry import (
    BUILTIN_AGGREGATORS,
    ENTRY_POINT_GROUP,
    aggregator_factory,
    available_aggregators,
    build_groups,
)
from netspectra.engine.resilient import ResilientWriter

__all__ = [
    "BUILTIN_AGGREGATORS",
    "ENTRY_POINT_GROUP",
    "Clock",
    "ConcurrentTask",
    "EngineMetrics",
    "EngineTask",
    "GroupWriter",
    "LockedTask",
    "Manager",
    "ManagerStoppedError",
    "ManualClock",
    "ResilientWriter",
    "SystemClock",
    "TaskGroup",
    "WriterMetrics",
    "aggregator_factory",
    "available_aggregators",
    "build_exact_group",
    "build_groups",
    "build_sketch_group",
    "default_num_workers",
    "deliver_flows",
    "deliver_hitters",
    "run_offline",
]
