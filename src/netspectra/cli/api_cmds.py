"""``netspectra api`` (the query service: gRPC + HTTP) and ``netspectra query …`` (its command-line
client, the original's ``query/v2`` script without its "+8 hours" time-zone hack).

Times given to ``--start``/``--end`` (:func:`parse_time`) are UTC unless they carry a zone.
"""

from __future__ import annotations

import json
import logging
import re
import signal
import threading
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer

from netspectra.cli.common import ConfigOption, console, fail, listen_option, require
from netspectra.ops.options import OpsListenOption

if TYPE_CHECKING:
    from google.protobuf.timestamp_pb2 import Timestamp
    from rich.table import Table

log = logging.getLogger(__name__)

DEFAULT_ADDR = "localhost:50051"
_UNITS_NS = {
    "ns": 1,
    "us": 10**3,
    "µs": 10**3,
    "ms": 10**6,
    "s": 10**9,
    "m": 60 * 10**9,
    "h": 3600 * 10**9,
    "d": 86400 * 10**9,
    "w": 7 * 86400 * 10**9,
}
_PART = r"(\d+(?:\.\d+)?)\s*(ns|us|µs|ms|s|m|h|d|w)"
_RELATIVE = re.compile(rf"^(?:now)?\s*(?:([+-])\s*((?:{_PART}\s*)+))?$")
_EPOCH = re.compile(r"^\d+(?:\.\d+)?$")
_FRACTION = re.compile(r"^(.*\d{2}:\d{2}:\d{2})[.,](\d{1,9})(\D.*)?$")


def parse_time(text: str, now_ns: int | None = None) -> int:
    """A time for ``--start``/``--end`` as UTC nanoseconds since the epoch.

    Accepted: ``now``; relative to now, ``-1h``, ``now-30m``, ``-1h30m``, ``+5m`` (units ns, us, ms, s, m,
    h, d, w; fractions allowed); epoch seconds ``1700000000`` or ``1700000000.25`` (a bare number is
    always epoch seconds); a date ``2024-01-31`` (midnight UTC); ISO 8601 ``2024-01-31T12:00:00Z``,
    ``2024-01-31T20:00:00+08:00``, ``2024-01-31 12:00`` (no zone: UTC). ``ValueError`` otherwise, and for
    times before 1970.
    """
    s = text.strip()
    now = time.time_ns() if now_ns is None else now_ns
    if not s:
        raise ValueError("empty time")
    m = _RELATIVE.match(s)
    if m and (s.startswith(("now", "-", "+"))):
        sign, body = m.group(1), m.group(2)
        if sign is None:
            return now
        delta = 0
        for num, unit in re.findall(_PART, body):
            delta += round(float(num) * _UNITS_NS[unit])
        value = now - delta if sign == "-" else now + delta
    elif _EPOCH.match(s):
        whole, _, frac = s.partition(".")
        value = int(whole) * 10**9 + (int((frac + "0" * 9)[:9]) if frac else 0)
    else:
        frac_ns = 0
        fm = _FRACTION.match(s)
        if fm:  # datetime keeps microseconds: take the fraction (up to ns) apart
            s = fm.group(1) + (fm.group(3) or "")
            frac_ns = int((fm.group(2) + "0" * 9)[:9])
        try:
            dt = datetime.fromisoformat(s)
        except ValueError:
            raise ValueError(
                f"{text!r} is not a time: use ISO 8601 (2024-01-31T12:00:00Z), a date (2024-01-31), "
                "epoch seconds (1706702400) or a relative time (-1h, now-30m)"
            ) from None
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=UTC)
        delta_s = dt - datetime(1970, 1, 1, tzinfo=UTC)
        value = (delta_s.days * 86400 + delta_s.seconds) * 10**9 + delta_s.microseconds * 1000 + frac_ns
    if value < 0:
        raise ValueError(f"{text!r} is before 1970-01-01T00:00:00Z")
    return value


