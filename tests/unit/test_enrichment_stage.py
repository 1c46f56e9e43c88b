"""The engine's enrichment stage: every batch enriched once before the tasks (only what they read), no
stage and no cost without an ``enrichment`` section, reloads between batches (none lost, none mixed),
missing or damaged databases counted and reported once, a failing stage never losing a batch."""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from mmdb_writing import write_mmdb

from netspectra.batch import PacketBatch
from netspectra.config.models import Config
from netspectra.engine.enrichment import EnrichmentStage
from netspectra.engine.groups import LockedTask, TaskGroup
from netspectra.engine.kind import dimensions_needed
from netspectra.engine.manager import Manager

MMDB = Path("/work/shared/data/mmdb")
if not MMDB.exists():  # the repository's copy of the shared test databases, when there is one
    MMDB = Path(__file__).resolve().parents[1] / "data" / "mmdb"


def config(enrichment: dict[str, Any] | None, dimensions: list[str] | None = None) -> Config:
    agg: dict[str, Any] = {"types": ["rollup"], "rollup": {"tasks": [{"name": "traffic"}]}}
    if dimensions is not None:
        agg["rollup"]["tasks"][0]["dimensions"] = dimensions
    doc: dict[str, Any] = {"aggregator": agg}
    if enrichment is not None:
        doc["enrichment"] = enrichment
    return Config.model_validate(doc)


def batch(n: int, first_octet: int = 1, t0: int = 1_700_000_000 * 10**9) -> PacketBatch:
    b = PacketBatch.empty(n)
    b.ts_ns[:] = t0 + np.arange(n)
    b.src_ip[:] = 0
    b.src_ip[:, 10:12] = 0xFF
    b.src_ip[:, 12] = first_octet
    b.src_ip[:, 15] = np.arange(n) % 250
    b.dst_ip[:] = b.src_ip[::-1]
    b.src_port[:] = 1
    b.dst_port[:] = 2
    b.protocol[:] = 6
    b.length[:] = 100
    return b


class Recorder:
    """A task that keeps what it was given."""

    kind = "recorder"

    def __init__(self, name: str) -> None:
        self.name = name
        self.batches: list[PacketBatch] = []

    def update(self, b: PacketBatch) -> None:
        self.batches.append(b)

    def snapshot(self) -> None:
        return None

    def reset(self) -> None:
        pass


def recording_manager(
    stage: EnrichmentStage | None, tasks: int = 2, **kw: Any
) -> tuple[Manager, list[Recorder]]:
    recs = [Recorder(f"r{i}") for i in range(tasks)]
    group = TaskGroup("rec", tuple(LockedTask(r) for r in recs), (), lambda w, s, m: None)
    return Manager([group], enrichment=stage, **kw), recs


def test_no_section_no_stage_and_no_cost() -> None:
    cfg = config(None)
    assert EnrichmentStage.from_config(cfg) is None
    m = Manager.from_config(cfg, writers=False)
    assert m.enrichment is None
    # a configured section that no task reads: nothing computed either
    cfg = Config.model_validate(
        {
            "aggregator": {"types": ["exact"], "exact": {"tasks": [{"name": "t", "key_fields": ["SrcIP"]}]}},
            "enrichment": {"networks": {"1.0.0.0/8": "one"}},
        }
    )
    assert dimensions_needed(cfg) == () and Manager.from_config(cfg, writers=False).enrichment is None
    m, (rec, _) = recording_manager(None)
    with m:
        m.submit(batch(10))
    assert rec.batches[0].dims is None


def test_only_the_columns_tasks_read_are_computed() -> None:
    cfg = config({"networks": {"1.0.0.0/8": {"name": "one", "role": "edge"}}}, ["Protocol", "SrcNetName"])
    assert dimensions_needed(cfg) == ("SrcNetName",)
    # the rollup task reads the side through its code: that is all the stage computes for it, with the
    # dictionaries of the side's text columns (the codes decode to them)
    stage = EnrichmentStage.from_config(cfg)
    assert stage is not None and stage.columns == ("SrcNetName",) and stage.codes == ("Src",)
    assert stage.arrays == ()
    out = stage.apply(batch(100))
    assert set(out.dims) == {"SrcCode"}  # type: ignore[arg-type]
    assert {"SrcNetName", "SrcNetRole", "SrcCountry"} <= set(out.dictionaries)  # type: ignore[arg-type]
    classes = stage.enricher._networks.class_attr
    cls = (out.dims["SrcCode"] & np.uint64((1 << 21) - 1)).astype(np.intp)  # type: ignore[index]
    assert list(np.asarray(out.dictionaries["SrcNetName"])[classes[0, cls]][:3]) == ["one"] * 3  # type: ignore[index]
    # asked as a column (a key field would), it is an array of the batch
    stage = EnrichmentStage.from_config(cfg, ["SrcNetName"])
    assert stage is not None and stage.columns == stage.arrays == ("SrcNetName",) and stage.codes == ()
    out = stage.apply(batch(100))
    assert set(out.dims) == {"SrcNetName"}  # type: ignore[arg-type]
    assert set(out.dictionaries) == {"SrcNetName"}  # type: ignore[arg-type]
    assert list(np.asarray(out.dictionaries["SrcNetName"])[out.dims["SrcNetName"]][:3]) == ["one"] * 3  # type: ignore[index]
    # the destination side was not looked up at all
    assert set(stage.enricher.metrics()["misses"]) == {"SrcAS", "SrcCountry", "SrcNet"}
    # auto dimensions: what the section can fill, and not what it cannot
    auto = config({"networks": {"1.0.0.0/8": {"name": "one", "country": "FR"}}})
    assert dimensions_needed(auto) == ("SrcCountry", "DstCountry", "SrcNetName", "DstNetName")


