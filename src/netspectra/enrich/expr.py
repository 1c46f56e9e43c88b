"""The classifier rule language: a small, safe subset of Akvorado's (Expr) classifier syntax.

A rule is one boolean expression over a fixed set of read-only names, whose actions are calls of
whitelisted functions. The same rules an Akvorado operator writes work here, for example::

    ClassifyConnectivityRegex(Interface.Description, "^(?i)(transit|pni|ppni|ix):? ", "$1") &&
      ClassifyProviderRegex(Interface.Description, "^\\S+?\\s(\\S+)", "$1") && ClassifyExternal()
    Exporter.Name endsWith ".it" && ClassifyRegion("italy")
    Interface.Index in [10, 11, 12] or Interface.Name startsWith "Te" && ClassifyInternal()

Grammar (Expr's precedence, lowest first)::

    rule    := or
    or      := and { ("||" | "or") and }
    and     := cmp { ("&&" | "and") cmp }
    cmp     := unary [ OP unary ]        OP: == != < <= > >= in matches contains startsWith endsWith,
                                             each of the last five also as "not OP"
    unary   := ("!" | "not") unary | primary
    primary := STRING | INTEGER | true | false | NAME | FUNC "(" [args] ")" | "[" [args] "]" | "(" rule ")"

Safety, by construction: there is no ``eval``, no attribute access (``Exporter.Name`` is one name of a
closed list, resolved when the rule is parsed), no function but those listed by the rule's
:class:`Language`, no loops, and every regular expression is a string literal compiled when the rule is
parsed. Rules are type-checked when parsed (strings, integers, booleans, lists): every error is a
:class:`RuleError` with the 1-based column it points at.

Regular expressions use Python's :mod:`re` (close to Go's RE2 for what classifiers need); an inline
flag group such as ``(?i)`` that is not at the start (Akvorado's examples write ``^(?i)...``) is moved
to the start, where Python requires it. Templates expand ``$1``, ``${1}`` and ``${name}`` like Go's
``Regexp.Expand``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# Types of the language.
STR, INT, BOOL, LIST = "string", "integer", "boolean", "list"
_ARTICLE = {STR: "a string", INT: "an integer", BOOL: "a boolean", LIST: "a list"}


def _a(typ: str) -> str:
    return _ARTICLE.get(typ, "a " + typ)


class RuleError(ValueError):
    """A rule that does not parse or type-check; ``column`` is 1-based (0: the whole rule)."""

    def __init__(self, message: str, column: int = 0) -> None:
        super().__init__(message)
        self.message = message
        self.column = column

    def describe(self, source: str) -> str:
        """The message with the rule and a caret under the column, for a configuration error."""
        if not self.column:
            return self.message
        return f"column {self.column}: {self.message}\n    {source}\n    {' ' * (self.column - 1)}^"


# --------------------------------------------------------------------------------------------------
# Tokens
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Token:
    kind: str  # "str", "int", "name", "op", "end"
    text: str
    value: Any
    col: int  # 1-based


_OPS = ("&&", "||", "==", "!=", "<=", ">=", "<", ">", "!", "(", ")", "[", "]", ",")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"', "'": "'", "0": "\0"}
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")
_INT = re.compile(r"[0-9]+")


def tokenize(src: str) -> list[Token]:
    """The tokens of ``src``; :class:`RuleError` at the first character that starts none."""
    out: list[Token] = []
    i, n = 0, len(src)
    while i < n:
        c = src[i]
        if c.isspace():
            i += 1
            continue
        if c in "\"'`":
            j, buf = i + 1, []
            while True:
                if j >= n:
                    raise RuleError(f"the string that starts here is not closed with {c}", i + 1)
                d = src[j]
                if d == c:
                    break
                if d == "\\" and c != "`":
                    if j + 1 >= n:
                        raise RuleError("a backslash ends the rule inside a string", j + 1)
                    e = src[j + 1]
                    if e not in _ESCAPES:
                        raise RuleError(
                            f"unknown escape \\{e} in a string; write \\\\{e} for a backslash "
                            "(regular expressions: \\\\d, \\\\S, ...)",
                            j + 1,
                        )
                    buf.append(_ESCAPES[e])
                    j += 2
                    continue
                buf.append(d)
                j += 1
            out.append(Token("str", src[i : j + 1], "".join(buf), i + 1))
            i = j + 1
            continue
        m = _INT.match(src, i)
        if m:
            if m.end() < n and (src[m.end()].isalpha() or src[m.end()] == "_"):
                raise RuleError(f"{src[i : m.end() + 1]!r} is not a number", i + 1)
            out.append(Token("int", m.group(0), int(m.group(0)), i + 1))
            i = m.end()
            continue
        m = _NAME.match(src, i)
        if m:
            out.append(Token("name", m.group(0), m.group(0), i + 1))
            i = m.end()
            continue
        for op in _OPS:
            if src.startswith(op, i):
                out.append(Token("op", op, op, i + 1))
                i += len(op)
                break
        else:
            hint = " (write == to compare)" if c == "=" else ""
            raise RuleError(f"unexpected character {c!r}{hint}", i + 1)
    out.append(Token("end", "", None, n + 1))
    return out


# --------------------------------------------------------------------------------------------------
# The language of a family of rules
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Function:
    """A whitelisted function: argument types, result type, and its implementation
    ``impl(state, *args)``. ``regex_arg``: index of an argument that must be a literal regular
    expression (compiled when parsed and passed compiled)."""

    args: tuple[str, ...]
    result: str
    impl: Callable[..., Any]
    regex_arg: int | None = None
    variadic: bool = False
    #: ``check(args, col)``: a further check of the arguments when the rule is parsed (RuleError).
    check: Callable[[list[Node], int], None] | None = None


@dataclass(frozen=True)
class Language:
    """What rules of one family may read (``names``: name -> type) and call (``functions``)."""

    what: str
    names: dict[str, str]
    functions: dict[str, Function]
    #: Functions of Akvorado's language that this family refuses, with the reason.
    refused: dict[str, str] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------------
# Regular expressions
# --------------------------------------------------------------------------------------------------

_INLINE_FLAGS = re.compile(r"\(\?([aiLmsux]+)\)")


def compile_regex(pattern: str) -> re.Pattern[str]:
    """``pattern`` compiled with :mod:`re`; inline global flags not at the start are moved there (RE2
    accepts ``^(?i)...``, Python only at the start). ``re.error`` as is."""
    flags = "".join(m.group(1) for m in _INLINE_FLAGS.finditer(pattern))
    if flags and not _INLINE_FLAGS.match(pattern):
        pattern = f"(?{''.join(sorted(set(flags)))})" + _INLINE_FLAGS.sub("", pattern)
    return re.compile(pattern)


_TEMPLATE = re.compile(r"\$(?:\{([A-Za-z0-9_]+)\}|([0-9]+|[A-Za-z_][A-Za-z0-9_]*)|(\$))")


def expand_template(template: str, match: re.Match[str]) -> str:
    """``template`` with ``$1``/``${1}``/``$name``/``${name}`` replaced by the groups of ``match`` and
    ``$$`` by ``$``, as Go's ``Regexp.Expand`` (an unknown or unmatched group expands to ``""``)."""

    def sub(m: re.Match[str]) -> str:
        if m.group(3):
            return "$"
        ref = m.group(1) or m.group(2)
        try:
            got = match.group(int(ref) if ref.isdigit() else ref)
        except IndexError:  # no such group: Go expands it to nothing
            return ""
        return got or ""

    return _TEMPLATE.sub(sub, template)


