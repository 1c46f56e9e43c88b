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

Optional columns
----------------

Some stages need more than the key and the length; they travel as *optional* columns, ``None`` when
the producer did not fill them (readers fill them only when asked, so the common path pays nothing):

==================  ==============  ==========================================================
column              dtype / shape   meaning
==================  ==============  ==========================================================
``tcp_flags``       uint8 (n,)      flags byte of the outer TCP header (CWR ECE URG ACK PSH RST
                                    SYN FIN); 0 for other protocols, non-first fragments and
                                    TCP headers cut before byte 13
``vlan_id``         uint16 (n,)     VLAN id (12 bits) of the OUTERMOST 802.1Q/802.1ad tag;
                                    0 = untagged (or priority-tagged: VID 0)
``icmp_type_code``  uint16 (n,)     ICMP/ICMPv6 ``type << 8 | code`` as IPFIX's
                                    ``icmpTypeCodeIPv4``/``IPv6`` (IEs 32, 139); 0 for other
                                    protocols (check ``protocol``: echo reply is also 0)
``ip_length``       uint32 (n,)     total length of the outer IP packet (IPv4 total length;
                                    IPv6 40 + payload length); when the header says 0 (TSO,
                                    BIG TCP, jumbograms) the wire length minus the link layer
==================  ==============  ==========================================================

:data:`PacketBatch.OPTIONAL` lists them with their dtypes; :meth:`PacketBatch.present` says which a
batch carries. Every operation keeps them: :meth:`~PacketBatch.head`, :meth:`~PacketBatch.take` and
:meth:`~PacketBatch.slice` cut them with the rows, :meth:`~PacketBatch.concat` keeps a column that
every input has and refuses one that only some inputs have (rows without a value would have to be
invented), :meth:`~PacketBatch.validate` checks them like the required ones. A consumer that needs an
optional column must cope with its absence (a task keys without it, or says what it cannot compute).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
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
    # optional columns (None when absent); keyword-only in spirit: always pass them by name
    tcp_flags: np.ndarray | None = None
    vlan_id: np.ndarray | None = None
    icmp_type_code: np.ndarray | None = None
    ip_length: np.ndarray | None = None

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
    #: The optional columns and their dtypes (all one-dimensional), in canonical order.
    OPTIONAL: ClassVar[dict[str, np.dtype]] = {
        "tcp_flags": np.dtype(np.uint8),
        "vlan_id": np.dtype(np.uint16),
        "icmp_type_code": np.dtype(np.uint16),
        "ip_length": np.dtype(np.uint32),
    }

    def __len__(self) -> int:
        return int(self.ts_ns.shape[0])

    def present(self) -> tuple[str, ...]:
        """The optional columns this batch carries, in canonical order."""
        return tuple(c for c in self.OPTIONAL if getattr(self, c) is not None)

    def columns(self) -> tuple[str, ...]:
        """Every column this batch carries: the required ones, then the optional ones present."""
        return (*self.COLUMNS, *self.present())

    def _map(self, fn: Any) -> PacketBatch:
        # ``fn(array)`` applied to every column the batch carries; absent optional columns stay absent.
        return PacketBatch(
            *(fn(getattr(self, c)) for c in self.COLUMNS),
            **{c: fn(getattr(self, c)) for c in self.present()},
        )

    @classmethod
    def empty(cls, n: int = 0, optional: Iterable[str] = ()) -> PacketBatch:
        """A batch of ``n`` rows with uninitialised contents (callers fill every column), carrying the
        ``optional`` columns named (``ValueError`` for a name that is not one)."""
        opt = tuple(optional)
        unknown = [c for c in opt if c not in cls.OPTIONAL]
        if unknown:
            raise ValueError(
                f"{', '.join(unknown)}: not optional columns; they are {', '.join(cls.OPTIONAL)}"
            )
        return cls(
            ts_ns=np.empty(n, np.int64),
            src_ip=np.empty((n, 16), np.uint8),
            dst_ip=np.empty((n, 16), np.uint8),
            src_port=np.empty(n, np.uint16),
            dst_port=np.empty(n, np.uint16),
            protocol=np.empty(n, np.uint8),
            length=np.empty(n, np.uint32),
            **{c: np.empty(n, cls.OPTIONAL[c]) for c in opt},
        )

    def head(self, n: int) -> PacketBatch:
        """The first ``n`` rows, as views (no copy)."""
        return self._map(lambda a: a[:n])

    def slice(self, lo: int, hi: int) -> PacketBatch:
        """Rows ``lo`` to ``hi - 1``, as views (no copy)."""
        return self._map(lambda a: a[lo:hi])

    def take(self, index: np.ndarray) -> PacketBatch:
        """Rows selected by an integer or boolean index, as copies."""
        return self._map(lambda a: np.ascontiguousarray(a[index]))

    def copy(self) -> PacketBatch:
        """A copy that shares no memory with this batch."""
        return self._map(lambda a: a.copy())

    def with_columns(self, **columns: np.ndarray | None) -> PacketBatch:
        """The same batch with optional columns added, replaced or (``None``) removed (no copy)."""
        unknown = [c for c in columns if c not in self.OPTIONAL]
        if unknown:
            raise ValueError(
                f"{', '.join(unknown)}: not optional columns; they are {', '.join(self.OPTIONAL)}"
            )
        return replace(self, **columns)

    def validate(self) -> None:
        """Raise ``ValueError`` if the batch breaks the module's invariants (optional columns included)."""
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
        for c in self.present():
            a = getattr(self, c)
            if not isinstance(a, np.ndarray):
                raise ValueError(f"optional column {c}: {type(a).__name__}, expected a numpy array or None")
            if a.dtype != self.OPTIONAL[c]:
                raise ValueError(f"optional column {c}: dtype {a.dtype}, expected {self.OPTIONAL[c]}")
            if a.shape != (n,):
                raise ValueError(f"optional column {c}: shape {a.shape}, expected {(n,)}")
            if not a.flags.c_contiguous:
                raise ValueError(f"optional column {c}: not C-contiguous")

    @classmethod
    def concat(cls, batches: list[PacketBatch]) -> PacketBatch:
        """One batch holding the rows of ``batches`` in order.

        An optional column is kept when every batch carries it; one that only some batches carry is a
        ``ValueError`` (its values for the other rows do not exist, and dropping it would lose data).
        """
        if not batches:
            return cls.empty(0)
        first = batches[0].present()
        for i, b in enumerate(batches[1:], 1):
            if b.present() != first:
                raise ValueError(
                    f"concat: batch 0 carries optional columns {list(first)} but batch {i} carries "
                    f"{list(b.present())}; give every batch the same optional columns"
                )
        return cls(
            *(np.concatenate([getattr(b, c) for b in batches]) for c in cls.COLUMNS),
            **{c: np.concatenate([getattr(b, c) for b in batches]) for c in first},
        )


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
