"""The ``enrichment`` section: every problem is an error of ``netspectra config check`` that names the entry
(a network written twice, in one spelling or two; an invalid CIDR; a classifier rule that does not parse,
with its column); a database file that is missing is a warning."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from netspectra.config.loader import ConfigError, parse_config_text


def errors_of(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config_text(text)
    return str(info.value)


def test_defaults_enable_nothing() -> None:
    cfg = parse_config_text("")
    assert not cfg.enrichment.enabled
    assert cfg.enrichment.networks == {} and cfg.enrichment.classifiers.interfaces == ()


def test_valid_section() -> None:
    cfg = parse_config_text(
        """
enrichment:
  geoip:
    check_interval: 5m
  networks:
    10.0.0.0/8: {name: corp, role: internal, site: par, region: eu, tenant: acme, asn: 64512, country: fr}
    10.1.0.0/16: lab
    2001:db8::/32: {name: doc}
    ::ffff:192.0.2.0/120: {name: mapped}
  exporters:
    192.0.2.1:
      name: edge1
      default: {name: unknown}
      if_indexes: {10: {name: Gi0/0/10, description: "Transit: Cogent", speed: 10000}}
  classifiers:
    exporters:
      - Exporter.Name startsWith "edge" && ClassifyRole("edge")
    interfaces:
      - Interface.Index in [1, 2] && ClassifyExternal()
      - ClassifyInternal()
