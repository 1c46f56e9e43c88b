"""The classifier rule language: Akvorado's rules parse and act as in Akvorado; everything else is refused
when the configuration is read, with the column it points at; nothing reaches Python's eval or an
attribute of a Python object."""

from __future__ import annotations

import re

import pytest

from netspectra.enrich.classify import ExporterState, InterfaceState
from netspectra.enrich.expr import (
    EXPORTER_LANGUAGE,
    INTERFACE_LANGUAGE,
    RuleError,
    compile_regex,
    expand_template,
    normalize,
    parse_rule,
)

ENV = {
    "Exporter.IP": "192.0.2.7",
    "Exporter.Name": "milan-ncs5k8-2.example.it",
    "Interface.Index": 10,
    "Interface.Name": "Gi0/0/10",
    "Interface.Description": "Transit: Cogent 1-3834938493",
    "Interface.Speed": 10000,
}


def run_interface(rule: str, env: dict | None = None) -> tuple[bool, InterfaceState]:
    state = InterfaceState()
    result = parse_rule(rule, INTERFACE_LANGUAGE).run({**ENV, **(env or {})}, state)
    return result, state


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ('Interface.Name == "Gi0/0/10"', True),
        ('Interface.Name != "Gi0/0/10"', False),
        ("Interface.Index == 10 && Interface.Speed >= 10000", True),
        ("Interface.Index < 10 or Interface.Speed > 10000", False),
        ("Interface.Index in [1, 2, 10]", True),
        ("Interface.Index not in [1, 2, 10]", False),
        ('Interface.Name in ["Gi0/0/10", "Te1"]', True),
        ('Interface.Description startsWith "Transit:"', True),
        ('Interface.Description endsWith "493"', True),
        ('Interface.Description contains "Cogent"', True),
        ('Interface.Description not contains "Cogent"', False),
        ('Interface.Description matches "^(?i)transit"', True),
        ('Interface.Description matches "^transit"', False),
        ('not (Interface.Index == 10) || Exporter.Name matches "\\\\.it$"', True),
        ('!(Interface.Index == 3) and (Exporter.IP startsWith "192.0.2.")', True),
        ("true && !false", True),
        ('Format("%s-%d", Interface.Name, Interface.Index) == "Gi0/0/10-10"', True),
    ],
)
def test_conditions(rule: str, expected: bool) -> None:
    assert run_interface(rule)[0] is expected


def test_akvorado_interface_example() -> None:
    rule = (
        'ClassifyConnectivityRegex(Interface.Description, "^(?i)(transit|pni|ppni|ix):? ", "$1") &&\n'
        '  ClassifyProviderRegex(Interface.Description, "^\\\\S+?\\\\s(\\\\S+)", "$1") &&\n'
        "  ClassifyExternal()"
    )
    ok, st = run_interface(rule)
    assert ok and (st.connectivity, st.provider, st.boundary) == ("transit", "cogent", 1)
    ok, st = run_interface(rule, {"Interface.Description": "PNI: Netflix (WL6-1190)"})
    assert ok and (st.connectivity, st.provider) == ("pni", "netflix")
    ok, st = run_interface(rule, {"Interface.Description": "core link"})
    assert not ok and (st.connectivity, st.provider, st.boundary) == ("", "", 0)


def test_first_classification_wins() -> None:
    ok, st = run_interface(
        'ClassifyProvider("Cogent Inc.") && ClassifyProvider("other") && ClassifyInternal()'
    )
    assert ok and st.provider == "cogentinc." and st.boundary == 2
    st2 = InterfaceState()
    parse_rule("ClassifyExternal()", INTERFACE_LANGUAGE).run(ENV, st2)
    parse_rule("ClassifyInternal()", INTERFACE_LANGUAGE).run(ENV, st2)
    assert st2.boundary == 1


def test_exporter_rules() -> None:
    st = ExporterState()
    env = {"Exporter.IP": "192.0.2.7", "Exporter.Name": "milan-ncs5k8-2.example.it"}
    for rule in (
        'ClassifySiteRegex(Exporter.Name, "^([^-]+)-", "$1")',
        'Exporter.Name endsWith ".it" && ClassifyRegion("italy")',
        'ClassifyTenant(Format("t-%s", Exporter.IP))',
        'Classify("Edge Routers")',
        'ClassifyRoleRegex(Exporter.Name, "-(?P<model>ncs[0-9a-z]+)-", "${model}")',
    ):
        parse_rule(rule, EXPORTER_LANGUAGE).run(env, st)
    assert (st.site, st.region, st.tenant, st.group, st.role) == (
        "milan",
        "italy",
        "t-192.0.2.7",
        "edgerouters",
        "ncs5k8",
    )