def _ts(ns: int) -> Timestamp:
    from google.protobuf.timestamp_pb2 import Timestamp

    return Timestamp(seconds=ns // 10**9, nanos=ns % 10**9)


def _time_option(value: str | None, what: str) -> int | None:
    if value is None:
        return None
    try:
        return parse_time(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint=what) from None


def _when(msg: Any, field: str) -> str:
    """The ``Timestamp`` field ``field`` of ``msg`` as UTC ISO 8601; ``-`` when it is absent.

    Presence, never the value, says "absent": a message field keeps its presence on the wire (proto3),
    the API reads an absent bound as "no bound" and answers one the same way, and ``--start 1970-01-01``
    is a bound (the epoch, shown as such; taking 0 for "unset" showed its range as ``- to -``)."""
    from netspectra.output.timefmt import format_ts_ns

    if not msg.HasField(field):
        return "-"
    ts = getattr(msg, field)
    return format_ts_ns(ts.seconds * 10**9 + ts.nanos)


# --------------------------------------------------------------------------------------------------
# netspectra api
# --------------------------------------------------------------------------------------------------


def api(
    config: ConfigOption = None,
    grpc_addr: Annotated[
        str | None,
        typer.Option(
            "--grpc-addr",
            callback=listen_option,
            help="gRPC listen address, HOST:PORT (default: api.grpc_listen_addr, else 127.0.0.1:50051); "
            ":PORT listens on every interface.",
        ),
    ] = None,
    http_addr: Annotated[
        str | None,
        typer.Option(
            "--http-addr",
            callback=listen_option,
            help="HTTP listen address, HOST:PORT (default: api.http_listen_addr, else 127.0.0.1:8080); "
            ":PORT listens on every interface.",
        ),
    ] = None,
    ops_listen: OpsListenOption = None,
) -> None:
    """Serve the query service: gRPC v1.QueryService (with health and reflection) and HTTP (Grafana
    SimpleJSON, REST, web dashboard, OpenAPI at /docs) over the ClickHouse stores of the configuration.

    Exact tasks are read from the first enabled clickhouse writer of aggregator.exact, sketch tasks from
    that of aggregator.sketch. Listens on 127.0.0.1 unless told otherwise; bearer tokens (api.auth,
    NETSPECTRA_API_TOKENS, NETSPECTRA_API_ADMIN_TOKENS) and TLS (api.tls) are described in docs/api.md.
    Runs until SIGINT or SIGTERM.
    """
    require("api", "api", "store")
    from netspectra.api.server import ApiServer
    from netspectra.config import ConfigError, load_config
    from netspectra.ops.endpoint import resolve_listen, start_ops

    try:
        cfg = load_config(config)
    except ConfigError as exc:
        raise fail(str(exc)) from None

    try:
        ops = start_ops("api", resolve_listen(ops_listen, cfg))
    except (OSError, ValueError) as exc:
        raise fail(str(exc)) from None
    http_metrics = grpc_metrics = None
    if ops is not None:
        from netspectra.ops.grpcmetrics import GrpcMetrics
        from netspectra.ops.httpmetrics import HttpMetrics

        http_metrics, grpc_metrics = HttpMetrics(), GrpcMetrics()
    server = ApiServer(cfg, grpc_addr, http_addr, http_metrics, grpc_metrics)
    try:
        server.start()
    except (OSError, ValueError) as exc:
        raise fail(str(exc)) from None
    if ops is not None:
        from netspectra.ops.services import wire_api

        wire_api(ops, server.core, http_metrics, grpc_metrics)
    console.print(
        f"NetSpectra query service: gRPC {server.grpc_addr} (port {server.grpc_port}), "
        f"HTTP {server.http_addr} (port {server.http_port}); {server.security.describe()}; Ctrl-C stops",
        highlight=False,
    )
    done = threading.Event()

    def _stop(*_: object) -> None:
        done.set()
        if ops is not None:
            ops.set_stopping()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _stop)
    try:
        while not done.wait(0.5):
            if ops is not None:
                ops.heartbeat.beat()
    finally:
        server.stop()
        if ops is not None:
            ops.stop()


# --------------------------------------------------------------------------------------------------
# netspectra query
# --------------------------------------------------------------------------------------------------

query_app = typer.Typer(
    help="Query a running `netspectra api` over gRPC (or a Go2NetSpectra ns-api: the wire is the same). "
    "Tables by default; --json prints the protobuf JSON mapping, exactly what the REST API answers.",
    no_args_is_help=True,
    rich_markup_mode="rich",
)

