"""Kinds own their configuration: plugin kinds of every family through entry points, one module each.

A plugin distribution is created on ``sys.path`` for these tests (a ``*.dist-info`` with
``entry_points.txt``), so the kinds are found exactly as an installed package's would be.
"""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from netspectra.capture.reader import CaptureReader
from netspectra.config import ConfigError, parse_config_text
from netspectra.engine import Manager
from netspectra.kinds import AGGREGATORS, SKETCHES, WRITERS, KindError, KindRegistry

CAPTURES = Path(__file__).resolve().parents[1] / "data" / "captures"

#: One module declaring an aggregator kind (with its own task model and metric), a writer kind and a
#: sketch kind — what a third-party package writes to add each.
PLUGIN = '''
    from typing import ClassVar

    import numpy as np
    from pydantic import Field

    from netspectra.config.base import Section, TaskConfig
    from netspectra.engine.groups import LockedTask
    from netspectra.engine.kind import AggregatorKind, Metric
    from netspectra.sketches.countmin_kind import CountMinKind
    from netspectra.storage.base import Writer
    from netspectra.storage.kinds import WriterKind

    WRITTEN = []


    class PortCountConfig(Section):
        name: str
        port: int = Field(ge=0, le=65535)


    class PortCount:
        """Counts the packets to one destination port."""

        kind = "portcount"

        def __init__(self, name, port):
            self.name, self.port, self.packets = name, port, 0

        def update(self, batch):
            self.packets += int(np.count_nonzero(batch.dst_port == self.port))

        def snapshot(self):
            snap = PortCount(self.name, self.port)
            snap.packets = self.packets
            snap.task_name = self.name
            return snap

        def reset(self):
            self.packets = 0


    class PortCountKind(AggregatorKind):
        name = "portcount"
        task_model = PortCountConfig
        metrics: ClassVar = {"port_packets": Metric("port_packets", "packets to the port", unit="packets")}

        def build_task(self, task):
            return LockedTask(PortCount(task.name, task.port))

        def deliver(self, writer, snap, meta):
            writer.write_ports(snap, meta)

        def metric_values(self, metric, snap):
            return float(snap.packets)


    KIND = PortCountKind()


    class ListParams(Section):
        label: str = ""


    class ListWriter(Writer):
        def open(self):
            pass

        def close(self):
            pass

        def write_ports(self, snap, meta):
            WRITTEN.append((self.cfg.params.label, snap.task_name, snap.packets, meta.final))

        def _write_flows(self, snap, meta):
            WRITTEN.append((self.cfg.params.label, snap.task_name, snap.total_packets, meta.final))

        def _write_hitters(self, snap, meta):
            pass


    WRITER = WriterKind("listwriter", ListParams, ("exact", "portcount"), ListWriter)


    class WideCountMin(CountMinKind):
        """CountMin under another name (a plugin sketch kind, named in skt_type)."""

        name = "widecm"
        skt_type = None
        impl = "netspectra.sketches.heavyguardian:HeavyGuardianSketch"


    SKETCH = WideCountMin()
'''


def _distribution(root: Path, groups: dict[str, dict[str, str]]) -> None:
    (root / "ns_kinds_plugin.py").write_text(textwrap.dedent(PLUGIN))
    info = root / "ns_kinds_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: ns-kinds-plugin\nVersion: 0.1\n")
    text = "".join(
        f"[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in eps.items()) for group, eps in groups.items()
    )
    (info / "entry_points.txt").write_text(text)


@pytest.fixture
def plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    _distribution(
        tmp_path,
        {
            "netspectra.aggregators": {"portcount": "ns_kinds_plugin:KIND"},
            "netspectra.writers": {"listwriter": "ns_kinds_plugin:WRITER"},
            "netspectra.sketches": {"widecm": "ns_kinds_plugin:SKETCH"},
        },
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "ns_kinds_plugin", raising=False)
    for registry in (AGGREGATORS, WRITERS, SKETCHES):
        monkeypatch.setattr(registry, "_loaded", {})
    import ns_kinds_plugin  # type: ignore[import-not-found]

    yield ns_kinds_plugin
    sys.modules.pop("ns_kinds_plugin", None)


