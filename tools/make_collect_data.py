#!/usr/bin/env python3
"""Regenerate tests/data/collect: small captures of built export datagrams and their expected rows.

Usage: python tools/make_collect_data.py

For every case of ``tests/unit/collect_cases.py`` (``REGRESSION_FILES``) it writes ``<case>.pcap`` —
the datagrams as Ethernet/IPv4/UDP frames from 192.0.2.7:40000 to 192.0.2.1:2055 (sFlow: port 6343),
one per millisecond — and ``<case>.json``: the rows and interface counters the plain-Python
reference decoder (``netspectra.collect.reference``) reads in them, which the collector's kernels
must reproduce (tests/unit/test_collect_regressions.py). The files are made here, from the RFCs'
formats; none is a copy of a third-party capture.
"""

from __future__ import annotations

import json
import struct
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "unit"))

from collect_cases import REGRESSION_FILES, SENDER  # noqa: E402

from netspectra.collect.reference import ReferenceDecoder  # noqa: E402

OUT = ROOT / "tests" / "data" / "collect"
T0_NS = 1_700_000_100 * 10**9


def frame(payload: bytes, dport: int) -> bytes:
    udp = struct.pack(">HHHH", 40000, dport, 8 + len(payload), 0) + payload
    ip = struct.pack(
        ">BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0, bytes([192, 0, 2, 7]), bytes([192, 0, 2, 1])
    )
    return b"\x02\x00\x00\x00\x00\x01\x02\x00\x00\x00\x00\x02\x08\x00" + ip + udp


def write_pcap(path: Path, payloads: list[bytes], dport: int) -> list[int]:
    """A nanosecond pcap of ``payloads``; returns each record's timestamp (ns)."""
    stamps = []
    with path.open("wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, 65535, 1))
        for i, p in enumerate(payloads):
            ts = T0_NS + i * 1_000_000
            fr = frame(p, dport)
            f.write(struct.pack("<IIII", ts // 10**9, ts % 10**9, len(fr), len(fr)) + fr)
            stamps.append(ts)
    return stamps


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    for name, case in REGRESSION_FILES.items():
        payloads = case()
        dport = 6343 if name == "sflow" else 2055
        stamps = write_pcap(OUT / f"{name}.pcap", payloads, dport)
        ref = ReferenceDecoder()
        rows, counters = [], []
        for p, ts in zip(payloads, stamps, strict=True):
            r, c = ref.decode(p, SENDER, ts)
            rows += r
            counters += c
        for r in rows:
            r["header"] = r["header"].hex()
        doc = {
            "source": f"tools/make_collect_data.py, case {name}",
            "rows": rows,
            "interface_counters": counters,
        }
        (OUT / f"{name}.json").write_text(json.dumps(doc, indent=1) + "\n")
        size = (OUT / f"{name}.pcap").stat().st_size
        print(f"{name}: {len(payloads)} datagrams ({size} bytes), {len(rows)} rows, {len(counters)} counters")
    return 0


if __name__ == "__main__":
    sys.exit(main())
