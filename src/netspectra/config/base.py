"""The building blocks of every configuration model: the frozen :class:`Section` base, Go durations,
sizes, key-field lists, and the helpers kinds use to validate their own parameters.

Kind modules (aggregators, sketches, writers, sources) declare their parameter models on top of these;
:mod:`netspectra.config.models` assembles the root :class:`~netspectra.config.models.Config`. Nothing here
imports a kind: this module is the floor the kinds stand on.
"""

# No `from __future__ import annotations` here: pydantic reads the models' annotations as objects instead
# of evaluating strings when a class is made (~3 ms of every command's start for the configuration's models).
import contextlib
import os
import re
import typing
from collections.abc import Callable, Iterable, Iterator
from datetime import timedelta
from fractions import Fraction
from typing import Annotated, Any, ClassVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
    model_validator,
)

from netspectra.fields import FIELD_NAMES, field_error
from netspectra.kinds import did_you_mean

_UINT32_MAX = 2**32 - 1


def choices(values: Iterable[str]) -> str:
    """``values`` joined for a message: ``a, b, c``."""
    return ", ".join(values)


def one_of(what: str, valid: tuple[str, ...]) -> Any:
    """An after-validator accepting only a value of ``valid``; the message lists them."""

    def check(value: str) -> str:
        if value not in valid:
            raise ValueError(
                f"{value!r} is not a valid {what}{did_you_mean(value, valid)}; "
                f"valid {what}s are {choices(valid)}"
            )
        return value

    return AfterValidator(check)


# --------------------------------------------------------------------------------------------------
# Go durations
# --------------------------------------------------------------------------------------------------

_NS_PER_UNIT: dict[str, int] = {
    "ns": 1,
    "us": 1_000,
    "\u00b5s": 1_000,  # U+00B5 MICRO SIGN, as Go accepts
    "\u03bcs": 1_000,  # U+03BC GREEK SMALL LETTER MU, as Go accepts
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}
_NUMBER = re.compile(r"([0-9]*)(?:\.([0-9]*))?")
_UNIT = re.compile(r"[^0-9.]*")
_DURATION_FIX = "write a Go duration such as 600s, 10m, 1h30m or 250ms (units ns, us, ms, s, m, h)"


def parse_go_duration(text: str) -> timedelta:
    """Parse ``text`` exactly as Go's ``time.ParseDuration`` and return it as a :class:`timedelta`.

    Accepts an optional sign and a sequence of decimal numbers (fractions allowed) each with a unit
    (``ns``, ``us``/``µs``, ``ms``, ``s``, ``m``, ``h``), e.g. ``"1h30m"``, ``"1.5h"``, ``"-250ms"``;
    ``"0"`` alone needs no unit. Rejected with ``ValueError``: empty text, a number without unit, an
    unknown unit, spaces, and values beyond Go's range (about 292 years). A timedelta has microsecond
    resolution, so nanoseconds are rounded to the nearest microsecond.
    """
    s = text
    neg = False
    if s[:1] in ("-", "+"):
        neg = s[0] == "-"
        s = s[1:]
    if s == "0":
        return timedelta(0)
    if not s:
        raise ValueError(f"{text!r} is not a duration; {_DURATION_FIX}")
    total = Fraction(0)
    pos = 0
    while pos < len(s):
        c = s[pos]
        if not (c == "." or "0" <= c <= "9"):
            raise ValueError(f"{text!r} is not a duration (unexpected {s[pos:]!r}); {_DURATION_FIX}")
        num = _NUMBER.match(s, pos)
        assert num is not None  # the pattern matches the empty string
        whole, frac = num.group(1), num.group(2)
        if not whole and not frac:
            raise ValueError(f"{text!r} is not a duration (a '.' without digits); {_DURATION_FIX}")
        value = Fraction(int(whole or "0"))
        if frac:
            value += Fraction(int(frac), 10 ** len(frac))
        pos = num.end()
        unit = _UNIT.match(s, pos)
        assert unit is not None
        name = unit.group(0)
        if not name:
            raise ValueError(
                f"{text!r} is not a duration (missing unit after {s[num.start() : pos]!r}); {_DURATION_FIX}"
            )
        if name not in _NS_PER_UNIT:
            raise ValueError(f"{text!r} is not a duration (unknown unit {name!r}); {_DURATION_FIX}")
        total += value * _NS_PER_UNIT[name]
        pos = unit.end()
    if total > 2**63 - 1 + (1 if neg else 0):
        raise ValueError(f"{text!r} is out of range (Go durations are limited to about 292 years)")
    micros = round(total / 1000)
    return timedelta(microseconds=-micros if neg else micros)


