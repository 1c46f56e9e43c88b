"""The console's filter language (netspectra.storage.filter): grammar, types, the SQL it compiles to,
errors with positions, completion, and hostile input (quotes, comments, Unicode, long and deeply nested
text) — always refused with a FilterError or compiled into SQL whose text holds nothing of the input
but the catalog's column names (every value a bound parameter). Random input: tests/fuzz/test_fuzz_filter.py.

The compiled conditions are run on the embedded engine against Python's own answers in
tests/integration/test_console_queries.py (and on ClickHouse 18.16 there).
"""

from __future__ import annotations

import ipaddress
import re

import pytest

from netspectra.storage.filter import (
    MAX_CHARS,
    MAX_DEPTH,
    MAX_LIST,
    FieldType,
    FilterError,
    compile_filter,
    complete,
    field_type,
    normalized,
    parse,
    tokenize,
)
from netspectra.storage.schema import bind

COLUMNS = {
    "SrcIP": "Nullable(String)",
    "DstIP": "Nullable(String)",
    "SrcPort": "Nullable(UInt16)",
    "DstPort": "Nullable(UInt16)",
    "Protocol": "Nullable(UInt8)",
    "SrcAS": "UInt32",
    "DstNetRole": "LowCardinality(String)",
    "ExporterName": "String",
}
FIELDS: dict[str, FieldType] = {n: ft for n, t in COLUMNS.items() if (ft := field_type(n, t)) is not None}
PLACEHOLDER = re.compile(r"%\(flt_\d+\)s")
IDENT = re.compile(r"`[A-Za-z]+`")
#: The words and symbols the compiler itself writes; anything else in the SQL came from the input.
SQL_WORDS = {
    "AND", "OR", "NOT", "IN", "LIKE", "NULL", "if", "isNull", "ifNull", "position", "IPv4StringToNum",
    "IPv6StringToNum", "toFixedString", "unhex", "bitAnd",
}  # fmt: skip


def sql_words(sql: str) -> set[str]:
    """The words of the compiled SQL once placeholders, quoted names and the compiler's literals are
    removed."""
    rest = PLACEHOLDER.sub(" ", sql)
    rest = IDENT.sub(" ", rest)
    rest = rest.replace("'0.0.0.0'", " ").replace("'::'", " ").replace("':'", " ").replace("''", " ")
    return set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", rest))


def test_field_types_from_clickhouse_types() -> None:
    assert FIELDS["SrcIP"].kind == "ip" and FIELDS["SrcIP"].nullable
    assert (FIELDS["DstPort"].kind, FIELDS["DstPort"].lo, FIELDS["DstPort"].hi) == ("int", 0, 65535)
    assert (FIELDS["SrcAS"].kind, FIELDS["SrcAS"].hi) == ("int", 2**32 - 1)
    assert FIELDS["DstNetRole"].kind == "string" and not FIELDS["DstNetRole"].nullable
    assert field_type("Int8Col", "Int8") == FieldType("Int8Col", "int", -128, 127, False, "Int8")
    assert field_type("ExporterAddress", "LowCardinality(String)").kind == "ip"  # addresses as text
    assert field_type("ExporterName", "LowCardinality(String)").kind == "string"
    assert field_type("Enum", "Enum8('a' = 1, 'b' = 2)").kind == "string"
    for typ in ("Float64", "Array(UInt32)", "DateTime('UTC')", "Tuple(UInt8, UInt8)"):
        assert field_type("X", typ) is None, typ


