"""Loading an MMDB database (GeoLite2, DB-IP lite, IPinfo lite, ...) into step functions.

The maintained reader (``maxminddb``, its C extension when installed) walks the database's search tree
once per load; every leaf network becomes a range of :class:`~netspectra.enrich.table.Steps4` (IPv4
networks, i.e. the IPv4 tree of an IPv6 database) or :class:`~netspectra.enrich.table.Steps6`, with the
source's answer (AS number or country code) already in its bits of the packed value. Records without
the answer leave their range at 0 (unknown).

The reader's walk skips the aliases of the IPv4 tree (``::ffff:0:0/96``, ``2002::/16``, ``2001::/32``),
as their addresses are answered from the IPv4 tree. Which aliases a database really has depends on how
it was written, so :func:`load_database` asks the reader: an alias exists when looking up an address of
the alias prefix gives the embedded IPv4 address's record with the alias's extra prefix length. The
kernel then answers those addresses from the IPv4 table (only for this source's bits).

Every failure is a :class:`DatabaseError` naming the file and what is wrong: missing or unreadable file,
not an MMDB file, a damaged search tree or data section, a database that holds no answer of the kind
asked (an ASN database given as the country database).
"""

from __future__ import annotations

import ipaddress
import os
import time
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from netspectra.enrich.codes import country_code
from netspectra.enrich.kernels import ASN_FIELD, ASN_SHIFT, CC_FIELD, CC_SHIFT
from netspectra.enrich.table import Steps4, Steps6, disjoint_steps4, disjoint_steps6

Kind = Literal["asn", "country"]

#: Alias prefixes of the IPv4 tree: name -> (prefix as int, prefix length, shift of the embedded IPv4).
ALIASES: dict[str, tuple[int, int, int]] = {
    "6to4": (0x2002 << 112, 16, 80),
    "teredo": (0x20010000 << 96, 32, 64),
}


class DatabaseError(Exception):
    """A database that cannot be used: ``path`` and ``problem`` (one line, with what to do)."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


@dataclass(frozen=True)
class FileSignature:
    """What identifies one version of a file: a change of any field means a new version."""

    device: int
    inode: int
    size: int
    mtime_ns: int

    @staticmethod
    def of(path: str) -> FileSignature | None:
        """The file's signature now, or None if it cannot be stat'ed (missing, no permission)."""
        try:
            st = os.stat(path)
        except OSError:
            return None
        return FileSignature(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


@dataclass(frozen=True)
class LoadedDatabase:
    """One database compiled for one kind of answer."""

    path: str
    kind: Kind
    signature: FileSignature | None
    database_type: str
    ip_version: int
    build_epoch: int
    steps4: Steps4
    steps6: Steps6
    #: The packed-value bits of this source.
    field: int
    #: Alias prefixes this database answers from its IPv4 tree (always ``compat`` for IPv6 databases).
    aliases: frozenset[str]
    networks: int
    #: Networks whose record carries no usable answer (no field, or a value that is not one).
    without_answer: int
    load_seconds: float

    def describe(self) -> str:
        return (
            f"{self.path} ({self.database_type}, IPv{self.ip_version}, built "
            f"{time.strftime('%Y-%m-%d', time.gmtime(self.build_epoch))}, {self.networks} networks, "
            f"{len(self.steps4) + len(self.steps6)} ranges)"
        )


def asn_of(record: Any) -> int:
    """The AS number of a record (GeoLite2/DB-IP ``autonomous_system_number``, IPinfo ``asn`` as
    ``"AS15169"`` or a number), 0 if it has none or it is not one."""
    if not isinstance(record, dict):
        return 0
    value = record.get("autonomous_system_number")
    if value is None:
        value = record.get("asn")
    if isinstance(value, str):
        text = value.strip().upper().removeprefix("AS")
        value = int(text) if text.isdigit() else 0
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= 0xFFFFFFFF:
        return 0
    return value


def country_of(record: Any) -> int:
    """The country code of a record (``country.iso_code``, IPinfo ``country_code``), 0 if none."""
    if not isinstance(record, dict):
        return 0
    country = record.get("country")
    if isinstance(country, dict):
        code = country_code(country.get("iso_code"))
        if code:
            return code
    return country_code(record.get("country_code"))


def _check_aliases(reader: Any, probes: list[int]) -> frozenset[str]:
    """The alias prefixes of ``reader``'s IPv4 tree: those whose lookups give the IPv4 records."""
    found = set()
    for name, (prefix, plen, shift) in ALIASES.items():
        agree = 0
        for v4 in probes:
            record4, plen4 = reader.get_with_prefix_len(str(ipaddress.IPv4Address(v4)))
            record6, plen6 = reader.get_with_prefix_len(str(ipaddress.IPv6Address(prefix | (v4 << shift))))
            if record6 != record4 or plen6 != plen + plen4:
                break
            agree += 1
        if probes and agree == len(probes):
            found.add(name)
    return frozenset(found)


