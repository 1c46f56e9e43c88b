"""Export datagrams for the collector's tests: every protocol, field kind and corner case, built here.

Each case is a list of datagram payloads sent by one exporter, in order (templates before the data
that needs them). Shared by the kernel-vs-reference tests, the decoder tests and the fuzz seeds.
"""

from __future__ import annotations

from typing import Any

from netspectra.collect import build as b
from netspectra.collect.decoder import FlowDecoder
from netspectra.collect.records import DatagramBatch
from netspectra.collect.reference import ReferenceDecoder
from netspectra.config.collect import CollectConfig

SENDER = "192.0.2.7"
RECV_NS = 1_700_000_123_000_000_000

V4_FIELDS = [
    (8, 4),
    (12, 4),
    (7, 2),
    (11, 2),
    (4, 1),
    (6, 1),
    (1, 4),
    (2, 4),
    (10, 2),
    (14, 2),
    (22, 4),
    (21, 4),
]
V6_FIELDS = [
    (27, 16),
    (28, 16),
    (7, 2),
    (11, 2),
    (4, 1),
    (1, 8),
    (2, 8),
    (10, 4),
    (14, 4),
    (152, 8),
    (153, 8),
]


def v4_values(i: int) -> dict[int, object]:
    return {
        8: f"10.0.{i // 256}.{i % 256}",
        12: "198.51.100.9",
        7: 1000 + i,
        11: 443,
        4: 6,
        6: 0x18,
        1: 1500 * (i + 1),
        2: i + 1,
        10: 3,
        14: 4,
        22: 99_000 - i,
        21: 99_900,
    }


def netflow5_case() -> list[bytes]:
    recs = [
        {
            "src": "10.1.1.1",
            "dst": "10.2.2.2",
            "sport": 1234,
            "dport": 80,
            "proto": 6,
            "packets": 10,
            "bytes": 5000,
            "input": 1,
            "output": 2,
            "first": 90_000,
            "last": 99_000,
            "tcp_flags": 0x1B,
        },
        {
            "src": "10.1.1.3",
            "dst": "10.2.2.4",
            "sport": 0,
            "dport": 0x0800,
            "proto": 1,
            "packets": 1,
            "bytes": 84,
        },
        {
            "src": "10.1.1.5",
            "dst": "10.2.2.6",
            "sport": 5000,
            "dport": 53,
            "proto": 17,
            "packets": 2,
            "bytes": 120,
            "first": 4_294_967_000,
            "last": 100,
        },  # uptime wrapped between first and the export
    ]
    return [
        b.netflow5(recs, uptime_ms=100_000, sequence=0, sampling=(1 << 14) | 64, engine_type=1, engine_id=2),
        b.netflow5(recs[:1], uptime_ms=101_000, sequence=3),
        b.netflow5(recs[:2], uptime_ms=102_000, sequence=10),  # a gap of 6 records
    ]


def netflow9_case() -> list[bytes]:
    tpl = b.v9_template_set([(256, V4_FIELDS), (257, V6_FIELDS)])
    opt_tpl = b.v9_options_template_set(300, [(1, 4)], [(48, 1), (34, 4)])  # system scope; sampler, interval
    opt = b.data_set(
        300,
        [
            b.data_record([(1, 4), (48, 1), (34, 4)], {1: 0, 48: 0, 34: 100}, False),
            b.data_record([(1, 4), (48, 1), (34, 4)], {1: 0, 48: 7, 34: 2000}, False),
        ],
    )
    samp_tpl = b.v9_template_set([(258, [*V4_FIELDS, (48, 1)])])
    v6 = {
        27: "2001:db8::1",
        28: "2001:db8::2",
        7: 5353,
        11: 5353,
        4: 17,
        1: 10**10,
        2: 10**6,
        10: 7,
        14: 8,
        152: 1_700_000_000_123,
        153: 1_700_000_001_456,
    }
    d4 = b.data_set(256, [b.data_record(V4_FIELDS, v4_values(i), False) for i in range(5)])
    d6 = b.data_set(257, [b.data_record(V6_FIELDS, v6, False)])
    ds = b.data_set(
        258,
        [
            b.data_record([*V4_FIELDS, (48, 1)], {**v4_values(9), 48: 7}, False),
            b.data_record([*V4_FIELDS, (48, 1)], {**v4_values(8), 48: 9}, False),
        ],
    )
    return [
        b.netflow9([tpl, opt_tpl], sequence=0, source_id=5),
        b.netflow9([opt, d4, d6], sequence=1, source_id=5),
        b.netflow9([samp_tpl, ds], sequence=2, source_id=5),
        b.netflow9([d4], sequence=5, source_id=5, uptime_ms=200_000),  # two datagrams lost
    ]


