"""The HTTP face of the query service (FastAPI): Grafana SimpleJSON and REST mirrors of the gRPC RPCs.

Grafana SimpleJSON (``grafana-simple-json-datasource`` and compatible plugins such as Infinity's JSON
mode; the original answered only ``/query``, with a single point and ``range.from`` ignored):

* ``GET /`` → 200 ``ok`` (the data source's connection test).
* ``POST /search`` → the exact task names of the configuration (each a valid target).
* ``POST /query`` → per target a time series over ``range`` (see :func:`series`): one point per stored
  snapshot — exactly, the newest snapshot of each history bucket (``clickhouse.history_resolution``,
  by default 1 h; set it to the snapshot interval to get every snapshot). A target is ``<task>`` (total
  packets, the original's metric) or ``<task>:packets``, ``<task>:bytes``, ``<task>:flows``.
* ``POST /annotations`` → the stored alerts (see :mod:`netspectra.storage.alerts`) in ``range``, one
  annotation per fired rule (per flow for sketch rules): ``time`` (ms), ``title``, ``text``, ``tags``;
  ``annotation.query``, when set, names the one task to show. ``[]`` when the exact group has no
  ClickHouse writer (nowhere alerts are kept).
* Tables (``/query`` answers ``{"type": "table", "columns": [...], "rows": [...]}``, see :func:`table`):
  ``<exact task>:top`` (the flows with the most bytes in the range), ``<CountMin task>:count`` or
  ``:size`` (heavy hitters), ``<SuperSpread task>:spread`` (super-spreaders); ``payload.limit`` (or
  ``data.limit``) rows, 10 by default.
* Rollups (:mod:`netspectra.storage.rollups`): ``rollup:<rollup task>[:bytes|:packets]`` is a time series
  of the task's traffic in steps of Grafana's ``intervalMs`` (at least the answering table's bucket; the
  coarsest table within it answers; ``meta`` says which table, the step and why),
  ``top:<dimension>[:bytes|:packets]`` a table of the dimension's top
  values in the range (``TopN``: ``Packets``, ``Bytes``, ``Share``). Grafana's ad-hoc filters
  (``adhocFilters``: a rollup dimension ``=`` or ``!=`` a value, all ANDed) filter both; ``POST /tag-keys``
  lists the rollup tasks' dimensions and ``POST /tag-values`` a dimension's stored values for them.
* ``POST /metrics`` → every target as ``{"label", "value"}`` and ``POST /metric-payload-options`` → ``[]``
  (what the ``simpod-json-datasource`` plugin asks for).

Browsers: ``GET /`` with ``Accept: text/html`` answers the web dashboard (``static/index.html``; its
scripts and styles under ``/static``); every other ``GET /`` answers ``ok``. ``/console`` is the console
(exploration: visualize, flows, hosts, alerts, live) and ``/api/v1/console/*`` its endpoints
(:mod:`netspectra.api.console`).

REST (protojson as the original's v1 HTTP API: camelCase names, 64-bit integers as strings, zero values
omitted; request bodies are the JSON form of the gRPC request messages):

* ``GET /api/v1/health``, ``GET /api/v1/tasks``
* ``POST /api/v1/aggregate`` (``AggregationRequest`` → ``QueryTotalCountsResponse``)
* ``POST /api/v1/trace`` (``TraceFlowRequest`` → ``TraceFlowResponse``) and the original's
  ``POST /api/v1/flows/trace`` (→ the bare ``FlowLifecycle``)
* ``POST /api/v1/heavy-hitters`` (``HeavyHittersRequest`` → ``HeavyHittersResponse``)
* ``POST /api/v1/flows`` (``ListFlowsRequest`` → ``ListFlowsResponse``: stored flow records)
* ``POST /api/v1/top`` (``TopNRequest`` → ``TopNResponse``: top values of a dimension from the rollups)
* ``POST /api/v1/exporters`` (``ListExportersRequest`` → ``ListExportersResponse``) and ``GET
  /api/v1/exporters?task=&start=&end=``: the stored flow exporters
* ``GET /api/v1/alerts?start=&end=&task=&limit=`` and ``POST /api/v1/alerts`` (the same as a JSON
  object): the stored alert history, newest first (``{"alerts": [...]}``, see :func:`alerts_response`)

Errors: ``{"code": "<gRPC status name>", "message": "..."}`` with 400 (INVALID_ARGUMENT), 404
(NOT_FOUND), 503 (UNAVAILABLE) or 500; never a traceback; a message names a request field as the
client wrote it (:func:`rest_errors`). OpenAPI: ``/docs`` and ``/openapi.json``.
"""

from __future__ import annotations

import html
import logging
import math
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, cast

import grpc
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, PlainTextResponse, Response
from fastapi.staticfiles import StaticFiles
from google.protobuf import json_format
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from starlette.exceptions import HTTPException as StarletteHTTPException

from netspectra import __version__
from netspectra.api.grpc_service import (
    MAX_TIME_NS,
    QueryCore,
    QueryError,
    _errors,
    rename_fields,
    safe_message,
    shown,
)
from netspectra.api.http_input import MAX_INT_DIGITS, check_text, json_body, json_object
from netspectra.api.routing import first_clickhouse
from netspectra.auth import TokenSet
from netspectra.kinds import did_you_mean
from netspectra.proto.v1 import query_pb2
from netspectra.storage.alerts import StoredAlert, alerts
from netspectra.storage.queries import SERIES_METRICS, SeriesMetric, top_flows, totals_series
from netspectra.storage.rollups import (
    ROLLUP_METRICS,
    DimensionFilter,
    check_dimension,
    traffic_series,
)

