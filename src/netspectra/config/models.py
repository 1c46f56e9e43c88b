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

# No `from __future__ import annotations` here: pydantic reads the models' annotations as objects instead
# of evaluating strings when a class is made (~3 ms of every command's start for the configuration's models).
import re
from datetime import timedelta
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    BeforeValidator,
    Field,
    PrivateAttr,
    field_validator,
    model_validator,
)

from netspectra.config.aggregator import (
    DEFAULT_MEMORY_FRACTION,
    AggregatorConfig,
    ExactWriterConfig,
    GroupConfig,
    SketchWriterConfig,
    WriterConfig,
)
from netspectra.config.base import (
    ByteSize,
    FieldList,
    GoDuration,
    Port,
    Section,
    TaskName,
    UInt32,
    checked_duration,
    choices,
    empty_is_default,
    format_go_duration,
    human_bytes,
    listen_address,
    one_of,
    parse_go_duration,
)
from netspectra.config.collect import CollectConfig
from netspectra.config.enrichment import EnrichmentConfig, filled_by
from netspectra.enrich.columns import BY_NAME as ENRICH_BY_NAME
from netspectra.fields import FIELD_NAMES, KEY_FIELD_LISTS, PACKET_FIELDS
from netspectra.kinds import AGGREGATORS, KindError, did_you_mean

__all__ = [
    "DEFAULT_MEMORY_FRACTION",
    "KEY_FIELDS",
    "AggregatorConfig",
    "AiAnalysisConfig",
    "AiConfig",
    "AlertRule",
    "AlerterConfig",
    "ApiConfig",
    "ByteSize",
    "CollectConfig",
    "Config",
    "EnrichmentConfig",
    "ExactWriterConfig",
    "FieldList",
    "GoDuration",
    "GroupConfig",
    "OpsConfig",
    "PersistenceConfig",
    "ProbeConfig",
    "Section",
    "SketchWriterConfig",
    "SmtpConfig",
    "TaskName",
    "UInt32",
    "WebhookConfig",
    "WriterConfig",
    "format_go_duration",
    "parse_go_duration",
    "unknown_key_warnings",
]

#: Flow-key fields, spelt as the original spells them (case-sensitive); see :mod:`netspectra.fields`.
KEY_FIELDS: tuple[str, ...] = FIELD_NAMES
PERSISTENCE_ENCODINGS: tuple[str, ...] = ("pcap", "text", "gob", "parquet")
ALERT_OPERATORS: tuple[str, ...] = (">", "<", "=", ">=", "<=")


# --------------------------------------------------------------------------------------------------
# api, ai, probe
# --------------------------------------------------------------------------------------------------


#: Loopback: where ``netspectra api`` and ``netspectra ai`` listen when no address is given.
LOOPBACK = "127.0.0.1"
#: Shortest bearer token accepted (``secrets.token_urlsafe(32)`` gives 43 characters).
MIN_TOKEN_CHARS = 16
_TOKEN_TEXT = re.compile(r"^[\x21-\x7e]+$")  # printable ASCII without spaces: safe in an HTTP header
_TOKEN_FIX = "generate one with: python -c 'import secrets; print(secrets.token_urlsafe(32))'"


def _token_list(value: Any) -> Any:
    """Tokens as a YAML list, or as one string of tokens separated by commas or white space (what a
    ``${VAR}`` expands to). Messages never quote a token: they may end up in logs."""
    if isinstance(value, str):
        value = [t for t in re.split(r"[\s,]+", value) if t]
    if not isinstance(value, list | tuple):
        raise ValueError("write a YAML list of tokens, or one string of tokens separated by commas")
    out = []
    for i, token in enumerate(value):
        if not isinstance(token, str):
            raise ValueError(f"item {i} is a {type(token).__name__}, not a string; quote the token")
        token = token.strip()
        if len(token) < MIN_TOKEN_CHARS:
            raise ValueError(
                f"item {i} has {len(token)} characters; a token needs {MIN_TOKEN_CHARS} or more: {_TOKEN_FIX}"
            )
        if not _TOKEN_TEXT.match(token) or "," in token:
            raise ValueError(
                f"item {i} holds a space, a comma or a character outside printable ASCII (it must travel "
                f"in an HTTP header); {_TOKEN_FIX}"
            )
        out.append(token)
    return tuple(out)


