"""tshark's dissection of flow exports (the ``-V`` tree, read as PDML), and the field-by-field comparison
of the collector's rows with it. Shared by the tests on the project's own captures (tests/data/collect)
and on the shared real exports."""

from __future__ import annotations

import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

needs_tshark = pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed")


def pdml(paths: list[Path], tmp_path: Path, dissector: str) -> ET.Element:
    """tshark's packet details of the files' packets, in order (merged into one capture, so that tshark
    can use the templates of earlier files), every UDP destination port decoded as ``dissector``."""
    merged = paths[0]
    if len(paths) > 1:
        merged = tmp_path / "merged.pcap"
        subprocess.run(["mergecap", "-a", "-w", str(merged), *map(str, paths)], check=True)
    dports: set[int] = set()
    for p in paths:
        out = subprocess.run(
            ["tshark", "-r", str(p), "-T", "fields", "-e", "udp.dstport"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        dports.update(int(x.split(",")[0]) for x in out)
    args = ["tshark", "-r", str(merged), "-T", "pdml"]
    for port in sorted(dports):
        args += ["-d", f"udp.port=={port},{dissector}"]
    return ET.fromstring(subprocess.run(args, capture_output=True, check=True).stdout)


def fields_of(el: ET.Element) -> dict[str, str]:
    """First ``show`` of every named field under ``el`` (nested ones included)."""
    out: dict[str, str] = {}
    for f in el.iter("field"):
        name = f.get("name")
        show = f.get("show")
        if name and name not in out and show is not None:
            out[name] = show
    return out


def cflow_records(root: ET.Element) -> list[dict[str, str]]:
    """Every NetFlow/IPFIX data record tshark decoded (options records left out), with its header."""
    recs = []
    for pkt in root.iter("packet"):
        proto = next((p for p in pkt.iter("proto") if p.get("name") == "cflow"), None)
        if proto is None:
            continue
        head = {
            f.get("name"): f.get("show")
            for f in proto.iter("field")
            if f.get("name", "").startswith("cflow.")
        }
        for fs in proto.iter("field"):
            # v9/IPFIX records are "Flow N" subtrees, v5 records "pdu N/M"
            if fs.get("name") == "" and (fs.get("show") or "").startswith(("Flow ", "pdu ")):
                d = fields_of(fs)
                if any(k in d for k in ("cflow.srcaddr", "cflow.srcaddrv6", "cflow.data_link_frame_section")):
                    d["_unix_secs"] = head.get("cflow.unix_secs") or ""
                    d["_unix_nsecs"] = head.get("cflow.unix_nsecs") or "0"
                    d["_sysuptime"] = head.get("cflow.sysuptime") or ""
                    recs.append(d)
    return recs


def _int(s: str) -> int:
    return int(s, 16) if s.startswith("0x") else int(float(s))


def compare_cflow(rows: list[dict[str, Any]], want: list[dict[str, str]], what: str) -> int:
    """Assert that each row equals tshark's record field by field; returns how many counters and
    interfaces were compared."""
    assert len(rows) == len(want), what
    checked = 0
    for r, w in zip(rows, want, strict=True):
        src = w.get("cflow.srcaddr") or w.get("cflow.srcaddrv6")
        dst = w.get("cflow.dstaddr") or w.get("cflow.dstaddrv6")
        if src and src not in ("0.0.0.0", "::"):
            assert (r["src_ip"], r["dst_ip"]) == (src, dst), what
        if "cflow.protocol" in w:
            proto = _int(w["cflow.protocol"])
            assert r["protocol"] == proto, what
            if proto in (6, 17, 132):
                ports = (_int(w.get("cflow.srcport", "0")), _int(w.get("cflow.dstport", "0")))
                assert (r["src_port"], r["dst_port"]) == ports, what
            elif proto in (1, 58):
                code = w.get("cflow.icmp_type_code_ipv4") or w.get("cflow.icmp_type_code_ipv6")
                tc = _int(code) if code else _int(w.get("cflow.dstport", "0"))
                assert (r["icmp_type"], r["icmp_code"]) == (tc >> 8, tc & 0xFF), what
        for ours, theirs in (
            ("packets", "cflow.packets"),
            ("bytes", "cflow.octets"),
            ("in_if", "cflow.inputint"),
            ("out_if", "cflow.outputint"),
            ("tcp_flags", "cflow.tcpflags"),
            ("src_vlan", "cflow.vlanid"),
            ("dst_vlan", "cflow.post_vlanid"),
        ):
            if theirs in w:
                assert r[ours] == _int(w[theirs]), (what, ours, w[theirs])
                checked += 1
        if "cflow.sampling_interval" in w:
            assert r["sampling_rate"] == _int(w["cflow.sampling_interval"]), what
        if "cflow.timestart" in w and w["_sysuptime"]:
            # tshark shows FIRST_SWITCHED and sysUptime as seconds of uptime
            up_ms = round(float(w["_sysuptime"]) * 1000)
            first_ms = round(float(w["cflow.timestart"]) * 1000)
            export = int(w["_unix_secs"]) * 10**9 + int(w["_unix_nsecs"])
            age = (up_ms - first_ms) & 0xFFFFFFFF  # uptime wraps at 2^32 ms (49.7 days)
            age = age - (1 << 32) if age >= 1 << 31 else age
            assert r["flow_start_ns"] == export - age * 10**6, what
        if "cflow.data_link_frame_section" in w:
            assert r["header"].hex() == w["cflow.data_link_frame_section"].replace(":", ""), what
            if "cflow.data_link_frame_size" in w:
                assert r["hdr_wirelen"] == _int(w["cflow.data_link_frame_size"]), what
    return checked


def sflow_samples(root: ET.Element) -> list[dict[str, Any]]:
    """Every flow sample tshark decoded: its fields and the first IP header inside its packet header."""
    out = []
    for pkt in root.iter("packet"):
        for fs in pkt.iter("field"):
            show = fs.get("show") or ""
            if fs.get("name") == "" and show.startswith(("Flow sample", "Expanded flow sample")):
                d: dict[str, Any] = fields_of(fs)
                inner = list(fs.iter("proto"))
                ip = next((p for p in inner if p.get("name") in ("ip", "ipv6")), None)
                if ip is not None:
                    f = fields_of(ip)
                    d["_src"] = f.get("ip.src") or f.get("ipv6.src")
                    d["_dst"] = f.get("ip.dst") or f.get("ipv6.dst")
                    d["_proto"] = f.get("ip.proto") or f.get("ipv6.nxt")
                l4 = next((p for p in inner if p.get("name") in ("tcp", "udp")), None)
                if l4 is not None:
                    f = fields_of(l4)
                    name = l4.get("name")
                    d["_ports"] = (int(f[f"{name}.srcport"]), int(f[f"{name}.dstport"]))
                d["_vlans"] = [
                    int(x.get("show") or 0) for x in fs.iter("field") if x.get("name") == "vlan.id"
                ]
                out.append(d)
    return out


def _compact_if(v: int) -> int:
    return 0 if v >> 30 or (v & 0x3FFFFFFF) == 0x3FFFFFFF else v


def compare_sflow(rows: list[dict[str, Any]], want: list[dict[str, Any]], what: str) -> None:
    """Assert that each sFlow row equals tshark's flow sample field by field (the header's key after
    ``keys_from_headers``)."""
    assert len(rows) == len(want) >= 1, what
    for r, w in zip(rows, want, strict=True):
        rate = int(w["sflow.flow_sample.sampling_rate"])
        if rate:
            assert r["sampling_rate"] == rate, what
        else:  # no rate in the sample: the configured default fills it, marked as such
            assert r["sampling_source"] != 1, what
        if "sflow_245.header" in w:
            assert r["hdr_len"] == int(w["sflow_245.header.sampled_header_length"]), what
            frame, stripped = (
                int(w["sflow_245.header.frame_length"]),
                int(w["sflow_245.header.payload_stripped"]),
            )
            assert r["hdr_wirelen"] == (frame - stripped if stripped <= 4 else frame), what
            # tshark's field includes the XDR padding to a multiple of 4 bytes
            assert r["header"].hex() == w["sflow_245.header"].replace(":", "")[: 2 * r["hdr_len"]], what
        if "_src" in w:  # the outer IP header inside the sampled header (tunnels not decapsulated)
            assert (r["src_ip"], r["dst_ip"]) == (w["_src"], w["_dst"]), what
            assert r["protocol"] == int(w["_proto"]), what
        if "_ports" in w and r["protocol"] in (6, 17):
            assert (r["src_port"], r["dst_port"]) == w["_ports"], what
        if "sflow_245.vlan.in" in w:
            vin, vout = int(w["sflow_245.vlan.in"]), int(w["sflow_245.vlan.out"])
            assert (r["src_vlan"], r["dst_vlan"]) == (vin if vin < 4096 else 0, vout if vout < 4096 else 0), (
                what
            )
        elif w["_vlans"]:
            assert r["src_vlan"] == r["dst_vlan"] == w["_vlans"][-1], what
        if "sflow.flow_sample.input_interface_value" in w:  # expanded form
            v = int(w["sflow.flow_sample.input_interface_value"])
            fmt = int(w.get("sflow.flow_sample.input_interface_format", "0"))
            assert r["in_if"] == (v if fmt == 0 and v != 0x3FFFFFFF else 0), what
        elif "sflow.flow_sample.input_interface" in w:  # compact form
            assert r["in_if"] == _compact_if(_int(w["sflow.flow_sample.input_interface"])), what
        if "sflow.flow_sample.output_interface_value" in w:
            v = int(w["sflow.flow_sample.output_interface_value"])
            fmt = int(w.get("sflow.flow_sample.output_interface_format", "0"))
            assert r["out_if"] == (v if fmt == 0 and v != 0x3FFFFFFF else 0), what


#: tshark's generic interface counter fields (sflow_245.*) -> the kept table's names.
_IF_FIELDS = {
    "ifindex": "if_index", "iftype": "if_type", "ifspeed": "if_speed", "ifdirection": "if_direction",
    "ifinoct": "in_octets", "ifinpkt": "in_ucast", "ifinmcast": "in_mcast", "ifinbcast": "in_bcast",
    "ifindisc": "in_discards", "ifinerr": "in_errors", "ifinunk": "in_unknown", "ifoutoct": "out_octets",
    "ifoutpkt": "out_ucast", "ifoutmcast": "out_mcast", "ifoutbcast": "out_bcast",
    "ifoutdisc": "out_discards", "ifouterr": "out_errors", "ifpromisc": "promiscuous",
}  # fmt: skip


def sflow_interface_counters(root: ET.Element) -> list[dict[str, Any]]:
    """Every generic interface counters record tshark decoded, in order: its agent address (``exporter``),
    the counters under the kept table's names, ``admin_up``/``oper_up``, and the frame time in ns."""
    out = []
    for pkt in root.iter("packet"):
        f = fields_of(pkt)
        agent = f.get("sflow_245.agent") or f.get("sflow_245.agent.v6")
        secs, _, frac = f["frame.time_epoch"].partition(".")
        when = int(secs) * 10**9 + int((frac + "000000000")[:9])
        for rec in pkt.iter("field"):
            if rec.get("name") == "" and rec.get("show") == "Generic interface counters":
                g = fields_of(rec)
                d: dict[str, Any] = {"exporter": agent, "received_ns": when}
                for k, name in _IF_FIELDS.items():
                    d[name] = int(g[f"sflow_245.{k}"])
                d["admin_up"] = g["sflow_245.ifadmin_status"] == "1"
                d["oper_up"] = g["sflow_245.ifoper_status"] == "1"
                out.append(d)
    return out