log = logging.getLogger(__name__)

METRICS = SERIES_METRICS
#: Table targets: ``<exact task>:top``; heavy hitters ``<sketch task>:<type>`` (type name → number).
TOP = "top"
HITTER_TYPES = {"count": 0, "size": 1, "spread": 2}
#: Rows of a table when the target's payload does not say; the most rows served.
DEFAULT_TABLE_ROWS = 10
MAX_TABLE_ROWS = 1000
STATIC_DIR = Path(__file__).resolve().parent / "static"
#: Points per series when Grafana does not say (``maxDataPoints``).
DEFAULT_MAX_POINTS = 1000
#: Most annotations ``/annotations`` answers (the newest in the range).
MAX_ANNOTATIONS = 1000
_HTTP_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 413,
    grpc.StatusCode.UNAVAILABLE: 503,
}
#: The gRPC status name of an HTTP error raised by the framework (unknown route, wrong method, ...).
_CODE_OF_HTTP = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    405: "UNIMPLEMENTED",
    413: "RESOURCE_EXHAUSTED",
}
#: Most targets one ``/query`` answers.
MAX_TARGETS = 100
#: Longest time text.
MAX_TIME_CHARS = 64
#: Widest step of a rollup series (``intervalMs``): its nanoseconds must be an int64.
MAX_INTERVAL_MS = MAX_TIME_NS // 1_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def parse_grafana_time(value: Any, what: str) -> int | None:
    """A Grafana range bound (ISO 8601 text, or epoch milliseconds) → UTC ns; ``None`` if absent.
    Text without a zone is UTC. Before 1970: 400; beyond the int64 nanoseconds (year 2262): read as
    that end (no bound), as the gRPC service reads such times."""
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise QueryError(grpc.StatusCode.INVALID_ARGUMENT, f"{what}: {shown(value)} is not a time")
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise QueryError(grpc.StatusCode.INVALID_ARGUMENT, f"{what}: {shown(value)} is not a time")
        if value < 0:
            raise QueryError(
                grpc.StatusCode.INVALID_ARGUMENT, f"{what}: {shown(value)} is before 1970-01-01T00:00:00Z"
            )
        if value >= MAX_TIME_NS // 1_000_000:
            return MAX_TIME_NS
        ns = int(value) * 1_000_000 if isinstance(value, int) else int(value * 1_000_000)
    else:
        check_text(value, what, MAX_TIME_CHARS)
        try:
            dt = datetime.fromisoformat(value)
        except ValueError:
            raise QueryError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"{what}: {shown(value)} is not an ISO 8601 time (2024-01-01T00:00:00Z) or epoch ms",
            ) from None
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=UTC)
        delta = dt - _EPOCH
        ns = (delta.days * 86400 + delta.seconds) * 10**9 + delta.microseconds * 1000
    if ns < 0:
        raise QueryError(
            grpc.StatusCode.INVALID_ARGUMENT, f"{what}: {shown(value)} is before 1970-01-01T00:00:00Z"
        )
    return min(ns, MAX_TIME_NS)


def split_target(target: str) -> tuple[str, SeriesMetric]:
    """``task[:metric]`` → ``(task, metric)``; a task name that itself contains ``:`` is taken whole
    unless the part after the last ``:`` is a metric name."""
    task, sep, metric = target.rpartition(":")
    if sep and metric in METRICS:
        return task, cast(SeriesMetric, metric)
    return target, "packets"


