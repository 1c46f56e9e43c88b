"""Exporter and interface classification: the classifier rules, run once per distinct exporter and per
distinct (exporter, interface) pair, never per row.

A batch's exporter addresses and interface indexes are reduced to their distinct pairs by a kernel
(:func:`~netspectra.enrich.kernels.unique_pairs`); each pair's result comes from a cache, or from the
rules (then cached); the per-pair codes are gathered back to the rows with one numpy take. The inputs of
the rules are the exporter's address, its name and the interface's name, description and speed from
``enrichment.exporters`` (empty or 0 when not listed).

Semantics are Akvorado's: rules run in order; an attribute, once set, is not changed by a later rule;
the rules stop when every attribute is set; values are normalised (lower case, ``a-z0-9.+-``).
"""

from __future__ import annotations

import ipaddress
import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from netspectra.config.enrichment import EnrichmentConfig, ExporterInfo, InterfaceInfo, parse_cidr
from netspectra.counters import Counter, RateLimitedLog
from netspectra.enrich.codes import Dictionary, DictionaryFullError
from netspectra.enrich.kernels import unique_pairs

if TYPE_CHECKING:
    from netspectra.enrich.expr import Rule

log = logging.getLogger(__name__)

EXPORTER_ATTRIBUTES: tuple[str, ...] = ("group", "role", "site", "region", "tenant")
# its defaults, without building the model's validator at import (pydantic's first build in a process costs
# a cached start ~20 ms: the validator and the plugin scan)
_NO_INTERFACE = InterfaceInfo.model_construct()


class ExporterState:
    """What exporter rules write."""

    __slots__ = EXPORTER_ATTRIBUTES

    def __init__(self) -> None:
        for a in EXPORTER_ATTRIBUTES:
            setattr(self, a, "")

    def done(self) -> bool:
        return all(getattr(self, a) for a in EXPORTER_ATTRIBUTES)


class InterfaceState:
    """What interface rules write."""

    __slots__ = ("boundary", "connectivity", "provider")

    def __init__(self) -> None:
        self.boundary = 0
        self.connectivity = ""
        self.provider = ""

    def done(self) -> bool:
        return bool(self.boundary and self.connectivity and self.provider)


@dataclass(frozen=True)
class ClassifierCounters:
    """``evaluations``: rule sets run (cache misses); ``cache_clears``: full caches emptied;
    ``errors``: rules that failed at run time (the attribute stays unknown); ``dictionary_full``: values
    left unknown because their dictionary was full."""

    evaluations: Counter
    cache_clears: Counter
    errors: Counter
    dictionary_full: Counter


def address_text(words: tuple[int, int]) -> str:
    """The text of a 16-byte address given as its two little-endian words (IPv4-mapped -> dotted)."""
    raw = int(words[0]).to_bytes(8, "little") + int(words[1]).to_bytes(8, "little")
    addr = ipaddress.IPv6Address(raw)
    return str(addr.ipv4_mapped) if addr.ipv4_mapped is not None else str(addr)


