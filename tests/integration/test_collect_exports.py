"""Real exports (../shared/data/flow-exports, from Akvorado's decoder tests) decoded by the collector.

Two independent checks, on the very files Akvorado's ``outlet/flow/decoder/{netflow,sflow}`` tests
use (AGPL data: read from the shared folder, never copied here):

* the values Akvorado's tests expect (``root_test.go``), field by field, where NetSpectra's
  semantics are the same; where they differ on purpose the test states how (bytes of sampled
  headers are wire lengths here, IP lengths there; tunnels are not decapsulated; Akvorado's
  FIRST_SWITCHED timestamp adds milliseconds to seconds);
* tshark's dissection (the ``-V`` tree, read as PDML) of every flow record and sFlow sample, every
  field both decode: addresses, ports (ICMP type/code), protocol, counters, interfaces, times,
  sampling rate, the sampled header's lengths and the addresses and ports inside it.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from netspectra.collect.capture import datagrams_from_capture
from netspectra.collect.decoder import FlowDecoder
from netspectra.collect.headers import keys_from_headers
from netspectra.collect.records import RATE_DEFAULT, RATE_OPTIONS, RATE_RECORD, DatagramBatch

pytestmark = pytest.mark.shared

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "unit"))
from collect_tshark import cflow_records, compare_cflow, compare_sflow, needs_tshark, pdml, sflow_samples  # noqa: E402

EXPORTS = ROOT.parent / "shared" / "data" / "flow-exports"
if not EXPORTS.is_dir():
    pytest.skip(
        "../shared/data/flow-exports is not present (only on the project's machines)", allow_module_level=True
    )

# the file groups of Akvorado's tests: templates (and options) before the data that needs them
NETFLOW_GROUPS: dict[str, list[str]] = {
    "options": ["options-template.pcap", "options-data.pcap", "template.pcap", "data.pcap"],
    "mixed": ["data+templates.pcap"],
    "samplingrate": ["samplingrate-template.pcap", "samplingrate-data.pcap"],
    "multiplesamplingrates": [
        "multiplesamplingrates-options-template.pcap",
        "multiplesamplingrates-options-data.pcap",
        "multiplesamplingrates-template.pcap",
        "multiplesamplingrates-data.pcap",
    ],
    "icmp": ["icmp-template.pcap", "icmp-data.pcap"],
    "datalink": ["datalink-template.pcap", "datalink-data.pcap"],
    "mpls": ["mpls.pcap"],
    "nat": ["nat.pcap"],
    "physicalinterfaces": ["physicalinterfaces.pcap"],
    "nfv5": ["nfv5.pcap"],
    "ipfixprobe": ["ipfixprobe-templates.pcap", "ipfixprobe-data.pcap"],
    "srv6": ["ipfix-srv6-template.pcap", "ipfix-srv6-data.pcap"],
    "juniper": ["juniper-cpid-template.pcap", "juniper-cpid-data.pcap"],
    "evpn": [
        "ethernet-over-mpls-with-control-word-template.pcap",
        "ethernet-over-mpls-with-control-word-data.pcap",
    ],
}
SFLOW_FILES = sorted(p.name for p in (EXPORTS / "sflow").glob("*.pcap"))


def decode_files(paths: list[Path]) -> tuple[list[dict[str, Any]], FlowDecoder]:
    """Rows of the files' datagrams, decoded in order by one decoder, keys read from sampled headers."""
    dec = FlowDecoder()
    batches = [b for p in paths for b in datagrams_from_capture(p)]
    assert batches, paths
    res = dec.decode(DatagramBatch.concat(batches))
    keys_from_headers(res.records)
    res.records.validate()
    return res.records.as_dicts(), dec


def netflow(group: str) -> tuple[list[dict[str, Any]], FlowDecoder]:
    return decode_files([EXPORTS / "netflow" / f for f in NETFLOW_GROUPS[group]])


def sflow(name: str) -> tuple[list[dict[str, Any]], FlowDecoder]:
    return decode_files([EXPORTS / "sflow" / name])


def pick(row: dict[str, Any], *keys: str) -> tuple:
    return tuple(row[k] for k in keys)


KEY = ("src_ip", "dst_ip", "src_port", "dst_port", "protocol")

# --------------------------------------------------------------------------------------------------
# Akvorado's expected values
# --------------------------------------------------------------------------------------------------


