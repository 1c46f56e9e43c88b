"""The console's queries: what a store holds (:func:`catalog`) and the answers of the console's views —
:func:`visualize` (top-N over time with "other"), :func:`flow_list` (sortable, paged flows),
:func:`host_report` (everything about one address), :func:`live_report` (the current period) and
:func:`field_values` (completion of filter values).

**Sources.** A view reads one *source*: a table and a task. Today that is ``flow_metrics`` (the exact
tasks' flow states, one source per task); a ``flows`` table of flow records (issue 14) becomes a source
of its own as soon as it exists, with every column it has. What a source offers as dimensions and filter
fields is read from the store's schema (``system.columns``), so a column added to a table (enrichment:
``SrcAS``, ``DstCountry``, …; exporters: ``ExporterName``, ``InIfBoundary``, …) is offered without a
change here. Columns a task does not key on (NULL in its rows) are left out of that task's source.

**One relation per source.** Every view is written once over a relation with the same columns — the
source's fields, then ``P`` (packets), ``B`` (bytes), ``S`` and ``E`` (first and last packet, UTC ns)
and ``T`` (the time on the chosen axis) — built by :meth:`Source.relation`:

* ``flow_metrics``, axis ``first`` (the traffic's own time, as far as this table knows it): one row per
  flow and aggregation period, its state as of the newest snapshot (counters are cumulative within a
  period, so the newest version is the largest), ``T`` = the flow's first packet in the period. A
  range selects the flows whose first packet lies in it.
* ``flow_metrics``, axis ``snapshot`` (when the engine counted it): one row per flow and stored
  version, ``P``/``B`` the increments since the flow's previous version in the period, ``T`` = the
  snapshot time. A range selects the traffic counted by the snapshots in it — the window semantics of
  ``AggregateFlows`` with ``start_time``/``end_time`` (at ``history_resolution``).
* ``flows`` (records): one row per record, ``P``/``B`` both directions, ``T`` = ``FirstSeen``.

**Exact, or a declared sample.** On a large store a view may read a sample of the flows instead of all
of them: rows whose ``FlowHash`` (a well-spread 64-bit hash of the flow key, third in the sorting key of
``flow_metrics``) lies in the lowest 1/N of its range, so ClickHouse skips the other granules; packets,
bytes and flows are then multiplied by N and the answer says so (``sample``). :func:`sample_factor`
picks the smallest power of two N that keeps the rows read under a budget; ``exact`` turns sampling
off. A flow is in a sample or not as a whole (every version, every period), so the shape of a series is
kept; small stores are always read in full.

Every value is a bound parameter (:func:`~netspectra.storage.schema.bind`); every column name comes
from the catalog and is quoted; the filter is compiled by :mod:`netspectra.storage.filter`. The SQL runs
on chdb and on ClickHouse 18.16 alike (no window functions, no CTEs; ``if`` conditions never Nullable).
"""

from __future__ import annotations

from netspectra.storage.console.flows import FLOW_COLUMNS, MAX_OFFSET, MAX_PAGE, FlowPage, flow_list
from netspectra.storage.console.host import HostReport, host_hitters, host_report
from netspectra.storage.console.live import LiveReport, live_report
from netspectra.storage.console.sources import (
    AXES,
    DEFAULT_ROW_BUDGET,
    EXPECTED_TABLES,
    MAX_LIMIT,
    MAX_POINTS,
    MAX_SAMPLE,
    METRICS,
    RECORD_TABLE,
    Catalog,
    ConsoleError,
    Source,
    catalog,
    check_range,
    choose_step,
    extent,
    parts_version,
    sample_bound,
    sample_factor,
)
from netspectra.storage.console.values import field_values
from netspectra.storage.console.visualize import Series, Visualization, visualize

__all__ = [
    "AXES",
    "DEFAULT_ROW_BUDGET",
    "EXPECTED_TABLES",
    "FLOW_COLUMNS",
    "MAX_LIMIT",
    "MAX_OFFSET",
    "MAX_PAGE",
    "MAX_POINTS",
    "MAX_SAMPLE",
    "METRICS",
    "RECORD_TABLE",
    "Catalog",
    "ConsoleError",
    "FlowPage",
    "HostReport",
    "LiveReport",
    "Series",
    "Source",
    "Visualization",
    "catalog",
    "check_range",
    "choose_step",
    "extent",
    "field_values",
    "flow_list",
    "host_hitters",
    "host_report",
    "live_report",
    "parts_version",
    "sample_bound",
    "sample_factor",
    "visualize",
]
