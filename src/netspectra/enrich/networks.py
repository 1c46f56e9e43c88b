"""Compiling the ``networks`` map of the configuration into step functions and attribute arrays.

Each distinct combination of resolved attributes gets a network id (1, 2, ...; 0 = no network); the
step functions carry the id in the low bits of the packed value (:mod:`netspectra.enrich.kernels`) and
the arrays map an id to its AS number override, country override and string attribute codes.

Resolution follows Akvorado: the most specific network owns an address; an attribute it leaves empty
is inherited from the closest enclosing network that sets it. An IPv6 network that contains the whole
IPv4-mapped prefix ``::ffff:0:0/96`` (``::/0`` for instance) also covers every IPv4 address, less
specifically than any IPv4 network.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from netspectra.config.enrichment import NETWORK_ATTRIBUTES, NetworkAttributes, parse_cidr
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


def _resolve(parent: tuple, own: NetworkAttributes) -> tuple:
    values = [getattr(own, a) for a in NETWORK_ATTRIBUTES] + [own.asn, own.country]
    return tuple(v if v else p for v, p in zip(values, parent, strict=True))


def _as128(net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> ipaddress.IPv6Network:
    if net.version == 4:
        mapped = int(_MAPPED.network_address) | int(net.network_address)
        return ipaddress.IPv6Network((mapped, 96 + net.prefixlen))
    return net  # type: ignore[return-value]


def compile_networks(networks: Mapping[str, NetworkAttributes]) -> CompiledNetworks:
    """Compile a validated ``enrichment.networks`` map (keys are CIDRs, see the module docstring)."""
    dictionaries = {a: Dictionary() for a in NETWORK_ATTRIBUTES}
    for attrs in networks.values():  # codes in the order of the configuration: stable for a given file
        for a in NETWORK_ATTRIBUTES:
            dictionaries[a].code(getattr(attrs, a))
    # Resolve inheritance in containment order, in the 128-bit space where IPv4 is ::ffff:a.b.c.d/96+n
    # (so an IPv6 network holding ::ffff:0:0/96 is an ancestor of every IPv4 network).
    parsed = sorted(
        ((_as128(parse_cidr(cidr)), attrs) for cidr, attrs in networks.items()),
        key=lambda na: (int(na[0].network_address), na[0].prefixlen),
    )
    empty = ("",) * len(NETWORK_ATTRIBUTES) + (0, "")
    ids: dict[tuple, int] = {empty: 0}
    entries4: list[tuple[int, int, int, int]] = []
    entries6: list[tuple[int, int, int, int]] = []
    stack: list[tuple[ipaddress.IPv6Network, tuple]] = []
    base = int(_MAPPED.network_address)
    for net, attrs in parsed:
        while stack and not net.subnet_of(stack[-1][0]):
            stack.pop()
        resolved = _resolve(stack[-1][1] if stack else empty, attrs)
        stack.append((net, resolved))
        nid = ids.setdefault(resolved, len(ids))
        first, last = int(net.network_address), int(net.broadcast_address)
        if net.subnet_of(_MAPPED):
            entries4.append((first - base, last - base, net.prefixlen, nid))
            continue
        entries6.append((first, last, net.prefixlen, nid))
        if _MAPPED.subnet_of(net):
            entries4.append((0, (1 << 32) - 1, net.prefixlen, nid))
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
    return CompiledNetworks(
        steps4_from_lists(s4, v4),
        steps6_from_lists(s6, v6),
        net_asn,
        net_cc,
        net_attr,
        dictionaries,
        len(networks),
    )
