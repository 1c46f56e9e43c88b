"""The configuration schema: frozen pydantic models accepting the original's ``config.yaml`` as is.

Contract of every model here:

* **Go-compatible input.** Every key of Go2NetSpectra's schema is accepted, including the misspelt
  ``size_thereshold`` / ``count_thereshold`` (aliases of ``size_threshold`` / ``count_threshold``; both
  spellings with different values is an error). A key set to nothing (``port:`` with an unset
  ``${VAR}``) means "not given", as a YAML null gives Go's zero value. Numbers are accepted where the
  original has strings (``password: 123``), as yaml.v3 does.
* **Defaults where the original applies them** (``num_shards`` 0 or >= 32768 -> 256, sketch parameters
  0 -> the sketch's defaults, persistence workers/queue), and where an empty value cannot work
  (listen addresses, NATS subject) or a library substitutes one (NATS URL, ClickHouse database/user).
  Every such rule is stated on the field.
* **Validated once, loudly.** Each error names the key path, the bad value and the fix; where the
  original skipped, ``log.Fatal``-ed or misbehaved at run time (unknown writer type, unknown key field,
  bad ``skt_type``), NetSpectra refuses the configuration up front.
* **Unknown keys are warnings, not errors** (the original is non-strict); they are listed in
  :attr:`Config.warnings` with a hint when the key is a known misspelling or a key of the original's
  outdated ``config.yaml.example``.
* Durations use Go's syntax (``"600s"``, ``"1h30m"``, ``"250ms"``) and become :class:`~datetime.timedelta`.
"""

from __future__ import annotations

import difflib
import re
import typing
from collections.abc import Iterable
from datetime import timedelta
from enum import IntEnum
from fractions import Fraction
from importlib.metadata import entry_points
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AfterValidator,
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    PrivateAttr,
    field_validator,
    model_validator,
)

from netspectra.tasks.fields import FIELD_NAMES

# --------------------------------------------------------------------------------------------------
# Vocabulary
# --------------------------------------------------------------------------------------------------

#: Flow-key fields, spelt as the original spells them (case-sensitive); the tasks' own list.
KEY_FIELDS: tuple[str, ...] = FIELD_NAMES
#: Bytes a field takes in a sketch's fixed-width key (IP 16, port 2, protocol 1).
KEY_FIELD_BYTES: dict[str, int] = {"SrcIP": 16, "DstIP": 16, "SrcPort": 2, "DstPort": 2, "Protocol": 1}
AGGREGATOR_TYPES: tuple[str, ...] = ("exact", "sketch")
EXACT_WRITER_TYPES: tuple[str, ...] = ("gob", "clickhouse", "parquet", "text")
SKETCH_WRITER_TYPES: tuple[str, ...] = ("text", "clickhouse", "parquet")
PERSISTENCE_ENCODINGS: tuple[str, ...] = ("pcap", "text", "gob", "parquet")
ALERT_OPERATORS: tuple[str, ...] = (">", "<", "=", ">=", "<=")
EXACT_METRICS: tuple[str, ...] = ("total_packets", "total_bytes", "total_flows")
SKETCH_METRICS: tuple[str, ...] = ("heavy_hitter_count", "heavy_hitter_size", "super_spreader_spread")
ALERT_METRICS: tuple[str, ...] = EXACT_METRICS + SKETCH_METRICS

#: Exact tasks: ``num_shards`` of 0 or at least this value becomes :data:`DEFAULT_NUM_SHARDS`.
MAX_NUM_SHARDS = 32768
DEFAULT_NUM_SHARDS = 256
_UINT32_MAX = 2**32 - 1
#: Sketches whose estimated memory exceeds this get a warning.
SKETCH_MEMORY_WARN_BYTES = 4 * 2**30


class SketchType(IntEnum):
    """``skt_type`` of a sketch task."""

    COUNT_MIN = 0  #: the original's "CountMin": majority-vote heavy-hitter buckets (packets and bytes)
    SUPER_SPREAD = 1  #: SuperSpread: per-flow spread (distinct elements), e.g. DstIPs per SrcIP


#: Defaults the original applies to a sketch parameter given as 0, per sketch type.
SKETCH_DEFAULTS: dict[SketchType, dict[str, int | float]] = {
    SketchType.COUNT_MIN: {"width": 2**20, "depth": 3, "size_threshold": 524288, "count_threshold": 512},
    SketchType.SUPER_SPREAD: {
        "width": 2**20,
        "depth": 3,
        "count_threshold": 4096,
        "m": 128,
        "size": 5,
        "base": 0.5,
        "b": 1.08,
    },
}


def _choices(values: Iterable[str]) -> str:
    return ", ".join(values)


def _did_you_mean(value: object, valid: Iterable[str]) -> str:
    """`` (did you mean 'X'?)`` for a case-insensitive or close match of ``value`` in ``valid``, else ""."""
    if not isinstance(value, str):
        return ""
    valid = list(valid)
    for v in valid:
        if v.lower() == value.lower():
            return f" (names are case-sensitive: did you mean {v!r}?)"
    close = difflib.get_close_matches(value, valid, n=1, cutoff=0.75)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _aggregator_type(value: str) -> str:
    """A built-in aggregator type, or a third-party one installed under the engine's entry-point group
    (names are read from package metadata: nothing is imported)."""
    plugins = sorted({ep.name for ep in entry_points(group="netspectra.aggregators")} - set(AGGREGATOR_TYPES))
    valid = (*AGGREGATOR_TYPES, *plugins)
    if value not in valid:
        raise ValueError(
            f"{value!r} is not a valid aggregator type{_did_you_mean(value, valid)}; "
            f"valid aggregator types are {_choices(valid)} (plugins add types through the "
            "'netspectra.aggregators' entry-point group)"
        )
    return value


