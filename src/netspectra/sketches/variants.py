"""Which class implements each sketch algorithm: the one table from (``skt_type``, ``variant``) to a class.

A sketch task names its algorithm with ``skt_type`` (what it answers, as in the original) and
``variant`` (how; an addition). ``""`` selects the type's default. Modules are imported on first use,
so a process loads only the algorithms its tasks run.

===========  =================  ===============================================================
skt_type     variant            algorithm
===========  =================  ===============================================================
0 (hitters)  ``heavyguardian``  set-associative buckets, HeavyKeeper decay, exact counts (default)
0            ``mv``             majority-vote buckets with MV-Sketch estimates (the former default)
0            ``original``       the original's majority vote, bit-exact (:mod:`.countmin`)
0            ``cocosketch``     CocoSketch (SIGCOMM 2021): d-choice stochastic variance minimisation
1 (spread)   ``spreadkeeper``   a duplicate filter with HIP weights + HeavyKeeper flow table (default)
1            ``original``       SuperSpread as the original, bit-exact (:mod:`.superspread`)
1            ``spreadsketch``   SpreadSketch (INFOCOM 2020), exactly mergeable
===========  =================  ===============================================================

``benchmarks/RESULTS.md`` has the measurements that chose the defaults.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from netspectra.sketches.base import Sketch

#: skt_type → {variant name: "module:Class"}.
SKETCH_VARIANTS: dict[int, dict[str, str]] = {
    0: {
        "heavyguardian": "netspectra.sketches.heavyguardian:HeavyGuardianSketch",
        "mv": "netspectra.sketches.countmin:CountMinSketch",
        "original": "netspectra.sketches.countmin:CountMinSketch",
        "cocosketch": "netspectra.sketches.cocosketch:CocoSketch",
    },
    1: {
        "spreadkeeper": "netspectra.sketches.spreadkeeper:SpreadKeeperSketch",
        "original": "netspectra.sketches.superspread:SuperSpreadSketch",
        "spreadsketch": "netspectra.sketches.spreadsketch:SpreadSketch",
    },
}

#: The variant ``""`` stands for, per skt_type.
DEFAULT_VARIANTS: dict[int, str] = {0: "heavyguardian", 1: "spreadkeeper"}


def resolve_variant(skt_type: int, variant: str = "") -> str:
    """The variant name ``variant`` selects for ``skt_type`` (``""`` → the default); ``ValueError``
    naming the valid choices otherwise."""
    t = int(skt_type)
    if t not in SKETCH_VARIANTS:
        raise ValueError(f"unknown skt_type {skt_type!r}; known sketch types: {sorted(SKETCH_VARIANTS)}")
    name = variant or DEFAULT_VARIANTS[t]
    if name not in SKETCH_VARIANTS[t]:
        valid = ", ".join(repr(v) for v in SKETCH_VARIANTS[t])
        raise ValueError(
            f"unknown variant {variant!r} for skt_type {t}; valid variants: {valid} "
            f'(or "" for the default, {DEFAULT_VARIANTS[t]!r})'
        )
    return name


def variant_class(skt_type: int, variant: str = "") -> type[Sketch]:
    """The class implementing (``skt_type``, ``variant``), imported on first use."""
    t = int(skt_type)
    resolved = resolve_variant(t, variant)
    module, _, name = SKETCH_VARIANTS[t][resolved].partition(":")
    return getattr(importlib.import_module(module), name)