AddrOption = Annotated[str, typer.Option("--addr", help="gRPC address of the query service.")]
JsonOption = Annotated[
    bool,
    typer.Option(
        "--json",
        help="One JSON document on stdout instead of a table: the response in protobuf's JSON mapping "
        "(camelCase names, 64-bit integers as strings, zero values omitted), as the REST API answers.",
    ),
]
StartOption = Annotated[
    str | None,
    typer.Option(
        "--start",
        help="Lower bound of the snapshot time: ISO 8601, a date, epoch seconds or relative (-1h); UTC "
        "unless a zone is given.",
    ),
]
EndOption = Annotated[
    str | None, typer.Option("--end", help="Upper bound of the snapshot time (as --start).")
]
TimeoutOption = Annotated[float, typer.Option("--timeout", help="Seconds to wait for the answer.")]
TokenOption = Annotated[
    str,
    typer.Option(
        "--token",
        envvar="NETSPECTRA_API_TOKEN",
        help="Bearer token of the query service (api.auth). Prefer the environment variable: options are "
        "visible to other users in the process list.",
        show_default=False,
    ),
]
TlsOption = Annotated[
    bool,
    typer.Option(
        "--tls", envvar="NETSPECTRA_API_TLS", help="Speak TLS (implied by --ca-file and --cert-file)."
    ),
]
CaFileOption = Annotated[
    str,
    typer.Option(
        "--ca-file",
        envvar="NETSPECTRA_API_CA_FILE",
        help="PEM CA certificates that sign the server's certificate (default with --tls: the system's).",
        show_default=False,
    ),
]
CertFileOption = Annotated[
    str,
    typer.Option(
        "--cert-file",
        envvar="NETSPECTRA_API_CERT_FILE",
        help="PEM client certificate, for a server that requires one (mutual TLS).",
        show_default=False,
    ),
]
KeyFileOption = Annotated[
    str,
    typer.Option(
        "--key-file", envvar="NETSPECTRA_API_KEY_FILE", help="PEM key of --cert-file.", show_default=False
    ),
]


class Conn:
    """Where and how to reach the query service (the options every ``query`` command shares)."""

    def __init__(
        self, addr: str, timeout: float, token: str, tls: bool, ca_file: str, cert_file: str, key_file: str
    ) -> None:
        require("query", "api")
        from netspectra.auth import ClientSecurity

        if bool(cert_file) != bool(key_file):
            raise typer.BadParameter("--cert-file and --key-file go together", param_hint="--cert-file")
        self.addr = addr
        self.timeout = timeout
        self.security = ClientSecurity(token.strip(), tls, ca_file, cert_file, key_file)

    def call(self, method: str, request: Any) -> Any:
        import grpc

        from netspectra.proto.v1 import query_pb2_grpc

        try:
            channel = self.security.channel(self.addr)
        except ValueError as exc:
            raise fail(str(exc), 2) from None
        with channel:
            stub = query_pb2_grpc.QueryServiceStub(channel)
            try:
                return getattr(stub, method)(request, timeout=self.timeout)
            except grpc.RpcError as exc:
                code = exc.code().name if exc.code() is not None else "UNKNOWN"
                hint = ""
                # the first thing a new user meets; not a TLS or name failure, which details explain
                if exc.code() == grpc.StatusCode.UNAVAILABLE and "refused" in (exc.details() or "").lower():
                    hint = (
                        " (is the query service running there? start it with `netspectra api` or "
                        "`netspectra up`, or point --addr at it)"
                    )
                details = _in_flags(exc.details() or "", request)
                raise fail(f"{method} on {self.addr}: {code}: {details}{hint}", 1) from None


#: The request fields the query commands set from an option, and that option: the service's errors name
#: the ``.proto``'s fields (right for a gRPC client), a command's user wrote the option.
_FLAGS = {
    "task_name": "--task",
    "start_time": "--start",
    "end_time": "--end",
    "src_ip": "--src-ip",
    "dst_ip": "--dst-ip",
    "host": "--host",
    "src_port": "--src-port",
    "dst_port": "--dst-port",
    "port": "--port",
    "protocol": "--protocol",
    "vlan_id": "--vlan",
    "end_reasons": "--reason",
    "conn_states": "--state",
    "min_bytes": "--min-bytes",
    "order_by": "--sort",
    "dimension": "--by",
    "metric": "--metric",
    "filters": "--filter",
    "resolution_seconds": "--resolution",
}


def _in_flags(message: str, request: Any) -> str:
    """``message`` (a service error about ``request``) with the request fields an option sets named as
    that option (``src_ip: 'x' is not an IP address`` → ``--src-ip: …``; the API's
    :func:`~netspectra.api.grpc_service.rename_fields`, as the REST app names a body's keys)."""
    from netspectra.api.grpc_service import rename_fields

    names = {f.name for f in request.DESCRIPTOR.fields} if hasattr(request, "DESCRIPTOR") else set()
    return rename_fields(message, {f: flag for f, flag in _FLAGS.items() if f in names})


def _bounds(request: Any, start: str | None, end: str | None) -> None:
    s, e = _time_option(start, "--start"), _time_option(end, "--end")
    if s is not None and e is not None and s > e:
        raise typer.BadParameter(f"--start ({start}) is after --end ({end})", param_hint="--start")
    if s is not None:
        request.start_time.CopyFrom(_ts(s))
    if e is not None:
        request.end_time.CopyFrom(_ts(e))


def _print_json(msg: Any) -> None:
    """The response as the REST API answers it (:func:`netspectra.api.http_app._dump`)."""
    from google.protobuf import json_format

    print(json.dumps(json_format.MessageToDict(msg)))


