"""Which NetFlow v9 / IPFIX fields the decoder reads, and what it makes of them.

A template is compiled into a short program of ``(kind, length)`` steps (:mod:`.templates`); the data
kernel (:mod:`.nf_kernels`) runs it over every record. ``kind`` says what a field feeds; every field
that feeds nothing is a skip, merged with its skipping neighbours. Field types 1..127 are the same in
NetFlow v9 and IPFIX (RFC 7012 §4), so one table serves both. Enterprise-specific IPFIX fields are
skipped (their lengths honoured, variable lengths included), except those of the reverse PEN
(RFC 5103 biflows), whose counters make a second, reversed row.

The kind codes are literals, duplicated in :mod:`.nf_kernels` (numba freezes globals into its cache);
a unit test checks that both agree.
"""

from __future__ import annotations

#: Length of a variable-length IPFIX field in a template (RFC 7011 §7).
VARLEN = 65535
#: The RFC 5103 reverse-direction private enterprise number.
REVERSE_PEN = 29305

K_SKIP = 0
K_SRC4 = 1
K_DST4 = 2
K_SRC6 = 3
K_DST6 = 4
K_SPORT = 5
K_DPORT = 6
K_PROTO = 7
K_BYTES = 8
K_PKTS = 9
K_IN_IF = 10
K_OUT_IF = 11
K_IN_PHYS = 12
K_OUT_PHYS = 13
K_TCP_FLAGS = 14
K_ICMP_TC = 15
K_ICMP_TYPE = 16
K_ICMP_CODE = 17
K_SRC_VLAN = 18
K_DST_VLAN = 19
K_FIRST_UPTIME = 20  # ms since the exporter's boot (v9: header sysUptime; IPFIX: systemInitTime)
K_LAST_UPTIME = 21
K_START_S = 22
K_END_S = 23
K_START_MS = 24
K_END_MS = 25
K_START_US = 26  # NTP timestamp format (RFC 7011 §6.1.9)
K_END_US = 27
K_START_NS = 28
K_END_NS = 29
K_START_DELTA_US = 30  # µs before the export time
K_END_DELTA_US = 31
K_SAMPLING = 32  # a sampling interval carried by the record itself
K_SAMPLER_ID = 33  # the sampler whose options data gives the rate
K_DLFS = 34  # dataLinkFrameSection: the first bytes of a sampled frame
K_DLF_SIZE = 35  # dataLinkFrameSize: that frame's wire length
# reverse-direction (RFC 5103) counters
K_R_BYTES = 40
K_R_PKTS = 41
K_R_TCP_FLAGS = 42
K_R_ICMP_TC = 43
N_KINDS = 44

#: Kinds whose field must be 4 or 16 bytes long (an address); any other length makes it a skip.
ADDRESS_KINDS: dict[int, int] = {K_SRC4: 4, K_DST4: 4, K_SRC6: 16, K_DST6: 16}
#: Kinds that may be variable-length (everything else must be a 1..8 byte number).
BYTES_KINDS = frozenset({K_DLFS})

#: IANA field type (no enterprise bit) -> kind, for data records.
DATA_FIELDS: dict[int, int] = {
    1: K_BYTES,  # octetDeltaCount (v9 IN_BYTES)
    2: K_PKTS,  # packetDeltaCount (v9 IN_PKTS)
    4: K_PROTO,  # protocolIdentifier
    6: K_TCP_FLAGS,  # tcpControlBits
    7: K_SPORT,  # sourceTransportPort
    8: K_SRC4,  # sourceIPv4Address
    10: K_IN_IF,  # ingressInterface
    11: K_DPORT,  # destinationTransportPort
    12: K_DST4,  # destinationIPv4Address
    14: K_OUT_IF,  # egressInterface
    21: K_LAST_UPTIME,  # flowEndSysUpTime (v9 LAST_SWITCHED)
    22: K_FIRST_UPTIME,  # flowStartSysUpTime (v9 FIRST_SWITCHED)
    23: K_BYTES,  # postOctetDeltaCount (v9 OUT_BYTES)
    24: K_PKTS,  # postPacketDeltaCount (v9 OUT_PKTS)
    27: K_SRC6,  # sourceIPv6Address
    28: K_DST6,  # destinationIPv6Address
    32: K_ICMP_TC,  # icmpTypeCodeIPv4
    34: K_SAMPLING,  # samplingInterval (v9 SAMPLING_INTERVAL)
    48: K_SAMPLER_ID,  # samplerId (v9 FLOW_SAMPLER_ID)
    50: K_SAMPLING,  # samplerRandomInterval (v9 FLOW_SAMPLER_RANDOM_INTERVAL)
    58: K_SRC_VLAN,  # vlanId (v9 SRC_VLAN)
    59: K_DST_VLAN,  # postVlanId (v9 DST_VLAN)
    139: K_ICMP_TC,  # icmpTypeCodeIPv6
    150: K_START_S,  # flowStartSeconds
    151: K_END_S,  # flowEndSeconds
    152: K_START_MS,  # flowStartMilliseconds
    153: K_END_MS,  # flowEndMilliseconds
    154: K_START_US,  # flowStartMicroseconds
    155: K_END_US,  # flowEndMicroseconds
    156: K_START_NS,  # flowStartNanoseconds
    157: K_END_NS,  # flowEndNanoseconds
    158: K_START_DELTA_US,  # flowStartDeltaMicroseconds
    159: K_END_DELTA_US,  # flowEndDeltaMicroseconds
    176: K_ICMP_TYPE,  # icmpTypeIPv4
    177: K_ICMP_CODE,  # icmpCodeIPv4
    178: K_ICMP_TYPE,  # icmpTypeIPv6
    179: K_ICMP_CODE,  # icmpCodeIPv6
    231: K_BYTES,  # initiatorOctets
    232: K_BYTES,  # responderOctets
    243: K_SRC_VLAN,  # dot1qVlanId
    252: K_IN_PHYS,  # ingressPhysicalInterface
    253: K_OUT_PHYS,  # egressPhysicalInterface
    254: K_DST_VLAN,  # postDot1qVlanId
    302: K_SAMPLER_ID,  # selectorId
    312: K_DLF_SIZE,  # dataLinkFrameSize
    315: K_DLFS,  # dataLinkFrameSection
}

#: Reverse-PEN field type -> kind (the other reverse fields are skipped).
REVERSE_FIELDS: dict[int, int] = {
    1: K_R_BYTES,
    2: K_R_PKTS,
    6: K_R_TCP_FLAGS,
    32: K_R_ICMP_TC,
    139: K_R_ICMP_TC,
}

#: Options-data fields the decoder keeps (sampling and the exporter's boot time).
OPT_SAMPLING_INTERVAL = (34, 50)  # samplingInterval, samplerRandomInterval
OPT_SAMPLER_ID = (48, 302)  # samplerId, selectorId
OPT_PACKET_INTERVAL = 305  # samplingPacketInterval (PSAMP): rate = (interval + space) / interval
OPT_PACKET_SPACE = 306  # samplingPacketSpace
OPT_SYSTEM_INIT_MS = 160  # systemInitTimeMilliseconds: the origin of IEs 21/22 in IPFIX


def kind_of(field_type: int, enterprise: int) -> int:
    """The kind of a template field (``enterprise`` 0: an IANA field)."""
    if enterprise == 0:
        return DATA_FIELDS.get(field_type, K_SKIP)
    if enterprise == REVERSE_PEN:
        return REVERSE_FIELDS.get(field_type, K_SKIP)
    return K_SKIP