"""
    )
    e = cfg.enrichment
    assert e.enabled
    assert e.geoip.check_interval.total_seconds() == 300
    assert e.networks["10.0.0.0/8"].country == "FR" and e.networks["10.1.0.0/16"].name == "lab"
    assert "192.0.2.0/24" in e.networks  # the IPv4-mapped spelling is the IPv4 network
    assert e.exporters["192.0.2.1/32"].if_indexes[10].speed == 10000
    assert len(e.classifiers.interfaces) == 2
    assert not cfg.warnings


@pytest.mark.parametrize(
    ("networks", "expected"),
    [
        (
            "    10.0.0.0/8: a\n    10.0.0.0/8: b\n",
            "found the key '10.0.0.0/8' a second time; keep one",
        ),
        (
            "    10.0.0.0/8: a\n    ::ffff:10.0.0.0/104: b\n",
            "enrichment.networks.::ffff:10.0.0.0/104: '::ffff:10.0.0.0/104' is the same network as "
            "'10.0.0.0/8'",
        ),
        (
            "    2001:db8::/32: a\n    2001:DB8:0::/32: b\n",
            "'2001:DB8:0::/32' is the same network as '2001:db8::/32'",
        ),
        (
            "    10.0.0.1/8: a\n",
            "enrichment.networks.10.0.0.1/8: '10.0.0.1/8' has host bits set; write 10.0.0.0/8",
        ),
        ("    10.0.0.0/33: a\n", "'10.0.0.0/33' is not a network; write a CIDR"),
        ("    corp: a\n", "enrichment.networks.corp: 'corp' is not a network"),
        ("    10.0.0.0/8: {nmae: a}\n", "unknown key 'nmae' (did you mean 'name'?)"),
        ("    10.0.0.0/8: {country: France}\n", "'France' is not an ISO 3166 alpha-2 country code"),
        # reserved only: GeoIP answers GB, so the network's rows would never be those of GB's
        ("    10.0.0.0/8: {country: uk}\n", "'uk' is not the ISO 3166 alpha-2 code of the United Kingdom"),
        ("    10.0.0.0/8: {country: UK}\n", "GeoIP databases answer as GB; write GB"),
        ("    10.0.0.0/8: {asn: -1}\n", "enrichment.networks.10.0.0.0/8.asn"),
    ],
)
def test_network_errors_name_the_entry(networks: str, expected: str) -> None:
    assert expected in errors_of("enrichment:\n  networks:\n" + networks)


def test_overlapping_networks_are_fine() -> None:
    cfg = parse_config_text("enrichment:\n  networks:\n    10.0.0.0/8: a\n    10.0.0.0/9: b\n    ::/0: c\n")
    assert len(cfg.enrichment.networks) == 3


def test_classifier_errors_name_the_rule_and_column() -> None:
    text = errors_of(
        "enrichment:\n  classifiers:\n    interfaces:\n      - ClassifyInternal()\n"
        '      - Interface.Index == "3" && ClassifyExternal()\n'
    )
    lines = text.splitlines()
    first = next(i for i, line in enumerate(lines) if "interfaces[1]: column 17:" in line)
    assert "compares an integer with a string" in lines[first]
    assert lines[first + 1].endswith('Interface.Index == "3" && ClassifyExternal()')
    prefix = "  enrichment.classifiers.interfaces[1]:     "
    assert lines[first + 2] == prefix + " " * 16 + "^"
    assert "exporters[0]: column 1: unknown name 'Interface.Name'" in errors_of(
        'enrichment:\n  classifiers:\n    exporters: [\'Interface.Name == "x" && ClassifyRole("r")\']\n'
    )


def test_missing_database_is_a_warning(tmp_path: Path) -> None:
    cfg = parse_config_text(f"enrichment:\n  geoip:\n    asn_database: {tmp_path / 'none.mmdb'}\n")
    assert any(w.startswith("enrichment.geoip.asn_database:") and "is not a file" in w for w in cfg.warnings)


def test_a_database_that_is_no_mmdb_file_is_a_warning(tmp_path: Path) -> None:
    # A downloaded GeoLite2-ASN_20260101.tar.gz (or any other file) given as the database passed
    # `config check` silently; the services then ran without AS numbers.
    from mmdb_writing import write_mmdb

    tarball = tmp_path / "GeoLite2-ASN_20260101.tar.gz"
    tarball.write_bytes(b"\x1f\x8b\x08\x00" + bytes(300_000))
    good = write_mmdb(tmp_path / "asn.mmdb", [("192.0.2.0/24", {"autonomous_system_number": 64512})])
    text = f"enrichment:\n  geoip:\n    asn_database: {tarball}\n    country_database: {good}\n"
    warnings = [w for w in parse_config_text(text).warnings if w.startswith("enrichment.geoip.")]
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith("enrichment.geoip.asn_database:")
    assert "is not a MaxMind DB (MMDB) file" in warnings[0] and "extract it" in warnings[0]


def test_config_check_names_the_entry(tmp_path: Path) -> None:
    from netspectra.cli import main

    f = tmp_path / "bad.yaml"
    f.write_text(
        "enrichment:\n  networks:\n    192.0.2.0/24: a\n    192.0.2.0/24: b\n    198.51.100.7/24: c\n"
    )
    result = CliRunner().invoke(main.app, ["config", "check", "-c", str(f)])
    assert result.exit_code == 2
    out = " ".join(result.output.split())
    assert "found the key '192.0.2.0/24' a second time; keep one" in out
    f.write_text("enrichment:\n  networks:\n    198.51.100.7/24: c\n")
    result = CliRunner().invoke(main.app, ["config", "check", "-c", str(f)])
    assert result.exit_code == 2
    out = " ".join(result.output.split())
    assert (
        "enrichment.networks.198.51.100.7/24: '198.51.100.7/24' has host bits set; write 198.51.100.0/24"
        in out
    )


def test_cidr_span_agrees_with_parse_cidr() -> None:
    # the regular-expression reading of canonical IPv4 CIDRs against ipaddress, on canonical spellings
    # of every prefix length and on near misses (leading zeros, octets over 255, host bits, other digits,
    # spaces, IPv4-mapped IPv6, bare addresses)
    import ipaddress
    import random

    from netspectra.config.enrichment import _CANONICAL_V4, cidr_span, parse_cidr

    def ref(text: str) -> tuple[object, ...]:
        try:
            net = parse_cidr(text)
        except ValueError as exc:
            return ("error", str(exc))
        return (str(net), net.version, int(net.network_address), net.prefixlen)

    def got(text: str) -> tuple[object, ...]:
        try:
            return cidr_span(text)
        except ValueError as exc:
            return ("error", str(exc))

    rng = random.Random(3)
    cases = [
        f"{ipaddress.IPv4Address(rng.getrandbits(32) & ~((1 << (32 - p)) - 1) if p else 0)}/{p}"
        for p in range(33)
        for _ in range(20)
    ]
    octets = ["0", "7", "10", "99", "100", "199", "249", "255", "256", "300", "01", "00", "\u0668"]
    tails = ["/0", "/8", "/24", "/32", "/33", "/08", "/+8", "/ 8", "", "/\u0668"]
    cases += [".".join(rng.choice(octets) for _ in range(4)) + rng.choice(tails) for _ in range(3000)]
    cases += [
        " 10.0.0.0/8",
        "10.0.0.0/8 ",
        "10.0.0.0/8\n",
        "::ffff:10.0.0.0/104",
        "2001:DB8:0::/32",
        "10.1.2.3",
    ]
    fast = sum(_CANONICAL_V4.fullmatch(c) is not None for c in cases)
    assert fast > 700  # the canonical spellings take the short way
    for text in cases:
        assert got(text) == ref(text), text


_TEMPLATE_RULES = """enrichment:
  classifiers:
    exporters:
      - ClassifySiteRegex(Exporter.Name, "^([^-]+)-", "$1")
    interfaces:
      - ClassifyProviderRegex(Interface.Description, "^(\\\\S+) (\\\\S+)", "${2}") && ClassifyExternal()