def _table(title: str) -> Table:
    from rich.table import Table

    """A table in ``netspectra analyze``'s style."""
    return Table(title=title, title_justify="left")


def _n(value: int) -> str:
    return f"{value:,}"


@query_app.callback()
def _group() -> None:
    pass


@query_app.command()
def aggregate(
    task: Annotated[str, typer.Option("--task", "-t", help="Exact task (default: every exact task).")] = "",
    src_ip: Annotated[str, typer.Option("--src-ip", help="Only flows from this address.")] = "",
    dst_ip: Annotated[str, typer.Option("--dst-ip", help="Only flows to this address.")] = "",
    src_port: Annotated[int, typer.Option("--src-port", min=0, max=65535, help="0: any.")] = 0,
    dst_port: Annotated[int, typer.Option("--dst-port", min=0, max=65535, help="0: any.")] = 0,
    protocol: Annotated[int, typer.Option("--protocol", min=0, max=255, help="0: any.")] = 0,
    start: StartOption = None,
    end: EndOption = None,
    addr: AddrOption = DEFAULT_ADDR,
    json_out: JsonOption = False,
    timeout: TimeoutOption = 10.0,
    token: TokenOption = "",
    tls: TlsOption = False,
    ca_file: CaFileOption = "",
    cert_file: CertFileOption = "",
    key_file: KeyFileOption = "",
) -> None:
    """Totals per exact task: packets, bytes, flows (AggregateFlows)."""
    from netspectra.proto.v1 import query_pb2

    conn = Conn(addr, timeout, token, tls, ca_file, cert_file, key_file)
    req = query_pb2.AggregationRequest(
        task_name=task, src_ip=src_ip, dst_ip=dst_ip, src_port=src_port, dst_port=dst_port, protocol=protocol
    )
    _bounds(req, start, end)
    resp = conn.call("AggregateFlows", req)
    if json_out:
        _print_json(resp)
        return
    table = _table("AggregateFlows")
    table.add_column("Task")
    for name in ("Packets", "Bytes", "Flows"):
        table.add_column(name, justify="right")
    for s in resp.summaries:
        table.add_row(s.task_name, _n(s.total_packets), _n(s.total_bytes), _n(s.flow_count))
    console.print(table)


