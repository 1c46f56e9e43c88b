"""FlowDecoder semantics: templates, waiting data sets, limits, sampling precedence, bad input, counters."""

from __future__ import annotations

import logging
import threading

import numpy as np
import pytest
from collect_cases import (
    ALL_CASES,
    RECV_NS,
    SENDER,
    V4_FIELDS,
    batch,
    decoder,
    kernel_rows,
    reference_rows,
    v4_values,
)

from netspectra.collect import build as b
from netspectra.collect import records as rec
from netspectra.collect.records import DatagramBatch


def v9_tpl(tid: int = 256, fields: list | None = None) -> bytes:
    return b.v9_template_set([(tid, fields or V4_FIELDS)])


def v9_data(tid: int = 256, n: int = 3, fields: list | None = None, start: int = 0) -> bytes:
    return b.data_set(
        tid, [b.data_record(fields or V4_FIELDS, v4_values(start + i), False) for i in range(n)]
    )


def totals(dec) -> dict:
    return dec.stats.as_dict()["totals"]


def errors(dec) -> dict:
    return dec.stats.as_dict()["errors"]


# --- templates ----------------------------------------------------------------------------------


def test_template_refresh_and_change() -> None:
    other = [
        (12, 4),
        (8, 4),
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
    dec = decoder()
    r = dec.decode(
        batch(
            [
                b.netflow9([v9_tpl(), v9_data(n=1)], sequence=0),
                b.netflow9([v9_tpl(), v9_data(n=1)], sequence=1),  # refresh: same definition
                b.netflow9([v9_tpl(fields=other), v9_data(n=1)], sequence=2),  # change: addresses swapped
            ]
        )
    ).records.as_dicts()
    assert [x["src_ip"] for x in r] == ["10.0.0.0", "10.0.0.0", "198.51.100.9"]
    t = totals(dec)
    assert (t["templates"], t["template_changes"], t["records"]) == (3, 1, 3)


def test_data_before_its_template_waits_then_decodes() -> None:
    dec = decoder()
    r1 = dec.decode(batch([b.netflow9([v9_data(n=2)], sequence=0)])).records
    assert len(r1) == 0
    assert totals(dec)["unknown_template_sets"] == 1 and len(dec.pending) == 1
    r2 = dec.decode(batch([b.netflow9([v9_tpl(), v9_data(n=1, start=5)], sequence=1)])).records.as_dicts()
    # the waiting set is decoded when its template arrives, before the data that came with it
    assert [x["src_port"] for x in r2] == [1000, 1001, 1005]
    t = totals(dec)
    assert (t["pending_decoded_sets"], t["pending_dropped_sets"], t["records"]) == (1, 0, 3)
    assert len(dec.pending) == 0


def test_data_before_template_in_the_same_batch_and_datagram() -> None:
    rows, _, dec = kernel_rows([b.netflow9([v9_data(n=2), v9_tpl()], sequence=0), b.netflow9([v9_data(n=1)])])
    assert len(rows) == 3
    assert totals(dec)["pending_decoded_sets"] == 1


def test_waiting_sets_expire_and_are_counted() -> None:
    dec = decoder(pending_max_age="2s")
    dec.decode(batch([b.netflow9([v9_data()], sequence=0)], recv_ns=RECV_NS))
    dec.decode(batch([b.netflow9([v9_data()], source_id=9)], recv_ns=RECV_NS + 1_000_000_000))
    assert totals(dec)["pending_dropped_sets"] == 0 and len(dec.pending) == 2
    # a later datagram (by its receive time) expires the first; expire() does the same when idle
    dec.decode(batch([b"\x00\x09"], recv_ns=RECV_NS + 2_500_000_000))
    assert totals(dec)["pending_dropped_sets"] == 1
    assert dec.expire(RECV_NS + 10**10) == 1
    assert totals(dec)["pending_dropped_sets"] == 2 and len(dec.pending) == 0


def test_waiting_sets_are_bounded_and_counted() -> None:
    dec = decoder(pending_max_bytes=1000, pending_max_bytes_per_exporter=600)
    data = [b.netflow9([v9_data(tid=300 + i, n=5)], sequence=i) for i in range(10)]  # ~200-byte sets
    dec.decode(batch(data))
    assert dec.pending.bytes <= 600
    t = totals(dec)
    assert t["unknown_template_sets"] == 10
    assert t["pending_dropped_sets"] == 10 - len(dec.pending) > 0
    dec.decode(batch(data[:4], sender="192.0.2.8"))  # another exporter has its own share
    assert 600 < dec.pending.bytes <= 1000
    waiting = len(dec.pending)
    assert dec.close() == waiting
    assert len(dec.pending) == 0


def test_close_counts_waiting_sets_as_dropped() -> None:
    dec = decoder()
    dec.decode(batch([b.netflow9([v9_data()])]))
    assert dec.close() == 1
    assert totals(dec)["pending_dropped_sets"] == 1


def test_template_flood_is_bounded_per_exporter_and_overall() -> None:
    dec = decoder(max_templates=50, max_templates_per_exporter=20)
    flood = [b.netflow9([b.v9_template_set([(256 + i, V4_FIELDS)])], sequence=i) for i in range(100)]
    dec.decode(batch(flood))
    assert len(dec.templates) == 20
    assert totals(dec)["templates_rejected"] == 80
    for k in range(5):
        dec.decode(batch(flood, sender=f"192.0.2.{100 + k}"))
    assert len(dec.templates) == 50
    t = totals(dec)
    assert t["templates"] == 50 and t["templates_rejected"] == 600 - 50
    # memory stays bounded: the cache's arrays never grew past their first size (64 >= the limit)
    assert dec.templates.t_kind.shape[0] == 64
    # a kept template still decodes; data of a refused one waits, then is dropped
    r = dec.decode(batch([b.netflow9([v9_data(tid=256)])])).records
    assert len(r) == 3


def test_exporter_and_stream_limits() -> None:
    dec = decoder(max_exporters=3, max_streams_per_exporter=2)
    p = b.netflow9([v9_tpl(), v9_data()], sequence=0)
    dgs = [DatagramBatch.from_payloads([p], f"10.0.0.{i}") for i in range(5)]
    n = sum(len(dec.decode(x).records) for x in dgs)
    assert n == 9
    assert dec.stats.exporters_over_limit.value == 2
    r = dec.decode(
        batch([b.netflow9([v9_tpl(), v9_data()], source_id=s) for s in range(4)], sender="10.0.0.0")
    )
    assert len(r.records) == 6  # 10.0.0.0 had source id 0; source id 1 is its second and last stream
    assert dec.stats.exporters()["10.0.0.0"]["over_limit"] == 2


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ([(8, 0), (12, 0)], "every field has length 0"),
        ([(8, 4)] * 1025, "1025 fields"),
        ([(82, 3), (8, 4)] * 300, "compiled steps"),
    ],
)
def test_refused_templates(fields: list, reason: str, caplog: pytest.LogCaptureFixture) -> None:
    dec = decoder()
    caplog.set_level(logging.WARNING)
    tpl = b.ipfix_template_set([(256, fields)])
    data = b.data_set(256, [b"\x00" * 64], pad_to=1)
    r = dec.decode(batch([b.ipfix([tpl, data])]))
    assert len(r.records) == 0
    t = totals(dec)
    assert t["templates"] == 0 and t["templates_rejected"] + t["decode_errors"] >= 1
    assert reason in caplog.text
    assert t["unknown_template_sets"] == 1


