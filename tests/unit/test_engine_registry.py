"""Aggregator registry and task groups: built-in types, entry-point plugins, start-up errors naming keys."""

from __future__ import annotations

import logging
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from netspectra.capture.reader import CaptureReader
from netspectra.config import ConfigError
from netspectra.config.models import Config
from netspectra.engine import (
    ENTRY_POINT_GROUP,
    ConcurrentTask,
    LockedTask,
    Manager,
    aggregator_factory,
    available_aggregators,
    build_groups,
)
from netspectra.sketches.base import SketchSnapshot, SketchTask
from netspectra.sketches.sketch_kind import SketchTaskConfig
from netspectra.storage.base import SnapshotMeta, Writer
from netspectra.tasks.exact import ExactTask, FlowSnapshot
from netspectra.tasks.exact_kind import ExactTaskConfig

CAPTURES = Path(__file__).resolve().parents[1] / "data" / "captures"
FIVE = ["SrcIP", "DstIP", "SrcPort", "DstPort", "Protocol"]
TEST_KIND = "engine-test-recorder"


class KindRecorder(Writer, kind=TEST_KIND):
    """A writer kind registered by this test module (through the storage registry, as real kinds are)."""

    instances: ClassVar[list[KindRecorder]] = []

    def __init__(self, cfg: Any, group: str) -> None:
        super().__init__(cfg, group)
        self.calls: list[tuple[str, SnapshotMeta]] = []
        KindRecorder.instances.append(self)

    def open(self) -> None:
        pass

    def close(self) -> None:
        pass

    def _write_flows(self, snap: FlowSnapshot, meta: SnapshotMeta) -> None:
        self.calls.append((snap.task_name, meta))

    def _write_hitters(self, snap: SketchSnapshot, meta: SnapshotMeta) -> None:
        self.calls.append((snap.task_name, meta))


def config(**aggregator: Any) -> Config:
    base: dict[str, Any] = {
        "types": ["exact", "sketch"],
        "exact": {
            "tasks": [{"name": "five", "key_fields": FIVE}, {"name": "src", "key_fields": ["SrcIP"]}],
            "writers": [{"type": "parquet", "enabled": False, "snapshot_interval": "60s"}],
        },
        "sketch": {
            "tasks": [
                {"name": "cm", "skt_type": 0, "flow_fields": ["SrcIP"], "width": 512, "depth": 2, "seed": 1},
                {
                    "name": "ss",
                    "skt_type": 1,
                    "flow_fields": ["SrcIP"],
                    "element_fields": ["DstIP"],
                    "width": 512,
                    "depth": 2,
                    "m": 16,
                    "seed": 2,
                },
            ],
            "writers": [{"type": "text", "enabled": False}],
        },
    }
    base.update(aggregator)
    return Config.model_validate({"aggregator": base})


def replace_group(cfg: Config, group: str, **update: Any) -> Config:
    """``cfg`` with ``aggregator.<group>`` fields replaced, bypassing validation (to reach the engine's
    own checks with values the configuration model would refuse)."""
    agg = cfg.aggregator
    section = agg.group(group).model_copy(update=update)
    groups = {**agg.groups, group: section}
    return cfg.model_copy(update={"aggregator": agg.model_copy(update={"groups": groups})})


def with_writer_types(cfg: Config, group: str, *types: str) -> Config:
    writers = tuple(
        getattr(cfg.aggregator, group).writers[0].model_copy(update={"type": t, "enabled": True})
        for t in types
    )
    return replace_group(cfg, group, writers=writers)


def test_builtin_types_build_their_groups(caplog: pytest.LogCaptureFixture) -> None:
    known = available_aggregators()
    assert known["exact"] == known["sketch"] == "built-in"
    with caplog.at_level(logging.INFO, logger="netspectra.engine.groups"):
        groups = build_groups(config())
    assert [g.name for g in groups] == ["exact", "sketch"]
    ex, sk = groups
    assert ex.task_names == ("five", "src") and sk.task_names == ("cm", "ss")
    assert all(isinstance(t, LockedTask) and isinstance(t.task, ExactTask) for t in ex.tasks)
    assert all(isinstance(t, ConcurrentTask) and isinstance(t.task, SketchTask) for t in sk.tasks)
    assert sk.tasks[1].task.params.m == 16 and sk.tasks[1].task.params.seed == 2  # the task's own settings
    # disabled writers are skipped, and the skip is logged with its key
    assert ex.writers == () and sk.writers == ()
    msgs = [r.getMessage() for r in caplog.records]
    assert any("aggregator.exact.writers[0]" in m and "enabled is false" in m for m in msgs)
    assert any("aggregator.sketch.writers[0]" in m and "enabled is false" in m for m in msgs)
    # only the listed types are built, in the listed order
    assert [g.name for g in build_groups(config(types=["sketch"]))] == ["sketch"]
    assert [g.name for g in build_groups(config(), types=["sketch", "exact"])] == ["sketch", "exact"]


