"""The sketch kinds declare what their sketches allocate and accept, for every variant (issues 12, 18)."""

from __future__ import annotations

from typing import Any

import pytest

from netspectra.config import ConfigError, parse_config_text
from netspectra.kinds import SKETCHES
from netspectra.sketches.base import SketchTask
from netspectra.sketches.sketch_kind import SketchTaskConfig
from netspectra.sketches.variants import SKETCH_VARIANTS

CASES: list[tuple[int, str, dict[str, Any]]] = [
    (0, "heavyguardian", {}),
    (0, "heavyguardian", {"memory": "640KiB"}),
    (0, "heavyguardian", {"width": 8192, "depth": 2}),
    (0, "mv", {"width": 8192, "depth": 2}),
    (0, "original", {"width": 5000, "depth": 3}),
    (0, "cocosketch", {"memory": 100_000, "depth": 3}),
    (1, "spreadkeeper", {}),
    (1, "spreadkeeper", {"width": 4096, "depth": 2, "m": 64}),
    (1, "spreadkeeper", {"memory": "500KB"}),
    (1, "original", {"width": 4096, "depth": 2, "m": 128}),
    (1, "spreadsketch", {"memory": 300_000, "m": 64}),
    (1, "spreadsketch", {"width": 1000}),
]


@pytest.mark.parametrize(("skt_type", "variant", "extra"), CASES)
@pytest.mark.parametrize("flow", [("SrcIP",), ("SrcIP", "DstPort", "Protocol")])
def test_declared_memory_is_what_the_sketch_allocates(
    skt_type: int, variant: str, extra: dict[str, Any], flow: tuple[str, ...]
) -> None:
    cfg = SketchTaskConfig.model_validate(
        {
            "name": "t",
            "skt_type": skt_type,
            "variant": variant,
            "flow_fields": list(flow),
            "element_fields": ["DstIP"],
            **extra,
        }
    )
    assert cfg.params.variant == variant
    task = SketchTask.from_config(cfg)
    assert task.params.variant == variant
    assert cfg.memory_bytes() == task.memory_bytes


def test_every_variant_is_accepted_and_unknown_ones_are_named() -> None:
    for skt_type, variants in SKETCH_VARIANTS.items():
        for variant in variants:
            SketchTaskConfig.model_validate(
                {"name": "t", "skt_type": skt_type, "variant": variant, "flow_fields": ["SrcIP"],
                 "element_fields": ["DstIP"]}
            )  # fmt: skip
    text = """
aggregator:
  types: [sketch]
  sketch:
    tasks:
      - {name: a, skt_type: 0, flow_fields: [SrcIP], variant: heavykeeper}
      - {name: b, skt_type: 1, flow_fields: [SrcIP], element_fields: [DstIP],
         variant: spreadsketch, depth: 20}
      - {name: c, skt_type: 0, flow_fields: [SrcIP], variant: mv, memory: 1MiB}
"""
    with pytest.raises(ConfigError) as info:
        parse_config_text(text)
    errors = info.value.errors
    assert errors[0].startswith(
        "aggregator.sketch.tasks[0]: 'heavykeeper' is not a variant of skt_type 0; valid"
    )
    assert "heavyguardian, mv, original, cocosketch" in errors[0]
    assert errors[1] == (
        "aggregator.sketch.tasks[1]: depth must be between 1 and 16 for the spreadsketch variant, got 20"
    )
    assert errors[2].startswith("aggregator.sketch.tasks[2]: memory sizes the heavyguardian and cocosketch")


def test_builtin_kinds_name_their_original_numbers() -> None:
    assert [SKETCHES.get(n).skt_type for n in SKETCHES.builtins] == [0, 1]