def test_every_batch_is_enriched_once_for_every_task() -> None:
    cfg = config({"networks": {"1.0.0.0/8": "one", "2.0.0.0/8": "two"}}, ["SrcNetName", "DstNetName"])
    stage = EnrichmentStage.from_config(cfg, ["SrcNetName", "DstNetName"])  # arrays: the recorders read them
    m, recs = recording_manager(stage, tasks=3, num_workers=3)
    with m:
        for k in range(20):
            m.submit(batch(1000, first_octet=1 + k % 2))
        m.flush()
    assert stage is not None and stage.enricher.metrics()["batches"] == 20  # once per batch
    for i in range(20):
        got = [r.batches[i] for r in recs]
        assert all(g is got[0] for g in got)  # the same enriched batch for every task
        names = np.asarray(got[0].dictionaries["SrcNetName"])[got[0].dims["SrcNetName"]]  # type: ignore[index]
        assert set(names) == {"one" if i % 2 == 0 else "two"}


def _asn_db(path: Path, asn: int) -> None:
    tmp = path.with_suffix(f".{asn}.tmp")
    write_mmdb(tmp, [("1.0.0.0/8", {"autonomous_system_number": asn})])
    os.replace(tmp, path)  # atomically, as geoipupdate does


def test_reload_mid_stream_through_the_engine_loses_no_batch_and_mixes_none(tmp_path: Path) -> None:
    path = tmp_path / "asn.mmdb"
    _asn_db(path, 100)
    cfg = config({"geoip": {"asn_database": str(path), "check_interval": "0s"}}, ["SrcAS"])
    stage = EnrichmentStage.from_config(cfg, ["SrcAS"])  # as an array: the recorder reads it
    m, (rec,) = recording_manager(stage, tasks=1, num_workers=1)
    stop = threading.Event()
    submitted = [0]

    def feed() -> None:
        while not stop.is_set():
            m.submit(batch(5000))
            submitted[0] += 1

    with m:
        feeder = threading.Thread(target=feed)
        feeder.start()
        try:
            for version in (200, 300):
                time.sleep(0.05)
                _asn_db(path, version)
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline:
                    if any(int(b.dims["SrcAS"][0]) == version for b in rec.batches[-3:]):  # type: ignore[index]
                        break
                    time.sleep(0.01)
        finally:
            stop.set()
            feeder.join()
        m.flush()
    assert len(rec.batches) == submitted[0]  # none lost
    answers = [set(b.dims["SrcAS"].tolist()) for b in rec.batches]  # type: ignore[index]
    assert all(len(a) == 1 for a in answers)  # none mixed
    order = [next(iter(a)) for a in answers]
    assert sorted(set(order)) == [100, 200, 300] and order == sorted(order)
    assert stage is not None and stage.enricher.metrics()["reloads"]["asn"] == 2


@pytest.mark.parametrize(
    ("path", "says"),
    [
        ("/nonexistent/GeoLite2-ASN.mmdb", "no such file"),
        (str(MMDB / "MaxMind-DB-test-broken-search-tree-24.mmdb"), "damaged"),
    ],
)
def test_missing_or_damaged_database_starts_without_it_says_so_once_and_counts(
    path: str, says: str, caplog: pytest.LogCaptureFixture
) -> None:
    if not Path(path).exists() and "nonexistent" not in path:
        pytest.skip(f"{path} is not there (the shared MMDB test databases)")
    cfg = config({"geoip": {"asn_database": path}, "networks": {"1.0.0.0/8": "one"}}, ["SrcAS", "SrcNetName"])
    with caplog.at_level(logging.WARNING):
        stage = EnrichmentStage.from_config(cfg, ["SrcAS", "SrcNetName"])  # arrays: the recorder reads them
        m, (rec,) = recording_manager(stage, tasks=1, inline=True)
        with m:
            for _ in range(5):
                m.submit(batch(200))
    warnings = [r for r in caplog.records if "asn database" in r.getMessage()]
    assert (
        len(warnings) == 1
        and says in warnings[0].getMessage()
        and "runs without it" in warnings[0].getMessage()
    )
    assert stage is not None
    summary = stage.summary()
    assert summary["unenriched_rows"]["asn"] == 1000 and summary["rows"] == 1000
    assert summary["databases"]["asn"]["loaded"] is False
    # what it can do, it does: the networks still name the rows
    assert (rec.batches[0].dims["SrcNetName"] > 0).all()  # type: ignore[index]
    assert (rec.batches[0].dims["SrcAS"] == 0).all()  # type: ignore[index]


