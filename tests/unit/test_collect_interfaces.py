"""sFlow counter samples kept as interface counters: decoding → the bounded table of the latest counters
per (exporter, ifIndex) → the ``/metrics`` series and the JSON summary, checked against tshark's ``-V``
decode of the same captures (the project's tests/data/collect/sflow.pcap, and a capture of richer
counter samples written here), the bounds (overflow counted), and the order rules (latest wins)."""

from __future__ import annotations

import json
import logging
import socket
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from collect_cases import RECV_NS, batch, decoder, poll, polls
from collect_tshark import needs_tshark, pdml, sflow_interface_counters
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import CollectorRegistry

from netspectra.collect import build as b
from netspectra.collect.capture import datagrams_from_capture
from netspectra.collect.interfaces import InterfaceTable
from netspectra.collect.metrics import INTERFACE_COUNTERS, INTERFACE_GAUGES, CollectorCollector
from netspectra.collect.records import DatagramBatch, InterfaceCounters
from netspectra.collect.source import CollectorSource
from netspectra.config.collect import CollectConfig

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data" / "collect"
sys.path.insert(0, str(ROOT / "tools"))
from make_collect_data import write_pcap  # noqa: E402

#: The values compared with tshark (every counter of the record, and the status bits).
COMPARED = (
    "if_index", "if_type", "if_speed", "if_direction", "in_octets", "in_ucast", "in_mcast", "in_bcast",
    "in_discards", "in_errors", "in_unknown", "out_octets", "out_ucast", "out_mcast", "out_bcast",
    "out_discards", "out_errors", "promiscuous", "admin_up", "oper_up", "received_ns",
)  # fmt: skip


def latest(records: list[dict[str, Any]]) -> dict[tuple[str, int], dict[str, Any]]:
    """tshark's records reduced to the last one of each (exporter, ifIndex): what the table must hold."""
    out: dict[tuple[str, int], dict[str, Any]] = {}
    for r in records:
        out[(r["exporter"], r["if_index"])] = r
    return out


def kept(snapshot: dict[str, list[dict[str, Any]]]) -> dict[tuple[str, int], dict[str, Any]]:
    return {(e, r["if_index"]): {k: r[k] for k in COMPARED} for e, lst in snapshot.items() for r in lst}


def decode_capture(path: Path, **cfg: Any) -> Any:
    dec = decoder(**cfg)
    for dg in datagrams_from_capture(path):
        dec.decode(dg)
    return dec


# -- decoding → the kept table, against tshark ---------------------------------------------------------


def test_the_project_capture_keeps_what_the_reference_decoded() -> None:
    """tests/data/collect/sflow.pcap: one counter record per agent; the table holds them as the
    reference decoder wrote them (sflow.json), with the per-exporter counts of the summary."""
    dec = decode_capture(DATA / "sflow.pcap")
    want = json.loads((DATA / "sflow.json").read_text())["interface_counters"]
    assert len(want) == 2
    got = dec.stats.as_dict()
    for w in want:
        (row,) = got["interfaces"][w["exporter"]]
        assert {k: row[k] for k in w if k != "exporter"} == {k: v for k, v in w.items() if k != "exporter"}
        assert got["exporters"][w["exporter"]]["interfaces"] == 1
        assert got["exporters"][w["exporter"]]["interface_counters"] == 1
    assert got["totals"]["interfaces"] == 2 and got["totals"]["interfaces_over_limit"] == 0
    # the values themselves (as tshark -V shows them in that file)
    (v4,) = got["interfaces"]["192.0.2.99"]
    assert (v4["if_index"], v4["if_speed"], v4["in_octets"], v4["out_errors"]) == (3, 10**10, 1 << 40, 5)
    (v6,) = got["interfaces"]["2001:db8::99"]
    assert (v6["if_index"], v6["in_ucast"], v6["in_packets"], v6["domain"]) == (4, 99, 99, 0)


@needs_tshark
@pytest.mark.parametrize("name", ["sflow"])
def test_the_project_capture_equals_tshark(name: str, tmp_path: Path) -> None:
    path = DATA / f"{name}.pcap"
    want = latest(sflow_interface_counters(pdml([path], tmp_path, "sflow")))
    assert len(want) == 2
    got = kept(decode_capture(path).interfaces.snapshot())
    assert got == {k: {c: v[c] for c in COMPARED} for k, v in want.items()}