def test_the_issue_example_compiles_to_bound_parameters() -> None:
    text = "SrcAS = 15169 AND DstPort IN (80, 443) AND NOT DstNetRole = 'internal'"
    c = compile_filter(text, FIELDS)
    assert c.sql == (
        "((`SrcAS` = %(flt_0)s) AND (`DstPort` IN (%(flt_1)s, %(flt_2)s)) "
        "AND (NOT (`DstNetRole` = %(flt_3)s)))"
    )
    assert c.params == {"flt_0": 15169, "flt_1": 80, "flt_2": 443, "flt_3": "internal"}
    assert c.fields == ("SrcAS", "DstPort", "DstNetRole")
    assert normalized(text, FIELDS) == text


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("srcip = 10.0.0.1", "SrcIP = 10.0.0.1"),
        ("SrcIP = '::ffff:10.0.0.1'", "SrcIP = 10.0.0.1"),  # stored as the IPv4 text
        ("DstIP = 2001:DB8:0:0::1", "DstIP = 2001:db8::1"),  # RFC 5952, as stored
        ("Protocol = tcp", "Protocol = 6"),
        ("protocol in (TCP, udp, 1)", "Protocol IN (6, 17, 1)"),
        ("SrcAS = AS15169", "SrcAS = 15169"),
        ("DstNetRole = internal", "DstNetRole = 'internal'"),
        ('ExporterName = "it\'s"', "ExporterName = 'it\\'s'"),
        ("DstPort <> 80", "DstPort != 80"),
        ("a_b", None),
        ("NOT NOT DstPort = 1", "NOT NOT DstPort = 1"),
        (
            "(DstPort = 1 OR DstPort = 2) AND SrcPort >= 1024",
            "(DstPort = 1 OR DstPort = 2) AND SrcPort >= 1024",
        ),
        ("DstPort = 1 OR DstPort = 2 AND SrcPort = 3", "DstPort = 1 OR (DstPort = 2 AND SrcPort = 3)"),
        ("SrcIP << 10.0.0.0/8", "SrcIP << 10.0.0.0/8"),
        ("SrcIP << 10.1.2.3/8", "SrcIP << 10.0.0.0/8"),  # host bits dropped
        ("SrcIP !<< ::ffff:10.0.0.0/104", "SrcIP !<< 10.0.0.0/8"),
        ("SrcIP << '2001:db8::/32'", "SrcIP << 2001:db8::/32"),
        ("ExporterName NOT LIKE 'edge-%'", "ExporterName NOT LIKE 'edge-%'"),
        ("DstPort NOT IN (22)", "DstPort NOT IN (22)"),
        ("", ""),
        ("   ", ""),
    ],
)
def test_canonical_form(text: str, canonical: str | None) -> None:
    if canonical is None:
        with pytest.raises(FilterError):
            normalized(text, FIELDS)
    else:
        assert normalized(text, FIELDS) == canonical


@pytest.mark.parametrize(
    ("text", "position", "says"),
    [
        ("DstPort = 70000", 10, "outside what DstPort holds (0..65535)"),
        ("DstPort = -1", 10, "unexpected '-'"),
        ("SrcIP < 10.0.0.1", 6, "< does not apply to SrcIP"),
        ("SrcIP = 10.0.0.256", 8, "is not an IP address"),
        ("SrcIP = foo", 8, "SrcIP is an IP field"),
        ("DstPort = 'x'", 10, "DstPort is a number field"),
        ("DstNetRole < 'a'", 11, "< does not apply to DstNetRole"),
        ("DstNetRole << 10.0.0.0/8", 11, "<< does not apply"),
        ("Nope = 1", 0, "unknown field 'Nope'"),
        ("DstPrt = 1", 0, "did you mean 'DstPort'"),
        # fields are taken in any case, so a typo in another case is a near miss too, named as stored
        ("dstprt = 1", 0, "unknown field 'dstprt' (did you mean 'DstPort'?)"),
        ("DstPort", 7, "expected an operator for DstPort"),
        ("DstPort =", 9, "expected a number for DstPort"),
        ("DstPort = 1 AND", 15, "expected a field name, NOT or '('"),
        ("(DstPort = 1", 12, "expected ')', AND or OR"),
        ("DstPort = 1)", 11, "this ')' closes no '('"),
        ("DstPort = 1 DstPort = 2", 12, "expected AND, OR or the end"),
        ("DstPort IN 80", 11, "expected '(' and a list"),
        ("DstPort IN (80 443)", 15, "expected ',' or ')'"),
        ("DstPort NOT = 1", 12, "expected IN or LIKE after NOT"),
        ("ExporterName LIKE edge", 18, "expected a quoted pattern"),
        ("SrcIP = 'unterminated", 8, "the string opened here is not closed"),
        ("DstPort = 80abc", 10, "'80a' is not a number"),
        ("SrcAS = AS15169x", 8, "not a number or AS<number>"),
        ("Protocol = tcpx", 11, "one of ah, esp"),
        ("AND = 1", 0, "expected a field name"),
    ],
)
def test_errors_say_where_and_what(text: str, position: int, says: str) -> None:
    with pytest.raises(FilterError) as exc:
        compile_filter(text, FIELDS)
    assert exc.value.position == position, (exc.value.position, str(exc.value))
    assert says in exc.value.message, exc.value.message
    assert str(exc.value).startswith(f"at character {position + 1}: ")
    assert exc.value.to_dict()["position"] == position


