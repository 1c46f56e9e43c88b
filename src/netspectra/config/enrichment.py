"""``enrichment``: the configuration of the enrichment stage (GeoIP/ASN databases, networks, exporters'
interfaces, classifier rules).

Light on purpose (pydantic, :mod:`ipaddress`, :mod:`re`): the root configuration imports it, so
validating a file never loads numpy, numba or the MMDB reader. Everything is checked here, once, with
errors that name the entry: a CIDR that does not parse or has host bits set, the same network written
twice (also in two spellings, ``10.0.0.0/8`` and ``::ffff:10.0.0.0/104``), a country that is not two
letters, a classifier rule that does not parse (with the column and a caret). The paths of the
databases are *not* required to exist here: a missing or damaged database is a run-time condition (the
service starts without that enrichment, says so once and counts the rows it could not enrich; see
``docs/enrichment.md``), and ``netspectra config check`` reports it as a warning.
"""

# No `from __future__ import annotations` here: pydantic reads the models' annotations as objects instead
# of evaluating strings when a class is made (~3 ms of every command's start for the configuration's models).
import functools
import ipaddress
import os
import re
from datetime import timedelta
from typing import Annotated, Any, ClassVar

from pydantic import BeforeValidator, Field, field_validator, model_validator

from netspectra.config.base import (
    GoDuration,
    Problem,
    Section,
    UInt32,
    checked_duration,
    note_outside_read,
    value_errors_at,
)
from netspectra.enrich.columns import BY_NAME as ENRICH_BY_NAME
from netspectra.kinds import did_you_mean

#: Most entries a ``networks`` map may hold (network ids are 21-bit in the compiled table).
MAX_NETWORKS = (1 << 21) - 2
#: Most distinct values one network attribute may take (codes are uint16, 0 = unknown).
MAX_ATTRIBUTE_VALUES = (1 << 16) - 1

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")


def parse_cidr(text: Any) -> IPNetwork:
    """``text`` as a network (IPv4 or IPv6; an IPv4-mapped IPv6 network inside ``::ffff:0:0/96`` becomes
    the IPv4 network it maps, as NetSpectra keeps IPv4 addresses mapped); a bare address is a /32 or
    /128. ``ValueError`` with the fix for anything else, host bits set included."""
    if not isinstance(text, str):
        text = str(text)
    return _parse_cidr(text)


_MMDB_METADATA_MARKER = b"\xab\xcd\xefMaxMind.com"
_MMDB_METADATA_MAX = 128 * 1024  # the MMDB spec: the metadata section is within the file's last 128 KiB


def missing_path_hint(path: str, *, resolved: bool = True) -> str:
    """What may be wrong with a database ``path`` that does not exist, for its message: ``~`` is not
    expanded (as in Akvorado, the path is used as written), a relative path is read from the current
    directory (not the configuration file's); ``""`` otherwise. ``resolved``: name the expanded path and
    the current directory (not in a configuration's warnings, which the validated cache keeps)."""
    if path.startswith("~"):
        example = f", e.g. {os.path.expanduser(path)}" if resolved else ""
        return f" ('~' is not expanded: write the full path{example})"
    if not os.path.isabs(path):
        where = f", {os.getcwd()}" if resolved else ""
        return f" (a relative path is read from the current directory{where})"
    return ""


