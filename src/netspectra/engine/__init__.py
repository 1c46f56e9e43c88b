"""The engine: task groups built from the configuration, fed batches by a manager, snapshotted to writers.

Names are re-exported lazily (importing :mod:`~netspectra.engine.kind` must not load the manager).

* :mod:`~netspectra.engine.kind` — :class:`AggregatorKind`, what an aggregator type declares and builds;
  the types themselves are registered in :data:`netspectra.kinds.AGGREGATORS` (``exact``, ``sketch``,
  plugins through the ``netspectra.aggregators`` entry points).
* :mod:`~netspectra.engine.registry` — :func:`build_groups`: the groups of a configuration.
* :mod:`~netspectra.engine.groups` — :class:`TaskGroup` and the :class:`EngineTask` adapters.
* :mod:`~netspectra.engine.manager` — :class:`Manager` (queue, workers, snapshots, periods, stop),
  the clocks (the offline run, :func:`~netspectra.offline.run.run_offline`, drives it too).
* :mod:`~netspectra.engine.resilient` — :class:`ResilientWriter`, the fail-safe writer wrapper.
* :mod:`~netspectra.engine.metrics` — the engine's counters.
"""

from netspectra.lazy import lazy_exports

_GROUPS = "netspectra.engine.groups"
_MANAGER = "netspectra.engine.manager"
_REGISTRY = "netspectra.engine.registry"
_WHERE = {
    "ConcurrentTask": _GROUPS,
    "EngineTask": _GROUPS,
    "GroupWriter": _GROUPS,
    "LockedTask": _GROUPS,
    "RecordsTask": _GROUPS,
    "TaskGroup": _GROUPS,
    "Clock": _MANAGER,
    "Manager": _MANAGER,
    "ManagerStoppedError": _MANAGER,
    "ManualClock": _MANAGER,
    "SystemClock": _MANAGER,
    "default_num_workers": _MANAGER,
    "run_offline": "netspectra.offline.run",
    "EngineMetrics": "netspectra.engine.metrics",
    "WriterMetrics": "netspectra.engine.metrics",
    "AggregatorKind": "netspectra.engine.kind",
    "Metric": "netspectra.engine.kind",
    "ENTRY_POINT_GROUP": _REGISTRY,
    "aggregator_factory": _REGISTRY,
    "available_aggregators": _REGISTRY,
    "build_groups": _REGISTRY,
    "ResilientWriter": "netspectra.engine.resilient",
}
__getattr__ = lazy_exports(__name__, _WHERE)
__all__ = sorted(_WHERE)