def ipfix_case() -> list[bytes]:
    varlen = [(8, 4), (12, 4), (4, 1), (2, 4), (1, 4), (82, 65535), (7, 2), (11, 2), (315, 65535), (312, 2)]
    enterprise = [(8, 4), (12, 4), (1, 4, 9), (2, 65535, 2636), (4, 1), (2, 4), (1, 4), (32, 2)]
    biflow = [
        (8, 4),
        (12, 4),
        (7, 2),
        (11, 2),
        (4, 1),
        (1, 4),
        (2, 4),
        (6, 1),
        (1, 4, 29305),
        (2, 4, 29305),
        (6, 1, 29305),
        (10, 4),
        (14, 4),
    ]
    times = [(8, 4), (12, 4), (4, 1), (2, 4), (1, 4), (22, 4), (21, 4), (154, 8), (155, 8), (158, 4), (34, 4)]
    opt_tpl = b.ipfix_options_template_set(400, [(143, 4)], [(160, 8), (305, 4), (306, 4)])
    opt = b.data_set(
        400,
        [
            b.data_record(
                [(143, 4), (160, 8), (305, 4), (306, 4)], {143: 1, 160: 1_699_999_000_000, 305: 1, 306: 99}
            )
        ],
        pad_to=1,
    )
    tset = b.ipfix_template_set([(256, varlen), (257, enterprise), (258, biflow), (259, times)])
    frame = b.ethernet_ipv4_tcp("203.0.113.1", "203.0.113.2", 40000, 22, payload=100)
    d_var = b.data_set(
        256,
        [
            b.data_record(
                varlen,
                {
                    8: "10.9.9.1",
                    12: "10.9.9.2",
                    4: 6,
                    2: 3,
                    1: 300,
                    82: b"eth0",
                    7: 1,
                    11: 2,
                    315: frame,
                    312: 154,
                },
            ),
            b.data_record(
                varlen, {8: "10.9.9.3", 12: "10.9.9.4", 4: 17, 2: 1, 1: 60, 82: b"x" * 300, 315: b""}
            ),
        ],
        pad_to=1,
    )
    d_ent = b.data_set(
        257,
        [
            b.data_record(
                enterprise,
                {8: "1.1.1.1", 12: "2.2.2.2", (9, 1): 77, (2636, 2): b"abc", 4: 1, 2: 4, 1: 336, 32: 0x0800},
            )
        ],
        pad_to=1,
    )
    d_bi = b.data_set(
        258,
        [
            b.data_record(
                biflow,
                {
                    8: "10.0.0.1",
                    12: "10.0.0.2",
                    7: 1470,
                    11: 25,
                    4: 6,
                    1: 21673,
                    2: 28,
                    6: 0x1B,
                    (29305, 1): 1546,
                    (29305, 2): 25,
                    (29305, 6): 0x12,
                    10: 10,
                    14: 20,
                },
            ),
            b.data_record(
                biflow, {8: "10.0.0.3", 12: "10.0.0.4", 7: 138, 11: 138, 4: 17, 1: 229, 2: 1, 10: 10}
            ),
        ],
        pad_to=1,
    )
    d_t = b.data_set(
        259,
        [
            b.data_record(
                times,
                {
                    8: "10.5.5.5",
                    12: "10.6.6.6",
                    4: 6,
                    2: 1,
                    1: 40,
                    22: 1000,
                    21: 2000,
                    154: (3_900_000_000 << 32) | (1 << 31),
                    155: (3_900_000_001 << 32),
                    158: 5_000_000,
                    34: 512,
                },
            )
        ],
        pad_to=1,
    )
    return [
        b.ipfix([opt_tpl, tset], sequence=0, domain=3),
        b.ipfix([opt, d_var, d_ent, d_bi], sequence=0, domain=3),
        b.ipfix([d_t], sequence=7, domain=3),
        b.ipfix([d_t], sequence=8, domain=3),
        b.ipfix([b.ipfix_withdrawal(258), d_bi], sequence=9, domain=3),  # withdrawn: data dropped
        b.ipfix([b.ipfix_withdrawal(2)], sequence=9, domain=3),  # every template withdrawn
        b.ipfix([d_var], sequence=9, domain=3),
    ]