@needs_tshark
@pytest.mark.parametrize("one_batch", [True, False])
def test_latest_counters_of_two_polls_equal_tshark(tmp_path: Path, one_batch: bool) -> None:
    """Two polls, four interfaces of two agents: the table holds each interface's second poll, value for
    value as tshark decodes the capture (also when every datagram is its own batch)."""
    path = tmp_path / "polls.pcap"
    payloads = polls()
    stamps = write_pcap(path, payloads, 6343)
    records = sflow_interface_counters(pdml([path], tmp_path, "sflow"))
    assert len(records) == 8
    want = latest(records)
    assert len(want) == 4
    assert want[("192.0.2.50", 1)]["in_octets"] == (5 << 32) + 1002 * 1500  # the second poll's
    assert want[("2001:db8::50", 7)]["oper_up"] is False and want[("192.0.2.50", 2)]["oper_up"] is True
    dec = decoder()
    if one_batch:
        for dg in datagrams_from_capture(path):
            dec.decode(dg)
    else:
        for p, ts in zip(payloads, stamps, strict=True):
            dec.decode(batch([p], recv_ns=ts))
    snap = dec.interfaces.snapshot()
    assert kept(snap) == {k: {c: v[c] for c in COMPARED} for k, v in want.items()}
    r = next(x for x in snap["192.0.2.50"] if x["if_index"] == 1)
    assert r["in_packets"] == r["in_ucast"] + r["in_mcast"] + r["in_bcast"] > 1 << 32  # sums are not cut
    assert r["sample_seq"] == 2
    assert next(x for x in snap["2001:db8::50"])["domain"] == 2
    ex = dec.stats.exporters()
    assert (ex["192.0.2.50"]["interface_counters"], ex["192.0.2.50"]["interfaces"]) == (6, 3)
    assert (ex["2001:db8::50"]["interface_counters"], ex["2001:db8::50"]["interfaces"]) == (2, 1)


def test_an_older_sample_does_not_replace_a_newer_one() -> None:
    """Reordered on the way: the row received last stays; within one batch, the later row of equal time."""
    dec = decoder()
    new = b.sflow([b.counter_sample([poll(2, 1)], sequence=2)], agent="192.0.2.50")
    old = b.sflow([b.counter_sample([poll(1, 1)], sequence=1)], agent="192.0.2.50")
    dec.decode(batch([new], recv_ns=RECV_NS + 10**9))
    dec.decode(batch([old], recv_ns=RECV_NS))
    (r,) = dec.interfaces.snapshot()["192.0.2.50"]
    assert r["sample_seq"] == 2 and r["received_ns"] == RECV_NS + 10**9
    dec.decode(batch([new, old], recv_ns=RECV_NS + 2 * 10**9))  # same time: the later row wins
    (r,) = dec.interfaces.snapshot()["192.0.2.50"]
    assert r["sample_seq"] == 1 and r["received_ns"] == RECV_NS + 2 * 10**9
    assert dec.stats.exporters()["192.0.2.50"]["interface_counters"] == 4


# -- the bounds -------------------------------------------------------------------------------------------


def test_the_table_is_bounded_per_exporter_and_the_overflow_counted(caplog: pytest.LogCaptureFixture) -> None:
    dec = decoder(max_interfaces_per_exporter=2, max_interfaces=3)
    caplog.set_level(logging.WARNING)
    # agent A: interfaces 1, 2, 3 (3 refused); twice each in the batch, so 2 rows refused
    a = b.sflow([b.counter_sample([poll(1, i)]) for i in (1, 2, 3)], agent="192.0.2.50")
    dec.decode(batch([a, a], recv_ns=RECV_NS))
    ex = dec.stats.exporters()["192.0.2.50"]
    assert (ex["interfaces"], ex["interface_counters"], ex["interfaces_over_limit"]) == (2, 6, 2)
    assert sorted(r["if_index"] for r in dec.interfaces.snapshot()["192.0.2.50"]) == [1, 2]
    # the kept interfaces go on being updated when the table is full
    a2 = b.sflow([b.counter_sample([poll(2, i)], sequence=2) for i in (1, 2, 3)], agent="192.0.2.50")
    dec.decode(batch([a2], recv_ns=RECV_NS + 1))
    assert {r["sample_seq"] for r in dec.interfaces.snapshot()["192.0.2.50"]} == {2}
    assert dec.stats.exporters()["192.0.2.50"]["interfaces_over_limit"] == 3
    # agent B: one interface fits the overall bound (3), the next does not
    bb = b.sflow([b.counter_sample([poll(1, i)]) for i in (10, 11)], agent="192.0.2.51")
    dec.decode(batch([bb], recv_ns=RECV_NS + 2))
    exb = dec.stats.exporters()["192.0.2.51"]
    assert (exb["interfaces"], exb["interfaces_over_limit"]) == (1, 1)
    assert len(dec.interfaces) == 3
    d = dec.stats.as_dict()
    assert d["totals"]["interfaces"] == 3 and d["totals"]["interfaces_over_limit"] == 4
    # logged once per exporter, naming the settings
    msgs = [r.getMessage() for r in caplog.records if "interfaces_over_limit" in r.getMessage()]
    assert len(msgs) == 2 and all("collect.max_interfaces_per_exporter" in m for m in msgs)


