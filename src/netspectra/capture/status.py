"""Per-record outcome codes written by the decoder kernel, and their meaning for statistics.

The decoder (:func:`netspectra.capture.decode.decode_records`) writes one status byte and one
auxiliary ``uint16`` per capture record. Readers turn them into counters with ``np.bincount`` so
that no per-packet Python runs. Codes below ``FIRST_SKIPPED`` put the packet into a flow.
"""

from __future__ import annotations

# In a flow (the packet is a row of the batch):
OK = 0  # every header the flow key needs was captured
OK_L4_TRUNCATED = 1  # IP header read; the L4 header (ports) was cut by the snap length: ports 0
OK_L3_TRUNCATED = 2  # IP addresses read; IPv4 options / IPv6 extension chain cut: ports 0
# Not in a flow (counted only):
FIRST_SKIPPED = 3
NON_IP = 3  # link layer parsed; its payload is not IPv4/IPv6 (aux = ethertype or AF / PPP proto)
LINKTYPE_UNSUPPORTED = 4  # the record's link type is not decoded (aux = link type)
L2_TRUNCATED = 5  # the capture ends inside the link-layer header(s) (aux = link type)
L3_TRUNCATED = 6  # the capture ends before the IP addresses (aux = IP version)
IP_MALFORMED = 7  # impossible IP header: bad version nibble, IPv4 IHL < 5 (aux = first byte)
IMPLAUSIBLE_LENGTH = 8  # wire length above MAX_WIRE_LENGTH: a damaged record (aux = 0)
N_STATUS = 9

#: The largest wire length a record may claim (1 MiB). No link carries a bigger frame, and the
#: largest super-packets a capture can see (GSO / BIG TCP, at most 512 KiB on Linux) stay below
#: it; a record claiming more is damaged. Such a record is counted under ``IMPLAUSIBLE_LENGTH``
#: and kept out of flows and out of every byte total (``wire_bytes``, ``ip_bytes``).
MAX_WIRE_LENGTH = 1 << 20

NAMES: dict[int, str] = {
    OK: "ok",
    OK_L4_TRUNCATED: "l4_truncated",
    OK_L3_TRUNCATED: "l3_headers_truncated",
    NON_IP: "non_ip",
    LINKTYPE_UNSUPPORTED: "linktype_unsupported",
    L2_TRUNCATED: "l2_truncated",
    L3_TRUNCATED: "ip_truncated",
    IP_MALFORMED: "ip_malformed",
    IMPLAUSIBLE_LENGTH: "implausible_length",
}

#: Codes that count as "truncated" (caplen shorter than what the headers need).
TRUNCATED_CODES = (OK_L4_TRUNCATED, OK_L3_TRUNCATED, L2_TRUNCATED, L3_TRUNCATED)
#: Codes whose packet belongs to no flow.
SKIPPED_CODES = (NON_IP, LINKTYPE_UNSUPPORTED, L2_TRUNCATED, L3_TRUNCATED, IP_MALFORMED, IMPLAUSIBLE_LENGTH)
