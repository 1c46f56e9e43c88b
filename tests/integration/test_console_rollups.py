"""Visualize from the rollups (netspectra.storage.console.rollup), on the embedded chdb and on a real
ClickHouse server (18.16 in CI).

One engine run (enrichment stage, an exact task keyed on the five-tuple and two enrichment columns, a
rollup task keyed on the protocol and the same two columns, a snapshot every 60 s of its clock, two period
ends) over 50 minutes of 2019 traffic that crosses an hour and midnight, every flow's packets inside one
minute. So "a flow at its first packet" (``flow_metrics``) and "each packet in its own bucket" (the
rollups) put the same traffic in the same buckets, and the console's answer from the coarsest rollup
table must equal its answer from the full-resolution table — every series, "other" and the total, per
bucket, at the three resolutions — and the traffic itself. Requests a rollup cannot answer (an address or
port, flows, the stored-time axis, a step finer than a minute, a rollup task without rows) come from the
full-resolution table and say why; the REST answer names the table.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from netspectra.batch import PacketBatch
from netspectra.config.models import Config
from netspectra.engine.enrichment import EnrichmentStage
from netspectra.engine.manager import Manager, ManualClock
from netspectra.engine.registry import build_groups
from netspectra.storage import console as cs
from netspectra.storage.clickhouse_config import ClickHouseConfig
from netspectra.storage.filter import compile_filter
from netspectra.storage.store import ClickHouseStore, connect_store

MIN = 60 * 10**9
HOUR = 60 * MIN
DAY = 24 * HOUR
#: 23:35 UTC, 2019-06-01: 50 minutes of traffic, across midnight.
T0 = 1_559_347_200 * 10**9 + DAY - 25 * MIN
T_RUN = 1_800_000_000 * 10**9
NETWORKS = {"10.0.0.0/8": {"name": "lan", "asn": 64500}, "10.1.0.0/16": {"name": "lab", "asn": 64501}}
KEYS = ["SrcIP", "DstIP", "SrcPort", "DstPort", "Protocol", "SrcAS", "SrcNetName"]
ROLLUPS = {"traffic": ("Protocol", "SrcAS", "SrcNetName")}


def traffic(seed: int = 5) -> list[PacketBatch]:
    """One batch per minute; a flow's source port is used in one minute only, so its packets stay there."""
    rng = np.random.default_rng(seed)
    out = []
    for k in range(50):
        n = 2000
        b = PacketBatch.empty(n)
        b.ts_ns[:] = np.sort(T0 + k * MIN + rng.integers(0, MIN, n))
        b.src_ip[:] = 0
        b.src_ip[:, 10:12] = 0xFF
        b.src_ip[:, 12] = rng.choice([10, 192], n)
        b.src_ip[:, 13] = rng.integers(0, 3, n)
        b.src_ip[:, 15] = rng.integers(1, 40, n)
        b.dst_ip[:] = b.src_ip[::-1]
        b.src_port[:] = 1024 + 40 * k + rng.integers(0, 40, n)
        b.dst_port[:] = rng.choice(np.array([53, 443], np.uint16), n)
        b.protocol[:] = rng.choice(np.array([6, 17], np.uint8), n)
        b.length[:] = rng.integers(60, 1500, n)
        out.append(b)
    return out


def engine_config(ch: dict[str, object]) -> Config:
    writer = {"type": "clickhouse", "enabled": True, "snapshot_interval": "60s", "clickhouse": ch}
    return Config.model_validate(
        {
            "aggregator": {
                "types": ["exact", "rollup"],
                "exact": {"writers": [writer], "tasks": [{"name": "five", "key_fields": KEYS}]},
                "rollup": {
                    "writers": [writer],
                    "tasks": [
                        {"name": "traffic", "dimensions": list(ROLLUPS["traffic"]), "close_after": "30s"}
                    ],
                },
            },
            "enrichment": {"networks": NETWORKS},
        }
    )


@dataclass
class Stored:
    cfg: Config
    store: ClickHouseStore
    batches: list[PacketBatch]
    source: cs.Source


