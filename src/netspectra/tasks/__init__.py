"""Per-packet accounting tasks: the engine feeds every :class:`~netspectra.batch.PacketBatch` to each task.

``exact`` counts every flow exactly in a numba hash table (:class:`~netspectra.tasks.exact.ExactTask`);
``exact_kind`` declares the ``exact`` aggregator kind (its configuration, outputs and metrics) without
importing numba. Key fields are listed once, in :mod:`netspectra.fields`.
"""