def test_enabled_writers_are_built_per_group_with_their_interval() -> None:
    KindRecorder.instances.clear()
    cfg = with_writer_types(with_writer_types(config(), "exact", TEST_KIND, TEST_KIND), "sketch", TEST_KIND)
    ex, sk = build_groups(cfg)
    assert [w.name for w in ex.writers] == [f"exact/{TEST_KIND}[0]", f"exact/{TEST_KIND}[1]"]
    assert [w.config_key for w in ex.writers] == [
        "aggregator.exact.writers[0]",
        "aggregator.exact.writers[1]",
    ]
    assert [w.interval_s for w in ex.writers] == [60.0, 60.0] and sk.writers[0].interval_s is None
    assert [w.writer.group for w in (*ex.writers, *sk.writers)] == ["exact", "exact", "sketch"]
    # through a manager, each writer gets exactly its own group's tasks
    m = Manager([ex, sk], num_workers=2)
    with m:
        for b in CaptureReader(CAPTURES / "rdp.pcap", batch_size=500):
            m.submit(b)
    e0, e1, s0 = KindRecorder.instances
    assert sorted(n for n, _ in e0.calls) == sorted(n for n, _ in e1.calls) == ["five", "src"]
    assert sorted(n for n, _ in s0.calls) == ["cm", "ss"]
    assert all(meta.final for w in (e0, e1, s0) for _, meta in w.calls)


def test_unknown_aggregator_type_names_the_key() -> None:
    with pytest.raises(ConfigError) as err:
        build_groups(config(), types=["exact", "flowz"])
    (line,) = err.value.errors
    assert line.startswith("aggregator.types[1]: 'flowz' is not a valid aggregator type")
    assert "exact, sketch" in line and ENTRY_POINT_GROUP in line
    with pytest.raises(ConfigError, match=r"aggregator.types\[0\]"):
        aggregator_factory("nope", key="aggregator.types[0]")


def test_bad_task_definitions_fail_at_start_naming_the_key() -> None:
    bad_exact = ExactTaskConfig.model_construct(name="weird", key_fields=("SrcIP", "Bogus"), num_shards=256)
    cfg = replace_group(config(), "exact", tasks=(config().aggregator.exact.tasks[0], bad_exact))
    bad_ss = config().aggregator.sketch.tasks[1].model_copy(update={"element_fields": ()})
    cfg = replace_group(cfg, "sketch", tasks=(config().aggregator.sketch.tasks[0], bad_ss))
    with pytest.raises(ConfigError) as err:
        build_groups(cfg)
    assert len(err.value.errors) == 2  # every problem of every group, at once
    exact_line, sketch_line = err.value.errors
    assert exact_line.startswith("aggregator.exact.tasks[1] (weird): ") and "'Bogus'" in exact_line
    assert sketch_line.startswith("aggregator.sketch.tasks[1] (ss): ") and "element_fields" in sketch_line
    assert isinstance(bad_ss, SketchTaskConfig)


def test_writer_without_implementation_fails_at_start_naming_the_key() -> None:
    cfg = with_writer_types(config(), "exact", TEST_KIND, "carrier-pigeon")
    with pytest.raises(ConfigError) as err:
        build_groups(cfg)
    (line,) = err.value.errors
    assert line.startswith("aggregator.exact.writers[1].type: 'carrier-pigeon' has no writer implementation")
    assert TEST_KIND in line  # the known kinds are listed


def test_writer_construction_failure_names_the_key() -> None:
    class Picky(Writer, kind="engine-test-picky"):
        def __init__(self, cfg: Any, group: str) -> None:
            raise ValueError("root_path is empty; set aggregator.exact.writers[i].parquet.root_path")

        def open(self) -> None: ...

        def close(self) -> None: ...

        def _write_flows(self, snap: FlowSnapshot, meta: SnapshotMeta) -> None: ...

        def _write_hitters(self, snap: SketchSnapshot, meta: SnapshotMeta) -> None: ...

    with pytest.raises(ConfigError) as err:
        build_groups(with_writer_types(config(), "exact", "engine-test-picky"), types=["exact"])
    (line,) = err.value.errors
    assert line.startswith(
        "aggregator.exact.writers[0]: cannot create the engine-test-picky writer: ValueError"
    )


# --------------------------------------------------------------------------------------------------
# Entry-point plugins: a small distribution created on sys.path for the test
# --------------------------------------------------------------------------------------------------