def test_enrichment_values_are_read_as_stored() -> None:
    """Countries are stored upper-case, the classifiers' classes lower-case (boundary: external or
    internal), as TopN's filters read them: 'fr' and 'Cogent' matched nothing, 'externl' said nothing."""
    columns = {"DstCountry": "LowCardinality(String)", "InIfBoundary": "String", "InIfProvider": "String"}
    fields = {**FIELDS, **{n: ft for n, t in columns.items() if (ft := field_type(n, t)) is not None}}
    c = compile_filter(
        "DstCountry IN ('fr', 'DE') AND InIfProvider = 'Cogent' AND InIfBoundary != External", fields
    )
    assert list(c.params.values()) == ["FR", "DE", "cogent", "external"]
    assert normalized("InIfProvider = 'Cogent'", fields) == "InIfProvider = 'cogent'"
    for text, position, says in (
        ("InIfBoundary = 'externl'", 15, "'externl' is not a boundary (did you mean 'external'?)"),
        ("DstCountry = 'France'", 13, "'France' is not a two-letter country code"),
        ("InIfProvider IN ('a', 'Level 3')", 22, "write 'level3'"),
    ):
        with pytest.raises(FilterError) as exc:
            compile_filter(text, fields)
        assert exc.value.position == position and says in exc.value.message, (text, str(exc.value))
    # names, patterns and other text as written
    c = compile_filter("ExporterName = 'Edge1' AND InIfProvider LIKE 'Co%'", fields)
    assert list(c.params.values()) == ["Edge1", "Co%"]


def test_expected_lists_what_would_do() -> None:
    with pytest.raises(FilterError) as exc:
        compile_filter("SrcIP ~ 1", FIELDS)
    assert exc.value.position == 6
    with pytest.raises(FilterError) as exc:
        compile_filter("DstPort", FIELDS)
    assert exc.value.expected == ("=", "!=", "<", "<=", ">", ">=", "IN", "NOT IN")
    with pytest.raises(FilterError) as exc:
        compile_filter("Nope = 1", FIELDS)
    assert set(exc.value.expected) == set(FIELDS)


# ---- hostile input ----------------------------------------------------------------------------------

