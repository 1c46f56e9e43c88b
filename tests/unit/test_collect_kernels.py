"""The collector's kernels against their plain-Python reference, on built datagrams of every kind."""

from __future__ import annotations

import numpy as np
import pytest
from collect_cases import ALL_CASES, RECV_NS, SENDER, batch, by_kind, kernel_rows, reference_rows

from netspectra.collect import build as b
from netspectra.collect import ie, records, templates
from netspectra.collect import nf_kernels as nk
from netspectra.collect import sflow_kernels as sk
from netspectra.collect.addr import to16, to_text
from netspectra.collect.capture import _gather, locate_udp
from netspectra.collect.records import FlowRecords


def test_kernel_literals_match_named_constants() -> None:
    """Kernels spell codes as literals (numba's cache keeps stale imported values)."""
    assert (nk._NETFLOW5, nk._NETFLOW9, nk._IPFIX, nk._SFLOW5) == (
        records.NETFLOW5,
        records.NETFLOW9,
        records.IPFIX,
        records.SFLOW5,
    )
    assert nk._RATE_RECORD == sk._RATE_RECORD == records.RATE_RECORD
    assert sk._SFLOW5 == records.SFLOW5 and sk._DG_BAD_SAMPLE == nk.DG_BAD_SAMPLE
    assert ie.VARLEN == 65535
    assert len(records.InterfaceCounters.WIRE) == sk.N_COUNTERS
    # the kind numbers the data kernel dispatches on
    assert (ie.K_SRC4, ie.K_DST4, ie.K_SRC6, ie.K_DST6, ie.K_SPORT, ie.K_DPORT, ie.K_PROTO) == (
        1,
        2,
        3,
        4,
        5,
        6,
        7,
    )
    assert (ie.K_BYTES, ie.K_PKTS, ie.K_IN_IF, ie.K_OUT_IF, ie.K_IN_PHYS, ie.K_OUT_PHYS) == (
        8,
        9,
        10,
        11,
        12,
        13,
    )
    assert (ie.K_TCP_FLAGS, ie.K_ICMP_TC, ie.K_ICMP_TYPE, ie.K_ICMP_CODE, ie.K_SRC_VLAN, ie.K_DST_VLAN) == (
        14,
        15,
        16,
        17,
        18,
        19,
    )
    assert (ie.K_FIRST_UPTIME, ie.K_LAST_UPTIME, ie.K_START_S, ie.K_END_S, ie.K_START_MS, ie.K_END_MS) == (
        20,
        21,
        22,
        23,
        24,
        25,
    )
    assert (
        ie.K_START_US,
        ie.K_END_US,
        ie.K_START_NS,
        ie.K_END_NS,
        ie.K_START_DELTA_US,
        ie.K_END_DELTA_US,
    ) == (
        26,
        27,
        28,
        29,
        30,
        31,
    )
    assert (ie.K_SAMPLING, ie.K_SAMPLER_ID, ie.K_DLFS, ie.K_DLF_SIZE) == (32, 33, 34, 35)
    assert (ie.K_R_BYTES, ie.K_R_PKTS, ie.K_R_TCP_FLAGS, ie.K_R_ICMP_TC) == (40, 41, 42, 43)


@pytest.mark.parametrize("name", sorted(ALL_CASES))
@pytest.mark.parametrize("one_batch", [True, False])
def test_kernels_agree_with_reference(name: str, one_batch: bool) -> None:
    payloads = ALL_CASES[name]()
    got, got_c, _ = kernel_rows(payloads, one_batch=one_batch)
    want, want_c = reference_rows(payloads)
    assert got, "the case decodes to rows"
    assert got == (by_kind(want) if one_batch else want)
    assert got_c == want_c


def test_kernels_agree_with_reference_on_every_case_in_one_batch_of_mixed_protocols() -> None:
    payloads = [p for name in sorted(ALL_CASES) for p in ALL_CASES[name]()]
    got, got_c, _ = kernel_rows(payloads)
    want, want_c = reference_rows(payloads)
    assert got == by_kind(want)
    assert got_c == want_c


def test_netflow5_values() -> None:
    rows, _, _ = kernel_rows(ALL_CASES["netflow5"]())
    r = rows[0]
    exp_ns = 1_700_000_000 * 10**9
    assert r["src_ip"] == "10.1.1.1" and r["dst_ip"] == "10.2.2.2" and r["ip_version"] == 4
    assert (r["src_port"], r["dst_port"], r["protocol"], r["tcp_flags"]) == (1234, 80, 6, 0x1B)
    assert (r["packets"], r["bytes"], r["in_if"], r["out_if"]) == (10, 5000, 1, 2)
    assert r["flow_start_ns"] == exp_ns - 10_000 * 10**6 and r["flow_end_ns"] == exp_ns - 1_000 * 10**6
    assert (r["sampling_rate"], r["sampling_source"]) == (64, records.RATE_RECORD)
    assert r["domain"] == (1 << 8) | 2 and r["exporter"] == SENDER and r["received_ns"] == RECV_NS
    icmp = rows[1]
    assert (icmp["protocol"], icmp["icmp_type"], icmp["icmp_code"], icmp["src_port"], icmp["dst_port"]) == (
        1,
        8,
        0,
        0,
        0,
    )
    wrapped = rows[2]  # first switched before the 2^32 ms uptime wrap: 1296 ms + 100 s before the export
    assert wrapped["flow_start_ns"] == exp_ns - (100_000 + 296) * 10**6
    assert wrapped["flow_end_ns"] == exp_ns - 99_900 * 10**6
    # the second datagram has no sampling in its header: the configured default, counted
    assert rows[3]["sampling_source"] == records.RATE_DEFAULT