"""


def test_an_unset_positional_variable_is_a_template_kept_as_written(monkeypatch: pytest.MonkeyPatch) -> None:
    # The configuration text is expanded as Go's os.ExpandEnv does, which turned the docs' own classifier
    # example ("$1" as a regular expression's template) into "": ExporterSite stayed empty, silently. No
    # shell can export a variable named 1: unset, "$1" and "${2}" stay references, for the rules.
    monkeypatch.delenv("1", raising=False)
    monkeypatch.delenv("2", raising=False)
    monkeypatch.setenv("SITE_RX", "^([^-]+)-")
    cfg = parse_config_text(_TEMPLATE_RULES.replace('"^([^-]+)-"', '"${SITE_RX}"'))
    assert cfg.enrichment.classifiers.exporters == ('ClassifySiteRegex(Exporter.Name, "^([^-]+)-", "$1")',)
    assert cfg.enrichment.classifiers.interfaces[0].startswith(
        'ClassifyProviderRegex(Interface.Description, "^(\\\\S+) (\\\\S+)", "${2}")'
    )
    # the rule sets what the template says (the reference is the regular expression's group)
    from netspectra.enrich.classify import ExporterState
    from netspectra.enrich.expr import EXPORTER_LANGUAGE, parse_rule

    state = ExporterState()
    rule = parse_rule(cfg.enrichment.classifiers.exporters[0], EXPORTER_LANGUAGE)
    rule.run({"Exporter.IP": "192.0.2.1", "Exporter.Name": "th2-edge1"}, state)
    assert state.site == "th2"
    # a variable that is set still wins, as in Go (a name of digits, set by `env 1=... netspectra`)
    monkeypatch.setenv("1", "fixed")
    assert parse_config_text(_TEMPLATE_RULES).enrichment.classifiers.exporters[0].endswith('"fixed")')


def test_every_bad_entry_is_listed_not_only_the_first() -> None:
    # `config check` promises every problem at once; a networks map with five typos was reported one
    # typo per run (and the exporters and classifier rules likewise).
    text = errors_of(
        "enrichment:\n  networks:\n    10.0.0.0/33: a\n    192.0.2.0/24: ok\n    bogus: b\n"
        "    2001:db8::1/32: c\n    ::ffff:192.0.2.0/120: d\n"
        "  exporters:\n    192.0.2.300: {name: x}\n    192.0.2.1: {name: a}\n    192.0.2.1/32: {name: b}\n"
        "  classifiers:\n    interfaces:\n      - ClassifyExternal(\n      - ClassifyInternal()\n"
        '      - Interface.Nmae == "x"\n'
    )
    for expected in (
        "enrichment.networks.10.0.0.0/33: '10.0.0.0/33' is not a network",
        "enrichment.networks.bogus: 'bogus' is not a network",
        "enrichment.networks.2001:db8::1/32: '2001:db8::1/32' has host bits set; write 2001:db8::/32",
        "enrichment.networks.::ffff:192.0.2.0/120: '::ffff:192.0.2.0/120' is the same network as "
        "'192.0.2.0/24'",
        "enrichment.exporters.192.0.2.300: '192.0.2.300' is not a network",
        "enrichment.exporters.192.0.2.1/32: '192.0.2.1/32' is the same exporter as '192.0.2.1'",
        "enrichment.classifiers.interfaces[0]: column 18:",
        "enrichment.classifiers.interfaces[2]: column 1: unknown name 'Interface.Nmae'",
    ):
        assert expected in text, (expected, text)
    assert "interfaces[1]" not in text


def test_analyze_of_an_enrichment_section_alone_says_to_add_a_rollup_task(tmp_path: Path) -> None:
    # docs/enrichment.md's `netspectra analyze capture.pcap -c enriched.yaml` with its configuration
    # example (an enrichment section, no task) ended on "no task to run", with no word of what to add.
    from netspectra.cli import main

    f = tmp_path / "enriched.yaml"
    f.write_text("enrichment:\n  networks:\n    10.0.0.0/8: corp\n")
    capture = Path(__file__).parents[1] / "data" / "captures" / "test.pcap"
    result = CliRunner().invoke(main.app, ["analyze", str(capture), "-c", str(f)])
    assert result.exit_code == 2
    out = " ".join(result.output.split())
    assert "no task to run" in out and "add a rollup task" in out
    assert "rollup: {tasks: [{name: traffic}]}" in out


def test_analyze_help_tells_of_enrichment_and_rollups() -> None:
    # `analyze --help` named exact and sketch tasks only: nothing said that an enrichment section and
    # rollup tasks give the top AS, countries and networks, nor what --out writes for a rollup task.
    from netspectra.cli import main

    result = CliRunner().invoke(main.app, ["analyze", "--help"], terminal_width=200)
    out = " ".join(result.output.split())
    assert "With an enrichment section" in out and "rollup tasks print the top values" in out
    import typer

    analyze = typer.main.get_command(main.app).commands["analyze"]  # type: ignore[attr-defined]
    out_help = next(p.help for p in analyze.params if p.name == "out")
    assert "a rollup task's rows (TaskName, Resolution 1m/5m/1h" in out_help


def test_a_directory_as_database_says_to_name_the_file(tmp_path: Path) -> None:
    # The directory of the databases given as the database was "not a file ... load the database when
    # it appears", which never happens.
    cfg = parse_config_text(f"enrichment:\n  geoip:\n    asn_database: {tmp_path}\n")
    (warning,) = [w for w in cfg.warnings if w.startswith("enrichment.geoip.asn_database:")]
    assert f"{str(tmp_path)!r} is a directory; give the path of the .mmdb file in it" in warning
    assert "when it appears" not in warning


def test_a_missing_database_path_with_tilde_or_relative_says_how_it_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `~/GeoIP/GeoLite2-ASN.mmdb` (a file that exists) was "not a file" / "no such file" with no word
    # that '~' is not expanded; a relative path gave no word of the directory it is read from.
    from netspectra.enrich.mmdb import DatabaseError, load_database

    (tmp_path / "GeoIP").mkdir()
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    cfg = parse_config_text("enrichment:\n  geoip:\n    asn_database: ~/GeoIP/asn.mmdb\n")
    (warning,) = [w for w in cfg.warnings if w.startswith("enrichment.geoip.asn_database:")]
    assert "is not a file ('~' is not expanded: write the full path)" in warning
    with pytest.raises(DatabaseError) as err:
        load_database("~/GeoIP/asn.mmdb", "asn")
    assert f"'~' is not expanded: write the full path, e.g. {tmp_path}/GeoIP/asn.mmdb" in str(err.value)
    with pytest.raises(DatabaseError) as err:
        load_database("GeoIP/asn.mmdb", "asn")
    assert f"a relative path is read from the current directory, {tmp_path}" in str(err.value)
