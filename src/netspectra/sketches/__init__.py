"""Streaming sketches over fixed-width flow keys: heavy hitters by packets and bytes, spread per flow.

* :mod:`~netspectra.sketches.kind` — the :class:`~netspectra.sketches.kind.SketchKind` interface (what a
  kind of sketch declares: parameters, heavy-hitter types, memory); the built-in kinds are declared in
  :mod:`~netspectra.sketches.countmin_kind` (``skt_type: 0``) and
  :mod:`~netspectra.sketches.superspread_kind` (``skt_type: 1``);
* :mod:`~netspectra.sketches.sketch_kind` — the ``sketch`` aggregator kind (task configuration, alert
  metrics, building the engine's tasks);
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

Names are re-exported lazily: importing a kind declaration does not load the kernels.
"""

from netspectra.lazy import lazy_exports

_BASE = "netspectra.sketches.base"
_KEYS = "netspectra.sketches.keys"
_WHERE = {
    "HEAVY_HITTERS_SCHEMA": _BASE,
    "HeavyHitterList": _BASE,
    "HeavyHitters": _BASE,
    "Sketch": _BASE,
    "SketchParams": _BASE,
    "SketchSnapshot": _BASE,
    "SketchTask": _BASE,
    "sketch_class": _BASE,
    "HitterType": "netspectra.sketches.kind",
    "CountMinSketch": "netspectra.sketches.countmin",
    "decode_flow": _KEYS,
    "decode_flows": _KEYS,
    "encode_flow_element": _KEYS,
    "encode_keys": _KEYS,
    "key_length": _KEYS,
    "derive_seeds": "netspectra.sketches.murmur",
    "murmur3_32": "netspectra.sketches.murmur",
}
__getattr__ = lazy_exports(__name__, _WHERE)
__all__ = sorted(_WHERE)
