"""Per-packet accounting tasks: the engine feeds every :class:`~netspectra.batch.PacketBatch` to each task.

``exact`` counts every flow exactly in a numba hash table (:class:`~netspectra.tasks.exact.ExactTask`);
``fields`` holds the flow-key field names shared by the tasks and the configuration. Nothing is imported
here, so that ``netspectra.tasks.fields`` stays importable without numba (the configuration uses it).
"""