def test_akvorado_options_sampling_and_data() -> None:
    rows, dec = netflow("options")
    want = [
        ("198.38.121.178", "91.170.143.87", 443, 19624, 6, 335, 450, 1, 1500),
        ("198.38.121.219", "88.122.57.97", 443, 2444, 6, 335, 452, 1, 1500),
        ("173.194.190.106", "37.165.129.20", 443, 53697, 6, 461, 306, 1, 1400),
        ("74.125.100.234", "88.120.219.117", 443, 52300, 6, 461, 451, 1, 1448),
    ]
    assert [pick(r, *KEY, "in_if", "out_if", "packets", "bytes") for r in rows] == want
    assert {(r["sampling_rate"], r["sampling_source"], r["tcp_flags"]) for r in rows} == {
        (30000, RATE_OPTIONS, 16)
    }
    t = dec.stats.as_dict()["totals"]
    assert (t["templates"], t["options_records"], t["records"], t["decode_errors"]) == (2, 4, 4, 0)
    # Akvorado's TestDecodeTimestampFromFirstSwitched: sysUptime 944951609 ms, export 1647285928 s,
    # FIRST_SWITCHED 944948659 ms (its expected value adds the milliseconds to seconds; tshark agrees
    # with the arithmetic here: 2.950 s before the export)
    assert rows[0]["flow_start_ns"] == 1647285928 * 10**9 - (944951609 - 944948659) * 10**6
    assert rows[2]["flow_start_ns"] == 1647285928 * 10**9 - (944951609 - 944948660) * 10**6


def test_akvorado_templates_mixed_with_data() -> None:
    rows, dec = netflow("mixed")
    t = dec.stats.as_dict()["totals"]
    assert t["templates"] == 2  # options template 256 and template 257 of domain 17170432
    assert {r["domain"] for r in rows} == {17170432}
    # Akvorado drops the data set that precedes its template in the datagram; it waits here, and is
    # decoded when the template (later in the same datagram) arrives
    assert t["unknown_template_sets"] == 1 and t["pending_decoded_sets"] == 1
    assert len(rows) == 21 and all(r["sampling_rate"] == 100 for r in rows)


def test_akvorado_sampling_rate() -> None:
    rows, _ = netflow("samplingrate")
    r = rows[0]
    assert pick(r, *KEY) == ("232.131.215.65", "142.183.180.65", 13245, 10907, 6)
    assert pick(r, "sampling_rate", "in_if", "src_vlan", "packets", "bytes") == (2048, 13, 701, 1, 160)


def test_akvorado_multiple_sampling_rates() -> None:
    rows, _ = netflow("multiplesamplingrates")
    assert pick(rows[0], *KEY, "sampling_rate", "in_if", "out_if", "packets", "bytes", "tcp_flags") == (
        "ffff::68",
        "ffff::1a",
        443,
        52616,
        6,
        4000,
        97,
        6,
        18,
        1348,
        16,
    )
    assert pick(rows[1], *KEY, "sampling_rate", "in_if", "out_if", "packets", "bytes") == (
        "ffff::5a",
        "ffff::f",
        2121,
        2121,
        17,
        2000,
        103,
        6,
        4,
        579,
    )
    assert rows[0]["sampling_source"] == rows[1]["sampling_source"] == RATE_OPTIONS


def test_akvorado_icmp() -> None:
    rows, _ = netflow("icmp")
    got = [
        pick(r, "src_ip", "dst_ip", "protocol", "icmp_type", "icmp_code", "bytes", "src_port", "dst_port")
        for r in rows
    ]
    assert got == [
        ("2001:db8::", "2001:db8::1", 58, 128, 0, 104, 0, 0),  # Akvorado: DstPort 32768, ICMPv6 type 128
        ("2001:db8::1", "2001:db8::", 58, 129, 0, 104, 0, 0),
        ("203.0.113.4", "203.0.113.5", 1, 8, 0, 84, 0, 0),  # DstPort 2048: echo request
        ("203.0.113.5", "203.0.113.4", 1, 0, 0, 84, 0, 0),
    ]


def test_akvorado_datalink_frame_section() -> None:
    rows, _ = netflow("datalink")
    (r,) = rows
    assert pick(r, *KEY, "in_if", "out_if", "packets") == (
        "51.51.51.51",
        "52.52.52.52",
        55501,
        11777,
        17,
        582,
        0,
        1,
    )
    assert (r["src_vlan"], r["dst_vlan"]) == (231, 231)
    # Akvorado counts the IP length (96); the section is the frame: 14 Ethernet + 4 VLAN bytes more
    assert r["bytes"] == r["hdr_wirelen"] == 96 + 18 and r["hdr_linktype"] == 1


def test_akvorado_data_without_template() -> None:
    rows, dec = decode_files([EXPORTS / "netflow" / "datalink-data.pcap"])
    assert rows == [] and dec.stats.as_dict()["totals"]["unknown_template_sets"] == 1


def test_akvorado_mpls() -> None:
    rows, _ = netflow("mpls")
    assert [pick(r, *KEY, "sampling_rate", "out_if", "packets", "bytes") for r in rows] == [
        ("fd00::1:0:1:7:1", "fd00::1:0:1:5:1", 49153, 862, 17, 10, 16, 1, 89),
        ("fd00::1:0:1:7:1", "fd00::1:0:1:6:1", 49153, 862, 17, 10, 17, 10, 890),
    ]