# --------------------------------------------------------------------------------------------------
# Parser: tokens -> a typed tree of closures
# --------------------------------------------------------------------------------------------------

#: An evaluator: ``fn(env, state) -> value``; ``env`` maps names to values, ``state`` is the
#: classification the actions write.
Eval = Callable[[dict[str, Any], Any], Any]

_CMP = ("==", "!=", "<", "<=", ">", ">=")
_WORD_OPS = ("in", "matches", "contains", "startsWith", "endsWith")


@dataclass(frozen=True)
class Node:
    type: str
    fn: Eval
    col: int
    elem: str | None = None  # element type of a list
    literal: Any = None  # the value of a string literal (for regular expressions)
    is_literal: bool = False


def _const(value: Any) -> Eval:
    return lambda env, st: value


class _Parser:
    def __init__(self, src: str, lang: Language) -> None:
        self.src = src
        self.lang = lang
        self.toks = tokenize(src)
        self.i = 0

    @property
    def tok(self) -> Token:
        return self.toks[self.i]

    def take(self) -> Token:
        t = self.toks[self.i]
        self.i += 1
        return t

    def at_op(self, *ops: str) -> bool:
        t = self.tok
        return (t.kind == "op" and t.text in ops) or (t.kind == "name" and t.text in ops)

    def expect(self, op: str, after: str) -> Token:
        if not self.at_op(op):
            got = self.tok.text or "the end of the rule"
            raise RuleError(f"expected {op!r} {after}, found {got!r}", self.tok.col)
        return self.take()

    def parse(self) -> Node:
        if self.tok.kind == "end":
            raise RuleError("the rule is empty", 0)
        node = self.or_()
        if self.tok.kind != "end":
            raise RuleError(
                f"unexpected {self.tok.text!r}; join conditions and actions with && or ||", self.tok.col
            )
        if node.type != BOOL:
            raise RuleError(
                f"a rule must be a condition or an action (a boolean), this one is {_a(node.type)}", node.col
            )
        return node

    def _need(self, node: Node, typ: str, what: str) -> None:
        if node.type != typ:
            raise RuleError(f"{what} needs {_a(typ)}, this is {_a(node.type)}", node.col)

    def or_(self) -> Node:
        left = self.and_()
        while self.at_op("||", "or"):
            op = self.take()
            right = self.and_()
            self._need(left, BOOL, f"{op.text!r}")
            self._need(right, BOOL, f"{op.text!r}")
            a, b = left.fn, right.fn
            left = Node(BOOL, lambda env, st, a=a, b=b: bool(a(env, st)) or bool(b(env, st)), left.col)
        return left

    def and_(self) -> Node:
        left = self.cmp()
        while self.at_op("&&", "and"):
            op = self.take()
            right = self.cmp()
            self._need(left, BOOL, f"{op.text!r}")
            self._need(right, BOOL, f"{op.text!r}")
            a, b = left.fn, right.fn
            left = Node(BOOL, lambda env, st, a=a, b=b: bool(a(env, st)) and bool(b(env, st)), left.col)
        return left

    def cmp(self) -> Node:
        left = self.unary()
        negate = False
        if self.at_op("not") and self.toks[self.i + 1].text in _WORD_OPS:
            self.take()
            negate = True
        if not (self.at_op(*_CMP) or self.at_op(*_WORD_OPS)):
            if negate:  # unreachable: "not" was only taken before a word operator
                raise RuleError("expected an operator after 'not'", self.tok.col)
            return left
        op = self.take()
        right = self.unary()
        node = self._binary(op, left, right)
        if negate:
            f = node.fn
            node = Node(BOOL, lambda env, st, f=f: not f(env, st), node.col)
        return node

    def _binary(self, op: Token, left: Node, right: Node) -> Node:
        a, b = left.fn, right.fn
        o = op.text
        if o in _CMP:
            if left.type != right.type or left.type == LIST:
                raise RuleError(
                    f"{o!r} compares {_a(left.type)} with {_a(right.type)}; compare values of one type "
                    '(Interface.Index == 10, Exporter.Name == "edge1")',
                    op.col,
                )
            if o in ("<", "<=", ">", ">=") and left.type == BOOL:
                raise RuleError(f"{o!r} does not order booleans", op.col)
            fn: Eval = {
                "==": lambda env, st: a(env, st) == b(env, st),
                "!=": lambda env, st: a(env, st) != b(env, st),
                "<": lambda env, st: a(env, st) < b(env, st),
                "<=": lambda env, st: a(env, st) <= b(env, st),
                ">": lambda env, st: a(env, st) > b(env, st),
                ">=": lambda env, st: a(env, st) >= b(env, st),
            }[o]
            return Node(BOOL, fn, left.col)
        if o == "in":
            if right.type != LIST:
                raise RuleError(
                    f"'in' needs a list on its right ([...]), this is {_a(right.type)}", right.col
                )
            if right.elem is not None and right.elem != left.type:
                raise RuleError(
                    f"'in' looks for {_a(left.type)} in a list of {right.elem}s; use values of one type",
                    op.col,
                )
            return Node(BOOL, lambda env, st: a(env, st) in b(env, st), left.col)
        # matches, contains, startsWith, endsWith: strings on both sides.
        self._need(left, STR, f"{o!r}")
        self._need(right, STR, f"{o!r}")
        if o == "matches":
            rx = self._regex(right)
            return Node(BOOL, lambda env, st: rx.search(a(env, st)) is not None, left.col)
        fn = {
            "contains": lambda env, st: b(env, st) in a(env, st),
            "startsWith": lambda env, st: a(env, st).startswith(b(env, st)),
            "endsWith": lambda env, st: a(env, st).endswith(b(env, st)),
        }[o]
        return Node(BOOL, fn, left.col)

    def _regex(self, node: Node) -> re.Pattern[str]:
        if not node.is_literal:
            raise RuleError('a regular expression must be a string literal ("...")', node.col)
        try:
            return compile_regex(node.literal)
        except re.error as exc:
            raise RuleError(f"invalid regular expression {node.literal!r}: {exc}", node.col) from None

    def unary(self) -> Node:
        if self.at_op("!", "not"):
            op = self.take()
            inner = self.unary()
            self._need(inner, BOOL, f"{op.text!r}")
            f = inner.fn
            return Node(BOOL, lambda env, st: not f(env, st), op.col)
        return self.primary()

    def primary(self) -> Node:
        t = self.tok
        if t.kind == "str":
            self.take()
            return Node(STR, _const(t.value), t.col, literal=t.value, is_literal=True)
        if t.kind == "int":
            self.take()
            return Node(INT, _const(t.value), t.col, literal=t.value, is_literal=True)
        if t.kind == "op" and t.text == "(":
            self.take()
            inner = self.or_()
            self.expect(")", "to close the parenthesis")
            return inner
        if t.kind == "op" and t.text == "[":
            self.take()
            items = self._args("]", "list")
            types = {n.type for n in items}
            if len(types) > 1:
                raise RuleError(f"a list mixes {' and '.join(sorted(types))}s; use values of one type", t.col)
            if any(not n.is_literal for n in items):
                bad = next(n for n in items if not n.is_literal)
                raise RuleError("list items must be literal strings or numbers", bad.col)
            values = frozenset(n.literal for n in items)
            return Node(LIST, _const(values), t.col, elem=next(iter(types), None))
        if t.kind == "name":
            self.take()
            if t.text in ("true", "false"):
                return Node(BOOL, _const(t.text == "true"), t.col, literal=t.text == "true", is_literal=True)
            if self.at_op("("):
                return self._call(t)
            if t.text in self.lang.names:
                name = t.text
                return Node(self.lang.names[name], lambda env, st: env[name], t.col)
            if t.text in self.lang.functions or t.text in self.lang.refused:
                raise RuleError(f"{t.text} is a function; call it: {t.text}(...)", t.col)
            known = ", ".join(self.lang.names)
            raise RuleError(f"unknown name {t.text!r}; {self.lang.what} rules can read {known}", t.col)
        got = t.text or "the end of the rule"
        raise RuleError(f"expected a value, a name or a function call, found {got!r}", t.col)

    def _args(self, close: str, what: str) -> list[Node]:
        items: list[Node] = []
        if self.at_op(close):
            self.take()
            return items
        while True:
            items.append(self.or_())
            if self.at_op(","):
                self.take()
                continue
            self.expect(close, f"to end the {what}")
            return items

    def _call(self, name: Token) -> Node:
        fname = name.text
        if fname in self.lang.refused:
            raise RuleError(self.lang.refused[fname], name.col)
        fn = self.lang.functions.get(fname)
        if fn is None:
            known = ", ".join(sorted(self.lang.functions))
            raise RuleError(f"unknown function {fname!r}; {self.lang.what} rules can call {known}", name.col)
        self.take()  # "("
        args = self._args(")", f"arguments of {fname}")
        if fn.variadic:
            if len(args) < len(fn.args):
                raise RuleError(
                    f"{fname} takes at least {len(fn.args)} argument(s), got {len(args)}", name.col
                )
        elif len(args) != len(fn.args):
            raise RuleError(f"{fname} takes {len(fn.args)} argument(s), got {len(args)}", name.col)
        for k, (arg, typ) in enumerate(zip(args, fn.args, strict=False)):
            if arg.type != typ:
                raise RuleError(
                    f"argument {k + 1} of {fname} must be {_a(typ)}, this is {_a(arg.type)}", arg.col
                )
        if fn.check is not None:
            fn.check(args, name.col)
        fns = [a.fn for a in args]
        if fn.regex_arg is not None:
            rx = self._regex(args[fn.regex_arg])
            fns[fn.regex_arg] = _const(rx)
        impl = fn.impl
        return Node(fn.result, lambda env, st: impl(st, *(f(env, st) for f in fns)), name.col)


