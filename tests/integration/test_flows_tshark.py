"""TCP flags, flag counts and connection states of flow records checked against Wireshark's TCP analysis.

tshark's ``tcp.stream`` is an independent cut of packets into connections, its per-packet
``tcp.flags`` the flags, and ``tcp.completeness`` (two-pass) its verdict on each conversation: a bit
mask of SYN (1), SYN-ACK (2), ACK (4), data (8), FIN (16) and RST (32) seen. Per connection the records
must have exactly tshark's packets, flags (OR) and SYN/FIN/RST counts in each direction, with the
source being the sender of the first packet; and every ``ConnState`` must be consistent with the
completeness tshark found (e.g. S0 only where a SYN was all there was, the RST states only where a
reset was seen). The captures hold handshakes, resets, half-open and mid-stream connections.
"""

from __future__ import annotations

import gzip
import shutil
import subprocess
from collections import defaultdict
from decimal import Decimal
from pathlib import Path

import pytest

import netspectra.flows
from netspectra.flows.records import CONN_STATES

pytestmark = [pytest.mark.tshark, pytest.mark.slow]
if shutil.which("tshark") is None:
    pytest.skip("tshark is not installed (apt-get install tshark)", allow_module_level=True)

REPO = Path(__file__).resolve().parents[1] / "data" / "captures"
SHARED = Path(__file__).resolve().parents[3] / "shared" / "data" / "captures"
if not SHARED.is_dir():
    SHARED = Path("/work/shared/data/captures")

SYN, ACKD, DATA, FIN, RST = 1, 4, 8, 16, 32
SYNACK = 2
#: What each state requires of tshark's completeness (all these bits) and forbids (none of these). S1
#: also needs the handshake's third packet: Wireshark marks it ACK, or DATA when it carries data.
STATE_RULES: dict[str, tuple[int, int]] = {
    "S0": (SYN, SYNACK | FIN | RST),
    "S1": (SYN | SYNACK, FIN | RST),
    "SF": (FIN, RST),
    "S2": (FIN, RST),
    "S3": (FIN, RST),
    "SH": (FIN, RST),
    "SHR": (FIN, RST),
    "REJ": (RST, 0),
    "RSTO": (RST, 0),
    "RSTR": (RST, 0),
    "RSTOS0": (SYN | RST, SYNACK),
    "RSTRH": (RST, SYN),
    "OTH": (0, 0),
}
CAPTURES = [
    REPO / "tcp-handshake-nano.pcap",
    REPO / "gnutella.pcap",
    REPO / "sites.pcapng",
    REPO / "KakaoTalk_talk.pcap",
    REPO / "webex.pcap",
    REPO / "tcp-badsegments.pcap",
    SHARED / "echo-connections.pcap.gz",
    SHARED / "anydesk.pcap",
    SHARED / "tor.pcap",
]


def tshark_connections(path: Path) -> dict[tuple, dict]:
    """tcp.stream -> its source, first time, packets/flags/counts each way and completeness."""
    fields = [
        "tcp.stream", "frame.time_epoch", "ip.src", "ipv6.src", "tcp.srcport", "ip.dst", "ipv6.dst",
        "tcp.dstport", "tcp.flags", "tcp.completeness",
    ]  # fmt: skip
    # no reassembly: a TCP header is where NetSpectra reads it, in the first fragment (ICMP errors quote
    # TCP headers: not packets of the connection)
    cmd = ["tshark", "-2", "-n", "-o", "ip.defragment:FALSE", "-o", "ipv6.defragment:FALSE", "-r", str(path)]
    cmd += ["-Y", "tcp && !icmp && !icmpv6", "-T", "fields", "-E", "separator=\t"]
    for f in fields:
        cmd += ["-e", f]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    conns: dict[str, dict] = {}
    for line in out.splitlines():
        stream, t, s4, s6, sport, d4, d6, dport, flags, comp = line.split("\t")
        src, dst = (s4 or s6).split(",")[0], (d4 or d6).split(",")[0]
        ns = int(Decimal(t) * 1_000_000_000)
        c = conns.get(stream)
        if c is None:
            c = conns[stream] = {
                "src": (src, int(sport)), "dst": (dst, int(dport)), "first": ns,
                "packets": [0, 0], "flags": [0, 0], "syn": [0, 0], "fin": [0, 0], "rst": [0, 0],
            }  # fmt: skip
        d = 0 if (src, int(sport)) == c["src"] else 1
        f = int(flags, 16)
        c["packets"][d] += 1
        c["flags"][d] |= f & 0xFF
        c["syn"][d] += bool(f & 0x02)
        c["fin"][d] += bool(f & 0x01)
        c["rst"][d] += bool(f & 0x04)
        c["completeness"] = int(comp or 0)
    return {(c["src"], c["dst"], c["first"]): c for c in conns.values()}


