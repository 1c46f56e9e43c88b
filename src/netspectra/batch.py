"""The columnar packet batch: the one data model every stage of NetSpectra takes and gives.

A :class:`PacketBatch` is a set of numpy arrays of equal length ``n``, one row per IP packet:

=============  ==============  ===============================================================
column         dtype / shape   meaning
=============  ==============  ===============================================================
``ts_ns``      int64 (n,)      capture timestamp, nanoseconds since the Unix epoch (UTC)
``src_ip``     uint8 (n, 16)   outer IP source; IPv4 as IPv4-mapped IPv6 (``::ffff:a.b.c.d``)
``dst_ip``     uint8 (n, 16)   outer IP destination, same encoding
``src_port``   uint16 (n,)     TCP/UDP/SCTP source port of the outer L4 header, else 0
``dst_port``   uint16 (n,)     destination port, same rule
``protocol``   uint8 (n,)      upper protocol (IPv4 protocol; IPv6: after extension headers)
``length``     uint32 (n,)     wire length of the frame (not the captured length)
=============  ==============  ===============================================================

Invariants: all arrays are C-contiguous, have the dtypes above and the same first dimension.
IPv4 addresses never leave bytes 0..9 undefined: they are always ``0...0 ff ff a b c d``.
Non-first fragments carry ports 0; ICMP and other port-less protocols carry ports 0.
Packets that are not IP (ARP, LLDP, unsupported link types) never appear in a batch; readers
count them in their statistics instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np

IPV4_MAPPED_PREFIX = np.array([0] * 10 + [0xFF, 0xFF], dtype=np.uint8)


@dataclass(frozen=True, slots=True)
class PacketBatch:
    """A batch of parsed IP packets in columnar form (see the module docstring)."""

    ts_ns: np.ndarray
    src_ip: np.ndarray
    dst_ip: np.ndarray
    src_port: np.ndarray
    dst_port: np.ndarray
    protocol: np.ndarray
    length: np.ndarray

    COLUMNS: ClassVar[tuple[str, ...]] = (
        "ts_ns",
        "src_ip",
        "dst_ip",
        "src_port",
        "dst_port",
        "protocol",
        "length",
    )
    DTYPES: ClassVar[dict[str, np.dtype]] = {
        "ts_ns": np.dtype(np.int64),
        "src_ip": np.dtype(np.uint8),
        "dst_ip": np.dtype(np.uint8),
        "src_port": np.dtype(np.uint16),
        "dst_port": np.dtype(np.uint16),
        "protocol": np.dtype(np.uint8),
        "length": np.dtype(np.uint32),
    }

    def __len__(self) -> int:
        return int(self.ts_ns.shape[0])

    @classmethod
    def empty(cls, n: int = 0) -> PacketBatch:
        """A batch of ``n`` rows with uninitialised contents (callers fill every column)."""
        return cls(
            ts_ns=np.empty(n, np.int64),
            src_ip=np.empty((n, 16), np.uint8),
            dst_ip=np.empty((n, 16), np.uint8),
            src_port=np.empty(n, np.uint16),
            dst_port=np.empty(n, np.uint16),
            protocol=np.empty(n, np.uint8),
            length=np.empty(n, np.uint32),
        )

    def head(self, n: int) -> PacketBatch:
        """The first ``n`` rows, as views (no copy)."""
        return PacketBatch(*(getattr(self, c)[:n] for c in self.COLUMNS))

    def take(self, index: np.ndarray) -> PacketBatch:
        """Rows selected by an integer or boolean index, as copies."""
        return PacketBatch(*(np.ascontiguousarray(getattr(self, c)[index]) for c in self.COLUMNS))

    def validate(self) -> None:
        """Raise ``ValueError`` if the batch breaks the module's invariants."""
        n = len(self)
        for c in self.COLUMNS:
            a = getattr(self, c)
            if a.dtype != self.DTYPES[c]:
                raise ValueError(f"column {c}: dtype {a.dtype}, expected {self.DTYPES[c]}")
            want = (n, 16) if c in ("src_ip", "dst_ip") else (n,)
            if a.shape != want:
                raise ValueError(f"column {c}: shape {a.shape}, expected {want}")
            if not a.flags.c_contiguous:
                raise ValueError(f"column {c}: not C-contiguous")

    @classmethod
    def concat(cls, batches: list[PacketBatch]) -> PacketBatch:
        """One batch holding the rows of ``batches`` in order."""
        if not batches:
            return cls.empty(0)
        return cls(*(np.concatenate([getattr(b, c) for b in batches]) for c in cls.COLUMNS))


@runtime_checkable
class BatchSource(Protocol):
    """The one shape of every source of batches: capture files, live rings, NATS, flow-export collectors.

    Contract:

    * Iterating yields :class:`PacketBatch` objects in the source's order until the source ends
      (end of file, :meth:`stop`) or fails. A source that fails part-way raises *after* it has yielded
      every good batch before the failure (nothing good is lost); the exception says where and why.
    * ``stats`` is the source's counters object (e.g. :class:`~netspectra.capture.stats.CaptureStats`),
      current at any time and final once iteration ended; it has ``as_dict()`` for summaries and metrics.
    * :meth:`stop` may be called from any thread (or a signal handler's loop) and makes a blocking
      iteration end soon, after handing out what it already holds; for a finite source it is a no-op.
    * :meth:`close` releases files, sockets and rings; it is idempotent and safe after a failure.
    """

    def __iter__(self) -> Iterator[PacketBatch]: ...

    @property
    def stats(self) -> Any: ...

    def stop(self) -> None: ...

    def close(self) -> None: ...