def _has_mmdb_metadata(path: str) -> bool:
    """Whether ``path`` ends as an MMDB file does (its metadata marker in the last 128 KiB): what tells
    ``config check`` that a database path names some other file, without opening the database (an
    unreadable file is left to the loader, which names the error)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(max(0, os.fstat(fh.fileno()).st_size - _MMDB_METADATA_MAX))
            return _MMDB_METADATA_MARKER in fh.read()
    except OSError:
        return True


@functools.lru_cache(maxsize=1 << 14)
def _parse_cidr(text: str) -> IPNetwork:
    # Remembered (ipaddress networks are immutable): the networks map's keys are parsed when the
    # configuration is validated and again when the enrichment compiles it (2,000 networks: ~10 ms each).
    try:
        net = ipaddress.ip_network(text.strip(), strict=True)
    except ValueError as exc:
        if "has host bits set" in str(exc):
            loose = ipaddress.ip_network(text.strip(), strict=False)
            raise ValueError(f"{text!r} has host bits set; write {loose}") from None
        raise ValueError(
            f"{text!r} is not a network; write a CIDR such as 192.0.2.0/24 or 2001:db8::/32"
        ) from None
    if isinstance(net, ipaddress.IPv6Network) and net.prefixlen >= 96 and net.subnet_of(_MAPPED):
        v4 = ipaddress.IPv4Address(int(net.network_address) & 0xFFFFFFFF)
        return ipaddress.IPv4Network((v4, net.prefixlen - 96))
    return net


#: A CIDR in IPv4's canonical spelling (what ``str()`` of an ``IPv4Network`` gives: no leading zeros,
#: octets up to 255, a prefix length up to 32): :func:`cidr_span` reads it without :mod:`ipaddress`.
_CANONICAL_V4 = re.compile(
    r"((?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d))/(3[0-2]|[12]?\d)",
    re.ASCII,  # \d: 0-9 only (ipaddress refuses other digits)
)


def cidr_span(text: str) -> tuple[str, int, int, int]:
    """``(canonical text, IP version, first address, prefix length)`` of :func:`parse_cidr` of ``text``
    (an IPv4-mapped IPv6 network is the IPv4 network it maps; ``ValueError`` as there). A network map's
    key is two of these, not an ``ipaddress`` object: an IPv4 CIDR in canonical spelling — the usual key
    of a large map — is read with one regular expression (~1 µs instead of ~10 µs: 2,000 networks are
    parsed when the configuration is validated and again when the map is compiled)."""
    m = _CANONICAL_V4.fullmatch(text)
    if m is not None:
        a, b, c, d = map(int, m[1].split("."))
        first, plen = (a << 24) | (b << 16) | (c << 8) | d, int(m[2])
        if not first & ((1 << (32 - plen)) - 1):  # host bits set: parse_cidr says what to write
            return text, 4, first, plen
    net = parse_cidr(text)
    return str(net), net.version, int(net.network_address), net.prefixlen


def filled_by(column: str) -> str:
    """The configuration keys that fill enrichment column ``column``, for messages."""
    keys = (
        k.strip().replace("networks.", "networks.<cidr>.") for k in ENRICH_BY_NAME[column].source.split(",")
    )
    return " or ".join(f"enrichment.{k}" for k in keys)


#: Two-letter codes in common use that ISO 3166-1 only reserves (the European Union's for the United
#: Kingdom and Greece): no GeoIP database answers them, so a network set to one would never match.
_RESERVED_COUNTRIES = {"UK": ("the United Kingdom", "GB"), "EL": ("Greece", "GR")}


def _country(value: Any) -> str:
    if value is None or value == "":
        return ""
    if not isinstance(value, str) or len(value) != 2 or not value.isascii() or not value.isalpha():
        raise ValueError(f"{value!r} is not an ISO 3166 alpha-2 country code; write two letters, e.g. FR")
    code = value.upper()
    if code in _RESERVED_COUNTRIES:
        name, iso = _RESERVED_COUNTRIES[code]
        raise ValueError(
            f"{value!r} is not the ISO 3166 alpha-2 code of {name} (only reserved), which the GeoIP "
            f"databases answer as {iso}; write {iso}"
        )
    return code


Country = Annotated[str, BeforeValidator(_country)]


class _Entry(Section):
    """An entry of a mapping (a network, an exporter, an interface): the unknown-key warnings do not walk
    into mappings, so an unknown key here is an error that names it, not a silent no-op."""

    @model_validator(mode="before")
    @classmethod
    def _known(cls, data: Any) -> Any:
        if isinstance(data, dict):
            known = cls.known_keys(data)
            for key in data:
                if key not in known:
                    hint = cls._hints.get(str(key))
                    fix = f"write {hint}" if hint else f"known keys are {', '.join(known)}"
                    raise ValueError(f"unknown key {key!r}{did_you_mean(key, known)}; {fix}")
        return data


def _name_only(value: Any) -> Any:
    # As Akvorado: a network given as a bare string is its name.
    if isinstance(value, str | int):
        return {"name": str(value)}
    return value


class NetworkAttributes(_Entry):
    """The attributes of one ``networks`` entry (Akvorado's ``networks``); a bare string is the ``name``.

    In a nested network, an attribute left empty is inherited from the closest enclosing network that
    sets it (as Akvorado). ``asn`` and ``country``, when set, win over the GeoIP databases for the
    addresses of the network (an operator's correction or a private range the databases do not know).
    """

    name: str = ""
    role: str = ""
    site: str = ""
    region: str = ""
    tenant: str = ""
    asn: UInt32 = 0
    country: Country = ""


#: The string attributes of a network, in column order.
NETWORK_ATTRIBUTES: tuple[str, ...] = ("name", "role", "site", "region", "tenant")


def _networks(value: Any) -> Any:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError("write networks as a mapping of CIDR to attributes, e.g. 10.0.0.0/8: {name: corp}")
    if len(value) > MAX_NETWORKS:
        raise ValueError(f"{len(value)} networks, more than the {MAX_NETWORKS} a table can hold")
    out: dict[str, Any] = {}
    seen: dict[str, str] = {}  # canonical text -> the key that spelled it
    bad: list[Problem] = []  # every bad entry, not only the first
    for key, attrs in value.items():
        try:
            net = cidr_span(key if isinstance(key, str) else str(key))[0]
        except ValueError as exc:
            bad.append(((str(key),), str(exc), key))
            continue
        if net in seen:
            bad.append(
                (
                    (str(key),),
                    f"{key!r} is the same network as {seen[net]!r} ({net}); keep one entry per network",
                    key,
                )
            )
            continue
        seen[net] = str(key)
        out[net] = _name_only(attrs) if attrs is not None else {}
    if bad:
        raise value_errors_at(bad)
    return out


class GeoIPConfig(Section):
    """``enrichment.geoip``: MMDB databases (GeoLite2, DB-IP lite, IPinfo lite and any database of that
    format). Empty path = that enrichment is off. A City database serves as the country database."""

    _hints: ClassVar[dict[str, str]] = {
        "geo_database": "country_database",
        "geo-database": "country_database",
        "asn-database": "asn_database",
    }

    #: MMDB with ``autonomous_system_number`` (GeoLite2-ASN, DB-IP ASN lite, GeoIP2-ISP) or ``asn``
    #: (IPinfo lite) per network.
    asn_database: str = ""
    #: MMDB with ``country.iso_code`` (GeoLite2-Country or -City, DB-IP country lite) or
    #: ``country_code`` (IPinfo lite) per network.
    country_database: str = ""
    #: How often the files are checked for a change (size, mtime, inode), between batches; 0 = before every
    #: batch. A changed file is compiled in the background and swapped in between two batches.
    check_interval: GoDuration = timedelta(seconds=30)
    #: Where compiled databases and tables are kept between runs (keyed by the databases' bytes, so never
    #: stale): empty → ``$XDG_CACHE_HOME/netspectra/enrich`` (else ``~/.cache/netspectra/enrich``);
    #: ``off`` → compile at every start.
    cache_dir: str = ""

    @field_validator("check_interval")
    @classmethod
    def _not_negative(cls, v: timedelta) -> timedelta:
        return checked_duration(v, "write 0s (every batch) or e.g. 30s")


class InterfaceInfo(_Entry):
    """What is known of one interface of an exporter (Akvorado's static metadata)."""

    name: str = ""
    description: str = ""
    #: Speed in Mbit/s (0 = unknown).
    speed: UInt32 = 0


class ExporterInfo(_Entry):
    """``enrichment.exporters.<address or CIDR>``: an exporter's name and interfaces, for the classifiers.

    ``if_indexes`` maps interface indexes to their name, description and speed; ``default`` describes an
    interface that is not listed."""

    _hints: ClassVar[dict[str, str]] = {"if-indexes": "if_indexes", "interfaces": "if_indexes"}

    name: str = ""
    default: InterfaceInfo = Field(default_factory=InterfaceInfo)
    if_indexes: dict[UInt32, InterfaceInfo] = Field(default_factory=dict)


def _exporters(value: Any) -> Any:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError("write exporters as a mapping of address (or CIDR) to {name, if_indexes}")
    out: dict[str, Any] = {}
    seen: dict[IPNetwork, str] = {}
    bad: list[Problem] = []
    for key, info in value.items():
        try:
            net = parse_cidr(key)
        except ValueError as exc:
            bad.append(((str(key),), str(exc), key))
            continue
        if net in seen:
            bad.append(((str(key),), f"{key!r} is the same exporter as {seen[net]!r}; keep one entry", key))
            continue
        seen[net] = str(key)
        out[str(net)] = info if info is not None else {}
    if bad:
        raise value_errors_at(bad)
    return out


def _rules(value: Any, language: str) -> tuple[str, ...]:
    """``value`` as a tuple of rules, each parsed in ``netspectra.enrich.expr``'s ``language`` (the name of
    its :class:`~netspectra.enrich.expr.Language`), loaded only when there are rules (start-up time)."""
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list | tuple):
        raise ValueError("write the rules as a YAML list of strings")
    if not value:
        return ()
    from netspectra.enrich import expr
    from netspectra.enrich.expr import RuleError, parse_rule

    lang = getattr(expr, language)
    bad: list[Problem] = []
    for i, rule in enumerate(value):
        try:
            parse_rule(rule, lang)
        except RuleError as exc:
            text = rule if isinstance(rule, str) else repr(rule)
            bad.append(((i,), exc.describe(text), rule))
    if bad:
        raise value_errors_at(bad)
    return tuple(value)


class ClassifiersConfig(Section):
    """``enrichment.classifiers``: Akvorado-style rules, tried in order until every attribute is set.

    ``exporters`` rules read ``Exporter.IP``/``Exporter.Name`` and call ``ClassifyGroup``, ``ClassifyRole``,
    ``ClassifySite``, ``ClassifyRegion``, ``ClassifyTenant`` (and their ``...Regex`` forms); ``interfaces``
    rules also read ``Interface.Index``/``Name``/``Description``/``Speed`` and call ``ClassifyExternal``,
    ``ClassifyInternal``, ``ClassifyConnectivity[Regex]``, ``ClassifyProvider[Regex]``. The language is in
    ``docs/enrichment.md``; every rule is parsed and type-checked here.
    """

    _hints: ClassVar[dict[str, str]] = {
        "exporter-classifiers": "exporters",
        "interface-classifiers": "interfaces",
    }

    exporters: tuple[str, ...] = ()
    interfaces: tuple[str, ...] = ()
    #: Most (exporter, interface) results kept; the cache is emptied (and counted) when it is full.
    cache_size: int = Field(100_000, ge=16)

    @field_validator("exporters", mode="before")
    @classmethod
    def _exporter_rules(cls, v: Any) -> tuple[str, ...]:
        return _rules(v, "EXPORTER_LANGUAGE")

    @field_validator("interfaces", mode="before")
    @classmethod
    def _interface_rules(cls, v: Any) -> tuple[str, ...]:
        return _rules(v, "INTERFACE_LANGUAGE")


class EnrichmentConfig(Section):
    """``enrichment`` (a NetSpectra addition): what the enrichment stage adds to every row.

    Nothing configured = nothing to enrich (:attr:`enabled` is False). See ``docs/enrichment.md``.
    """

    geoip: GeoIPConfig = Field(default_factory=GeoIPConfig)
    #: CIDR -> attributes (name, role, site, region, tenant, asn, country); the longest prefix wins.
    networks: Annotated[dict[str, NetworkAttributes], BeforeValidator(_networks)] = Field(
        default_factory=dict
    )
    #: Exporter address or CIDR -> its name and interfaces (the classifiers' inputs).
    exporters: Annotated[dict[str, ExporterInfo], BeforeValidator(_exporters)] = Field(default_factory=dict)
    classifiers: ClassifiersConfig = Field(default_factory=ClassifiersConfig)

    @field_validator("networks")
    @classmethod
    def _attribute_values(cls, v: dict[str, NetworkAttributes]) -> dict[str, NetworkAttributes]:
        for attr in NETWORK_ATTRIBUTES:
            distinct = {getattr(a, attr) for a in v.values()} - {""}
            if len(distinct) > MAX_ATTRIBUTE_VALUES:
                raise ValueError(
                    f"the networks use {len(distinct)} different {attr}s, more than {MAX_ATTRIBUTE_VALUES}"
                )
        return v

    @classmethod
    def known_keys(cls, data: dict[str, Any]) -> dict[str, Any]:
        keys = super().known_keys(data)
        # Mappings keyed by CIDR: their entries check their own keys (:class:`_Entry`).
        keys["networks"] = keys["exporters"] = (None, False)
        return keys

    def warnings(self) -> list[str]:
        """Problems that do not stop NetSpectra: a configured database file that does not exist now (the
        services start without it and load it when it appears)."""
        return list(self.database_problems().values())

    def database_problems(self) -> dict[str, str]:
        """The ``geoip`` keys (``asn_database``, ``country_database``) whose path names no usable file now
        (missing, a directory, not an MMDB file) -> the warning that says so (:meth:`warnings`). The
        enrichment stage does not repeat it when its first load of that database fails: the
        configuration's warning said so already, once."""
        out: dict[str, str] = {}
        for key, what in (("asn_database", "AS numbers"), ("country_database", "countries")):
            path = getattr(self.geoip, key).strip()
            if path:
                # a warning that depends on the file: the validated cache checks that file's identity
                note_outside_read(path)
            if path and os.path.isdir(path):  # "appears" would never happen: say what to write
                example = os.path.join(
                    path, "GeoLite2-ASN.mmdb" if key == "asn_database" else "GeoLite2-City.mmdb"
                )
                out[key] = (
                    f"enrichment.geoip.{key}: {path!r} is a directory; give the path of the .mmdb file in it "
                    f"(e.g. {example}); the services start without {what}"
                )
            elif path and not os.path.isfile(path):
                hint = missing_path_hint(path, resolved=False)
                out[key] = (
                    f"enrichment.geoip.{key}: {path!r} is not a file{hint}; the services start without "
                    f"{what} and load the database when it appears"
                )
            elif path and not _has_mmdb_metadata(path):
                out[key] = (
                    f"enrichment.geoip.{key}: {path!r} is not a MaxMind DB (MMDB) file (no MMDB metadata "
                    "at its end; a downloaded .tar.gz or .zip holds the .mmdb: extract it); the services "
                    f"start without {what} and load the database when the file changes"
                )
        return out

    def fills(self, column: str) -> bool:
        """Whether this configuration can give enrichment column ``column`` (a name of
        :data:`netspectra.enrich.columns.COLUMNS`) a known value for some row: what fills it
        (:func:`filled_by`) is configured. A task keyed on a column nothing fills would count every
        row under the unknown value, so the configuration refuses it."""
        c = ENRICH_BY_NAME[column]
        g, rules = self.geoip, self.classifiers
        nets = self.networks.values()
        if c.needs == "addresses":
            if column.endswith("AS"):
                return bool(g.asn_database.strip()) or any(n.asn for n in nets)
            if column.endswith("Country"):
                return bool(g.country_database.strip()) or any(n.country for n in nets)
            return any(getattr(n, c.dictionary or "") for n in nets)
        if c.needs == "interfaces":
            return bool(rules.interfaces)
        if column == "ExporterName":
            return any(e.name for e in self.exporters.values())
        return bool(rules.exporters)

    @property
    def enabled(self) -> bool:
        """True when anything is configured (a database, a network, an exporter, a classifier rule)."""
        g = self.geoip
        c = self.classifiers
        return bool(
            g.asn_database.strip()
            or g.country_database.strip()
            or self.networks
            or self.exporters
            or c.exporters
            or c.interfaces
        )