def _one_of(what: str, valid: tuple[str, ...]) -> Any:
    """An after-validator accepting only a value of ``valid``; the message lists them."""

    def check(value: str) -> str:
        if value not in valid:
            raise ValueError(
                f"{value!r} is not a valid {what}{_did_you_mean(value, valid)}; "
                f"valid {what}s are {_choices(valid)}"
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

UInt32 = Annotated[int, Field(ge=0, le=_UINT32_MAX)]
Port = Annotated[int, Field(ge=0, le=65535)]


def _key_field(value: str) -> str:
    if value not in KEY_FIELDS:
        raise ValueError(
            f"{value!r} is not a key field{_did_you_mean(value, KEY_FIELDS)}; "
            f"valid fields are {_choices(KEY_FIELDS)}"
        )
    return value


KeyField = Annotated[str, AfterValidator(_key_field)]


def _fields_list(value: tuple[str, ...], what: str, *, required: bool) -> tuple[str, ...]:
    if required and not value:
        raise ValueError(f"{what} is empty; list at least one of {_choices(KEY_FIELDS)}")
    dups = sorted({f for f in value if value.count(f) > 1})
    if dups:
        raise ValueError(f"{_choices(dups)} listed more than once in {list(value)}; list each field once")
    return value


def _not_a_string(value: Any) -> Any:
    # A bare string would be taken as one item by some code paths and char by char by others: refuse it.
    if isinstance(value, str):
        raise ValueError(f"{value!r} is a single string; write a YAML list, e.g. [{value}]")
    return value


FieldList = Annotated[tuple[KeyField, ...], BeforeValidator(_not_a_string)]


# --------------------------------------------------------------------------------------------------
# Base
# --------------------------------------------------------------------------------------------------


class Section(BaseModel):
    """Base of every configuration model: frozen, non-strict about extra keys, YAML null = not given."""

    model_config = ConfigDict(
        frozen=True,
        extra="ignore",  # unknown keys are reported as warnings by Config, never silently dropped
        populate_by_name=True,
        coerce_numbers_to_str=True,  # yaml.v3 accepts `password: 123` into a Go string
        validate_default=False,
    )

    #: Unknown keys of this section that deserve a specific hint: key -> what to write instead.
    _hints: ClassVar[dict[str, str]] = {}

    @model_validator(mode="before")
    @classmethod
    def _drop_nulls(cls, data: Any) -> Any:
        # A YAML null (`key:` with nothing, e.g. after an unset ${VAR}) leaves Go's field at its zero
        # value; here that means "use the default".
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if v is not None}
        return data


def _empty_is_default(default: str) -> Any:
    def check(value: str) -> str:
        return value if value.strip() else default

    return AfterValidator(check)


# --------------------------------------------------------------------------------------------------
# api, ai, probe
# --------------------------------------------------------------------------------------------------


class ApiConfig(Section):
    """``api``: listen addresses of ``netspectra api`` (the original's ns-api)."""

    _hints: ClassVar[dict[str, str]] = {"rpc_listen_addr": "grpc_listen_addr"}

    #: gRPC QueryService address; empty (e.g. an unset ``${API_GRPC_LISTEN_ADDR}``) -> ``":50051"``.
    grpc_listen_addr: Annotated[str, _empty_is_default(":50051")] = ":50051"
    #: HTTP (JSON/Grafana) address; empty -> ``":8080"``.
    http_listen_addr: Annotated[str, _empty_is_default(":8080")] = ":8080"


class AiConfig(Section):
    """``ai``: the LLM gateway ``netspectra ai`` (the original's ns-ai), OpenAI-compatible API."""

    _hints: ClassVar[dict[str, str]] = {
        "openai": "api_key, model and base_url directly under ai",
        "rpc_listen_addr": "grpc_listen_addr",
    }

    #: Informational only, as in the original (the client is always OpenAI-compatible).
    provider: str = ""
    #: Secret. Empty -> the AI service refuses to start (as the original's ns-ai).
    api_key: str = Field("", repr=False)
    model: str = ""
    #: Empty -> the OpenAI default endpoint.
    base_url: str = ""
    #: gRPC AIService address; empty -> ``":50052"``.
    grpc_listen_addr: Annotated[str, _empty_is_default(":50052")] = ":50052"


class OpsConfig(Section):
    """``ops`` (a NetSpectra addition): the operations endpoint of every long-running service.

    ``listen`` is ``HOST:PORT`` (or ``:PORT``) of the HTTP server that serves ``/metrics``
    (Prometheus), ``/healthz`` and ``/readyz`` (``docs/operations.md``); empty: no endpoint. The
    ``--ops-listen`` option and ``NETSPECTRA_OPS_LISTEN`` override it.
    """

    listen: str = ""


