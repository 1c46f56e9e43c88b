"""``v1.QueryService`` over gRPC: the original's five RPCs, with its gaps closed, ``ListFlows`` (the
stored flow records of flows tasks) and ``TopN`` (top values of a dimension from the rollups; additions).

:class:`QueryCore` holds the semantics (shared by gRPC and the HTTP app): requests are the generated
``query_pb2`` messages, answers too, and every failure is a :class:`QueryError` carrying a gRPC status
code and a message for the client — never a traceback.

* Filters of ``AggregationRequest`` are applied; proto3 cannot tell an unset field from its zero value, so
  ``""`` (IPs) and ``0`` (ports, protocol) mean "no filter".
* ``start_time``/``end_time``: inclusive bounds on the snapshot time (UTC); absent = unbounded.
  ``start_time`` after ``end_time`` → ``INVALID_ARGUMENT``.
* Paging (``page_size``/``page_token``): see :func:`_page`; ``page_size`` above :data:`MAX_PAGE_SIZE` is
  cut to it.
* ``HeavyHittersRequest.limit``: ``<= 0`` → :data:`~netspectra.storage.queries.DEFAULT_HITTERS_LIMIT`
  (10); above :data:`~netspectra.storage.queries.MAX_HITTERS_LIMIT` (10 000) → cut to it (clamped, not
  rejected: the client gets the largest answer the server gives).
* Status codes: ``INVALID_ARGUMENT`` (malformed IP, port > 65535, unknown flow key, unknown heavy-hitter
  type or one the task's sketch does not produce, a task of the wrong group for the RPC, start > end, a
  bad page token), ``NOT_FOUND`` (task not in the configuration), ``UNAVAILABLE`` (no ClickHouse writer
  for the group, or ClickHouse unreachable), ``INTERNAL`` (anything else; logged with its traceback on
  the server, the client gets one line).
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import grpc
import pyarrow as pa
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from grpc_health.v1 import health

from netspectra.api.routing import NoStoreError, StoreRouter, UnknownTaskError, first_clickhouse
from netspectra.auth import ServiceSecurity
from netspectra.config import Config
from netspectra.kinds import SHOWN_CHARS, shown  # noqa: F401 (the API's modules import them from here)
from netspectra.proto.v1 import query_pb2, query_pb2_grpc
from netspectra.rpc import create_server
from netspectra.sketches.base import HitterType
from netspectra.storage.base import StorageError
from netspectra.storage.flow_records import DEFAULT_FLOWS_LIMIT, FLOW_ORDERS, FlowRecordFilter, list_flows
from netspectra.storage.queries import (
    MAX_HITTERS_LIMIT,
    FlowFilter,
    aggregate_flows,
    flow_details,
    heavy_hitters,
    trace_flow,
)

log = logging.getLogger(__name__)

SERVICE_NAME = "v1.QueryService"
#: Largest ``page_size`` served; bigger requests are cut to it.
MAX_PAGE_SIZE = 10_000
_NS = 10**9
#: Times later than this (2262-04-11, the end of int64 nanoseconds) are read as this.
MAX_TIME_NS = 2**63 - 1
#: Largest offset a page token may carry (ClickHouse's LIMIT takes an int64 offset here).
_MAX_OFFSET = 2**63 - 1
T = TypeVar("T")


#: Longest message a client gets (input echoed in it is cut first, by :func:`shown`).
MAX_MESSAGE_CHARS = 600
#: Longest name or filter value (task names, targets, times) taken from a request.
MAX_NAME_CHARS = 1024


def safe_message(text: str) -> str:
    """``text`` fit for a client: lone surrogates and control characters escaped, at most
    :data:`MAX_MESSAGE_CHARS` characters (valid UTF-8 for a gRPC status, JSON for HTTP)."""
    out = "".join(
        ch
        if ch.isprintable() or ch == " "
        else ch.encode("unicode_escape", "backslashreplace").decode("ascii")
        for ch in text
    )
    out = out.encode("utf-8", "backslashreplace").decode("utf-8")
    if len(out) > MAX_MESSAGE_CHARS:
        out = f"{out[: MAX_MESSAGE_CHARS - 30]}… ({len(out):,} characters)"
    return out


class QueryError(Exception):
    """A failed query: ``code`` (a :class:`grpc.StatusCode`) and a one-line message for the client
    (made safe by :func:`safe_message`: bounded, escaped). ``http_status`` overrides the HTTP status the
    code maps to (e.g. 413 for a body too large). ``fields``: the request message's fields that the
    message names by their ``.proto`` names (``start_time``), words the HTTP app replaces with the names
    its client used (:func:`netspectra.api.http_app.rest_names`): the message names each before any
    input it echoes (``src_ip: 'x' is not an IP address``), as only a field's first occurrence is
    replaced."""

    def __init__(
        self,
        code: grpc.StatusCode,
        message: str,
        http_status: int | None = None,
        fields: tuple[str, ...] = (),
    ) -> None:
        message = safe_message(message)
        super().__init__(message)
        self.code = code
        self.message = message
        self.http_status = http_status
        self.fields = fields


def rename_fields(message: str, names: Mapping[str, str]) -> str:
    """``message`` with the first mention of each request field of ``names`` (its ``.proto`` name → the
    word its caller wrote: a REST body's key, a command-line option) written as the caller's. Only the
    first: a message names the field before any input it echoes (an address ``'src_ip'`` in ``src_ip:
    'src_ip' is not an IP address`` is the client's, kept). A one-word field (``host``, ``port``) only as
    a message's label (``port: ...``): as a word it may be the message's prose."""
    for field, word in names.items():
        end = r"\b" if "_" in field else r"(?=:)"
        message = re.sub(rf"(?<![\w-]){re.escape(field)}{end}", word, message, count=1)
    return message


def _invalid(message: str, *fields: str) -> QueryError:
    """``INVALID_ARGUMENT``; ``fields``: the request fields the message names (see :class:`QueryError`)."""
    return QueryError(grpc.StatusCode.INVALID_ARGUMENT, message, fields=fields)


@contextmanager
def _errors(what: str) -> Iterator[None]:
    """Exceptions of the layers below → :class:`QueryError` with the right code. What the storage layer
    says (SQL, engine messages) goes to the log only: the client learns that the store failed."""
    try:
        yield
    except QueryError:
        raise
    except UnknownTaskError as exc:
        raise QueryError(grpc.StatusCode.NOT_FOUND, str(exc)) from None
    except NoStoreError as exc:  # our own words: no writer for the group, or the store cannot be opened
        raise QueryError(grpc.StatusCode.UNAVAILABLE, f"ClickHouse is unavailable: {exc}") from None
    except StorageError as exc:
        log.warning("%s: ClickHouse failed: %s", what, exc)
        raise QueryError(
            grpc.StatusCode.UNAVAILABLE, f"{what}: ClickHouse is unavailable or failed (see the server log)"
        ) from None
    except ValueError as exc:
        raise _invalid(str(exc)) from None
    except Exception:
        log.exception("%s failed", what)
        raise QueryError(grpc.StatusCode.INTERNAL, f"{what}: internal error (see the server log)") from None


def timestamp_ns(msg: Message, field: str) -> int | None:
    """A ``google.protobuf.Timestamp`` field as UTC ns since the epoch; ``None`` when absent."""
    if not msg.HasField(field):
        return None
    ts: Timestamp = getattr(msg, field)
    if not 0 <= ts.nanos < _NS:
        raise _invalid(f"{field}: nanos {ts.nanos} is outside [0, 999999999]", field)
    if ts.seconds < 0:
        try:
            when = ts.ToJsonString()  # RFC 3339: how a REST client writes it (1960-01-01T00:00:00Z)
        except ValueError:  # before year 1, which RFC 3339 cannot write (only gRPC can send it)
            when = f"{ts.seconds} s"
        raise _invalid(f"{field}: {when} is before 1970-01-01T00:00:00Z", field)
    # beyond the int64 ns range (year 2262): as good as unbounded
    return min(ts.seconds * _NS + ts.nanos, MAX_TIME_NS)


def ns_timestamp(ns: int) -> Timestamp:
    return Timestamp(seconds=ns // _NS, nanos=ns % _NS)


@contextmanager
def _request_fields(fields: dict[str, str]) -> Iterator[None]:
    """A filter built from request fields whose ``ValueError`` names one by the storage layer's name
    (``SrcIP: 'x' is not an IP address``, ``EndReason: ...``; ``fields``: that name → the request's
    field) names the request's field instead (``src_ip: ...``, a word of :attr:`QueryError.fields`, so a
    REST client reads ``srcIp``, as its body wrote it)."""
    try:
        yield
    except ValueError as exc:
        name, colon, rest = str(exc).partition(": ")
        field = fields.get(name)
        if not colon or field is None:
            raise
        raise _invalid(f"{field}: {rest}", field) from None


#: The request fields of a :class:`FlowFilter` (AggregationRequest's) by the name its errors use.
_FLOW_FILTER_FIELDS = {
    "SrcIP": "src_ip",
    "DstIP": "dst_ip",
    "SrcPort": "src_port",
    "DstPort": "dst_port",
    "Protocol": "protocol",
}
#: The request fields of a :class:`FlowRecordFilter` (ListFlowsRequest's) by the name its errors use.
_RECORD_FILTER_FIELDS = {
    **_FLOW_FILTER_FIELDS,
    "host": "host",
    "port": "port",
    "VlanID": "vlan_id",
    "min_bytes": "min_bytes",
    "EndReason": "end_reasons",
    "ConnState": "conn_states",
}


def _times(msg: Message) -> tuple[int | None, int | None]:
    start, end = timestamp_ns(msg, "start_time"), timestamp_ns(msg, "end_time")
    if start is not None and end is not None and start > end:
        raise _invalid("start_time is after end_time", "start_time", "end_time")
    return start, end


def _query_digest(req: Message) -> str:
    """What a page token is bound to: the request without its paging fields."""
    copy = type(req)()
    copy.CopyFrom(req)
    copy.ClearField("page_token")
    copy.ClearField("page_size")
    return hashlib.sha256(copy.SerializeToString(deterministic=True)).hexdigest()[:16]


def _page(req: Message) -> tuple[int, int]:
    """``(offset, size)`` of the page asked for; ``size`` 0 = everything (no paging).

    Tokens are ``base64url(json{"o": offset, "q": digest})``; the digest ties a token to its query, so a
    token replayed with other filters is rejected (``INVALID_ARGUMENT``) instead of silently skipping
    rows. Each page is computed afresh: data written between two pages may shift the pages.
    """
    size = min(int(req.page_size), MAX_PAGE_SIZE)
    token = req.page_token
    if not token:
        return 0, size
    try:
        doc = json.loads(base64.urlsafe_b64decode(token.encode("ascii") + b"=" * (-len(token) % 4)))
        offset, digest = doc["o"], str(doc["q"])
    except Exception:
        raise _invalid("page_token is not a token of this server", "page_token") from None
    # tokens are made by _next_token (an int offset), but anyone can forge one: only an int64 offset
    # goes on (an offset beyond 64 bits reached the store's own parameter check)
    if isinstance(offset, bool) or not isinstance(offset, int) or not 0 <= offset <= _MAX_OFFSET:
        raise _invalid("page_token is not a token of this server", "page_token")
    if digest != _query_digest(req):
        raise _invalid(
            "page_token belongs to another query (repeat the same request with the token)", "page_token"
        )
    return offset, size


def _next_token(req: Message, offset: int) -> str:
    doc = json.dumps({"o": offset, "q": _query_digest(req)}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(doc).rstrip(b"=").decode("ascii")


def _slice(req: Message, items: Sequence[T]) -> tuple[Sequence[T], str]:
    offset, size = _page(req)
    if size == 0:
        return items[offset:], ""
    chunk = items[offset : offset + size]
    more = offset + size < len(items)
    return chunk, (_next_token(req, offset + size) if more else "")


def _lifecycle(first_ns: int, last_ns: int, packets: int, total_bytes: int) -> query_pb2.FlowLifecycle:
    return query_pb2.FlowLifecycle(
        first_seen=ns_timestamp(first_ns),
        last_seen=ns_timestamp(last_ns),
        total_packets=packets,
        total_bytes=total_bytes,
    )


#: Which RPC reads a group's tasks (for the message that points a client to it).
_USE: dict[str, str] = defaultdict(
    lambda: "its kind has no query RPC",
    exact="use AggregateFlows or TraceFlow",
    sketch="use QueryHeavyHitters",
    flows="use ListFlows",
    rollup="use TopN",
    exporters="use ListExporters",
)
#: ``TopNRequest.metric`` → the storage's metric name.
_TOP_METRICS = ("bytes", "packets")


def _a(word: str) -> str:
    """``word`` with its indefinite article: "an exact", "a sketch"."""
    return f"{'an' if word[:1] in 'aeiou' else 'a'} {word}"


class QueryCore:
    """The query semantics over a :class:`StoreRouter` (see the module docstring)."""

    def __init__(self, cfg: Config, router: StoreRouter | None = None) -> None:
        self.cfg = cfg
        self.router = router or StoreRouter(cfg)

    def close(self) -> None:
        self.router.close()

    def rollup_dimensions(self) -> dict[str, tuple[str, ...]]:
        """The rollup tasks of the configuration and their dimensions (configuration order; the auto ones
        follow what the enrichment section can fill)."""
        from netspectra.rollup.kind import task_dimensions

        tasks = self.cfg.aggregator.group("rollup").tasks
        return {t.name: tuple(task_dimensions(self.cfg, t)) for t in tasks}

    def check_keyed(self, task: str, needed: Iterable[str], what: str = "") -> None:
        """``INVALID_ARGUMENT`` (prefixed by ``what``) unless rollup ``task`` is keyed on every dimension of
        ``needed``: its other columns hold the unknown value in every row, so a filter or group on them
        would keep all or nothing without a word."""
        dims = self.rollup_dimensions()[task]
        missing = sorted(set(needed) - set(dims))
        if missing:
            raise _invalid(
                f"{what}rollup task {task!r} is not keyed on {', '.join(missing)}; its dimensions are "
                f"{', '.join(dims) or '(none)'}"
            )

    def health_check(self, req: query_pb2.HealthCheckRequest) -> query_pb2.HealthCheckResponse:
        return query_pb2.HealthCheckResponse(status="ok")

    def search_tasks(self, req: query_pb2.SearchTasksRequest) -> query_pb2.SearchTasksResponse:
        return query_pb2.SearchTasksResponse(task_names=self.router.task_names())

    def _exact_task(self, task: str, rpc: str) -> None:
        route = self.router.route(task)
        if route.group != "exact":
            use = _USE[route.group]
            raise _invalid(f"{task!r} is {_a(route.group)} task; {rpc} reads exact tasks ({use})")

    def aggregate_flows(self, req: query_pb2.AggregationRequest) -> query_pb2.QueryTotalCountsResponse:
        with _errors("AggregateFlows"):
            start, end = _times(req)
            with _request_fields(_FLOW_FILTER_FIELDS):
                filt = FlowFilter(
                    src_ip=req.src_ip or None,
                    dst_ip=req.dst_ip or None,
                    src_port=req.src_port or None,
                    dst_port=req.dst_port or None,
                    protocol=req.protocol or None,
                )
            _page(req)  # a bad token fails before any query
            if req.task_name:
                self._exact_task(req.task_name, "AggregateFlows")
                wanted = [req.task_name]
            else:
                wanted = self.router.exact_task_names()
            store = self.router.group_store("exact")
            task = req.task_name or None
            rows = aggregate_flows(store, end_ns=end, task=task, start_ns=start, filters=filt)
            rows = [r for r in rows if r.task_name in wanted]
            chunk, token = _slice(req, rows)
            return query_pb2.QueryTotalCountsResponse(
                summaries=[
                    query_pb2.TaskSummary(
                        task_name=r.task_name,
                        total_bytes=r.total_bytes,
                        total_packets=r.total_packets,
                        flow_count=r.flow_count,
                    )
                    for r in chunk
                ],
                next_page_token=token,
            )

    def trace_flow(self, req: query_pb2.TraceFlowRequest) -> query_pb2.TraceFlowResponse:
        with _errors("TraceFlow"):
            if not req.task_name:
                raise _invalid("task_name is required", "task_name")
            start, end = _times(req)
            keys = dict(req.flow_keys)
            filt = FlowFilter.from_keys(keys)  # unknown keys and bad values: ValueError
            offset, size = _page(req)
            self._exact_task(req.task_name, "TraceFlow")
            _, store = self.router.store_for(req.task_name)
            life = trace_flow(store, req.task_name, keys, end_ns=end, start_ns=start)
            resp = query_pb2.TraceFlowResponse(
                # no match: an empty lifecycle (0 packets, no times), never a missing message
                lifecycle=query_pb2.FlowLifecycle()
                if life is None
                else _lifecycle(life.first_seen_ns, life.last_seen_ns, life.total_packets, life.total_bytes)
            )
            if size > 0 and life is not None:
                rows = flow_details(store, req.task_name, filt, start, end, offset, size + 1)
                for flow_keys, first, last, packets, total_bytes in rows[:size]:
                    resp.flows.add(
                        flow_keys=flow_keys, lifecycle=_lifecycle(first, last, packets, total_bytes)
                    )
                if len(rows) > size:
                    resp.next_page_token = _next_token(req, offset + size)
            return resp

    def query_heavy_hitters(self, req: query_pb2.HeavyHittersRequest) -> query_pb2.HeavyHittersResponse:
        with _errors("QueryHeavyHitters"):
            if not req.task_name:
                raise _invalid("task_name is required", "task_name")
            start, end = _times(req)
            if req.type not in (0, 1, 2):
                raise _invalid(f"type {req.type} is not a heavy-hitter type: 0 count, 1 size, 2 spread")
            _page(req)
            route = self.router.route(req.task_name)
            if route.group != "sketch":
                raise _invalid(
                    f"{req.task_name!r} is {_a(route.group)} task; QueryHeavyHitters reads sketch tasks "
                    f"({_USE[route.group]})"
                )
            if req.type not in route.hitter_types:
                have = " and ".join(f"{int(t)} ({t.name.lower()})" for t in route.hitter_types) or "none"
                raise _invalid(f"{req.task_name!r} is a {route.sketch_kind} task: it has types {have} only")
            limit = min(int(req.limit), MAX_HITTERS_LIMIT)  # <= 0: the default of heavy_hitters
            _, store = self.router.store_for(req.task_name)
            rows = heavy_hitters(store, req.task_name, req.type, end_ns=end, start_ns=start, limit=limit)
            chunk, token = _slice(req, rows)
            reason = "" if rows else _no_hitters(store, req.task_name, HitterType(req.type), start, end)
            return query_pb2.HeavyHittersResponse(
                hitters=[query_pb2.HeavyHitter(flow=f, value=v) for f, v in chunk],
                next_page_token=token,
                reason=reason,
            )

    def list_flows(self, req: query_pb2.ListFlowsRequest) -> query_pb2.ListFlowsResponse:
        with _errors("ListFlows"):
            if not req.task_name:
                raise _invalid("task_name is required", "task_name")
            start, end = _times(req)
            if req.order_by not in range(len(FLOW_ORDERS)):
                raise _invalid(
                    f"order_by {req.order_by} is not a FlowOrder (0 to {len(FLOW_ORDERS) - 1})", "order_by"
                )
            with _request_fields(_RECORD_FILTER_FIELDS):
                filt = FlowRecordFilter(
                    task=req.task_name,
                    src_ip=req.src_ip or None,
                    dst_ip=req.dst_ip or None,
                    host=req.host or None,
                    src_port=req.src_port or None,
                    dst_port=req.dst_port or None,
                    port=req.port or None,
                    protocol=req.protocol or None,
                    vlan_id=req.vlan_id or None,
                    end_reasons=tuple(req.end_reasons),
                    conn_states=tuple(req.conn_states),
                    min_bytes=req.min_bytes or None,
                )
            offset, size = _page(req)
            route = self.router.route(req.task_name)
            if route.group != "flows":
                raise _invalid(
                    f"{req.task_name!r} is {_a(route.group)} task; ListFlows reads flows tasks "
                    f"({_USE[route.group]})"
                )
            _, store = self.router.store_for(req.task_name)
            size = size or DEFAULT_FLOWS_LIMIT
            page = list_flows(
                store,
                filt,
                start_ns=start,
                end_ns=end,
                order_by=FLOW_ORDERS[req.order_by],  # type: ignore[arg-type]  # checked above
                descending=req.descending,
                limit=size,
                offset=offset,
            )
            more = offset + page.records.num_rows < page.total
            return query_pb2.ListFlowsResponse(
                flows=flow_record_messages(page.records),
                next_page_token=_next_token(req, offset + size) if more else "",
                total=page.total,
            )

    def top_n(self, req: query_pb2.TopNRequest) -> query_pb2.TopNResponse:
        with _errors("TopN"):
            from netspectra.storage.rollups import (
                DimensionFilter,
                check_dimension,
                holds_traffic,
                no_traffic,
                top_n,
            )

            if not req.dimension:
                raise _invalid("dimension is required (e.g. SrcAS, DstCountry, SrcNetName, Protocol)")
            start, end = _times(req)
            if start is not None and start == end:
                # [t, t) holds nothing; widened to whole buckets it would answer the bucket around t
                raise _invalid(
                    "start_time equals end_time: the range is empty (its end is exclusive)",
                    "start_time",
                    "end_time",
                )
            if req.metric not in range(len(_TOP_METRICS)):
                raise _invalid(f"metric {req.metric} is not a TopMetric (0 bytes, 1 packets)")
            filters = [DimensionFilter(f.dimension, tuple(f.values), f.exclude) for f in req.filters]
            needed = {check_dimension(req.dimension), *(f.dimension for f in filters)}
            tasks = self.rollup_dimensions()
            if req.task_name:
                route = self.router.route(req.task_name)
                if route.group != "rollup":
                    raise _invalid(
                        f"{req.task_name!r} is {_a(route.group)} task; TopN reads rollup tasks "
                        f"({_USE[route.group]})"
                    )
                task = req.task_name
                self.check_keyed(task, needed)
            else:
                fitting = [name for name, dims in tasks.items() if needed <= set(dims)]
                if not fitting:
                    what = ", ".join(sorted(needed))
                    # each task's dimensions: the auto ones depend on what the enrichment section can fill
                    keyed = "; ".join(
                        f"{name}: {', '.join(dims) or '(none)'}" for name, dims in tasks.items()
                    )
                    raise _invalid(
                        f"no rollup task of the configuration is keyed on {what} "
                        + (
                            f"(rollup tasks and their dimensions: {keyed})"
                            if tasks
                            else "(it has no rollup task)"
                        )
                    )
                # the task with the fewest dimensions (the smallest rows) among those that stored traffic
                # in the range: tasks keyed alike count the same traffic, so any of those answers alike,
                # while a task added later (or since removed) holds none of the range; if none does, the
                # first fitting one says why (no_traffic)
                by_size = sorted(fitting, key=lambda name: len(tasks[name]))
                task = next(
                    (n for n in by_size if holds_traffic(self.router.store_for(n)[1], n, start, end)),
                    fitting[0],
                )
            _, store = self.router.store_for(task)
            top = top_n(
                store,
                task,
                req.dimension,
                _TOP_METRICS[req.metric],  # type: ignore[arg-type]  # checked above
                filters,
                start_ns=start,
                end_ns=end,
                limit=int(req.limit),
                resolution_s=int(req.resolution_seconds) or None,
            )
            reason = (
                top.choice.reason
                if top.distinct
                else f"{top.choice.reason}; {no_traffic(store, top, filters)}"
            )
            resp = query_pb2.TopNResponse(
                entries=[
                    query_pb2.TopNEntry(value=v.value, packets=v.packets, bytes=v.bytes) for v in top.values
                ],
                total_packets=top.total_packets,
                total_bytes=top.total_bytes,
                distinct_values=top.distinct,
                task_name=task,
                table=top.choice.table,
                resolution_seconds=top.choice.seconds,
                reason=reason,
            )
            if top.choice.start_ns is not None:
                resp.start_time.CopyFrom(ns_timestamp(top.choice.start_ns))
            if top.choice.end_ns is not None:
                resp.end_time.CopyFrom(ns_timestamp(min(top.choice.end_ns, MAX_TIME_NS)))
            return resp

    def list_exporters(self, req: query_pb2.ListExportersRequest) -> query_pb2.ListExportersResponse:
        """The stored exporters of one exporters task (``task_name``) or of all: read from the exporters
        group's store, else the exact group's (where ``up --collect`` and ``analyze --flow-export`` put
        them)."""
        from netspectra.storage.exporters import list_exporters

        with _errors("ListExporters"):
            start, end = _times(req)
            if len(req.task_name) > MAX_NAME_CHARS:
                # a name of no configured task is still looked up (the store may hold exporters of tasks
                # configured elsewhere), so bound it: a 1 MB name made a query beyond max_query_size
                raise _invalid(
                    f"task_name: {len(req.task_name):,} characters (at most {MAX_NAME_CHARS:,})", "task_name"
                )
            if req.task_name:
                route = self.router.routes.get(req.task_name)
                if route is not None and route.group != "exporters":
                    raise _invalid(
                        f"{req.task_name!r} is {_a(route.group)} task; ListExporters reads exporters tasks "
                        f"({_USE[route.group]})"
                    )
            group = "exporters" if first_clickhouse(self.router.cfg, "exporters") is not None else "exact"
            store = self.router.group_store(group)
            rows = list_exporters(store, req.task_name or None, start_ns=start, end_ns=end)
            reason = "" if rows else self._no_exporters(store, req.task_name, start, end)
            return query_pb2.ListExportersResponse(
                reason=reason,
                exporters=[
                    query_pb2.Exporter(
                        task_name=x.task_name,
                        address=x.address,
                        first_seen=ns_timestamp(x.first_seen_ns),
                        last_seen=ns_timestamp(x.last_seen_ns),
                        records=x.records,
                        packets=x.packets,
                        bytes=x.bytes,
                        sampling_rates=[
                            query_pb2.SamplingRateRecords(rate=r, records=n)
                            for r, n in x.sampling_rates.items()
                        ],
                        records_without_sampling_rate=x.records_without_rate,
                    )
                    for x in rows
                ],
            )

    def _no_exporters(self, store: Any, task: str, start: int | None, end: int | None) -> str:
        """Why ``ListExporters`` found no exporter (its ``reason``, as ``TopN`` says why its table): none
        in the range although some are stored; a task that stored none (with the name meant, for a near
        miss); or no exporters task at all, and who runs one."""
        from netspectra.kinds import did_you_mean
        from netspectra.output.timefmt import format_ts_ns
        from netspectra.storage.exporters import exporter_tasks, list_exporters

        configured = self.router.group_task_names("exporters")
        of_task = f" of task {shown(task)}" if task else ""
        if start is not None or end is not None:
            stored = list_exporters(store, task or None)
            if stored:
                first = format_ts_ns(min(x.first_seen_ns for x in stored))
                last = format_ts_ns(max(x.last_seen_ns for x in stored))
                return (
                    f"none in the range: the {len(stored):,} exporter{'s' if len(stored) > 1 else ''} "
                    f"stored{of_task} sent records from {first} to {last}"
                )
        if task and task not in configured:
            known = sorted({*configured, *exporter_tasks(store)})
            return (
                f"no exporter stored for task {shown(task)}{did_you_mean(task, known)}; exporters tasks "
                f"configured or stored: {', '.join(known) or '(none)'}"
            )
        if task or configured:
            tasks = [task] if task else configured
            return (
                f"the exporters task{'s' if len(tasks) > 1 else ''} {', '.join(map(repr, tasks))} stored no "
                "exporter yet: exporters are stored at each snapshot of the task's writers once flow exports "
                "(NetFlow, IPFIX, sFlow) reach the engine"
            )
        return (
            "no exporter stored, and the configuration has no exporters task (aggregator.exporters): "
            "`netspectra up --collect` and `netspectra analyze --flow-export --store` run one of their own; "
            "an engine fed by `netspectra collect` needs one in its configuration (docs/collect.md)"
        )


def _no_hitters(store: Any, task: str, type_: HitterType, start: int | None, end: int | None) -> str:
    """Why ``QueryHeavyHitters`` found no hitter of ``type_`` (its ``reason``): the stored lists of the
    task's type lie outside the range, or the task stored none of that type yet (a sketch task stores the
    flows above its thresholds at each snapshot of its writers: none passed them yet, or no snapshot was
    taken)."""
    from netspectra.output.timefmt import format_ts_ns
    from netspectra.storage.queries import hitter_span

    what = type_.name.lower()
    if start is not None or end is not None:
        span = hitter_span(store, task, type_)
        if span is not None:
            return (
                f"none in the range: task {shown(task)} stored {what} hitters from {format_ts_ns(span[0])} "
                f"to {format_ts_ns(span[1])}"
            )
    return (
        f"task {shown(task)} stored no {what} hitter yet: a sketch task stores the flows above its "
        "thresholds at each snapshot of its writers (snapshot_interval), and none passed them yet or no "
        "snapshot was taken"
    )


def _proto_field(column: str, typ: pa.DataType) -> str:
    """The ``FlowRecord`` field of a record column: snake case, durations with ``_ns``."""
    name = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", column).lower()
    return f"{name}_ns" if pa.types.is_duration(typ) else name


def flow_record_messages(records: pa.Table) -> list[query_pb2.FlowRecord]:
    """Rows of :func:`~netspectra.storage.flow_records.list_flows` as ``FlowRecord`` messages (a null
    column leaves the field absent)."""
    columns: list[tuple[str, bool, list[Any]]] = []
    for column, fld in zip(records.columns, records.schema, strict=True):
        is_time = pa.types.is_timestamp(fld.type)
        if is_time or pa.types.is_duration(fld.type):
            column = column.cast(pa.int64())
        columns.append((_proto_field(fld.name, fld.type), is_time, column.to_pylist()))
    out = []
    for i in range(records.num_rows):
        fields: dict[str, Any] = {}
        for name, is_time, values in columns:
            v = values[i]
            if v is not None:
                fields[name] = ns_timestamp(v) if is_time else v
        out.append(query_pb2.FlowRecord(**fields))
    return out


def _unary(method: Callable[[Any], Message]) -> Callable[[Any, grpc.ServicerContext], Message]:
    def handler(request: Any, context: grpc.ServicerContext) -> Message:
        try:
            return method(request)
        except QueryError as exc:
            context.abort(exc.code, exc.message)
        except Exception:  # QueryCore converts everything; this is the last line of defence
            log.exception("unexpected error")
            context.abort(grpc.StatusCode.INTERNAL, "internal error (see the server log)")
        raise AssertionError("unreachable")  # context.abort raises

    return handler


class QueryServicer(query_pb2_grpc.QueryServiceServicer):
    """The gRPC face of a :class:`QueryCore`."""

    def __init__(self, core: QueryCore) -> None:
        self.core = core
        self.HealthCheck = _unary(core.health_check)
        self.SearchTasks = _unary(core.search_tasks)
        self.AggregateFlows = _unary(core.aggregate_flows)
        self.TraceFlow = _unary(core.trace_flow)
        self.QueryHeavyHitters = _unary(core.query_heavy_hitters)
        self.ListFlows = _unary(core.list_flows)
        self.TopN = _unary(core.top_n)
        self.ListExporters = _unary(core.list_exporters)


def create_grpc_server(
    core: QueryCore,
    addr: str,
    *,
    max_workers: int = 16,
    interceptors: Sequence[grpc.ServerInterceptor] = (),
    security: ServiceSecurity | None = None,
) -> tuple[grpc.Server, int, health.HealthServicer]:
    """A started-ready (not started) gRPC server with ``v1.QueryService``, the standard health service
    (``grpc.health.v1.Health``: ``""`` and ``v1.QueryService`` SERVING) and server reflection, bound to
    ``addr`` (Go form ``:50051`` accepted; port 0 picks a free one), with the tokens and TLS of
    ``security`` (see :mod:`netspectra.rpc`; ``HealthCheck`` is open like the health service). Returns
    ``(server, port, health_servicer)``; ``OSError`` when the address cannot be bound."""
    return create_server(
        lambda server: query_pb2_grpc.add_QueryServiceServicer_to_server(QueryServicer(core), server),
        query_pb2.DESCRIPTOR.services_by_name["QueryService"].full_name,
        addr,
        max_workers=max_workers,
        thread_prefix="ns-grpc",
        interceptors=interceptors,
        security=security,
        service_label="the query service (api.auth)",
        open_methods=[f"/{SERVICE_NAME}/HealthCheck"],
    )