@dataclass(frozen=True)
class Rule:
    """A parsed rule: its ``source`` and ``run(env, state)`` (True/False; the actions wrote ``state``)."""

    source: str
    run: Eval


def parse_rule(source: str, lang: Language) -> Rule:
    """Parse and type-check ``source`` in ``lang``; :class:`RuleError` (with its column) if it is wrong."""
    if not isinstance(source, str):
        raise RuleError(f"a rule is a string, got a {type(source).__name__}")
    node = _Parser(source, lang).parse()
    return Rule(source, node.fn)


# --------------------------------------------------------------------------------------------------
# Akvorado's two families: exporter rules and interface rules
# --------------------------------------------------------------------------------------------------

_NORMALIZE = re.compile(r"[^a-z0-9.+-]+")


def normalize(text: str) -> str:
    """Lower case, only ``a-z 0-9 . + -`` kept (Akvorado's normalisation of classified values)."""
    return _NORMALIZE.sub("", text.lower())


def _setter(attr: str) -> Callable[..., bool]:
    def classify(state: Any, value: str) -> bool:
        if not getattr(state, attr):
            setattr(state, attr, normalize(value))
        return True

    return classify


def _check_template(args: list[Node], col: int) -> None:
    """A literal template of a ``…Regex`` call is checked against its literal regular expression when the
    rule is parsed: a group it names must exist (Go expands a missing one to nothing: the attribute
    would be set to ``""`` without a word)."""
    regex, template = args[1], args[2]
    if not (regex.is_literal and template.is_literal):
        return
    try:
        rx = compile_regex(regex.literal)
    except re.error:
        return  # reported with its column when the regular expression is compiled
    for m in _TEMPLATE.finditer(template.literal):
        ref = m.group(1) or m.group(2)
        if ref is None:  # "$$"
            continue
        if ref.isdigit():
            if int(ref) > rx.groups:
                raise RuleError(
                    f"the template {template.literal!r} refers to group {ref}; {regex.literal!r} has "
                    f"{rx.groups} group(s)",
                    template.col,
                )
        elif ref not in rx.groupindex:
            named = ", ".join(rx.groupindex) or "none"
            raise RuleError(
                f"the template {template.literal!r} refers to a group named {ref!r}; "
                f"{regex.literal!r} names {named}",
                template.col,
            )


