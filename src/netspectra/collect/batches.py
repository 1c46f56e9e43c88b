"""Flow records into the pipeline's rows: :class:`~.records.FlowRecords` → PacketBatch.

One decoded record (a NetFlow/IPFIX flow record, an sFlow flow sample) becomes one batch row, a row
that stands for ``packets`` packets and ``octets`` bytes (the PacketBatch contract, module docstring of
:mod:`netspectra.batch`):

=====================  ===================================================================================
batch column           from the record
=====================  ===================================================================================
``ts_ns``              ``flow_end_ns`` (the last packet; ``flow_start_ns`` goes in its own column)
key columns            ``src_ip``, ``dst_ip``, ports, ``protocol`` — for rows that carry a sampled packet
                       header (sFlow, IPFIX dataLinkFrameSection) the capture decoder's key of that
                       header (:func:`~.headers.keys_from_headers`), so VLAN/MPLS/tunnel rules are the
                       capture's
``packets``/``octets`` the exported counts multiplied by the sampling rate (``max(rate, 1)``: a rate of 0,
                       unknown, multiplies by 1 — the decoder has counted and logged those records per
                       exporter, ``records_without_sampling_rate``); a product above 2^64 - 1 saturates
                       there (counted: ``counts_saturated``)
``length``             the mean packet size, ``bytes // max(packets, 1)`` of the exported values, capped
                       to 2^32 - 1 (sizes, never totals, are read from it)
``sampling_rate``      the record's rate as resolved by the decoder (0: unknown)
``flow_start_ns``,     as decoded
``in_if``, ``out_if``,
``exporter``
=====================  ===================================================================================

With ``extras`` (a configuration that runs flow records asks for them) the decoder's optional columns
are filled too: ``tcp_flags`` (low byte of the OR of the flags), ``vlan_id`` (ingress VLAN),
``icmp_type_code`` (``type << 8 | code`` for ICMP/ICMPv6, else 0) and ``ip_length`` (the sampled
header's IP total length where there is one, else the mean packet size).

A record without an address of either family (``ip_version`` 0: a NetFlow record of an L2 template, an
sFlow sample whose header holds ARP or an undecodable link type) has no flow key: it does not become a
row — exactly as a capture keeps non-IP packets out of its batches — and is counted by reason in
:class:`FlowBatchStats` (``no_address``, or the capture decoder's status of its header: ``non_ip``,
``linktype_unsupported``, ``l2_truncated``, ...). Everything here is vectorised: numpy over the
columns, the capture decoder's kernel over the headers; no Python per record.
"""

from __future__ import annotations

import numpy as np

from netspectra.batch import PacketBatch
from netspectra.capture import status as st
from netspectra.collect.headers import keys_from_headers
from netspectra.collect.records import FlowRecords
from netspectra.counters import Counter, LabeledCounter

__all__ = ["EXTRA_COLUMNS", "FlowBatchStats", "flow_batch"]

#: Optional decoder columns ``flow_batch(extras=True)`` adds (those of ``capture.decode.DECODER_COLUMNS``).
EXTRA_COLUMNS: tuple[str, ...] = ("tcp_flags", "vlan_id", "icmp_type_code", "ip_length")
_U64_MAX = np.uint64(0xFFFF_FFFF_FFFF_FFFF)
_U32_MAX = np.uint64(0xFFFF_FFFF)
_NO_HEADER = 255  # hdr_status of a row without a sampled header


class FlowBatchStats:
    """Counters of :func:`flow_batch` (thread-safe; the receiver threads convert concurrently)."""

    def __init__(self) -> None:
        self.records = Counter()  # records converted (rows in)
        self.rows = Counter()  # batch rows given (records with a flow key)
        self.packets = Counter()  # packets those rows stand for (scaled)
        self.bytes = Counter()  # bytes those rows stand for (scaled)
        self.not_keyed = LabeledCounter()  # records without a flow key, by reason
        self.rate_unknown = Counter()  # rows whose sampling rate is 0 (multiplied by 1)
        self.counts_saturated = Counter()  # rows whose scaled packets or bytes overflowed uint64

    def as_dict(self) -> dict[str, object]:
        return {
            "records": self.records.value,
            "rows": self.rows.value,
            "packets": self.packets.value,
            "bytes": self.bytes.value,
            "not_keyed": self.not_keyed.as_dict(),
            "rate_unknown": self.rate_unknown.value,
            "counts_saturated": self.counts_saturated.value,
        }