def test_v9_field_of_65535_bytes_never_fits() -> None:
    fields = [(8, 4), (82, 65535)]
    rows, _, dec = kernel_rows([b.netflow9([v9_tpl(fields=fields), b.data_set(256, [b"\x01" * 40])])])
    assert rows == [] and totals(dec)["templates"] == 1 and totals(dec)["decode_errors"] == 0


def test_template_sets_that_could_loop() -> None:
    """Template records that make no progress, or claim more than they hold, end the set; counted."""
    import struct

    withdrawals = b.set_(2, struct.pack(">HH", 300, 0) * 200, pad_to=1)  # 200 withdrawals of an unknown id
    lying = b.set_(2, struct.pack(">HH", 301, 60000) + b"\x00\x08\x00\x04", pad_to=1)
    v9_zero = b.set_(0, struct.pack(">HH", 302, 0) + b"\x00" * 8)  # a v9 template with no field
    self_ref = b.set_(0, struct.pack(">HH", 0, 1) + b"\x01\x00\x00\x04")  # template id 0: refused
    dec = decoder()
    dec.decode(batch([b.ipfix([withdrawals, lying]), b.netflow9([v9_zero]), b.netflow9([self_ref])]))
    t = totals(dec)
    assert t["templates"] == 0 and t["template_withdrawals"] == 0
    assert errors(dec).get("template_set_invalid") == 3