HOSTILE = [
    "DstPort = 1; DROP TABLE flow_metrics",
    "DstPort = 1 -- comment",
    "DstPort = 1 /* comment */",
    "DstPort = 1 OR 1=1",
    "SrcIP = '10.0.0.1' OR '1'='1'",
    "SrcIP = '1.2.3.4'' OR ''1'='1",
    "`SrcIP` = 1",
    'SrcIP = "1.2.3.4" OR "x"',
    "DstPort = 0x50",
    "DstPort = 1e3",
    "DstPort = %(flt_0)s",
    "SrcIP = 1.2.3.4\x00",
    "DstNetRole = 'a\x07b'",
    "DstNetRole = '\ud800'",
    "Ｄｓｔｐｏｒｔ = 1",  # fullwidth letters
    "DstPort = ١٢",  # Arabic-Indic digits
    "DstPort ＝ 1",
    "SrcIP = 10.0.0.1/8",
    "SrcIP << 10.0.0.0/33",
    "SrcIP << 2001:db8::/129",
    "SrcIP << 'x/8'",
    "DstPort IN ()",
    "DstPort BETWEEN 1 AND 2",
    "DstNetRole = 'x' || 'y'",
    "DstNetRole = x'41'",
    "SELECT * FROM flow_metrics",
]


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_text_is_refused(text: str) -> None:
    with pytest.raises(FilterError) as exc:
        compile_filter(text, FIELDS)
    assert 0 <= exc.value.position <= len(text)


@pytest.mark.parametrize(
    "value",
    [
        "x'; DROP TABLE flow_metrics; --",
        "%(flt_0)s",
        "a\\'b",
        "' OR '1'='1",
        "ünïcødé ✓ 😀",
        "back`tick",
        "/* c */",
        "-- c",
    ],
)
def test_strings_are_parameters_whatever_they_hold(value: str) -> None:
    literal = "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    c = compile_filter(f"DstNetRole = {literal} OR ExporterName LIKE {literal}", FIELDS)
    assert c.params == {"flt_0": value, "flt_1": value}
    assert sql_words(c.sql) <= SQL_WORDS
    bound = bind(c.sql, c.params)
    assert bound.count("`DstNetRole`") == 1 and bound.count("`ExporterName`") == 1


def test_whitespace_of_any_kind_separates_tokens() -> None:
    plain = compile_filter("SrcIP = 1.2.3.4", FIELDS)
    assert compile_filter("SrcIP\n=\t1.2.3.4\u2028", FIELDS).params == plain.params


def test_limits() -> None:
    assert compile_filter("(" * MAX_DEPTH + "DstPort = 1" + ")" * MAX_DEPTH, FIELDS).params == {"flt_0": 1}
    with pytest.raises(FilterError, match=f"nested deeper than {MAX_DEPTH}"):
        compile_filter("(" * (MAX_DEPTH + 1) + "DstPort = 1" + ")" * (MAX_DEPTH + 1), FIELDS)
    with pytest.raises(FilterError, match=f"nested deeper than {MAX_DEPTH}"):
        compile_filter("NOT " * (MAX_DEPTH + 1) + "DstPort = 1", FIELDS)
    with pytest.raises(FilterError, match="nested deeper"):
        compile_filter("(" * (MAX_CHARS - 1), FIELDS)  # no RecursionError
    with pytest.raises(FilterError, match=f"at most {MAX_CHARS:,}"):
        compile_filter("DstPort = 1 OR " * 1000, FIELDS)
    with pytest.raises(FilterError, match=f"more than {MAX_LIST} values"):
        compile_filter("DstPort IN (" + ", ".join(["1"] * (MAX_LIST + 1)) + ")", FIELDS)
    with pytest.raises(FilterError, match="more than 256 conditions"):
        compile_filter(" OR ".join(["DstPort=1"] * 257), FIELDS)