def _scaled(counts: np.ndarray, mult: np.ndarray) -> tuple[np.ndarray, int]:
    """``counts * mult`` (uint64), saturated at 2^64 - 1; and how many saturated."""
    out = counts * mult
    over = counts > (_U64_MAX // mult)
    n = int(np.count_nonzero(over))
    if n:
        out[over] = _U64_MAX
    return out, n


def flow_batch(
    records: FlowRecords, *, extras: bool = False, stats: FlowBatchStats | None = None
) -> PacketBatch:
    """The batch rows of ``records`` (see the module docstring); ``stats`` is counted into when given.

    ``records`` is modified in place where rows carry a sampled header (their key columns, and with
    ``extras`` their TCP flags and ICMP type/code, become the header's). Rows keep the records' order.
    """
    n = len(records)
    optional = (*PacketBatch.EXPORT_COLUMNS, *(EXTRA_COLUMNS if extras else ()))
    if n == 0:
        return PacketBatch.empty(0, optional)
    hdr_iplen = np.zeros(n, np.uint32) if extras else None
    hdr_status = np.full(n, _NO_HEADER, np.uint8)
    keys_from_headers(records, ip_length=hdr_iplen, row_status=hdr_status)
    has_key = records.ip_version != 0
    keep = np.flatnonzero(has_key)
    k = int(keep.size)
    if stats is not None:
        stats.records.inc(n)
        if k < n:
            codes, counts = np.unique(hdr_status[~has_key], return_counts=True)
            for code, c in zip(codes.tolist(), counts.tolist(), strict=True):
                stats.not_keyed.inc("no_address" if code == _NO_HEADER else st.NAMES.get(code, str(code)), c)
    whole = k == n

    def col(a: np.ndarray) -> np.ndarray:
        return a if whole else np.ascontiguousarray(a[keep])

    raw_packets = col(records.packets).astype(np.uint64, copy=False)
    raw_bytes = col(records.bytes).astype(np.uint64, copy=False)
    rate = col(records.sampling_rate).astype(np.uint32, copy=False)
    mult = np.maximum(rate, 1).astype(np.uint64)
    packets, sat_p = _scaled(raw_packets, mult)
    octets, sat_b = _scaled(raw_bytes, mult)
    mean = raw_bytes // np.maximum(raw_packets, np.uint64(1))
    length = np.minimum(mean, _U32_MAX).astype(np.uint32)
    cols: dict[str, np.ndarray] = {
        "packets": packets,
        "octets": octets,
        "sampling_rate": np.ascontiguousarray(rate),
        "flow_start_ns": col(records.flow_start_ns).astype(np.int64, copy=True),
        "in_if": col(records.in_if).astype(np.uint32, copy=True),
        "out_if": col(records.out_if).astype(np.uint32, copy=True),
        "exporter": col(records.exporter).astype(np.uint8, copy=True),
    }
    protocol = col(records.protocol).astype(np.uint8, copy=True)
    if extras:
        assert hdr_iplen is not None
        icmp = (protocol == 1) | (protocol == 58)
        itc = (col(records.icmp_type).astype(np.uint16) << 8) | col(records.icmp_code).astype(np.uint16)
        hl = col(hdr_iplen)
        cols["tcp_flags"] = (col(records.tcp_flags) & 0xFF).astype(np.uint8)
        cols["vlan_id"] = col(records.src_vlan).astype(np.uint16, copy=True)
        cols["icmp_type_code"] = np.where(icmp, itc, 0).astype(np.uint16)
        cols["ip_length"] = np.where(hl > 0, hl, length).astype(np.uint32)
    batch = PacketBatch(
        ts_ns=col(records.flow_end_ns).astype(np.int64, copy=True),
        src_ip=col(records.src_ip).astype(np.uint8, copy=True),
        dst_ip=col(records.dst_ip).astype(np.uint8, copy=True),
        src_port=col(records.src_port).astype(np.uint16, copy=True),
        dst_port=col(records.dst_port).astype(np.uint16, copy=True),
        protocol=protocol,
        length=length,
        **cols,
    )
    if stats is not None:
        stats.rows.inc(k)
        stats.packets.inc(int(packets.sum(dtype=np.uint64)))
        stats.bytes.inc(int(octets.sum(dtype=np.uint64)))
        unknown = int(np.count_nonzero(rate == 0))
        if unknown:
            stats.rate_unknown.inc(unknown)
        if sat_p or sat_b:
            stats.counts_saturated.inc(int(np.count_nonzero((packets == _U64_MAX) | (octets == _U64_MAX))))
    return batch