def test_truncated_datagrams_at_every_length() -> None:
    """Every prefix of every case datagram: no crash, kernel == reference, errors counted."""
    for name, case in ALL_CASES.items():
        payloads = case()
        for p in payloads:
            prefixes = [p[:k] for k in range(len(p))]
            rows, counters, dec = kernel_rows(payloads[:1] + prefixes, one_batch=False)
            want, want_c = reference_rows(payloads[:1] + prefixes)
            assert rows == want, name
            assert counters == want_c, name
            assert totals(dec)["decode_errors"] >= 1, name


def test_wrong_versions_are_counted() -> None:
    import struct

    bad = [
        struct.pack(">HH", 1, 0) + b"\x00" * 20,
        struct.pack(">HH", 7, 1) + b"\x00" * 40,
        struct.pack(">II", 4, 1) + b"\x00" * 40,  # sFlow v4
        struct.pack(">II", 5, 3) + b"\x00" * 40,  # sFlow v5 with agent address type 3
        b"\x00\x05",
        b"",
    ]
    dec = decoder()
    r = dec.decode(batch(bad))
    assert len(r.records) == 0
    e = errors(dec)
    assert e == {"unknown_version": 3, "sflow_agent_address_invalid": 1, "datagram_truncated": 2}
    assert totals(dec)["datagrams"] == 6 and totals(dec)["decode_errors"] == 6


def test_netflow5_count_lies() -> None:
    recs = [{"src": "1.1.1.1", "dst": "2.2.2.2"}] * 2
    dec = decoder()
    r = dec.decode(batch([b.netflow5(recs, count=5), b.netflow5(recs, count=0), b.netflow5(recs)]))
    assert len(r.records) == 2
    assert errors(dec) == {"netflow5_count_invalid": 2}
    assert totals(dec)["records_dropped"] == 5


# --- sampling -----------------------------------------------------------------------------------


