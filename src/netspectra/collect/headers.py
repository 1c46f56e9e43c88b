"""Flow keys from the packet headers that sFlow (and IPFIX dataLinkFrameSection) carry.

An sFlow flow sample carries the first bytes of the sampled frame, not a flow key. The key is read by
the capture decoder (:func:`netspectra.capture.decode.decode_arrays`), so VLAN/QinQ, MPLS, PPPoE and
the outer-header rule (tunnels such as VXLAN are not decapsulated) are exactly those of a capture.
Its inputs are what :class:`~.records.FlowRecords` holds: ``header_buf``, ``hdr_off``, ``hdr_len``
(captured length), ``hdr_wirelen``, ``received_ns`` and ``hdr_linktype``.
"""

from __future__ import annotations

import numpy as np

from netspectra.capture import status as st
from netspectra.collect.records import FlowRecords


def keys_from_headers(
    records: FlowRecords, *, ip_length: np.ndarray | None = None, row_status: np.ndarray | None = None
) -> dict[str, int]:
    """Overwrite the key columns of rows that carry a header with the header's key, in place.

    For every row with ``hdr_len > 0``: ``src_ip``, ``dst_ip``, ``ip_version``, ``src_port``,
    ``dst_port`` and ``protocol`` become what the capture decoder reads in the header, when it reads
    an IP packet; rows whose header holds no IP packet (ARP, a cut header, an undecoded link type)
    keep their columns. Returns the decoder's outcome per status name (``ok``, ``non_ip``, ...), so
    the caller can count what could not be keyed.

    ``ip_length`` (uint32, one entry per row), when given, asks for the decoder's optional columns
    too: the keyed rows then also get ``tcp_flags``, ``icmp_type``/``icmp_code`` (ICMP/ICMPv6) and the
    outer IP packet's total length in ``ip_length`` (other entries are left as they are).
    ``row_status`` (uint8, one entry per row), when given, receives each header row's decoder status
    (:mod:`netspectra.capture.status` codes; other entries are left as they are).
    """
    from netspectra.capture.decode import decode_arrays

    rows = np.flatnonzero(records.hdr_len > 0)
    if not rows.size:
        return {}
    extras = ip_length is not None
    batch, status, _aux = decode_arrays(
        records.header_buf,
        records.hdr_off[rows],
        records.hdr_len[rows],
        records.hdr_wirelen[rows],
        records.received_ns[rows],
        records.hdr_linktype[rows],
        extras=extras,
    )
    ok = rows[status < st.FIRST_SKIPPED]
    if row_status is not None:
        row_status[rows] = status
    if extras:
        assert ip_length is not None and batch.ip_length is not None
        assert batch.tcp_flags is not None and batch.icmp_type_code is not None
        ip_length[ok] = batch.ip_length
        records.tcp_flags[ok] = batch.tcp_flags
        icmp = (batch.protocol == 1) | (batch.protocol == 58)
        records.icmp_type[ok] = np.where(icmp, batch.icmp_type_code >> 8, records.icmp_type[ok])
        records.icmp_code[ok] = np.where(icmp, batch.icmp_type_code & 0xFF, records.icmp_code[ok])
    records.src_ip[ok] = batch.src_ip
    records.dst_ip[ok] = batch.dst_ip
    mapped = (batch.src_ip[:, 10] == 0xFF) & (batch.src_ip[:, 11] == 0xFF) & ~batch.src_ip[:, :10].any(axis=1)
    records.ip_version[ok] = np.where(mapped, 4, 6)
    records.src_port[ok] = batch.src_port
    records.dst_port[ok] = batch.dst_port
    records.protocol[ok] = batch.protocol
    codes, counts = np.unique(status, return_counts=True)
    return {st.NAMES.get(int(c), str(int(c))): int(n) for c, n in zip(codes, counts, strict=True)}