def _parse_keys(keys: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in keys:
        for part in item.split(","):
            if not part.strip():
                continue
            name, sep, value = part.partition("=")
            if not sep:
                raise typer.BadParameter(
                    f"{part!r} is not KEY=VALUE (e.g. SrcIP=10.0.0.1)", param_hint="--key"
                )
            out[name.strip()] = value.strip()
    return out


def _key_order(task: str, config: Any, present: set[str]) -> list[str]:
    """The key fields to show, in the task's configuration order when the configuration is given, else
    in the canonical order (SrcIP, DstIP, SrcPort, DstPort, Protocol); unknown names last, sorted."""
    from netspectra.config import ConfigError, load_config
    from netspectra.fields import FIELD_NAMES

    order: list[str] = list(FIELD_NAMES)
    if config is not None:
        try:
            cfg = load_config(config, log_warnings=False)
        except ConfigError as exc:
            raise fail(str(exc)) from None
        fields = next((list(t.key_fields) for t in cfg.aggregator.exact.tasks if t.name == task), None)
        if fields:
            order = fields + [f for f in order if f not in fields]
    return [f for f in order if f in present] + sorted(present - set(order))


@query_app.command()
def trace(
    task: Annotated[str, typer.Option("--task", "-t", help="Exact task.")],
    key: Annotated[
        list[str] | None,
        typer.Option("--key", "-k", help="Flow key: SrcIP=1.2.3.4,DstPort=443 (repeatable)."),
    ] = None,
    flows: Annotated[
        int, typer.Option("--flows", min=0, max=10_000, help="Also list up to this many matching flows.")
    ] = 0,
    start: StartOption = None,
    end: EndOption = None,
    addr: AddrOption = DEFAULT_ADDR,
    json_out: JsonOption = False,
    timeout: TimeoutOption = 10.0,
    token: TokenOption = "",
    tls: TlsOption = False,
    ca_file: CaFileOption = "",
    cert_file: CertFileOption = "",
    key_file: KeyFileOption = "",
    config: Annotated[
        str | None,
        typer.Option(
            "--config",
            "-c",
            help="Configuration whose task key order the flow table follows (default: SrcIP, DstIP, "
            "SrcPort, DstPort, Protocol).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Lifecycle of the flows matching the keys (TraceFlow)."""
    from netspectra.proto.v1 import query_pb2

    conn = Conn(addr, timeout, token, tls, ca_file, cert_file, key_file)
    req = query_pb2.TraceFlowRequest(task_name=task, flow_keys=_parse_keys(key or []), page_size=flows)
    _bounds(req, start, end)
    resp = conn.call("TraceFlow", req)
    if json_out:
        _print_json(resp)
        return
    lc = resp.lifecycle
    table = _table(f"TraceFlow — task {task}")
    table.add_column("First seen")
    table.add_column("Last seen")
    table.add_column("Packets", justify="right")
    table.add_column("Bytes", justify="right")
    table.add_row(_when(lc, "first_seen"), _when(lc, "last_seen"), _n(lc.total_packets), _n(lc.total_bytes))
    console.print(table)
    if resp.flows:
        fields = _key_order(task, config, {k for f in resp.flows for k in f.flow_keys})
        more = " (more: raise --flows)" if resp.next_page_token else ""
        ft = _table(f"{len(resp.flows):,} matching flows{more}")
        for f in fields:
            ft.add_column(f, justify="right" if f.endswith(("Port", "Protocol")) else "left", overflow="fold")
        for name in ("First seen", "Last seen"):
            ft.add_column(name)
        for name in ("Packets", "Bytes"):
            ft.add_column(name, justify="right")
        for flow in resp.flows:
            life = flow.lifecycle
            ft.add_row(
                *(flow.flow_keys.get(f, "") for f in fields),
                _when(life, "first_seen"),
                _when(life, "last_seen"),
                _n(life.total_packets),
                _n(life.total_bytes),
            )
        console.print(ft)


def _hitters(
    conn: Conn,
    task: str,
    type_: int,
    limit: int,
    start: str | None,
    end: str | None,
    json_out: bool,
    title: str,
    unit: str,
) -> None:
    from netspectra.proto.v1 import query_pb2

    req = query_pb2.HeavyHittersRequest(task_name=task, type=type_, limit=limit)
    _bounds(req, start, end)
    resp = conn.call("QueryHeavyHitters", req)
    if json_out:
        _print_json(resp)
        return
    table = _table(f"{title} — task {task}")
    table.add_column("Flow", overflow="fold")
    table.add_column(unit, justify="right")
    for h in resp.hitters:
        table.add_row(h.flow, _n(h.value))
    console.print(table)
    if resp.reason:  # why there is none (the service says)
        console.print(resp.reason, highlight=False)


_TYPES = {"count": 0, "size": 1, "0": 0, "1": 1}


@query_app.command("heavy-hitters")
def heavy_hitters_cmd(
    task: Annotated[str, typer.Option("--task", "-t", help="CountMin sketch task (skt_type 0).")],
    type_: Annotated[str, typer.Option("--type", help="count (packets, 0) or size (bytes, 1).")] = "count",
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=10_000, help="Most hitters shown.")] = 10,
    start: StartOption = None,
    end: EndOption = None,
    addr: AddrOption = DEFAULT_ADDR,
    json_out: JsonOption = False,
    timeout: TimeoutOption = 10.0,
    token: TokenOption = "",
    tls: TlsOption = False,
    ca_file: CaFileOption = "",
    cert_file: CertFileOption = "",
    key_file: KeyFileOption = "",
) -> None:
    """Largest flows of a CountMin task by packets or bytes (QueryHeavyHitters, type 0/1)."""
    if type_ not in _TYPES:
        raise typer.BadParameter(f"{type_!r}: use count or size", param_hint="--type")
    conn = Conn(addr, timeout, token, tls, ca_file, cert_file, key_file)
    unit = "Packets" if _TYPES[type_] == 0 else "Bytes"
    _hitters(conn, task, _TYPES[type_], limit, start, end, json_out, f"Heavy hitters ({type_})", unit)


@query_app.command("super-spreaders")
def super_spreaders_cmd(
    task: Annotated[str, typer.Option("--task", "-t", help="SuperSpread sketch task (skt_type 1).")],
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=10_000, help="Most flows shown.")] = 10,
    start: StartOption = None,
    end: EndOption = None,
    addr: AddrOption = DEFAULT_ADDR,
    json_out: JsonOption = False,
    timeout: TimeoutOption = 10.0,
    token: TokenOption = "",
    tls: TlsOption = False,
    ca_file: CaFileOption = "",
    cert_file: CertFileOption = "",
    key_file: KeyFileOption = "",
) -> None:
    """Flows with the most distinct elements (QueryHeavyHitters, type 2)."""
    conn = Conn(addr, timeout, token, tls, ca_file, cert_file, key_file)
    _hitters(conn, task, 2, limit, start, end, json_out, "Super-spreaders", "Spread")


_FLOW_ORDERS = ("first_seen", "last_seen", "duration", "bytes", "packets")
_PROTO_NAMES = {1: "ICMP", 6: "TCP", 17: "UDP", 58: "ICMPv6", 132: "SCTP", 47: "GRE", 50: "ESP"}


