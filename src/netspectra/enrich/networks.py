"""Compiling the ``networks`` map of the configuration into step functions and attribute arrays.

Each distinct combination of resolved attributes gets a network id (1, 2, ...; 0 = no network); the
step functions carry the id in the low bits of the packed value (:mod:`netspectra.enrich.kernels`) and
the arrays map an id to its AS number override, country override and string attribute codes.

Each distinct combination of the five string attributes is a *network class* (0: none set): networks
that differ only in their AS or country override share a class. ``net_class`` maps a network id to its
class and ``class_attr`` a class to its attribute codes. Both are functions of the ``networks`` map alone
(they never change with a database reload), so a rollup task keys on the class of a row's network
(:mod:`netspectra.rollup.codes`) and decodes the attributes with ``class_attr``.

Resolution follows Akvorado: the most specific network owns an address; an attribute it leaves empty
is inherited from the closest enclosing network that sets it. An IPv6 network that contains the whole
IPv4-mapped prefix ``::ffff:0:0/96`` (``::/0`` for instance) also covers every IPv4 address, less
specifically than any IPv4 network.
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from netspectra.config.enrichment import NETWORK_ATTRIBUTES, NetworkAttributes, cidr_span
from netspectra.enrich.codes import Dictionary, country_code
from netspectra.enrich.table import Steps4, Steps6, nested_steps, steps4_from_lists, steps6_from_lists

_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")


@dataclass(frozen=True)
class CompiledNetworks:
    """The ``networks`` map compiled: step functions (values = network ids), per-id arrays, and the
    dictionary of each string attribute (``name``, ``role``, ``site``, ``region``, ``tenant``)."""

    steps4: Steps4
    steps6: Steps6
    net_asn: np.ndarray  # uint32 (m,)
    net_cc: np.ndarray  # uint16 (m,)
    net_attr: np.ndarray  # uint16 (5, m)
    dictionaries: dict[str, Dictionary]
    count: int
    net_class: np.ndarray  # uint32 (m,): the class of each network id (module docstring)
    class_attr: np.ndarray  # uint16 (5, k): the attribute codes of each class (class 0: all unknown)


def _resolve(parent: tuple, own: NetworkAttributes) -> tuple:
    values = [getattr(own, a) for a in NETWORK_ATTRIBUTES] + [own.asn, own.country]
    return tuple(v if v else p for v, p in zip(values, parent, strict=True))


_MAPPED_FIRST = int(_MAPPED.network_address)
_MAPPED_LAST = int(_MAPPED.broadcast_address)


def _span128(cidr: str) -> tuple[int, int, int]:
    """``(first, last, prefix length)`` of ``cidr`` in the 128-bit space, IPv4 as ``::ffff:a.b.c.d/96+n``
    (integers: containment is two comparisons, where ``ipaddress`` objects cost microseconds each)."""
    _, version, first, plen = cidr_span(cidr)
    if version == 4:
        first, plen = _MAPPED_FIRST | first, 96 + plen
    return first, first | ((1 << (128 - plen)) - 1), plen


def compile_networks(networks: Mapping[str, NetworkAttributes]) -> CompiledNetworks:
    """Compile a validated ``enrichment.networks`` map (keys are CIDRs, see the module docstring)."""
    dictionaries = {a: Dictionary() for a in NETWORK_ATTRIBUTES}
    for attrs in networks.values():  # codes in the order of the configuration: stable for a given file
        for a in NETWORK_ATTRIBUTES:
            dictionaries[a].code(getattr(attrs, a))
    # Resolve inheritance in containment order, in the 128-bit space where IPv4 is ::ffff:a.b.c.d/96+n
    # (so an IPv6 network holding ::ffff:0:0/96 is an ancestor of every IPv4 network).
    parsed = sorted(
        ((_span128(cidr), attrs) for cidr, attrs in networks.items()),
        key=lambda na: (na[0][0], na[0][2]),
    )
    empty = ("",) * len(NETWORK_ATTRIBUTES) + (0, "")
    ids: dict[tuple, int] = {empty: 0}
    entries4: list[tuple[int, int, int, int]] = []
    entries6: list[tuple[int, int, int, int]] = []
    stack: list[tuple[int, int, tuple]] = []  # enclosing networks: first, last, resolved attributes
    base = _MAPPED_FIRST
    for (first, last, plen), attrs in parsed:
        while stack and not (stack[-1][0] <= first and last <= stack[-1][1]):
            stack.pop()
        resolved = _resolve(stack[-1][2] if stack else empty, attrs)
        stack.append((first, last, resolved))
        nid = ids.setdefault(resolved, len(ids))
        if first >= _MAPPED_FIRST and last <= _MAPPED_LAST:  # inside ::ffff:0:0/96: an IPv4 network
            entries4.append((first - base, last - base, plen, nid))
            continue
        entries6.append((first, last, plen, nid))
        if first <= _MAPPED_FIRST and last >= _MAPPED_LAST:  # holds every IPv4 address too
            entries4.append((0, (1 << 32) - 1, plen, nid))
    s4, v4 = nested_steps(entries4, (1 << 32) - 1)
    s6, v6 = nested_steps(entries6, (1 << 128) - 1)
    m = len(ids)
    net_asn = np.zeros(m, np.uint32)
    net_cc = np.zeros(m, np.uint16)
    net_attr = np.zeros((len(NETWORK_ATTRIBUTES), m), np.uint16)
    for resolved, nid in ids.items():
        for j, a in enumerate(NETWORK_ATTRIBUTES):
            net_attr[j, nid] = dictionaries[a].code(resolved[j])
        net_asn[nid] = resolved[len(NETWORK_ATTRIBUTES)]
        net_cc[nid] = country_code(resolved[len(NETWORK_ATTRIBUTES) + 1])
    net_class, class_attr = network_classes(net_attr)
    return CompiledNetworks(
        steps4_from_lists(s4, v4),
        steps6_from_lists(s6, v6),
        net_asn,
        net_cc,
        net_attr,
        dictionaries,
        len(networks),
        net_class,
        class_attr,
    )


def network_classes(net_attr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(net_class, class_attr)`` of the attribute arrays ``net_attr`` ((a, m) uint16, column ``id``: a
    network id's codes): classes numbered in order of their first network id, so the all-unknown
    combination (id 0) is class 0. Any number ``a`` of attribute rows: a rollup task's projection onto
    the attributes it names is the classes of those rows (:meth:`netspectra.rollup.codes.SideKey.of`)."""
    m = net_attr.shape[1]
    classes: dict[tuple[int, ...], int] = {}
    net_class = np.empty(m, np.uint32)
    for nid, codes in enumerate(map(tuple, net_attr.T.tolist())):
        net_class[nid] = classes.setdefault(codes, len(classes))
    class_attr = np.zeros((net_attr.shape[0], max(len(classes), 1)), np.uint16)
    for codes, k in classes.items():
        class_attr[:, k] = codes
    return net_class, class_attr