def test_the_table_alone_keeps_the_last_row_of_each_interface() -> None:
    """InterfaceTable.update on rows (not through the decoder): last row per key, refusals per exporter."""
    c = InterfaceCounters.empty(5)
    c.if_index[:] = [1, 2, 1, 3, 1]
    c.received_ns[:] = [5, 5, 7, 5, 6]
    c.in_octets[:] = [10, 20, 30, 40, 50]
    t = InterfaceTable(max_per_exporter=2)
    refused = t.update(c, np.array([0, 0, 0, 0, 1]), ["a", "b"])
    assert refused == {"a": 1}
    snap = t.snapshot()
    assert [(r["if_index"], r["in_octets"]) for r in snap["a"]] == [(1, 30), (2, 20)]
    assert [(r["if_index"], r["in_octets"]) for r in snap["b"]] == [(1, 50)]
    assert t.counts() == {"a": 2, "b": 1} and len(t) == 3
    assert t.update(InterfaceCounters.empty(0), np.zeros(0, np.int32), ["a", "b"]) == {}
    assert t.count("a") == 2 and t.count("nobody") == 0
    # an older row does not replace a newer one; a row of equal time does
    c2 = InterfaceCounters.empty(2)
    c2.if_index[:] = [1, 2]
    c2.received_ns[:] = [6, 5]
    c2.in_octets[:] = [99, 98]
    assert t.update(c2, np.array([0, 0]), ["a", "b"]) == {}
    assert [(r["if_index"], r["in_octets"]) for r in t.snapshot()["a"]] == [(1, 30), (2, 98)]


def _reference_update(
    table: dict[tuple[int, int], tuple[int, int]],
    per: dict[int, int],
    rows: list[tuple[int, int, int, int]],
    max_per: int,
    max_total: int,
) -> dict[int, int]:
    """Plain Python: rows (exporter, ifIndex, received_ns, value) of one batch; the last row of each key by
    (time, position) replaces the kept one unless older; new keys admitted in (exporter, ifIndex) order
    while there is room; returns the refused rows per exporter."""
    last: dict[tuple[int, int], tuple[int, int, int]] = {}
    count: dict[tuple[int, int], int] = {}
    for i, (e, ifx, t, v) in enumerate(rows):
        count[(e, ifx)] = count.get((e, ifx), 0) + 1
        if (e, ifx) not in last or (t, i) > last[(e, ifx)][:2]:
            last[(e, ifx)] = (t, i, v)
    refused: dict[int, int] = {}
    for k in sorted(last):
        t, _, v = last[k]
        if k not in table:
            if per.get(k[0], 0) >= max_per or len(table) >= max_total:
                refused[k[0]] = refused.get(k[0], 0) + count[k]
                continue
            per[k[0]] = per.get(k[0], 0) + 1
        elif t < table[k][0]:
            continue
        table[k] = (t, v)
    return refused


def test_the_table_equals_a_plain_python_reference_on_random_batches() -> None:
    rng = np.random.default_rng(15)
    names = [f"192.0.2.{i}" for i in range(5)]
    t = InterfaceTable(max_per_exporter=6, max_total=15)
    ref: dict[tuple[int, int], tuple[int, int]] = {}
    per: dict[int, int] = {}
    for _ in range(200):
        n = int(rng.integers(0, 40))
        c = InterfaceCounters.empty(n)
        eids = rng.integers(0, 5, n)
        c.if_index[:] = rng.integers(0, 12, n)
        c.received_ns[:] = rng.integers(0, 50, n)  # ties and reordering on purpose
        c.in_octets[:] = rng.integers(0, 2**63, n, dtype=np.uint64)
        rows = list(
            zip(eids.tolist(), c.if_index.tolist(), c.received_ns.tolist(), c.in_octets.tolist(), strict=True)
        )
        want = {names[e]: k for e, k in _reference_update(ref, per, rows, 6, 15).items()}
        assert t.update(c, eids, names) == want
        got = {
            (names.index(e), r["if_index"]): (r["received_ns"], r["in_octets"])
            for e, lst in t.snapshot().items()
            for r in lst
        }
        assert got == ref
    assert len(t) == len(ref) == 15  # the overall bound was reached