@pytest.mark.parametrize("kind", ["missing", "directory"])
def test_a_database_the_configuration_warned_about_is_warned_about_once(
    tmp_path: Path, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A command loads its configuration (whose warnings name a database path that is no usable file)
    and then the stage, which fails to load it: one warning in all, the configuration's; the stage's
    says it at INFO. A later change of the problem is a warning again (a reload)."""
    import yaml

    from netspectra.config.loader import load_config

    db = tmp_path / "GeoLite2-ASN.mmdb"
    if kind == "directory":
        db.mkdir()
    path = tmp_path / "c.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "enrichment": {"geoip": {"asn_database": str(db)}, "networks": {"1.0.0.0/8": "one"}},
                "aggregator": {"types": ["rollup"], "rollup": {"tasks": [{"name": "t"}]}},
            }
        )
    )
    with caplog.at_level(logging.INFO):
        cfg = load_config(path)
        stage = EnrichmentStage.from_config(cfg, ["SrcAS", "SrcNetName"])
    assert stage is not None and cfg.warnings_logged
    said = [r for r in caplog.records if str(db) in r.getMessage()]
    assert [r.levelno for r in said].count(logging.WARNING) == 1, [r.getMessage() for r in said]
    assert "asn_database" in said[0].getMessage()  # the configuration's, naming the key
    assert any(r.levelno == logging.INFO and "runs without it" in r.getMessage() for r in said)
    assert stage.summary()["databases"]["asn"]["loaded"] is False


def test_a_failing_stage_never_loses_a_batch(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = config({"networks": {"1.0.0.0/8": "one"}}, ["SrcNetName", "SrcAS"])
    stage = EnrichmentStage.from_config(cfg, ["SrcNetName", "SrcAS"])  # arrays: the recorder reads them
    coded = EnrichmentStage.from_config(cfg)  # the rollup task's: the side code
    assert stage is not None and coded is not None and coded.codes == ("Src",)

    def broken(*a: Any, **kw: Any) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(stage.enricher, "enrich", broken)
    monkeypatch.setattr(coded.enricher, "enrich", broken)
    m, (rec,) = recording_manager(stage, tasks=1, inline=True)
    with caplog.at_level(logging.ERROR), m:
        m.submit(batch(300))
        m.submit(batch(300))
    assert len(rec.batches) == 2
    assert all((b.dims["SrcNetName"] == 0).all() and b.dims["SrcAS"].dtype == np.uint32 for b in rec.batches)  # type: ignore[index]
    assert stage.errors.value == 2 and stage.summary()["unenriched_rows"]["stage"] == 600
    assert sum("enrichment failed" in r.getMessage() for r in caplog.records) == 1  # rate-limited
    got = coded.apply(batch(300))  # every value unknown: code 0
    assert set(got.dims) == {"SrcCode"} and got.dims["SrcCode"].dtype == np.uint64  # type: ignore[union-attr,index]
    assert not got.dims["SrcCode"].any()  # type: ignore[index]


def test_key_fields_on_enrichment_columns_are_computed_by_the_stage() -> None:
    """An exact task keyed on SrcAS and a sketch of DstCountry per SrcAS (issue 16's examples): the stage
    computes exactly those columns, and the exact task's flows are the AS numbers of the networks map."""
    from netspectra.engine.registry import build_groups

    cfg = Config.model_validate(
        {
            "aggregator": {
                "types": ["exact", "sketch"],
                "exact": {"tasks": [{"name": "by_as", "key_fields": ["SrcAS"]}]},
                "sketch": {
                    "tasks": [
                        {
                            "name": "cc",
                            "skt_type": 1,
                            "flow_fields": ["SrcAS"],
                            "element_fields": ["DstCountry"],
                        }
                    ]
                },
            },
            "enrichment": {
                "networks": {
                    "1.0.0.0/8": {"name": "one", "asn": 64500, "country": "FR"},
                    "1.0.0.0/9": {"name": "half", "asn": 64501, "country": "DE"},
                }
            },
        }
    )
    assert dimensions_needed(cfg) == ("SrcAS", "DstCountry")
    stage = EnrichmentStage.from_config(cfg)
    assert stage is not None and set(stage.columns) == {"SrcAS", "DstCountry"}
    groups = build_groups(cfg, writers=False)
    manager = Manager(groups, enrichment=stage, inline=True)
    manager.start()
    try:
        b = batch(1000)  # 1.x.x.x sources: x < 128 in 1.0.0.0/9, the rest in 1.0.0.0/8 only
        b.src_ip[:, 13] = np.arange(1000) % 256
        assert manager.submit(b) and manager.flush(timeout=30)
        exact = next(t for g in groups for t in g.tasks if t.name == "by_as")
        snap = exact.task.snapshot()
        got = dict(zip(snap.to_arrow().column("SrcAS").to_pylist(), snap.packets.tolist(), strict=True))
    finally:
        manager.stop()
    half = int((np.arange(1000) % 256 < 128).sum())
    assert got == {64501: half, 64500: 1000 - half}