def test_ipfix_values() -> None:
    rows, _, dec = kernel_rows(ALL_CASES["ipfix"]())
    var, var2, ent, bi_fwd, bi_rev, bi2, t1, t2 = rows  # the last two datagrams' data have no template
    assert var["hdr_len"] == 54 and var["hdr_wirelen"] == 154 and var["hdr_linktype"] == 1
    assert var["header"] == b.ethernet_ipv4_tcp("203.0.113.1", "203.0.113.2", 40000, 22, payload=100)
    assert (var["packets"], var["bytes"], var["src_port"], var["dst_port"]) == (3, 300, 1, 2)
    assert var2["hdr_len"] == 0 and var2["protocol"] == 17
    # enterprise fields skipped (one of them variable-length), ICMP type/code from IE 32
    assert (ent["protocol"], ent["icmp_type"], ent["icmp_code"], ent["packets"], ent["bytes"]) == (
        1,
        8,
        0,
        4,
        336,
    )
    # RFC 5103 biflow: the reverse row swaps the key and the interfaces, with the reverse counters
    assert (bi_fwd["packets"], bi_fwd["bytes"], bi_fwd["tcp_flags"]) == (28, 21673, 0x1B)
    assert (bi_rev["src_ip"], bi_rev["dst_ip"], bi_rev["src_port"], bi_rev["dst_port"]) == (
        "10.0.0.2",
        "10.0.0.1",
        25,
        1470,
    )
    assert (bi_rev["packets"], bi_rev["bytes"], bi_rev["tcp_flags"], bi_rev["in_if"], bi_rev["out_if"]) == (
        25,
        1546,
        0x12,
        20,
        10,
    )
    assert bi2["src_port"] == 138  # no reverse traffic: no reverse row
    # times: sysUpTime-relative from systemInitTimeMilliseconds (options data), the last start field wins
    export_ns = 1_700_000_000 * 10**9
    assert t1["flow_start_ns"] == export_ns - 5_000_000 * 1000  # flowStartDeltaMicroseconds, last
    assert t1["flow_end_ns"] == (3_900_000_001 - 2_208_988_800) * 10**9  # flowEndMicroseconds (NTP), last
    assert (t1["sampling_rate"], t1["sampling_source"]) == (512, records.RATE_RECORD)
    # PSAMP interval/space options: (1 + 99) / 1 for the rows without a rate of their own
    assert (var["sampling_rate"], var["sampling_source"]) == (100, records.RATE_OPTIONS)
    assert t2["flow_start_ns"] == t1["flow_start_ns"]
    totals = dec.stats.as_dict()["totals"]
    assert totals["template_withdrawals"] == 1 + 3  # 258, then the three data templates left (not 400)
    assert totals["unknown_template_sets"] == 2  # the biflow set after its withdrawal, d_var after all
    assert totals["templates"] == 5 and totals["options_records"] == 1


def test_sysuptime_times_without_system_init_use_export_time() -> None:
    fields = [(8, 4), (12, 4), (22, 4), (21, 4)]
    tpl = b.ipfix_template_set([(256, fields)])
    data = b.data_set(256, [b.data_record(fields, {8: "1.2.3.4", 12: "5.6.7.8", 22: 10, 21: 20})], pad_to=1)
    rows, _, _ = kernel_rows([b.ipfix([tpl, data], export_s=1_600_000_000)])
    assert rows[0]["flow_start_ns"] == rows[0]["flow_end_ns"] == 1_600_000_000 * 10**9