def sflow_case() -> list[bytes]:
    f1 = b.ethernet_ipv4_tcp("192.0.2.10", "198.51.100.20", 33000, 443, payload=1400)
    f2 = b.ethernet_ipv4_tcp("192.0.2.11", "198.51.100.21", 33001, 80, payload=0, vlans=[100, 200])
    s1 = b.flow_sample([b.raw_header_record(f1, 1458), b.switch_record(10, 20)], rate=1000, input=3, output=4)
    s2 = b.flow_sample(
        [b.raw_header_record(f2, 66, stripped=0)],
        rate=1000,
        input=0x3FFFFFFF,
        output=(1 << 30) | 5,
        expanded=False,
    )
    s3 = b.flow_sample(
        [b.ipv4_record("10.0.0.1", "10.0.0.2", length=1000, proto=17, sport=53, dport=5353)],
        rate=512,
        input=7,
        output=8,
        expanded=True,
    )
    s4 = b.flow_sample(
        [b.ipv6_record("2001:db8::5", "2001:db8::6", length=1280, proto=58, sport=0, dport=0)],
        rate=0,
        input=1,
        output=2,
    )
    c1 = b.counter_sample([b.generic_if_counters(if_index=3, if_speed=10**10, in_octets=2**40, out_errors=5)])
    c2 = b.counter_sample([b.generic_if_counters(if_index=4, in_ucast=99)], expanded=True)
    odd = b.sflow_record(99999, 5, b"\x00" * 12)  # an unknown enterprise's sample: skipped by its length
    return [
        b.sflow([s1, s2, c1], agent="192.0.2.99", sub_agent=1, sequence=10),
        b.sflow([s3, s4, c2, odd], agent="2001:db8::99", sub_agent=0, sequence=1),
        b.sflow([s1], agent="192.0.2.99", sub_agent=1, sequence=13),  # two lost
    ]


ALL_CASES = {"netflow5": netflow5_case, "netflow9": netflow9_case, "ipfix": ipfix_case, "sflow": sflow_case}


def decoder(**cfg: Any) -> FlowDecoder:
    return FlowDecoder(CollectConfig(**cfg))


def batch(payloads: list[bytes], sender: str = SENDER, recv_ns: int = RECV_NS) -> DatagramBatch:
    return DatagramBatch.from_payloads(payloads, sender, recv_ns)


def kernel_rows(
    payloads: list[bytes], *, one_batch: bool = True, **cfg: Any
) -> tuple[list[dict], list[dict], FlowDecoder]:
    """Rows (and counter rows) of the FlowDecoder, in the reference's order (one datagram per batch
    when ``one_batch`` is False)."""
    dec = decoder(**cfg)
    rows: list[dict] = []
    counters: list[dict] = []
    groups = [payloads] if one_batch else [[p] for p in payloads]
    for g in groups:
        r = dec.decode(batch(g))
        rows += r.records.as_dicts()
        counters += r.interface_counters.as_dicts()
    for row in rows:
        row.pop("hdr_off")
    return rows, counters, dec


def reference_rows(payloads: list[bytes], **cfg: Any) -> tuple[list[dict], list[dict]]:
    ref = ReferenceDecoder(cfg.get("default_sampling_rate", 1), cfg.get("exporter_sampling_rates"))
    rows: list[dict] = []
    counters: list[dict] = []
    for p in payloads:
        r, c = ref.decode(p, SENDER, RECV_NS)
        rows += r
        counters += c
    return rows, counters