def test_template_and_regex_helpers() -> None:
    m = re.search(r"(?P<a>x)(y)?", "x")
    assert m is not None
    assert expand_template("$1-${a}-$2-$$-${9}", m) == "x-x--$-"
    assert compile_regex("^(?i)abc").match("ABC")
    assert normalize("Cogent Inc. (AS174)") == "cogentinc.as174"


@pytest.mark.parametrize(
    ("rule", "column", "message"),
    [
        ('Interface.Index == "10"', 17, "compares an integer with a string"),
        ("Interface.Vlan == 3", 1, "unknown name 'Interface.Vlan'"),
        ("Exporter.Name.upper", 1, "unknown name 'Exporter.Name.upper'"),
        ('__import__("os")', 1, "unknown function '__import__'"),
        ('eval("1")', 1, "unknown function 'eval'"),
        ('Exporter.Name.__class__ == ""', 1, "unknown name"),
        ("Reject()", 1, "never drops a row"),
        ('ClassifyProvider("a", "b")', 1, "takes 1 argument(s), got 2"),
        ("ClassifyProvider(3)", 18, "must be a string, this is an integer"),
        ('Interface.Name matches "("', 24, "invalid regular expression"),
        ("Interface.Name matches Interface.Description", 24, "must be a string literal"),
        ('ClassifyProviderRegex(Interface.Name, Interface.Description, "$1")', 39, "string literal"),
        ('Interface.Index in [1, "a"]', 20, "mixes integer and strings"),
        ('Interface.Name in "abc"', 19, "needs a list"),
        ("Interface.Name", 1, "a rule must be a condition or an action"),
        ('Interface.Name = "x"', 16, "write == to compare"),
        ('Interface.Name == "x', 19, "not closed"),
        ("(Interface.Index == 1", 22, "expected ')'"),
        ("Interface.Index == 1 ClassifyExternal()", 22, "join conditions and actions with && or ||"),
        ("not Interface.Name", 5, "needs a boolean"),
        ('Interface.Name == "a\\d"', 21, "unknown escape"),
        ("", 0, "the rule is empty"),
        ("ClassifyExternal", 1, "is a function; call it"),
        # Format strings that Go would print as %!d(MISSING), %!(EXTRA ...), %!d(string=...) or %!q(...)
        # and the normalisation would turn into a wrong class without a word (gi010-dmissing)
        ('ClassifyProvider(Format("%s-%d", Interface.Name))', 18, "has 2 verb(s) for 1 value(s)"),
        ('ClassifyProvider(Format("%s", Interface.Name, Interface.Index))', 18, "has 1 verb(s) for 2"),
        ('ClassifyProvider(Format("%d", Interface.Name))', 31, "%d of Format needs an integer"),
        ('ClassifyProvider(Format("%q", Interface.Name))', 25, "Format knows %s, %d, %v and %%"),
        ('ClassifyProvider(Format("%5s", Interface.Name))', 25, "'%5' in '%5s'"),
        ('ClassifyProvider(Format("100%", Interface.Name))', 25, "a lone '%' at the end"),
        # a template naming a group the regular expression does not have set the attribute to ""
        ('ClassifyProviderRegex(Interface.Name, "^(.+)", "$2")', 48, "refers to group 2; '^(.+)' has 1"),
        ('ClassifyProviderRegex(Interface.Name, "^(?P<x>.)", "${y}")', 52, "refers to a group named 'y'"),
    ],
)
def test_errors_point_at_the_column(rule: str, column: int, message: str) -> None:
    with pytest.raises(RuleError) as info:
        parse_rule(rule, INTERFACE_LANGUAGE)
    assert message in info.value.message
    assert info.value.column == column
    if column:
        described = info.value.describe(rule).splitlines()
        assert described[0].startswith(f"column {column}: ")
        assert described[2].index("^") - 4 == column - 1  # the caret is under the column


def test_exporter_rules_cannot_read_interfaces() -> None:
    with pytest.raises(RuleError, match=r"unknown name 'Interface\.Name'; exporter rules can read"):
        parse_rule('Interface.Name == "x"', EXPORTER_LANGUAGE)
    with pytest.raises(RuleError, match="unknown function 'ClassifyExternal'"):
        parse_rule("ClassifyExternal()", EXPORTER_LANGUAGE)


def test_format_strings_that_are_right_still_parse() -> None:
    # %% is a '%', %v takes either type, a Format of a non-literal string is checked only when run
    for rule in (
        'ClassifyProvider(Format("%s-%d", Interface.Name, Interface.Index))',
        'ClassifyProvider(Format("100%% %v %v", Interface.Speed, Interface.Name))',
        "ClassifyProvider(Format(Interface.Description))",
        'ClassifyProviderRegex(Interface.Name, "^(?P<x>.)(.)", "${x}-$2 $$")',
    ):
        parse_rule(rule, INTERFACE_LANGUAGE)