PLUGIN_SOURCE = """
    from netspectra.engine import LockedTask, TaskGroup
    from netspectra.tasks.exact import ExactTask

    RECEIVED = []


    class ProtoWriter:
        # a plugin group's writer; the group delivers through its own method name
        def open(self):
            pass

        def write_protocols(self, snap, meta):
            RECEIVED.append((snap.task_name, snap.total_packets, meta.final))

        def close(self):
            pass


    def deliver(writer, snap, meta):
        writer.write_protocols(snap, meta)


    def build(cfg):
        from netspectra.engine import GroupWriter
        task = LockedTask(ExactTask("per_protocol", ("Protocol",)))
        writer = GroupWriter("protocount/proto", ProtoWriter(), None)
        return TaskGroup("protocount", (task,), (writer,), deliver)


    def build_clash(cfg):
        return TaskGroup("clash", (LockedTask(ExactTask("five", ("Protocol",))),), (), deliver)


    def build_misnamed(cfg):
        return TaskGroup("other", (), (), deliver)


    def build_not_a_group(cfg):
        return "nope"


    def build_raises(cfg):
        raise RuntimeError("plugin bug")
"""


def make_distribution(root: Path, dist: str, module: str, source: str, entry_points: dict[str, str]) -> None:
    """A minimal installed distribution (``*.dist-info`` with ``entry_points.txt``) under ``root``."""
    (root / f"{module}.py").write_text(textwrap.dedent(source))
    info = root / f"{dist.replace('-', '_')}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    lines = "".join(f"{k} = {v}\n" for k, v in entry_points.items())
    (info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\n{lines}")


@pytest.fixture
def plugin_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    make_distribution(
        tmp_path,
        "ns-test-plugin",
        "ns_test_plugin",
        PLUGIN_SOURCE,
        {
            "protocount": "ns_test_plugin:build",
            "clash": "ns_test_plugin:build_clash",
            "misnamed": "ns_test_plugin:build_misnamed",
            "notagroup": "ns_test_plugin:build_not_a_group",
            "raises": "ns_test_plugin:build_raises",
            "broken": "ns_test_plugin_missing:build",
        },
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "ns_test_plugin", raising=False)
    yield tmp_path
    sys.modules.pop("ns_test_plugin", None)


def test_entry_point_plugin_builds_a_group_fed_like_the_builtins(plugin_path: Path) -> None:
    known = available_aggregators()
    assert (
        known["exact"] == "built-in" and "ns_test_plugin:build from ns-test-plugin 0.1" in known["protocount"]
    )
    cfg = config()
    m = Manager.from_config(cfg, types=["exact", "protocount"], num_workers=2)
    assert [g.name for g in m.groups] == ["exact", "protocount"]
    total = 0
    done = threading.Event()
    m.on_stop.append(lambda _: done.set())
    with m:
        for b in CaptureReader(CAPTURES / "gnutella.pcap", batch_size=700):
            m.submit(b)
            total += len(b)
    assert done.is_set()
    received = sys.modules["ns_test_plugin"].RECEIVED
    # the plugin's writer received (through the fail-safe wrapper and its own method) only its task
    assert received == [("per_protocol", total, True)]
    assert m.task("per_protocol").task.packets == m.task("five").task.packets == total
    assert m.metrics_dict()["writers"]["protocount/proto"]["written"] == 1


def test_plugin_errors_name_the_key(
    plugin_path: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = config()

    def error(types: list[str]) -> str:
        with pytest.raises(ConfigError) as err:
            build_groups(cfg, types=types)
        (line,) = err.value.errors
        return line

    assert error(["exact", "clash"]).startswith(
        "aggregator.clash.tasks: task name 'five' is also a task of 'exact'"
    )
    assert (
        error(["misnamed"]) == "aggregator.types[0]: the factory of 'misnamed' returned a group named 'other'"
    )
    assert error(["notagroup"]).startswith("aggregator.types[0]: the factory of 'notagroup' returned str")
    assert error(["sketch", "raises"]) == (
        "aggregator.raises: building the 'raises' task group failed: RuntimeError('plugin bug')"
    )
    line = error(["exact", "broken"])
    assert line.startswith("aggregator.types[1]: the plugin for aggregator type 'broken'")
    assert "failed to load" in line and "ns_test_plugin_missing" in line

    # a plugin may not take a built-in name, and two plugins may not share one
    other = tmp_path_factory.mktemp("other_plugin")
    make_distribution(
        other,
        "ns-other-plugin",
        "ns_other_plugin",
        PLUGIN_SOURCE,
        {"exact": "ns_other_plugin:build", "protocount": "ns_other_plugin:build"},
    )
    monkeypatch.syspath_prepend(str(other))
    line = error(["exact"])
    assert line.startswith("aggregator.types[0]: 'exact' is a built-in aggregator type but the plugin(s)")
    assert "ns-other-plugin" in line
    line = error(["protocount"])
    assert line.startswith(
        "aggregator.types[0]: aggregator type 'protocount' is registered by several plugins"
    )
    assert "ns-test-plugin" in line and "ns-other-plugin" in line
