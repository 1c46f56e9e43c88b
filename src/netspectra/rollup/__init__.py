"""Rollups: traffic per 1-minute, 5-minute and 1-hour bucket of its own time and per tuple of dimensions.

* :mod:`~netspectra.rollup.dims` — the dimensions, the resolutions and their tables (light: no numpy);
* :mod:`~netspectra.rollup.kernels` — the numba kernels (buckets, open-addressing tables) and their
  plain-Python references;
* :mod:`~netspectra.rollup.task` — :class:`RollupTask` (buckets closing in traffic time, epochs,
  increments) and its snapshots, :class:`RollupRows`;
* :mod:`~netspectra.rollup.kind` — the ``rollup`` aggregator kind (configuration, delivery, reports).

The rows are stored in the ClickHouse tables ``rollup_1m``, ``rollup_5m`` and ``rollup_1h``
(:mod:`netspectra.storage.schema`) and read by :mod:`netspectra.storage.rollups` (``TopN``).
"""

from netspectra.lazy import lazy_exports

__all__ = ["DIMENSIONS", "RESOLUTIONS", "RollupRows", "RollupTask"]

__getattr__ = lazy_exports(
    __name__,
    {
        "DIMENSIONS": "netspectra.rollup.dims",
        "RESOLUTIONS": "netspectra.rollup.dims",
        "RollupRows": "netspectra.rollup.task",
        "RollupTask": "netspectra.rollup.task",
    },
)
