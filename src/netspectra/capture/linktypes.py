"""Link-layer, ethertype, address-family and IP protocol numbers the decoder understands.

Link types are the pcap/pcapng ``LINKTYPE_*`` values (https://www.tcpdump.org/linktypes.html),
which is what capture files store; where the BSD ``DLT_*`` value differs (raw IP 12/14 on some
systems) both are listed. Plain ``int`` constants so that numba kernels fold them at compile time.
"""

from __future__ import annotations

# --- Link types ---------------------------------------------------------------------------------
LINKTYPE_NULL = 0  # BSD loopback: 4-byte address family in the capturing host's byte order
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW_DLT12 = 12  # DLT_RAW on most BSDs: raw IPv4/IPv6, version from the first nibble
LINKTYPE_RAW_DLT14 = 14  # DLT_RAW on OpenBSD
LINKTYPE_RAW = 101  # raw IPv4/IPv6, version from the first nibble
LINKTYPE_LOOP = 108  # OpenBSD loopback: 4-byte address family in network byte order
LINKTYPE_LINUX_SLL = 113  # Linux "cooked" v1: 16-byte header, protocol at bytes 14-15
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
LINKTYPE_LINUX_SLL2 = 276  # Linux "cooked" v2: 20-byte header, protocol at bytes 0-1

SLL_HEADER_LEN = 16
SLL2_HEADER_LEN = 20
ETHERNET_HEADER_LEN = 14
NULL_HEADER_LEN = 4

#: Link types :func:`netspectra.capture.decode.decode_records` decodes; every other one is
#: reported as ``LINKTYPE_UNSUPPORTED``.
SUPPORTED_LINKTYPES: frozenset[int] = frozenset(
    {
        LINKTYPE_NULL,
        LINKTYPE_ETHERNET,
        LINKTYPE_RAW_DLT12,
        LINKTYPE_RAW_DLT14,
        LINKTYPE_RAW,
        LINKTYPE_LOOP,
        LINKTYPE_LINUX_SLL,
        LINKTYPE_IPV4,
        LINKTYPE_IPV6,
        LINKTYPE_LINUX_SLL2,
    }
)

LINKTYPE_NAMES: dict[int, str] = {
    LINKTYPE_NULL: "null",
    LINKTYPE_ETHERNET: "ethernet",
    LINKTYPE_RAW_DLT12: "raw",
    LINKTYPE_RAW_DLT14: "raw",
    LINKTYPE_RAW: "raw",
    LINKTYPE_LOOP: "loop",
    LINKTYPE_LINUX_SLL: "linux_sll",
    LINKTYPE_IPV4: "ipv4",
    LINKTYPE_IPV6: "ipv6",
    LINKTYPE_LINUX_SLL2: "linux_sll2",
}

# --- Ethertypes ---------------------------------------------------------------------------------
ETHERTYPE_IPV4 = 0x0800
ETHERTYPE_ARP = 0x0806
ETHERTYPE_VLAN = 0x8100  # 802.1Q C-tag
ETHERTYPE_QINQ = 0x88A8  # 802.1ad S-tag
ETHERTYPE_QINQ_OLD = 0x9100  # pre-standard QinQ
ETHERTYPE_IPV6 = 0x86DD
ETHERTYPE_MPLS_UC = 0x8847
ETHERTYPE_MPLS_MC = 0x8848
ETHERTYPE_PPPOE_SESSION = 0x8864
ETHERTYPE_MIN = 0x0600  # below this the field is an 802.3 length (LLC follows), not an ethertype

VLAN_TAG_LEN = 4
MPLS_LABEL_LEN = 4
PPPOE_HEADER_LEN = 6  # version/type, code, session id, length; the 2-byte PPP protocol follows

# --- PPP protocols (inside PPPoE session frames) ------------------------------------------------
PPP_IPV4 = 0x0021
PPP_IPV6 = 0x0057

# --- Address families of the BSD null / loop link types ------------------------------------------
AF_INET = 2
AF_INET6_LINUX = 10
AF_INET6_BSD = 24  # NetBSD, OpenBSD, BSD/OS
AF_INET6_FREEBSD = 28
AF_INET6_DARWIN = 30
AF_INET6_ALL: frozenset[int] = frozenset({AF_INET6_LINUX, AF_INET6_BSD, AF_INET6_FREEBSD, AF_INET6_DARWIN})

# --- IP protocol numbers ------------------------------------------------------------------------
IPPROTO_HOPOPTS = 0
IPPROTO_ICMP = 1
IPPROTO_TCP = 6
IPPROTO_UDP = 17
IPPROTO_ROUTING = 43
IPPROTO_FRAGMENT = 44
IPPROTO_ESP = 50
IPPROTO_AH = 51
IPPROTO_ICMPV6 = 58
IPPROTO_NONE = 59
IPPROTO_DSTOPTS = 60
IPPROTO_MOBILITY = 135
IPPROTO_SCTP = 132

#: Protocols whose first four L4 bytes are the source and destination ports.
PORT_PROTOCOLS: frozenset[int] = frozenset({IPPROTO_TCP, IPPROTO_UDP, IPPROTO_SCTP})

IPV4_MIN_HEADER_LEN = 20
IPV6_HEADER_LEN = 40
#: At most this many IPv6 extension headers are walked; a longer chain is reported as cut
#: (``OK_L3_TRUNCATED``, protocol = the next header not walked). Each header is at least 8 bytes, so
#: the walk ends with the capture anyway; the cap bounds the work one hostile jumbo frame can cause
#: (8191 headers fit in 64 KiB). It is generous on purpose: libpcap's ipv6_ext_headers.pcap chains 100
#: headers (HBH, then 33 x Routing/Fragment/DstOpts) before UDP, and tshark and Linux walk them all.
IPV6_MAX_EXT_HEADERS = 256