def _duration(ns: int) -> str:
    if ns < 1_000_000:
        return f"{ns / 1000:.0f} µs" if ns >= 1000 else f"{ns} ns"
    if ns < 60 * 10**9:
        return f"{ns / 1e9:.3f} s"
    return f"{ns / 6e10:.1f} min" if ns < 3600 * 10**9 else f"{ns / 3.6e12:.1f} h"


def _endpoint(ip: str, port: int, proto: int) -> str:
    addr = f"[{ip}]" if ":" in ip else ip
    return f"{addr}:{port}" if proto in (6, 17, 132) else addr


@query_app.command("flows")
def flows_cmd(
    task: Annotated[str, typer.Option("--task", "-t", help="Flows task (aggregator.flows).")],
    host: Annotated[str, typer.Option("--host", help="Only records with this address on either side.")] = "",
    src_ip: Annotated[str, typer.Option("--src-ip", help="Only records from this address.")] = "",
    dst_ip: Annotated[str, typer.Option("--dst-ip", help="Only records to this address.")] = "",
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="Either port; 0: any.")] = 0,
    src_port: Annotated[int, typer.Option("--src-port", min=0, max=65535, help="0: any.")] = 0,
    dst_port: Annotated[int, typer.Option("--dst-port", min=0, max=65535, help="0: any.")] = 0,
    protocol: Annotated[int, typer.Option("--protocol", min=0, max=255, help="0: any.")] = 0,
    vlan: Annotated[int, typer.Option("--vlan", min=0, max=4095, help="VLAN ID; 0: any.")] = 0,
    reason: Annotated[
        list[str] | None,
        typer.Option(
            "--reason",
            help="End reason (repeatable): idle, active, tcp_end, table_full, end_of_input, shutdown.",
        ),
    ] = None,
    state: Annotated[
        list[str] | None, typer.Option("--state", help="Zeek conn_state (repeatable): S0, SF, REJ, RSTO…")
    ] = None,
    min_bytes: Annotated[
        int, typer.Option("--min-bytes", min=0, help="Both directions' bytes at least.")
    ] = 0,
    sort: Annotated[
        str, typer.Option("--sort", help="first_seen, last_seen, duration, bytes or packets.")
    ] = "first_seen",
    desc: Annotated[bool, typer.Option("--desc", help="Largest (or latest) first.")] = False,
    limit: Annotated[
        int, typer.Option("--limit", "-n", min=1, max=1_000_000, help="Most records shown.")
    ] = 20,
    start: StartOption = None,
    end: EndOption = None,
    addr: AddrOption = DEFAULT_ADDR,
    json_out: JsonOption = False,
    timeout: TimeoutOption = 10.0,
    token: TokenOption = "",
    tls: TlsOption = False,
    ca_file: CaFileOption = "",
    cert_file: CertFileOption = "",
    key_file: KeyFileOption = "",
) -> None:
    """Stored flow records of a flows task, filtered and sorted (ListFlows). --start/--end select the
    records active in that range."""
    from netspectra.proto.v1 import query_pb2

    if sort not in _FLOW_ORDERS:
        raise typer.BadParameter(f"{sort!r}: use one of {', '.join(_FLOW_ORDERS)}", param_hint="--sort")
    conn = Conn(addr, timeout, token, tls, ca_file, cert_file, key_file)
    req = query_pb2.ListFlowsRequest(
        task_name=task,
        host=host,
        src_ip=src_ip,
        dst_ip=dst_ip,
        port=port,
        src_port=src_port,
        dst_port=dst_port,
        protocol=protocol,
        vlan_id=vlan,
        end_reasons=reason or [],
        conn_states=state or [],
        min_bytes=min_bytes,
        order_by=_FLOW_ORDERS.index(sort),
        descending=desc,
    )
    _bounds(req, start, end)
    resp = query_pb2.ListFlowsResponse()
    while True:  # pages of at most 10 000 until --limit records
        req.page_size = min(10_000, limit - len(resp.flows))
        page = conn.call("ListFlows", req)
        resp.flows.extend(page.flows)
        resp.total, resp.next_page_token = page.total, page.next_page_token
        if not page.next_page_token or len(resp.flows) >= limit:
            break
        req.page_token = page.next_page_token
    if json_out:
        _print_json(resp)
        return
    shown_n = len(resp.flows)
    more = f" of {resp.total:,} (more: raise --limit)" if resp.total > shown_n else ""
    table = _table(f"Flow records — task {task}: {shown_n:,}{more}")
    table.add_column("First seen")
    table.add_column("Duration", justify="right")
    table.add_column("Proto")
    table.add_column("Source", overflow="fold")
    table.add_column("Destination", overflow="fold")
    for name in ("Pkts →", "Bytes →", "Pkts ←", "Bytes ←"):
        table.add_column(name, justify="right")
    table.add_column("State")
    table.add_column("End")
    for f in resp.flows:
        table.add_row(
            _when(f, "first_seen"),
            _duration(f.duration_ns),
            _PROTO_NAMES.get(f.protocol, str(f.protocol)),
            _endpoint(f.src_ip, f.src_port, f.protocol),
            _endpoint(f.dst_ip, f.dst_port, f.protocol),
            _n(f.src_to_dst_packets),
            _n(f.src_to_dst_bytes),
            _n(f.dst_to_src_packets),
            _n(f.dst_to_src_bytes),
            f.conn_state if f.HasField("conn_state") else "",
            f.end_reason,
        )
    console.print(table)


