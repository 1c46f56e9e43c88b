"""Snapshot and write timing kept by a real manager and its resilient writers (exported by ops)."""

from __future__ import annotations

from typing import Any

import numpy as np

from netspectra.batch import PacketBatch
from netspectra.engine import GroupWriter, LockedTask, Manager, TaskGroup
from netspectra.tasks.exact import ExactTask


class Sink:
    def __init__(self) -> None:
        self.flows: list[Any] = []
        self.opened = False

    def open(self) -> None:
        self.opened = True

    def close(self) -> None:
        pass

    def write_flows(self, snap: Any, meta: Any) -> None:
        self.flows.append(snap)


def test_snapshots_and_writes_are_timed() -> None:
    sink = Sink()
    task = LockedTask(ExactTask("flows", ("SrcIP",)))
    group = TaskGroup(
        "exact", (task,), (GroupWriter("exact/sink", sink, None),), lambda w, s, m: w.write_flows(s, m)
    )
    m = Manager([group], num_workers=1)
    m.start()
    batch = PacketBatch.empty(4)
    batch.length[:] = np.array([100, 200, 300, 400], dtype=batch.length.dtype)
    m.submit(batch)
    m.snapshot("flows")  # on demand: timed too
    m.stop()  # the final snapshot goes to the writer
    assert sink.opened and len(sink.flows) == 1 and sink.flows[0].total_bytes == 1000
    _, _, n_snap = m.metrics.snapshot_seconds.get("flows").state()
    assert n_snap == 2
    counts, total, n_write = m.metrics.writers["exact/sink"].write_seconds.state()
    assert n_write == 1 and total >= 0 and sum(counts) == 1
