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
``packets``         uint64 (n,)     packets the row stands for, already multiplied by the
                                    sampling rate (a flow-export record of 10 packets sampled
                                    1-in-100 is 1000). Absent: every row is one packet
``octets``          uint64 (n,)     bytes the row stands for, multiplied the same way; present
                                    whenever ``packets`` is. ``length`` then holds the mean
                                    packet size (``octets // packets``, capped to uint32) for
                                    consumers that read sizes, never totals
``sampling_rate``   uint32 (n,)     the 1-in-N rate ``packets``/``octets`` were multiplied by
                                    (1: unsampled; 0: unknown — then multiplied by 1, and the
                                    source counts it): the exported values are ``packets //
                                    max(rate, 1)``, kept exactly
``flow_start_ns``   int64 (n,)      first packet of the row's flow record (UTC ns); ``ts_ns`` is
                                    then its last. Absent: ``ts_ns`` is both
``in_if``           uint32 (n,)     input interface index at the exporter (0: unknown)
``out_if``          uint32 (n,)     output interface index at the exporter (0: unknown)
``exporter``        uint8 (n, 16)   address of the exporter that sent the record, IPv4 mapped
                                    into IPv6 like ``src_ip``
==================  ==============  ==========================================================

The last seven come from flow exports (:mod:`netspectra.collect`): a row is a flow record, not a
packet. A consumer that counts packets or bytes counts ``packets``/``octets`` when present (the exact,
sketch and flows tasks account a record of N packets as N captured packets).

Dimension columns
-----------------

``dims`` maps enrichment column names (:data:`netspectra.enrich.columns.COLUMNS`: ``SrcAS``,
``DstCountry``, ``InIfBoundary``, …) to ``(n,)`` arrays of the column's dtype: AS numbers as
integers, strings as dictionary codes (0 = unknown), decoded by ``dictionaries`` (column name →
code → text, append-only: a later batch's dictionary decodes every earlier code). It may also hold an
address side's code column (``SrcCode``/``DstCode``, uint64: :data:`netspectra.enrich.columns.SIDE_CODES`),
from which the rollup tasks read that side's columns. They are made in
the process that runs the tasks (the enrichment stage, :mod:`netspectra.enrich`), never sent over the
wire. ``None``: the batch is not enriched. Every operation keeps them like optional columns; ``concat``
keeps the longest dictionary of each column (the newest: dictionaries only grow).

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
    packets: np.ndarray | None = None
    octets: np.ndarray | None = None
    sampling_rate: np.ndarray | None = None
    flow_start_ns: np.ndarray | None = None
    in_if: np.ndarray | None = None
    out_if: np.ndarray | None = None
    exporter: np.ndarray | None = None
    # enrichment (dimension) columns and the dictionaries of their codes; see the module docstring
    dims: dict[str, np.ndarray] | None = None
    dictionaries: dict[str, tuple[str, ...]] | None = None

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
    #: The optional columns and their dtypes, in canonical order.
    OPTIONAL: ClassVar[dict[str, np.dtype]] = {
        "tcp_flags": np.dtype(np.uint8),
        "vlan_id": np.dtype(np.uint16),
        "icmp_type_code": np.dtype(np.uint16),
        "ip_length": np.dtype(np.uint32),
        "packets": np.dtype(np.uint64),
        "octets": np.dtype(np.uint64),
        "sampling_rate": np.dtype(np.uint32),
        "flow_start_ns": np.dtype(np.int64),
        "in_if": np.dtype(np.uint32),
        "out_if": np.dtype(np.uint32),
        "exporter": np.dtype(np.uint8),
    }
    #: Shape of one row of an optional column that is not a scalar (``(n, 16)`` for the exporter).
    ROW_SHAPES: ClassVar[dict[str, tuple[int, ...]]] = {"exporter": (16,)}
    #: The optional columns a flow-export row carries (a row that stands for a flow record).
    EXPORT_COLUMNS: ClassVar[tuple[str, ...]] = (
        "packets",
        "octets",
        "sampling_rate",
        "flow_start_ns",
        "in_if",
        "out_if",
        "exporter",
    )

    @classmethod
    def row_bytes(cls, column: str) -> int:
        """Bytes one row of ``column`` (required or optional) takes."""
        if column in cls.DTYPES:
            return cls.DTYPES[column].itemsize * (16 if column in ("src_ip", "dst_ip") else 1)
        return cls.OPTIONAL[column].itemsize * int(np.prod(cls.ROW_SHAPES.get(column, (1,))))

    @property
    def weighted(self) -> bool:
        """Whether rows stand for several packets (``packets``/``octets`` present)."""
        return self.packets is not None

    def packet_counts(self) -> np.ndarray:
        """Packets each row stands for (uint64): ``packets``, or ones."""
        return self.packets if self.packets is not None else np.ones(len(self), np.uint64)

    def byte_counts(self) -> np.ndarray:
        """Bytes each row stands for (uint64): ``octets``, or ``length``."""
        return self.octets if self.octets is not None else self.length.astype(np.uint64)

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
            dims=None if self.dims is None else {k: fn(v) for k, v in self.dims.items()},
            dictionaries=self.dictionaries,
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
            **{c: np.empty((n, *cls.ROW_SHAPES.get(c, ())), cls.OPTIONAL[c]) for c in opt},
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

    def with_dims(
        self, dims: dict[str, np.ndarray] | None, dictionaries: dict[str, tuple[str, ...]] | None = None
    ) -> PacketBatch:
        """The same batch with these dimension columns and dictionaries (``None``: not enriched)."""
        return replace(self, dims=dims, dictionaries=dictionaries)

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
            want = (n, *self.ROW_SHAPES.get(c, ()))
            if a.shape != want:
                raise ValueError(f"optional column {c}: shape {a.shape}, expected {want}")
            if not a.flags.c_contiguous:
                raise ValueError(f"optional column {c}: not C-contiguous")
        if (self.packets is None) != (self.octets is None):
            raise ValueError("optional columns packets and octets go together (one is missing)")
        if self.dims is not None:
            from netspectra.enrich.columns import BY_NAME, SIDE_CODES

            codes = set(SIDE_CODES.values())
            for name, a in self.dims.items():
                col = BY_NAME.get(name)
                if col is None and name not in codes:
                    raise ValueError(f"dimension {name!r} is not an enrichment column")
                dtype = np.dtype(col.dtype) if col is not None else np.dtype(np.uint64)
                if not isinstance(a, np.ndarray) or a.dtype != dtype or a.shape != (n,):
                    got = f"{a.dtype} {a.shape}" if isinstance(a, np.ndarray) else type(a).__name__
                    raise ValueError(f"dimension {name}: {got}, expected {dtype} {(n,)}")

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
        dims = batches[0].dims
        dictionaries = batches[0].dictionaries
        if any((b.dims is None) != (dims is None) or (dims and set(b.dims) != set(dims)) for b in batches):
            raise ValueError("concat: the batches carry different dimension columns (enrich them alike)")
        if dims is not None:
            dims = {k: np.concatenate([b.dims[k] for b in batches]) for k in dims}  # type: ignore[index]
            merged: dict[str, tuple[str, ...]] = {}
            for b in batches:  # dictionaries only grow: the longest of each column decodes every code
                for k, words in (b.dictionaries or {}).items():
                    if len(words) > len(merged.get(k, ())):
                        merged[k] = words
            dictionaries = merged or None
        return cls(
            *(np.concatenate([getattr(b, c) for b in batches]) for c in cls.COLUMNS),
            **{c: np.concatenate([getattr(b, c) for b in batches]) for c in first},
            dims=dims,
            dictionaries=dictionaries,
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