def test_akvorado_nat_event() -> None:
    rows, _ = netflow("nat")
    assert pick(rows[0], *KEY, "packets", "bytes") == ("172.16.100.198", "10.89.87.1", 35303, 53, 17, 0, 0)
    assert rows[0]["sampling_source"] == RATE_DEFAULT  # a NAT event has no rate: counted, not 1 silently


def test_akvorado_physical_interfaces() -> None:
    rows, _ = netflow("physicalinterfaces")
    r = rows[0]
    assert pick(r, *KEY, "sampling_rate", "in_if", "out_if", "src_vlan", "packets", "bytes", "tcp_flags") == (
        "147.53.240.75",
        "212.82.101.24",
        55629,
        993,
        6,
        1000,
        1342177291,
        0,
        4,
        3,
        4506,
        0x10,
    )


def test_akvorado_netflow5() -> None:
    rows, dec = netflow("nfv5")
    r = rows[0]
    assert pick(r, *KEY, "in_if", "out_if", "packets", "bytes", "tcp_flags") == (
        "161.202.212.212",
        "202.152.70.24",
        30104,
        11963,
        6,
        117,
        86,
        1,
        133,
        0x18,
    )
    # the header's sampling interval is 0: Akvorado makes it 1 silently; here it is the default, counted
    assert (r["sampling_rate"], r["sampling_source"]) == (1, RATE_DEFAULT)
    assert dec.stats.as_dict()["totals"]["records_without_sampling_rate"] == len(rows) == 29
    # export 1680626679 s; sysUptime 2874339000 ms, first 2874324000 ms: 15 s before (Akvorado: 15000 s)
    assert r["flow_start_ns"] == (1680626679 - 15) * 10**9


def test_akvorado_rfc5103_biflows() -> None:
    rows, _ = netflow("ipfixprobe")
    got = sorted(pick(r, *KEY, "packets", "bytes", "in_if", "out_if", "tcp_flags") for r in rows)
    assert got == sorted(
        [
            ("10.10.1.4", "10.10.1.1", 56166, 53, 17, 1, 62, 10, 0, 0),
            ("10.10.1.1", "10.10.1.4", 53, 56166, 17, 1, 128, 0, 10, 0),
            ("10.10.1.20", "10.10.1.255", 138, 138, 17, 1, 229, 10, 0, 0),
            ("10.10.1.4", "74.53.140.153", 1470, 25, 6, 28, 21673, 10, 0, 0x1B),
            ("74.53.140.153", "10.10.1.4", 25, 1470, 6, 25, 1546, 0, 10, 0x1B),
            ("192.168.1.1", "10.10.1.4", 0, 0, 1, 4, 2304, 10, 0, 0),
        ]
    )


def test_akvorado_tunnels_keep_the_outer_header() -> None:
    """Akvorado decapsulates SRv6/VXLAN/EVPN on request; NetSpectra keys on the outer header, as for
    captures. The outer headers are checked against tshark in the tshark tests; the rest here."""
    rows, _ = netflow("juniper")
    (r,) = rows
    assert pick(r, "src_ip", "dst_ip", "protocol", "in_if", "packets") == (
        "fc30:2200:1b::f",
        "fc30:2200:23:e009::",
        4,
        737,
        1,
    )
    rows, _ = netflow("srv6")
    assert len(rows) == 1 and rows[0]["ip_version"] == 6 and rows[0]["packets"] == 1
    rows, _ = netflow("evpn")
    assert len(rows) == 10 and rows[3]["in_if"] == 1022