class PersistenceConfig(Section):
    """``probe.persistence``: the probe's local copy of captured packets."""

    enabled: bool = False
    #: Directory of the files (``<path>/<timestamp>.<encoding>``); empty -> the current directory.
    path: str = ""
    #: Writer threads; <= 0 -> 1 (the original's rule).
    num_workers: int = 1
    #: Queue length; <= 0 -> 10000 (the original's rule). A full queue drops (counted), never blocks.
    channel_buffer_size: int = 10000
    #: ``pcap``, ``text``, ``gob`` or (an addition) ``parquet``; ``gob`` is written as Parquet (a Go-only
    #: format). The original: anything else silently writes nothing.
    encoding: Annotated[str, _empty_is_default("pcap"), _one_of("encoding", PERSISTENCE_ENCODINGS)] = "pcap"
    #: An addition: start a new file once the current one holds this many bytes; absent -> no size limit.
    rotate_bytes: int | None = Field(None, gt=0)
    #: An addition: start a new file once the current one is this many seconds old (an idle file is
    #: closed then too); absent -> no age limit.
    rotate_seconds: float | None = Field(None, gt=0)

    @field_validator("num_workers")
    @classmethod
    def _workers(cls, v: int) -> int:
        return v if v > 0 else 1

    @field_validator("channel_buffer_size")
    @classmethod
    def _buffer(cls, v: int) -> int:
        return v if v > 0 else 10000


