"""The console's HTTP face: its pages (``/console``, ``/console/<view>``) and its REST endpoints under
``/api/v1/console/`` (all ``GET``, parameters in the query string, as the page's URL holds them).

* ``catalog`` — the sources (table + task; a rollup task's ``rollup:<task>``, which Visualize and the
  filter read, see :data:`ROLLUP_VIEWS`), their fields (dimensions and filter fields, from the store's
  schema) and time axes; which tables are present (``flows``, the rollups, absent in an older store);
  the configured tasks (exact: key fields; sketch: flow fields), the alert check interval.
* ``visualize`` — ``source, axis, start, end, dims, metric, limit, filter, points, exact, resolution``:
  top-N of the dimensions over time with "other" and the total (see
  :func:`netspectra.storage.console.visualize`), from the coarsest rollup table that answers
  (``resolution=auto``, the default; :mod:`netspectra.storage.console.rollup`), from one rollup table
  (``resolution=1m``, ``5m`` or ``1h``: a 400 saying why when it cannot answer) or from the source's own
  table (``resolution=full``); the answer says which (``table``, ``resolution``, ``reason``).
* ``flows`` — ``source, axis, start, end, filter, sort, order, offset, limit``: a page of flows.
* ``host`` — ``ip, source, axis, start, end, limit, points``: the host report, the heavy-hitter and
  super-spreader entries naming the address, and the alerts naming it.
* ``live`` — ``source, limit, exact``: the newest period of an exact task.
* ``complete`` — ``source, text, cursor``: what may be typed at the cursor of a filter (field names,
  operators, the store's most frequent values of a field, keywords).
* ``filter`` — ``source, filter``: the filter checked (``valid``; when not, ``error`` with ``message``,
  ``position``, ``expected``: a 200, the answer to a question) and written back in canonical form.

Times (``start``, ``end``): ISO 8601 (no zone: UTC) or epoch milliseconds, inclusive; absent = the
data's own extent. A filter the language refuses is a 400 with ``position`` (0-based character) and
``expected`` besides the usual ``code`` and ``message``. The catalog is cached for
:data:`CATALOG_TTL_S` seconds (``refresh=1`` reads it again). No SQL here: every query is a named
function of :mod:`netspectra.storage.console`.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import grpc
from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse

from netspectra.api.grpc_service import QueryCore, QueryError, _errors, safe_message
from netspectra.api.http_input import MAX_INT_DIGITS, check_text
from netspectra.api.routing import first_clickhouse
from netspectra.rollup.dims import RESOLUTION_BY_LABEL
from netspectra.storage import console as cs
from netspectra.storage.alerts import alerts
from netspectra.storage.filter import (
    MAX_CHARS,
    CompiledFilter,
    FilterError,
    compile_filter,
    complete,
    normalized,
)

log = logging.getLogger(__name__)

#: Seconds a catalog is reused before the store is asked again.
CATALOG_TTL_S = 10.0
#: The console's views (``/console/<view>``).
VIEWS = ("visualize", "flows", "host", "alerts", "live")
#: What a rollup task's source (``rollup:<task>``) answers: Visualize, and the filter's completion and check.
ROLLUP_VIEWS = frozenset({"visualize", "complete", "filter"})


class FilterRefusedError(QueryError):
    """A filter the language refuses: a 400 whose body also says where (``position``) and what was
    ``expected``."""

    def __init__(self, err: FilterError) -> None:
        super().__init__(grpc.StatusCode.INVALID_ARGUMENT, f"filter: {err}")
        self.detail = filter_problem(err)


def filter_problem(err: FilterError) -> dict[str, object]:
    """``err`` as the console shows it, its message bounded like every client message (it quotes the
    text found, which may be as long as the filter)."""
    return {**err.to_dict(), "message": safe_message(err.message)}


def _int(value: str | None, name: str, default: int, lo: int, hi: int) -> int:
    if value is None or value == "":
        return default
    text = value.strip()
    if not text.lstrip("-").isdigit() or len(text) > MAX_INT_DIGITS:
        raise QueryError(grpc.StatusCode.INVALID_ARGUMENT, f"{name} must be an integer, got {value[:40]!r}")
    n = int(text)
    if not lo <= n <= hi:
        raise QueryError(grpc.StatusCode.INVALID_ARGUMENT, f"{name} must be {lo}..{hi}, got {n}")
    return n


def _quoted(value: str) -> str:
    """A string literal of the filter language."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _flag(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


