"""The collector's columnar data: datagrams in, flow records and interface counters out.

:class:`DatagramBatch` is what the receive layer (or a capture of exports) hands to the decoder: one
byte buffer and per-datagram offsets, lengths, senders and receive times. :class:`FlowRecords` is what
the decoder gives back: one row per exported flow record (NetFlow v5/v9, IPFIX) or per sFlow flow
sample, as arrays of equal length. :class:`InterfaceCounters` holds sFlow counter samples.

FlowRecords columns (``n`` rows; all C-contiguous):

==================  ============  =====================================================================
column              dtype/shape   meaning
==================  ============  =====================================================================
``exporter``        uint8 (n,16)  exporter address, IPv4 mapped (``::ffff:a.b.c.d``): the UDP sender for
                                  NetFlow/IPFIX, the agent address inside the datagram for sFlow
``export_kind``     uint8         :data:`NETFLOW5`, :data:`NETFLOW9`, :data:`IPFIX` or :data:`SFLOW5`
``domain``          uint32        v9 source id, IPFIX observation domain, sFlow sub-agent id,
                                  v5 ``engine_type << 8 | engine_id``
``src_ip``          uint8 (n,16)  source address, IPv4 mapped; zeros when the record carries none
``dst_ip``          uint8 (n,16)  destination address, same encoding
``ip_version``      uint8         4 or 6 (from the address fields); 0: no address in the record
``src_port``        uint16        TCP/UDP/SCTP source port; 0 for every other protocol (as captures)
``dst_port``        uint16        destination port, same rule
``protocol``        uint8         IP protocol number
``tcp_flags``       uint16        OR of the TCP flags seen (IE 6); 0 when absent
``icmp_type``       uint8         ICMP/ICMPv6 type: IEs 32/139/176-179, else the high byte of the
                                  destination port field when the source port is 0 (Cisco's placing)
``icmp_code``       uint8         ICMP code, same sources (low byte)
``packets``         uint64        packets of the record AS EXPORTED (not scaled by the sampling rate);
                                  1 per sFlow flow sample
``bytes``           uint64        bytes as exported (NetFlow/IPFIX: IP-level octets); sFlow: the
                                  sampled frame's length without the stripped bytes (what a capture
                                  on that link reports as wire length), else the IP length of an
                                  IPv4/IPv6 data record
``flow_start_ns``   int64         first packet, ns since the Unix epoch (UTC); see docs/collect.md
``flow_end_ns``     int64         last packet, same; both equal the export time when the record has
                                  no time field; for sFlow both are the receive time
``received_ns``     int64         when the collector received the datagram (ns, UTC)
``in_if``           uint32        input interface index (IE 10, else 252; sFlow input), 0 if none
``out_if``          uint32        output interface index (IE 14, else 253; sFlow output), 0 if none
``src_vlan``        uint16        ingress VLAN id (IE 58/243; sFlow extended switch; else the innermost
                                  802.1Q/802.1ad tag of the sampled header), 0 if none
``dst_vlan``        uint16        egress VLAN id (IE 59/254; sFlow extended switch; else as src_vlan)
``sampling_rate``   uint32        1-in-N rate that applies to the record; 0: unknown and no default
``sampling_source`` uint8         where the rate came from: :data:`RATE_RECORD`, :data:`RATE_OPTIONS`,
                                  :data:`RATE_CONFIG`, :data:`RATE_DEFAULT`, :data:`RATE_UNKNOWN`
``hdr_off``         int64         start of the sampled packet header in ``header_buf`` (sFlow raw packet
                                  header, IPFIX dataLinkFrameSection); 0 when none
``hdr_len``         uint32        captured bytes of that header; 0: the row has no header
``hdr_wirelen``     uint32        the sampled packet's wire length (sFlow: frame_length - stripped;
                                  IPFIX: dataLinkFrameSize, else the section length)
``hdr_linktype``    uint16        link type of the header: 1 Ethernet, 228 raw IPv4, 229 raw IPv6,
                                  65535 for header protocols NetSpectra does not decode
==================  ============  =====================================================================

``header_buf`` (uint8, 1-D) holds the copied header bytes; the records own it (it does not pin the
datagram buffer). Rows with ``hdr_len > 0`` carry their flow key in the header: it is decoded by the
capture decoder (:func:`netspectra.collect.headers.keys_from_headers`), so VLAN/QinQ/MPLS rules are
the same as for captures. Until then their key columns hold what the export's own fields said (an
sFlow IPv4/IPv6 data record), else zeros.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import ClassVar

import numpy as np

# export_kind values
NETFLOW5 = 1
NETFLOW9 = 2
IPFIX = 3
SFLOW5 = 4
KIND_NAMES: dict[int, str] = {NETFLOW5: "netflow5", NETFLOW9: "netflow9", IPFIX: "ipfix", SFLOW5: "sflow5"}

# sampling_source values, in order of precedence (the first that knows a rate wins)
RATE_UNKNOWN = 0
RATE_RECORD = 1  # the record, the v5 header or the sFlow sample carries it
RATE_OPTIONS = 2  # options data of the exporter / observation domain / sampler id
RATE_CONFIG = 3  # collect.exporter_sampling_rates in the configuration
RATE_DEFAULT = 4  # collect.default_sampling_rate
RATE_SOURCE_NAMES: dict[int, str] = {
    RATE_UNKNOWN: "unknown",
    RATE_RECORD: "record",
    RATE_OPTIONS: "options",
    RATE_CONFIG: "config",
    RATE_DEFAULT: "default",
}

#: Link type written in ``hdr_linktype`` for header protocols NetSpectra does not decode.
LINKTYPE_UNKNOWN = 0xFFFF


@dataclass(frozen=True, slots=True)
class DatagramBatch:
    """Export datagrams as received: ``n`` payloads located in one buffer.

    ``buf`` uint8 (1-D); per datagram ``off`` int64 (start in ``buf``), ``length`` uint32 (payload
    bytes), ``sender`` uint8 (n, 16) (UDP source address, IPv4 mapped), ``sender_port`` uint16,
    ``received_ns`` int64 (ns since the epoch, UTC). Bytes outside ``buf`` are never read: a datagram
    reaching past the end of ``buf`` is decoded as truncated there.
    """

    buf: np.ndarray
    off: np.ndarray
    length: np.ndarray
    sender: np.ndarray
    sender_port: np.ndarray
    received_ns: np.ndarray

    def __len__(self) -> int:
        return int(self.off.shape[0])

    @classmethod
    def from_payloads(
        cls,
        payloads: list[bytes],
        sender: str | bytes = "127.0.0.1",
        received_ns: int | np.ndarray = 0,
        sender_port: int = 0,
    ) -> DatagramBatch:
        """A batch of ``payloads`` from one sender (for tests, tools and benchmarks)."""
        from netspectra.collect.addr import to16

        lengths = np.array([len(p) for p in payloads], np.uint32)
        off = np.zeros(len(payloads), np.int64)
        if len(payloads) > 1:
            off[1:] = np.cumsum(lengths[:-1], dtype=np.int64)
        buf = np.frombuffer(b"".join(payloads), np.uint8) if payloads else np.zeros(0, np.uint8)
        addr = to16(sender)
        n = len(payloads)
        rec = np.broadcast_to(np.asarray(received_ns, np.int64), (n,)).copy()
        return cls(
            buf=buf,
            off=off,
            length=lengths,
            sender=np.tile(np.frombuffer(addr, np.uint8), (n, 1)),
            sender_port=np.full(n, sender_port, np.uint16),
            received_ns=rec,
        )

    @classmethod
    def concat(cls, batches: list[DatagramBatch]) -> DatagramBatch:
        """One batch with the datagrams of ``batches`` in order (buffers concatenated)."""
        if not batches:
            return cls.from_payloads([])
        base = np.cumsum([0] + [int(b.buf.shape[0]) for b in batches[:-1]], dtype=np.int64)
        return cls(
            buf=np.concatenate([b.buf for b in batches]),
            off=np.concatenate([b.off + base[i] for i, b in enumerate(batches)]),
            length=np.concatenate([b.length for b in batches]),
            sender=np.concatenate([b.sender for b in batches]),
            sender_port=np.concatenate([b.sender_port for b in batches]),
            received_ns=np.concatenate([b.received_ns for b in batches]),
        )

    def payload(self, i: int) -> bytes:
        """The bytes of datagram ``i`` (for logs and tests)."""
        o = int(self.off[i])
        return self.buf[o : o + int(self.length[i])].tobytes()


@dataclass(frozen=True, slots=True)
class FlowRecords:
    """Decoded flow records in columnar form (see the module docstring for every column)."""

    exporter: np.ndarray
    export_kind: np.ndarray
    domain: np.ndarray
    src_ip: np.ndarray
    dst_ip: np.ndarray
    ip_version: np.ndarray
    src_port: np.ndarray
    dst_port: np.ndarray
    protocol: np.ndarray
    tcp_flags: np.ndarray
    icmp_type: np.ndarray
    icmp_code: np.ndarray
    packets: np.ndarray
    bytes: np.ndarray
    flow_start_ns: np.ndarray
    flow_end_ns: np.ndarray
    received_ns: np.ndarray
    in_if: np.ndarray
    out_if: np.ndarray
    src_vlan: np.ndarray
    dst_vlan: np.ndarray
    sampling_rate: np.ndarray
    sampling_source: np.ndarray
    hdr_off: np.ndarray
    hdr_len: np.ndarray
    hdr_wirelen: np.ndarray
    hdr_linktype: np.ndarray
    header_buf: np.ndarray

    DTYPES: ClassVar[dict[str, np.dtype]] = {
        "exporter": np.dtype(np.uint8),
        "export_kind": np.dtype(np.uint8),
        "domain": np.dtype(np.uint32),
        "src_ip": np.dtype(np.uint8),
        "dst_ip": np.dtype(np.uint8),
        "ip_version": np.dtype(np.uint8),
        "src_port": np.dtype(np.uint16),
        "dst_port": np.dtype(np.uint16),
        "protocol": np.dtype(np.uint8),
        "tcp_flags": np.dtype(np.uint16),
        "icmp_type": np.dtype(np.uint8),
        "icmp_code": np.dtype(np.uint8),
        "packets": np.dtype(np.uint64),
        "bytes": np.dtype(np.uint64),
        "flow_start_ns": np.dtype(np.int64),
        "flow_end_ns": np.dtype(np.int64),
        "received_ns": np.dtype(np.int64),
        "in_if": np.dtype(np.uint32),
        "out_if": np.dtype(np.uint32),
        "src_vlan": np.dtype(np.uint16),
        "dst_vlan": np.dtype(np.uint16),
        "sampling_rate": np.dtype(np.uint32),
        "sampling_source": np.dtype(np.uint8),
        "hdr_off": np.dtype(np.int64),
        "hdr_len": np.dtype(np.uint32),
        "hdr_wirelen": np.dtype(np.uint32),
        "hdr_linktype": np.dtype(np.uint16),
    }
    #: The per-row columns (everything but ``header_buf``), in field order.
    COLUMNS: ClassVar[tuple[str, ...]] = tuple(DTYPES)
    ADDRESS_COLUMNS: ClassVar[tuple[str, ...]] = ("exporter", "src_ip", "dst_ip")

    def __len__(self) -> int:
        return int(self.packets.shape[0])

    @classmethod
    def empty(cls, n: int = 0, header_bytes: int = 0) -> FlowRecords:
        """``n`` rows of zeros (every column defined) and a zeroed header buffer."""
        cols = {c: np.zeros((n, 16) if c in cls.ADDRESS_COLUMNS else n, dt) for c, dt in cls.DTYPES.items()}
        return cls(**cols, header_buf=np.zeros(header_bytes, np.uint8))

    def head(self, n: int, header_bytes: int | None = None) -> FlowRecords:
        """The first ``n`` rows as views (and the first ``header_bytes`` of the header buffer)."""
        hb = self.header_buf if header_bytes is None else self.header_buf[:header_bytes]
        return FlowRecords(**{c: getattr(self, c)[:n] for c in self.COLUMNS}, header_buf=hb)

    def take(self, index: np.ndarray) -> FlowRecords:
        """Rows selected by an integer or boolean index, as copies (the header buffer is shared)."""
        return FlowRecords(
            **{c: np.ascontiguousarray(getattr(self, c)[index]) for c in self.COLUMNS},
            header_buf=self.header_buf,
        )

    @classmethod
    def concat(cls, parts: list[FlowRecords]) -> FlowRecords:
        """One set of records with the rows of ``parts`` in order (header offsets rebased)."""
        parts = [p for p in parts if len(p)]
        if not parts:
            return cls.empty(0)
        if len(parts) == 1:
            return parts[0]
        bases = np.cumsum([0] + [int(p.header_buf.shape[0]) for p in parts[:-1]], dtype=np.int64)
        cols = {c: np.concatenate([getattr(p, c) for p in parts]) for c in cls.COLUMNS if c != "hdr_off"}
        cols["hdr_off"] = np.concatenate([p.hdr_off + bases[i] for i, p in enumerate(parts)])
        return cls(**cols, header_buf=np.concatenate([p.header_buf for p in parts]))

    def header(self, i: int) -> bytes:
        """The sampled header bytes of row ``i`` (empty when the row has none)."""
        o = int(self.hdr_off[i])
        return self.header_buf[o : o + int(self.hdr_len[i])].tobytes()

    def validate(self) -> None:
        """Raise ``ValueError`` if a column has the wrong dtype, shape or layout, or a header is outside
        ``header_buf``."""
        n = len(self)
        for c, dt in self.DTYPES.items():
            a = getattr(self, c)
            if a.dtype != dt:
                raise ValueError(f"column {c}: dtype {a.dtype}, expected {dt}")
            want = (n, 16) if c in self.ADDRESS_COLUMNS else (n,)
            if a.shape != want:
                raise ValueError(f"column {c}: shape {a.shape}, expected {want}")
            if not a.flags.c_contiguous:
                raise ValueError(f"column {c}: not C-contiguous")
        end = self.hdr_off + self.hdr_len.astype(np.int64)
        has = self.hdr_len > 0
        if np.any(has & ((self.hdr_off < 0) | (end > self.header_buf.shape[0]))):
            raise ValueError("a header lies outside header_buf")

    def as_dicts(self) -> list[dict[str, object]]:
        """Rows as dicts of Python values, addresses as text (for tests, debugging and ``--json``)."""
        from netspectra.collect.addr import to_text

        out = []
        cols = {c: getattr(self, c) for c in self.COLUMNS}
        for i in range(len(self)):
            row: dict[str, object] = {}
            for c, a in cols.items():
                row[c] = to_text(a[i].tobytes()) if c in self.ADDRESS_COLUMNS else a[i].item()
            row["header"] = self.header(i)
            out.append(row)
        return out


@dataclass(frozen=True, slots=True)
class InterfaceCounters:
    """sFlow generic interface counter records (counters_sample, format 0:1), one row per record.

    Columns: ``exporter`` uint8 (n,16) (agent address), ``domain`` uint32 (sub-agent id),
    ``received_ns`` int64, ``sample_seq`` uint32, ``if_index``, ``if_type`` uint32, ``if_speed``
    uint64 (bit/s), ``if_direction`` uint32 (0 unknown, 1 full duplex, 2 half, 3 in, 4 out),
    ``if_status`` uint32 (bit 0 admin up, bit 1 oper up), ``in_octets`` uint64, ``in_ucast``,
    ``in_mcast``, ``in_bcast``, ``in_discards``, ``in_errors``, ``in_unknown`` uint32,
    ``out_octets`` uint64, ``out_ucast``, ``out_mcast``, ``out_bcast``, ``out_discards``,
    ``out_errors``, ``promiscuous`` uint32 — the values as the agent sent them (counters since the
    interface's start; a reader takes differences).
    """

    exporter: np.ndarray
    domain: np.ndarray
    received_ns: np.ndarray
    sample_seq: np.ndarray
    if_index: np.ndarray
    if_type: np.ndarray
    if_speed: np.ndarray
    if_direction: np.ndarray
    if_status: np.ndarray
    in_octets: np.ndarray
    in_ucast: np.ndarray
    in_mcast: np.ndarray
    in_bcast: np.ndarray
    in_discards: np.ndarray
    in_errors: np.ndarray
    in_unknown: np.ndarray
    out_octets: np.ndarray
    out_ucast: np.ndarray
    out_mcast: np.ndarray
    out_bcast: np.ndarray
    out_discards: np.ndarray
    out_errors: np.ndarray
    promiscuous: np.ndarray

    #: The 32/64-bit counters of a generic interface record, in wire order (after ``sample_seq``).
    WIRE: ClassVar[tuple[tuple[str, int], ...]] = (
        ("if_index", 4), ("if_type", 4), ("if_speed", 8), ("if_direction", 4), ("if_status", 4),
        ("in_octets", 8), ("in_ucast", 4), ("in_mcast", 4), ("in_bcast", 4), ("in_discards", 4),
        ("in_errors", 4), ("in_unknown", 4), ("out_octets", 8), ("out_ucast", 4), ("out_mcast", 4),
        ("out_bcast", 4), ("out_discards", 4), ("out_errors", 4), ("promiscuous", 4),
    )  # fmt: skip

    def __len__(self) -> int:
        return int(self.if_index.shape[0])

    @classmethod
    def empty(cls, n: int = 0) -> InterfaceCounters:
        cols: dict[str, np.ndarray] = {
            "exporter": np.zeros((n, 16), np.uint8),
            "domain": np.zeros(n, np.uint32),
            "received_ns": np.zeros(n, np.int64),
            "sample_seq": np.zeros(n, np.uint32),
        }
        for name, width in cls.WIRE:
            cols[name] = np.zeros(n, np.uint64 if width == 8 else np.uint32)
        return cls(**cols)

    def head(self, n: int) -> InterfaceCounters:
        return InterfaceCounters(**{f.name: getattr(self, f.name)[:n] for f in fields(self)})

    @classmethod
    def concat(cls, parts: list[InterfaceCounters]) -> InterfaceCounters:
        parts = [p for p in parts if len(p)]
        if not parts:
            return cls.empty(0)
        return cls(**{f.name: np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(cls)})

    def as_dicts(self) -> list[dict[str, object]]:
        from netspectra.collect.addr import to_text

        names = [f.name for f in fields(self)]
        return [
            {
                c: (to_text(getattr(self, c)[i].tobytes()) if c == "exporter" else getattr(self, c)[i].item())
                for c in names
            }
            for i in range(len(self))
        ]