def series(
    core: QueryCore, target: str, start_ns: int | None, end_ns: int | None, max_points: int
) -> list[list[int]]:
    """``[[value, time_ms], ...]`` of an exact task: its totals as of each stored snapshot in the range
    (:func:`netspectra.storage.queries.totals_series`).

    Points are the newest snapshot of every history bucket of the task: as of those instants every
    flow's state is still stored whatever merges did, so each value equals
    ``AggregateFlows(end_time=t)`` exactly (tested). More points than ``max_points`` are thinned evenly
    (the values stay exact; only fewer instants are shown).
    """
    task, metric = split_target(target)
    core._exact_task(task, "/query")
    store = core.router.group_store("exact")
    points = totals_series(store, task, metric, start_ns, end_ns, max_points)
    return [[total, t // 1_000_000] for t, total in points]


def table_target(core: QueryCore, target: str) -> tuple[str, str] | None:
    """``(task, kind)`` when ``target`` names a table (``<exact>:top``, ``<CountMin>:count|size``,
    ``<SuperSpread>:spread``), else ``None`` (a time series)."""
    task, sep, kind = target.rpartition(":")
    if not sep or (kind != TOP and kind not in HITTER_TYPES) or task not in core.router.routes:
        return None
    return task, kind


def _limit(target: dict[str, Any]) -> int:
    """Rows of a table target: ``payload.limit`` (simpod-json-datasource) or ``data.limit`` (SimpleJSON)."""
    for field in ("payload", "data"):
        extra = target.get(field)
        if isinstance(extra, dict) and "limit" in extra:
            value = extra["limit"]
            try:
                limit = int(value)
            except (TypeError, ValueError):
                raise QueryError(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"{field}.limit: {shown(value)} is not a positive integer",
                ) from None
            if isinstance(value, bool) or limit < 1:
                raise QueryError(
                    grpc.StatusCode.INVALID_ARGUMENT, f"{field}.limit must be a positive integer"
                )
            return min(limit, MAX_TABLE_ROWS)
    return DEFAULT_TABLE_ROWS


def table(
    core: QueryCore, task: str, kind: str, start_ns: int | None, end_ns: int | None, limit: int
) -> dict[str, Any]:
    """A SimpleJSON table: top flows of an exact task, or the heavy hitters / super-spreaders of a
    sketch task (``QueryHeavyHitters`` with this range and limit)."""
    if kind == TOP:
        core._exact_task(task, "/query (top)")
        fields = next(list(t.key_fields) for t in core.cfg.aggregator.exact.tasks if t.name == task)
        flows = top_flows(core.router.group_store("exact"), task, start_ns, end_ns, limit)
        rows = [[str(f.keys[k]) for k in fields] + [f.packets, f.bytes] for f in flows]
        columns = [{"text": f, "type": "string"} for f in fields]
        columns += [{"text": "Packets", "type": "number"}, {"text": "Bytes", "type": "number"}]
        return {"type": "table", "columns": columns, "rows": rows}
    req = query_pb2.HeavyHittersRequest(task_name=task, type=HITTER_TYPES[kind], limit=limit)
    if start_ns is not None:
        req.start_time.FromNanoseconds(start_ns)
    if end_ns is not None:
        req.end_time.FromNanoseconds(end_ns)
    resp = core.query_heavy_hitters(req)
    value = {"count": "Packets", "size": "Bytes", "spread": "Spread"}[kind]
    return {
        "type": "table",
        "columns": [{"text": "Flow", "type": "string"}, {"text": value, "type": "number"}],
        "rows": [[h.flow, int(h.value)] for h in resp.hitters],
    }


def rollup_target(core: QueryCore, target: str) -> tuple[str, str, str] | None:
    """``("series", task, metric)`` for ``rollup:<rollup task>[:metric]``, ``("top", dimension, metric)``
    for ``top:<dimension>[:metric]``; ``None`` for any other target."""
    head, sep, rest = target.partition(":")
    if not sep or head not in ("rollup", "top"):
        return None
    name, sep, metric = rest.rpartition(":")
    if not sep or metric not in ROLLUP_METRICS:
        name, metric = rest, "bytes"
    # a target of an exact task named "rollup" or "top" ("top:packets") is that task's; otherwise a name
    # that is neither a rollup task nor a dimension is said as such, not as an unknown task "top:SrcASN"
    theirs = head in core.router.routes
    if head == "rollup":
        route = core.router.routes.get(name)
        if route is not None and route.group == "rollup":
            return "series", name, metric
        if theirs:
            return None
        rollups = core.router.group_task_names("rollup")
        raise QueryError(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"{shown(target)}: {shown(name)} is not a rollup task{did_you_mean(name, rollups)}; "
            f"rollup tasks: {', '.join(rollups) or '(none)'}",
        )
    try:
        return "top", check_dimension(name), metric
    except ValueError as exc:
        if theirs:
            return None
        raise QueryError(grpc.StatusCode.INVALID_ARGUMENT, f"{shown(target)}: {exc}") from None


#: Values ``/tag-values`` offers for a key (the most traffic first).
TAG_VALUES = 1_000
#: Grafana ad-hoc filter operators the rollup targets apply, and whether each excludes its value.
ADHOC_OPERATORS = {"=": False, "!=": True}


def adhoc_filters(body: Mapping[str, Any]) -> list[DimensionFilter]:
    """The ad-hoc filters of a ``/query`` request (``adhocFilters``: ``[{"key", "operator", "value"}]``, as
    simpod-json-datasource sends a dashboard's ad-hoc filter variable; all must hold) as rollup filters:
    each key a rollup dimension (:data:`~netspectra.rollup.dims.DIMENSIONS`), the operator ``=`` or ``!=``
    (:data:`ADHOC_OPERATORS`), the value as the dimension's filters read it. Anything else is a 400
    naming the entry: a filter that cannot be applied must not leave a panel unfiltered without a word."""
    raw = body.get("adhocFilters")
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise QueryError(grpc.StatusCode.INVALID_ARGUMENT, "adhocFilters must be a list")
    out = []
    for i, f in enumerate(raw):
        where = f"adhocFilters[{i}]"
        if not isinstance(f, dict):
            raise QueryError(grpc.StatusCode.INVALID_ARGUMENT, f"{where} must be an object")
        key, op, value = f.get("key"), f.get("operator", "="), f.get("value", "")
        if isinstance(value, int | float) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(key, str) or not isinstance(op, str) or not isinstance(value, str):
            raise QueryError(
                grpc.StatusCode.INVALID_ARGUMENT, f"{where}: key, operator and value must be strings"
            )
        for field, text in (("key", key), ("operator", op), ("value", value)):
            check_text(text, f"{where}.{field}")
        if op not in ADHOC_OPERATORS:
            raise QueryError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"{where}.operator {shown(op)}: the rollup targets filter with "
                f"{' or '.join(ADHOC_OPERATORS)} only",
            )
        try:
            out.append(DimensionFilter(check_dimension(key), (value,), ADHOC_OPERATORS[op]))
        except ValueError as exc:
            raise QueryError(grpc.StatusCode.INVALID_ARGUMENT, f"{where}: {exc}") from None
    return out


def rollup_answer(
    core: QueryCore,
    what: tuple[str, str, str],
    target: dict[str, Any],
    start_ns: int | None,
    end_ns: int | None,
    interval_ms: int | None,
    max_points: int,
    filters: list[DimensionFilter] | None = None,
) -> dict[str, Any]:
    """A rollup target's answer: ``datapoints`` of the series, or the top-N table; of the traffic matching
    every filter (:func:`adhoc_filters`)."""
    kind, name, metric = what
    filters = filters or []
    if kind == "series":
        store = core.router.store_for(name)[1]
        step = max(1, interval_ms // 1000) if interval_ms else None
        core.check_keyed(name, (f.dimension for f in filters), "adhocFilters: ")
        got = traffic_series(store, name, metric, start_ns, end_ns, step, filters, max_points=max_points)  # type: ignore[arg-type]
        return {
            "datapoints": [[v, t // 1_000_000] for t, v in got.series["total"]],
            # which table answered and why (Grafana ignores it; the dashboard shows it)
            "meta": {"table": got.choice.table, "step_s": got.step_s, "reason": got.choice.reason},
        }
    req = query_pb2.TopNRequest(dimension=name, metric=ROLLUP_METRICS.index(metric), limit=_limit(target))
    for f in filters:
        req.filters.add(dimension=f.dimension, values=f.values, exclude=f.exclude)
    if start_ns is not None:
        req.start_time.FromNanoseconds(start_ns)
    if end_ns is not None:
        # Grafana's range holds its end, TopN's does not: from = to is the instant, as the series read it
        req.end_time.FromNanoseconds(end_ns + 1 if end_ns == start_ns else end_ns)
    resp = core.top_n(req)
    total = resp.total_bytes if metric == "bytes" else resp.total_packets
    rows = []
    for e in resp.entries:
        value = e.bytes if metric == "bytes" else e.packets
        rows.append([e.value, int(e.packets), int(e.bytes), round(100 * value / total, 2) if total else 0])
    columns = [
        {"text": name, "type": "string"},
        {"text": "Packets", "type": "number"},
        {"text": "Bytes", "type": "number"},
        {"text": "Share %", "type": "number"},
    ]
    # which rollup table answered and why, as a series says it (Grafana ignores it)
    meta = {
        "table": resp.table,
        "step_s": resp.resolution_seconds,
        "reason": resp.reason,
        "task": resp.task_name,
    }
    return {"type": "table", "columns": columns, "rows": rows, "meta": meta}


def all_targets(core: QueryCore) -> list[str]:
    """Every target ``/query`` serves, in configuration order: the series of each exact task, its top
    flows, the heavy-hitter tables of each sketch task, the series of each rollup task and the top-N
    tables of the rollup tasks' dimensions."""
    out: list[str] = []
    for name in core.router.exact_task_names():
        out += [name, *(f"{name}:{m}" for m in METRICS), f"{name}:{TOP}"]
    for stask in core.cfg.aggregator.sketch.tasks:
        out += [f"{stask.name}:{t.name.lower()}" for t in sorted(stask.kind.hitter_types)]
    dims: dict[str, None] = {}
    for rtask, rdims in core.rollup_dimensions().items():
        out += [f"rollup:{rtask}:{m}" for m in ROLLUP_METRICS]
        dims.update(dict.fromkeys(rdims))
    out += [f"top:{d}" for d in dims]
    return out


def _range_of(start: Any, end: Any, names: tuple[str, str]) -> tuple[int | None, int | None]:
    """Two bounds (ISO 8601 text, epoch ms as a number or as digits) → UTC ns; checked in order."""
    bounds = []
    for value, name in ((start, names[0]), (end, names[1])):
        if isinstance(value, str) and value.strip().isdigit() and len(value.strip()) <= MAX_INT_DIGITS:
            value = int(value.strip())
        bounds.append(parse_grafana_time(value, name))
    lo, hi = bounds
    if lo is not None and hi is not None and lo > hi:
        raise QueryError(grpc.StatusCode.INVALID_ARGUMENT, f"{names[0]} is after {names[1]}")
    return lo, hi


def _stored_alerts(
    core: QueryCore, start_ns: int | None, end_ns: int | None, task: str | None, limit: int
) -> list[StoredAlert]:
    """The alert history of the exact group's store; ``[]`` when that group has no ClickHouse writer."""
    if first_clickhouse(core.cfg, "exact") is None:
        return []
    return alerts(core.router.group_store("exact"), start_ns, end_ns, task, limit)


def annotation(a: StoredAlert, source: Any) -> dict[str, Any]:
    """A SimpleJSON annotation of one stored alert."""
    observed = f"{a.value:g}" + (f" (flow {a.flow})" if a.flow is not None else "")
    failed = "; ".join(f"{k}: {v}" for k, v in a.failed.items())
    text = (
        f"{a.subject}<br>Task: {a.task}<br>Condition: {a.metric} {a.operator} {a.threshold:g}<br>"
        f"Observed: {observed}<br>Delivered: {', '.join(a.delivered) or 'none'}"
        + (f"<br>Failed: {failed}" if failed else "")
        + f"<br>AI analysis: {a.ai_status}"
    )
    out: dict[str, Any] = {
        "time": a.time_ns // 1_000_000,
        "title": f"Alert: {a.rule}",
        "text": html.escape(text, quote=False).replace("&lt;br&gt;", "<br>"),
        "tags": ["netspectra", "alert", a.task, a.metric],
    }
    if source is not None:
        out["annotation"] = source
    return out


def alerts_response(
    core: QueryCore, start: Any = None, end: Any = None, task: Any = None, limit: Any = None
) -> dict[str, Any]:
    """``{"alerts": [StoredAlert.to_dict(), ...]}`` for the REST endpoint's parameters (checked)."""
    start_ns, end_ns = _range_of(start, end, ("start", "end"))
    if task is not None:
        check_text(task, "task")
    n = 0
    if limit is not None and limit != "":
        if isinstance(limit, bool) or not isinstance(limit, int | str):
            raise QueryError(grpc.StatusCode.INVALID_ARGUMENT, "limit must be a positive integer")
        text = str(limit).strip()
        if not text.lstrip("-").isdigit() or len(text) > MAX_INT_DIGITS:
            raise QueryError(
                grpc.StatusCode.INVALID_ARGUMENT, f"limit: {shown(limit)} is not a positive integer"
            )
        n = int(text)
        if n < 1:
            raise QueryError(grpc.StatusCode.INVALID_ARGUMENT, "limit must be a positive integer")
    rows = _stored_alerts(core, start_ns, end_ns, task or None, n)
    return {"alerts": [a.to_dict() for a in rows]}


def _wants_html(request: Request) -> bool:
    accept = request.headers.get("accept", "")
    return "text/html" in accept.lower()


def _error(code: str, message: str, status: int, headers: dict[str, str] | None = None) -> JSONResponse:
    """The one error shape of every HTTP answer: ``{"code": <gRPC status name>, "message": ...}``."""
    return JSONResponse({"code": code, "message": safe_message(message)}, status_code=status, headers=headers)


def _error_response(exc: QueryError) -> JSONResponse:
    status = exc.http_status or _HTTP_STATUS.get(exc.code, 500)
    return _error(exc.code.name, exc.message, status)


def _validation_message(exc: RequestValidationError) -> str:
    """FastAPI's validation errors (query parameters of the wrong type) without the input echoed."""
    parts = []
    for err in exc.errors()[:5]:
        where = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body", "query"))
        parts.append(f"{where or 'request'}: {err.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


def _parse(payload: Any, cls: type[Message]) -> Any:
    body = json_object(payload, cls.__name__)
    try:
        return json_format.ParseDict(body, cls())
    except json_format.ParseError as exc:
        _check_times(body, cls)
        raise QueryError(grpc.StatusCode.INVALID_ARGUMENT, f"{cls.__name__}: {exc}") from None
    except (ValueError, TypeError, OverflowError, RecursionError) as exc:
        raise QueryError(grpc.StatusCode.INVALID_ARGUMENT, f"{cls.__name__}: {type(exc).__name__}") from None


def _check_times(body: Mapping[str, Any], cls: type[Message]) -> None:
    """``INVALID_ARGUMENT`` naming the first time of ``body`` (a Timestamp field, by the key the client
    wrote) that is not RFC 3339 text, as ``GET /api/v1/exporters`` says it: protobuf's own message echoes
    a part of the input (``time data '2013-11' does not match format …`` for ``"2013-11-07"``)."""
    for field in cls.DESCRIPTOR.fields:
        if field.message_type is None or field.message_type.full_name != "google.protobuf.Timestamp":
            continue
        for key in (field.json_name, field.name):
            if key not in body:
                continue
            value = body[key]
            try:
                if not isinstance(value, str):
                    raise ValueError(value)
                Timestamp().FromJsonString(value)
            except (ValueError, TypeError, OverflowError):
                raise _not_a_time(key, value) from None


def _not_a_time(name: str, value: object) -> QueryError:
    """The error of a request's time ``name`` that is not RFC 3339 text (a body's or a query parameter's)."""
    example = "2024-01-01T00:00:00Z"
    return QueryError(
        grpc.StatusCode.INVALID_ARGUMENT, f"{name}: {shown(value)} is not an RFC 3339 time ({example})"
    )


def rest_names(
    cls: type[Message], body: Mapping[str, Any], params: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Each field of request message ``cls`` → the name its REST client used: the query-string parameter
    that sets it (``params``: ``{"start_time": "start"}``), else the body's key for it (camelCase or the
    ``.proto``'s snake_case, as written), else its camelCase JSON name (the REST convention)."""
    given = params or {}
    return {
        f.name: given.get(f.name) or (f.name if f.name in body else f.json_name)
        for f in cls.DESCRIPTOR.fields
    }


@contextmanager
def rest_errors(
    cls: type[Message], body: Mapping[str, Any], params: Mapping[str, str] | None = None
) -> Iterator[None]:
    """Errors of a REST mirror of an RPC (request message ``cls``, from ``body`` or the query string's
    ``params``) name the request's fields as its client did (:func:`rest_names`: ``startTime``,
    ``start_time`` or ``start``), where :class:`QueryCore`'s messages use the ``.proto``'s names (right
    for gRPC clients)."""
    try:
        yield
    except QueryError as exc:
        if not exc.fields:
            raise
        names = rest_names(cls, body, params)
        message = rename_fields(exc.message, {f: names.get(f, f) for f in exc.fields})
        raise QueryError(exc.code, message, exc.http_status) from None


def _rest_call(call: Callable[[Any], Message], payload: Any, cls: type[Message]) -> Any:
    """A REST mirror of an RPC: the JSON body ``payload`` parsed as ``cls``, answered by ``call`` (a
    :class:`QueryCore` method), errors named as the body named the fields (:func:`rest_errors`)."""
    body = json_object(payload, cls.__name__)
    request = _parse(body, cls)
    with rest_errors(cls, body):
        return call(request)


def _dump(msg: Message) -> dict[str, Any]:
    """A response message as REST JSON: protobuf's JSON mapping (camelCase, 64-bit integers as strings,
    zero values omitted); ``netspectra query --json`` prints the same."""
    return json_format.MessageToDict(msg)


_AGG_EXAMPLE = {"taskName": "per_five_tuple", "srcIp": "10.0.2.15", "startTime": "2024-01-01T00:00:00Z"}
_TRACE_EXAMPLE = {"taskName": "per_five_tuple", "flowKeys": {"SrcIP": "10.0.2.15", "DstPort": "53"}}
_HH_EXAMPLE = {"taskName": "cm_src_left", "type": 0, "limit": 10}
_FLOWS_EXAMPLE = {
    "taskName": "flows",
    "host": "10.0.2.15",
    "orderBy": "FLOW_ORDER_BYTES",
    "descending": True,
    "pageSize": 50,
}
_TOP_EXAMPLE = {
    "dimension": "SrcAS",
    "metric": "TOP_METRIC_BYTES",
    "filters": [{"dimension": "DstCountry", "values": ["FR"]}],
    "startTime": "2024-01-01T00:00:00Z",
    "endTime": "2024-01-31T00:00:00Z",
    "limit": 10,
}
_EXPORTERS_EXAMPLE = {"taskName": "exporters", "startTime": "2024-01-01T00:00:00Z"}
_ALERTS_EXAMPLE = {"start": "2024-01-01T00:00:00Z", "end": "2024-01-02T00:00:00Z", "limit": 100}
_QUERY_EXAMPLE = {
    "range": {"from": "2024-01-01T00:00:00Z", "to": "2024-01-02T00:00:00Z"},
    "targets": [{"target": "per_five_tuple"}, {"target": "per_five_tuple:bytes"}],
    "maxDataPoints": 500,
}
_ANNOTATIONS_EXAMPLE = {
    "range": {"from": "2024-01-01T00:00:00Z", "to": "2024-01-02T00:00:00Z"},
    "annotation": {"name": "alerts", "enable": True},
}


def _body(
    example: dict[str, Any] | None = None, *, message: str = "", required: bool = False
) -> dict[str, Any]:
    """``openapi_extra`` documenting a JSON request body (bodies are read by :func:`json_body`)."""
    schema: dict[str, Any] = {"type": "object"}
    if message:
        schema["description"] = f"The protobuf JSON form of `v1.{message}` (camelCase field names)."
    content: dict[str, Any] = {"schema": schema}
    if example is not None:
        content["example"] = example
    return {"requestBody": {"required": required, "content": {"application/json": content}}}


JsonBody = Annotated[Any, Depends(json_body)]


def create_app(core: QueryCore, http_metrics: Any = None, tokens: TokenSet | None = None) -> FastAPI:
    """The FastAPI application over ``core`` (see the module docstring); every request is counted and
    timed into ``http_metrics`` (a :class:`netspectra.ops.httpmetrics.HttpMetrics`) when given, and
    checked against ``tokens`` (:mod:`netspectra.api.http_auth`) when there are any."""
    app = FastAPI(
        title="NetSpectra query API",
        version=__version__,
        description="Grafana SimpleJSON endpoints and REST mirrors of the gRPC v1.QueryService. Bodies "
        "are JSON whatever their Content-Type. With tokens configured (api.auth), send "
        "`Authorization: Bearer <token>` (the Authorize button).",
        docs_url=None,
        redoc_url=None,
    )
    if tokens:
        from netspectra.api.http_auth import install_token_check

        install_token_check(app, tokens)
    if http_metrics is not None:  # installed last: the outermost, so refused requests are counted too
        from netspectra.ops.httpmetrics import install

        install(app, http_metrics)

    @app.exception_handler(QueryError)
    async def _query_error(request: Request, exc: QueryError) -> JSONResponse:
        return _error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _error("INVALID_ARGUMENT", _validation_message(exc), 400)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _CODE_OF_HTTP.get(exc.status_code, "INVALID_ARGUMENT" if exc.status_code < 500 else "INTERNAL")
        detail = exc.detail if isinstance(exc.detail, str) else "error"
        if exc.status_code == 404:
            detail = f"no such endpoint or file: {shown(request.url.path)}"
        elif exc.status_code == 405:
            detail = f"{request.method} is not allowed on {shown(request.url.path)}"
        return _error(code, detail, exc.status_code, getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _any_error(request: Request, exc: Exception) -> JSONResponse:
        log.error("HTTP %s %s failed", request.method, request.url.path[:200], exc_info=exc)
        return _error("INTERNAL", "internal error (see the server log)", 500)

    if tokens:
        app.openapi_schema = None

        def _openapi() -> dict[str, Any]:
            if app.openapi_schema is None:
                schema = get_openapi(
                    title=app.title, version=app.version, description=app.description, routes=app.routes
                )
                schema.setdefault("components", {})["securitySchemes"] = {
                    "bearer": {"type": "http", "scheme": "bearer", "description": "A token of api.auth"}
                }
                schema["security"] = [{"bearer": []}]
                app.openapi_schema = schema
            return app.openapi_schema

        app.openapi = _openapi  # type: ignore[method-assign]

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        # Swagger UI from the package (static/swagger-ui, vendored): the page works offline
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title=f"{app.title} - Swagger UI",
            swagger_js_url="/static/swagger-ui/swagger-ui-bundle.js",
            swagger_css_url="/static/swagger-ui/swagger-ui.css",
            swagger_favicon_url="/static/swagger-ui/favicon-32x32.png",
            oauth2_redirect_url=None,
            swagger_ui_parameters={"validatorUrl": None, "persistAuthorization": False},
        )

    @app.get(
        "/",
        response_class=PlainTextResponse,
        tags=["grafana"],
        summary="Connection test (`ok`); the web dashboard for browsers (Accept: text/html)",
    )
    def root(request: Request) -> Response:
        if _wants_html(request):
            return FileResponse(STATIC_DIR / "index.html", media_type="text/html")
        return PlainTextResponse("ok")

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    from netspectra.api.console import install_console

    install_console(app, core, STATIC_DIR)

    @app.post(
        "/metrics", tags=["grafana"], summary="Targets for simpod-json-datasource", openapi_extra=_body()
    )
    def metrics(payload: JsonBody) -> list[dict[str, str]]:
        json_object(payload, "a SimpleJSON /metrics request")
        return [{"label": t, "value": t} for t in all_targets(core)]

    @app.post(
        "/metric-payload-options", tags=["grafana"], summary="Payload options: none", openapi_extra=_body()
    )
    def metric_payload_options(payload: JsonBody) -> list[Any]:
        json_object(payload, "a SimpleJSON /metric-payload-options request")
        return []

    @app.post("/search", tags=["grafana"], summary="Targets: the exact task names", openapi_extra=_body())
    def search(payload: JsonBody) -> list[str]:
        json_object(payload, "a SimpleJSON /search request")
        return core.router.exact_task_names()

    @app.post(
        "/query",
        tags=["grafana"],
        summary="Time series per target over the range",
        openapi_extra=_body(_QUERY_EXAMPLE, required=True),
    )
    def query(payload: JsonBody) -> list[dict[str, Any]]:
        with _errors("/query"):
            body = json_object(payload, "a SimpleJSON /query request", required=True)
            rng = body.get("range") or {}
            if not isinstance(rng, dict):
                raise QueryError(grpc.StatusCode.INVALID_ARGUMENT, "range must be an object")
            start, end = _range_of(rng.get("from"), rng.get("to"), ("range.from", "range.to"))
            max_points = body.get("maxDataPoints") or DEFAULT_MAX_POINTS
            if isinstance(max_points, bool) or not isinstance(max_points, int) or max_points < 1:
                raise QueryError(grpc.StatusCode.INVALID_ARGUMENT, "maxDataPoints must be a positive integer")
            targets = body.get("targets") or []
            if not isinstance(targets, list):
                raise QueryError(grpc.StatusCode.INVALID_ARGUMENT, "targets must be a list")
            if len(targets) > MAX_TARGETS:
                raise QueryError(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"{len(targets):,} targets; at most {MAX_TARGETS} per request",
                )
            filters = adhoc_filters(body)
            # the ad-hoc filters are the rollups' dimensions: said on a target they do not filter
            notice = (
                {"meta": {"notice": "adhocFilters apply to the rollup targets (rollup:, top:) only"}}
                if filters
                else {}
            )
            out = []
            for i, t in enumerate(targets):
                name = t.get("target") if isinstance(t, dict) else None
                if not isinstance(name, str) or not name:
                    continue  # Grafana sends empty targets while a panel is being edited
                check_text(name, f"targets[{i}].target")
                rolled = rollup_target(core, name)
                if rolled is not None:
                    interval = body.get("intervalMs")
                    interval = (
                        interval if isinstance(interval, int) and not isinstance(interval, bool) else None
                    )
                    if interval is not None and interval > MAX_INTERVAL_MS:
                        raise QueryError(
                            grpc.StatusCode.INVALID_ARGUMENT,
                            f"intervalMs {interval} is beyond {MAX_INTERVAL_MS:,} (int64 nanoseconds)",
                        )
                    answer = rollup_answer(core, rolled, t, start, end, interval, max_points, filters)
                    out.append({"target": name, **answer})
                    continue
                tab = table_target(core, name)
                if tab is not None:
                    out.append({"target": name, **table(core, *tab, start, end, _limit(t)), **notice})
                else:
                    points = series(core, name, start, end, max_points)
                    out.append({"target": name, "datapoints": points, **notice})
            return out

    @app.post(
        "/tag-keys",
        tags=["grafana"],
        summary="Ad-hoc filter keys: the rollup tasks' dimensions",
        openapi_extra=_body(),
    )
    def tag_keys(payload: JsonBody) -> list[dict[str, str]]:
        json_object(payload, "a /tag-keys request")
        dims = dict.fromkeys(d for dims in core.rollup_dimensions().values() for d in dims)
        return [{"type": "string", "text": d} for d in dims]

    @app.post(
        "/tag-values",
        tags=["grafana"],
        summary="Ad-hoc filter values: a dimension's stored values, most traffic first",
        openapi_extra=_body({"key": "SrcAS"}, required=True),
    )
    def tag_values(payload: JsonBody) -> list[dict[str, str]]:
        with _errors("/tag-values"):
            body = json_object(payload, "a /tag-values request", required=True)
            key = body.get("key")
            if not isinstance(key, str) or not key:
                raise QueryError(grpc.StatusCode.INVALID_ARGUMENT, "key is required (a rollup dimension)")
            check_text(key, "key")
            # the values TopN ranks over everything stored (the task chosen as TopN chooses it)
            resp = core.top_n(query_pb2.TopNRequest(dimension=key, limit=TAG_VALUES))
            return [{"text": e.value} for e in resp.entries if e.value]

    @app.post(
        "/annotations",
        tags=["grafana"],
        summary="Annotations: the stored alerts in the range",
        openapi_extra=_body(_ANNOTATIONS_EXAMPLE),
    )
    def annotations(payload: JsonBody) -> list[Any]:
        with _errors("/annotations"):
            body = json_object(payload, "a SimpleJSON /annotations request")
            rng = body.get("range") or {}
            if not isinstance(rng, dict):
                raise QueryError(grpc.StatusCode.INVALID_ARGUMENT, "range must be an object")
            start, end = _range_of(rng.get("from"), rng.get("to"), ("range.from", "range.to"))
            source = body.get("annotation")
            task = source.get("query") if isinstance(source, dict) else None
            task = (
                check_text(task.strip(), "annotation.query")
                if isinstance(task, str) and task.strip()
                else None
            )
            rows = _stored_alerts(core, start, end, task, MAX_ANNOTATIONS)
            return [annotation(a, source) for a in rows]

    @app.get("/api/v1/health", tags=["v1"], summary="HealthCheck (open: needs no token)")
    def health() -> dict[str, Any]:
        return _dump(core.health_check(query_pb2.HealthCheckRequest()))

    @app.get("/api/v1/tasks", tags=["v1"], summary="SearchTasks: exact then sketch task names")
    def tasks() -> dict[str, Any]:
        return _dump(core.search_tasks(query_pb2.SearchTasksRequest()))

    @app.post(
        "/api/v1/aggregate",
        tags=["v1"],
        summary="AggregateFlows",
        openapi_extra=_body(_AGG_EXAMPLE, message="AggregationRequest"),
    )
    def aggregate(payload: JsonBody) -> dict[str, Any]:
        return _dump(_rest_call(core.aggregate_flows, payload, query_pb2.AggregationRequest))

    @app.post(
        "/api/v1/trace",
        tags=["v1"],
        summary="TraceFlow (full response, with paged flows)",
        openapi_extra=_body(_TRACE_EXAMPLE, message="TraceFlowRequest", required=True),
    )
    def trace(payload: JsonBody) -> dict[str, Any]:
        return _dump(_rest_call(core.trace_flow, payload, query_pb2.TraceFlowRequest))

    @app.post(
        "/api/v1/flows/trace",
        tags=["v1"],
        summary="TraceFlow, the original's form: the lifecycle",
        openapi_extra=_body(_TRACE_EXAMPLE, message="TraceFlowRequest", required=True),
    )
    def trace_v1(payload: JsonBody) -> dict[str, Any]:
        return _dump(_rest_call(core.trace_flow, payload, query_pb2.TraceFlowRequest).lifecycle)

    @app.post(
        "/api/v1/heavy-hitters",
        tags=["v1"],
        summary="QueryHeavyHitters",
        openapi_extra=_body(_HH_EXAMPLE, message="HeavyHittersRequest", required=True),
    )
    def hitters(payload: JsonBody) -> dict[str, Any]:
        return _dump(_rest_call(core.query_heavy_hitters, payload, query_pb2.HeavyHittersRequest))

    @app.post(
        "/api/v1/flows",
        tags=["v1"],
        summary="ListFlows: the stored flow records of a flows task",
        openapi_extra=_body(_FLOWS_EXAMPLE, message="ListFlowsRequest", required=True),
    )
    def flows(payload: JsonBody) -> dict[str, Any]:
        return _dump(_rest_call(core.list_flows, payload, query_pb2.ListFlowsRequest))

    @app.post(
        "/api/v1/top",
        tags=["v1"],
        summary="TopN: the top values of a dimension (AS, country, network, ...) from the rollups",
        openapi_extra=_body(_TOP_EXAMPLE, message="TopNRequest", required=True),
    )
    def top(payload: JsonBody) -> dict[str, Any]:
        return _dump(_rest_call(core.top_n, payload, query_pb2.TopNRequest))

    @app.post(
        "/api/v1/exporters",
        tags=["v1"],
        summary="ListExporters: the stored flow exporters (NetFlow/IPFIX/sFlow senders)",
        openapi_extra=_body(_EXPORTERS_EXAMPLE, message="ListExportersRequest", required=False),
    )
    def exporters_post(payload: JsonBody) -> dict[str, Any]:
        return _dump(_rest_call(core.list_exporters, payload, query_pb2.ListExportersRequest))

    @app.get("/api/v1/exporters", tags=["v1"], summary="The stored flow exporters (task, start, end)")
    def exporters_get(
        task: str | None = None, start: str | None = None, end: str | None = None
    ) -> dict[str, Any]:
        request = query_pb2.ListExportersRequest(task_name=task or "")
        for value, field, param in ((start, "start_time", "start"), (end, "end_time", "end")):
            if value:
                check_text(value, param, MAX_TIME_CHARS)
                try:
                    getattr(request, field).FromJsonString(value)
                except ValueError:
                    raise _not_a_time(param, value) from None
        params = {"task_name": "task", "start_time": "start", "end_time": "end"}
        with rest_errors(query_pb2.ListExportersRequest, {}, params):
            return _dump(core.list_exporters(request))

    @app.get("/api/v1/alerts", tags=["v1"], summary="The stored alert history (start, end, task, limit)")
    def alerts_get(
        start: str | None = None, end: str | None = None, task: str | None = None, limit: str | None = None
    ) -> dict[str, Any]:
        with _errors("/api/v1/alerts"):
            return alerts_response(core, start, end, task, limit)

    @app.post(
        "/api/v1/alerts",
        tags=["v1"],
        summary="The stored alert history (JSON body)",
        openapi_extra=_body(_ALERTS_EXAMPLE),
    )
    def alerts_post(payload: JsonBody) -> dict[str, Any]:
        with _errors("/api/v1/alerts"):
            body = json_object(payload, "start, end, task, limit")
            unknown = set(body) - {"start", "end", "task", "limit"}
            if unknown:
                names = ", ".join(shown(k, 40) for k in sorted(unknown)[:5])
                raise QueryError(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"unknown fields: {names}; known: start, end, task, limit",
                )
            return alerts_response(core, *(body.get(k) for k in ("start", "end", "task", "limit")))

    with_admin = bool(tokens) and tokens.counts()[1] > 0

    @app.get(
        "/api/v1/config",
        tags=["admin"],
        summary="The effective configuration, secrets masked (admin tokens only; 404 without admin tokens)",
    )
    def config() -> dict[str, Any]:
        # only behind an admin token: without authentication it would hand the deployment's layout
        # (servers, users, recipients) to anyone who can reach the port
        if not with_admin:
            raise QueryError(
                grpc.StatusCode.NOT_FOUND,
                "/api/v1/config is served only to admin tokens: configure api.auth.admin_tokens",
            )
        from netspectra.config import effective_config_dict

        return effective_config_dict(core.cfg)

    return app