@pytest.mark.parametrize("path", CAPTURES, ids=lambda p: p.name)
def test_flags_counts_and_states_agree_with_tshark(path: Path, tmp_path: Path) -> None:
    if not path.exists():
        pytest.skip(f"{path} is not here (the shared captures are not)")
    if path.suffix == ".gz":
        plain = tmp_path / path.stem
        with gzip.open(path, "rb") as src, plain.open("wb") as dst:
            shutil.copyfileobj(src, dst)
        path = plain
    # one record per connection, as tshark's streams: no idle or active split (tshark keeps a SYN retried
    # after a RST in the stream, so no TCP end expiry either)
    day = 86_400
    table = netspectra.flows.read(path, idle_timeout=day, active_timeout=day)
    table = table.set_column(
        table.schema.get_field_index("FirstSeen"), "FirstSeen", table["FirstSeen"].cast("int64")
    )
    rows = [r for r in table.to_pylist() if r["Protocol"] == 6]
    # connections of the same endpoints pair up in time order (a capture merged out of order has its
    # late packets accounted at the newest time, as nfstream does: first seen can differ, order not)
    ours: dict[tuple, list] = defaultdict(list)
    for r in sorted(rows, key=lambda r: r["FirstSeen"]):
        ours[((r["SrcIP"], r["SrcPort"]), (r["DstIP"], r["DstPort"]))].append(r)
    theirs = tshark_connections(path)
    matched = 0
    states: dict[str, int] = defaultdict(int)
    for key, c in sorted(theirs.items(), key=lambda kv: kv[0][2]):
        r = ours[key[:2]].pop(0) if ours.get(key[:2]) else None
        assert r is not None, f"tshark's connection {key} is not a record"
        matched += 1
        assert [r["SrcToDstPackets"], r["DstToSrcPackets"]] == c["packets"], key
        assert [r["SrcToDstTCPFlags"], r["DstToSrcTCPFlags"]] == c["flags"], key
        assert [r["SrcToDstSYN"], r["DstToSrcSYN"]] == c["syn"], key
        assert [r["SrcToDstFIN"], r["DstToSrcFIN"]] == c["fin"], key
        assert [r["SrcToDstRST"], r["DstToSrcRST"]] == c["rst"], key
        state = r["ConnState"]
        assert state in CONN_STATES
        need, forbid = STATE_RULES[state]
        comp = c["completeness"]
        assert comp & need == need and not comp & forbid, (key, state, comp)
        if state == "S1":
            assert comp & (ACKD | DATA), (key, state, comp)
        states[state] += 1
    assert matched == len(rows) == len(theirs) > 0


def test_the_oracle_sees_handshakes_resets_and_half_open_connections() -> None:
    """The captures above are worth checking: together they hold every kind of ending."""
    seen: set[str] = set()
    for path in CAPTURES[:4]:
        table = netspectra.flows.read(path, idle_timeout=86_400, active_timeout=86_400)
        seen |= {s for s in table.column("ConnState").to_pylist() if s}
    assert {"S0", "SF", "S1"} <= seen and seen & {"REJ", "RSTO", "RSTR", "RSTOS0", "RSTRH"}