CONFIG = """
aggregator:
  types: [exact, portcount, sketch]
  exact:
    writers: [{type: listwriter, enabled: true, listwriter: {label: flows}}]
    tasks: [{name: five, key_fields: [SrcIP, DstIP, SrcPort, DstPort, Protocol]}]
  portcount:
    writers: [{type: listwriter, enabled: true, listwriter: {label: ports}}]
    tasks: [{name: web, port: 6346}]
  sketch:
    tasks: [{name: wide, skt_type: widecm, flow_fields: [SrcIP], width: 256, depth: 2}]
alerter:
  enabled: true
  rules: [{name: busy, task_name: web, metric: port_packets, operator: ">", threshold: 1}]
"""


def test_plugin_kinds_of_every_family_are_configured_validated_and_run(plugin: object) -> None:
    cfg = parse_config_text(CONFIG)
    # the writer plugin is a valid writer type (it was refused by the configuration before kinds)
    (w,) = cfg.aggregator.exact.writers
    assert w.type == "listwriter" and w.params.label == "flows"
    (task,) = cfg.aggregator.group("portcount").tasks
    assert type(task).__name__ == "PortCountConfig" and task.port == 6346
    (wide,) = cfg.aggregator.sketch.tasks
    assert wide.skt_type == "widecm" and wide.params.width == 256
    m = Manager.from_config(cfg, num_workers=2)
    to_port = 0
    with m:
        for batch in CaptureReader(CAPTURES / "gnutella.pcap", batch_size=500):
            m.submit(batch)
            to_port += int((batch.dst_port == 6346).sum())
    written = {(label, name): (n, final) for label, name, n, final in plugin.WRITTEN}  # type: ignore[attr-defined]
    assert written[("flows", "five")] == (m.task("five").task.packets, True)
    assert written[("ports", "web")] == (to_port, True) and to_port > 0
    assert len(m.task("wide").task.snapshot().hitters) == 2  # a CountMin under another name


def test_plugin_task_models_report_errors_under_their_keys(plugin: object) -> None:
    bad = CONFIG.replace("port: 6346", "port: 70000").replace("label: ports", "label: [x]")
    bad = bad.replace("metric: port_packets", "metric: port_bytes")
    with pytest.raises(ConfigError) as info:
        parse_config_text(bad)
    errors = info.value.errors
    assert any(
        e.startswith("aggregator.portcount.tasks[0].port: Input should be less than or equal to 65535")
        for e in errors
    )
    assert any(e.startswith("aggregator.portcount.writers[0].listwriter.label:") for e in errors)
    # a rule's metric is checked against the task's kind
    bad = CONFIG.replace("metric: port_packets", "metric: total_bytes")
    with pytest.raises(ConfigError) as info:
        parse_config_text(bad)
    assert info.value.errors == [
        "alerter.rules[0].metric: 'total_bytes' is a metric of exact tasks, not of portcount tasks such as "
        "'web'; portcount tasks have port_packets"
    ]
    # a writer kind serves only the groups it declares
    bad = CONFIG.replace("  sketch:\n", "  sketch:\n    writers: [{type: listwriter, enabled: true}]\n")
    with pytest.raises(ConfigError) as info:
        parse_config_text(bad)
    assert info.value.errors[0].startswith(
        "aggregator.sketch.writers[0].type: 'listwriter' is not a writer type of the sketch group"
    )


def test_unknown_keys_of_plugin_sections_are_warned(plugin: object) -> None:
    cfg = parse_config_text(CONFIG.replace("port: 6346", "port: 6346, prot: 6"))
    assert "aggregator.portcount.tasks[0].prot: unknown key, ignored; did you mean 'port'?" in cfg.warnings


def test_registry_refuses_ambiguous_names(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    registry: KindRegistry[object] = KindRegistry(
        "test kind", "netspectra.test_kinds", {"builtin": "netspectra.kinds:KindRegistry"}
    )
    for i, name in enumerate(("builtin", "twice", "twice")):
        root = tmp_path / f"d{i}"
        root.mkdir()
        info = root / f"ns_k{i}-0.1.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: ns-k{i}\nVersion: 0.1\n")
        (info / "entry_points.txt").write_text(f"[netspectra.test_kinds]\n{name} = mod{i}:obj\n")
        monkeypatch.syspath_prepend(str(root))
    assert registry.names() == ("builtin", "twice")
    with pytest.raises(KindError, match="is a built-in test kind but the plugin"):
        registry.get("builtin")
    with pytest.raises(KindError, match="registered by several plugins"):
        registry.get("twice")
    with pytest.raises(
        KindError, match=r"'nope' is not a valid test kind; valid test kinds are builtin, twice"
    ):
        registry.get("nope")