TokenList = Annotated[tuple[str, ...], BeforeValidator(_token_list)]


class AuthConfig(Section):
    """``api.auth`` / ``ai.auth`` (a NetSpectra addition): bearer tokens of the service.

    No token anywhere (here, in the ``*_file`` files or the environment variables named in
    ``docs/api.md``) = no authentication. With any token, every call but the health checks needs
    ``Authorization: Bearer <token>`` (HTTP) or the metadata ``authorization: Bearer <token>`` (gRPC).
    ``tokens`` have the read scope (every query); ``admin_tokens`` the admin scope (read + the admin
    endpoints). The files hold one token per line (``#`` comments, blank lines ignored), e.g. a mounted
    Kubernetes secret; they are read at start-up.
    """

    tokens: TokenList = Field((), repr=False)
    admin_tokens: TokenList = Field((), repr=False)
    tokens_file: str = ""
    admin_tokens_file: str = ""

    @model_validator(mode="after")
    def _disjoint(self) -> "AuthConfig":
        if set(self.tokens) & set(self.admin_tokens):
            raise ValueError(
                "a token is listed in both tokens and admin_tokens; give each token one scope "
                "(admin_tokens already allow every read)"
            )
        return self


class TlsConfig(Section):
    """``api.tls`` / ``ai.tls`` (a NetSpectra addition): TLS from PEM files; all empty = plain text.

    ``cert_file`` (the certificate chain, leaf first) and ``key_file`` (its private key) go together;
    ``client_ca_file`` additionally requires every client to present a certificate signed by one of
    its CAs (mutual TLS). The files are read (and checked) at start-up.
    """

    cert_file: str = ""
    key_file: str = ""
    client_ca_file: str = ""

    @model_validator(mode="after")
    def _pairs(self) -> "TlsConfig":
        if bool(self.cert_file.strip()) != bool(self.key_file.strip()):
            given, missing = (
                ("cert_file", "key_file") if self.cert_file.strip() else ("key_file", "cert_file")
            )
            raise ValueError(
                f"{given} is set but {missing} is empty; TLS needs both the certificate chain and its key"
            )
        if self.client_ca_file.strip() and not self.cert_file.strip():
            raise ValueError(
                "client_ca_file (mutual TLS) is set without cert_file and key_file; the server needs its own "
                "certificate to speak TLS"
            )
        return self

    @property
    def enabled(self) -> bool:
        return bool(self.cert_file.strip())


class ApiConfig(Section):
    """``api``: listen addresses of ``netspectra api`` (the original's ns-api), its tokens and TLS.

    Addresses: empty (e.g. an unset ``${API_GRPC_LISTEN_ADDR}``) -> loopback (``127.0.0.1:50051``,
    ``127.0.0.1:8080``); ``:PORT`` (the original's form) keeps Go's meaning, every interface, and the
    service warns at start when it is reachable from other machines without tokens; ``HOST:PORT`` as
    written.
    """

    _hints: ClassVar[dict[str, str]] = {"rpc_listen_addr": "grpc_listen_addr"}

    #: gRPC QueryService address; empty -> ``"127.0.0.1:50051"``.
    grpc_listen_addr: Annotated[str, listen_address(f"{LOOPBACK}:50051")] = f"{LOOPBACK}:50051"
    #: HTTP (JSON/Grafana) address; empty -> ``"127.0.0.1:8080"``.
    http_listen_addr: Annotated[str, listen_address(f"{LOOPBACK}:8080")] = f"{LOOPBACK}:8080"
    auth: AuthConfig = Field(default_factory=AuthConfig)
    tls: TlsConfig = Field(default_factory=TlsConfig)