def _stored(ch: dict[str, object]) -> Iterator[Stored]:
    cfg = engine_config(ch)
    batches = traffic()
    clock = ManualClock(T_RUN)
    m = Manager(build_groups(cfg), clock=clock, num_workers=2, enrichment=EnrichmentStage.from_config(cfg))
    m.start()
    for i, b in enumerate(batches):
        m.submit(b)
        if i % 4 == 3:
            m.flush()
            clock.advance(60)
            assert m.settle(60)
        if i in (17, 34):
            m.flush()
            m.end_period()
    m.flush()
    m.stop(end_of_input=True)
    lost = {name: w["dropped"] for name, w in m.metrics_dict()["writers"].items() if w["dropped"]}
    assert not lost, lost
    store = connect_store(ClickHouseConfig(**ch))
    try:
        yield Stored(cfg, store, batches, cs.catalog(store, {"five": tuple(KEYS)}).source("five"))
    finally:
        store.close()


@pytest.fixture(scope="module", params=["chdb", "server"])
def stored(request: pytest.FixtureRequest, chdb_data_dir: Path) -> Iterator[Stored]:
    database = f"ns_crollup_{uuid.uuid4().hex[:10]}"
    if request.param == "chdb":
        ch: dict[str, object] = {"data_dir": str(chdb_data_dir), "database": database}
    else:
        ch = request.getfixturevalue("clickhouse_server").config(database)
    yield from _stored(ch)


def net_name(b: PacketBatch) -> np.ndarray:
    return np.where(b.src_ip[:, 12] == 10, np.where(b.src_ip[:, 13] == 1, "lab", "lan"), "")


def truth(batches: list[PacketBatch], step_ns: int) -> dict[tuple[int, str], dict[int, list[int]]]:
    """(protocol, network name) → bucket start (ns, floored to ``step_ns``) → [packets, bytes]."""
    out: dict[tuple[int, str], dict[int, list[int]]] = defaultdict(dict)
    for b in batches:
        names = net_name(b)
        for i in range(len(b)):
            cell = out[(int(b.protocol[i]), str(names[i]))].setdefault(
                int(b.ts_ns[i]) // step_ns * step_ns, [0, 0]
            )
            cell[0] += 1
            cell[1] += int(b.length[i])
    return out


def by_key(v: cs.Visualization) -> dict[tuple[Any, ...], tuple[int, int, list[int], list[int]]]:
    return {
        tuple(s.key[d] for d in v.dimensions): (s.packets, s.bytes, s.values["packets"], s.values["bytes"])
        for s in v.series
    }


def same(a: cs.Visualization, b: cs.Visualization) -> None:
    """The same answer: buckets, series (order, totals, per bucket), other and total (packets, bytes)."""
    assert (a.times, a.step_ns, a.dimensions) == (b.times, b.step_ns, b.dimensions)
    assert [s.key for s in a.series] == [s.key for s in b.series]
    assert by_key(a) == by_key(b)
    for x, y in ((a.other, b.other), (a.total, b.total)):
        assert (x.packets, x.bytes) == (y.packets, y.bytes)
        assert (x.values["packets"], x.values["bytes"]) == (y.values["packets"], y.values["bytes"])


