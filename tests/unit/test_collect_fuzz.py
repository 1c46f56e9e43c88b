"""Fuzzing the collector: random and mutated datagrams never crash, hang or grow state without bound,
and the kernels still agree with the plain-Python reference on every one of them.

This is the suite's short, bounded run (a few hundred examples per property). The long run — 10^6
random datagrams — is ``python tools/fuzz_collect.py --datagrams 1000000`` (docs/collect.md).
"""

from __future__ import annotations

import struct

from collect_cases import ALL_CASES, batch, reference_rows
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from netspectra.collect.decoder import FlowDecoder
from netspectra.config.collect import CollectConfig

SEEDS = [p for case in ALL_CASES.values() for p in case()]
HEADERS = [
    struct.pack(">H", 5),
    struct.pack(">H", 9),
    struct.pack(">H", 10),
    struct.pack(">II", 5, 1),
    struct.pack(">II", 5, 2),
]
#: No waiting sets (the reference has none), small limits (to reach them).
CFG = CollectConfig(pending_max_age="0s", max_templates=64, max_templates_per_exporter=32)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A case datagram with a few bytes overwritten (often with 0 / 0xFF: lengths, counts), cut or
    extended."""
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 6))):
        if not data:
            break
        pos = draw(st.integers(0, len(data) - 1))
        data[pos] = draw(st.sampled_from([0, 0xFF, 1, 4, draw(st.integers(0, 255))]))
    cut = draw(st.integers(0, len(data)))
    tail = draw(st.binary(max_size=16))
    return bytes(data[: max(cut, len(data) - 8)]) + tail


random_datagram = st.one_of(
    st.binary(max_size=1500),
    st.tuples(st.sampled_from(HEADERS), st.binary(max_size=600)).map(lambda t: t[0] + t[1]),
    mutated(),
)


def decode_both(payloads: list[bytes]) -> tuple[list[dict], list[dict]]:
    dec = FlowDecoder(CFG)
    rows: list[dict] = []
    for p in payloads:  # one datagram per batch: the reference's order
        r = dec.decode(batch([p]))
        r.records.validate()
        rows += r.records.as_dicts()
    for row in rows:
        row.pop("hdr_off")
    assert len(dec.templates) <= CFG.max_templates
    assert dec.registry.n_streams <= CFG.max_exporters * CFG.max_streams_per_exporter
    want, _ = reference_rows(payloads)
    return rows, want


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(random_datagram, min_size=1, max_size=6))
def test_fuzzed_datagrams_decode_as_the_reference_does(payloads: list[bytes]) -> None:
    rows, want = decode_both(payloads)
    assert rows == want


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(random_datagram, min_size=1, max_size=40))
def test_fuzzed_batches_never_fail(payloads: list[bytes]) -> None:
    dec = FlowDecoder(CFG)
    r = dec.decode(batch(payloads))
    r.records.validate()
    t = dec.stats.as_dict()["totals"]
    assert t["datagrams"] == len(payloads)