def test_the_configuration_has_the_bounds() -> None:
    cfg = CollectConfig()
    assert (cfg.max_interfaces_per_exporter, cfg.max_interfaces) == (4096, 65_536)
    with pytest.raises(ValueError):
        CollectConfig(max_interfaces_per_exporter=0)


# -- the metrics and the JSON of a running collector ------------------------------------------------------


def _metrics(src: CollectorSource) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    reg = CollectorRegistry()
    reg.register(CollectorCollector(lambda: src))
    from prometheus_client import generate_latest

    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for fam in text_string_to_metric_families(generate_latest(reg).decode()):
        for s in fam.samples:
            out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return out


def _payloads(path: Path) -> list[bytes]:
    return [bytes(dg.payload(i)) for dg in datagrams_from_capture(path) for i in range(len(dg))]


def _collect(payloads: list[bytes], counter_records: int) -> tuple[dict, dict[str, Any]]:
    """Send ``payloads`` over loopback to a real CollectorSource; once it decoded ``counter_records``
    counter records: its /metrics samples and its decoder's summary."""
    with CollectorSource(listen=["udp://127.0.0.1:0"]) as src:
        port = int(src.addresses[0].rsplit(":", 1)[1])
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for p in payloads:
                s.sendto(p, ("127.0.0.1", port))
        deadline = time.monotonic() + 30
        while src.stats.decoder.as_dict()["totals"]["interface_counters"] < counter_records:
            assert time.monotonic() < deadline, src.stats.as_dict()
            time.sleep(0.05)
        return _metrics(src), src.stats.as_dict()["decoder"]


def test_metrics_and_json_of_a_collector_fed_the_capture_over_loopback() -> None:
    """The datagrams of tests/data/collect/sflow.pcap and of two polls sent to a real CollectorSource:
    every interface series carries the table's values, with labels exporter and if_index only."""
    m, d = _collect(_payloads(DATA / "sflow.pcap") + polls(), 10)
    snap = d["interfaces"]
    assert sorted(snap) == ["192.0.2.50", "192.0.2.99", "2001:db8::50", "2001:db8::99"]
    assert {e: r["interfaces"] for e, r in d["exporters"].items()} == {
        "192.0.2.50": 3, "192.0.2.99": 1, "2001:db8::50": 1, "2001:db8::99": 1,
    }  # fmt: skip
    assert d["totals"]["interface_counters"] == 10
    series = 0
    for e, lst in snap.items():
        for r in lst:
            key = (("exporter", e), ("if_index", str(r["if_index"])))
            for name, (field, _) in INTERFACE_COUNTERS.items():
                assert m[f"netspectra_collect_interface_{name}_total"][key] == float(r[field]), (name, e)
                series += 1
            for name, (field, _) in INTERFACE_GAUGES.items():
                want = r[field] / 1e9 if field == "received_ns" else float(r[field])
                assert m[f"netspectra_collect_interface_{name}"][key] == pytest.approx(want), (name, e)
    assert series == 6 * len(INTERFACE_COUNTERS)
    # spot values, as tshark reads them in the files
    k99 = (("exporter", "192.0.2.99"), ("if_index", "3"))
    assert m["netspectra_collect_interface_in_octets_total"][k99] == float(1 << 40)
    assert m["netspectra_collect_interface_out_errors_total"][k99] == 5.0
    assert m["netspectra_collect_interface_speed_bits_per_second"][k99] == 1e10
    k50 = (("exporter", "192.0.2.50"), ("if_index", "3"))
    assert m["netspectra_collect_interface_oper_up"][k50] == 0.0  # down in the second poll
    assert m["netspectra_collect_interface_admin_up"][k50] == 1.0
    assert m["netspectra_collect_interface_in_unicast_packets_total"][k50] == float(4_294_000_000 + 3002)
    assert m["netspectra_collect_exporter_interfaces"][(("exporter", "192.0.2.50"),)] == 3.0
    assert m["netspectra_collect_exporter_interface_counters_total"][(("exporter", "192.0.2.50"),)] == 6.0
    assert m["netspectra_collect_exporter_interfaces_over_limit_total"][(("exporter", "192.0.2.50"),)] == 0.0
    # a bounded label set: every interface series has exactly these labels
    for name in m:
        if name.startswith("netspectra_collect_interface_"):
            assert all(dict(k).keys() == {"exporter", "if_index"} for k in m[name]), name
    json.dumps(d)  # the summary is JSON as it is