def by_kind(rows: list[dict]) -> list[dict]:
    """Rows in the decoder's batch order: v5, then v9 and IPFIX, then sFlow; datagram order within each."""
    group = {1: 0, 2: 1, 3: 1, 4: 2}
    return sorted(rows, key=lambda r: group[r["export_kind"]])


def edge_case() -> list[bytes]:
    """Corner cases a collector meets: padding, trailing bytes, sets that overrun, refused templates,
    a withdrawal storm, an sFlow agent that puts the cut payload in ``stripped``."""
    import struct

    tpl = b.v9_template_set([(256, V4_FIELDS)])
    good = b.data_set(256, [b.data_record(V4_FIELDS, v4_values(1), False)])
    overrun = struct.pack(">HH", 256, 400) + b"\x00" * 20  # claims 400 bytes, has 24
    zero_fields = b.ipfix_template_set([(300, [(8, 0), (12, 0)])])
    storm = b.set_(2, struct.pack(">HH", 301, 0) * 50, pad_to=1)
    ipfix_data = b.data_set(300, [b"\x01" * 8], pad_to=1)
    frame = b.ethernet_ipv4_tcp("192.0.2.40", "192.0.2.41", 1234, 80, payload=1200)
    cisco = b.flow_sample(
        [b.raw_header_record(frame, 1290, stripped=1290 - len(frame))], rate=256, input=1, output=2
    )
    return [
        b.netflow9([tpl, good], sequence=0) + b"\x00" * 12,  # zero padding after the last flowset
        b.netflow9([good, overrun], sequence=1),  # the first set decodes, the second is an error
        b.ipfix([zero_fields, storm, ipfix_data], sequence=0) + b"trailing bytes",  # after the message
        b.sflow([cisco], agent="198.51.100.7", sequence=5),
    ]


REGRESSION_FILES = {
    "netflow5": netflow5_case,
    "netflow9": netflow9_case,
    "ipfix": ipfix_case,
    "sflow": sflow_case,
    "edge": edge_case,
}


# -- sFlow counter samples (tests/unit/test_collect_interfaces.py, the collector service test) --------


def poll(i: int, if_index: int, *, up: bool = True) -> bytes:
    """A counter record whose every value is distinct (and depends on the poll ``i``): 64-bit octets
    above 2**32, 32-bit counters near their wrap."""
    base = if_index * 1000 + i
    return b.generic_if_counters(
        if_index=if_index, if_type=6, if_speed=10**10 if if_index % 2 else 10**9, if_direction=1,
        if_status=3 if up else 1, in_octets=(5 << 32) + base * 1500, in_ucast=4_294_000_000 + base,
        in_mcast=2_000_000 + base, in_bcast=base + 2, in_discards=base + 3, in_errors=base + 4,
        in_unknown=base + 5,
        out_octets=(7 << 32) + base * 900, out_ucast=3_000_000_000 + base, out_mcast=base + 6,
        out_bcast=base + 7, out_discards=base + 8, out_errors=base + 9, promiscuous=i % 2,
    )  # fmt: skip


def polls() -> list[bytes]:
    """Two polls of three interfaces of an IPv4 agent (expanded and compact samples, two sub-agents'
    worth of samples in one datagram), and one IPv6 agent whose interface goes down in its second poll."""
    out = []
    for i in (1, 2):
        samples = [
            b.counter_sample([poll(i, 1)], sequence=i, source_id=1),
            b.counter_sample([poll(i, 2)], sequence=i, source_id=2, expanded=True),
            b.counter_sample([poll(i, 3, up=i == 1)], sequence=i, source_id=3),
        ]
        out.append(b.sflow(samples, agent="192.0.2.50", sub_agent=0, sequence=i))
        out.append(b.sflow([b.counter_sample([poll(i, 7, up=i == 1)], sequence=i, source_id=7)],
                           agent="2001:db8::50", sub_agent=2, sequence=i))  # fmt: skip
    return out