def _trim(value: Fraction | int, scale: int) -> str:
    """``value / scale`` as Go prints it: the shortest decimal, no trailing zeros."""
    whole, rest = divmod(int(value), scale)
    if not rest:
        return str(whole)
    digits = len(str(scale)) - 1
    return f"{whole}.{rest:0{digits}d}".rstrip("0")


def format_go_duration(td: timedelta) -> str:
    """Format ``td`` as Go's ``Duration.String`` does: ``"10m0s"``, ``"720h0m0s"``, ``"250ms"``, ``"0s"``.

    The result parses back to ``td`` with :func:`parse_go_duration`.
    """
    ns = (td.days * 86_400 + td.seconds) * 1_000_000_000 + td.microseconds * 1_000
    if ns == 0:
        return "0s"
    sign = "-" if ns < 0 else ""
    u = abs(ns)
    if u < 1_000_000_000:
        if u < 1_000:
            return f"{sign}{u}ns"
        if u < 1_000_000:
            return f"{sign}{_trim(u, 1_000)}\u00b5s"
        return f"{sign}{_trim(u, 1_000_000)}ms"
    hours, rest = divmod(u, 3_600_000_000_000)
    minutes, rest = divmod(rest, 60_000_000_000)
    secs = _trim(rest, 1_000_000_000)
    if hours:
        return f"{sign}{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{sign}{minutes}m{secs}s"
    return f"{sign}{secs}s"


def _to_timedelta(value: Any) -> Any:
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration; {_DURATION_FIX}")
    if isinstance(value, int | float):
        # yaml.v3 hands Go the scalar's text: a bare 600 fails ParseDuration ("missing unit"), so here too.
        value = str(value)
    if isinstance(value, str):
        return parse_go_duration(value)
    raise ValueError(f"{value!r} is not a duration; {_DURATION_FIX}")


#: A duration written in Go's syntax; serialised back in Go's syntax.
GoDuration = Annotated[
    timedelta,
    BeforeValidator(_to_timedelta),
    PlainSerializer(format_go_duration, return_type=str, when_used="json"),
]


def checked_duration(v: timedelta, fix: str, *, positive: bool = False) -> timedelta:
    """``v`` when it is not negative (``positive``: greater than zero); else ``ValueError`` naming the value,
    with ``fix`` (what to write instead) after it: the check of a duration setting's validator."""
    if positive and v <= timedelta(0):
        raise ValueError(f"{format_go_duration(v)!r} is not positive; {fix}")
    if v < timedelta(0):
        raise ValueError(f"{format_go_duration(v)!r} is negative; {fix}")
    return v


UInt32 = Annotated[int, Field(ge=0, le=_UINT32_MAX)]
Port = Annotated[int, Field(ge=0, le=65535)]


def _key_field(value: str) -> str:
    if value not in FIELD_NAMES:
        raise ValueError(field_error(value))
    return value


KeyFieldName = Annotated[str, AfterValidator(_key_field)]


def fields_list(value: tuple[str, ...], what: str, *, required: bool) -> tuple[str, ...]:
    """Check a validated list of key fields: not empty when ``required``, no field twice."""
    if required and not value:
        raise ValueError(f"{what} is empty; list at least one of {choices(FIELD_NAMES)}")
    dups = sorted({f for f in value if value.count(f) > 1})
    if dups:
        raise ValueError(f"{choices(dups)} listed more than once in {list(value)}; list each field once")
    return value