@pytest.mark.parametrize(("points", "table"), [(60, "rollup_1m"), (12, "rollup_5m"), (1, "rollup_1h")])
@pytest.mark.parametrize("dims", [[], ["Protocol"], ["SrcNetName", "Protocol"], ["SrcAS"]])
def test_rollup_answer_equals_the_full_resolution_one(
    stored: Stored, points: int, table: str, dims: list[str]
) -> None:
    for metric in ("bytes", "packets"):
        kw: dict[str, Any] = {"dims": dims, "metric": metric, "points": points, "exact": True}
        full = cs.visualize(stored.store, stored.source, **kw)
        roll = cs.visualize(stored.store, stored.source, rollups=ROLLUPS, **kw)
        assert (full.table, full.resolution, full.rollup_task) == ("flow_metrics", "full", "")
        assert (roll.table, roll.rollup_task) == (table, "traffic"), roll.reason
        assert roll.resolution == table.removeprefix("rollup_") and table in roll.reason
        same(roll, full)
        assert roll.total.flows is None and full.total.flows > 0  # rollups count no flows
        assert roll.to_dict()["total"]["flows"] is None
    # and both are the traffic: per bucket of the step, packets and bytes of each protocol and network
    want = truth(stored.batches, roll.step_ns)
    total_b = [0] * len(roll.times)
    for cells in want.values():
        for t, (_, y) in cells.items():
            total_b[(t - roll.times[0]) // roll.step_ns] += y
    assert roll.total.values["bytes"] == total_b
    if dims == ["SrcNetName", "Protocol"]:
        for s in roll.series:
            cells = want[(s.key["Protocol"], s.key["SrcNetName"])]
            assert s.packets == sum(p for p, _ in cells.values())
            assert s.values["bytes"] == [cells.get(t, [0, 0])[1] for t in roll.times]


def test_filters_on_rollup_dimensions_are_answered_by_the_rollup(stored: Stored) -> None:
    text = "Protocol = 6 AND NOT SrcNetName = 'lab' AND SrcAS IN (64500, 0)"
    flt = compile_filter(text, stored.source.fields)
    kw: dict[str, Any] = {"dims": ["SrcNetName"], "flt": flt, "points": 12, "exact": True}
    full = cs.visualize(stored.store, stored.source, **kw)
    roll = cs.visualize(stored.store, stored.source, rollups=ROLLUPS, **kw)
    assert roll.table == "rollup_5m"
    same(roll, full)
    assert {s.key["SrcNetName"] for s in roll.series} == {"lan", ""} and roll.total.bytes > 0


def test_a_range_is_read_in_whole_buckets(stored: Stored) -> None:
    """A range that does not start on a bucket: the rollup reads its whole buckets (within the series'
    first and last), and says so; the full-resolution answer over that range is the same."""
    lo, hi = T0 + 7 * MIN + 13 * 10**9, T0 + 31 * MIN + 5 * 10**9
    roll = cs.visualize(
        stored.store, stored.source, start_ns=lo, end_ns=hi, dims=["Protocol"], points=25, rollups=ROLLUPS
    )
    assert (roll.table, roll.step_ns) == ("rollup_1m", MIN)
    assert (roll.read_start_ns, roll.read_end_ns) == (T0 + 7 * MIN, T0 + 32 * MIN)
    assert roll.times[0] == roll.read_start_ns and roll.times[-1] + roll.step_ns == roll.read_end_ns
    full = cs.visualize(
        stored.store,
        stored.source,
        start_ns=T0 + 7 * MIN,
        end_ns=T0 + 32 * MIN - 1,
        dims=["Protocol"],
        points=25,
    )
    same(roll, full)


@pytest.mark.parametrize(
    ("kw", "why"),
    [
        ({"dims": ["DstPort"]}, "no rollup task is keyed on DstPort"),
        ({"dims": ["Protocol"], "filter": "SrcIP = 10.0.0.1"}, "no rollup task is keyed on SrcIP"),
        ({"metric": "flows"}, "rollups count packets and bytes, not flows"),
        ({"axis": "snapshot"}, "rollups hold the traffic's own time only"),
        ({"points": 1000}, "step is not a multiple of rollup_1m's buckets"),
    ],
)
def test_what_a_rollup_cannot_answer_comes_at_full_resolution(
    stored: Stored, kw: dict[str, Any], why: str
) -> None:
    kw = dict(kw)
    text = kw.pop("filter", "")
    flt = compile_filter(text, stored.source.fields) if text else None
    v = cs.visualize(stored.store, stored.source, flt=flt, exact=True, rollups=ROLLUPS, **kw)
    assert (v.table, v.resolution) == ("flow_metrics", "full") and why in v.reason
    assert v.total.flows is not None and v.total.bytes > 0


def test_a_rollup_task_without_rows_does_not_answer(stored: Stored) -> None:
    v = cs.visualize(stored.store, stored.source, dims=["Protocol"], rollups={"elsewhere": ("Protocol",)})
    assert v.table == "flow_metrics" and "rollup task elsewhere has no rows in this store" in v.reason
    # a rollup task that started counting after the range: its hours do not cover the traffic
    late = cs.visualize(
        stored.store,
        stored.source,
        dims=["Protocol"],
        rollups=ROLLUPS,
        known_extent=(T0 - DAY, T0 + 50 * MIN),
    )
    assert late.table == "flow_metrics" and "did not count all the traffic" in late.reason


def test_rest_answer_names_the_table(stored: Stored) -> None:
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from netspectra.api.grpc_service import QueryCore
    from netspectra.api.http_app import create_app

    core = QueryCore(stored.cfg)
    try:
        with TestClient(create_app(core), raise_server_exceptions=False) as client:
            q = {"source": "five", "dims": "Protocol", "points": "12"}
            auto = client.get("/api/v1/console/visualize", params=q).json()
            full = client.get("/api/v1/console/visualize", params={**q, "resolution": "full"}).json()
            bad = client.get("/api/v1/console/visualize", params={**q, "resolution": "coarse"})
    finally:
        core.close()
    assert (auto["table"], auto["resolution"], auto["rollupTask"]) == ("rollup_5m", "5m", "traffic")
    assert (full["table"], full["resolution"]) == ("flow_metrics", "full")
    assert auto["total"]["bytes"] == full["total"]["bytes"] and auto["total"]["flows"] is None
    assert auto["total"]["values"]["bytes"] == full["total"]["values"]["bytes"]
    assert bad.status_code == 400 and "resolution must be auto" in bad.json()["message"]


def test_a_rollup_task_is_a_source_of_its_own(stored: Stored) -> None:
    """A rollup task is a console source (``rollup:<task>``): Visualize by any of its dimensions — here
    SrcAS and SrcNetName, which an operator asks of the rollups whether or not an exact task is keyed
    on them — equals the traffic per bucket, answered by the coarsest table that answers; filters and
    completion read its dimensions; flows are not counted and the flow views refuse it, saying why."""
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from netspectra.api.grpc_service import QueryCore
    from netspectra.api.http_app import create_app

    core = QueryCore(stored.cfg)
    try:
        with TestClient(create_app(core), raise_server_exceptions=False) as client:
            cat = client.get("/api/v1/console/catalog").json()
            (src,) = [s for s in cat["sources"] if s["kind"] == "rollup"]
            assert src["id"] == "rollup:traffic" and src["task"] == "traffic"
            assert [f["name"] for f in src["fields"]] == list(ROLLUPS["traffic"])
            assert [a["id"] for a in src["axes"]] == ["first"] and not src["sampled"]
            assert cat["sources"][0]["id"] == "flow_metrics:five"  # the default stays the flow source
            q = {"source": "rollup:traffic", "dims": "SrcNetName", "points": "60"}
            doc = client.get("/api/v1/console/visualize", params=q).json()
            coarse = client.get("/api/v1/console/visualize", params={**q, "points": "1"}).json()
            lab = client.get(
                "/api/v1/console/visualize",
                params={**q, "dims": "SrcAS", "filter": "SrcNetName = 'lab'"},
            ).json()
            values = client.get(
                "/api/v1/console/complete",
                params={"source": "rollup:traffic", "text": "SrcNetName = ", "cursor": "13"},
            ).json()
            refused = {
                view: client.get(f"/api/v1/console/{view}", params={"source": "rollup:traffic", **extra})
                for view, extra in (("flows", {}), ("host", {"ip": "10.1.0.1"}), ("live", {}))
            }
            flows = client.get("/api/v1/console/visualize", params={**q, "metric": "flows"})
            full = client.get("/api/v1/console/visualize", params={**q, "resolution": "full"})
    finally:
        core.close()
    assert (doc["table"], doc["resolution"], doc["rollupTask"]) == ("rollup_1m", "1m", "traffic"), doc
    assert doc["step"] == MIN and doc["total"]["flows"] is None
    assert coarse["table"] == "rollup_1h" and coarse["total"]["bytes"] == doc["total"]["bytes"]
    # the traffic per minute and network name
    want: dict[str, dict[int, int]] = defaultdict(lambda: defaultdict(int))
    for b in stored.batches:
        for t, name, n in zip(b.ts_ns.tolist(), net_name(b).tolist(), b.length.tolist(), strict=True):
            want[name][t // MIN * MIN] += n
    assert doc["total"]["bytes"] == sum(sum(v.values()) for v in want.values())
    for s in doc["series"]:
        per = want[s["key"]["SrcNetName"]]
        assert s["values"]["bytes"] == [per.get(t, 0) for t in doc["times"]], s["key"]
    assert [s["key"]["SrcAS"] for s in lab["series"]] == [64501]
    assert lab["total"]["bytes"] == sum(want["lab"].values())
    assert {"'lab'", "'lan'"} <= {o["text"] for o in values["options"]}
    for view, r in refused.items():
        assert r.status_code == 400 and "not flows" in r.json()["message"], (view, r.text)
    assert flows.status_code == 400 and "not flows" in flows.json()["message"]
    assert full.status_code == 400 and "rollup tables" in full.json()["message"]


def src_as(b: PacketBatch) -> np.ndarray:
    """The source AS the enrichment gives (NETWORKS: 10.1/16 → 64501, the rest of 10/8 → 64500, else 0)."""
    return np.where(b.src_ip[:, 12] == 10, np.where(b.src_ip[:, 13] == 1, 64501, 64500), 0)


@pytest.mark.parametrize(("resolution", "bucket"), [("1m", MIN), ("5m", 5 * MIN), ("1h", HOUR)])
def test_a_rollup_source_at_the_resolution_asked(stored: Stored, resolution: str, bucket: int) -> None:
    """``resolution=1m|5m|1h`` reads that rollup table, in steps of at least its bucket (60 points would be
    1-minute steps): the rollup source's series by SrcAS equal the traffic fed, per bucket, packets and
    bytes; a filter on a dimension too. The REST answer names the table; a resolution that is not a table's
    is a 400, and so is one no rollup task answers on a flow source (a port)."""
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from netspectra.api.grpc_service import QueryCore
    from netspectra.api.http_app import create_app

    want: dict[int, dict[int, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0]))
    for b in stored.batches:
        for t, asn, n in zip(b.ts_ns.tolist(), src_as(b).tolist(), b.length.tolist(), strict=True):
            cell = want[asn][t // bucket * bucket]
            cell[0] += 1
            cell[1] += n
    core = QueryCore(stored.cfg)
    try:
        with TestClient(create_app(core), raise_server_exceptions=False) as client:
            q = {"source": "rollup:traffic", "dims": "SrcAS", "points": "60", "resolution": resolution}
            doc = client.get("/api/v1/console/visualize", params=q).json()
            lan = client.get(
                "/api/v1/console/visualize", params={**q, "metric": "packets", "filter": "SrcAS = 64500"}
            ).json()
            on_flows = client.get(
                "/api/v1/console/visualize", params={**q, "source": "five", "dims": "Protocol"}
            ).json()
            port = client.get("/api/v1/console/visualize", params={**q, "source": "five", "dims": "SrcPort"})
            bad = client.get("/api/v1/console/visualize", params={**q, "resolution": "2m"})
    finally:
        core.close()
    assert (doc["table"], doc["resolution"]) == (f"rollup_{resolution}", resolution)
    assert doc["rollupTask"] == "traffic"
    assert doc["step"] == bucket and all(t % bucket == 0 for t in doc["times"]), doc["reason"]
    assert {s["key"]["SrcAS"] for s in doc["series"]} == set(want) == {0, 64500, 64501}
    for s in doc["series"]:
        per = want[s["key"]["SrcAS"]]
        assert s["bytes"] == sum(c[1] for c in per.values())
        assert s["values"]["bytes"] == [per[t][1] if t in per else 0 for t in doc["times"]], s["key"]
        assert s["values"]["packets"] == [per[t][0] if t in per else 0 for t in doc["times"]], s["key"]
    assert doc["other"]["bytes"] == 0 and doc["total"]["flows"] is None
    assert [s["key"]["SrcAS"] for s in lan["series"]] == [64500]
    assert lan["total"]["packets"] == sum(c[0] for c in want[64500].values())
    assert (on_flows["table"], on_flows["resolution"]) == (f"rollup_{resolution}", resolution)
    assert on_flows["total"]["bytes"] == doc["total"]["bytes"]
    assert port.status_code == 400 and f"at resolution {resolution}" in port.json()["message"]
    assert "SrcPort" in port.json()["message"]
    assert bad.status_code == 400 and "1m, 5m, 1h" in bad.json()["message"]
