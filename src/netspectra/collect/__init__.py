"""Collect what routers export: NetFlow v5/v9, IPFIX and sFlow v5 into columnar flow records.

Modules, following a datagram: :mod:`.receiver` (UDP sockets, recvmmsg batches, kernel drops) or
:mod:`.capture` (the UDP payloads of a capture file) give :class:`~.records.DatagramBatch` objects;
:mod:`.decoder` (:class:`FlowDecoder`) runs the kernels of :mod:`.nf_kernels` and
:mod:`.sflow_kernels` over them, with the state of :mod:`.templates`, :mod:`.pending`,
:mod:`.sampling` and :mod:`.exporters`, and gives :class:`~.records.FlowRecords`;
:mod:`.headers` decodes the packet headers sFlow (and IPFIX dataLinkFrameSection) carry with the
capture decoder. :mod:`.reference` is the plain-Python decoder the kernels are tested against;
:mod:`.build` writes export datagrams (tests, benchmarks, fuzzing). Into the pipeline: :mod:`.batches`
(``flow_batch``: records → PacketBatch rows, counts × sampling rate), :mod:`.source` (``CollectorSource``:
the whole collector as a BatchSource, what ``netspectra collect`` publishes), :mod:`.offline`
(``analyze --flow-export``), :mod:`.exporters_kind` (the ``exporters`` aggregator kind). See
docs/collect.md.

Names are re-exported lazily: importing :mod:`netspectra.collect` compiles nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from netspectra.lazy import lazy_exports

if TYPE_CHECKING:
    from netspectra.collect.batches import flow_batch
    from netspectra.collect.capture import datagrams_from_capture
    from netspectra.collect.decoder import DecodeResult, FlowDecoder
    from netspectra.collect.exporters import CollectorStats
    from netspectra.collect.headers import keys_from_headers
    from netspectra.collect.receiver import UdpReceiver
    from netspectra.collect.records import DatagramBatch, FlowRecords, InterfaceCounters
    from netspectra.collect.source import CollectorSource

__all__ = [
    "CollectorSource",
    "CollectorStats",
    "DatagramBatch",
    "DecodeResult",
    "FlowDecoder",
    "FlowRecords",
    "InterfaceCounters",
    "UdpReceiver",
    "datagrams_from_capture",
    "flow_batch",
    "keys_from_headers",
]

__getattr__ = lazy_exports(
    __name__,
    {
        "datagrams_from_capture": "netspectra.collect.capture",
        "flow_batch": "netspectra.collect.batches",
        "CollectorSource": "netspectra.collect.source",
        "DecodeResult": "netspectra.collect.decoder",
        "FlowDecoder": "netspectra.collect.decoder",
        "CollectorStats": "netspectra.collect.exporters",
        "keys_from_headers": "netspectra.collect.headers",
        "UdpReceiver": "netspectra.collect.receiver",
        "DatagramBatch": "netspectra.collect.records",
        "FlowRecords": "netspectra.collect.records",
        "InterfaceCounters": "netspectra.collect.records",
    },
)