def not_a_string(value: Any) -> Any:
    """Refuse a bare string where a list is expected (one item to some code, characters to other code)."""
    if isinstance(value, str):
        raise ValueError(f"{value!r} is a single string; write a YAML list, e.g. [{value}]")
    return value


#: A list of key-field names (each checked; use :func:`fields_list` for emptiness and repeats).
FieldList = Annotated[tuple[KeyFieldName, ...], BeforeValidator(not_a_string)]


# --------------------------------------------------------------------------------------------------
# Sizes
# --------------------------------------------------------------------------------------------------

_SIZE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([KMGTP]?i?B?)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "m": 10**6,
    "mb": 10**6,
    "g": 10**9,
    "gb": 10**9,
    "t": 10**12,
    "tb": 10**12,
    "p": 10**15,
    "pb": 10**15,
    "ki": 2**10,
    "kib": 2**10,
    "mi": 2**20,
    "mib": 2**20,
    "gi": 2**30,
    "gib": 2**30,
    "ti": 2**40,
    "tib": 2**40,
    "pi": 2**50,
    "pib": 2**50,
}
_SIZE_FIX = "write bytes as a number or with a unit, e.g. 8GiB, 512MiB, 2GB"


def parse_size(value: Any) -> int:
    """Bytes from ``value``: an integer, or a number with a unit (``KiB MiB GiB TiB`` powers of 1024,
    ``KB MB GB TB`` powers of 1000, case-insensitive, ``B`` optional); ``ValueError`` otherwise."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a size; {_SIZE_FIX}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"{value!r} is negative; {_SIZE_FIX}")
        return value
    if isinstance(value, float) and value >= 0 and value.is_integer():
        return int(value)
    m = _SIZE.match(str(value))
    if not m:
        raise ValueError(f"{value!r} is not a size; {_SIZE_FIX}")
    unit = (m.group(2) or "").lower()
    if unit not in _SIZE_UNITS:
        raise ValueError(f"{value!r}: unknown unit {m.group(2)!r}; {_SIZE_FIX}")
    return int(float(m.group(1)) * _SIZE_UNITS[unit])


def human_bytes(n: int) -> str:
    """``n`` bytes for a message: ``1.5 GiB``."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if value < 1024 or unit == "PiB":
            return f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


#: A size in bytes (``8GiB``, ``512MiB``, ``1000000``); serialised as an integer.
ByteSize = Annotated[int, BeforeValidator(parse_size)]


#: How many times validation has looked outside the configuration's text at something other than a
#: named file's state (see :func:`note_outside_read`).
_OUTSIDE_READS = [0]
#: Who is told of each named file a validator is about to look at (:func:`note_outside_read` with a
#: path): the validated cache while it validates (:func:`watching_files`); nobody otherwise, so that
#: nothing accumulates in a process that validates again and again.
_FILE_WATCHERS: list[Callable[[str], None]] = []


def note_outside_read(path: str | None = None) -> None:
    """Say that a validator's result depends on more than the configuration's text and the code.

    With ``path``: it depends on the file at ``path`` as the validator names it (whether it exists, what
    it holds); called *before* the validator looks at the file, so that the state the validated cache
    (:mod:`netspectra.config.validated_cache`) records is the one the validator saw or an older one,
    never a newer one. The cache keeps the configuration with that file's identity and validates again
    when the file is another, changed, appeared or gone. Without: on something else (a file reached by a
    path the validator transformed, e.g. ``~`` expanded, a socket, the clock): such a configuration is
    kept out of the validated cache and checked again at every start."""
    if path is None:
        _OUTSIDE_READS[0] += 1
    else:
        for watch in tuple(_FILE_WATCHERS):
            watch(path)


def outside_reads() -> int:
    """The count of :func:`note_outside_read` calls without a path (compared before and after a
    validation)."""
    return _OUTSIDE_READS[0]


@contextlib.contextmanager
def watching_files(watch: Callable[[str], None]) -> Iterator[None]:
    """Call ``watch(path)`` (which must not raise) for each path given to :func:`note_outside_read` while
    the block runs, when it is given (before the validator looks at the file)."""
    _FILE_WATCHERS.append(watch)
    try:
        yield
    finally:
        _FILE_WATCHERS.remove(watch)


