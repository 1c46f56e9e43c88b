"""GeoIP/ASN enrichment from MMDB files: the compiled tables answer as the source data and the maintained
reader do, for IPv4, IPv6 and IPv4-mapped addresses (and the IPv4 aliases of IPv6 databases); damaged,
missing or wrong databases give a clear error at load and never a wrong answer."""

from __future__ import annotations

import ipaddress
import json
import logging
import shutil
from pathlib import Path

import maxminddb
import numpy as np
import pytest
from mmdb_writing import write_mmdb

from netspectra.config.enrichment import EnrichmentConfig
from netspectra.enrich.codes import COUNTRY_CODES
from netspectra.enrich.enricher import Enricher
from netspectra.enrich.mmdb import DatabaseError, load_database

MAPPED = 0xFFFF << 32
DAMAGED = (
    "GeoIP2-City-Test-Broken-Double-Format.mmdb",
    "GeoIP2-City-Test-Invalid-Node-Count.mmdb",
    "MaxMind-DB-test-broken-pointers-24.mmdb",
    "MaxMind-DB-test-broken-search-tree-24.mmdb",
)


def as16(value: int) -> np.ndarray:
    return np.frombuffer(value.to_bytes(16, "big"), np.uint8)


def netspectra_form(addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> int:
    """The 128-bit value NetSpectra stores: IPv4 mapped into ``::ffff:0:0/96``."""
    return (MAPPED | int(addr)) if addr.version == 4 else int(addr)


def enricher(asn: str | Path = "", country: str | Path = "", **geoip: object) -> Enricher:
    cfg = EnrichmentConfig.model_validate(
        {"geoip": {"asn_database": str(asn), "country_database": str(country), **geoip}}
    )
    return Enricher.from_config(cfg, background=False)


def run(e: Enricher, values: list[int]) -> dict[str, list]:
    """Enrich ``values`` as source addresses (destinations: the same reversed); decoded columns."""
    addrs = np.stack([as16(v) for v in values])
    out = e.enrich(addrs, addrs[::-1].copy())
    return {name: list(out.text(name)) for name in out.columns}


def oracle(reader: maxminddb.Reader, value: int, kind: str) -> object:
    """What the maintained reader answers for the 16-byte address ``value`` (IPv4-mapped -> the IPv4
    address, as NetSpectra means it; IPv6 in an IPv4-only database -> nothing)."""
    if value >> 32 == 0xFFFF:
        text = str(ipaddress.IPv4Address(value & 0xFFFFFFFF))
    elif reader.metadata().ip_version == 4:
        return 0 if kind == "asn" else ""
    else:
        text = str(ipaddress.IPv6Address(value))
    rec = reader.get(text) or {}
    if kind == "asn":
        return int(rec.get("autonomous_system_number") or 0)
    return str((rec.get("country") or {}).get("iso_code") or "")


def edges(nets: list[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> list[int]:
    """First, last, middle of every network and the addresses just outside, in NetSpectra's form."""
    out: set[int] = set()
    for n in nets:
        first, last = int(n.network_address), int(n.broadcast_address)
        top = (1 << n.max_prefixlen) - 1
        for v in (first, last, (first + last) // 2, first - 1, last + 1):
            if 0 <= v <= top:
                out.add((MAPPED | v) if n.version == 4 else v)
    return sorted(out)


# --------------------------------------------------------------------------------------------------
# The MaxMind test databases (../shared/data/mmdb) against their source JSON
# --------------------------------------------------------------------------------------------------


def _json(shared: Path, name: str) -> list[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, dict]]:
    data = json.loads((shared / "mmdb" / "source-data" / name).read_text())
    return [(ipaddress.ip_network(k), v) for entry in data for k, v in entry.items()]


@pytest.mark.shared
def test_asn_test_database_answers_its_source_json(shared_data: Path) -> None:
    entries = _json(shared_data, "GeoLite2-ASN-Test.json")
    e = enricher(asn=shared_data / "mmdb" / "GeoLite2-ASN-Test.mmdb")
    checked = {"v4": 0, "v6": 0, "mapped": 0}
    values, expected = [], []
    for net, rec in entries:
        for addr in (
            net.network_address,
            net.broadcast_address,
            net.network_address + net.num_addresses // 2,
        ):
            values.append(netspectra_form(addr))  # IPv4 rows are IPv4-mapped: NetSpectra's form
            expected.append(rec["autonomous_system_number"])
            checked["mapped" if net.version == 4 else "v6"] += 1
    got = run(e, values)["SrcAS"]
    assert got == expected
    # The same IPv4 networks written as IPv4-compatible (::a.b.c.d) are answered from the IPv4 tree too.
    v4 = [(net, rec) for net, rec in entries if net.version == 4]
    compat = run(e, [int(net.network_address) for net, _ in v4])["SrcAS"]
    assert compat == [rec["autonomous_system_number"] for _, rec in v4]
    checked["v4"] = len(v4)
    assert min(checked.values()) > 100


@pytest.mark.shared
@pytest.mark.parametrize(
    ("db", "source"),
    [
        ("GeoLite2-City-Test.mmdb", "GeoLite2-City-Test.json"),  # a City database serves as country database
        ("GeoLite2-Country-Test.mmdb", "GeoLite2-Country-Test.json"),
    ],
)
def test_country_test_databases_answer_their_source_json(shared_data: Path, db: str, source: str) -> None:
    entries = [(n, r) for n, r in _json(shared_data, source) if (r.get("country") or {}).get("iso_code")]
    e = enricher(country=shared_data / "mmdb" / db)
    values, expected = [], []
    for net, rec in entries:
        for addr in (net.network_address, net.broadcast_address):
            values.append(netspectra_form(addr))
            expected.append(rec["country"]["iso_code"])
    assert run(e, values)["SrcCountry"] == expected
    assert {n.version for n, _ in entries} == {4, 6}


@pytest.mark.shared
def test_isp_database_ipv4_compat_source_entries(shared_data: Path) -> None:
    """GeoIP2-ISP's source writes IPv4 networks as ``::a.b.c.d/96+n``: NetSpectra's IPv4-mapped rows and
    the IPv4-compatible addresses both get the answer."""
    entries = _json(shared_data, "GeoIP2-ISP-Test.json")
    e = enricher(asn=shared_data / "mmdb" / "GeoIP2-ISP-Test.mmdb")
    values, expected = [], []
    for net, rec in entries:
        asn = rec.get("autonomous_system_number", 0)
        for addr in (net.network_address, net.broadcast_address):
            v = int(addr)
            if net.version == 6 and net.prefixlen >= 96 and v >> 32 == 0:
                values += [v, MAPPED | v]  # ::a.b.c.d and ::ffff:a.b.c.d
                expected += [asn, asn]
            else:
                values.append(v)
                expected.append(asn)
    assert run(e, values)["SrcAS"] == expected
    assert sum(1 for x in expected if x) > 1000


@pytest.mark.shared
@pytest.mark.parametrize("db", ["GeoLite2-ASN-Test.mmdb", "GeoIP2-ISP-Test.mmdb"])
def test_shared_database_agrees_with_reader_everywhere(shared_data: Path, db: str) -> None:
    """Edges of every network, random addresses and the 6to4/Teredo/compat aliases: as the reader."""
    path = shared_data / "mmdb" / db
    reader = maxminddb.open_database(str(path))
    nets = [n for n, _ in reader]
    rng = np.random.default_rng(3)
    values = edges(nets)
    v4 = [v & 0xFFFFFFFF for v in values if v >> 32 == 0xFFFF]
    values += [(0x2002 << 112) | (x << 80) | int(rng.integers(0, 1 << 60)) for x in v4[:400]]
    values += [(0x20010000 << 96) | (x << 64) | int(rng.integers(0, 1 << 60)) for x in v4[:400]]
    values += [x for x in v4[:400]]  # ::a.b.c.d
    values += [int.from_bytes(rng.bytes(16), "big") for _ in range(2000)]
    values += [MAPPED | int(rng.integers(0, 1 << 32)) for _ in range(2000)]
    got = run(enricher(asn=path), values)["SrcAS"]
    assert got == [oracle(reader, v, "asn") for v in values]
    assert sum(1 for g in got if g) > 500


@pytest.mark.shared
def test_mixed_database_without_answers_is_refused(shared_data: Path) -> None:
    with pytest.raises(DatabaseError, match="none of its 11 networks carries an AS number"):
        load_database(str(shared_data / "mmdb" / "MaxMind-DB-test-mixed-32.mmdb"), "asn")


@pytest.mark.shared
@pytest.mark.parametrize("name", DAMAGED)
@pytest.mark.parametrize("kind", ["asn", "country"])
def test_damaged_databases_give_a_clear_error(shared_data: Path, name: str, kind: str) -> None:
    path = str(shared_data / "mmdb" / name)
    with pytest.raises(DatabaseError) as info:
        load_database(path, kind)  # type: ignore[arg-type]
    err = info.value
    assert err.path == path and str(err).startswith(path + ": ")
    assert any(w in err.problem for w in ("damaged", "not a valid MaxMind DB")), err.problem


@pytest.mark.shared
@pytest.mark.parametrize("name", DAMAGED)
def test_damaged_database_service_runs_without_it(
    shared_data: Path, name: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The stage starts, says so once, answers unknown (never a wrong answer) and counts the rows."""
    good = shared_data / "mmdb" / "GeoLite2-Country-Test.mmdb"
    with caplog.at_level(logging.WARNING, logger="netspectra.enrich.enricher"):
        e = enricher(asn=shared_data / "mmdb" / name, country=good, check_interval="0s")
        values = [MAPPED | int(ipaddress.IPv4Address("2.125.160.216"))] * 10
        first = run(e, values)
        second = run(e, values)
    assert first["SrcAS"] == second["SrcAS"] == [0] * 10
    assert first["SrcCountry"] == ["GB"] * 10
    warnings = [r for r in caplog.records if name in r.getMessage()]
    assert len(warnings) == 1 and "runs without it" in warnings[0].getMessage()
    m = e.metrics()
    assert m["unenriched_rows"] == {"asn": 20, "country": 0}
    assert m["load_errors"]["asn"] == 1  # the unchanged file is not tried again
    assert e.status()["asn"]["loaded"] is False and e.status()["asn"]["error"]


# --------------------------------------------------------------------------------------------------
# Databases written by the tests (mmdb-writer)
# --------------------------------------------------------------------------------------------------


def random_entries(rng: np.random.Generator, n4: int, n6: int, *, v6: bool = True) -> list[tuple[str, dict]]:
    out = []
    for i in range(n4 + (n6 if v6 else 0)):
        if i < n4:
            plen = int(rng.integers(8, 33))
            a = int(rng.integers(0, 1 << 32)) & ~((1 << (32 - plen)) - 1) & 0xFFFFFFFF
            net = f"{ipaddress.IPv4Address(a)}/{plen}"
        else:
            plen = int(rng.integers(16, 129))
            a = int.from_bytes(rng.bytes(16), "big") & ~((1 << (128 - plen)) - 1)
            if a >> 96 == 0 or a >> 112 == 0x2002 or a >> 96 == 0x20010000:
                continue  # the writer keeps the IPv4 tree at ::/96
            net = f"{ipaddress.IPv6Address(a)}/{plen}"
        cc = COUNTRY_CODES[int(rng.integers(1, len(COUNTRY_CODES)))]
        out.append(
            (net, {"autonomous_system_number": int(rng.integers(1, 1 << 32)), "country": {"iso_code": cc}})
        )
    return out


@pytest.mark.parametrize("seed", [1, 2])
def test_written_database_agrees_with_reader(tmp_path: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    path = write_mmdb(tmp_path / "db.mmdb", random_entries(rng, 400, 300))
    reader = maxminddb.open_database(str(path))
    nets = [n for n, _ in reader]
    values = edges(nets)
    values += [int.from_bytes(rng.bytes(16), "big") for _ in range(3000)]
    values += [MAPPED | int(rng.integers(0, 1 << 32)) for _ in range(3000)]
    values += [0, 1, MAPPED, MAPPED | 0xFFFFFFFF, (1 << 128) - 1, 0x2002 << 112, (0x2001 << 112) - 1]
    got = run(enricher(asn=path, country=path), values)
    assert got["SrcAS"] == [oracle(reader, v, "asn") for v in values]
    assert got["SrcCountry"] == [oracle(reader, v, "country") for v in values]
    assert sum(1 for g in got["SrcAS"] if g) > 1000
    assert got["DstAS"] == got["SrcAS"][::-1]


def test_ipv4_only_database(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    path = write_mmdb(tmp_path / "v4.mmdb", random_entries(rng, 300, 0, v6=False), ip_version=4)
    reader = maxminddb.open_database(str(path))
    values = [*edges([n for n, _ in reader]), int(ipaddress.IPv6Address("::1.2.3.4")), 0x2002 << 112]
    got = run(enricher(asn=path), values)["SrcAS"]
    assert got == [oracle(reader, v, "asn") for v in values]
    assert got[-2:] == [0, 0]  # IPv6 addresses have no answer in an IPv4-only database
    assert load_database(str(path), "asn").aliases == frozenset()


def test_ipinfo_lite_records(tmp_path: Path) -> None:
    """IPinfo lite's fields: ``asn`` as "AS15169", ``country_code``; one file serves both answers."""
    path = write_mmdb(
        tmp_path / "ipinfo.mmdb",
        [
            ("8.8.8.0/24", {"asn": "AS15169", "as_name": "Google LLC", "country_code": "US"}),
            ("2a00:1450::/32", {"asn": "AS15169", "country_code": "IE"}),
            ("1.1.1.0/24", {"asn": "not a number", "country_code": "Australia"}),
        ],
    )
    got = run(
        enricher(asn=path, country=path),
        [
            MAPPED | int(ipaddress.IPv4Address("8.8.8.8")),
            int(ipaddress.IPv6Address("2a00:1450::1")),
            MAPPED | 0x01010101,
        ],
    )
    assert got["SrcAS"] == [15169, 15169, 0]
    assert got["SrcCountry"] == ["US", "IE", ""]
    assert load_database(str(path), "asn").without_answer == 1


def test_database_without_aliases(tmp_path: Path) -> None:
    """A database written without the 6to4/Teredo aliases: those addresses are unknown, as the reader says."""
    path = write_mmdb(tmp_path / "db.mmdb", [("1.2.3.0/24", {"autonomous_system_number": 7})])
    db = load_database(str(path), "asn")
    assert db.aliases == frozenset({"compat"})
    v = [
        MAPPED | 0x01020304,
        0x01020304,
        (0x2002 << 112) | (0x01020304 << 80),
        (0x20010000 << 96) | (0x01020304 << 64),
    ]
    assert run(enricher(asn=path), v)["SrcAS"] == [7, 7, 0, 0]


@pytest.mark.parametrize(
    ("make", "problem"),
    [
        (lambda p: None, "no such file"),
        (lambda p: p.write_bytes(b""), "not a valid MaxMind DB"),
        (lambda p: p.write_bytes(b"\x00" * 4096), "not a valid MaxMind DB"),
        (lambda p: p.mkdir(), "is a directory"),
    ],
)
def test_unusable_files(tmp_path: Path, make: object, problem: str) -> None:
    path = tmp_path / "db.mmdb"
    make(path)  # type: ignore[operator]
    with pytest.raises(DatabaseError, match=problem) as info:
        load_database(str(path), "asn")
    assert info.value.path == str(path)


def test_truncated_database(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    good = write_mmdb(tmp_path / "good.mmdb", random_entries(rng, 200, 100))
    data = good.read_bytes()
    for cut in (len(data) // 2, len(data) - 20, 100):
        bad = tmp_path / f"cut{cut}.mmdb"
        bad.write_bytes(data[:cut])
        with pytest.raises(DatabaseError):
            load_database(str(bad), "asn")


def test_wrong_kind_of_database(tmp_path: Path) -> None:
    path = write_mmdb(
        tmp_path / "asn.mmdb", [("1.2.3.0/24", {"autonomous_system_number": 7})], db_type="X-ASN"
    )
    with pytest.raises(DatabaseError, match=r"a country database\? \(its type is 'X-ASN'\)"):
        load_database(str(path), "country")


def test_missing_database_appears_later(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Started without its database (said once, rows counted); the file appears: loaded, no restart."""
    path = tmp_path / "asn.mmdb"
    with caplog.at_level(logging.WARNING, logger="netspectra.enrich.enricher"):
        e = enricher(asn=path, check_interval="0s")
        v = [MAPPED | 0x01020304] * 5
        assert run(e, v)["SrcAS"] == [0] * 5
        assert run(e, v)["SrcAS"] == [0] * 5
    assert sum("no such file" in r.getMessage() for r in caplog.records) == 1
    write_mmdb(tmp_path / "new.mmdb", [("1.2.3.0/24", {"autonomous_system_number": 7})])
    shutil.move(tmp_path / "new.mmdb", path)
    assert run(e, v)["SrcAS"] == [7] * 5
    m = e.metrics()
    assert m["unenriched_rows"]["asn"] == 10 and m["rows"] == 15