def test_no_interface_series_without_counter_samples() -> None:
    """A collector that received no counter sample exports the families without a sample."""
    with CollectorSource(listen=["udp://127.0.0.1:0"]) as src:
        dec_batch = DatagramBatch.from_payloads([], "192.0.2.1", RECV_NS)
        src.decoder.decode(dec_batch)
        m = _metrics(src)
    assert not any(k.startswith("netspectra_collect_interface_") for k in m)


# -- a real exporter: Open vSwitch ------------------------------------------------------------------------

#: OVS's own interface statistics (ovsdb) -> the generic counter it exports them as.
OVS_FIELDS = {
    "in_octets": "rx_bytes", "in_ucast": "rx_packets", "in_mcast": "rx_multicast_packets",
    "in_discards": "rx_dropped", "in_errors": "rx_errors", "out_octets": "tx_bytes",
    "out_ucast": "tx_packets", "out_discards": "tx_dropped", "out_errors": "tx_errors",
}  # fmt: skip


def test_open_vswitch_counter_samples_equal_its_own_interface_statistics() -> None:
    """tests/data/collect/ovs-sflow-counters.pcap: Open vSwitch's sFlow agent polling a bridge's three
    ports every second (counter samples of generic, Ethernet and OVS-specific records; flow samples
    beside them). The last counters of each port equal what OVS itself reported for the port once the
    bridge was quiet (ovs-sflow-counters.json, read from ovsdb); the counters OVS does not support (sent
    as all ones) are marked, left out of the packet sums, and have no series."""
    truth = json.loads((DATA / "ovs-sflow-counters.json").read_text())
    dec = decode_capture(DATA / "ovs-sflow-counters.pcap")
    d = dec.stats.as_dict()
    assert d["totals"]["decode_errors"] == 0 and d["totals"]["records"] > 0  # flow samples decoded too
    snap = {r["if_index"]: r for r in d["interfaces"][truth["agent"]]}
    assert sorted(snap) == sorted(x["ifindex"] for x in truth["interfaces"])
    for x in truth["interfaces"]:
        r, st = snap[x["ifindex"]], x["statistics"]
        assert {f: r[f] for f in OVS_FIELDS} == {f: st[o] for f, o in OVS_FIELDS.items()}, x["interface"]
        assert (r["admin_up"], r["oper_up"]) == (x["admin_state"] == "up", x["link_state"] == "up")
        assert r["in_packets"] == st["rx_packets"] + st["rx_multicast_packets"]
        assert r["out_packets"] == st["tx_packets"]
        assert set(r["unsupported"]) == {"in_bcast", "out_mcast", "out_bcast", "in_unknown"}
        assert r["in_bcast"] == 2**32 - 1  # kept as sent
    assert d["exporters"][truth["agent"]]["interfaces"] == 3
    busy = next(x for x in truth["interfaces"] if x["statistics"]["rx_packets"] > 0)
    assert busy["statistics"]["rx_bytes"] > 10_000  # real traffic went through the bridge
    m, d2 = _collect(_payloads(DATA / "ovs-sflow-counters.pcap"), d["totals"]["interface_counters"])

    def no_time(snap: dict[str, list[dict[str, Any]]]) -> dict:  # the receive time is the collector's
        return {
            e: [{k: v for k, v in r.items() if k != "received_ns"} for r in lst] for e, lst in snap.items()
        }

    assert no_time(d2["interfaces"]) == no_time(d["interfaces"])
    key = (("exporter", truth["agent"]), ("if_index", str(busy["ifindex"])))
    assert m["netspectra_collect_interface_in_octets_total"][key] == busy["statistics"]["rx_bytes"]
    assert (
        m["netspectra_collect_interface_out_unicast_packets_total"][key] == busy["statistics"]["tx_packets"]
    )
    assert key not in m.get("netspectra_collect_interface_in_broadcast_packets_total", {})
    assert key not in m.get("netspectra_collect_interface_in_unknown_protos_total", {})
    assert m["netspectra_collect_interface_speed_bits_per_second"][key] == 1e10
