"""The console's filter language: a small typed expression over the columns a source has, compiled to a
parameterised SQL condition — every value is a bound parameter, every column name comes from the store's
own schema, never from the text.

Grammar (keywords ``AND OR NOT IN LIKE`` in any case; field names matched without regard to case and
written in SQL as the store spells them)::

    filter     := [ or ]                                  -- empty: every row
    or         := and ( OR and )*
    and        := not ( AND not )*
    not        := NOT not | atom
    atom       := '(' or ')' | condition
    condition  := FIELD cmp value
                | FIELD [NOT] IN '(' value ( ',' value )* ')'
                | FIELD ( '<<' | '!<<' ) network          -- IP fields: inside / outside a network
                | FIELD [NOT] LIKE STRING                 -- string fields: % any text, _ one character
    cmp        := '=' | '!=' | '<>' | '<' | '<=' | '>' | '>='
    value      := INTEGER | STRING | IP | NAME
    network    := IP '/' prefix | IP                      -- 10.0.0.0/8, 2001:db8::/32; an address: /32, /128

Literals: integers in decimal; strings in single or double quotes with ``\\\\``, ``\\'`` and ``\\"``
escapes (any Unicode, no control characters); IPv4 and IPv6 addresses and networks written bare
(``10.0.0.1``, ``2001:db8::/32``) or quoted; ``NAME`` is a named constant of the field — protocol names
for ``Protocol`` (``tcp``, ``udp``, …), ``AS15169`` for AS-number fields, a bare word
(``[A-Za-z_][A-Za-z0-9_-]*``) for a string field (``InIfBoundary = external``).

Types decide what a condition may say (:class:`FieldType`): ``ip`` fields (addresses stored as text, as
every NetSpectra table stores them) take ``= != IN << !<<``; ``int`` fields take every comparison and
``IN``, with values checked against the column's range; ``string`` fields take ``= != IN LIKE``. Anything
else is a :class:`FilterError` with the character position and what was expected there.

Nothing the text holds reaches the SQL as text: comments (``--``, ``/*``), semicolons and stray quotes
are not tokens of the language and are refused where they stand; values are parameters
(``%(flt_N)s``, bound client-side by :func:`~netspectra.storage.schema.bind`); names are the catalog's
names, quoted by :func:`~netspectra.storage.schema.quote_identifier`. Limits: :data:`MAX_CHARS`
characters, :data:`MAX_DEPTH` levels of nesting, :data:`MAX_TERMS` conditions, :data:`MAX_LIST` values in
one ``IN`` list.

:func:`complete` says what may come at a cursor (fields, operators, values, keywords): the console's
completion. Values of a field are the store's (see :mod:`netspectra.storage.console`).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from netspectra.kinds import did_you_mean
from netspectra.storage.schema import quote_identifier

#: Longest filter text.
MAX_CHARS = 4096
#: Deepest nesting of parentheses and NOTs.
MAX_DEPTH = 32
#: Most conditions in one filter.
MAX_TERMS = 256
#: Most values in one IN list.
MAX_LIST = 1000

Kind = Literal["ip", "int", "string"]

KEYWORDS = ("AND", "OR", "NOT", "IN", "LIKE")
_MAPPED = ipaddress.ip_network("::ffff:0:0/96")
_CMP = ("=", "!=", "<>", "<", "<=", ">", ">=")

#: IANA protocol numbers by the names operators type (``Protocol = tcp``).
PROTOCOL_NAMES: dict[str, int] = {
    "icmp": 1,
    "igmp": 2,
    "ipip": 4,
    "tcp": 6,
    "udp": 17,
    "ipv6": 41,
    "gre": 47,
    "esp": 50,
    "ah": 51,
    "icmpv6": 58,
    "ipv6-icmp": 58,
    "ospf": 89,
    "pim": 103,
    "vrrp": 112,
    "sctp": 132,
}

_INT_RANGES = {
    "UInt8": (0, 2**8 - 1),
    "UInt16": (0, 2**16 - 1),
    "UInt32": (0, 2**32 - 1),
    "UInt64": (0, 2**64 - 1),
    "Int8": (-(2**7), 2**7 - 1),
    "Int16": (-(2**15), 2**15 - 1),
    "Int32": (-(2**31), 2**31 - 1),
    "Int64": (-(2**63), 2**63 - 1),
}
_STRING_TYPES = re.compile(r"^(String|FixedString\(\d+\)|Enum(8|16)\(.*\))$", re.S)
_IP_NAME = re.compile(r"(IP|Addr|Address)$")


class FilterError(ValueError):
    """A filter that cannot be used: ``message`` (says what was found and what was expected),
    ``position`` (0-based character offset in the text), ``expected`` (what would have been valid
    there, for the page to show)."""

    def __init__(self, message: str, position: int, expected: Sequence[str] = ()) -> None:
        super().__init__(f"at character {position + 1}: {message}")
        self.message = message
        self.position = position
        self.expected = tuple(expected)

    def to_dict(self) -> dict[str, object]:
        return {"message": self.message, "position": self.position, "expected": list(self.expected)}


@dataclass(frozen=True)
class FieldType:
    """A field a filter may name: its column ``name`` (the store's spelling), its ``kind`` and, for
    ``int`` fields, the range ``lo``–``hi`` of the column type; ``nullable`` columns match no condition
    on their NULL rows (SQL's rules: ``NOT`` of an unknown stays unknown)."""

    name: str
    kind: Kind
    lo: int = 0
    hi: int = 0
    nullable: bool = False
    ch_type: str = ""

    @property
    def operators(self) -> tuple[str, ...]:
        if self.kind == "ip":
            return ("=", "!=", "IN", "NOT IN", "<<", "!<<")
        if self.kind == "int":
            return (*_CMP[:2], *_CMP[3:], "IN", "NOT IN")
        return ("=", "!=", "IN", "NOT IN", "LIKE", "NOT LIKE")

    def constants(self) -> dict[str, int]:
        """Named values of an ``int`` field (lower-case name → value)."""
        if self.kind != "int":
            return {}
        if self.name.lower() in ("protocol", "proto"):
            return dict(PROTOCOL_NAMES)
        return {}

    @property
    def is_as(self) -> bool:
        return self.kind == "int" and self.name.endswith("AS")


def field_type(name: str, ch_type: str) -> FieldType | None:
    """The :class:`FieldType` of a column from its ClickHouse type, or ``None`` when the console cannot
    filter on it (arrays, floats, dates...). ``Nullable(...)`` and ``LowCardinality(...)`` are looked
    through; a string column whose name ends in ``IP``, ``Addr`` or ``Address`` holds addresses as text."""
    inner, nullable = ch_type.strip(), False
    while True:
        m = re.fullmatch(r"(Nullable|LowCardinality)\((.*)\)", inner, re.S)
        if not m:
            break
        nullable = nullable or m.group(1) == "Nullable"
        inner = m.group(2).strip()
    if inner in _INT_RANGES:
        lo, hi = _INT_RANGES[inner]
        return FieldType(name, "int", lo, hi, nullable, ch_type)
    if _STRING_TYPES.match(inner):
        kind: Kind = "ip" if _IP_NAME.search(name) and inner == "String" else "string"
        return FieldType(name, kind, nullable=nullable, ch_type=ch_type)
    return None


# --------------------------------------------------------------------------------------------------
# Tokens
# --------------------------------------------------------------------------------------------------

TokenKind = Literal["name", "int", "string", "ip", "net", "op", "(", ")", ",", "end"]


@dataclass(frozen=True, slots=True)
class Token:
    kind: TokenKind
    text: str  # the source text
    pos: int
    value: object = None  # int, str, ipaddress objects


_SPACE = re.compile(r"\s+")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
_INT = re.compile(r"[0-9]+")
_ADDR = re.compile(r"[0-9A-Fa-f:.]+(?:/[0-9]+)?")
_DOTTED = re.compile(r"[0-9]+(?:\.[0-9]+)+(?:/[0-9]+)?")
_OPS = ("!<<", "<<", "<=", ">=", "<>", "!=", "=", "<", ">")


def _describe(ch: str) -> str:
    if ch in "'\"":
        return f"the quote {ch}"
    if ch.isprintable() and not ch.isspace():
        return f"{ch!r} (U+{ord(ch):04X})"
    return f"the character U+{ord(ch):04X}"


def tokenize(text: str, *, partial: bool = False) -> list[Token]:
    """The tokens of ``text`` and an ``end`` token. ``FilterError`` at the first character that starts no
    token. ``partial`` (completion): an unterminated string at the end is taken as it is."""
    if len(text) > MAX_CHARS:
        raise FilterError(f"the filter has {len(text):,} characters; at most {MAX_CHARS:,}", MAX_CHARS)
    out: list[Token] = []
    i, n = 0, len(text)
    while i < n:
        m = _SPACE.match(text, i)
        if m:
            i = m.end()
            continue
        ch = text[i]
        if ch in "'\"":
            tok, i = _string(text, i, partial)
            out.append(tok)
            continue
        if ch in "(),":
            out.append(Token(ch, ch, i))  # type: ignore[arg-type]
            i += 1
            continue
        op = next((o for o in _OPS if text.startswith(o, i)), None)
        if op is not None:
            out.append(Token("op", op, i))
            i += len(op)
            continue
        tok = _address(text, i)
        if tok is not None:
            out.append(tok)
            i += len(tok.text)
            continue
        m = _INT.match(text, i)  # ASCII digits only (str.isdigit() also takes other scripts' digits)
        if m:
            end = m.end()
            if end < n and (text[end].isalnum() or text[end] == "_"):
                raise FilterError(f"{text[i : end + 1]!r} is not a number", i, ("a number",))
            out.append(Token("int", m.group(), i, int(m.group())))
            i = end
            continue
        m = _NAME.match(text, i)
        if m:
            out.append(Token("name", m.group(), i, m.group()))
            i = m.end()
            continue
        if text.startswith("--", i) or text.startswith("/*", i):
            raise FilterError("comments are not part of the filter language", i, ())
        raise FilterError(f"unexpected {_describe(ch)}", i, ())
    out.append(Token("end", "", n))
    return out


def _string(text: str, i: int, partial: bool) -> tuple[Token, int]:
    quote, start = text[i], i
    i += 1
    chars: list[str] = []
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text) and text[i + 1] in "\\'\"":
            chars.append(text[i + 1])
            i += 2
            continue
        if c == quote:
            return Token("string", text[start : i + 1], start, "".join(chars)), i + 1
        if not c.isprintable() and c != " ":
            raise FilterError(f"a string holds {_describe(c)}; control characters are not allowed", i)
        if 0xD800 <= ord(c) <= 0xDFFF:
            raise FilterError("a string holds a lone surrogate, not Unicode text", i)
        chars.append(c)
        i += 1
    if partial:
        return Token("string", text[start:], start, "".join(chars)), len(text)
    raise FilterError(f"the string opened here is not closed (with {quote})", start, (quote,))


def _address(text: str, i: int) -> Token | None:
    """An IP address or network written bare at ``i``, or ``None`` when what stands there is not one
    (a number, a name). Text that looks like an address but is not one is an error."""
    m = _ADDR.match(text, i)
    if not m:
        return None
    word = m.group()
    looks_v6 = ":" in word
    looks_v4 = bool(_DOTTED.fullmatch(word))
    if not (looks_v6 or looks_v4):
        return None
    end = m.end()
    if end < len(text) and (text[end].isalnum() or text[end] in "_-"):
        raise FilterError(f"{text[i : end + 1]!r} is not an IP address or network", i, ("an IP address",))
    return _parse_address(word, i)


def _parse_address(word: str, pos: int) -> Token:
    try:
        if "/" in word:
            net = ipaddress.ip_network(word, strict=False)
            return Token("net", word, pos, net)
        return Token("ip", word, pos, ipaddress.ip_address(word))
    except ValueError:
        what = "network" if "/" in word else "address"
        raise FilterError(f"{word!r} is not an IP {what}", pos, ("an IP address",)) from None


# --------------------------------------------------------------------------------------------------
# Syntax tree
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Condition:
    field: FieldType
    op: str  # = != < <= > >= IN NOT IN << !<< LIKE NOT LIKE
    values: tuple[object, ...]
    pos: int


@dataclass(frozen=True)
class Not:
    node: Node


@dataclass(frozen=True)
class BoolOp:
    op: Literal["AND", "OR"]
    nodes: tuple[Node, ...]


Node = Condition | Not | BoolOp


def resolve_field(name: str, fields: Mapping[str, FieldType], pos: int) -> FieldType:
    """The field ``name`` names (any case), or ``FilterError`` listing the fields there are."""
    if name in fields:
        return fields[name]
    by_lower = {k.lower(): v for k, v in fields.items()}
    if name.lower() in by_lower:
        return by_lower[name.lower()]
    hint = did_you_mean(name, fields, case_sensitive=False)
    names = ", ".join(fields) or "none"
    raise FilterError(f"unknown field {name!r}{hint}; the fields here are {names}", pos, tuple(fields))


class _Parser:
    def __init__(self, tokens: list[Token], fields: Mapping[str, FieldType]) -> None:
        self.tokens = tokens
        self.i = 0
        self.fields = fields
        self.depth = 0
        self.terms = 0

    @property
    def tok(self) -> Token:
        return self.tokens[self.i]

    def keyword(self, word: str) -> bool:
        t = self.tok
        return t.kind == "name" and t.text.upper() == word

    def next(self) -> Token:
        t = self.tokens[self.i]
        self.i += 1
        return t

    def fail(self, expected: Sequence[str], what: str = "") -> FilterError:
        t = self.tok
        got = "the end of the filter" if t.kind == "end" else repr(t.text)
        return FilterError(f"expected {what or ' or '.join(expected)}, got {got}", t.pos, expected)

    def parse(self) -> Node | None:
        if self.tok.kind == "end":
            return None
        node = self.or_()
        if self.tok.kind != "end":
            if self.tok.kind == ")":
                raise FilterError("this ')' closes no '('", self.tok.pos, ("AND", "OR"))
            raise self.fail(("AND", "OR"), "AND, OR or the end of the filter")
        return node

    def enter(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise FilterError(f"nested deeper than {MAX_DEPTH} levels", self.tok.pos)

    def or_(self) -> Node:
        nodes = [self.and_()]
        while self.keyword("OR"):
            self.next()
            nodes.append(self.and_())
        return nodes[0] if len(nodes) == 1 else BoolOp("OR", tuple(nodes))

    def and_(self) -> Node:
        nodes = [self.not_()]
        while self.keyword("AND"):
            self.next()
            nodes.append(self.not_())
        return nodes[0] if len(nodes) == 1 else BoolOp("AND", tuple(nodes))

    def not_(self) -> Node:
        if self.keyword("NOT"):
            self.enter()
            self.next()
            node = Not(self.not_())
            self.depth -= 1
            return node
        return self.atom()

    def atom(self) -> Node:
        t = self.tok
        if t.kind == "(":
            self.enter()
            self.next()
            node = self.or_()
            if self.tok.kind != ")":
                raise self.fail((")", "AND", "OR"), "')', AND or OR")
            self.next()
            self.depth -= 1
            return node
        if t.kind == "name" and t.text.upper() not in KEYWORDS:
            return self.condition()
        raise self.fail(("a field", "NOT", "("), "a field name, NOT or '('")

    def condition(self) -> Condition:
        name_tok = self.next()
        f = resolve_field(name_tok.text, self.fields, name_tok.pos)
        self.terms += 1
        if self.terms > MAX_TERMS:
            raise FilterError(f"more than {MAX_TERMS} conditions", name_tok.pos)
        t = self.tok
        negated = False
        if self.keyword("NOT"):
            negated = True
            self.next()
            if not (self.keyword("IN") or self.keyword("LIKE")):
                raise self.fail(("IN", "LIKE"), "IN or LIKE after NOT")
            t = self.tok
        if self.keyword("IN"):
            op = "NOT IN" if negated else "IN"
            self._allowed(f, op, t)
            self.next()
            return Condition(f, op, self.value_list(f), name_tok.pos)
        if self.keyword("LIKE"):
            op = "NOT LIKE" if negated else "LIKE"
            self._allowed(f, op, t)
            self.next()
            v = self.tok
            if v.kind != "string":
                raise self.fail(("a quoted pattern",), "a quoted pattern ('10.%', '%edge%')")
            self.next()
            return Condition(f, op, (v.value,), name_tok.pos)
        if t.kind == "op":
            op = "!=" if t.text == "<>" else t.text
            self._allowed(f, op, t)
            self.next()
            if op in ("<<", "!<<"):
                return Condition(f, op, (self.network(f),), name_tok.pos)
            return Condition(f, op, (self.value(f),), name_tok.pos)
        raise self.fail(f.operators, f"an operator for {f.name} ({', '.join(f.operators)})")

    def _allowed(self, f: FieldType, op: str, t: Token) -> None:
        if op not in f.operators:
            kind = {"ip": "an IP field", "int": "a number field", "string": "a text field"}[f.kind]
            raise FilterError(
                f"{op} does not apply to {f.name} ({kind}); use {', '.join(f.operators)}", t.pos, f.operators
            )

    def value_list(self, f: FieldType) -> tuple[object, ...]:
        if self.tok.kind != "(":
            raise self.fail(("(",), "'(' and a list of values")
        self.next()
        values = [self.value(f)]
        while self.tok.kind == ",":
            self.next()
            if len(values) >= MAX_LIST:
                raise FilterError(f"more than {MAX_LIST} values in one IN list", self.tok.pos)
            values.append(self.value(f))
        if self.tok.kind != ")":
            raise self.fail((",", ")"), "',' or ')'")
        self.next()
        return tuple(values)

    def value(self, f: FieldType) -> object:
        t = self.tok
        if t.kind == "end" or t.kind in "(),":
            raise self.fail((_value_words(f),), _value_words(f))
        self.next()
        return typed_value(f, t)

    def network(self, f: FieldType) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
        t = self.tok
        if t.kind == "string":
            self.next()
            net = _parse_address(str(t.value), t.pos).value
        elif t.kind in ("net", "ip"):
            self.next()
            net = t.value
        else:
            raise self.fail(("a network",), "a network (10.0.0.0/8, 2001:db8::/32)")
        if isinstance(net, ipaddress.IPv4Address | ipaddress.IPv6Address):
            net = ipaddress.ip_network(net)
        assert isinstance(net, ipaddress.IPv4Network | ipaddress.IPv6Network)
        return net


def _value_words(f: FieldType) -> str:
    if f.kind == "ip":
        return f"an IP address for {f.name}"
    if f.kind == "int":
        return f"a number for {f.name} ({f.lo}..{f.hi})"
    return f"a quoted string for {f.name}"


def typed_value(f: FieldType, t: Token) -> object:
    """The value token ``t`` as the type of ``f`` (IP text normalised as the store writes it; integers
    range-checked; names resolved); ``FilterError`` otherwise."""
    if f.kind == "ip":
        if t.kind == "ip":
            return ip_text(t.value)  # type: ignore[arg-type]
        if t.kind == "string":
            tok = _parse_address(str(t.value).strip(), t.pos)
            if tok.kind == "ip":
                return ip_text(tok.value)  # type: ignore[arg-type]
        raise FilterError(f"{f.name} is an IP field: {t.text!r} is not an address", t.pos, ("an IP address",))
    if f.kind == "int":
        if t.kind == "int":
            v = int(t.value)  # type: ignore[call-overload]
        elif t.kind == "name" and t.text.lower() in f.constants():
            v = f.constants()[t.text.lower()]
        elif t.kind == "name" and f.is_as and re.fullmatch(r"(?i)AS[0-9]+", t.text):
            v = int(t.text[2:])
        else:
            names = f.constants()
            extra = f" or one of {', '.join(sorted(names))}" if names else ""
            extra += " or AS<number>" if f.is_as else ""
            raise FilterError(
                f"{f.name} is a number field: {t.text!r} is not a number{extra}",
                t.pos,
                ("a number", *sorted(names)),
            )
        if not f.lo <= v <= f.hi:
            raise FilterError(f"{v} is outside what {f.name} holds ({f.lo}..{f.hi})", t.pos, ("a number",))
        return v
    if t.kind == "string":
        return _as_stored(f, str(t.value), t.pos)
    if t.kind == "name" and t.text.upper() not in KEYWORDS:
        return _as_stored(f, t.text, t.pos)
    if t.kind in ("int", "ip"):
        return _as_stored(f, t.text, t.pos)
    raise FilterError(
        f"{f.name} is a text field: expected a quoted string, got {t.text!r}", t.pos, ("'text'",)
    )


def _as_stored(f: FieldType, text: str, pos: int) -> str:
    """A text value as the store holds it for an enrichment column whose values have one spelling there
    (a country upper-case, a class the classifiers set lower-case), as ``TopN``'s filters read it
    (:func:`netspectra.storage.rollups.stored_text`); ``FilterError`` for one no row can hold (a boundary
    other than external or internal). Other text (names, descriptions) as written."""
    from netspectra.storage.rollups import stored_text

    try:
        return stored_text(f.name, text)
    except ValueError as exc:
        raise FilterError(str(exc), pos, (f"a value of {f.name}",)) from None


def ip_text(addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    """An address as NetSpectra stores it: IPv4 (and IPv4-mapped IPv6) dotted, other IPv6 compressed."""
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return str(addr.ipv4_mapped)
    return str(addr)


def parse(text: str, fields: Mapping[str, FieldType]) -> Node | None:
    """The syntax tree of ``text`` over ``fields`` (``None`` for an empty filter); ``FilterError`` with
    the position otherwise."""
    if not isinstance(text, str):
        raise FilterError("the filter must be text", 0)
    return _Parser(tokenize(text), fields).parse()


# --------------------------------------------------------------------------------------------------
# SQL
# --------------------------------------------------------------------------------------------------


@dataclass
class CompiledFilter:
    """A condition usable in a ``WHERE``: ``sql`` with ``%(name)s`` placeholders, their ``params``, and
    the ``fields`` it reads (column names)."""

    sql: str = "1"
    params: dict[str, object] = field(default_factory=dict)
    fields: tuple[str, ...] = ()
    text: str = ""


class _Compiler:
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.params: dict[str, object] = {}
        self.used: list[str] = []

    def param(self, value: object) -> str:
        name = f"{self.prefix}{len(self.params)}"
        self.params[name] = value
        return f"%({name})s"

    def node(self, n: Node) -> str:
        if isinstance(n, BoolOp):
            return "(" + f" {n.op} ".join(self.node(x) for x in n.nodes) + ")"
        if isinstance(n, Not):
            return f"(NOT {self.node(n.node)})"
        return self.condition(n)

    def condition(self, c: Condition) -> str:
        col = quote_identifier(c.field.name)
        if c.field.name not in self.used:
            self.used.append(c.field.name)
        if c.op in ("IN", "NOT IN"):
            return f"({col} {c.op} ({', '.join(self.param(v) for v in c.values)}))"
        if c.op in ("LIKE", "NOT LIKE"):
            return f"({col} {c.op} {self.param(c.values[0])})"
        if c.op in ("<<", "!<<"):
            inside = self.cidr(c.field, c.values[0])  # type: ignore[arg-type]
            return inside if c.op == "<<" else f"(NOT {inside})"
        return f"({col} {c.op} {self.param(c.values[0])})"

    def cidr(self, f: FieldType, net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> str:
        """Addresses stored as text: IPv4 rows (no ':') compared as UInt32 under the mask, IPv6 rows (with
        ':') as FixedString(16) between the network's first and last address. Every parse function gets
        an address of its own family, so no row can make it fail; conditions are never Nullable (18.16
        refuses a Nullable ``if`` condition); a NULL row (a field the task does not key on) gives NULL, as
        ``=`` does."""
        col = quote_identifier(f.name)
        text = f"ifNull({col}, '')" if f.nullable else col
        v4_row = f"(position({text}, ':') = 0 AND {text} != '')"
        v6_row = f"(position({text}, ':') > 0)"
        v4_num = f"IPv4StringToNum(if({v4_row}, {text}, '0.0.0.0'))"
        v6_num = f"IPv6StringToNum(if({v6_row}, {text}, '::'))"
        parts: list[str] = []
        v4net: ipaddress.IPv4Network | None = None
        if isinstance(net, ipaddress.IPv4Network):
            v4net = net
        else:
            if net.prefixlen >= 96 and net.subnet_of(_MAPPED):  # an IPv4-mapped network
                v4net = _mapped_v4(net)
            else:
                lo = net.network_address.packed.hex()
                hi = net.broadcast_address.packed.hex()
                parts.append(
                    f"({v6_row} AND {v6_num} >= toFixedString(unhex({self.param(lo)}), 16) "
                    f"AND {v6_num} <= toFixedString(unhex({self.param(hi)}), 16))"
                )
                if _MAPPED.subnet_of(net):  # ::/0 .. ::/96 hold every IPv4-mapped address too
                    parts.append(v4_row)
        if v4net is not None:
            mask, first = int(v4net.netmask), int(v4net.network_address)
            parts.append(f"({v4_row} AND bitAnd({v4_num}, {self.param(mask)}) = {self.param(first)})")
        inside = "(" + " OR ".join(parts) + ")"
        return f"if(isNull({col}), NULL, {inside})" if f.nullable else inside


def _mapped_v4(net: ipaddress.IPv6Network) -> ipaddress.IPv4Network:
    """``::ffff:a.b.c.d/n`` (n >= 96) as the IPv4 network ``a.b.c.d/(n - 96)``."""
    first = net.network_address.ipv4_mapped
    assert first is not None
    return ipaddress.IPv4Network(f"{first}/{net.prefixlen - 96}", strict=False)


def compile_filter(text: str, fields: Mapping[str, FieldType], prefix: str = "flt_") -> CompiledFilter:
    """``text`` as a SQL condition over ``fields`` (see the module docstring); an empty filter is
    ``1``. ``FilterError`` for anything the grammar or the types refuse."""
    node = parse(text, fields)
    if node is None:
        return CompiledFilter(text=text)
    c = _Compiler(prefix)
    sql = c.node(node)
    return CompiledFilter(sql, c.params, tuple(c.used), text)


def normalized(text: str, fields: Mapping[str, FieldType]) -> str:
    """The filter written back in canonical form (fields as the store spells them, keywords upper-case,
    values normalised); the page shows it and the URL keeps what the user typed."""
    node = parse(text, fields)
    return "" if node is None else _show(node, top=True)


def _show_value(f: FieldType, v: object) -> str:
    if f.kind == "int" or f.kind == "ip":
        return str(v)
    s = str(v).replace("\\", "\\\\").replace("'", "\\'")
    return f"'{s}'"


def _show(n: Node, top: bool = False) -> str:
    if isinstance(n, BoolOp):
        inner = f" {n.op} ".join(_show(x) for x in n.nodes)
        return inner if top else f"({inner})"
    if isinstance(n, Not):
        return f"NOT {_show(n.node)}"
    f = n.field
    if n.op in ("IN", "NOT IN"):
        return f"{f.name} {n.op} ({', '.join(_show_value(f, v) for v in n.values)})"
    if n.op in ("<<", "!<<"):
        net = n.values[0]
        if isinstance(net, ipaddress.IPv6Network) and net.prefixlen >= 96 and net.subnet_of(_MAPPED):
            net = _mapped_v4(net)
        return f"{f.name} {n.op} {net}"
    return f"{f.name} {n.op} {_show_value(f, n.values[0])}"


# --------------------------------------------------------------------------------------------------
# Completion
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Completion:
    """What may be typed at a cursor: ``kind`` (``field``, ``operator``, ``value``, ``keyword``),
    ``start``–``end`` the span the chosen text replaces, ``prefix`` what is typed of it so far,
    ``options`` the candidates (values are added by the caller from the store), ``field`` the field a
    value is for."""

    kind: Literal["field", "operator", "value", "keyword"]
    start: int
    end: int
    prefix: str
    options: tuple[str, ...]
    field: FieldType | None = None


def complete(text: str, cursor: int, fields: Mapping[str, FieldType]) -> Completion:
    """The completion at ``cursor`` (0..len(text)) of ``text``: from the tokens before the cursor, what
    may come next (see :class:`Completion`). Never raises for a filter that is merely unfinished; text
    the tokenizer refuses before the cursor completes as a fresh field."""
    cursor = max(0, min(int(cursor), len(text)))
    head = text[:cursor]
    try:
        tokens = tokenize(head, partial=True)[:-1]
    except FilterError:
        tokens = []
    # the word being typed: the last token when it touches the cursor (a name, number, address, string)
    typing: Token | None = None
    if (
        tokens
        and tokens[-1].pos + len(tokens[-1].text) == cursor
        and tokens[-1].kind
        in (
            "name",
            "int",
            "ip",
            "net",
            "string",
        )
    ):
        typing = tokens.pop()
    start = typing.pos if typing else cursor
    prefix = typing.text if typing else ""

    state, fld = _state_after(tokens, fields)
    if state == "field":
        opts = [f for f in fields if f.lower().startswith(prefix.lower())]
        if typing is None or "NOT".startswith(prefix.upper()):
            opts += [k for k in ("NOT",) if k.startswith(prefix.upper())]
        return Completion("field", start, cursor, prefix, tuple(opts))
    if state == "operator" and fld is not None:
        opts = [o for o in fld.operators if o.startswith(prefix.upper())]
        return Completion("operator", start, cursor, prefix, tuple(opts), fld)
    if state == "value" and fld is not None:
        raw = prefix[1:] if prefix[:1] in ("'", '"') else prefix
        consts = [k for k in fld.constants() if k.startswith(raw.lower())]
        return Completion("value", start, cursor, raw, tuple(consts), fld)
    opts = [k for k in ("AND", "OR", ")") if k.startswith(prefix.upper())]
    return Completion("keyword", start, cursor, prefix, tuple(opts))


def _state_after(tokens: list[Token], fields: Mapping[str, FieldType]) -> tuple[str, FieldType | None]:
    """What comes after ``tokens``: ``field``, ``operator`` (after a field), ``value`` (after an operator
    or inside an IN list) or ``keyword`` (after a complete condition)."""
    state, fld = "field", None
    in_list = False
    for t in tokens:
        word = t.text.upper() if t.kind == "name" else ""
        if state == "field":
            if t.kind == "name" and word not in KEYWORDS:
                try:
                    fld = resolve_field(t.text, fields, t.pos)
                except FilterError:
                    fld = None
                state = "operator"
            # "(" and NOT keep expecting a field
        elif state == "operator":
            if word == "NOT":
                continue
            if word == "IN":
                state, in_list = "in", False
            elif t.kind == "op" or word == "LIKE":
                state = "value"
            else:
                state = "keyword"
        elif state == "in":
            if t.kind == "(":
                state, in_list = "value", True
            else:
                state = "keyword"
        elif state == "value":
            state = "list_next" if in_list else "keyword"
        elif state == "list_next":
            if t.kind == ",":
                state = "value"
            else:
                state, in_list = "keyword", False
        elif state == "keyword" and word in ("AND", "OR"):
            state, fld = "field", None
    if state == "in":
        return "value", fld
    if state == "list_next":
        return "keyword", fld
    return state, fld


__all__ = [
    "KEYWORDS",
    "MAX_CHARS",
    "MAX_DEPTH",
    "MAX_LIST",
    "MAX_TERMS",
    "PROTOCOL_NAMES",
    "CompiledFilter",
    "Completion",
    "FieldType",
    "FilterError",
    "compile_filter",
    "complete",
    "field_type",
    "ip_text",
    "normalized",
    "parse",
    "tokenize",
    "typed_value",
]
