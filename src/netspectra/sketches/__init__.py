"""Streaming sketches over fixed-width flow keys: heavy hitters by packets and bytes, spread per flow.

* :mod:`~netspectra.sketches.murmur` — MurmurHash3 x86_32 (numba) and reproducible row seeds;
* :mod:`~netspectra.sketches.keys` — the original's key byte encoding and ``DecodeFlow`` text;
* :mod:`~netspectra.sketches.base` — the :class:`Sketch` interface and its registry by ``skt_type``,
  heavy-hitter results, and :class:`SketchTask` (what the engine and ``netspectra analyze`` run);
* :mod:`~netspectra.sketches.countmin` — skt_type 0, the original's majority-vote "CountMin";
* ``superspread`` — skt_type 1, SuperSpread (found by :func:`sketch_class` when first needed).
"""

from netspectra.sketches.base import (
    HEAVY_HITTERS_SCHEMA,
    HeavyHitterList,
    HeavyHitters,
    HitterType,
    Sketch,
    SketchParams,
    SketchSnapshot,
    SketchTask,
    sketch_class,
)
from netspectra.sketches.countmin import CountMinSketch
from netspectra.sketches.keys import decode_flow, decode_flows, encode_flow_element, encode_keys, key_length
from netspectra.sketches.murmur import derive_seeds, murmur3_32

__all__ = [
    "HEAVY_HITTERS_SCHEMA",
    "CountMinSketch",
    "HeavyHitterList",
    "HeavyHitters",
    "HitterType",
    "Sketch",
    "SketchParams",
    "SketchSnapshot",
    "SketchTask",
    "decode_flow",
    "decode_flows",
    "derive_seeds",
    "encode_flow_element",
    "encode_keys",
    "key_length",
    "murmur3_32",
    "sketch_class",
]