def _regex_setter(attr: str) -> Callable[..., bool]:
    def classify(state: Any, text: str, rx: re.Pattern[str], template: str) -> bool:
        if getattr(state, attr):
            return True
        m = rx.search(text)
        if m is None:
            return False
        setattr(state, attr, normalize(expand_template(template, m)))
        return True

    return classify


_FORMAT_VERB = re.compile(r"%(.|$)", re.DOTALL)


def _check_format(args: list[Node], col: int) -> None:
    """A literal ``Format`` string is checked when the rule is parsed: only the verbs :func:`_format`
    knows, one value per verb, ``%d`` of an integer — what Go would print as ``%!d(MISSING)``,
    ``%!(EXTRA …)`` or ``%!d(string=…)`` and the normalisation would turn into a silent wrong class."""
    if not args[0].is_literal:
        return
    values = args[1:]
    n = 0
    for m in _FORMAT_VERB.finditer(args[0].literal):
        verb = m.group(1)
        if verb == "%":
            continue
        if verb not in ("s", "d", "v"):
            shown = m.group(0) if verb else "a lone '%' at the end"
            raise RuleError(
                f"Format knows %s, %d, %v and %% (no flags, widths or other verbs): {shown!r} in "
                f"{args[0].literal!r}; write %% for a '%'",
                args[0].col,
            )
        if n < len(values) and verb == "d" and values[n].type != INT:
            raise RuleError(f"%d of Format needs an integer, this is {_a(values[n].type)}", values[n].col)
        n += 1
    if n != len(values):
        raise RuleError(
            f"Format({args[0].literal!r}, ...) has {n} verb(s) for {len(values)} value(s); give one value "
            "per %s, %d or %v",
            col,
        )


