"""Streaming sketches over fixed-width flow keys: heavy hitters by packets and bytes, spread per flow.

* :mod:`~netspectra.sketches.murmur` — MurmurHash3 x86_32 (numba) and reproducible row seeds;
* :mod:`~netspectra.sketches.keys` — the original's key byte encoding and ``DecodeFlow`` text;
* :mod:`~netspectra.sketches.primitives` — splitmix64, hashing of packed key words, popcount;
* :mod:`~netspectra.sketches.base` — the :class:`Sketch` interface, heavy-hitter results, and
  :class:`SketchTask` (what the engine and ``netspectra analyze`` run);
* :mod:`~netspectra.sketches.variants` — the one table (``skt_type``, ``variant``) → class; the modules
  below are imported by :func:`sketch_class` when a task first needs them:

  - skt_type 0 (heavy hitters): ``heavyguardian`` (default), ``countmin`` (variants ``mv`` and
    ``original``), ``cocosketch``;
  - skt_type 1 (spread): ``spreadkeeper`` (default), ``superspread`` (variant ``original``),
    ``spreadsketch``.

Each kernel module has a plain-Python twin ``<module>_ref`` that the tests replay bit for bit.
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