class AiConfig(Section):
    """``ai``: the LLM gateway ``netspectra ai`` (the original's ns-ai), OpenAI-compatible API; its
    listen address follows the rules of :class:`ApiConfig`."""

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
    #: gRPC AIService address; empty -> ``"127.0.0.1:50052"``.
    grpc_listen_addr: Annotated[str, listen_address(f"{LOOPBACK}:50052")] = f"{LOOPBACK}:50052"
    auth: AuthConfig = Field(default_factory=AuthConfig)
    tls: TlsConfig = Field(default_factory=TlsConfig)


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
    encoding: Annotated[str, empty_is_default("pcap"), one_of("encoding", PERSISTENCE_ENCODINGS)] = "pcap"
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
    nats_url: Annotated[str, empty_is_default("nats://127.0.0.1:4222")] = "nats://127.0.0.1:4222"
    #: Subject of the packet messages; empty -> ``gons.packets.raw`` (the original's shipped value).
    subject: Annotated[str, empty_is_default("gons.packets.raw")] = "gons.packets.raw"
    persistence: PersistenceConfig = Field(default_factory=PersistenceConfig)
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
    #: An addition: layout of the ``v1.PacketBatch`` messages (docs/wire.md): 2 = dense (4-byte IPv4
    #: addresses, uint32 timestamp offsets: about 19-21 bytes a packet), 1 = every column full width (49
    #: bytes a packet; for engines older than layout 2).
    wire_layout: Literal[1, 2] = 2
    #: An addition: compression of layout 2's columns: none, lz4 or zstd (fewer bytes for more CPU on
    #: both ends; worth it only where the network, not the CPU, is the limit).
    wire_compression: Literal["none", "lz4", "zstd"] = "none"

    @field_validator("shard_fields")
    @classmethod
    def _shard_fields(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if not v:
            raise ValueError("at least one shard field is needed, e.g. [SrcIP]")
        for f in v:
            if f not in PACKET_FIELDS:
                # the probe hashes what every packet carries on the wire: the five packet fields
                what = "a packet field" if f in KEY_FIELDS else "a valid key field"
                raise ValueError(
                    f"{f!r} is not {what}{did_you_mean(f, PACKET_FIELDS)}; shard fields are among "
                    f"{choices(PACKET_FIELDS)}"
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
    def _consistent(self) -> "NatsConfig":
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

    @field_validator("timeout")
    @classmethod
    def _positive(cls, v: timedelta) -> timedelta:
        # (0 or less passed config check, then the alerter's AI client refused it with a traceback)
        return checked_duration(v, "write e.g. 60s", positive=True)


class AlertRule(Section):
    """One entry of ``alerter.rules``: ``metric operator threshold`` evaluated on task ``task_name``."""

    name: str
    task_name: str
    #: A metric of the task's aggregator kind: total_packets, total_bytes, total_flows (exact tasks);
    #: heavy_hitter_count, heavy_hitter_size, super_spreader_spread (sketch tasks). Checked by the root
    #: against the task's kind.
    metric: str
    operator: Annotated[str, one_of("operator", ALERT_OPERATORS)]
    threshold: float = 0.0

    @field_validator("operator", mode="before")
    @classmethod
    def _operator_hint(cls, v: Any) -> Any:
        if v == "==":
            raise ValueError(
                f"'==' is not a valid operator (did you mean '='?); valid operators are "
                f"{choices(ALERT_OPERATORS)}"
            )
        return v


class WebhookConfig(Section):
    """One entry of ``alerter.webhooks`` (an addition): alerts POSTed as JSON or Slack-style messages."""

    url: str = ""
    #: HMAC-SHA256 key: when set, every request carries a signature header over timestamp and body.
    secret: str = Field("", repr=False)
    format: Literal["json", "slack"] = "json"
    timeout: GoDuration = timedelta(seconds=10)
    #: Attempts after the first one (back-off doubles from 1 s, at most 30 s).
    retries: int = Field(3, ge=0, le=20)

    @field_validator("timeout")
    @classmethod
    def _positive(cls, v: timedelta) -> timedelta:
        # (0 or less passed config check; an HTTP request cannot have it)
        return checked_duration(v, "write e.g. 10s", positive=True)


class AlerterConfig(Section):
    """``alerter``: periodic evaluation of :class:`AlertRule` and notification."""

    #: Go's zero value: without ``alerter.enabled: true`` nothing is evaluated.
    enabled: bool = False
    #: Time between evaluations (``"600s"``); must be positive.
    check_interval: GoDuration = timedelta(seconds=600)
    ai_analysis: AiAnalysisConfig = Field(default_factory=AiAnalysisConfig)
    rules: tuple[AlertRule, ...] = ()
    #: An addition: a standing condition is sent again only after this long (the original: every check).
    cooldown: GoDuration = timedelta(hours=1)
    #: An addition: webhook notifiers (several allowed), beside the log and the e-mail.
    webhooks: tuple[WebhookConfig, ...] = ()

    @field_validator("check_interval")
    @classmethod
    def _positive(cls, v: timedelta) -> timedelta:
        return checked_duration(v, "write e.g. 600s or 10m", positive=True)

    @field_validator("cooldown")
    @classmethod
    def _not_negative(cls, v: timedelta) -> timedelta:
        # (a negative one passed config check, then the alerter refused to start)
        return checked_duration(v, "write e.g. 1h, or 0 to send a standing condition at every check")


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
# Root
# --------------------------------------------------------------------------------------------------


class Config(Section):
    """The whole configuration (``configs/config.yaml``).

    Beyond the per-key rules, the root checks what spans sections, asking each aggregator kind: task
    names unique across groups, the memory the tasks allocate up front against
    ``aggregator.max_memory``, every alert rule naming an existing task with a metric that task's kind
    computes; and collects :attr:`warnings` (unknown keys, tasks of a group not in ``aggregator.types``,
    ...).
    """

    api: ApiConfig = Field(default_factory=ApiConfig)
    ai: AiConfig = Field(default_factory=AiConfig)
    probe: ProbeConfig = Field(default_factory=ProbeConfig)
    alerter: AlerterConfig = Field(default_factory=AlerterConfig)
    smtp: SmtpConfig = Field(default_factory=SmtpConfig)
    aggregator: AggregatorConfig = Field(default_factory=AggregatorConfig)
    ops: OpsConfig = Field(default_factory=OpsConfig)
    nats: NatsConfig = Field(default_factory=NatsConfig)
    #: An addition: GeoIP/ASN databases, networks and classifiers (docs/enrichment.md).
    enrichment: EnrichmentConfig = Field(default_factory=EnrichmentConfig)
    #: An addition: the flow-export collector (NetFlow v5/v9, IPFIX, sFlow v5); see config/collect.py.
    collect: CollectConfig = Field(default_factory=CollectConfig)

    _warnings: tuple[str, ...] = PrivateAttr(default=())
    _source: str | None = PrivateAttr(default=None)
    _warnings_logged: bool = PrivateAttr(default=False)

    @property
    def warnings(self) -> tuple[str, ...]:
        """Problems that do not stop NetSpectra, one line each, each naming its key path."""
        return self._warnings

    @property
    def warnings_logged(self) -> bool:
        """Whether the loader logged :attr:`warnings` (:func:`~netspectra.config.loader.load_config`): what
        they said need not be said again (the enrichment stage's first load of a database they name)."""
        return self._warnings_logged

    @property
    def source(self) -> str | None:
        """Where the configuration was read from (set by the loader), else ``None``."""
        return self._source

    @model_validator(mode="wrap")
    @classmethod
    def _root(cls, data: Any, handler: Any) -> "Config":
        unknown = unknown_key_warnings(data) if isinstance(data, dict) else []
        cfg: Config = handler(data)
        errors, warnings = _cross_check(cfg)
        if errors:
            raise ValueError("\n".join(errors))
        cfg._warnings = tuple(unknown + warnings)
        return cfg

    def task_names(self) -> tuple[str, ...]:
        """Names of every task of every group, groups in the order of their sections (exact first, as
        the original's ``SearchTasks``)."""
        return tuple(t.name for _, _, t in self.tasks())

    def tasks(self, *, running: bool = False) -> list[tuple[str, str, Any]]:
        """``(kind, key path, task)`` of every task of every validated group (``running``: only groups
        in ``aggregator.types``), groups in section order."""
        agg = self.aggregator
        out: list[tuple[str, str, Any]] = []
        for name, group in agg.groups.items():
            if not isinstance(group, GroupConfig) or (running and name not in agg.types):
                continue
            out.extend((name, f"aggregator.{name}.tasks[{i}]", t) for i, t in enumerate(group.tasks))
        return out

    def task_kind(self, task_name: str) -> str | None:
        """The aggregator kind of the task named ``task_name``, or None."""
        return next((k for k, _, t in self.tasks() if t.name == task_name), None)

    def find_task(self, task_name: str) -> Any | None:
        """The task entry named ``task_name``, or None."""
        return next((t for _, _, t in self.tasks() if t.name == task_name), None)

    def writers(self) -> list[tuple[str, str, WriterConfig]]:
        """``(group, key path, writer)`` of every writer entry of every validated group."""
        out: list[tuple[str, str, WriterConfig]] = []
        for name, group in self.aggregator.groups.items():
            if isinstance(group, GroupConfig):
                out.extend((name, f"aggregator.{name}.writers[{i}]", w) for i, w in enumerate(group.writers))
        return out

    def map_writers(self, fn: Any) -> "Config":
        """A copy whose every writer entry is ``fn(writer)`` (e.g. to move embedded stores elsewhere)."""
        agg = self.aggregator
        groups = {
            name: g.model_copy(update={"writers": tuple(fn(w) for w in g.writers)})
            if isinstance(g, GroupConfig)
            else g
            for name, g in agg.groups.items()
        }
        new = self.model_copy(update={"aggregator": agg.model_copy(update={"groups": groups})})
        new._warnings, new._source = self._warnings, self._source
        new._warnings_logged = self._warnings_logged
        return new


def _cross_check(cfg: Config) -> tuple[list[str], list[str]]:
    """Rules spanning several sections: ``(errors, warnings)``, each line starting with a key path."""
    errors: list[str] = []
    warnings: list[str] = []
    agg = cfg.aggregator
    owners: dict[str, tuple[str, str, Any]] = {}  # task name -> (kind, path, task)
    for kind_name, path, task in cfg.tasks():
        if task.name in owners:
            errors.append(
                f"{path}.name: {task.name!r} is already the name of {owners[task.name][1]}; "
                f"task names must be unique across every group (rename one)"
            )
        else:
            owners[task.name] = (kind_name, path, task)

    for name, group in agg.groups.items():
        if not isinstance(group, GroupConfig):
            continue
        if group.tasks and name not in agg.types:
            warnings.append(
                f"aggregator.{name}.tasks: {len(group.tasks)} task(s) configured but {name!r} is not in "
                f"aggregator.types {list(agg.types)}; add it to run them"
            )
    for name in agg.types:
        group = agg.groups.get(name)
        if isinstance(group, GroupConfig) and not group.tasks:
            warnings.append(f"aggregator.types: {name!r} is enabled but aggregator.{name}.tasks is empty")
        elif group is None:
            try:
                has_model = AGGREGATORS.get(name).task_model is not None
            except KindError:
                has_model = False
            if has_model:
                warnings.append(f"aggregator.types: {name!r} is enabled but aggregator.{name}.tasks is empty")

    errors.extend(_memory_errors(cfg))
    warnings.extend(_retention_warnings(cfg))
    errors.extend(_key_field_errors(cfg))
    errors.extend(_rule_errors(cfg, owners, warnings))
    warnings.extend(cfg.enrichment.warnings())

    # An empty smtp.host is not reported here: with ${SMTP_HOST} unset it is the normal state of the shipped
    # file, and commands that never alert (analyze) should not warn about it; the alerter reports it.
    al = cfg.alerter
    if al.enabled and al.ai_analysis.enabled and not al.ai_analysis.service_addr:
        warnings.append(
            "alerter.ai_analysis.service_addr: empty (ALERTER_AI_SERVICE_ADDR unset?) while ai_analysis is "
            "enabled; alerts will be sent without AI analysis"
        )
    return errors, warnings


def _key_field_errors(cfg: Config) -> list[str]:
    """Key fields no batch of this configuration can supply: an enrichment column (``SrcAS``,
    ``DstCountry``, ``InIfBoundary``, ...) whose source is not configured in ``enrichment`` (every row
    would count under the unknown value, one flow holding all the traffic)."""
    errors: list[str] = []
    for _, path, task in cfg.tasks():
        for attr in KEY_FIELD_LISTS:
            for i, name in enumerate(getattr(task, attr, None) or ()):
                if name in ENRICH_BY_NAME and not cfg.enrichment.fills(name):
                    errors.append(
                        f"{path}.{attr}[{i}] ({task.name}): no batch can supply {name}: the enrichment "
                        f"stage fills it from {filled_by(name)}, and none is configured, so every row "
                        f"would count under its unknown value; configure one (docs/enrichment.md) or key "
                        f"on another field"
                    )
    return errors


def _retention_warnings(cfg: Config) -> list[str]:
    """ClickHouse writers of one database (running groups, enabled) that drop a table's old partitions by
    different retentions: each applies its own section's (its group's tables, defaults included, and the
    tables whose key it sets: :func:`netspectra.storage.retention.expired_by`), so the shortest wins —
    say so, naming each section and value, where the operator meant one (a week set in one section, the
    default two years of another; the defaults of one group never reach another's tables)."""
    from netspectra.storage.clickhouse_config import ClickHouseConfig, data_dir_of
    from netspectra.storage.retention import expired_by, retention_of
    from netspectra.storage.schema import TABLES

    stores: dict[tuple[str, int, str, str], list[tuple[str, str, ClickHouseConfig]]] = {}
    for group, path, w in cfg.writers():
        ch = w.params
        if w.enabled and group in cfg.aggregator.types and isinstance(ch, ClickHouseConfig):
            where = (ch.host, ch.port, ch.database, "" if ch.host else data_dir_of(ch))
            stores.setdefault(where, []).append((group, path, ch))
    said: dict[tuple[str, tuple[tuple[str, int], ...]], list[str]] = {}
    for writers in stores.values():
        for name, table in TABLES.items():
            applied = tuple(
                (path, retention_of(ch, table))
                for group, path, ch in writers
                if name in expired_by(ch, group)
            )
            if len({ns for _, ns in applied}) > 1:
                said.setdefault((table.retention_setting, applied), []).append(name)
    out = []
    for (key, applied), tables in said.items():
        each = "; ".join(
            f"{path}.clickhouse.{key} = "
            + (format_go_duration(timedelta(microseconds=ns // 1000)) if ns else "forever")
            for path, ns in applied
        )
        out.append(
            f"{applied[0][0]}.clickhouse.{key}: the writers of one database drop old partitions of "
            f"{', '.join(tables)} by different retentions ({each}): the shortest wins; set {key} to the "
            "same value in each (docs/storage.md, Retention)"
        )
    return out


def _memory_errors(cfg: Config) -> list[str]:
    """Tasks that would allocate more than ``aggregator.max_memory`` up front, alone or together."""
    agg = cfg.aggregator
    limit = agg.memory_limit
    limit_text = (
        f"aggregator.max_memory ({human_bytes(limit)})"
        if agg.max_memory is not None
        else f"the default limit ({human_bytes(limit)}, {DEFAULT_MEMORY_FRACTION:.0%} of this machine's "
        "memory; set aggregator.max_memory to change it)"
    )
    errors: list[str] = []
    total = 0
    for kind_name, path, task in cfg.tasks(running=True):
        kind = AGGREGATORS.get(kind_name)
        need = kind.memory_bytes(task)
        total += need
        if need > limit:
            detail = kind.memory_detail(task)
            errors.append(
                f"{path} ({task.name}): the task would allocate {human_bytes(need)}"
                f"{f' ({detail})' if detail else ''}, more than {limit_text}; reduce its size"
            )
    if not errors and total > limit:
        errors.append(
            f"aggregator: the running tasks would allocate {human_bytes(total)} together, more than "
            f"{limit_text}; reduce their sizes or run fewer tasks"
        )
    return errors


def _rule_errors(cfg: Config, owners: dict[str, tuple[str, str, Any]], warnings: list[str]) -> list[str]:
    errors: list[str] = []
    agg = cfg.aggregator
    all_metrics: dict[str, str] = {}  # metric -> the first kind offering it
    for name in agg.groups:
        try:
            for m in AGGREGATORS.get(name).metrics:
                all_metrics.setdefault(m, name)
        except KindError:
            continue
    for i, rule in enumerate(cfg.alerter.rules):
        path = f"alerter.rules[{i}]"
        if rule.task_name not in owners:
            known = list(owners)
            errors.append(
                f"{path}.task_name: {rule.task_name!r} is not a configured task"
                f"{did_you_mean(rule.task_name, known)}; known tasks are {choices(known) or '(none)'}"
            )
            if rule.metric not in all_metrics:
                errors.append(
                    f"{path}.metric: {rule.metric!r} is not a valid metric"
                    + _metric_hint(rule.metric, all_metrics)
                )
            continue
        kind_name, _, task = owners[rule.task_name]
        kind = AGGREGATORS.get(kind_name)
        if rule.metric not in kind.metrics:
            other = all_metrics.get(rule.metric)
            if other is not None:
                errors.append(
                    f"{path}.metric: {rule.metric!r} is a metric of {other} tasks, not of {kind_name} tasks "
                    f"such as {rule.task_name!r}; {kind_name} tasks have {choices(kind.metrics) or '(none)'}"
                )
            else:
                errors.append(
                    f"{path}.metric: {rule.metric!r} is not a valid metric"
                    + _metric_hint(rule.metric, all_metrics)
                )
            continue
        problem = kind.metric_problem(task, rule.metric)
        if problem:
            errors.append(f"{path}.metric: {problem}")
        if kind_name not in agg.types:
            warnings.append(
                f"{path}: task {rule.task_name!r} does not run ({kind_name!r} is not in aggregator.types)"
            )
    return errors


def _metric_hint(metric: str, metrics: dict[str, str]) -> str:
    return f"{did_you_mean(metric, metrics)}; valid metrics are {choices(metrics) or '(none)'}"


# --------------------------------------------------------------------------------------------------
# Unknown keys
# --------------------------------------------------------------------------------------------------


def unknown_key_warnings(
    data: dict[str, Any], model: type[Section] | None = None, path: str = ""
) -> list[str]:
    """One warning per key of ``data`` that ``model`` (default :class:`Config`) does not know, recursively.

    Each names the key path and says it is ignored, with a hint: the right key for a known misspelling
    or outdated key of the original's ``config.yaml.example``, else the closest known key, else the
    known keys of that section. Sections whose keys depend on a kind (a writer's parameters, an
    aggregator kind's group, a sketch kind's parameters) say which keys they know through
    :meth:`Section.known_keys`.
    """
    import difflib

    model = model or Config
    known = model.known_keys(data)
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
                    f"did you mean {close[0]!r}?" if close else f"known keys here: {choices(sorted(known))}"
                )
            out.append(f"{where}: unknown key, ignored; {advice}")
            continue
        sub, many = known[key]
        if sub is None:
            continue
        if many and isinstance(value, list):
            for i, item in enumerate(value):
                if isinstance(item, dict):
                    out.extend(unknown_key_warnings(item, sub, f"{where}[{i}]"))
        elif not many and isinstance(value, dict):
            out.extend(unknown_key_warnings(value, sub, where))
    return out