def test_sampling_precedence(caplog: pytest.LogCaptureFixture) -> None:
    """record > options (sampler id, else sampler 0) > exporter setting > default; missing counted."""
    opt_tpl = b.v9_options_template_set(300, [(2, 4)], [(48, 2), (34, 4)])
    opt = b.data_set(300, [b.data_record([(2, 4), (48, 2), (34, 4)], {48: 5, 34: 50}, False)])
    with_rate = [*V4_FIELDS, (34, 4)]
    with_sampler = [*V4_FIELDS, (48, 2)]
    tpl = b.v9_template_set([(256, V4_FIELDS), (257, with_rate), (258, with_sampler)])
    d_rate = b.data_set(257, [b.data_record(with_rate, {**v4_values(1), 34: 8}, False)])
    d_samp = b.data_set(258, [b.data_record(with_sampler, {**v4_values(2), 48: 5}, False)])
    d_other = b.data_set(258, [b.data_record(with_sampler, {**v4_values(3), 48: 6}, False)])
    d_plain = v9_data(n=1)
    caplog.set_level(logging.WARNING)
    # exporter A: options rates for sampler 5 only; exporter B: configured; exporter C: nothing
    dec = decoder(exporter_sampling_rates={"192.0.2.8": 300}, default_sampling_rate=7)
    a = dec.decode(batch([b.netflow9([tpl, opt_tpl, d_plain, opt, d_rate, d_samp, d_other, d_plain])]))
    got = [(x["sampling_rate"], x["sampling_source"]) for x in a.records.as_dicts()]
    assert got == [
        (7, rec.RATE_DEFAULT),
        (8, rec.RATE_RECORD),
        (50, rec.RATE_OPTIONS),
        (7, rec.RATE_DEFAULT),
        (7, rec.RATE_DEFAULT),
    ]
    bb = dec.decode(batch([b.netflow9([tpl, d_plain, d_rate])], sender="192.0.2.8")).records
    assert list(zip(bb.sampling_rate.tolist(), bb.sampling_source.tolist(), strict=True)) == [
        (300, rec.RATE_CONFIG),
        (8, rec.RATE_RECORD),
    ]
    ex = dec.stats.exporters()
    assert ex[SENDER]["records_without_sampling_rate"] == 3
    assert ex[SENDER]["sampling_rates"] == {7: 3, 8: 1, 50: 1}
    assert ex[SENDER]["sampling_sources"] == {"default": 3, "options": 1, "record": 1}
    assert ex["192.0.2.8"]["records_without_sampling_rate"] == 0
    # logged once per exporter, however many records
    dec.decode(batch([b.netflow9([d_plain])]))
    assert caplog.text.count(f"exporter {SENDER} sends records without a sampling rate") == 1
    # an exporter-wide rate (no sampler id) applies to the records of every sampler of the stream
    opt0 = b.data_set(300, [b.data_record([(2, 4), (48, 2), (34, 4)], {48: 0, 34: 1000}, False)])
    c = dec.decode(batch([b.netflow9([opt0, d_other, d_plain])])).records
    assert c.sampling_rate.tolist() == [1000, 1000] and set(c.sampling_source.tolist()) == {rec.RATE_OPTIONS}


def test_no_default_rate_leaves_unknown() -> None:
    rows, _, dec = kernel_rows([b.netflow9([v9_tpl(), v9_data(n=2)])], default_sampling_rate=0)
    assert [(r["sampling_rate"], r["sampling_source"]) for r in rows] == [(0, rec.RATE_UNKNOWN)] * 2
    assert totals(dec)["records_without_sampling_rate"] == 2


def test_options_rate_applies_from_its_position_in_the_batch() -> None:
    opt_tpl = b.v9_options_template_set(300, [(2, 4)], [(34, 4)])
    opt = lambda rate: b.data_set(300, [b.data_record([(2, 4), (34, 4)], {34: rate}, False)])  # noqa: E731
    rows, _, _ = kernel_rows(
        [b.netflow9([v9_tpl(), opt_tpl, v9_data(n=1), opt(10), v9_data(n=1), opt(20), v9_data(n=1)])]
    )
    assert [r["sampling_rate"] for r in rows] == [1, 10, 20]


# --- counters and threads ------------------------------------------------------------------------


def test_counters_as_dicts() -> None:
    dec = decoder()
    for name, case in ALL_CASES.items():
        dec.decode(batch(case(), sender="192.0.2.50" if name != "sflow" else SENDER))
    d = dec.stats.as_dict()
    assert set(d) == {
        "totals",
        "errors",
        "exporters_over_limit",
        "exporters",
        "interfaces",
        "collected_at_ns",
    }
    ex = d["exporters"]
    assert set(ex) == {"192.0.2.50", "192.0.2.99", "2001:db8::99"}  # sFlow: the agent addresses
    e = ex["192.0.2.50"]
    assert e["kinds"] == ["ipfix", "netflow5", "netflow9"]
    assert e["last_seen_ns"] == RECV_NS
    assert e["datagrams"] == 3 + 4 + 7
    assert d["totals"]["records"] == sum(int(r["records"]) for r in ex.values())
    assert ex["192.0.2.99"]["interface_counters"] == 1 and ex["2001:db8::99"]["interface_counters"] == 1
    assert all(isinstance(v, int) for v in e.values() if not isinstance(v, list | dict))


def test_concurrent_decodes_are_serialised() -> None:
    payloads = ALL_CASES["netflow9"]()
    dec = decoder()
    dec.decode(batch(payloads[:1]))
    seen: list[int] = []

    def work() -> None:
        for _ in range(20):
            seen.append(len(dec.decode(batch([payloads[1]])).records))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen == [6] * 80
    assert totals(dec)["records"] == 480