def physical_memory_bytes() -> int:
    """This machine's physical memory (0 if the platform does not say)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 0


# --------------------------------------------------------------------------------------------------
# The base of every section
# --------------------------------------------------------------------------------------------------


class Section(BaseModel):
    """Base of every configuration model: frozen, non-strict about extra keys, YAML null = not given."""

    model_config = ConfigDict(
        frozen=True,
        extra="ignore",  # unknown keys are reported as warnings by Config, never silently dropped
        populate_by_name=True,
        coerce_numbers_to_str=True,  # yaml.v3 accepts `password: 123` into a Go string
        validate_default=False,
        # a model's validator and serializer are built when it first validates or serializes, not when
        # its class is made: a configuration from the validated cache (config/validated_cache.py) is used
        # without them (~40 ms of every command's start-up)
        defer_build=True,
    )

    #: Unknown keys of this section that deserve a specific hint: key -> what to write instead.
    _hints: ClassVar[dict[str, str]] = {}

    @classmethod
    def known_keys(cls, data: dict[str, Any]) -> "dict[str, Child]":
        """Every key this section accepts in ``data`` -> what it holds (for the unknown-key warnings).

        The default lists the fields and their aliases (worked out once per class: a 2,000-network map
        asks it for every entry); sections whose keys depend on a kind (a writer's parameters, a group per
        aggregator kind, a sketch kind's parameters) override it. A new dict each call: callers may
        change it.
        """
        return dict(_field_keys(cls))

    def model_dump(self, **kwargs: Any) -> dict[str, Any]:
        complete_models(self)
        return super().model_dump(**kwargs)

    def model_dump_json(self, **kwargs: Any) -> str:
        complete_models(self)
        return super().model_dump_json(**kwargs)

    @model_validator(mode="before")
    @classmethod
    def _drop_nulls(cls, data: Any) -> Any:
        # A YAML null (`key:` with nothing, e.g. after an unset ${VAR}) leaves Go's field at its zero
        # value; here that means "use the default".
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if v is not None}
        return data


def complete_models(root: Any) -> None:
    """Build the validator and serializer of every model class in the tree of ``root`` that has not built
    them yet (:class:`Section` defers them to first use).

    A model serializes a model held in a field typed ``Any`` (a kind's group, task or parameters) with
    that model's own serializer, which pydantic does not build on demand there: a configuration read
    from the validated cache, whose classes never validated anything in this process, would fail to
    dump. :meth:`Section.model_dump` and :meth:`Section.model_dump_json` call this first."""
    seen: set[type] = set()
    stack = [root]
    while stack:
        node = stack.pop()
        if isinstance(node, BaseModel):
            cls = type(node)
            if cls not in seen:
                seen.add(cls)
                if not cls.__pydantic_complete__:
                    cls.model_rebuild()
            stack.extend(node.__dict__.values())
        elif isinstance(node, list | tuple | set | frozenset):
            stack.extend(node)
        elif isinstance(node, dict):
            stack.extend(node.values())


def empty_is_default(default: str) -> Any:
    def check(value: str) -> str:
        return value if value.strip() else default

    return AfterValidator(check)


def check_listen_address(value: str, default: str) -> str:
    """``value``, a service's ``HOST:PORT`` / ``[V6]:PORT`` / ``:PORT`` listen address, or ``default``
    when it is empty (an unset ``${VAR}``). A missing or bad port is a ``ValueError`` whose example is
    ``default``'s: ``127.0.0.1:`` (``127.0.0.1:${PORT}`` with ``PORT`` unset) made gRPC listen on its
    default port, 443."""
    if not value.strip():
        return default
    host, colon, port = value.strip().rpartition(":")
    if not colon or not port.isdigit() or int(port) > 65535 or (host and "]" not in host and ":" in host):
        example = f"{default} or :{default.rpartition(':')[2]}"
        what = "has no port (an unset ${VAR}?)" if colon and not port else "is not HOST:PORT"
        raise ValueError(f"{value!r} {what}; write HOST:PORT with a port 0..65535, e.g. {example}")
    return value


def listen_address(default: str) -> Any:
    """The configuration's listen-address type: :func:`check_listen_address` with ``default``."""
    return AfterValidator(lambda value: check_listen_address(value, default))


def _task_name(v: str) -> str:
    if not v.strip():
        raise ValueError("the task name is empty; give every task a unique name, e.g. per_five_tuple")
    return v


#: A task's name: not empty; unique across every group (checked by the root).
TaskName = Annotated[str, AfterValidator(_task_name)]


class TaskConfig(Section):
    """Base of every aggregator kind's task model: every task has a ``name``."""

    name: TaskName


#: One problem a validator found: ``(loc, message, value)``, ``loc`` relative to where it is raised.
Problem = tuple[tuple[str | int, ...], str, Any]


def value_error_at(
    loc: tuple[str | int, ...], message: str, value: Any, title: str = "Config"
) -> ValidationError:
    """A :class:`ValidationError` with one ``message`` at ``loc`` (relative to where it is raised), for
    validators that check a key other than the one they run on."""
    return value_errors_at([(loc, message, value)], title)


def value_errors_at(problems: list[Problem], title: str = "Config") -> ValidationError:
    """:func:`value_error_at` for several problems at once: a validator that checks the entries of a
    mapping or list reports every bad one, not only the first."""
    return ValidationError.from_exception_data(
        title,
        [
            {"type": "value_error", "loc": loc, "input": value, "ctx": {"error": ValueError(message)}}
            for loc, message, value in problems
        ],
    )


def revalidate(model: type[BaseModel], data: Any, loc: tuple[str | int, ...] = (), **kw: Any) -> Any:
    """``model.model_validate(data, **kw)`` from inside a validator, with every error's location
    prefixed by ``loc`` — so a kind's own model reports ``writers[0].clickhouse.port`` although it is
    validated by the writer entry's validator, not by a field."""
    try:
        return model.model_validate(data, **kw)
    except ValidationError as exc:
        raise ValidationError.from_exception_data(
            exc.title,
            [
                {
                    "type": err["type"],
                    "loc": (*loc, *err["loc"]),
                    "input": err["input"],
                    **({"ctx": err["ctx"]} if "ctx" in err else {}),
                }
                for err in exc.errors()
            ],
        ) from None


# --------------------------------------------------------------------------------------------------
# Unknown keys
# --------------------------------------------------------------------------------------------------

#: What a key of a section holds, for the unknown-key walk: the nested Section (or None) and whether
#: the key holds a list of them.
Child = tuple["type[Section] | None", bool]


def nested_section(annotation: Any) -> Child:
    """The :class:`Section` inside a field's ``annotation`` (if any) and whether it is a sequence of them."""
    if isinstance(annotation, type) and issubclass(annotation, Section):
        return annotation, False
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is Annotated:
        return nested_section(args[0])
    if origin in (tuple, list) and args and isinstance(args[0], type) and issubclass(args[0], Section):
        return args[0], True
    for arg in args:  # Optional[...] / unions
        if isinstance(arg, type) and issubclass(arg, Section):
            return arg, False
    return None, False


def _field_keys(cls: type[Section]) -> dict[str, Child]:
    """:meth:`Section.known_keys`' default: the fields of ``cls`` and their aliases (cached per class)."""
    got = _FIELD_KEYS.get(cls)
    if got is None:
        keys: dict[str, Child] = {}
        for name, field in cls.model_fields.items():
            spellings = {name}
            if field.alias:
                spellings.add(field.alias)
            va = field.validation_alias
            if isinstance(va, str):
                spellings.add(va)
            elif va is not None and hasattr(va, "choices"):
                spellings.update(c for c in va.choices if isinstance(c, str))
            child = nested_section(field.annotation)
            for s in spellings:
                keys[s] = child
        got = _FIELD_KEYS[cls] = keys
    return got


_FIELD_KEYS: dict[type, dict[str, Child]] = {}
