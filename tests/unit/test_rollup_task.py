"""The rollup task: every packet (and every exported record, spread over its buckets) in exactly one row
per resolution, whatever the order of the traffic, the snapshots and the capacity; rows that a replay of
the same batches reproduces identically; periods that start from nothing."""

from __future__ import annotations

import logging
import pathlib
import threading
from typing import Any

import numpy as np
import pytest

from netspectra.batch import PacketBatch
from netspectra.rollup import kernels as kern
from netspectra.rollup.dims import RESOLUTIONS
from netspectra.rollup.task import RollupParams, RollupRows, RollupTask

MIN = 60 * 10**9
DAY_NS = 86_400 * 10**9
#: 23:50 UTC: the traffic crosses midnight (a day boundary) and an hour boundary.
T0 = 1_700_000_000 * 10**9 - (1_700_000_000 % 86_400) * 10**9 + 86_400 * 10**9 - 10 * MIN


def make_batch(rng: np.random.Generator, n: int, t0: int, span: int, export: bool = False) -> PacketBatch:
    b = PacketBatch.empty(n, PacketBatch.EXPORT_COLUMNS if export else ())
    b.ts_ns[:] = t0 + rng.integers(0, span, n)
    b.src_ip[:] = 0
    b.dst_ip[:] = 0
    b.src_port[:] = 0
    b.dst_port[:] = 0
    b.protocol[:] = rng.choice(np.array([6, 17, 1], np.uint8), n)
    b.length[:] = rng.integers(60, 1500, n)
    if export:
        b.flow_start_ns[:] = b.ts_ns - rng.integers(0, 7 * MIN, n)
        b.packets[:] = rng.integers(1, 5000, n)
        b.octets[:] = b.packets * rng.integers(40, 1500, n).astype(np.uint64)
        b.sampling_rate[:] = 1
        b.in_if[:] = rng.integers(1, 4, n)
        b.out_if[:] = 0
        b.exporter[:] = 0
        b.exporter[:, 10:12] = 0xFF
        b.exporter[:, 12:] = [192, 0, 2, 1]
        b.exporter[n // 2 :, 15] = 2
    as_codes = rng.choice(np.array([0, 15169, 3320], np.uint32), n)
    return b.with_dims(
        {"SrcAS": as_codes, "SrcNetName": (as_codes % 3).astype(np.uint16)}, {"SrcNetName": ("", "a", "b")}
    )


def truth(batches: list[PacketBatch], dims: tuple[str, ...], r: int) -> dict[tuple, tuple[int, int]]:
    """(bucket at resolution r, dimension values) -> (packets, bytes), computed row by row in Python."""
    task = RollupTask("ref", RollupParams(dims))
    width = RESOLUTIONS[r].seconds // 60
    out: dict[tuple, list[int]] = {}
    for b in batches:
        mat = task.dimension_words(b)
        want = kern.aggregate_ref(
            b.ts_ns, b.flow_start_ns, b.packets, b.byte_counts(), mat, MIN, 86_400 * 10**9
        )
        for (k, d), (p, y) in want.items():
            got = out.setdefault((k // width, d), [0, 0])
            got[0] += p
            got[1] += y
    return {k: (p, y) for k, (p, y) in out.items()}


def rows_dict(rows: RollupRows, r: int) -> dict[tuple, tuple[int, int]]:
    part = rows.at(r)
    return {
        (int(b), tuple(int(x) for x in w)): (int(p), int(y))
        for b, w, p, y in zip(part.bucket, part.words, part.packets, part.bytes, strict=True)
    }


def identities(parts: list[RollupRows]) -> dict[tuple, tuple[int, int]]:
    """Identity -> latest row (what a ReplacingMergeTree keeps)."""
    out = {}
    for rows in parts:
        for i in range(len(rows)):
            key = (
                int(rows.resolution[i]),
                int(rows.bucket[i]),
                int(rows.epoch[i]),
                tuple(rows.words[i].tolist()),
            )
            out[key] = (int(rows.packets[i]), int(rows.bytes[i]))
    return out


def run(
    batches: list[PacketBatch], dims: tuple[str, ...], drain_every: int, **kw: object
) -> tuple[RollupTask, list]:
    task = RollupTask("t", RollupParams(dims, **kw), capacity=16)  # type: ignore[arg-type]
    parts = []
    for i, b in enumerate(batches):
        task.update(b)
        if drain_every and i % drain_every == drain_every - 1:
            parts.append(task.drain())
    task.finish()
    parts.append(task.drain())
    return task, parts


DIMS = ("Protocol", "SrcAS", "SrcNetName")


@pytest.mark.parametrize("export", [False, True])
def test_every_resolution_holds_every_count_once(export: bool) -> None:
    rng = np.random.default_rng(11)
    # 20 minutes across midnight, in order with some late rows (a batch reaching back 3 minutes)
    batches = [make_batch(rng, 3000, T0 + k * MIN - 3 * MIN, 4 * MIN, export) for k in range(20)]
    task, parts = run(batches, DIMS, drain_every=3, close_after_ns=30 * 10**9)
    combined = RollupRows.combine([(0, p) for p in parts])
    assert combined is not None
    total_p = sum(int(b.packet_counts().sum()) for b in batches)
    total_b = sum(int(b.byte_counts().sum()) for b in batches)
    for r in range(len(RESOLUTIONS)):
        got = rows_dict(combined, r)
        assert got == truth(batches, DIMS, r)
        assert sum(p for p, _ in got.values()) == total_p
        assert sum(y for _, y in got.values()) == total_b
    # late rows reopened closed buckets: several epochs of one bucket, which add up
    assert (np.concatenate([p.epoch for p in parts]) > 0).any()
    assert task.summary.packets == total_p and task.summary.bytes == total_b
    assert task.open_entries == {"1m": 0, "5m": 0, "1h": 0}  # finish closed everything
    # 1-hour buckets either side of midnight
    hours = {int(b) for b in combined.at(2).bucket}
    assert len(hours) == 2 and (max(hours) * 3600) % 86_400 == 0


def test_rows_do_not_depend_on_when_snapshots_are_taken() -> None:
    """A JetStream successor replays the same batches with snapshots at other moments: it must produce
    the same row identities with the same final values (so its rows replace, never add to, the first
    engine's)."""
    rng = np.random.default_rng(5)
    batches = [make_batch(rng, 2000, T0 + k * 20 * 10**9 - MIN, 2 * MIN) for k in range(40)]
    _, often = run(batches, DIMS, drain_every=1, close_after_ns=10 * 10**9)
    _, rarely = run(batches, DIMS, drain_every=7, close_after_ns=10 * 10**9)
    _, once = run(batches, DIMS, drain_every=0, close_after_ns=10 * 10**9)
    assert identities(often) == identities(rarely) == identities(once)
    # provisional rows were handed out and replaced: more rows than identities when draining often
    assert sum(len(p) for p in often) > len(identities(often))


def test_max_entries_closes_the_oldest_buckets_early(caplog: pytest.LogCaptureFixture) -> None:
    rng = np.random.default_rng(9)
    batches = [make_batch(rng, 5000, T0 + k * 5 * MIN, 5 * MIN) for k in range(6)]
    with caplog.at_level(logging.INFO, "netspectra.rollup.task"):
        task, parts = run(batches, DIMS, drain_every=2, max_entries=16, close_after_ns=3600 * 10**9)
    assert "closing buckets up to" in caplog.text
    combined = RollupRows.combine([(0, p) for p in parts])
    for r in range(len(RESOLUTIONS)):
        assert rows_dict(combined, r) == truth(batches, DIMS, r)  # type: ignore[arg-type]
    assert max(t.cap for t in task.tables) <= 32


def test_a_new_period_starts_from_nothing() -> None:
    rng = np.random.default_rng(1)
    task = RollupTask("t", RollupParams(DIMS))
    first = make_batch(rng, 1000, T0, MIN)
    task.update(first)
    p1 = task.drain()
    task.begin_period(123)
    assert task.open_entries == {"1m": 0, "5m": 0, "1h": 0} and task.watermark < 0
    second = make_batch(rng, 1000, T0, MIN)  # the same minute again, in the new period
    task.update(second)
    task.finish()
    p2 = task.drain()
    combined = RollupRows.combine([(1, p1), (2, p2)])  # rows of two periods add up
    assert int(combined.at(0).packets.sum()) == 2000  # type: ignore[union-attr]
    # within one period the same identities would have replaced each other
    assert int(RollupRows.combine([(1, p1), (1, p2)]).at(0).packets.sum()) == 1000  # type: ignore[union-attr]


def test_dimensions_decode_and_missing_columns_are_unknown() -> None:
    rng = np.random.default_rng(2)
    exp = make_batch(rng, 100, T0, MIN, export=True)
    cap = make_batch(rng, 100, T0, MIN).with_dims(None)  # a capture, not enriched
    task = RollupTask("t", RollupParams(("Exporter", "InIf", "SrcAS", "SrcNetName", "DstCountry")))
    task.update(exp)
    task.update(cap)
    task.finish()
    t = task.drain().at(0).to_arrow().to_pylist()
    exporters = {r["Exporter"] for r in t}
    assert exporters == {"192.0.2.1", "192.0.2.2", ""}
    assert {r["SrcNetName"] for r in t} <= {"", "a", "b"} and {r["DstCountry"] for r in t} == {""}
    blank = [r for r in t if r["Exporter"] == ""]
    assert {(r["InIf"], r["SrcAS"], r["SrcNetName"]) for r in blank} == {(0, 0, "")}
    assert sum(r["Packets"] for r in blank) == 100
    assert sum(r["Packets"] for r in t) == 100 + int(exp.packets.sum())  # type: ignore[union-attr]


def test_report_top_values_name_addresses_as_the_tables_do() -> None:
    """The report's top values of an address dimension (Exporter): IPv4 dotted, IPv6 as RFC 5952, unknown
    empty — the text the rows' tables give (the report formats its few values without Arrow)."""
    from types import SimpleNamespace

    from netspectra.output.addr import ips_to_text
    from netspectra.rollup.kind import top_values

    rng = np.random.default_rng(3)
    exp = make_batch(rng, 90, T0, MIN, export=True)
    exp.exporter[60:] = np.frombuffer(bytes.fromhex("20010db8000000000000000000000001"), np.uint8)
    exp.exporter[80:] = 0
    task = RollupTask("t", RollupParams(("Exporter", "InIf")))
    task.update(exp)
    got = top_values(SimpleNamespace(summary=task.summary, dimensions=("Exporter",), dictionaries={}), 10)
    texts = {t for t, _, _ in got["Exporter"]}
    assert texts == {"192.0.2.1", "192.0.2.2", "2001:db8::1", ""}
    assert texts - {""} == set(ips_to_text(exp.exporter[:80]))


def test_report_names_the_dimensions_it_shows_no_table_for() -> None:
    """A dimension without a known value (no country found, no exporter in a capture) or a task without
    traffic was left out of the report without a word: one line now names those dimensions."""
    from types import SimpleNamespace

    from rich.console import Console
    from rich.table import Table

    from netspectra.rollup.kind import RollupAggregator

    def report(task: RollupTask) -> tuple[list[str], str]:
        snap = SimpleNamespace(
            summary=task.summary, dimensions=task.params.dimensions, dictionaries={}, task_name="t"
        )
        out = RollupAggregator().render(task, snap, 10)
        console = Console(width=200, record=True)
        console.print(*out)
        titles = [str(r.title) for r in out if isinstance(r, Table)]
        return titles, " ".join(console.export_text().split())

    task = RollupTask("t", RollupParams(("Protocol", "InIf", "SrcAS")))
    task.update(make_batch(np.random.default_rng(5), 50, T0, MIN))  # captured packets: InIf is 0
    titles, text = report(task)
    assert titles == ["Top Protocol by bytes — task t", "Top SrcAS by bytes — task t"]
    assert "Task t: no known value (every row unknown) for InIf" in text
    titles, text = report(RollupTask("t", RollupParams(("Protocol", "SrcAS"))))
    assert titles == [] and "Task t: no known value (no traffic) for Protocol, SrcAS" in text


def test_summary_marginals_are_the_totals_per_value() -> None:
    rng = np.random.default_rng(4)
    batches = [make_batch(rng, 2000, T0 + k * MIN, MIN) for k in range(5)]
    task, _ = run(batches, DIMS, drain_every=2)
    srcas = np.concatenate([b.dims["SrcAS"] for b in batches])  # type: ignore[index]
    lengths = np.concatenate([b.length for b in batches]).astype(np.int64)
    for value in (0, 15169, 3320):
        p, y = task.summary.marginals["SrcAS"][(value,)]
        assert (p, y) == (int((srcas == value).sum()), int(lengths[srcas == value].sum()))


def test_params_are_checked() -> None:
    with pytest.raises(ValueError, match="not a rollup dimension"):
        RollupParams(("SrcAs",))
    with pytest.raises(ValueError, match="twice"):
        RollupParams(("SrcAS", "SrcAS"))


def test_parquet_writer_stores_the_rows_of_each_snapshot(tmp_path: pytest.TempPathFactory) -> None:
    import pyarrow.parquet as pq

    from netspectra.config.aggregator import WriterConfig
    from netspectra.storage.base import SnapshotMeta
    from netspectra.storage.files import ParquetWriter

    rng = np.random.default_rng(6)
    task = RollupTask("traffic", RollupParams(DIMS))
    task.update(make_batch(rng, 500, T0, MIN))
    task.finish()
    rows = task.drain()
    wc = WriterConfig.model_validate(
        {"type": "parquet", "enabled": True, "parquet": {"root_path": str(tmp_path)}},
        context={"group": "rollup"},
    )
    with ParquetWriter(wc, "rollup") as w:
        w.write_rollups(rows, SnapshotMeta(T0 + DAY_NS, T0, True))
    (path,) = list(tmp_path.rglob("traffic.parquet"))  # type: ignore[attr-defined]
    t = pq.read_table(path)
    assert t.num_rows == len(rows)
    assert t.schema.metadata[b"netspectra.key_fields"] == b"Protocol,SrcAS,SrcNetName"
    columns = {"Timestamp", "PeriodStart", "Resolution", "Bucket", "Epoch", "Packets", "Bytes"}
    assert columns <= set(t.column_names)
    assert sum(t.column("Packets").to_pylist()) == 3 * 500  # every packet at each of the three resolutions


def test_auto_dimensions_follow_what_enrichment_can_fill() -> None:
    from netspectra.config.models import Config
    from netspectra.engine.kind import dimensions_needed
    from netspectra.rollup.kind import BASE_DIMENSIONS, auto_dimensions

    def auto(enrichment: dict) -> tuple[str, ...]:
        return auto_dimensions(Config.model_validate({"enrichment": enrichment}).enrichment)

    assert auto({}) == BASE_DIMENSIONS
    assert auto({"geoip": {"asn_database": "/x.mmdb"}})[4:] == ("SrcAS", "DstAS")
    assert auto({"networks": {"10.0.0.0/8": {"role": "lan"}}})[4:] == ("SrcNetRole", "DstNetRole")
    assert auto({"exporters": {"192.0.2.1": {"name": "edge1"}}})[4:] == ("ExporterName",)
    rule = 'ClassifyProviderRegex(Interface.Description, "^(\\\\S+)", "$1")'
    rules = {"classifiers": {"interfaces": [rule]}}
    assert auto(rules)[4:] == ("InIfProvider", "OutIfProvider")
    cfg = Config.model_validate(
        {
            "aggregator": {"types": ["rollup"], "rollup": {"tasks": [{"name": "t"}]}},
            "enrichment": {"exporters": {"192.0.2.1": {"name": "edge1"}}},
        }
    )
    assert cfg.enrichment.enabled and dimensions_needed(cfg) == ("ExporterName",)


def test_rollup_task_configuration_errors_name_the_key() -> None:
    from netspectra.config import ConfigError
    from netspectra.config.loader import parse_config_text

    text = "aggregator:\n  types: [rollup]\n  rollup:\n    tasks: [{name: t, dimensions: [SrcAs]}]\n"
    with pytest.raises(ConfigError) as err:
        parse_config_text(text)
    assert "aggregator.rollup.tasks[0].dimensions" in str(err.value)
    assert "did you mean 'SrcAS'" in str(err.value)


def test_every_bad_dimension_is_listed_at_its_index() -> None:
    # Two typos in one list were reported one per `config check` run, without saying which entry.
    from netspectra.config import ConfigError
    from netspectra.config.loader import parse_config_text

    text = (
        "aggregator:\n  types: [rollup]\n  rollup:\n"
        "    tasks: [{name: t, dimensions: [SrcAs, Protocol, DstCountrie, Protocol, 5]}]\n"
    )
    with pytest.raises(ConfigError) as err:
        parse_config_text(text)
    lines = str(err.value).splitlines()
    at = "  aggregator.rollup.tasks[0].dimensions"
    assert lines[1].startswith(f"{at}[0]: 'SrcAs' is not a rollup dimension"), lines
    assert lines[2].startswith(f"{at}[2]: 'DstCountrie' is not a rollup dimension (did you mean 'DstCountry'")
    assert lines[3] == f"{at}[3]: 'Protocol' is named twice; name each dimension once"
    assert lines[4].startswith(f"{at}[4]: 5 is not a dimension name")


def test_exported_rows_are_keyed_on_exporter_and_interfaces_without_enrichment() -> None:
    """Flow exports need no database: with no ``enrichment`` section the engine runs no stage, and an auto
    rollup task is keyed on what the records carry (the exporter's address, the interfaces)."""
    from netspectra.config.models import Config
    from netspectra.engine.enrichment import EnrichmentStage
    from netspectra.engine.kind import dimensions_needed
    from netspectra.engine.manager import Manager
    from netspectra.engine.registry import build_groups
    from netspectra.rollup.kind import BASE_DIMENSIONS

    cfg = Config.model_validate({"aggregator": {"types": ["rollup"], "rollup": {"tasks": [{"name": "t"}]}}})
    assert not cfg.enrichment.enabled and dimensions_needed(cfg) == ()
    assert EnrichmentStage.from_config(cfg) is None
    (group,) = build_groups(cfg, writers=False)
    task = group.tasks[0].task
    assert task.params.dimensions == BASE_DIMENSIONS == ("Protocol", "Exporter", "InIf", "OutIf")
    rng = np.random.default_rng(9)
    exp = make_batch(rng, 300, T0, 3 * MIN, export=True).with_dims(None)  # no enrichment columns at all
    exp.out_if[:] = 7  # type: ignore[index]
    manager = Manager([group], enrichment=None, inline=True)
    manager.start()
    try:
        assert manager.submit(exp) and manager.flush(timeout=30)
        task.finish()  # (the manager's stop would hand the rows to the group's writers: there are none)
        rows = task.drain()
    finally:
        manager.stop()
    t = rows.at(0).to_arrow().to_pylist()
    per: dict[tuple[str, int, int], int] = {}
    for r in t:
        key = (r["Exporter"], r["InIf"], r["OutIf"])
        per[key] = per.get(key, 0) + r["Packets"]
    want: dict[tuple[str, int, int], int] = {}
    for i in range(len(exp)):
        key = (f"192.0.2.{int(exp.exporter[i, 15])}", int(exp.in_if[i]), 7)  # type: ignore[index]
        want[key] = want.get(key, 0) + int(exp.packets[i])  # type: ignore[index]
    assert per == want and len(want) == 6  # two exporters x three input interfaces


def test_hostile_counts_saturate_at_every_resolution() -> None:
    """Records of 2**64 - 1 packets and bytes (a hostile exporter): every resolution's row, the rows
    combined over two periods, and the marginals stop at 2**64 - 1 instead of wrapping to a small number,
    as every task's counters (netspectra.weights); the summary's totals add the increments exactly."""
    from netspectra.weights import COUNT_MAX

    rng = np.random.default_rng(3)
    batches = []
    for k in range(3):
        b = make_batch(rng, 4, T0 + k * MIN, 10**9, export=True)
        b.flow_start_ns[:] = b.ts_ns  # one bucket per row
        b.packets[:] = COUNT_MAX
        b.octets[:] = COUNT_MAX
        batches.append(b.with_dims({"SrcAS": np.full(4, 15169, np.uint32)}))
    task, parts = run(batches, ("SrcAS",), drain_every=1)
    combined = RollupRows.combine([(0, p) for p in parts])
    assert combined is not None
    for r in range(len(RESOLUTIONS)):
        rows = combined.at(r)
        assert len(rows) > 0
        assert rows.packets.tolist() == rows.bytes.tolist() == [COUNT_MAX] * len(rows)
    two = RollupRows.combine([(1, parts[0]), (2, parts[0])])  # two periods add up: saturated too
    assert two is not None and set(two.packets.tolist()) == {COUNT_MAX}
    assert task.summary.marginals["SrcAS"] == {(15169,): [COUNT_MAX, COUNT_MAX]}
    # the summary adds each batch's (saturated) increment of the one entry as exact integers
    assert task.summary.packets == task.summary.bytes == 3 * COUNT_MAX


def test_marginal_top_is_the_sorted_head_of_all_values() -> None:
    """``Marginal.top`` (a partition, then a sort of the candidates) equals sorting every value by bytes,
    then packets, then value words — ties at the cut included."""
    from netspectra.rollup.task import Marginal

    rng = np.random.default_rng(12)
    m = Marginal(2, cap=16)
    n = 20_000
    part = rng.integers(0, 3000, (n, 2)).astype(np.uint32)
    pk = rng.integers(1, 4, n).astype(np.uint64)
    by = rng.integers(1, 6, n).astype(np.uint64) * np.uint64(1000)  # few distinct sums: many ties
    m.add(part, pk, by)
    every = sorted(m.as_dict().items(), key=lambda kv: (-kv[1][1], -kv[1][0], kv[0]))
    for k in (1, 3, 10, 100, len(every), len(every) + 5):
        assert m.top(k) == [(key, p, b) for key, (p, b) in every[:k]]
    assert m.top(0) == [] and Marginal(1).top(5) == []


def _row_tuples(rows: RollupRows) -> list[tuple]:
    """The rows handed out, in their order, as (resolution, bucket, epoch, words, packets, bytes)."""
    return [
        (int(r), int(b), int(e), tuple(w.tolist()), int(p), int(y))
        for r, b, e, w, p, y in zip(
            rows.resolution, rows.bucket, rows.epoch, rows.words, rows.packets, rows.bytes, strict=True
        )
    ]


def _count_calls(monkeypatch: pytest.MonkeyPatch, module: object, name: str) -> dict[str, int]:
    """Wrap ``module.name`` (for the test) so that the returned dict's ``"n"`` counts its calls."""
    calls = {"n": 0}
    real = getattr(module, name)

    def counting(*args: object) -> object:
        calls["n"] += 1
        return real(*args)

    monkeypatch.setattr(module, name, counting)
    return calls


def _shifting_batches(seed: int) -> list[PacketBatch]:
    """Batches of 10 s each reaching a minute back, keyed on AS numbers that change every minute: the
    coarser tables hold more tuples than the finest one."""
    rng = np.random.default_rng(seed)
    out = []
    for k in range(60):
        b = make_batch(rng, 300, T0 + k * 10 * 10**9 - MIN, 10 * 10**9 + MIN)
        minute = (b.ts_ns - T0) // MIN
        out.append(b.with_dims({"SrcAS": (100 * minute + rng.integers(0, 4, len(b))).astype(np.uint32)}))
    return out


@pytest.mark.parametrize("overload", [False, True])
def test_carrying_increments_later_gives_the_rows_of_carrying_after_every_batch(
    overload: bool, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The finest table's increments reach the 5-minute and 1-hour tables when something is handed out
    or closed — after every call only while a carry could fill a coarser table to ``max_entries`` (its
    early close would then depend on which increments were carried before it): every drain hands out the
    same rows (identities, epochs, values) and the summary is the same as when they are carried after
    every batch (the task's behaviour before), with and without early closes. (Without the bound, or
    deferring always, the overloaded case's epochs differ: checked when this test was written.)"""
    if overload:
        batches, dims = _shifting_batches(1), ("SrcAS",)
        params = {"max_entries": 24, "close_after_ns": 30 * 10**9}
    else:
        rng = np.random.default_rng(21)
        batches = [make_batch(rng, 3000, T0 + k * 10 * 10**9 - MIN, 3 * MIN) for k in range(30)]
        dims, params = DIMS, {"close_after_ns": 20 * 10**9}
    folds = _count_calls(monkeypatch, kern, "fold")
    with caplog.at_level(logging.INFO, "netspectra.rollup.task"):
        later_task, later = run(batches, dims, drain_every=7, **params)
    later_folds, folds["n"] = folds["n"], 0
    monkeypatch.setattr(RollupTask, "_can_defer", lambda self: False)
    every_task, every = run(batches, dims, drain_every=7, **params)

    assert [sorted(_row_tuples(p)) for p in later] == [sorted(_row_tuples(p)) for p in every]
    a, b = later_task.summary, every_task.summary
    assert (a.packets, a.bytes, a.first_ns, a.last_ns, a.rows_out) == (
        b.packets, b.bytes, b.first_ns, b.last_ns, b.rows_out
    )  # fmt: skip
    assert a.marginals == b.marginals
    if overload:
        assert "open 5m entries (max_entries)" in caplog.text  # a coarser table closed early
        assert (np.concatenate([p.epoch for p in later]) > 0).any()
    else:
        assert later_folds < folds["n"] / 2  # carried far less often


def test_a_close_that_closes_nothing_keeps_the_table() -> None:
    """The watermark passes buckets no open entry is in: the close counts (later entries get the next
    epoch, as before) and the table is left as it is; a close that closes something closes its entries
    where they are (kernels.close_in_place: the same memory, no fresh table)."""
    rng = np.random.default_rng(8)
    task = RollupTask("t", RollupParams(DIMS, close_after_ns=0))
    before = [t.rec for t in task.tables]
    task.update(make_batch(rng, 500, T0 + 5 * MIN, 10**9))  # one minute: the ones before it close
    assert [t.epoch_counter for t in task.tables] == [1, 1, 1]
    assert all(t.rec is r for t, r in zip(task.tables, before, strict=True))
    task.update(make_batch(rng, 500, T0 + 7 * MIN, 10**9))  # minute 5 closes
    fine = task.tables[0]
    assert fine.rec is before[0] and fine.epoch_counter == 2
    assert set(fine.bkt[fine.state != 0].tolist()) == {(T0 + 7 * MIN) // MIN}  # minute 5's entries left
    task.finish()
    rows = task.drain()
    assert int(rows.at(0).packets.sum()) == int(rows.at(2).packets.sum()) == 1000


def test_hostile_batches_in_one_entry_keep_the_summary_of_each_batch() -> None:
    """Three batches of 2**64 - 1-packet records into one entry (one minute, one AS), no snapshot between
    them: the summary still adds each batch's saturated increment (a batch over 2**64 - 1 is carried
    alone, not pending with the others), and a normal batch after them adds its exact total."""
    from netspectra.weights import COUNT_MAX

    rng = np.random.default_rng(13)
    batches = []
    for _ in range(3):
        b = make_batch(rng, 4, T0, 10**9, export=True)
        b.flow_start_ns[:] = b.ts_ns
        b.packets[:] = COUNT_MAX
        b.octets[:] = COUNT_MAX
        batches.append(b.with_dims({"SrcAS": np.full(4, 15169, np.uint32)}))
    normal = make_batch(rng, 50, T0, 10**9, export=True)
    normal.flow_start_ns[:] = normal.ts_ns
    batches.append(normal.with_dims({"SrcAS": np.full(50, 15169, np.uint32)}))
    task, parts = run(batches, ("SrcAS",), drain_every=0)
    assert task.summary.packets == 3 * COUNT_MAX + int(normal.packets.sum())  # type: ignore[union-attr]
    assert task.summary.bytes == 3 * COUNT_MAX + int(normal.octets.sum())  # type: ignore[union-attr]
    assert task.summary.marginals["SrcAS"] == {(15169,): [COUNT_MAX, COUNT_MAX]}
    combined = RollupRows.combine([(0, p) for p in parts])
    assert combined is not None and combined.packets.tolist() == [COUNT_MAX] * 3  # the rows saturate


def _steps_one_minute(
    seed: int, export: bool = False, minute: int = 10
) -> list[tuple[str, PacketBatch | None]]:
    """A script of batches inside one minute (``minute`` 10: midnight, a 5-minute, hour and day boundary,
    so that a close_after of 30 s moves every resolution's close mark inside it; 12: only the 1-minute
    one), snapshots, an end and rows after it (late rows of the same minute: new epochs), then minutes
    after it and a late row before it."""
    rng = np.random.default_rng(seed)
    m = T0 + minute * MIN

    def batch(t0: int, span: int, n: int = 400) -> PacketBatch:
        b = make_batch(rng, n, t0, span, export)
        if export:
            b.flow_start_ns[:] = b.ts_ns  # instants: one bucket each
        # more tuples as it goes: a small max_entries fills while the minute lasts
        return b.with_dims({"SrcAS": rng.integers(0, 4 + 3 * len(steps), n).astype(np.uint32)})

    steps: list[tuple[str, PacketBatch | None]] = []
    for k in range(12):  # 5 s each: the close marks move at m + 30 s
        steps.append(("batch", batch(m + k * 5 * 10**9, 5 * 10**9)))
        if k % 4 == 3:
            steps.append(("drain", None))
        if k == 5:
            steps.append(("peek", None))
    steps += [("finish", None), ("drain", None), ("batch", batch(m + 10**9, 10**9)), ("peek", None)]
    steps += [("batch", batch(m + 2 * 10**9, 10**9)), ("drain", None)]
    steps += [("batch", batch(m + MIN + 10**9, 10**9)), ("batch", batch(m + 10**9, 10**9))]  # another minute
    steps += [("batch", batch(m + 7 * MIN, 3 * MIN)), ("drain", None), ("finish", None), ("drain", None)]
    return steps


def _play(
    steps: list[tuple[str, PacketBatch | None]], dims: tuple[str, ...], net_classes: Any = None, **kw: object
) -> list:
    """Every snapshot (rows sorted: identity and values), the open entries after every step, the summary
    (``net_classes``: the task keys on side codes, netspectra.rollup.codes)."""
    task = RollupTask("t", RollupParams(dims, **kw), capacity=16, net_classes=net_classes)  # type: ignore[arg-type]
    out: list = []
    viewed = 0
    for what, b in steps:
        if what == "batch":
            task.update(b)  # type: ignore[arg-type]
        elif what == "finish":
            task.finish()
        elif what == "period":
            task.begin_period(0)
        else:
            rows = task.drain() if what == "drain" else task.peek()
            out.append(
                sorted(
                    (int(r), int(k), int(e), tuple(w.tolist()), int(p), int(y))
                    for r, k, e, w, p, y in zip(
                        rows.resolution,
                        rows.bucket,
                        rows.epoch,
                        rows.words,
                        rows.packets,
                        rows.bytes,
                        strict=True,
                    )
                )
            )
        out.append(task.open_entries)
        viewed += task._lazy and task.tables[0].count > 0 and task.tables[1].count == 0
    s = task.summary
    out.append((s.packets, s.bytes, s.first_ns, s.last_ns, s.rows_out, s.clamped, s.marginals))
    return [out, viewed]


@pytest.mark.parametrize(
    ("export", "minute", "params"),
    [
        (False, 10, {"close_after_ns": 30 * 10**9}),
        (False, 12, {"close_after_ns": 30 * 10**9}),  # the finest epoch moves alone
        (True, 10, {"close_after_ns": 0}),
        (False, 10, {"close_after_ns": 30 * 10**9, "max_entries": 40}),  # the finest table closes early
        (False, 12, {"close_after_ns": 2 * MIN, "max_entries": 64}),
    ],
)
def test_coarser_tables_held_as_views_give_the_rows_of_real_ones(
    export: bool, minute: int, params: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While every open entry is in one minute, the 5-minute and 1-hour tables are views of the 1-minute
    one (RollupTask._materialize); every snapshot (identities, epochs — which change inside the minute
    here — values), the open entries after every step and the summary are those of carrying every
    increment into real tables, through snapshots, an end, rows after it, early closes, and the minute
    changing (the views made real)."""
    steps = _steps_one_minute(3, export, minute)
    spread = kern.spread
    spreads = {"n": 0}

    def counting_spread(*args: object) -> tuple[int, int]:
        spreads["n"] += 1
        return spread(*args)

    monkeypatch.setattr(kern, "spread", counting_spread)
    lazy, viewed = _play(steps, ("Protocol", "SrcAS"), **params)
    assert viewed >= 3 and spreads["n"] >= 1  # the views were used, and made real with entries open
    monkeypatch.setattr(RollupTask, "lazy_coarse", False)
    real, none = _play(steps, ("Protocol", "SrcAS"), **params)
    assert none == 0
    assert lazy == real
    epochs = {row[2] for snap in lazy if isinstance(snap, list) for row in snap}
    assert len(epochs) >= 2


def test_coarser_views_through_periods_and_hostile_counts(monkeypatch: pytest.MonkeyPatch) -> None:
    """A new period (the views start again), weighted rows of 2**64 - 1 packets in one minute (the
    counters saturate alike) and rows spanning several minutes (made real at once)."""
    from netspectra.weights import COUNT_MAX

    rng = np.random.default_rng(4)
    m = T0 + 3 * MIN
    steps: list[tuple[str, PacketBatch | None]] = []
    for k in range(3):
        b = make_batch(rng, 6, m + k * 10**9, 10**9, export=True)
        b.flow_start_ns[:] = b.ts_ns
        b.packets[:] = COUNT_MAX
        b.octets[:] = COUNT_MAX
        steps.append(("batch", b.with_dims({"SrcAS": np.full(6, 7, np.uint32)})))
    steps += [("peek", None), ("period", None), ("batch", make_batch(rng, 300, m, 10**9, export=True))]
    steps += [("drain", None), ("batch", make_batch(rng, 300, m + MIN, 30 * 10**9)), ("finish", None)]
    steps += [("drain", None)]
    lazy, viewed = _play(steps, DIMS)
    assert viewed >= 3
    monkeypatch.setattr(RollupTask, "lazy_coarse", False)
    assert _play(steps, DIMS)[0] == lazy


def test_spread_kernel_matches_its_reference() -> None:
    """``kernels.spread``: the coarser entries of a finest table's entries (one minute) equal the
    reference's, epochs mapped, and two entries meeting in one coarser entry are refused."""
    rng = np.random.default_rng(6)
    task = RollupTask("t", RollupParams(DIMS), capacity=16)
    task.update(make_batch(rng, 3000, T0 + 10**9, 50 * 10**9))
    task._flush()
    fine = task.tables[0]
    live = np.flatnonzero(fine.state != 0)
    entries = {
        (int(fine.bkt[s]), tuple(int(x) for x in fine.dims[s])): (
            int(fine.pk[s]), int(fine.by[s]), int(fine.state[s]) & 3, int(fine.epoch[s])
        )
        for s in live
    }  # fmt: skip
    fine.epoch[live[::2]] = 1  # two epochs, mapped to 7 and 9
    entries = {
        k: (p, y, st, int(fine.epoch[s])) for s, (k, (p, y, st, _)) in zip(live, entries.items(), strict=True)
    }
    from netspectra.rollup.task import _Table

    for ratio in (5, 60):
        t = _Table(task.words, 64, False)
        emap = np.array([7, 9], np.int64)
        count, low = kern.spread(
            task.words, fine.rec, fine.reci, fine.rec32, fine.rw, fine.epoch, ratio, emap, 0,
            t.rec, t.reci, t.rec32, t.epoch,
        )  # fmt: skip
        assert count == len(live) and low == min(k[0] for k in entries) // ratio
        got = {
            (int(t.bkt[s]), tuple(int(x) for x in t.dims[s])): (
                int(t.pk[s]), int(t.by[s]), int(t.state[s]) & 3, int(t.epoch[s])
            )
            for s in np.flatnonzero(t.state != 0)
        }  # fmt: skip
        assert got == kern.spread_ref(entries, ratio, {0: 7, 1: 9})
    # two minutes: entries of one tuple meet in one 5-minute entry
    task.update(make_batch(rng, 3000, T0 + MIN + 10**9, 50 * 10**9))
    t = _Table(task.words, 4096, False)
    fine = task.tables[0]
    fine.epoch[:] = 0
    got = kern.spread(
        task.words, fine.rec, fine.reci, fine.rec32, fine.rw, fine.epoch, 5, np.zeros(1, np.int64), 0,
        t.rec, t.reci, t.rec32, t.epoch,
    )  # fmt: skip
    assert got[0] == -1


def test_a_table_grown_in_place_is_the_table_rebuilt(monkeypatch: pytest.MonkeyPatch) -> None:
    """A table past ``_MAPPED_BYTES`` grows in its own mapping (mremap, kernels.grow_in_place): every
    slot's record and epoch is where growing a small table copied into a larger one puts it (so the
    snapshots, in order, are the same), also when a view of the table held elsewhere makes the mapping
    impossible to extend (a fresh mapping then)."""
    import netspectra.rollup.task as task_mod

    rng = np.random.default_rng(23)
    batches = []
    for k in range(8):  # 40,000 tuples over two minutes: 64 k slots of 64 bytes, 4 MB
        b = make_batch(rng, 20_000, T0 + k * 15 * 10**9, 15 * 10**9)
        batches.append(b.with_dims({"SrcAS": rng.integers(0, 40_000, 20_000).astype(np.uint32)}))

    def play(hold: bool) -> tuple[list, list]:
        task = RollupTask("t", RollupParams(DIMS), capacity=16)
        snaps, held = [], []
        for i, b in enumerate(batches):
            task.update(b)
            if hold:
                held.append(task.tables[0].rec[:8])  # an export of the mapping: no mremap
            if i % 3 == 2:
                snaps.append(task.peek())
        tables = [(t.rec.copy(), t.epoch.copy(), t.meta.copy()) for t in task.tables]
        if not hold:
            mapped.append(task.tables[0]._map is not None)
        task.finish()
        snaps.append(task.drain())
        return tables, [_row_tuples(s) for s in snaps]

    mapped: list[bool] = []
    grows = _count_calls(monkeypatch, kern, "grow_in_place")
    in_place = play(False)
    assert grows["n"] >= 3 and mapped == [True]
    held = play(True)
    monkeypatch.setattr(task_mod, "_MAPPED_BYTES", 1 << 62)  # never mapped: copied into larger arrays
    grows["n"] = 0
    mapped.clear()
    rebuilt = play(False)
    assert grows["n"] >= 3 and mapped == [False]
    for got in (in_place, held):
        assert got[1] == rebuilt[1]
        for (r1, e1, m1), (r2, e2, m2) in zip(got[0], rebuilt[0], strict=True):
            assert np.array_equal(r1, r2) and np.array_equal(e1, e2) and np.array_equal(m1, m2)


def test_an_early_close_of_every_entry_empties_a_mapped_table_in_place(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``max_entries`` reached with every entry in one bucket closes every entry: the table is then
    emptied at once (``kernels.close_in_place``: its memory cleared; a close that keeps entries, rows of
    two minutes, deletes the others where they are) — every snapshot (in order), every slot's record and
    epoch and the summary are the same for tables in mappings of their own and in arrays, and no close
    allocates a table."""
    import netspectra.rollup.task as task_mod

    rng = np.random.default_rng(31)
    batches = []
    for k in range(6):  # ~3,000 tuples a minute, max_entries 2,048: early closes in each resolution
        b = make_batch(rng, 6000, T0 + (k // 3) * MIN + (k % 3) * 15 * 10**9, 15 * 10**9)
        batches.append(b.with_dims({"SrcAS": rng.integers(0, 3000, 6000).astype(np.uint32)}))

    def play() -> tuple[list, list, tuple]:
        task = RollupTask("t", RollupParams(DIMS, max_entries=2048), capacity=16)
        snaps = []
        for i, b in enumerate(batches):
            task.update(b)
            if i % 2 == 1:
                snaps.append(task.drain())
        tables = [(t.rec.copy(), t.epoch.copy(), t.meta.copy()) for t in task.tables]
        task.finish()
        snaps.append(task.drain())
        s = task.summary
        return tables, [_row_tuples(p) for p in snaps], (s.packets, s.bytes, s.rows_out, s.marginals)

    monkeypatch.setattr(task_mod, "_MAPPED_BYTES", 4096)  # every table past 4 KB in its own mapping
    allocs = {"n": 0}
    real_alloc = task_mod._Table._alloc

    def alloc(self, cap):  # type: ignore[no-untyped-def]
        allocs["n"] += 1
        return real_alloc(self, cap)

    monkeypatch.setattr(task_mod._Table, "_alloc", alloc)
    closes = _count_calls(monkeypatch, kern, "close_in_place")
    in_place = play()
    mapped_allocs = allocs["n"]
    assert closes["n"] >= 3  # early closes of mapped tables
    monkeypatch.setattr(task_mod, "_MAPPED_BYTES", 1 << 62)  # never mapped
    allocs["n"] = 0
    rebuilt = play()
    assert allocs["n"] == mapped_allocs  # no close allocates: the tasks' own tables, and finish's
    assert in_place[1] == rebuilt[1] and in_place[2] == rebuilt[2]
    assert any(e > 0 for snap in in_place[1] for e in [row[2] for row in snap])  # epochs moved
    for (r1, e1, m1), (r2, e2, m2) in zip(in_place[0], rebuilt[0], strict=True):
        assert np.array_equal(r1, r2) and np.array_equal(e1, e2) and np.array_equal(m1, m2)


@pytest.mark.parametrize("export", [False, True])
def test_rows_counted_a_chunk_at_a_time_are_those_of_whole_batches(
    export: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``update`` gathers and counts CHUNK rows at a time: the tables (every record, in its slot), the
    snapshots and the summary are those of counting each batch in one call, also when the table fills
    inside a chunk (a small start and a small max_entries: growth and early closes mid-chunk)."""
    import netspectra.rollup.task as task_mod

    rng = np.random.default_rng(29)
    batches = [
        make_batch(rng, 5000, T0 + k * 40 * 10**9 - MIN, 2 * MIN, export).with_dims(
            {"SrcAS": rng.integers(0, 200, 5000).astype(np.uint32)}
        )
        for k in range(6)
    ]

    def play() -> tuple:
        task = RollupTask("t", RollupParams(DIMS, max_entries=300, close_after_ns=20 * 10**9), capacity=16)
        snaps = []
        for b in batches:
            task.update(b)
            snaps.append(task.drain())
        tables = [(t.rec.copy(), t.epoch.copy(), t.meta.copy()) for t in task.tables]
        task.finish()
        snaps.append(task.drain())
        rows = [
            [(int(r), int(k), int(e), tuple(w.tolist()), int(p), int(y)) for r, k, e, w, p, y in zip(
                s.resolution, s.bucket, s.epoch, s.words, s.packets, s.bytes, strict=True)]
            for s in snaps
        ]  # fmt: skip
        s = task.summary
        return tables, rows, (s.packets, s.bytes, s.first_ns, s.last_ns, s.rows_out, s.marginals)

    monkeypatch.setattr(task_mod, "CHUNK", 333)
    chunked = play()
    assert any(row[2] > 0 for snap in chunked[1] for row in snap)  # entries closed early, reopened
    monkeypatch.setattr(task_mod, "CHUNK", 1 << 40)
    whole = play()
    assert chunked[1:] == whole[1:]
    for (r1, e1, m1), (r2, e2, m2) in zip(chunked[0], whole[0], strict=True):
        assert np.array_equal(r1, r2) and np.array_equal(e1, e2) and np.array_equal(m1, m2)


def test_config_memory_bound_counts_the_working_copy_of_key_words() -> None:
    """``config check``'s bound of a rollup task (RollupAggregator.memory_bytes) holds the tables at
    max_entries and the working copy of CHUNK rows' key words, which a batch of more rows fills exactly."""
    from netspectra.config.models import Config
    from netspectra.engine.registry import build_groups
    from netspectra.kinds import AGGREGATORS
    from netspectra.rollup.dims import BY_NAME, NAMES
    from netspectra.rollup.keyplan import CHUNK, KeyPlan
    from netspectra.rollup.kind import _slot_bytes

    cfg = Config.model_validate({"aggregator": {"types": ["rollup"], "rollup": {"tasks": [{"name": "t"}]}}})
    task_cfg = cfg.aggregator.group("rollup").tasks[0]
    (group,) = build_groups(cfg, writers=False)
    task = group.tasks[0].task
    # an auto task's bound: the most words an auto key can have (every dimension, enrichment on)
    words = KeyPlan.of([BY_NAME[d].bits for d in NAMES]).key_words
    bound = AGGREGATORS.get("rollup").memory_bytes(task_cfg)
    tables = len(RESOLUTIONS) * 2 * task_cfg.max_entries * _slot_bytes(words)
    assert bound == tables + 2 * CHUNK * words * 4
    task.update(make_batch(np.random.default_rng(4), 3 * CHUNK + 5, T0, 3 * MIN, export=True))
    # bounded by CHUNK rows, whatever the batch
    assert task._scratch.nbytes == 2 * CHUNK * task.words * 4 <= 2 * CHUNK * words * 4
    assert task.memory_bytes <= bound


@pytest.mark.parametrize("lazy", [True, False])
def test_a_discarded_final_snapshot_counts_what_a_drain_hands_out(
    monkeypatch: pytest.MonkeyPatch, lazy: bool
) -> None:
    """``discard`` (the engine's final snapshot of a group no one reads) leaves the task as ``drain``
    does — the same ``rows_out``, the same rows in every later snapshot — without making the rows: the
    closed entries of ``finish`` are counted (kernels.count_changed), not handed out. Over the views of a
    capture within one minute (lazy coarser tables) and real coarser tables, with early closes at
    ``max_entries`` (rows already made in the outbox) and a drain in the middle (entries handed out
    before, not counted again)."""
    monkeypatch.setattr(RollupTask, "lazy_coarse", lazy)
    rng = np.random.default_rng(41)
    one_minute = [make_batch(rng, 3_000, T0 + k * 10**9, 10**9) for k in range(4)]
    for b in one_minute:
        b.dims["SrcAS"][:] = rng.integers(0, 5_000, len(b)).astype(np.uint32)
    spread = [make_batch(rng, 3_000, T0 + k * 7 * MIN, 20 * MIN) for k in range(3)]

    def play(batches: list[PacketBatch], max_entries: int, discard: bool) -> tuple:
        task = RollupTask("t", RollupParams(DIMS, max_entries=max_entries), capacity=16)
        seen = []
        for i, b in enumerate(batches):
            task.update(b)
            if i == 1:
                seen.append(_row_tuples(task.drain()))
        task.finish()
        rows_out = None
        if discard:
            made = _count_calls(monkeypatch, kern, "rehash")
            task.discard()
            assert made["n"] == 0  # the closed entries were counted, not written out
            monkeypatch.undo()
            monkeypatch.setattr(RollupTask, "lazy_coarse", lazy)
        else:
            rows_out = len(task.drain())
        after = _row_tuples(task.peek())
        task.update(make_batch(np.random.default_rng(5), 500, T0 + 30 * MIN, MIN))  # the task goes on
        task.finish()
        later = _row_tuples(task.drain())
        return task.summary.rows_out, task.summary.marginals, seen, after, later, rows_out

    for batches, max_entries in (
        (one_minute, 100_000),
        (one_minute, 2_000),
        (spread, 100_000),
        (spread, 300),
    ):
        kept = play(batches, max_entries, discard=False)
        gone = play(batches, max_entries, discard=True)
        assert gone[:5] == kept[:5]
        assert kept[3] == []  # nothing left after either
        assert kept[5] > 0


@pytest.mark.parametrize("max_entries", [100_000, 300])
def test_an_unread_task_counts_its_closed_rows_as_they_close(max_entries: int) -> None:
    """``forget_unread`` (the engine: nothing reads this task's rows): the entries that close during the
    run (by the watermark, and early at ``max_entries``) are counted in ``rows_out`` as they close and
    not kept (the outbox stays empty); at the end ``rows_out`` and the tallies are those of a task that
    kept every row and handed them out in one drain."""
    rng = np.random.default_rng(47)
    batches = [make_batch(rng, 3_000, T0 + k * 4 * MIN, 6 * MIN) for k in range(8)]
    summaries = []
    for unread in (False, True):
        task = RollupTask("t", RollupParams(DIMS, max_entries=max_entries), capacity=16)
        if unread:
            task.forget_unread()
        for b in batches:
            task.update(b)
            assert not any(task._outbox) or not unread
        kept = sum(len(p) for o in task._outbox for p in o)
        assert (kept > 0) != unread  # buckets closed during the run: rows kept or counted
        task.finish()
        if unread:
            task.discard()
        else:
            assert len(task.drain()) > kept
        summaries.append(task.summary)
    a, b = summaries
    assert a.rows_out == b.rows_out and a.marginals == b.marginals and a.packets == b.packets


def test_count_changed_matches_the_reference() -> None:
    """kernels.count_changed: the entries collect() would write, marked handed out with ``clear``."""
    rng = np.random.default_rng(43)
    task = RollupTask("t", RollupParams(DIMS), capacity=16)
    for k in range(3):
        task.update(make_batch(rng, 2_000, T0 + k * MIN, MIN))
    fine = task.tables[0]
    task.drain()
    task.update(make_batch(rng, 300, T0 + 2 * MIN, MIN))  # some entries changed again
    state = fine.state.copy()
    want = kern.count_changed_ref(state, True)
    assert 0 < want < fine.count
    assert kern.count_changed(fine.rec32, fine.rw, 0) == want
    assert kern.count_changed(fine.rec32, fine.rw, 1) == want
    assert fine.state.tolist() == state.tolist()
    assert kern.count_changed(fine.rec32, fine.rw, 1) == 0


def test_the_summary_carried_a_chunk_at_a_time_is_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    """The carry's summary (``RollupTask._count``) reads ``COUNT_CHUNK`` entries at a time through scratch
    arrays it keeps, and adds a large chunk's tallies in two threads: totals, time range and every
    dimension's tally are those of one piece in one thread, also with chunks of 7 entries and scratch
    arrays reused by several carries; a tally's error in either thread is raised."""
    import netspectra.rollup.task as task_mod

    rng = np.random.default_rng(41)
    batches = [
        make_batch(rng, 5000, T0 + k * 20 * 10**9, 20 * 10**9).with_dims(
            {"SrcAS": rng.integers(0, 3000, 5000).astype(np.uint32)}
        )
        for k in range(6)
    ]

    def play() -> tuple:
        task = RollupTask("t", RollupParams(DIMS), capacity=16)
        for i, b in enumerate(batches):
            task.update(b)
            if i % 2:
                task.drain()  # a carry per snapshot: the scratch arrays serve again
        task.finish()
        s = task.summary
        return s.packets, s.bytes, s.first_ns, s.last_ns, s.marginals

    monkeypatch.setattr(task_mod, "PARALLEL_TALLY_ROWS", 1 << 62)  # one thread
    whole = play()
    assert len(whole[4]["SrcAS"]) > 2000
    monkeypatch.setattr(task_mod, "COUNT_CHUNK", 7)
    assert play() == whole
    # every chunk's tallies in two threads (a large carry's): the same, and an error in either is raised
    monkeypatch.setattr(task_mod, "PARALLEL_TALLY_ROWS", 1)
    threads = _count_calls(monkeypatch, task_mod, "_add_tallies_in_two")
    assert play() == whole and threads["n"] > 100
    monkeypatch.setattr(task_mod, "COUNT_CHUNK", 1 << 16)
    assert play() == whole
    real_add = task_mod.Marginal.add

    def failing(self, part, pk, by):  # type: ignore[no-untyped-def]
        if threading.current_thread() is not threading.main_thread():  # the second thread's tallies
            raise MemoryError("tally")
        return real_add(self, part, pk, by)

    monkeypatch.setattr(task_mod.Marginal, "add", failing)
    with pytest.raises(MemoryError, match="tally"):
        play()


def combine_ref(parts: list[tuple[int, RollupRows]]) -> RollupRows:
    """RollupRows.combine as it was written first (a sort of every column, one after the other): per
    identity (period, resolution, bucket, words, epoch) the latest row, summed per (resolution, bucket,
    words), in that order."""
    from netspectra.weights import sat_reduceat

    words = np.concatenate([p.words for _, p in parts])
    res = np.concatenate([p.resolution for _, p in parts]).astype(np.int64)
    bkt = np.concatenate([p.bucket for _, p in parts])
    epoch = np.concatenate([p.epoch for _, p in parts])
    period = np.concatenate([np.full(len(p), start, np.int64) for start, p in parts])
    pk = np.concatenate([p.packets for _, p in parts])
    by = np.concatenate([p.bytes for _, p in parts])
    columns = [words[:, j] for j in range(words.shape[1] - 1, -1, -1)]
    idx = np.lexsort([np.arange(len(bkt)), epoch, period, *columns, bkt, res])
    ident = np.column_stack([res, bkt, words.astype(np.int64), period, epoch])[idx]
    last_of = np.ones(len(idx), bool)
    last_of[:-1] = (ident[1:] != ident[:-1]).any(axis=1)
    keep = idx[last_of]
    group = np.column_stack([res, bkt, words.astype(np.int64)])[keep]
    starts = np.ones(len(keep), bool)
    starts[1:] = (group[1:] != group[:-1]).any(axis=1)
    first = np.flatnonzero(starts)
    sel = keep[first]
    last = parts[-1][1]
    return RollupRows(
        last.task_name, last.dimensions, res[sel].astype(np.uint8), bkt[sel], np.zeros(len(sel), np.int64),
        words[sel], sat_reduceat(pk[keep], first), sat_reduceat(by[keep], first), last.dictionaries,
    )  # fmt: skip


@pytest.mark.parametrize("seed", range(6))
def test_combine_gives_the_rows_of_a_sort_of_every_column(seed: int) -> None:
    """RollupRows.combine (its rows' keys packed into a few 64-bit keys, then sorted) gives exactly the
    rows, order included, of the column-by-column sort it replaced: several parts and periods, versions
    of one identity (a later one wins), several epochs of one group (summed), constant columns, words of
    all 32 bits, buckets before 1970 and far apart, saturating sums."""
    from netspectra.weights import COUNT_MAX

    rng = np.random.default_rng(seed)
    parts = []
    for _ in range(int(rng.integers(1, 5))):
        n = int(rng.integers(1, 400))
        words = np.zeros((n, 6), np.uint32)
        words[:, 0] = rng.choice([6, 17], n)
        words[:, 2] = rng.integers(0, 3, n)
        words[:, 3] = rng.choice([0, 1, 2**31, 2**32 - 1], n)
        words[:, 4] = rng.integers(0, 70_000, n)
        words[:, 5] = 7  # constant
        bkt = rng.choice([-(2**40), -3, 0, 5, 28_401_840, 2**41], n).astype(np.int64)
        rows = RollupRows(
            "t", ("a", "b", "c", "d", "e", "f"), rng.integers(0, 3, n).astype(np.uint8), bkt,
            rng.integers(0, 3, n).astype(np.int64), words, rng.integers(1, 10, n).astype(np.uint64),
            np.array([1, COUNT_MAX], np.uint64)[rng.integers(0, 2, n)], {},
        )  # fmt: skip
        parts.append((int(rng.choice([1, 2])) if seed % 2 else 1, rows))
    got, want = RollupRows.combine(parts), combine_ref(parts)
    assert got is not None and len(got) > 0
    for name in ("resolution", "bucket", "epoch", "words", "packets", "bytes"):
        assert np.array_equal(getattr(got, name), getattr(want, name)), name


@pytest.mark.parametrize("far", [False, True])
def test_time_columns_order_rows_by_resolution_then_bucket(far: bool) -> None:
    """_time_columns: one column, the rank of (resolution, bucket) among those present, when their slots
    fit a table; else the resolution and the bucket's offset (buckets far apart, before 1970 too). Either
    way the columns order and group the rows as (resolution, bucket) does."""
    from netspectra.rollup.task import _time_columns

    rng = np.random.default_rng(3)
    n = 2000
    res = rng.integers(0, 3, n).astype(np.int64)
    base = np.array([28_401_000, 5_680_200, 473_350])[res]
    bkt = base + rng.integers(0, 1440 // np.array([1, 5, 60])[res] + 1)
    if far:
        bkt[::7] = rng.choice([-(2**40), 2**41], len(bkt[::7]))
    cols = _time_columns(res, bkt)
    assert len(cols) == (2 if far else 1)
    for values, lo, hi in cols:
        assert int(values.min()) == lo and int(values.max()) == hi
    got = np.lexsort([c.astype(np.int64) if c.dtype != np.uint64 else c for c, _, _ in reversed(cols)])
    want = np.lexsort([bkt, res])
    assert np.array_equal(res[got], res[want]) and np.array_equal(bkt[got], bkt[want])
    ident = np.column_stack([c.astype(np.uint64) for c, _, _ in cols])
    pairs = {(int(r), int(b)) for r, b in zip(res, bkt, strict=True)}
    assert len({tuple(row) for row in ident.tolist()}) == len(pairs)
    if not far:
        assert cols[0][2] == len(pairs) - 1  # dense: 0 .. distinct pairs - 1


@pytest.mark.parametrize("width", [1, 3])
def test_group_ids_keep_each_groups_rows_in_their_order(width: int) -> None:
    """_group_ids: the rows in the order of their groups (numbered in the order of their values), each
    group's rows in their own order — also where an unstable sort scrambled them (100 k rows, 40
    groups; one or two sort keys)."""
    from netspectra.rollup.task import _group_ids

    rng = np.random.default_rng(5)
    n = 100_000
    words = np.zeros((n, width), np.uint32)
    words[:, 0] = rng.integers(0, 10, n)
    if width > 1:
        words[:, 1] = rng.choice([0, 2**32 - 1], n)
        words[:, 2] = rng.choice([7, 2**31 + 7], n)
    res = rng.integers(0, 2, n).astype(np.int64)
    bkt = np.zeros(n, np.int64)
    group, order = _group_ids(res, bkt, width, lambda j: words[:, j])
    want = np.lexsort([np.arange(n), *[words[:, j] for j in reversed(range(width))], res])
    assert np.array_equal(order, want)
    assert np.array_equal(group[want], np.cumsum(np.r_[True, np.diff(group[want]) != 0]) - 1)
    key = res * 2**40 + (words[:, 0].astype(np.int64) << 2)
    if width > 1:
        key += (words[:, 1] > 0) * 2 + (words[:, 2] > 7)
    assert len(np.unique(group)) == len(np.unique(key))


def test_combine_of_empty_parts_is_empty() -> None:
    rows = RollupRows(
        "t", ("SrcNetName",), np.zeros(0, np.uint8), np.zeros(0, np.int64), np.zeros(0, np.int64),
        np.zeros((0, 1), np.uint32), np.zeros(0, np.uint64), np.zeros(0, np.uint64), {},
    )  # fmt: skip
    got = RollupRows.combine([(0, rows), (1, rows)])
    assert got is not None and len(got) == 0 and got.words.shape == (0, 1)
    assert got.to_arrow(dictionary=True).num_rows == 0


def test_columns_decode_every_kind_of_dimension_in_arrow() -> None:
    """RollupRows.columns: numbers as integer arrays, an exporter address as its text ('' for none), a
    text dimension by its dictionary, a code no dictionary word has as '#<code>' (Arrow's take, not a
    Python string per row); the same values to_arrow puts in the table."""
    from netspectra.output.addr import parse_ips

    exporter = parse_ips(["192.0.2.1", "2001:db8::7", "192.0.2.1", "::"]).view(np.uint32)
    words = np.zeros((4, 7), np.uint32)
    words[:, 0] = [6, 17, 6, 1]  # Protocol
    words[:, 1:5] = exporter
    words[:, 5] = [64500, 0, 15169, 7]  # SrcAS
    words[:, 6] = [1, 0, 5, 2]  # SrcNetName: code 5 has no word
    rows = RollupRows(
        "t", ("Protocol", "Exporter", "SrcAS", "SrcNetName"), np.zeros(4, np.uint8), np.arange(4),
        np.zeros(4, np.int64), words, np.ones(4, np.uint64), np.ones(4, np.uint64),
        {"SrcNetName": ("", "lan", "dmz")},
    )  # fmt: skip
    cols = rows.columns()
    assert cols["Protocol"].dtype == np.uint8 and cols["Protocol"].tolist() == [6, 17, 6, 1]
    assert cols["SrcAS"].dtype == np.uint32 and cols["SrcAS"].tolist() == [64500, 0, 15169, 7]
    assert cols["Exporter"].to_pylist() == ["192.0.2.1", "2001:db8::7", "192.0.2.1", ""]
    assert cols["SrcNetName"].to_pylist() == ["lan", "", "#5", "dmz"]
    table = rows.to_arrow()
    assert table.column("SrcNetName").to_pylist() == ["lan", "", "#5", "dmz"]
    assert table.column("TaskName").to_pylist() == ["t"] * 4
    assert table.column("Resolution").to_pylist() == ["1m"] * 4
    assert str(table.schema.field("SrcNetName").type) == "string"


def test_dictionary_columns_write_the_files_of_string_columns(tmp_path: pathlib.Path) -> None:
    """to_arrow(dictionary=True) (the text columns as dictionaries, how analyze --out writes rollup rows):
    the same values; written as Parquet without the Arrow schema it reads back as to_arrow()'s table
    (strings, the UTC timestamps, the unsigned widths), and as CSV it is the same text."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from netspectra.output.addr import parse_ips
    from netspectra.output.flow_table import write_csv, write_parquet

    words = np.zeros((5, 7), np.uint32)
    words[:, 0] = [6, 17, 6, 1, 6]
    words[:, 1:5] = parse_ips(["192.0.2.1", "::", "2001:db8::7", "192.0.2.1", "::"]).view(np.uint32)
    words[:, 5] = [64500, 0, 15169, 7, 0]
    words[:, 6] = [1, 0, 5, 2, 1]  # code 5: no word
    rows = RollupRows(
        "t,1", ("Protocol", "Exporter", "SrcAS", "SrcNetName"), np.array([0, 1, 2, 0, 1], np.uint8),
        np.array([-3, 0, 5, 2**40, 7]), np.zeros(5, np.int64), words, np.arange(1, 6, dtype=np.uint64),
        np.array([1, 2, 3, 4, 2**64 - 1], np.uint64), {"SrcNetName": ("", "lan, \"dmz\"", "wan", "unused")},
    )  # fmt: skip
    plain, coded = rows.to_arrow(), rows.to_arrow(dictionary=True)
    assert pa.types.is_dictionary(coded.schema.field("SrcNetName").type)
    assert pa.types.is_dictionary(coded.schema.field("TaskName").type)
    # the dictionary holds the words the rows use (a writer's page and code width follow it)
    assert coded.column("SrcNetName").chunk(0).dictionary.to_pylist() == ["", 'lan, "dmz"', "wan", "#5"]
    assert coded.column("SrcNetName").cast(pa.string()).to_pylist() == [
        'lan, "dmz"',
        "",
        "#5",
        "wan",
        'lan, "dmz"',
    ]
    for name in plain.column_names:
        assert coded.column(name).cast(plain.schema.field(name).type).equals(plain.column(name)), name
    back = pq.read_table(write_parquet(coded, tmp_path / "coded.parquet", store_schema=False))
    assert back.schema.equals(plain.schema) and back.equals(plain)
    a = write_csv(plain, tmp_path / "plain.csv").read_bytes()
    assert write_csv(coded, tmp_path / "coded.csv").read_bytes() == a