def test_empty_batch() -> None:
    dec = decoder()
    r = dec.decode(DatagramBatch.from_payloads([]))
    assert len(r.records) == 0 and len(r.interface_counters) == 0
    r.records.validate()


def test_datagram_outside_the_buffer_is_truncated_not_read() -> None:
    p = b.netflow9([v9_tpl(), v9_data()])
    bt = DatagramBatch.from_payloads([p])
    bad = DatagramBatch(
        bt.buf,
        np.array([len(p) - 10], np.int64),
        np.array([1000], np.uint32),
        bt.sender,
        bt.sender_port,
        bt.received_ns,
    )
    dec = decoder()
    assert len(dec.decode(bad).records) == 0
    assert totals(dec)["decode_errors"] == 1


def test_template_table_stays_consistent_through_rehash_and_withdrawal() -> None:
    """Found by the long fuzz run: a rehash while adding put the new key in the table twice, and its
    stale copy pointed at a freed slot after a withdrawal."""
    from netspectra.collect.templates import TemplateCache, TemplateField, TemplateRecord

    cache = TemplateCache(max_total=5000, max_per_exporter=5000)
    fields = (TemplateField(8, 4), TemplateField(12, 4))
    for i in range(3000):
        assert cache.add(i % 7, 0, TemplateRecord(256 + i, fields, False), 10) == "added"
        if i % 3 == 0:
            assert cache.withdraw(i % 7, 256 + i)
    keys = cache.ht_keys[cache.ht_keys >= 0]
    assert len(keys) == len(set(keys.tolist())) == len(cache)
    for (stream, tid), slot in cache._slot_of.items():
        i = int(np.flatnonzero(cache.ht_keys == ((stream << 16) | tid))[0])
        assert cache.ht_vals[i] == slot


def test_repeated_template_sets_are_skipped_but_still_apply_after_changes() -> None:
    """A template set identical to one applied is skipped (counted, not parsed) — unless a template of
    its stream changed or was withdrawn since, when it means something again."""
    swapped = [(12, 4), (8, 4), *V4_FIELDS[2:]]
    a = b.ipfix_template_set([(256, V4_FIELDS)])
    c = b.ipfix_template_set([(256, swapped)])
    data = b.data_set(256, [b.data_record(V4_FIELDS, v4_values(0))], pad_to=1)
    seq = [
        [a, data],  # A: src first
        [a, data],  # A again: skipped
        [c, data],  # C: the template changes, the addresses swap
        [a, data],  # A again: no longer "known", applied: src first again
        [b.ipfix_withdrawal(256), a, data],  # withdrawn, then A: re-added
    ]
    rows, _, dec = kernel_rows([b.ipfix(sets) for sets in seq])
    assert [r["src_ip"] for r in rows] == ["10.0.0.0", "10.0.0.0", "198.51.100.9", "10.0.0.0", "10.0.0.0"]
    t = totals(dec)
    assert (t["templates"], t["template_changes"], t["template_withdrawals"]) == (5, 2, 1)
    want, _ = reference_rows([b.ipfix(sets) for sets in seq])
    assert [r["src_ip"] for r in want] == [r["src_ip"] for r in rows]


def test_options_rate_applies_from_its_position_within_a_datagram() -> None:
    """Found by the long fuzz run (the reference resolved a datagram's rates after its last options
    set): rows before an options data set keep the rate known before it, in the decoder and the
    reference alike."""
    opt_tpl = b.v9_options_template_set(300, [(2, 4)], [(34, 4)])
    opt = lambda rate: b.data_set(300, [b.data_record([(2, 4), (34, 4)], {34: rate}, False)])  # noqa: E731
    payloads = [
        b.netflow9([v9_tpl(), opt_tpl, opt(10)], sequence=0),
        b.netflow9([v9_data(n=1), opt(20), v9_data(n=1)], sequence=1),
    ]
    rows, _, _ = kernel_rows(payloads, one_batch=False)
    want, _ = reference_rows(payloads)
    assert [r["sampling_rate"] for r in rows] == [r["sampling_rate"] for r in want] == [10, 20]
