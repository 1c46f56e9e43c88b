"""Human names for the numbers a capture holds (ethertypes, link types, IP protocols), for reports."""

from __future__ import annotations

ETHERTYPES: dict[int, str] = {
    0x0000: "802.3 length field (LLC/SNAP)",
    0x0800: "IPv4",
    0x0806: "ARP",
    0x0842: "Wake-on-LAN",
    0x22F0: "AVTP",
    0x22F3: "TRILL",
    0x6003: "DECnet",
    0x8035: "RARP",
    0x809B: "AppleTalk",
    0x80F3: "AARP",
    0x8100: "802.1Q VLAN",
    0x8137: "IPX",
    0x8808: "Ethernet flow control",
    0x8809: "Slow protocols (LACP)",
    0x8847: "MPLS unicast (payload not IP)",
    0x8848: "MPLS multicast (payload not IP)",
    0x8863: "PPPoE discovery",
    0x8864: "PPPoE session (payload not IP)",
    0x886D: "Intel ANS",
    0x887B: "HomePlug",
    0x888E: "802.1X EAPOL",
    0x8892: "PROFINET",
    0x889A: "HyperSCSI",
    0x88A2: "ATA over Ethernet",
    0x88A4: "EtherCAT",
    0x88A8: "802.1ad",
    0x88B8: "GOOSE",
    0x88CC: "LLDP",
    0x88E1: "HomePlug AV",
    0x88E5: "MACsec",
    0x88E7: "802.1ah PBB",
    0x88F7: "PTP",
    0x8902: "CFM/OAM",
    0x8906: "FCoE",
    0x8914: "FCoE init",
    0x8915: "RoCE",
    0x893A: "IEEE 1905",
    0x9000: "Loopback (configuration test)",
}

LINKTYPES: dict[int, str] = {
    0: "NULL (BSD loopback)",
    1: "ETHERNET",
    9: "PPP",
    12: "RAW",
    14: "RAW",
    101: "RAW",
    104: "C_HDLC",
    105: "IEEE802_11",
    108: "LOOP",
    113: "LINUX_SLL",
    119: "PRISM",
    127: "IEEE802_11_RADIOTAP",
    143: "DOCSIS",
    147: "USER0",
    187: "BLUETOOTH_HCI_H4",
    189: "USB_LINUX",
    192: "PPI",
    195: "IEEE802_15_4",
    201: "BLUETOOTH_HCI_H4_WITH_PHDR",
    215: "IEEE802_15_4_NONASK_PHY",
    220: "USB_LINUX_MMAPPED",
    227: "CAN_SOCKETCAN",
    228: "IPV4",
    229: "IPV6",
    249: "NETLINK",
    252: "WIRESHARK_UPPER_PDU",
    263: "USBPCAP",
    276: "LINUX_SLL2",
    284: "DSA_TAG_DSA",
    285: "DSA_TAG_EDSA",
}

PROTOCOLS: dict[int, str] = {
    0: "HOPOPT",
    1: "ICMP",
    2: "IGMP",
    4: "IPIP",
    6: "TCP",
    17: "UDP",
    41: "IPv6",
    43: "IPv6-Route",
    44: "IPv6-Frag",
    46: "RSVP",
    47: "GRE",
    50: "ESP",
    51: "AH",
    58: "ICMPv6",
    59: "IPv6-NoNxt",
    60: "IPv6-Opts",
    88: "EIGRP",
    89: "OSPF",
    103: "PIM",
    112: "VRRP",
    115: "L2TP",
    132: "SCTP",
    135: "Mobility",
    136: "UDPLite",
    137: "MPLS-in-IP",
}


def ethertype_name(value: int) -> str:
    """``"0x0806 ARP"``; unknown values as hex alone."""
    name = ETHERTYPES.get(value)
    return f"0x{value:04x} {name}" if name else f"0x{value:04x}"


def linktype_name(value: int) -> str:
    """``"127 IEEE802_11_RADIOTAP"``; unknown values as the number alone."""
    name = LINKTYPES.get(value)
    return f"{value} {name}" if name else str(value)


def protocol_name(value: int | None) -> str:
    """``"TCP"`` for 6; unknown protocols as their number; ``None`` as an empty string."""
    if value is None:
        return ""
    return PROTOCOLS.get(int(value), str(value))