class Console:
    """The console's state in one API process: the query core and the cached catalog."""

    def __init__(self, core: QueryCore) -> None:
        self.core = core
        self._lock = threading.Lock()
        self._catalog: cs.Catalog | None = None
        # (source, axis) -> (when, parts_version, extent)
        self._extents: dict[tuple[str, str], tuple[float, str | None, tuple[int, int] | None]] = {}

    def store(self) -> Any:
        return self.core.router.group_store("exact")

    def catalog(self, refresh: bool = False) -> cs.Catalog:
        with self._lock:
            cat = self._catalog
            if refresh or cat is None or time.monotonic() - cat.built_s > CATALOG_TTL_S:
                tasks = {t.name: tuple(t.key_fields) for t in self.core.cfg.aggregator.exact.tasks}
                cat = cs.catalog(self.store(), tasks, self.rollups())
                self._catalog = cat
            return cat

    @staticmethod
    def axis(src: cs.Source, axis: str) -> str:
        """``axis`` if ``src`` has it (checked before anything is cached under it)."""
        if axis not in src.axes:
            raise QueryError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"axis {axis[:40]!r} is not one of {src.id}'s: {', '.join(src.axes)}",
            )
        return axis

    def extent(self, src: cs.Source, axis: str) -> tuple[int, int] | None:
        """The source's :func:`~netspectra.storage.console.extent` on ``axis`` (a scan of a time column:
        ~0.1 s on 10 M rows), reused while the table's parts are the same
        (:func:`~netspectra.storage.console.parts_version`: a few ms), or for :data:`CATALOG_TTL_S` seconds
        where they cannot be seen (a cluster)."""
        key = (src.id, axis)
        store = self.store()
        version = cs.parts_version(store, src.table)
        with self._lock:
            hit = self._extents.get(key)
        if hit is not None:
            at, seen, value = hit
            if (version is not None and seen == version) or (
                version is None and time.monotonic() - at <= CATALOG_TTL_S
            ):
                return value
        value = cs.extent(store, src, axis)
        with self._lock:
            self._extents[key] = (time.monotonic(), version, value)
        return value

    def source(self, source: str | None, view: str = "visualize") -> cs.Source:
        """The catalog's source ``source``; a rollup task's source only for the views that read it
        (visualize and the filter's completion and check): a rollup row is not a flow."""
        if source is not None:
            check_text(source, "source")
        src = self.catalog().source(source)
        if src.kind == "rollup" and view not in ROLLUP_VIEWS:
            raise QueryError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"{src.id} holds a rollup task's traffic per bucket and dimensions, not flows: the {view} "
                f"view reads a flow_metrics or flows source; {src.id} answers "
                f"{' and '.join(sorted(ROLLUP_VIEWS & set(VIEWS)))}",
            )
        return src

    def flt(self, src: cs.Source, text: str | None) -> CompiledFilter:
        if not text:
            return CompiledFilter()
        check_text(text, "filter", MAX_CHARS)
        try:
            return compile_filter(text, src.fields)
        except FilterError as exc:
            raise FilterRefusedError(exc) from None

    def times(self, start: str | None, end: str | None) -> tuple[int | None, int | None]:
        from netspectra.api.http_app import _range_of

        return _range_of(start or None, end or None, ("start", "end"))

    def rollups(self) -> dict[str, tuple[str, ...]]:
        """The rollup tasks of the configuration and their dimensions (configuration order)."""
        return self.core.rollup_dimensions()

    def config_info(self) -> dict[str, Any]:
        cfg = self.core.cfg
        return {
            "exactTasks": [
                {"name": t.name, "keyFields": list(t.key_fields)} for t in cfg.aggregator.exact.tasks
            ],
            "sketchTasks": [
                {
                    "name": t.name,
                    "kind": t.kind.title or t.kind.name,
                    "flowFields": list(t.flow_fields),
                    "hitterTypes": [int(h) for h in sorted(t.kind.hitter_types)],
                }
                for t in cfg.aggregator.sketch.tasks
            ],
            "alertIntervalMs": int(cfg.alerter.check_interval.total_seconds() * 1000),
            "alertStore": first_clickhouse(cfg, "exact") is not None,
        }