_RESOLUTIONS = {"1m": 60, "5m": 300, "1h": 3600}


def _filter_option(text: str) -> Any:
    """``Dimension=value[,value...]`` (``!=``: none of them) → a ``DimensionFilter`` message."""
    from netspectra.proto.v1 import query_pb2

    m = re.match(r"^\s*([A-Za-z]+)\s*(!?=)\s*(.*)$", text)
    if not m:
        raise typer.BadParameter(
            f"{text!r}: write DIMENSION=VALUE[,VALUE...] or DIMENSION!=VALUE (e.g. DstCountry=FR,DE)",
            param_hint="--filter",
        )
    name, op, values = m.groups()
    return query_pb2.DimensionFilter(
        dimension=name, values=[v.strip() for v in values.split(",")], exclude=op == "!="
    )


@query_app.command("top")
def top_cmd(
    by: Annotated[
        str,
        typer.Option(
            "--by",
            help="The dimension to rank: SrcAS, DstAS, SrcCountry, DstCountry, SrcNetName, DstNetName, "
            "SrcNetRole, …, InIfBoundary, InIfProvider, ExporterName, Exporter, InIf, OutIf, Protocol "
            "(docs/storage.md lists them).",
        ),
    ],
    metric: Annotated[str, typer.Option("--metric", "-m", help="Rank by bytes or packets.")] = "bytes",
    filters: Annotated[
        list[str] | None,
        typer.Option(
            "--filter",
            "-f",
            help="Only traffic with DIMENSION=VALUE[,VALUE...] (any of them) or DIMENSION!=VALUE[,...] "
            "(none of them); repeatable, all must hold. E.g. --filter DstCountry=FR --filter SrcAS!=0.",
        ),
    ] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=10_000, help="Values shown.")] = 10,
    task: Annotated[
        str,
        typer.Option(
            "--task",
            "-t",
            help=(
                "Rollup task (aggregator.rollup); default: of those keyed on --by and the filters, the one "
                "with the fewest dimensions that stored traffic in the range."
            ),
        ),
    ] = "",
    resolution: Annotated[
        str,
        typer.Option(
            "--resolution",
            help="Finest detail needed (1m, 5m, 1h, seconds, or a duration: 90s, 2h): the coarsest rollup "
            "table within it answers; default a hundredth of the range.",
        ),
    ] = "",
    start: Annotated[
        str | None,
        typer.Option(
            "--start",
            help="Start of the traffic's time range: ISO 8601, a date, epoch seconds or relative (-30d); "
            "UTC unless a zone is given.",
        ),
    ] = None,
    end: Annotated[
        str | None, typer.Option("--end", help="End of the range (as --start; exclusive).")
    ] = None,
    addr: AddrOption = DEFAULT_ADDR,
    json_out: JsonOption = False,
    timeout: TimeoutOption = 10.0,
    token: TokenOption = "",
    tls: TlsOption = False,
    ca_file: CaFileOption = "",
    cert_file: CertFileOption = "",
    key_file: KeyFileOption = "",
) -> None:
    """The values of a dimension (AS, country, network, interface class, ...) with the most traffic in a
    range of the traffic's own time (TopN), from the rollup tables: the answer says which table (1 min,
    5 min or 1 h buckets) answered and the range it read.

    Example: netspectra query top --by SrcAS --start -30d --filter DstCountry=FR
    """
    from netspectra.proto.v1 import query_pb2

    if metric not in ("bytes", "packets"):
        raise typer.BadParameter(f"{metric!r}: use bytes or packets", param_hint="--metric")
    res = 0
    if resolution:
        text = resolution.strip()
        if text in _RESOLUTIONS:
            res = _RESOLUTIONS[text]
        elif text.isdigit() and int(text) > 0:
            res = int(text)
        else:
            from netspectra.config.base import parse_go_duration

            try:
                res = int(parse_go_duration(text).total_seconds())
            except ValueError:
                res = 0
            if res <= 0:
                raise typer.BadParameter(
                    f"{resolution!r}: use 1m, 5m, 1h, seconds, or a duration of a second or more (90s, 2h)",
                    param_hint="--resolution",
                )
    conn = Conn(addr, timeout, token, tls, ca_file, cert_file, key_file)
    req = query_pb2.TopNRequest(
        dimension=by,
        metric=0 if metric == "bytes" else 1,
        filters=[_filter_option(f) for f in filters or []],
        limit=limit,
        task_name=task,
        resolution_seconds=res,
    )
    _bounds(req, start, end)
    resp = conn.call("TopN", req)
    if json_out:
        _print_json(resp)
        return
    total = resp.total_bytes if metric == "bytes" else resp.total_packets
    table = _table(f"Top {by} by {metric} — rollup task {resp.task_name}")
    table.add_column(by)
    table.add_column("Packets", justify="right")
    table.add_column("Bytes", justify="right")
    table.add_column("Share", justify="right")
    shown_p = shown_b = 0
    for e in resp.entries:
        value = e.bytes if metric == "bytes" else e.packets
        share = f"{100 * value / total:.1f} %" if total else "-"
        table.add_row(e.value if e.value not in ("", "0") else "(unknown)", _n(e.packets), _n(e.bytes), share)
        shown_p += e.packets
        shown_b += e.bytes
    rest = resp.distinct_values - len(resp.entries)
    if rest > 0:
        # totals saturate at 2**64 - 1 (hostile counters): a rest below 0 is then unknown, shown as 0
        other = max(0, total - (shown_b if metric == "bytes" else shown_p)) / total if total else 0
        table.add_row(
            f"({rest:,} other value{'s' if rest > 1 else ''})",
            _n(max(0, resp.total_packets - shown_p)),
            _n(max(0, resp.total_bytes - shown_b)),
            f"{100 * other:.1f} %",
        )
    console.print(table)
    bounded = resp.HasField("start_time") or resp.HasField("end_time")
    span = f"{_when(resp, 'start_time')} to {_when(resp, 'end_time')}" if bounded else "all time"
    console.print(
        f"from {resp.table} ({resp.resolution_seconds // 60} min buckets), {span}: {resp.reason}",
        highlight=False,
    )