#: Bump when what :func:`compile_networks` makes of a map changes (a part of the disk cache's key).
COMPILE_FORMAT = 1
#: Smaller maps are compiled at every start: they compile faster than a cache entry reads (~1 ms).
CACHE_MIN_NETWORKS = 100


def networks_key(networks: Mapping[str, NetworkAttributes]) -> str:
    """A text that names the map's content, in its order (the dictionaries' codes follow it): the disk
    cache's key of its compilation (JSON of every field of every entry: distinct maps are distinct
    texts)."""
    entries = [[cidr, *vars(attrs).values()] for cidr, attrs in networks.items()]
    # (a field JSON cannot hold: its repr)
    return json.dumps([COMPILE_FORMAT, _compiler_fingerprint(), *entries], default=repr)


@functools.cache
def _compiler_fingerprint() -> str:
    """A hash of the source of the modules whose code decides what :func:`compile_networks` makes of a
    map (this one, the step functions', the dictionaries' and the configuration's network rules), so
    that a changed compiler never reads a compilation of the old one from the disk cache, even where
    :data:`COMPILE_FORMAT` was not bumped; ``""`` where a source cannot be read (a zipped install:
    :data:`COMPILE_FORMAT` alone then)."""
    import netspectra.config.enrichment as config_enrichment
    import netspectra.enrich.codes as codes
    import netspectra.enrich.table as table

    h = hashlib.sha256()
    for module in (sys.modules[__name__], table, codes, config_enrichment):
        try:
            h.update(Path(module.__file__ or "").read_bytes())
        except OSError:
            return ""
    return h.hexdigest()[:20]


def _to_arrays(c: CompiledNetworks) -> dict[str, np.ndarray]:
    meta = {"count": c.count, "dictionaries": {a: list(d.values()) for a, d in c.dictionaries.items()}}
    return {
        "s4_starts": c.steps4.starts,
        "s4_vals": c.steps4.vals,
        "s6_hi": c.steps6.hi,
        "s6_lo": c.steps6.lo,
        "s6_vals": c.steps6.vals,
        "net_asn": c.net_asn,
        "net_cc": c.net_cc,
        "net_attr": c.net_attr,
        "net_class": c.net_class,
        "class_attr": c.class_attr,
        "meta": np.frombuffer(json.dumps(meta).encode(), np.uint8),
    }


def _from_arrays(a: dict[str, np.ndarray]) -> CompiledNetworks:
    meta = json.loads(bytes(a["meta"]).decode())
    return CompiledNetworks(
        Steps4(a["s4_starts"], a["s4_vals"]),
        Steps6(a["s6_hi"], a["s6_lo"], a["s6_vals"]),
        a["net_asn"],
        a["net_cc"],
        a["net_attr"],
        {name: Dictionary.restored(values) for name, values in meta["dictionaries"].items()},
        meta["count"],
        a["net_class"],
        a["class_attr"],
    )


_COMPILED: list[tuple[Mapping[str, NetworkAttributes], CompiledNetworks]] = []


def compiled_networks(
    networks: Mapping[str, NetworkAttributes], cache_setting: str | None = None
) -> CompiledNetworks:
    """:func:`compile_networks` of ``networks``, compiled once per content (a copy of the map is kept and
    compared): the enrichment stage and the rollup tasks of one configuration share one compilation (so
    start-up pays once; the classes would be the same anyway: the compilation is deterministic).

    ``cache_setting`` (``enrichment.geoip.cache_dir``; None: no disk cache): a map of
    :data:`CACHE_MIN_NETWORKS` or more is compiled once per content and read back from the enrichment's
    disk cache (:meth:`netspectra.enrich.cache.TableCache.arrays`, keyed by :func:`networks_key`) at later
    starts: 2,000 networks compile in ~25 ms."""
    for held, got in _COMPILED:
        if held == networks:
            return got
    if cache_setting is not None and len(networks) >= CACHE_MIN_NETWORKS:
        from netspectra.enrich.cache import TableCache, cache_dir

        cache = TableCache(cache_dir(cache_setting))
        got = cache.arrays(
            "networks",
            networks_key(networks),
            lambda: _to_arrays(compile_networks(networks)),
            _from_arrays,
        )
    else:
        got = compile_networks(networks)
    _COMPILED[:] = [*_COMPILED[-1:], (dict(networks), got)]  # the last two maps: a reload's old and new
    return got