def install_console(app: FastAPI, core: QueryCore, static_dir: Any) -> None:
    """Add the console's pages and endpoints to ``app`` (see the module docstring)."""
    console = Console(core)

    @app.exception_handler(FilterRefusedError)
    async def _filter_problem(request: Request, exc: FilterRefusedError) -> JSONResponse:
        return JSONResponse({"code": exc.code.name, "message": exc.message, **exc.detail}, status_code=400)

    def page() -> FileResponse:
        return FileResponse(static_dir / "console.html", media_type="text/html")

    @app.get("/console", include_in_schema=False)
    def console_root() -> FileResponse:
        return page()

    @app.get("/console/{view}", include_in_schema=False)
    def console_view(view: str) -> FileResponse:
        if view not in VIEWS:
            raise QueryError(
                grpc.StatusCode.NOT_FOUND, f"no console view {view[:40]!r}; views: {', '.join(VIEWS)}"
            )
        return page()

    tag = ["console"]

    @app.get("/api/v1/console/catalog", tags=tag, summary="Sources, fields, axes and tables of the store")
    def catalog(refresh: str | None = None) -> dict[str, Any]:
        with _errors("/api/v1/console/catalog"):
            return {**console.catalog(_flag(refresh)).to_dict(), **console.config_info()}

    @app.get("/api/v1/console/visualize", tags=tag, summary="Top-N of dimensions over time, with other")
    def visualize(
        source: str | None = None,
        axis: str = "first",
        start: str | None = None,
        end: str | None = None,
        dims: str = "",
        metric: str = "bytes",
        limit: str | None = None,
        filter: str | None = None,
        points: str | None = None,
        exact: str | None = None,
        resolution: str = "auto",
    ) -> dict[str, Any]:
        with _errors("/api/v1/console/visualize"):
            if resolution not in ("auto", "full", *RESOLUTION_BY_LABEL):
                raise QueryError(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    "resolution must be auto (the coarsest rollup that answers), full or one rollup table's "
                    f"({', '.join(RESOLUTION_BY_LABEL)}), got {resolution[:40]!r}",
                )
            src = console.source(source)
            lo, hi = console.times(start, end)
            check_text(dims, "dims")
            names = [d.strip() for d in dims.split(",") if d.strip()]
            if len(names) > 3:
                raise QueryError(grpc.StatusCode.INVALID_ARGUMENT, "at most 3 dimensions")
            answer = cs.visualize(
                console.store(),
                src,
                axis=console.axis(src, axis),
                start_ns=lo,
                end_ns=hi,
                dims=names,
                metric=check_text(metric, "metric"),
                limit=_int(limit, "limit", 10, 1, cs.MAX_LIMIT),
                flt=console.flt(src, filter),
                points=_int(points, "points", 120, 1, cs.MAX_POINTS),
                exact=_flag(exact),
                # also when the range is given: the rollups answer a range wider than the traffic
                known_extent=console.extent(src, console.axis(src, axis)),
                rollups=console.rollups() if resolution != "full" else None,
                resolution=resolution if resolution in RESOLUTION_BY_LABEL else None,
            )
            return answer.to_dict()

    @app.get("/api/v1/console/flows", tags=tag, summary="A page of flows, sorted")
    def flows(
        source: str | None = None,
        axis: str = "first",
        start: str | None = None,
        end: str | None = None,
        filter: str | None = None,
        sort: str = "Bytes",
        order: str = "desc",
        offset: str | None = None,
        limit: str | None = None,
    ) -> dict[str, Any]:
        with _errors("/api/v1/console/flows"):
            src = console.source(source, "flows")
            lo, hi = console.times(start, end)
            if order not in ("asc", "desc"):
                raise QueryError(grpc.StatusCode.INVALID_ARGUMENT, "order must be asc or desc")
            page = cs.flow_list(
                console.store(),
                src,
                axis=console.axis(src, axis),
                start_ns=lo,
                end_ns=hi,
                flt=console.flt(src, filter),
                sort=check_text(sort, "sort"),
                descending=order == "desc",
                offset=_int(offset, "offset", 0, 0, cs.MAX_OFFSET),
                limit=_int(limit, "limit", 50, 1, cs.MAX_PAGE),
            )
            return page.to_dict()

    @app.get("/api/v1/console/host", tags=tag, summary="Everything the store says about one address")
    def host(
        ip: str,
        source: str | None = None,
        axis: str = "first",
        start: str | None = None,
        end: str | None = None,
        limit: str | None = None,
        points: str | None = None,
    ) -> dict[str, Any]:
        with _errors("/api/v1/console/host"):
            src = console.source(source, "host")
            lo, hi = console.times(start, end)
            report = cs.host_report(
                console.store(),
                src,
                check_text(ip, "ip", 64),
                axis=console.axis(src, axis),
                start_ns=lo,
                end_ns=hi,
                limit=_int(limit, "limit", 10, 1, cs.MAX_LIMIT),
                points=_int(points, "points", 120, 1, cs.MAX_POINTS),
                known_extent=console.extent(src, axis) if lo is None or hi is None else None,
            ).to_dict()
            # sketches and alerts are dated by the engine's clock: the range applies on the snapshot axis
            wall = (lo, hi) if axis == "snapshot" else (None, None)
            hitters: list[dict[str, Any]] = []
            if core.cfg.aggregator.sketch.tasks and first_clickhouse(core.cfg, "sketch") is not None:
                hitters = cs.host_hitters(core.router.group_store("sketch"), report["ip"], *wall)
            stored = []
            if first_clickhouse(core.cfg, "exact") is not None:
                stored = alerts(console.store(), *wall, limit=100, involving=report["ip"])
            return {**report, "hitters": hitters, "alerts": [a.to_dict() for a in stored]}

    @app.get("/api/v1/console/live", tags=tag, summary="The newest period of an exact task")
    def live(source: str | None = None, limit: str | None = None, exact: str | None = None) -> dict[str, Any]:
        with _errors("/api/v1/console/live"):
            src = console.source(source, "live")
            return cs.live_report(
                console.store(), src, limit=_int(limit, "limit", 10, 1, cs.MAX_LIMIT), exact=_flag(exact)
            ).to_dict()

    @app.get("/api/v1/console/complete", tags=tag, summary="Completion of a filter at a cursor")
    def complete_filter(
        source: str | None = None, text: str = "", cursor: str | None = None
    ) -> dict[str, Any]:
        with _errors("/api/v1/console/complete"):
            src = console.source(source)
            check_text(text, "text", MAX_CHARS)
            at = _int(cursor, "cursor", len(text), 0, len(text))
            c = complete(text, at, src.fields)
            options = [{"text": o, "kind": c.kind} for o in c.options]
            if c.kind == "value" and c.field is not None:
                values = cs.field_values(console.store(), src, c.field.name, c.prefix, 20)
                quote = c.field.kind == "string"
                options += [
                    {"text": _quoted(v) if quote else v, "kind": "value"}
                    for v in values
                    if v not in c.options
                ]
            return {
                "kind": c.kind,
                "start": c.start,
                "end": c.end,
                "prefix": c.prefix,
                "field": c.field.name if c.field else None,
                "options": options,
            }

    @app.get("/api/v1/console/filter", tags=tag, summary="Check a filter and write it back canonically")
    def check_filter(source: str | None = None, filter: str = "") -> dict[str, Any]:
        with _errors("/api/v1/console/filter"):
            src = console.source(source)
            check_text(filter, "filter", MAX_CHARS)
            try:
                compiled = compile_filter(filter, src.fields)
            except FilterError as exc:  # the answer to "is this valid?", not a failed request
                return {"filter": filter, "valid": False, "error": filter_problem(exc)}
            return {
                "filter": filter,
                "valid": True,
                "normalized": normalized(filter, src.fields),
                "fields": list(compiled.fields),
            }


__all__ = ["CATALOG_TTL_S", "ROLLUP_VIEWS", "VIEWS", "Console", "FilterRefusedError", "install_console"]