class ProbeConfig(Section):
    """``probe``: capture and publication of packets to NATS."""

    _hints: ClassVar[dict[str, str]] = {"subject_name": "subject"}

    #: Empty (e.g. an unset ``${NATS_URL}``) -> ``nats://127.0.0.1:4222``, as the original's NATS client does.
    nats_url: Annotated[str, _empty_is_default("nats://127.0.0.1:4222")] = "nats://127.0.0.1:4222"
    #: Subject of the packet messages; empty -> ``gons.packets.raw`` (the original's shipped value).
    subject: Annotated[str, _empty_is_default("gons.packets.raw")] = "gons.packets.raw"
    persistence: PersistenceConfig = PersistenceConfig()
    #: An addition: the interface ``netspectra probe`` captures from when no file is given (``--iface``);
    #: empty -> none (capture files must then be given).
    interface: str = ""
    #: An addition: a tcpdump filter expression applied in the kernel (``--bpf``); empty -> every packet.
    bpf_filter: str = ""
    #: An addition: bytes kept per packet (the original's pcap handle used 1600).
    snaplen: int = Field(1600, ge=16, le=262_144)
    #: An addition: put the interface in promiscuous mode while capturing (the original did).
    promiscuous: bool = True
    #: An addition: ``PACKET_FANOUT`` group id; probe processes of one group split the interface's packets
    #: by flow hash. Absent -> no fanout.
    fanout_group: int | None = Field(None, ge=0, le=0xFFFF)
    #: An addition: ring block size in bytes (a multiple of the page size holding one snaplen frame).
    block_size: int = Field(1 << 20, ge=4096)
    #: An addition: ring blocks; the ring is ``block_size * block_count`` bytes of locked memory.
    block_count: int = Field(64, ge=2)
    #: An addition: number of shard subjects ``<subject>.<shard>``; probe and engines must agree.
    shards: int = Field(16, ge=1)
    #: An addition: key fields of the shard hash; every task must key on all of them to stay whole per shard.
    shard_fields: tuple[str, ...] = ("SrcIP",)

    @field_validator("shard_fields")
    @classmethod
    def _shard_fields(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if not v:
            raise ValueError("at least one shard field is needed, e.g. [SrcIP]")
        for f in v:
            if f not in KEY_FIELDS:
                raise ValueError(
                    f"{f!r} is not a valid key field{_did_you_mean(f, KEY_FIELDS)}; "
                    f"valid key fields are {_choices(KEY_FIELDS)}"
                )
        if len(set(v)) != len(v):
            raise ValueError(f"shard fields repeat a field: {list(v)}")
        return v


class NatsConfig(Section):
    """``nats`` (a NetSpectra addition): how the probe, the engine and ``up``'s clients authenticate to
    NATS (the server's URL stays ``probe.nats_url``). Empty -> no credentials, plain TCP.

    ``user`` + ``password``, or ``token`` (not both); TLS when ``tls_ca_file`` (the CA that signed the
    server's certificate; the certificate is always verified) or a client certificate
    (``tls_cert_file`` + ``tls_key_file``, for servers that verify clients) is set, or the URL is
    ``tls://``. Credentials belong in the environment (``${NATS_USER}``, ``${NATS_PASSWORD}``,
    ``${NATS_TOKEN}`` in the shipped file) and are never logged.
    """

    user: str = ""
    #: Secret.
    password: str = Field("", repr=False)
    #: Secret.
    token: str = Field("", repr=False)
    tls_ca_file: str = ""
    tls_cert_file: str = ""
    tls_key_file: str = ""

    @model_validator(mode="after")
    def _consistent(self) -> NatsConfig:
        if self.token and (self.user or self.password):
            raise ValueError("nats: give user and password, or a token, not both (remove one)")
        if self.password and not self.user:
            raise ValueError("nats.password is set but nats.user is empty: set the user too")
        if bool(self.tls_cert_file) != bool(self.tls_key_file):
            raise ValueError(
                "nats.tls_cert_file and nats.tls_key_file go together (a client certificate and its key)"
            )
        return self


# --------------------------------------------------------------------------------------------------
# alerter, smtp
# --------------------------------------------------------------------------------------------------


class AiAnalysisConfig(Section):
    """``alerter.ai_analysis``: enrich alert e-mails with an analysis from ``netspectra ai``."""

    enabled: bool = False
    #: ``host:port`` of the AI service (``${ALERTER_AI_SERVICE_ADDR}`` in the shipped file).
    service_addr: str = ""
    #: An addition: the longest an alert waits for the analysis (the original: 60 s); then it is sent without.
    timeout: GoDuration = timedelta(seconds=60)


class AlertRule(Section):
    """One entry of ``alerter.rules``: ``metric operator threshold`` evaluated on task ``task_name``."""

    name: str
    task_name: str
    #: total_packets, total_bytes, total_flows (exact tasks); heavy_hitter_count, heavy_hitter_size,
    #: super_spreader_spread (sketch tasks).
    metric: Annotated[str, _one_of("metric", ALERT_METRICS)]
    operator: Annotated[str, _one_of("operator", ALERT_OPERATORS)]
    threshold: float = 0.0

    @field_validator("operator", mode="before")
    @classmethod
    def _operator_hint(cls, v: Any) -> Any:
        if v == "==":
            raise ValueError(
                f"'==' is not a valid operator (did you mean '='?); valid operators are "
                f"{_choices(ALERT_OPERATORS)}"
            )
        return v


class WebhookConfig(Section):
    """One entry of ``alerter.webhooks`` (an addition): alerts POSTed as JSON or Slack-style messages."""

    url: str = ""
    #: HMAC-SHA256 key: when set, every request carries a signature header over timestamp and body.
    secret: str = Field("", repr=False)
    format: Literal["json", "slack"] = "json"
    timeout: GoDuration = timedelta(seconds=10)
    #: Attempts after the first one (back-off doubles from 0.5 s).
    retries: int = Field(3, ge=0, le=20)


class AlerterConfig(Section):
    """``alerter``: periodic evaluation of :class:`AlertRule` and notification."""

    #: Go's zero value: without ``alerter.enabled: true`` nothing is evaluated.
    enabled: bool = False
    #: Time between evaluations (``"600s"``); must be positive.
    check_interval: GoDuration = timedelta(seconds=600)
    ai_analysis: AiAnalysisConfig = AiAnalysisConfig()
    rules: tuple[AlertRule, ...] = ()
    #: An addition: a standing condition is sent again only after this long (the original: every check).
    cooldown: GoDuration = timedelta(hours=1)
    #: An addition: webhook notifiers (several allowed), beside the log and the e-mail.
    webhooks: tuple[WebhookConfig, ...] = ()

    @field_validator("check_interval")
    @classmethod
    def _positive(cls, v: timedelta) -> timedelta:
        if v <= timedelta(0):
            raise ValueError(f"{format_go_duration(v)!r} is not positive; write e.g. 600s or 10m")
        return v


class SmtpConfig(Section):
    """``smtp``: the e-mail notifier. An empty ``host`` means no e-mail."""

    _hints: ClassVar[dict[str, str]] = {"user": "username"}

    host: str = ""
    #: 0 = not given (the notifier picks its default).
    port: Port = 0
    username: str = ""
    #: Secret.
    password: str = Field("", repr=False)
    from_: str = Field("", alias="from")
    #: Comma-separated recipients, as in the original; see :attr:`recipients`.
    to: str = ""
    #: An addition: ``auto`` (STARTTLS when offered, as Go's smtp.SendMail), ``always`` or ``never``.
    starttls: Literal["auto", "always", "never"] = "auto"

    @property
    def recipients(self) -> tuple[str, ...]:
        """``to`` split on commas, blanks removed."""
        return tuple(a.strip() for a in self.to.split(",") if a.strip())


# --------------------------------------------------------------------------------------------------
# aggregator: writers
# --------------------------------------------------------------------------------------------------


class ClickHouseConfig(Section):
    """``clickhouse`` of a writer."""

    _hints: ClassVar[dict[str, str]] = {"user": "username"}

    host: str = ""
    #: 0 = not given (the writer picks the protocol's default port).
    port: Port = 0
    #: Empty -> ``default``, as the ClickHouse client does.
    database: Annotated[str, _empty_is_default("default")] = "default"
    #: Empty -> ``default``, as the ClickHouse client does.
    username: Annotated[str, _empty_is_default("default")] = "default"
    #: Secret.
    password: str = Field("", repr=False)
    #: ``true``: TLS to the server (the original's ClickHouse Cloud mode). NetSpectra speaks the native
    #: protocol (secure port 9440 by default) and, unlike the original, verifies the certificate.
    cloud: bool = False
    #: Embedded engine (``host`` empty): the chdb data directory. Empty -> ``netspectra-data/chdb``
    #: (relative to the working directory). One process at a time may open a directory, and a process
    #: can use only one: every embedded writer and query service of a process must name the same one.
    data_dir: str = ""
    #: Periods whose newest snapshot is older than this are deleted (whole periods, checked hourly);
    #: absent or 0 -> data is kept forever. An addition of NetSpectra.
    retention: GoDuration | None = None
    #: History kept inside a period: at most one row per flow per this much time (the newest snapshot
    #: of each interval survives background merges); at least 1s. An addition of NetSpectra.
    history_resolution: GoDuration = timedelta(hours=1)
    #: Cluster mode (a server only; an addition of NetSpectra): the name of a cluster of the server's
    #: ``remote_servers``. Empty -> one node, as before. Set -> ``<table><local_suffix>`` tables on every
    #: node of the cluster and ``Distributed`` tables under the usual names over them (docs/storage.md).
    cluster: str = ""
    #: Cluster mode: ``Replicated*MergeTree`` local tables (the servers need ZooKeeper and the macros
    #: used in ``zookeeper_path`` and ``replica_name``).
    replicated: bool = False
    #: ZooKeeper path of a replicated table: NetSpectra fills in ``{database}`` and ``{table}`` (the local
    #: table's name); the server fills in its macros (``{shard}``). Must contain ``{table}``.
    zookeeper_path: str = "/clickhouse/tables/{shard}/{database}/{table}"
    #: Replica name of a replicated table (the server's ``{replica}`` macro by default).
    replica_name: str = "{replica}"
    #: Cluster mode: how rows are spread over the shards: ``flow`` (a hash of the flow key: all versions
    #: of a flow's row on one shard, which ReplacingMergeTree's deduplication and FINAL need), ``task``
    #: (a hash of the task name: a task on one shard) or ``random``.
    sharding_key: str = "flow"
    #: Cluster mode: suffix of the local tables' names (the Distributed tables keep the plain names).
    local_suffix: str = "_local"

    @field_validator("sharding_key")
    @classmethod
    def _sharding_key(cls, v: str) -> str:
        choices = ("flow", "task", "random")
        if v not in choices:
            raise ValueError(
                f"{v!r} is not a sharding key{_did_you_mean(v, choices)}; valid: {_choices(choices)}"
            )
        return v

    @field_validator("local_suffix")
    @classmethod
    def _local_suffix(cls, v: str) -> str:
        if not v.strip() or "\x00" in v:
            raise ValueError("the local tables need a suffix that is not empty, e.g. _local")
        return v

    @field_validator("zookeeper_path")
    @classmethod
    def _zookeeper_path(cls, v: str) -> str:
        if "{table}" not in v or not v.startswith("/"):
            raise ValueError(
                f"{v!r} must be an absolute path containing {{table}} (one path per table), "
                "e.g. /clickhouse/tables/{shard}/{database}/{table}"
            )
        return v

    @model_validator(mode="after")
    def _cluster_mode(self) -> ClickHouseConfig:
        if self.cluster.strip() and not self.host.strip():
            raise ValueError(
                f"clickhouse.cluster ({self.cluster!r}) needs a ClickHouse server (clickhouse.host): the "
                "embedded engine (chdb) is a single node; remove cluster or set host"
            )
        if self.replicated and not self.cluster.strip():
            raise ValueError("clickhouse.replicated needs clickhouse.cluster (the cluster the replicas form)")
        return self

    @field_validator("retention")
    @classmethod
    def _retention(cls, v: timedelta | None) -> timedelta | None:
        if v is not None and v < timedelta(0):
            raise ValueError(
                f"{format_go_duration(v)!r} is negative; write e.g. 720h, or 0 to keep data forever"
            )
        return v or None

    @field_validator("history_resolution")
    @classmethod
    def _resolution(cls, v: timedelta) -> timedelta:
        if v < timedelta(seconds=1) or v % timedelta(seconds=1):
            raise ValueError(
                f"{format_go_duration(v)!r} is not a whole number of seconds >= 1s; write e.g. 1h or 10m"
            )
        return v


class RootPathConfig(Section):
    """``gob`` / ``text`` / ``parquet`` of a writer: where its files go."""

    root_path: str = ""


class _WriterBase(Section):
    """One entry of ``writers``: a sink fed with a snapshot of every task of its group."""

    _valid_types: ClassVar[tuple[str, ...]] = ()

    type: str
    #: Go's zero value: a writer is off unless ``enabled: true``.
    enabled: bool = False
    #: Time between snapshots; absent or 0 -> no periodic snapshot (only the final one at stop).
    snapshot_interval: GoDuration | None = None
    gob: RootPathConfig = RootPathConfig()
    text: RootPathConfig = RootPathConfig()
    #: An addition of NetSpectra (Parquet files).
    parquet: RootPathConfig = RootPathConfig()
    clickhouse: ClickHouseConfig = ClickHouseConfig()

    @field_validator("type")
    @classmethod
    def _type(cls, v: str) -> str:
        if v not in cls._valid_types:
            raise ValueError(
                f"{v!r} is not a writer type of this group{_did_you_mean(v, cls._valid_types)}; "
                f"valid types are {_choices(cls._valid_types)}"
            )
        return v

    @field_validator("snapshot_interval")
    @classmethod
    def _interval(cls, v: timedelta | None) -> timedelta | None:
        if v is not None and v < timedelta(0):
            raise ValueError(
                f"{format_go_duration(v)!r} is negative; write e.g. 60s, or 0 for no periodic snapshot"
            )
        return v or None


class ExactWriterConfig(_WriterBase):
    """A writer of the exact group: ``gob``, ``clickhouse``, ``parquet`` or ``text``."""

    _valid_types: ClassVar[tuple[str, ...]] = EXACT_WRITER_TYPES


class SketchWriterConfig(_WriterBase):
    """A writer of the sketch group: ``text``, ``clickhouse`` or ``parquet``."""

    _valid_types: ClassVar[tuple[str, ...]] = SKETCH_WRITER_TYPES


# --------------------------------------------------------------------------------------------------
# aggregator: tasks
# --------------------------------------------------------------------------------------------------


def _task_name(v: str) -> str:
    if not v.strip():
        raise ValueError("the task name is empty; give every task a unique name, e.g. per_five_tuple")
    return v


TaskName = Annotated[str, AfterValidator(_task_name)]


class ExactTaskConfig(Section):
    """One exact task: every flow keyed on ``key_fields``, counted exactly."""

    _hints: ClassVar[dict[str, str]] = {"key": "key_fields"}

    name: TaskName
    #: Subset of SrcIP, DstIP, SrcPort, DstPort, Protocol, each at most once; order = display order.
    key_fields: FieldList
    #: 0 or >= 32768 -> 256 (the original's rule). Kept for compatibility; a partitioning hint only.
    num_shards: UInt32 = DEFAULT_NUM_SHARDS

    @field_validator("key_fields")
    @classmethod
    def _fields(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return _fields_list(v, "key_fields", required=True)

    @field_validator("num_shards")
    @classmethod
    def _shards(cls, v: int) -> int:
        return DEFAULT_NUM_SHARDS if v == 0 or v >= MAX_NUM_SHARDS else v


def _skt_type(value: Any) -> Any:
    valid = "0 (CountMin: heavy hitters by packets and bytes) or 1 (SuperSpread: spread per flow)"
    if isinstance(value, bool) or value not in (0, 1, "0", "1"):
        raise ValueError(f"{value!r} is not a sketch type; valid skt_type values are {valid}")
    return int(value)


class SketchTaskConfig(Section):
    """One sketch task: a CountMin (``skt_type: 0``) or SuperSpread (``skt_type: 1``) sketch.

    Parameters given as 0 (or not given) take the defaults the original applies for the type
    (:data:`SKETCH_DEFAULTS`); so, as in the original, a threshold of 0 cannot be asked for.
    """

    _hints: ClassVar[dict[str, str]] = {"key": "flow_fields", "elementkey": "element_fields"}

    name: TaskName
    skt_type: Annotated[SketchType, BeforeValidator(_skt_type)]
    #: The flow: whose heavy-hitter counters (CountMin) or whose spread (SuperSpread) is estimated.
    flow_fields: FieldList
    #: SuperSpread: the elements whose distinct count is the spread (required). CountMin: unused.
    element_fields: FieldList = ()
    width: UInt32 = 0
    depth: UInt32 = 0
    #: Heavy-hitter threshold in bytes (CountMin). Also spelt ``size_thereshold``, as in the original.
    size_threshold: UInt32 = Field(0, validation_alias=AliasChoices("size_threshold", "size_thereshold"))
    #: Threshold in packets (CountMin) or distinct elements (SuperSpread). Also ``count_thereshold``.
    count_threshold: UInt32 = Field(0, validation_alias=AliasChoices("count_threshold", "count_thereshold"))
    #: SuperSpread: registers per cell, bits per register, probability base and decay base.
    m: UInt32 = 0
    size: UInt32 = 0
    base: float = Field(0.0, ge=0.0)
    b: float = Field(0.0, ge=0.0)
    #: Hash seed for reproducible runs (an addition); absent -> a random seed per run, as the original.
    seed: int | None = Field(None, ge=0, le=2**64 - 1)
    #: CountMin (skt_type 0) only, an addition: "mv" (default: majority vote with MV-Sketch estimates,
    #: measured better, see benchmarks/RESULTS.md) or "original" (the original's replace rule and query).
    variant: Literal["", "mv", "original"] = ""

    @model_validator(mode="before")
    @classmethod
    def _thresholds(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        for right, wrong in (("size_threshold", "size_thereshold"), ("count_threshold", "count_thereshold")):
            if right in data and wrong in data:
                if data[right] != data[wrong]:
                    raise ValueError(
                        f"both {right} ({data[right]!r}) and its original spelling {wrong} ({data[wrong]!r}) "
                        f"are given with different values; keep only one of them"
                    )
                del data[wrong]
        return data

    @field_validator("flow_fields")
    @classmethod
    def _flow(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return _fields_list(v, "flow_fields", required=True)

    @field_validator("element_fields")
    @classmethod
    def _elem(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return _fields_list(v, "element_fields", required=False)

    @model_validator(mode="after")
    def _defaults(self) -> SketchTaskConfig:
        if self.skt_type is SketchType.SUPER_SPREAD and not self.element_fields:
            raise ValueError(
                "element_fields is empty; a SuperSpread task (skt_type 1) counts distinct element_fields "
                f"per flow: list at least one of {_choices(KEY_FIELDS)}"
            )
        update = {k: v for k, v in SKETCH_DEFAULTS[self.skt_type].items() if not getattr(self, k)}
        return self.model_copy(update=update) if update else self

    @property
    def key_bytes(self) -> int:
        """Bytes of the fixed-width flow key (16 per IP, 2 per port, 1 for the protocol)."""
        return sum(KEY_FIELD_BYTES[f] for f in self.flow_fields)

    def estimated_memory_bytes(self) -> int:
        """Rough size of the sketch: depth x width cells (SuperSpread: ``8m + key + 8`` bytes a cell,
        the original's layout; CountMin: two key + counter pairs a cell)."""
        cells = self.depth * self.width
        if self.skt_type is SketchType.SUPER_SPREAD:
            return cells * (8 * self.m + self.key_bytes + 8)
        return cells * 2 * (self.key_bytes + 4)


class ExactGroupConfig(Section):
    """``aggregator.exact``: exact tasks and the writers of their snapshots."""

    writers: tuple[ExactWriterConfig, ...] = ()
    tasks: tuple[ExactTaskConfig, ...] = ()


class SketchGroupConfig(Section):
    """``aggregator.sketch``: sketch tasks and the writers of their heavy hitters."""

    writers: tuple[SketchWriterConfig, ...] = ()
    tasks: tuple[SketchTaskConfig, ...] = ()


class AggregatorConfig(Section):
    """``aggregator``: the engine."""

    _hints: ClassVar[dict[str, str]] = {
        "type": "types (a list, e.g. [exact, sketch])",
        "tasks": "exact.tasks or sketch.tasks",
    }

    #: Task groups to run: a subset of exact, sketch. Go's zero value: none.
    types: Annotated[
        tuple[Annotated[str, AfterValidator(_aggregator_type)], ...], BeforeValidator(_not_a_string)
    ] = ()
    #: All tasks are reset every period (after a final snapshot); absent or 0 -> never.
    period: GoDuration | None = None
    #: Worker threads applying batches to the tasks; at least 1.
    num_workers: int = Field(16, ge=1)
    #: Bounded queue between transport and workers; 0 -> 10000.
    size_of_packet_channel: int = Field(10000, ge=0)
    exact: ExactGroupConfig = ExactGroupConfig()
    sketch: SketchGroupConfig = SketchGroupConfig()

    @field_validator("types")
    @classmethod
    def _types(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(dict.fromkeys(v))  # "exact" twice is harmless: one group

    @field_validator("period")
    @classmethod
    def _period(cls, v: timedelta | None) -> timedelta | None:
        if v is not None and v < timedelta(0):
            raise ValueError(
                f"{format_go_duration(v)!r} is negative; write e.g. 720h, or 0 for no periodic reset"
            )
        return v or None

    @field_validator("size_of_packet_channel")
    @classmethod
    def _channel(cls, v: int) -> int:
        return v or 10000


# --------------------------------------------------------------------------------------------------
# Root
# --------------------------------------------------------------------------------------------------


class Config(Section):
    """The whole configuration (``configs/config.yaml``).

    Beyond the per-key rules, the root checks that task names are unique across both groups, that every
    alert rule names an existing task with a metric that task can compute, and collects
    :attr:`warnings` (unknown keys, tasks of a group not in ``aggregator.types``, huge sketches, ...).
    """

    api: ApiConfig = ApiConfig()
    ai: AiConfig = AiConfig()
    probe: ProbeConfig = ProbeConfig()
    alerter: AlerterConfig = AlerterConfig()
    smtp: SmtpConfig = SmtpConfig()
    aggregator: AggregatorConfig = AggregatorConfig()
    ops: OpsConfig = OpsConfig()
    nats: NatsConfig = NatsConfig()

    _warnings: tuple[str, ...] = PrivateAttr(default=())
    _source: str | None = PrivateAttr(default=None)

    @property
    def warnings(self) -> tuple[str, ...]:
        """Problems that do not stop NetSpectra, one line each, each naming its key path."""
        return self._warnings

    @property
    def source(self) -> str | None:
        """Where the configuration was read from (set by the loader), else ``None``."""
        return self._source

    @model_validator(mode="wrap")
    @classmethod
    def _root(cls, data: Any, handler: Any) -> Config:
        unknown = unknown_key_warnings(data) if isinstance(data, dict) else []
        cfg: Config = handler(data)
        errors, warnings = _cross_check(cfg)
        if errors:
            raise ValueError("\n".join(errors))
        cfg._warnings = tuple(unknown + warnings)
        return cfg

    def task_names(self) -> tuple[str, ...]:
        """Names of every task, exact tasks first (the order of the original's ``SearchTasks``)."""
        return tuple(t.name for t in self.aggregator.exact.tasks) + tuple(
            t.name for t in self.aggregator.sketch.tasks
        )


def _cross_check(cfg: Config) -> tuple[list[str], list[str]]:
    """Rules spanning several sections: ``(errors, warnings)``, each line starting with a key path."""
    errors: list[str] = []
    warnings: list[str] = []
    agg = cfg.aggregator
    kinds: dict[str, tuple[str, str]] = {}  # task name -> (group, path)
    tasks: list[tuple[str, str, ExactTaskConfig | SketchTaskConfig]] = [
        *(("exact", f"aggregator.exact.tasks[{i}]", t) for i, t in enumerate(agg.exact.tasks)),
        *(("sketch", f"aggregator.sketch.tasks[{i}]", t) for i, t in enumerate(agg.sketch.tasks)),
    ]
    for group, path, task in tasks:
        if task.name in kinds:
            errors.append(
                f"{path}.name: {task.name!r} is already the name of {kinds[task.name][1]}; "
                f"task names must be unique across exact and sketch tasks (rename one)"
            )
        else:
            kinds[task.name] = (group, path)

    for group, section in (("exact", agg.exact), ("sketch", agg.sketch)):
        if section.tasks and group not in agg.types:
            warnings.append(
                f"aggregator.{group}.tasks: {len(section.tasks)} task(s) configured but {group!r} is not in "
                f"aggregator.types {list(agg.types)}; add it to run them"
            )
        if group in agg.types and not section.tasks:
            warnings.append(f"aggregator.types: {group!r} is enabled but aggregator.{group}.tasks is empty")

    for i, task in enumerate(agg.sketch.tasks):
        mem = task.estimated_memory_bytes()
        if mem > SKETCH_MEMORY_WARN_BYTES:
            warnings.append(
                f"aggregator.sketch.tasks[{i}] ({task.name}): the sketch needs about {_human_bytes(mem)} "
                "of memory "
                f"(depth {task.depth} x width {task.width}, m {task.m}); reduce width, depth or m "
                f"(the original's config.yaml.example values m 1048576 / size 128 predate its SuperSpread)"
            )

    for i, rule in enumerate(cfg.alerter.rules):
        path = f"alerter.rules[{i}]"
        if rule.task_name not in kinds:
            known = list(kinds)
            errors.append(
                f"{path}.task_name: {rule.task_name!r} is not a configured task"
                f"{_did_you_mean(rule.task_name, known)}; known tasks are {_choices(known) or '(none)'}"
            )
            continue
        group, _ = kinds[rule.task_name]
        task = next(t for g, _, t in tasks if t.name == rule.task_name and g == group)
        if group == "exact" and rule.metric not in EXACT_METRICS:
            errors.append(
                f"{path}.metric: {rule.metric!r} is a sketch metric but {rule.task_name!r} is an exact task; "
                f"exact tasks have {_choices(EXACT_METRICS)}"
            )
        elif group == "sketch" and rule.metric not in SKETCH_METRICS:
            errors.append(
                f"{path}.metric: {rule.metric!r} is an exact-task metric but {rule.task_name!r} "
                "is a sketch task; "
                f"sketch tasks have {_choices(SKETCH_METRICS)}"
            )
        elif isinstance(task, SketchTaskConfig):
            ss = task.skt_type is SketchType.SUPER_SPREAD
            if rule.metric == "super_spreader_spread" and not ss:
                errors.append(
                    f"{path}.metric: 'super_spreader_spread' needs a SuperSpread task (skt_type 1) but "
                    f"{rule.task_name!r} is a CountMin task; use heavy_hitter_count or heavy_hitter_size"
                )
            elif rule.metric == "heavy_hitter_size" and ss:
                errors.append(
                    f"{path}.metric: 'heavy_hitter_size' needs a CountMin task (skt_type 0) but "
                    f"{rule.task_name!r} is a SuperSpread task (no byte counts); use super_spreader_spread"
                )
        if group not in agg.types:
            warnings.append(
                f"{path}: task {rule.task_name!r} does not run ({group!r} is not in aggregator.types)"
            )

    # An empty smtp.host is not reported here: with ${SMTP_HOST} unset it is the normal state of the shipped
    # file, and commands that never alert (analyze) should not warn about it; the alerter reports it.
    al = cfg.alerter
    if al.enabled and al.ai_analysis.enabled and not al.ai_analysis.service_addr:
        warnings.append(
            "alerter.ai_analysis.service_addr: empty (ALERTER_AI_SERVICE_ADDR unset?) while ai_analysis is "
            "enabled; alerts will be sent without AI analysis"
        )
    return errors, warnings


def _human_bytes(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if value < 1024 or unit == "PiB":
            return f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


# --------------------------------------------------------------------------------------------------
# Unknown keys
# --------------------------------------------------------------------------------------------------


def _known_keys(model: type[BaseModel]) -> dict[str, Any]:
    """Every accepted spelling of each field of ``model`` -> the field's annotation."""
    keys: dict[str, Any] = {}
    for name, field in model.model_fields.items():
        spellings = {name}
        if field.alias:
            spellings.add(field.alias)
        va = field.validation_alias
        if isinstance(va, str):
            spellings.add(va)
        elif isinstance(va, AliasChoices):
            spellings.update(c for c in va.choices if isinstance(c, str))
        for s in spellings:
            keys[s] = field.annotation
    return keys


def _nested(annotation: Any) -> tuple[type[Section] | None, bool]:
    """The :class:`Section` inside ``annotation`` (if any) and whether it is a sequence of them."""
    if isinstance(annotation, type) and issubclass(annotation, Section):
        return annotation, False
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is Annotated:
        return _nested(args[0])
    if origin in (tuple, list) and args and isinstance(args[0], type) and issubclass(args[0], Section):
        return args[0], True
    for arg in args:  # Optional[...] / unions
        if isinstance(arg, type) and issubclass(arg, Section):
            return arg, False
    return None, False


def unknown_key_warnings(
    data: dict[str, Any], model: type[Section] | None = None, path: str = ""
) -> list[str]:
    """One warning per key of ``data`` that ``model`` (default :class:`Config`) does not know, recursively.

    Each names the key path and says it is ignored, with a hint: the right key for a known misspelling
    or outdated key of the original's ``config.yaml.example``, else the closest known key, else the
    known keys of that section.
    """
    model = model or Config
    known = _known_keys(model)
    out: list[str] = []
    for key, value in data.items():
        where = f"{path}.{key}" if path else str(key)
        if key not in known:
            hint = model._hints.get(str(key))
            if hint:
                advice = f"write {hint} instead"
            else:
                close = difflib.get_close_matches(str(key), list(known), n=1, cutoff=0.6)
                advice = (
                    f"did you mean {close[0]!r}?" if close else f"known keys here: {_choices(sorted(known))}"
                )
            out.append(f"{where}: unknown key, ignored; {advice}")
            continue
        sub, many = _nested(known[key])
        if sub is None:
            continue
        if many and isinstance(value, list):
            for i, item in enumerate(value):
                if isinstance(item, dict):
                    out.extend(unknown_key_warnings(item, sub, f"{where}[{i}]"))
        elif not many and isinstance(value, dict):
            out.extend(unknown_key_warnings(value, sub, where))
    return out