def test_sflow_values() -> None:
    rows, counters, _ = kernel_rows(ALL_CASES["sflow"]())
    s1, s2, s3, s4, s1b = rows
    assert s1["exporter"] == "192.0.2.99" and s1["domain"] == 1 and s1["export_kind"] == records.SFLOW5
    assert (s1["sampling_rate"], s1["in_if"], s1["out_if"], s1["packets"]) == (1000, 3, 4, 1)
    assert (s1["hdr_wirelen"], s1["bytes"], s1["hdr_len"], s1["hdr_linktype"]) == (1454, 1454, 54, 1)
    assert (s1["src_vlan"], s1["dst_vlan"]) == (10, 20)
    assert s1["ip_version"] == 0 and s1["src_ip"] == "::"  # the key is in the header (keys_from_headers)
    # local input (0x3FFFFFFF) and a discarded output (format 1) are 0; QinQ: the innermost tag
    assert (s2["in_if"], s2["out_if"], s2["src_vlan"], s2["dst_vlan"], s2["hdr_wirelen"]) == (
        0,
        0,
        200,
        200,
        66,
    )
    assert (s3["src_ip"], s3["dst_ip"], s3["src_port"], s3["dst_port"], s3["protocol"]) == (
        "10.0.0.1",
        "10.0.0.2",
        53,
        5353,
        17,
    )
    assert (s3["bytes"], s3["in_if"], s3["out_if"], s3["exporter"]) == (1000, 7, 8, "2001:db8::99")
    assert s4["sampling_source"] == records.RATE_DEFAULT and s4["ip_version"] == 6
    assert s1b["received_ns"] == RECV_NS
    assert [c["if_index"] for c in counters] == [3, 4]
    assert (
        counters[0]["in_octets"] == 2**40
        and counters[0]["if_speed"] == 10**10
        and counters[0]["out_errors"] == 5
    )
    assert counters[1]["in_ucast"] == 99 and counters[1]["exporter"] == "2001:db8::99"


def test_sequence_accounting() -> None:
    for name, lost_key, lost in (
        ("netflow5", "lost_records", 6),
        ("netflow9", "lost_datagrams", 2),
        ("ipfix", "lost_records", 1),
        ("sflow", "lost_datagrams", 2),
    ):
        _, _, dec = kernel_rows(ALL_CASES[name]())
        t = dec.stats.as_dict()["totals"]
        assert t[lost_key] == lost, name
        assert t["sequence_gaps"] == 1, name


def test_flow_records_container() -> None:
    _, _, dec = kernel_rows(ALL_CASES["sflow"]())
    r = dec.decode(batch(ALL_CASES["sflow"]())).records
    r.validate()
    both = FlowRecords.concat([r, r])
    both.validate()
    assert len(both) == 2 * len(r)
    assert both.header(len(r)) == r.header(0)
    sub = both.take(np.array([1, len(r) + 1]))
    assert sub.header(0) == sub.header(1) == r.header(1)
    empty = FlowRecords.empty(3)
    empty.validate()
    assert to_text(to16("::ffff:10.0.0.1")) == "10.0.0.1" and to_text(to16("2001:db8::1")) == "2001:db8::1"


def test_template_compiler_merges_skips_and_refuses_zero_length_records() -> None:
    f = templates.TemplateField
    prog = templates.compile_template(
        (f(8, 4), f(5, 1), f(16, 2), f(82, 65535), f(99, 3), f(12, 4)), 10, False
    )
    assert isinstance(prog, templates.Program)
    assert prog.kinds == (ie.K_SRC4, 0, 0, 0, ie.K_DST4)
    assert prog.lengths == (4, 3, 65535, 3, 4)
    assert prog.min_len == 4 + 3 + 1 + 3 + 4
    assert isinstance(templates.compile_template((f(8, 0), f(12, 0)), 9, False), str)
    # a v9 field of length 65535 is not variable-length: the record can never fit a datagram
    v9 = templates.compile_template((f(8, 4), f(82, 65535)), 9, False)
    assert isinstance(v9, templates.Program) and v9.min_len == 65539


def test_locate_udp_in_frames() -> None:
    import struct

    payload = b"hello export"
    udp = struct.pack(">HHHH", 40000, 2055, 8 + len(payload), 0) + payload
    ip4 = (
        struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0, bytes([10, 0, 0, 1]), bytes(4))
        + udp
    )
    frag = bytearray(ip4)
    frag[6] = 0x20  # more fragments
    eth = b"\x00" * 12 + b"\x81\x00\x00\x05\x08\x00"
    recs = [eth + ip4, eth + bytes(frag), (eth + ip4)[:30], b"\x00" * 12 + b"\x08\x06" + b"\x00" * 28]
    buf = np.frombuffer(b"".join(recs), np.uint8)
    off = np.cumsum([0] + [len(r) for r in recs[:-1]]).astype(np.int64)
    n = len(recs)
    pay_off, pay_len = np.zeros(n, np.int64), np.zeros(n, np.uint32)
    src, sport, status = np.zeros((n, 16), np.uint8), np.zeros(n, np.uint16), np.zeros(n, np.uint8)
    caplen = np.array([len(r) for r in recs], np.int64)
    k = locate_udp(
        buf,
        off,
        caplen,
        np.ones(n, np.int64),
        n,
        np.array([2055], np.int64),
        pay_off,
        pay_len,
        src,
        sport,
        status,
    )
    assert k == 1
    assert status.tolist() == [0, 2, 3, 1]
    assert buf[pay_off[0] : pay_off[0] + pay_len[0]].tobytes() == payload and sport[0] == 40000
    assert to_text(src[0].tobytes()) == "10.0.0.1"
    out = np.zeros(int(pay_len[0]), np.uint8)
    _gather(buf, pay_off[:1], pay_len[:1].astype(np.int64), np.zeros(1, np.int64), out)
    assert out.tobytes() == payload