SFLOW_EXPECTED: dict[str, list[tuple]] = {
    # file: (src, dst, sport, dport, proto, rate, in_if, out_if, src_vlan, dst_vlan, exporter)
    "data-1140.pcap": [
        (
            "2a0c:8880:2:0:185:21:130:38",
            "2a0c:8880:2:0:185:21:130:39",
            46026,
            22,
            6,
            1024,
            27,
            28,
            100,
            100,
            "172.16.0.3",
        ),
        ("104.26.8.24", "45.90.161.46", 443, 56876, 6, 1024, 49001, 25, 0, 100, "172.16.0.3"),
        (
            "2a0c:8880:2:0:185:21:130:38",
            "2a0c:8880:2:0:185:21:130:39",
            46026,
            22,
            6,
            1024,
            27,
            28,
            100,
            100,
            "172.16.0.3",
        ),
        ("45.90.161.148", "191.87.91.27", 55658, 5555, 6, 1024, 28, 49001, 100, 0, "172.16.0.3"),
        (
            "2a0c:8880:2:0:185:21:130:38",
            "2a0c:8880:2:0:185:21:130:39",
            46026,
            22,
            6,
            1024,
            27,
            28,
            100,
            100,
            "172.16.0.3",
        ),
    ],
    "data-local-interface.pcap": [
        (
            "2a0c:8880:2:0:185:21:130:38",
            "2a0c:8880:2:0:185:21:130:39",
            46026,
            22,
            6,
            1024,
            27,
            0,
            100,
            100,
            "172.16.0.3",
        ),
    ],
    "data-discard-interface.pcap": [
        (
            "2a0c:8880:2:0:185:21:130:38",
            "2a0c:8880:2:0:185:21:130:39",
            46026,
            22,
            6,
            1024,
            27,
            0,
            100,
            100,
            "172.16.0.3",
        ),
    ],
    "data-multiple-interfaces.pcap": [
        (
            "2a0c:8880:2:0:185:21:130:38",
            "2a0c:8880:2:0:185:21:130:39",
            46026,
            22,
            6,
            1024,
            27,
            0,
            100,
            100,
            "172.16.0.3",
        ),
    ],
    "data-sflow-expanded-sample.pcap": [
        ("52.52.52.52", "53.53.53.53", 22, 52237, 6, 1000, 29001, 1285816721, 809, 809, "49.49.49.49"),
    ],
    "data-sflow-ipv4-data.pcap": [
        ("50.50.50.50", "51.51.51.51", 46622, 58631, 17, 256, 0, 182, 0, 3001, "49.49.49.49")
    ],
    "data-sflow-raw-ipv4.pcap": [
        ("69.58.92.107", "92.222.186.1", 0, 0, 1, 1, 0, 2, 0, 0, "172.19.64.116"),
        ("69.58.92.107", "92.222.184.1", 0, 0, 1, 1, 0, 2, 0, 0, "172.19.64.116"),
    ],
    "data-icmpv4.pcap": [("203.0.113.4", "203.0.113.5", 0, 0, 1, 1, 0, 0, 0, 0, "127.0.0.1")],
    "data-icmpv6.pcap": [("fe80::d05b:45ff:feee:5ecf", "2001:db8::", 0, 0, 58, 1, 0, 0, 0, 0, "127.0.0.1")],
    "data-qinq.pcap": [
        ("49.49.49.2", "49.49.49.109", 32017, 443, 6, 4096, 369098852, 369098851, 1493, 1493, "172.17.128.58")
    ],
}


@pytest.mark.parametrize("name", sorted(SFLOW_EXPECTED))
def test_akvorado_sflow(name: str) -> None:
    rows, dec = sflow(name)
    cols = (*KEY, "sampling_rate", "in_if", "out_if", "src_vlan", "dst_vlan", "exporter")
    assert [pick(r, *cols) for r in rows] == SFLOW_EXPECTED[name]
    assert all(r["sampling_source"] == RATE_RECORD and r["packets"] == 1 for r in rows)
    assert dec.stats.as_dict()["totals"]["decode_errors"] == 0


def test_sflow_bytes_are_wire_lengths() -> None:
    """Akvorado counts the sampled packet's IP length; NetSpectra its wire length, as captures do."""
    rows, _ = sflow("data-1140.pcap")
    akvorado_ip_lengths = [1500, 421, 1500, 40, 1500]
    # an Ethernet frame carries 14 header bytes, and is padded to 60: the 40-byte SYN travelled as 60
    assert [r["bytes"] for r in rows] == [max(n + 14, 60) for n in akvorado_ip_lengths]


# --------------------------------------------------------------------------------------------------
# tshark
# --------------------------------------------------------------------------------------------------


@needs_tshark
@pytest.mark.tshark
@pytest.mark.parametrize("group", [g for g in NETFLOW_GROUPS if g != "ipfixprobe"])  # biflows: see above
def test_netflow_records_match_tshark(group: str, tmp_path: Path) -> None:
    paths = [EXPORTS / "netflow" / f for f in NETFLOW_GROUPS[group]]
    rows, _ = decode_files(paths)
    want = cflow_records(pdml(paths, tmp_path, "cflow"))
    if group == "mixed":
        # tshark, like Akvorado, cannot decode the data set that precedes its template in the datagram;
        # here it waited for the template and its records come first
        assert 0 < len(want) < len(rows)
        rows = rows[len(rows) - len(want) :]
    checked = compare_cflow(rows, want, group)
    assert checked >= len(rows) or group == "nat", group


@needs_tshark
@pytest.mark.tshark
@pytest.mark.parametrize("name", SFLOW_FILES)
def test_sflow_samples_match_tshark(name: str, tmp_path: Path) -> None:
    path = EXPORTS / "sflow" / name
    rows, _ = sflow(name)
    compare_sflow(rows, sflow_samples(pdml([path], tmp_path, "sflow")), name)
