"""Flow records: bidirectional flows with timeouts, TCP flags and state, statistics — as analysts mean them.

The ``flows`` aggregator kind (:mod:`netspectra.flows.kind`) runs in the engine like the others; this
package also offers the notebook entry point::

    import netspectra.flows
    table = netspectra.flows.read("capture.pcap", idle_timeout=60)   # a pyarrow.Table
    df = table.to_pandas()                                           # with pandas installed

Modules: :mod:`~netspectra.flows.kernels` (the numba flow table), :mod:`~netspectra.flows.task` (the
task that drives it, and what a snapshot holds), :mod:`~netspectra.flows.records` (records as data:
columns, Zeek's connection states), :mod:`~netspectra.flows.ref` (the plain-Python reference),
:mod:`~netspectra.flows.kind` (configuration, reports, metrics), :mod:`~netspectra.flows.api`
(:func:`read`). Importing this package loads none of them.
"""

from __future__ import annotations

from netspectra.lazy import lazy_exports

_WHERE = {
    "read": "netspectra.flows.api",
    "FlowParams": "netspectra.flows.task",
    "FlowTask": "netspectra.flows.task",
    "FlowRecords": "netspectra.flows.records",
    "FLOW_RECORDS_SCHEMA": "netspectra.flows.records",
}
__getattr__ = lazy_exports(__name__, _WHERE)
__all__ = sorted(_WHERE)