def _format(state: Any, fmt: str, *args: Any) -> str:
    """Go's ``fmt.Sprintf`` for the verbs classifiers use: ``%s``, ``%d``, ``%v``, ``%%``."""
    it = iter(args)

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "%%":
            return "%"
        try:
            return str(next(it))
        except StopIteration:
            return f"%!{m.group(0)[1]}(MISSING)"

    return re.sub(r"%%|%[sdv]", sub, fmt)


def _boundary(code: int) -> Callable[..., bool]:
    def classify(state: Any) -> bool:
        if not state.boundary:
            state.boundary = code
        return True

    return classify


_REFUSED = {
    "Reject": "Reject() is not supported: enrichment never drops a row (filter rows in the task instead)",
    "SetName": "SetName() is not supported: interface names come from enrichment.exporters",
    "SetDescription": "SetDescription() is not supported: descriptions come from enrichment.exporters",
}


def _string_functions(attrs: dict[str, str]) -> dict[str, Function]:
    out: dict[str, Function] = {}
    for fname, attr in attrs.items():
        out[fname] = Function((STR,), BOOL, _setter(attr))
        out[f"{fname}Regex"] = Function(
            (STR, STR, STR), BOOL, _regex_setter(attr), regex_arg=1, check=_check_template
        )
    return out