def test_cidr_sql_by_family() -> None:
    v4 = compile_filter("SrcIP << 10.0.0.0/8", FIELDS)
    assert v4.params == {"flt_0": 0xFF000000, "flt_1": 0x0A000000}
    assert "IPv4StringToNum" in v4.sql and "IPv6StringToNum" not in v4.sql
    assert v4.sql.startswith("if(isNull(`SrcIP`), NULL, ")  # NULL rows stay NULL (as with =)
    v6 = compile_filter("SrcIP << 2001:db8::/32", FIELDS)
    assert v6.params == {"flt_0": "20010db8" + "0" * 24, "flt_1": "20010db8" + "f" * 24}
    assert "IPv4StringToNum" not in v6.sql
    every = compile_filter("SrcIP << ::/0", FIELDS)  # every IPv6 address and every (mapped) IPv4 one
    assert "IPv6StringToNum" in every.sql and "position(ifNull(`SrcIP`, ''), ':') = 0" in every.sql
    single = compile_filter("SrcIP << 192.0.2.7", FIELDS)
    assert single.params == {"flt_0": 0xFFFFFFFF, "flt_1": int(ipaddress.ip_address("192.0.2.7"))}


# ---- completion ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "cursor", "kind", "options", "start"),
    [
        ("", 0, "field", [*FIELDS, "NOT"], 0),
        ("Src", 3, "field", ["SrcIP", "SrcPort", "SrcAS"], 0),
        ("src", 3, "field", ["SrcIP", "SrcPort", "SrcAS"], 0),
        ("SrcIP ", 6, "operator", ["=", "!=", "IN", "NOT IN", "<<", "!<<"], 6),
        ("DstPort I", 9, "operator", ["IN"], 8),
        ("DstNetRole ", 11, "operator", ["=", "!=", "IN", "NOT IN", "LIKE", "NOT LIKE"], 11),
        (
            "Protocol = ",
            11,
            "value",
            sorted(
                [
                    "icmp",
                    "igmp",
                    "ipip",
                    "tcp",
                    "udp",
                    "ipv6",
                    "gre",
                    "esp",
                    "ah",
                    "icmpv6",
                    "ipv6-icmp",
                    "ospf",
                    "pim",
                    "vrrp",
                    "sctp",
                ]
            ),
            11,
        ),
        ("Protocol = t", 12, "value", ["tcp"], 11),
        ("DstPort IN (80, ", 16, "value", [], 16),
        ("DstPort = 80 ", 13, "keyword", ["AND", "OR", ")"], 13),
        ("DstPort = 80 o", 14, "keyword", ["OR"], 13),
        ("DstPort = 80 AND ", 17, "field", [*FIELDS, "NOT"], 17),
        ("DstPort = 80 AND (NOT Dst", 25, "field", ["DstIP", "DstPort", "DstNetRole"], 22),
        ("SrcIP = 10.0.0.1 AND DstPort = 443", 5, "field", ["SrcIP"], 0),  # cursor inside the text
        ("'unfinished", 11, "field", [], 0),
        ("x = 1 AND ", 10, "field", [*FIELDS, "NOT"], 10),
    ],
)
def test_completion(text: str, cursor: int, kind: str, options: list[str], start: int) -> None:
    c = complete(text, cursor, FIELDS)
    assert c.kind == kind, c
    assert sorted(c.options) == sorted(options), c.options
    assert c.start == start and c.end == cursor


def test_completion_of_values_names_the_field() -> None:
    c = complete("DstNetRole = 'int", 17, FIELDS)
    assert (c.kind, c.field.name if c.field else None, c.prefix) == ("value", "DstNetRole", "int")
    c = complete("SrcIP IN (1", 11, FIELDS)
    assert (c.kind, c.field.name if c.field else None, c.prefix) == ("value", "SrcIP", "1")


def test_tokens_carry_positions() -> None:
    toks = tokenize("DstPort IN (80,443) AND SrcIP << 10.0.0.0/8")
    assert [(t.kind, t.pos) for t in toks] == [
        ("name", 0), ("name", 8), ("(", 11), ("int", 12), (",", 14), ("int", 15), (")", 18), ("name", 20),
        ("name", 24), ("op", 30), ("net", 33), ("end", 43),
    ]  # fmt: skip


def test_parse_tree() -> None:
    node = parse("NOT (DstPort = 1 OR DstPort = 2)", FIELDS)
    assert type(node).__name__ == "Not"
    assert parse("", FIELDS) is None
