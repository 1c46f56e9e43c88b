"""FlowRecords → PacketBatch rows (netspectra.collect.batches): scaling, keys from headers, counts."""

from __future__ import annotations

import ipaddress

import numpy as np
import pytest

from netspectra.batch import PacketBatch
from netspectra.collect import build
from netspectra.collect.batches import EXTRA_COLUMNS, FlowBatchStats, flow_batch
from netspectra.collect.decoder import FlowDecoder
from netspectra.collect.records import DatagramBatch, FlowRecords
from netspectra.config.collect import CollectConfig

T0 = 1_700_000_000


def _decode(
    payloads: list[bytes], sender: str = "192.0.2.7", **cfg: object
) -> tuple[FlowRecords, FlowDecoder]:
    dec = FlowDecoder(CollectConfig(**cfg))
    res = dec.decode(DatagramBatch.from_payloads(payloads, sender=sender, received_ns=T0 * 10**9))
    return res.records, dec


def _ip(row: np.ndarray) -> str:
    a = ipaddress.IPv6Address(bytes(row))
    return str(a.ipv4_mapped or a)


def reference_rows(records: FlowRecords) -> list[dict[str, int]]:
    """Plain Python, one record at a time: what flow_batch must give (after keys_from_headers)."""
    out = []
    for i in range(len(records)):
        if records.ip_version[i] == 0:
            continue
        rate = int(records.sampling_rate[i])
        m = max(rate, 1)
        p, b = int(records.packets[i]), int(records.bytes[i])
        out.append(
            {
                "ts_ns": int(records.flow_end_ns[i]),
                "packets": min(p * m, 2**64 - 1),
                "octets": min(b * m, 2**64 - 1),
                "length": min(b // max(p, 1), 2**32 - 1),
                "sampling_rate": rate,
                "flow_start_ns": int(records.flow_start_ns[i]),
                "src_port": int(records.src_port[i]),
                "dst_port": int(records.dst_port[i]),
                "protocol": int(records.protocol[i]),
                "in_if": int(records.in_if[i]),
                "out_if": int(records.out_if[i]),
            }
        )
    return out


def _rows(batch: PacketBatch) -> list[dict[str, int]]:
    names = ("ts_ns", "packets", "octets", "length", "sampling_rate", "flow_start_ns", "src_port", "dst_port")
    names += ("protocol", "in_if", "out_if")
    return [{c: int(getattr(batch, c)[i]) for c in names} for i in range(len(batch))]


def test_netflow5_sampled_rows_are_scaled_and_keep_the_exported_values() -> None:
    recs = [
        {"src": "10.0.0.1", "dst": "10.0.0.2", "sport": 1234, "dport": 80, "proto": 6, "packets": 10,
         "bytes": 15000, "input": 3, "output": 4, "first": 90_000, "last": 99_000},
        {"src": "10.0.0.3", "dst": "10.0.0.4", "sport": 53, "dport": 5353, "proto": 17, "packets": 3,
         "bytes": 7, "first": 95_000, "last": 95_000},
    ]  # fmt: skip
    records, _ = _decode([build.netflow5(recs, sampling=(1 << 14) | 100, unix_s=T0)])
    assert records.sampling_rate.tolist() == [100, 100]
    stats = FlowBatchStats()
    batch = flow_batch(records, stats=stats)
    batch.validate()
    assert set(batch.present()) == set(PacketBatch.EXPORT_COLUMNS)
    assert batch.packets.tolist() == [1000, 300]
    assert batch.octets.tolist() == [1_500_000, 700]
    assert batch.length.tolist() == [1500, 2]
    assert batch.sampling_rate.tolist() == [100, 100]
    # the exported values are kept exactly: packets // rate
    assert (batch.packets // batch.sampling_rate).tolist() == [10, 3]
    assert [_ip(r) for r in batch.src_ip] == ["10.0.0.1", "10.0.0.3"]
    assert [_ip(r) for r in batch.exporter] == ["192.0.2.7", "192.0.2.7"]
    assert batch.in_if.tolist() == [3, 0] and batch.out_if.tolist() == [4, 0]
    # the v5 times: last = export - (uptime - last) ms
    assert batch.ts_ns[0] == (T0 * 1000 - 1_000) * 10**6
    assert batch.flow_start_ns[0] == (T0 * 1000 - 10_000) * 10**6
    assert _rows(batch) == reference_rows(records)
    assert stats.as_dict() == {
        "records": 2, "rows": 2, "packets": 1300, "bytes": 1_500_700, "not_keyed": {},
        "rate_unknown": 0, "counts_saturated": 0,
    }  # fmt: skip
    assert int(batch.packet_counts().sum()) == 1300 and int(batch.byte_counts().sum()) == 1_500_700


def test_unknown_rate_is_multiplied_by_one_and_counted_never_silently() -> None:
    recs = [{"src": "10.0.0.1", "dst": "10.0.0.2", "proto": 1, "packets": 4, "bytes": 400}]
    records, dec = _decode([build.netflow5(recs, sampling=0, unix_s=T0)], default_sampling_rate=0)
    stats = FlowBatchStats()
    batch = flow_batch(records, stats=stats)
    assert batch.sampling_rate.tolist() == [0]
    assert batch.packets.tolist() == [4] and batch.octets.tolist() == [400]
    assert stats.rate_unknown.value == 1
    assert dec.stats.exporters()["192.0.2.7"]["records_without_sampling_rate"] == 1


def test_sflow_rows_are_keyed_by_the_sampled_header_and_non_ip_counted() -> None:
    frame = build.ethernet_ipv4_tcp("10.1.1.1", "10.2.2.2", 40000, 443, payload=1000, vlans=(12,))
    arp = b"\xff" * 6 + b"\x02" * 6 + b"\x08\x06" + b"\x00" * 28
    samples = [
        build.flow_sample([build.raw_header_record(frame, 1058)], rate=512, input=7, output=9),
        build.flow_sample([build.raw_header_record(arp, 64)], rate=512),
        build.flow_sample([build.ipv4_record("10.3.3.3", "10.4.4.4", length=100, proto=17, sport=1,
                                             dport=2)], rate=256),
    ]  # fmt: skip
    records, _ = _decode([build.sflow(samples, agent="198.51.100.9")])
    stats = FlowBatchStats()
    batch = flow_batch(records, extras=True, stats=stats)
    batch.validate()
    assert set(batch.present()) == set(PacketBatch.EXPORT_COLUMNS) | set(EXTRA_COLUMNS)
    assert len(batch) == 2
    assert [_ip(r) for r in batch.src_ip] == ["10.1.1.1", "10.3.3.3"]
    assert batch.dst_port.tolist() == [443, 2] and batch.protocol.tolist() == [6, 17]
    # 1058-byte frame less the 4-byte FCS stripped: 1054 wire bytes, 512 times
    assert batch.packets.tolist() == [512, 256]
    assert batch.octets.tolist() == [1054 * 512, 100 * 256]
    assert batch.length.tolist() == [1054, 100]
    assert batch.ip_length.tolist() == [1040, 100]  # the header's IPv4 total length; the record's length
    assert batch.tcp_flags.tolist() == [0x10, 0]  # ACK, read from the header
    assert batch.vlan_id.tolist() == [12, 0]
    assert [_ip(r) for r in batch.exporter] == ["198.51.100.9"] * 2
    assert batch.in_if.tolist() == [7, 0] and batch.out_if.tolist() == [9, 0]
    assert stats.not_keyed.as_dict() == {"non_ip": 1}
    assert stats.rows.value == 2 and stats.records.value == 3


def test_icmp_type_code_and_saturation() -> None:
    recs = [
        {"src": "10.0.0.1", "dst": "10.0.0.2", "proto": 1, "dport": (3 << 8) | 1, "packets": 2**30,
         "bytes": 2**31},
    ]  # fmt: skip
    records, _ = _decode([build.netflow5(recs, sampling=(1 << 14) | 0x3FFF, unix_s=T0)])
    # a count near 2^64 multiplied by a rate cannot be held: it saturates, counted
    records.packets[0] = 2**63
    stats = FlowBatchStats()
    batch = flow_batch(records, extras=True, stats=stats)
    assert batch.icmp_type_code.tolist() == [(3 << 8) | 1]
    assert batch.dst_port.tolist() == [0]
    assert batch.packets.tolist() == [2**64 - 1]
    assert batch.octets.tolist() == [2**31 * 0x3FFF]
    assert stats.counts_saturated.value == 1
    assert _rows(batch) == reference_rows(records)


@pytest.mark.parametrize("extras", [False, True])
def test_empty_and_concat_keep_the_same_columns(extras: bool) -> None:
    empty = flow_batch(FlowRecords.empty(0), extras=extras)
    recs = [{"src": "10.0.0.1", "dst": "10.0.0.2", "proto": 6, "packets": 1, "bytes": 60}]
    records, _ = _decode([build.netflow5(recs, unix_s=T0)])
    one = flow_batch(records, extras=extras)
    both = PacketBatch.concat([empty, one])
    both.validate()
    assert len(both) == 1 and both.present() == one.present()


def test_synthetic_ipfix_matches_the_reference() -> None:
    dgs = build.synthetic_ipfix(3000, seed=3)
    records, _ = _decode(dgs)
    batch = flow_batch(records)
    batch.validate()
    assert len(batch) == len(records) == 3000
    assert _rows(batch) == reference_rows(records)