class Classifier:
    """The classifier rules and exporter metadata of a configuration, with their caches and dictionaries.

    Thread-safe: the caches are guarded by a lock (held for a batch's distinct pairs only).
    """

    def __init__(self, cfg: EnrichmentConfig) -> None:
        self.exporter_rules: tuple[Rule, ...] = ()
        self.interface_rules: tuple[Rule, ...] = ()
        if cfg.classifiers.exporters or cfg.classifiers.interfaces:  # the rule language only when used
            from netspectra.enrich.expr import EXPORTER_LANGUAGE, INTERFACE_LANGUAGE, parse_rule

            rules = cfg.classifiers
            self.exporter_rules = tuple(parse_rule(r, EXPORTER_LANGUAGE) for r in rules.exporters)
            self.interface_rules = tuple(parse_rule(r, INTERFACE_LANGUAGE) for r in rules.interfaces)
        self.cache_size = cfg.classifiers.cache_size
        # Longest prefix first: the first match is the most specific.
        self._metadata = sorted(
            ((parse_cidr(k), v) for k, v in cfg.exporters.items()), key=lambda kv: -kv[0].prefixlen
        )
        self.dictionaries: dict[str, Dictionary] = {
            "connectivity": Dictionary(),
            "provider": Dictionary(),
            **{f"exporter_{a}": Dictionary() for a in ("name", *EXPORTER_ATTRIBUTES)},
        }
        self.counters = ClassifierCounters(Counter(), Counter(), Counter(), Counter())
        self._lock = threading.Lock()
        self._exporters: dict[tuple[int, int], tuple[int, ...]] = {}
        self._interfaces: dict[tuple[int, int, int], tuple[int, int, int]] = {}
        self._errors = RateLimitedLog(log)

    # ----------------------------------------------------------------------------------------------

    def metadata(self, ip_text: str) -> ExporterInfo | None:
        """The ``enrichment.exporters`` entry of the exporter at ``ip_text`` (longest prefix), or None."""
        addr = ipaddress.ip_address(ip_text)
        for net, info in self._metadata:
            if addr.version == net.version and addr in net:
                return info
        return None

    def _code(self, dictionary: str, text: str) -> int:
        try:
            return self.dictionaries[dictionary].code(text)
        except DictionaryFullError:
            self.counters.dictionary_full.inc()
            return 0

    def _run(
        self, rules: tuple[Rule, ...], env: Mapping[str, object], state: ExporterState | InterfaceState
    ) -> None:
        self.counters.evaluations.inc()
        for rule in rules:
            if state.done():
                break
            try:
                rule.run(env, state)
            except Exception as exc:  # a rule must never stop enrichment: count, log, go on
                self.counters.errors.inc()
                self._errors.log(
                    logging.WARNING, "classifier rule %r failed on %s: %s", rule.source, env, exc
                )

    def classify_exporter(self, words: tuple[int, int]) -> tuple[int, ...]:
        """Codes of (name, group, role, site, region, tenant) of one exporter (cached)."""
        got = self._exporters.get(words)
        if got is not None:
            return got
        ip = address_text(words)
        info = self.metadata(ip)
        name = info.name if info is not None else ""
        state = ExporterState()
        if self.exporter_rules:
            self._run(self.exporter_rules, {"Exporter.IP": ip, "Exporter.Name": name}, state)
        codes = (
            self._code("exporter_name", name),
            *(self._code(f"exporter_{a}", getattr(state, a)) for a in EXPORTER_ATTRIBUTES),
        )
        if len(self._exporters) >= self.cache_size:
            self._exporters.clear()
            self.counters.cache_clears.inc()
        self._exporters[words] = codes
        return codes

    def classify_interface(self, words: tuple[int, int], ifindex: int) -> tuple[int, int, int]:
        """Codes of (boundary, connectivity, provider) of one exporter's interface (cached)."""
        key = (words[0], words[1], ifindex)
        got = self._interfaces.get(key)
        if got is not None:
            return got
        ip = address_text(words)
        info = self.metadata(ip)
        iface = _NO_INTERFACE
        if info is not None:
            iface = info.if_indexes.get(ifindex, info.default)
        state = InterfaceState()
        if self.interface_rules:
            env = {
                "Exporter.IP": ip,
                "Exporter.Name": info.name if info is not None else "",
                "Interface.Index": ifindex,
                "Interface.Name": iface.name,
                "Interface.Description": iface.description,
                "Interface.Speed": iface.speed,
            }
            self._run(self.interface_rules, env, state)
        codes = (
            state.boundary,
            self._code("connectivity", state.connectivity),
            self._code("provider", state.provider),
        )
        if len(self._interfaces) >= self.cache_size:
            self._interfaces.clear()
            self.counters.cache_clears.inc()
        self._interfaces[key] = codes
        return codes

    # ----------------------------------------------------------------------------------------------

    def exporters(self, words: np.ndarray) -> np.ndarray:
        """Per-row codes ``(6, n)`` uint16 of ExporterName/Group/Role/Site/Region/Tenant for the
        exporters ``words`` ((n, 2) uint64, the 16-byte addresses viewed as two words)."""
        n = words.shape[0]
        inverse, first = _distinct(words, np.zeros(n, np.uint32))
        per = np.zeros((1 + len(EXPORTER_ATTRIBUTES), first.shape[0]), np.uint16)
        with self._lock:
            for j, row in enumerate(first.tolist()):
                per[:, j] = self.classify_exporter((int(words[row, 0]), int(words[row, 1])))
        return per[:, inverse]

    def interfaces(self, words: np.ndarray, ifindex: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per-row ``(boundary uint8, connectivity uint16, provider uint16)`` for the interfaces
        ``ifindex`` (uint32) of the exporters ``words``."""
        inverse, first = _distinct(words, ifindex)
        k = first.shape[0]
        boundary = np.zeros(k, np.uint8)
        conn = np.zeros(k, np.uint16)
        prov = np.zeros(k, np.uint16)
        with self._lock:
            for j, row in enumerate(first.tolist()):
                boundary[j], conn[j], prov[j] = self.classify_interface(
                    (int(words[row, 0]), int(words[row, 1])), int(ifindex[row])
                )
        return boundary[inverse], conn[inverse], prov[inverse]


def _distinct(words: np.ndarray, ifindex: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n = words.shape[0]
    cap = 1 << max(4, (2 * n).bit_length())
    return unique_pairs(
        np.ascontiguousarray(words[:, 0]),
        np.ascontiguousarray(words[:, 1]),
        np.ascontiguousarray(ifindex, dtype=np.uint32),
        cap,
    )