@query_app.command("exporters")
def exporters_cmd(
    task: Annotated[
        str,
        typer.Option("--task", "-t", help="Exporters task (aggregator.exporters); default: every one."),
    ] = "",
    start: StartOption = None,
    end: EndOption = None,
    addr: AddrOption = DEFAULT_ADDR,
    json_out: JsonOption = False,
    timeout: TimeoutOption = 10.0,
    token: TokenOption = "",
    tls: TlsOption = False,
    ca_file: CaFileOption = "",
    cert_file: CertFileOption = "",
    key_file: KeyFileOption = "",
) -> None:
    """The flow exporters (routers and switches sending NetFlow, IPFIX or sFlow to netspectra collect):
    when each was last seen, its sampling rates and the records, packets and bytes it brought (packets and
    bytes multiplied by the sampling rate). From the exporters tasks, which netspectra up --collect and
    analyze --flow-export run on their own (ListExporters). --start/--end keep the periods that overlap.
    When there are none, the answer says why (no exporters task, none stored yet, none in the range)."""
    from netspectra.proto.v1 import query_pb2

    conn = Conn(addr, timeout, token, tls, ca_file, cert_file, key_file)
    req = query_pb2.ListExportersRequest(task_name=task)
    _bounds(req, start, end)
    resp = conn.call("ListExporters", req)
    if json_out:
        _print_json(resp)
        return
    table = _table(f"Flow exporters: {len(resp.exporters):,}")
    table.add_column("Exporter", overflow="fold")
    table.add_column("Last seen")
    table.add_column("Records", justify="right")
    table.add_column("Packets", justify="right")
    table.add_column("Bytes", justify="right")
    table.add_column("Sampling rates (records)", overflow="fold")
    table.add_column("Without rate", justify="right")
    several = len({e.task_name for e in resp.exporters}) > 1
    for e in resp.exporters:
        rates = ", ".join(f"{r.rate} ({r.records:,})" for r in e.sampling_rates) or "-"
        table.add_row(
            f"{e.address} [{e.task_name}]" if several else e.address,
            _when(e, "last_seen"),
            _n(e.records),
            _n(e.packets),
            _n(e.bytes),
            rates,
            _n(e.records_without_sampling_rate),
        )
    console.print(table)
    if resp.reason:  # why there is none (the service says, as TopN says which table answered)
        console.print(resp.reason, highlight=False)


__all__ = ["api", "parse_time", "query_app"]
