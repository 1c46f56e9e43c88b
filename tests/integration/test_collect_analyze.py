"""``netspectra analyze --flow-export``: captures of exports through the collector's path into the tasks.

The reference is the same capture through the library (``datagrams_from_capture`` → ``FlowDecoder`` →
``flow_batch``) and the same tasks; the command must give the same rows, counters and exporters.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from netspectra.batch import PacketBatch
from netspectra.collect.batches import flow_batch
from netspectra.collect.capture import datagrams_from_capture
from netspectra.collect.decoder import FlowDecoder
from netspectra.tasks.exact import ExactTask

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data" / "collect"
FILES = [DATA / "netflow9.pcap", DATA / "sflow.pcap", DATA / "ipfix.pcap"]
FIVE = ("SrcIP", "DstIP", "SrcPort", "DstPort", "Protocol")


def _analyze(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    cmd = [sys.executable, "-m", "netspectra", "analyze", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)


def reference() -> tuple[PacketBatch, dict]:
    dec = FlowDecoder()
    batches = [flow_batch(dec.decode(dg).records) for f in FILES for dg in datagrams_from_capture(f)]
    dec.close()
    return PacketBatch.concat(batches), dec.stats.as_dict()


def test_flow_export_json_matches_the_library_path() -> None:
    r = _analyze("--flow-export", *map(str, FILES), "--json", "--top", "5")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    rows, stats = reference()
    fx = doc["flow_export"]
    assert fx["datagrams"] == stats["totals"]["datagrams"] == fx["frames"]
    assert fx["totals"] == stats["totals"]
    assert fx["rows"]["rows"] == len(rows)
    assert fx["rows"]["packets"] == int(rows.packet_counts().sum())
    assert fx["rows"]["bytes"] == int(rows.byte_counts().sum())
    assert set(fx["exporters"]) == set(stats["exporters"])
    # the exporters task, added on its own, saw every row of every exporter
    (task,) = doc["exporter_tasks"]
    got = {e["exporter"]: e for e in task["exporters"]}
    assert sum(e["records"] for e in got.values()) == len(rows)
    assert sum(e["packets"] for e in got.values()) == int(rows.packet_counts().sum())
    # the exact task's flows: the rows' distinct five-tuples
    t = ExactTask("ref", FIVE)
    t.update(rows)
    (five,) = [x for x in doc["tasks"] if x["name"] == "per_five_tuple"]
    assert five["flows"] == len(t.snapshot())
    assert five["packets"] == int(rows.packet_counts().sum())
    assert five["bytes"] == int(rows.byte_counts().sum())


def test_flow_export_report_and_filters(tmp_path: Path) -> None:
    r = _analyze("--flow-export", str(DATA / "netflow9.pcap"), "--top", "3")
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "Flow-export summary" in out and "Exporters" in out and "192.0.2.7" in out
    assert "Capture summary" not in out
    # a port nothing was sent to: every frame skipped, counted
    r = _analyze("--flow-export", str(DATA / "netflow9.pcap"), "--export-port", "1", "--json")
    assert r.returncode == 0, r.stderr
    fx = json.loads(r.stdout)["flow_export"]
    assert fx["datagrams"] == 0 and fx["frames_skipped"] == {"other_port": fx["frames"]}
    r = _analyze(str(DATA / "netflow9.pcap"), "--export-port", "2055")
    assert r.returncode == 2 and "--flow-export" in r.stderr
    junk = tmp_path / "junk.pcap"
    junk.write_bytes(b"not a capture at all" * 10)
    r = _analyze("--flow-export", str(junk))
    assert r.returncode == 1
    assert "junk.pcap" in " ".join(r.stderr.split())


def test_rows_keep_scaled_and_exported_counts() -> None:
    rows, _ = reference()
    assert rows.sampling_rate is not None and rows.packets is not None
    rate = np.maximum(rows.sampling_rate, 1).astype(np.uint64)
    assert (rows.packets % rate == 0).all()  # the exported values are kept exactly


def test_flow_export_keyed_on_exporter_and_interfaces_matches_the_library_path(tmp_path: Path) -> None:
    """Real exports (NetFlow v9, sFlow, IPFIX) keyed on ExporterAddress, InIf, OutIf (and VlanID): the
    command's flows are the library path's, every row accounted (none under an unknown value for want
    of a column); the same configuration on a capture of packets is refused, naming the key."""
    from netspectra.key_columns import ip_text

    fields = ["ExporterAddress", "InIf", "OutIf", "VlanID"]
    conf = tmp_path / "c.yaml"
    task_line = f"      - {{name: links, key_fields: {fields}}}\n"
    conf.write_text(f"aggregator:\n  types: [exact]\n  exact:\n    tasks:\n{task_line}")
    r = _analyze("--flow-export", *map(str, FILES), "-c", str(conf), "--json", "--top", "1000")
    assert r.returncode == 0, r.stderr
    (task,) = [x for x in json.loads(r.stdout)["tasks"] if x["name"] == "links"]
    # a task keyed on VlanID asks for the decoder's columns: sFlow's sampled headers give their VLAN
    dec = FlowDecoder()
    rows = PacketBatch.concat(
        [flow_batch(dec.decode(dg).records, extras=True) for f in FILES for dg in datagrams_from_capture(f)]
    )
    dec.close()
    ref = ExactTask("ref", fields)
    ref.update(rows)
    snap = ref.snapshot()
    assert len(snap) > 1 and task["flows"] == len(snap) and task["unknown_key_rows"] == {}
    assert (task["packets"], task["bytes"]) == (
        int(rows.packet_counts().sum()),
        int(rows.byte_counts().sum()),
    )
    want = {
        (ip_text(bytes(e)), int(i), int(o), int(v)): (int(p), int(b))
        for e, i, o, v, p, b in zip(
            snap.extra["ExporterAddress"], snap.extra["InIf"], snap.extra["OutIf"], snap.extra["VlanID"],
            snap.packets, snap.bytes, strict=True,
        )
    }  # fmt: skip
    got = {
        (x["ExporterAddress"], x["InIf"], x["OutIf"], x["VlanID"]): (x["PacketCount"], x["ByteCount"])
        for x in task["top_by_bytes"]
    }
    assert got == want
    assert {e for e, *_ in want} >= {"192.0.2.7"}  # the NetFlow v9 exporter of netflow9.pcap
    assert len({i for _, i, _, _ in want}) > 1  # several input interfaces
    assert {v for *_, v in want} > {0}  # VLANs of sampled headers
    r = _analyze(str(ROOT / "tests" / "data" / "captures" / "mdns.pcap"), "-c", str(conf))
    assert r.returncode == 2
    assert "links" in r.stderr and "cannot supply ExporterAddress" in " ".join(r.stderr.split())


def test_flow_export_reports_the_interfaces_last_counters() -> None:
    """sflow.pcap holds a counter sample per agent: ``--json`` has each interface's last counters (as the
    library's decoder keeps them) and the text report an interfaces table with the values tshark -V shows
    (192.0.2.99 ifIndex 3: 10 Gbit/s, 1 TiB in, 5 output errors; 2001:db8::99 ifIndex 4: 99 packets in)."""
    r = _analyze("--flow-export", *map(str, FILES), "--json", "--top", "1")
    assert r.returncode == 0, r.stderr
    fx = json.loads(r.stdout)["flow_export"]
    _, stats = reference()
    assert fx["interfaces"] == stats["interfaces"]
    assert {e: [x["if_index"] for x in v] for e, v in fx["interfaces"].items()} == {
        "192.0.2.99": [3],
        "2001:db8::99": [4],
    }
    (v4,) = fx["interfaces"]["192.0.2.99"]
    assert (v4["if_speed"], v4["in_octets"], v4["out_errors"], v4["oper_up"]) == (10**10, 1 << 40, 5, False)
    assert fx["exporters"]["192.0.2.99"]["interfaces"] == 1 and fx["totals"]["interface_counters"] == 2
    r = _analyze("--flow-export", str(DATA / "sflow.pcap"), "--top", "1")
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "Interfaces (last sFlow counters" in out
    lines = [ln for ln in out.splitlines() if "192.0.2.99" in ln and "Gbit/s" in ln]
    assert len(lines) == 1 and "1,099,511,627,776" in lines[0] and "10 Gbit/s" in lines[0]
    assert any("2001:db8::99" in ln and " 99 " in ln for ln in out.splitlines())
    assert "sFlow counter records: decoded / interfaces kept" in out
    # a capture without counter samples: no interfaces table
    r = _analyze("--flow-export", str(DATA / "netflow9.pcap"), "--top", "1")
    assert r.returncode == 0 and "Interfaces (last sFlow counters" not in r.stdout
