"""Weighted rows: what a row of a :class:`~netspectra.batch.PacketBatch` stands for, as every task counts it.

A batch from a flow export carries ``packets`` and ``octets`` (already multiplied by the sampling
rate): row ``i`` is a record of ``packets[i]`` packets and ``octets[i]`` bytes, whose first packet is at
``flow_start_ns[i]`` (when present) and last at ``ts_ns[i]``. Every task accounts it exactly as if those
packets had been captured (:mod:`netspectra.tasks.exact`, the sketches, :mod:`netspectra.flows`):

* **counts** add the row's ``packets`` and ``octets``; counters are uint64 and *saturate* at
  ``2**64 - 1`` on weighted rows (a hostile exporter can send records of ``2**64 - 1`` bytes; a sum
  that wraps would turn the largest flow into a small one). Totals over a batch or a snapshot are exact
  Python integers (:func:`exact_sum`). Real traffic is far from either limit: 2**64 bytes are 18 EB;
  a 400 Gbit/s link sends that in 11.7 years;
* **time**: the row spans ``min(flow_start, ts) .. max(flow_start, ts)`` (an exporter that swapped the
  two still gives a span);
* **a row of 0 packets** (an empty record) stands for nothing: no count, no flow, no key; tasks count
  such rows (``empty_rows``) and otherwise ignore them, their octets included;
* **sizes of the row's packets**, where an algorithm needs each packet's size (order-dependent
  sketches): the row's ``N`` packets are taken to carry ``q = octets // N`` bytes each, except the last
  ``r = octets % N``, which carry ``q + 1`` — a row of ``N`` equal packets is exactly those packets,
  and any row adds up to its octets (:func:`packet_sizes_ref`).
"""

from __future__ import annotations

import numpy as np

#: The largest count a uint64 counter holds; weighted counters stop there instead of wrapping.
COUNT_MAX = (1 << 64) - 1


def exact_sum(a: np.ndarray) -> int:
    """The exact sum of an unsigned integer array as a Python int (numpy's uint64 sum wraps)."""
    a = np.asarray(a)
    if a.size == 0:
        return 0
    if a.dtype.itemsize < 8:
        return int(a.sum(dtype=np.uint64))  # n * (2**32 - 1) < 2**64 for any array that fits in memory
    u = a.astype(np.uint64, copy=False)
    hi = int((u >> np.uint64(32)).sum(dtype=np.uint64))
    lo = int((u & np.uint64(0xFFFF_FFFF)).sum(dtype=np.uint64))
    return (hi << 32) + lo


def sat_reduceat(a: np.ndarray, first: np.ndarray) -> np.ndarray:
    """``np.add.reduceat(a, first)`` for uint64 ``a`` whose sums saturate at :data:`COUNT_MAX` instead of
    wrapping (``first``: the groups' starts, increasing, as :func:`numpy.add.reduceat` takes them).
    Exact: the high and low 32-bit halves are summed apart (neither can wrap for groups of fewer than
    2**32 rows) and put together."""
    u = np.asarray(a, dtype=np.uint64)
    if len(first) == 0:
        return u[:0].copy()
    hi = np.add.reduceat(u >> np.uint64(32), first)
    lo = np.add.reduceat(u & np.uint64(0xFFFF_FFFF), first)
    hi = hi + (lo >> np.uint64(32))
    out = (hi << np.uint64(32)) | (lo & np.uint64(0xFFFF_FFFF))
    out[hi >> np.uint64(32) != 0] = np.uint64(COUNT_MAX)
    return out


def packet_sizes_ref(packets: int, octets: int) -> list[int]:
    """The sizes of a weighted row's packets, in order (see the module docstring); for references and
    tests (a row of many packets is a long list)."""
    if packets <= 0:
        return []
    q, r = divmod(octets, packets)
    return [q] * (packets - r) + [q + 1] * r


def expand_rows(batch):  # type: ignore[no-untyped-def]
    """The captured-packet batch a weighted ``batch`` stands for: row ``i`` repeated ``packets[i]``
    times (0: left out), with the sizes of :func:`packet_sizes_ref` in ``length`` and the times
    ``flow_start_ns``, then ``ts_ns`` for the others (a row of one packet: at ``ts_ns``). For tests:
    the tasks must give the same answers for both. The flow-export columns are dropped."""
    from netspectra.batch import PacketBatch

    if not batch.weighted:
        return batch
    pk = batch.packets.astype(np.int64)
    idx = np.repeat(np.arange(len(batch)), pk)
    out = batch.take(idx).with_columns(**{c: None for c in PacketBatch.EXPORT_COLUMNS})
    length = np.concatenate(
        [np.array(packet_sizes_ref(int(p), int(o)), np.uint32) for p, o in zip(pk, batch.octets, strict=True)]
        or [np.empty(0, np.uint32)]
    )
    ts = batch.ts_ns[idx].copy()
    if batch.flow_start_ns is not None:
        start = np.concatenate([[0], np.cumsum(pk)[:-1]]).astype(np.int64)
        lo = np.minimum(batch.flow_start_ns, batch.ts_ns)
        hi = np.maximum(batch.flow_start_ns, batch.ts_ns)
        first = start[pk > 0]
        ts[first] = lo[pk > 0]
        ts[first + pk[pk > 0] - 1] = hi[pk > 0]  # a one-packet row: its span collapses to its end
    return PacketBatch(
        ts,
        out.src_ip,
        out.dst_ip,
        out.src_port,
        out.dst_port,
        out.protocol,
        length,
        **{c: getattr(out, c) for c in out.present()},
        dims=out.dims,
        dictionaries=out.dictionaries,
    )