EXPORTER_NAMES = {"Exporter.IP": STR, "Exporter.Name": STR}
INTERFACE_NAMES = {
    **EXPORTER_NAMES,
    "Interface.Index": INT,
    "Interface.Name": STR,
    "Interface.Description": STR,
    "Interface.Speed": INT,
}

#: Exporter rules: read the exporter's address and name, classify group, role, site, region, tenant.
EXPORTER_LANGUAGE = Language(
    "exporter",
    EXPORTER_NAMES,
    {
        "Format": Function((STR,), STR, _format, variadic=True, check=_check_format),
        **_string_functions(
            {
                "Classify": "group",
                "ClassifyGroup": "group",
                "ClassifyRole": "role",
                "ClassifySite": "site",
                "ClassifyRegion": "region",
                "ClassifyTenant": "tenant",
            }
        ),
    },
    _REFUSED,
)

#: Interface rules: read exporter and interface, classify boundary, connectivity and provider.
INTERFACE_LANGUAGE = Language(
    "interface",
    INTERFACE_NAMES,
    {
        "Format": Function((STR,), STR, _format, variadic=True, check=_check_format),
        "ClassifyExternal": Function((), BOOL, _boundary(1)),
        "ClassifyInternal": Function((), BOOL, _boundary(2)),
        **_string_functions({"ClassifyConnectivity": "connectivity", "ClassifyProvider": "provider"}),
    },
    _REFUSED,
)