def load_database(path: str, kind: Kind) -> LoadedDatabase:
    """Open ``path`` with ``maxminddb``, walk it once and compile its ``kind`` answers.

    :class:`DatabaseError` for every problem (see the module docstring); never a partial table.
    """
    got = load_databases(path, (kind,))[kind]
    if isinstance(got, DatabaseError):
        raise got
    return got


def load_databases(path: str, kinds: tuple[Kind, ...]) -> dict[Kind, LoadedDatabase | DatabaseError]:
    """:func:`load_database` for several kinds of answer from one file in one walk (IPinfo lite holds
    AS numbers and countries; a configuration may name one file twice). A problem of the file raises
    :class:`DatabaseError`; a kind the file has no answer for is a :class:`DatabaseError` in the result."""
    import maxminddb

    t0 = time.perf_counter()
    signature = FileSignature.of(path)
    if signature is None:
        if not os.path.exists(path):
            from netspectra.config.enrichment import missing_path_hint

            hint = missing_path_hint(path)
            raise DatabaseError(path, f"no such file{hint}; check enrichment.geoip in the configuration")
        raise DatabaseError(path, "cannot be read (permissions?)")
    if os.path.isdir(path):
        raise DatabaseError(path, "is a directory, not an MMDB file")
    extract = [(asn_of, ASN_SHIFT) if k == "asn" else (country_of, CC_SHIFT) for k in kinds]
    ranges: list[tuple[list[int], list[int], list[int], list[int], list[int], list[int]]] = [
        ([], [], [], [], [], []) for _ in kinds
    ]
    networks = 0
    without = [0] * len(kinds)
    try:
        reader = maxminddb.open_database(path)
    except (maxminddb.InvalidDatabaseError, ValueError, OSError) as exc:
        raise DatabaseError(path, f"not a valid MaxMind DB (MMDB) file: {exc}") from None
    try:
        meta = reader.metadata()
        ip_version = int(meta.ip_version)
        for net, record in reader:
            networks += 1
            first = int(net.network_address)
            last = first + (1 << (net.max_prefixlen - net.prefixlen)) - 1
            v4 = net.version == 4
            for j, (fn, shift) in enumerate(extract):
                value = fn(record)
                if not value:
                    without[j] += 1
                    continue
                f4, l4, x4, f6, l6, x6 = ranges[j]
                if v4:
                    f4.append(first)
                    l4.append(last)
                    x4.append(value << shift)
                else:
                    f6.append(first)
                    l6.append(last)
                    x6.append(value << shift)
        firsts4 = max((r[0] for r in ranges), key=len)
        probes = firsts4[:: max(1, len(firsts4) // 16)][:16] if ip_version == 6 else []
        aliases = set(_check_aliases(reader, probes)) if probes else set()
    except maxminddb.InvalidDatabaseError as exc:
        raise DatabaseError(path, f"damaged MaxMind DB (MMDB) file: {exc}") from None
    except (ValueError, TypeError, OSError, RuntimeError) as exc:
        raise DatabaseError(path, f"cannot be read as a MaxMind DB (MMDB) file: {exc}") from None
    finally:
        reader.close()
    if ip_version == 6:
        aliases.add("compat")
    out: dict[Kind, LoadedDatabase | DatabaseError] = {}
    for j, kind in enumerate(kinds):
        f4, l4, x4, f6, l6, x6 = ranges[j]
        if networks and not (x4 or x6):
            wanted = (
                "an AS number (autonomous_system_number or asn)"
                if kind == "asn"
                else "a country (country.iso_code or country_code)"
            )
            out[kind] = DatabaseError(
                path,
                f"none of its {networks} networks carries {wanted}: is it "
                f"{'an ASN' if kind == 'asn' else 'a country'} database? "
                f"(its type is {meta.database_type!r})",
            )
            continue
        try:
            steps4 = disjoint_steps4(np.array(f4, np.int64), np.array(l4, np.int64), np.array(x4, np.uint64))
            steps6 = disjoint_steps6(f6, l6, np.array(x6, np.uint64))
        except ValueError as exc:
            raise DatabaseError(path, f"damaged search tree: {exc}") from None
        out[kind] = LoadedDatabase(
            path=path,
            kind=kind,
            signature=signature,
            database_type=str(meta.database_type),
            ip_version=ip_version,
            build_epoch=int(meta.build_epoch),
            steps4=steps4,
            steps6=steps6,
            field=int(ASN_FIELD if kind == "asn" else CC_FIELD),
            aliases=frozenset(aliases),
            networks=networks,
            without_answer=without[j],
            load_seconds=time.perf_counter() - t0,
        )
    return out
