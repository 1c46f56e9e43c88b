#!/usr/bin/env python3
"""Independent per-five-tuple truth for a capture, computed by tshark (Wireshark's dissectors).

Usage: python tools/flow_truth.py CAPTURE [OUT.csv]

It follows the flow semantics of ``shared/tools/tshark_flows.py`` (outer IP header, ports only
from the outer TCP/UDP/SCTP header, none on non-first fragments, ByteCount = wire length, no IP
reassembly) with two corrections that NetSpectra's exact task makes on purpose:

* the outer IP header is the first ``ip``/``ipv6`` layer of ``frame.protocols``; the shared
  script takes ``ip.src`` before ``ipv6.src`` and so reports the *inner* header of IPv4-in-IPv6;
* the IPv6 protocol is the upper protocol after the extension-header chain of the outer header
  (Hop-by-Hop, Routing, Fragment, Destination Options, AH), not the first Next Header; the shared
  script (like the original Go probe) reports 0 for a hop-by-hop packet carrying TCP.

Both corrections read tshark's own fields (``ipv6.<ext>.nxt`` of the last extension header of
the outer chain), so the truth stays Wireshark's, not NetSpectra's. Needs ``tshark`` on PATH.
"""

from __future__ import annotations

import csv
import ipaddress
import json
import shutil
import subprocess
import sys
from collections import defaultdict

EXT_LAYERS = {
    "ipv6.hopopts": "ipv6.hopopts.nxt",
    "ipv6.routing": "ipv6.routing.nxt",
    "ipv6.fraghdr": "ipv6.fraghdr.nxt",
    "ipv6.dstopts": "ipv6.dstopts.nxt",
    "ah": "ah.next_header",
}
L4_PORTS = {6: "tcp", 17: "udp", 132: "sctp"}
FIELDS = [
    "frame.protocols",
    "frame.len",
    "ip.src",
    "ip.dst",
    "ip.proto",
    "ipv6.src",
    "ipv6.dst",
    "ipv6.nxt",
    "tcp.srcport",
    "tcp.dstport",
    "udp.srcport",
    "udp.dstport",
    "sctp.srcport",
    "sctp.dstport",
    *EXT_LAYERS.values(),
]


def tshark_rows(capture: str):
    """Yield one dict per frame: field name -> list of occurrences (outermost first)."""
    cmd = [
        "tshark", "-r", capture, "-n",
        "-o", "ip.defragment:FALSE", "-o", "ipv6.defragment:FALSE",
        "-o", "tcp.desegment_tcp_streams:FALSE", "-o", "tcp.analyze_sequence_numbers:FALSE",
        "-T", "fields", "-E", "separator=\t", "-E", "occurrence=a", "-E", "aggregator=|",
    ]  # fmt: skip
    for f in FIELDS:
        cmd += ["-e", f]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        vals = line.rstrip("\n").split("\t")
        yield {f: (v.split("|") if v else []) for f, v in zip(FIELDS, vals, strict=False)}
    proc.wait()


def flow_of(row: dict[str, list[str]]) -> tuple[str, str, int, int, int] | None:
    """The five-tuple of one frame, or None when it has no IP header."""
    layers = row["frame.protocols"][0].split(":") if row["frame.protocols"] else []
    try:
        i = next(k for k, name in enumerate(layers) if name in ("ip", "ipv6"))
    except StopIteration:
        return None
    fam = layers[i]
    srcs, dsts = row[f"{fam}.src"], row[f"{fam}.dst"]
    if not srcs or not dsts:
        return None
    src, dst = srcs[0], dsts[0]
    if fam == "ip":
        proto = int(row["ip.proto"][0]) if row["ip.proto"] else 0
    else:
        proto = int(row["ipv6.nxt"][0]) if row["ipv6.nxt"] else 0
        # walk the outer header's extension chain as tshark dissected it
        seen: dict[str, int] = defaultdict(int)
        for name in layers[:i]:
            if name in EXT_LAYERS:
                seen[name] += 1
        j = i + 1
        while j < len(layers) and layers[j] in EXT_LAYERS:
            name = layers[j]
            occ = row[EXT_LAYERS[name]]
            if seen[name] < len(occ):
                proto = int(occ[seen[name]])
            seen[name] += 1
            j += 1
        i = j - 1
    sp = dp = 0
    l4 = L4_PORTS.get(proto)
    # ports only when the outer L4 header follows the outer IP (chain) directly
    if l4 and i + 1 < len(layers) and layers[i + 1] == l4 and row[f"{l4}.srcport"]:
        sp, dp = int(row[f"{l4}.srcport"][0]), int(row[f"{l4}.dstport"][0])
    return (str(ipaddress.ip_address(src)), str(ipaddress.ip_address(dst)), sp, dp, proto)


def flows_of(capture: str) -> tuple[dict[tuple, list[int]], int, int]:
    """Per-flow [packets, bytes], the number of frames without IP, and the number of frames."""
    flows: dict[tuple, list[int]] = defaultdict(lambda: [0, 0])
    non_ip = frames = 0
    for row in tshark_rows(capture):
        frames += 1
        key = flow_of(row)
        if key is None:
            non_ip += 1
            continue
        flows[key][0] += 1
        flows[key][1] += int(row["frame.len"][0])
    return flows, non_ip, frames


def main() -> None:
    if shutil.which("tshark") is None:
        sys.exit("flow_truth.py needs tshark (Debian package `tshark`)")
    capture = sys.argv[1]
    flows, non_ip, frames = flows_of(capture)
    out = open(sys.argv[2], "w", newline="") if len(sys.argv) > 2 else sys.stdout  # noqa: SIM115
    w = csv.writer(out)
    w.writerow(["SrcIP", "DstIP", "SrcPort", "DstPort", "Protocol", "PacketCount", "ByteCount"])
    for k, v in sorted(flows.items(), key=lambda kv: (-kv[1][0], kv[0])):
        w.writerow([*k, *v])
    summary = {
        "frames": frames,
        "flows": len(flows),
        "packets": sum(v[0] for v in flows.values()),
        "bytes": sum(v[1] for v in flows.values()),
        "non_ip": non_ip,
    }
    print(json.dumps(summary), file=sys.stderr)


if __name__ == "__main__":
    main()
