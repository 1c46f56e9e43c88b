"""The collector's Prometheus series (``/metrics`` of ``netspectra collect`` and ``up --collect``).

Read at scrape time from the counters the collector keeps anyway (:class:`~.source.CollectorSourceStats`,
the publisher's :class:`~netspectra.probe.publisher.ProbeStats`); nothing here counts. Every series is
listed in docs/collect.md ("Metrics"). Per exporter (label ``exporter``): every counter of
:data:`~.exporters.EXPORTER_COUNTERS` as ``netspectra_collect_exporter_<name>_total``, the last datagram's
time and the records per sampling rate; per exporter and interface (labels ``exporter``, ``if_index``;
bounded by ``collect.max_interfaces_per_exporter`` / ``max_interfaces``): the latest sFlow interface
counters (:mod:`~.interfaces`) as ``netspectra_collect_interface_*``; per listener (label
``listener``): datagrams, bytes, kernel drops, truncated datagrams and the receive buffer granted;
overall: decode errors by reason, rows made, records without a flow key by reason, the queue's drops
and what was published.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from netspectra.collect.exporters import EXPORTER_COUNTERS
from netspectra.collect.interfaces import supported

__all__ = ["INTERFACE_COUNTERS", "INTERFACE_GAUGES", "CollectorCollector"]

#: sFlow generic interface counters exported as Prometheus counters: series name (``_total`` added by
#: the exposition) -> (kept field, help). The agent's running totals, as sent (32-bit ones wrap; a
#: wrap or an interface reset looks like a counter reset to ``rate()``); a counter the agent sent as
#: "unsupported" (all ones) has no series.
INTERFACE_COUNTERS: dict[str, tuple[str, str]] = {
    "in_octets": ("in_octets", "octets received (ifHCInOctets)"),
    "in_unicast_packets": ("in_ucast", "unicast packets received (ifInUcastPkts)"),
    "in_multicast_packets": ("in_mcast", "multicast packets received (ifInMulticastPkts)"),
    "in_broadcast_packets": ("in_bcast", "broadcast packets received (ifInBroadcastPkts)"),
    "in_discards": ("in_discards", "inbound packets discarded (ifInDiscards)"),
    "in_errors": ("in_errors", "inbound packets with errors (ifInErrors)"),
    "in_unknown_protos": ("in_unknown", "inbound packets of an unknown protocol (ifInUnknownProtos)"),
    "out_octets": ("out_octets", "octets sent (ifHCOutOctets)"),
    "out_unicast_packets": ("out_ucast", "unicast packets sent (ifOutUcastPkts)"),
    "out_multicast_packets": ("out_mcast", "multicast packets sent (ifOutMulticastPkts)"),
    "out_broadcast_packets": ("out_bcast", "broadcast packets sent (ifOutBroadcastPkts)"),
    "out_discards": ("out_discards", "outbound packets discarded (ifOutDiscards)"),
    "out_errors": ("out_errors", "outbound packets with errors (ifOutErrors)"),
}
#: ... and as gauges: series name -> (value of :meth:`.InterfaceTable.snapshot` rows, help).
INTERFACE_GAUGES: dict[str, tuple[str, str]] = {
    "speed_bits_per_second": ("if_speed", "interface speed (ifSpeed/ifHighSpeed, bit/s)"),
    "admin_up": ("admin_up", "1 when the interface is administratively up (ifAdminStatus), else 0"),
    "oper_up": ("oper_up", "1 when the interface is operationally up (ifOperStatus), else 0"),
    "last_counters_seconds": ("received_ns", "when its latest counter sample was received (Unix seconds)"),
}


def _family(name: str, doc: str, labels: list[str], rows: list[tuple[list[str], float]]) -> Metric:
    fam = CounterMetricFamily(name, doc, labels=labels)
    for values, v in rows:
        fam.add_metric(values, v)
    return fam


class CollectorCollector(Collector):
    """Series of one collector: ``source()`` gives its :class:`~.source.CollectorSource` (None before it
    started), ``publisher()`` the publisher's stats (None when not publishing)."""

    def __init__(self, source: Callable[[], Any], publisher: Callable[[], Any] | None = None) -> None:
        self._source = source
        self._publisher = publisher

    def collect(self) -> Iterator[Metric]:
        src = self._source()
        if src is None:
            return
        st = src.stats
        exporters = st.decoder.exporters()
        for name, doc in EXPORTER_COUNTERS.items():
            yield _family(
                f"netspectra_collect_exporter_{name}",
                f"Per exporter: {doc}.",
                ["exporter"],
                [([e], float(row[name])) for e, row in exporters.items()],
            )
        seen = GaugeMetricFamily(
            "netspectra_collect_exporter_last_seen_seconds",
            "Per exporter: when its last datagram was received (Unix seconds).",
            labels=["exporter"],
        )
        for e, row in exporters.items():
            seen.add_metric([e], row["last_seen_ns"] / 1e9)
        yield seen
        yield _family(
            "netspectra_collect_exporter_sampling_rate_records",
            "Per exporter and sampling rate (0: unknown): records decoded with that rate.",
            ["exporter", "rate"],
            [
                ([e, str(r)], float(c))
                for e, row in exporters.items()
                for r, c in row["sampling_rates"].items()
            ],
        )
        yield from _interface_families(st.decoder.interfaces)
        errors = st.decoder.errors.as_dict()
        yield _family(
            "netspectra_collect_decode_errors_by_reason",
            "Decode errors of every exporter by reason (datagram_truncated, unknown_version, ...).",
            ["reason"],
            [([r], float(c)) for r, c in sorted(errors.items())],
        )
        yield _family(
            "netspectra_collect_exporters_over_limit_datagrams",
            "Datagrams refused because collect.max_exporters was reached.",
            [],
            [([], float(st.decoder.exporters_over_limit.value))],
        )
        listeners = st.listeners()
        for key, doc in (
            ("datagrams", "datagrams received"),
            ("bytes", "bytes of those datagrams"),
            ("drops", "datagrams the kernel dropped (receive buffer full; SO_RXQ_OVFL and /proc/net/udp)"),
            ("truncated", "datagrams larger than the receive slot (dropped)"),
            ("errors", "receive or handling errors"),
        ):
            yield _family(
                f"netspectra_collect_listener_{key}",
                f"Per listener: {doc}.",
                ["listener"],
                [([str(x["address"])], float(x[key] or 0)) for x in listeners],  # type: ignore[arg-type]
            )
        buf = GaugeMetricFamily(
            "netspectra_collect_listener_rcvbuf_bytes",
            "Per listener: SO_RCVBUF granted by the kernel (as Linux reports it: twice the usable size).",
            labels=["listener"],
        )
        for x in listeners:
            buf.add_metric([str(x["address"])], float(x["rcvbuf_granted"]))  # type: ignore[arg-type]
        yield buf
        rows = st.rows
        yield _family(
            "netspectra_collect_rows",
            "Batch rows made (records with a flow key).",
            [],
            [([], rows.rows.value)],
        )
        yield _family(
            "netspectra_collect_row_packets",
            "Packets those rows stand for (scaled by the sampling rate).",
            [],
            [([], float(rows.packets.value))],
        )
        yield _family(
            "netspectra_collect_row_bytes",
            "Bytes those rows stand for (scaled by the sampling rate).",
            [],
            [([], float(rows.bytes.value))],
        )
        yield _family(
            "netspectra_collect_records_not_keyed",
            "Records without a flow key (no address; a sampled header that is not IP), by reason.",
            ["reason"],
            [([r], float(c)) for r, c in sorted(rows.not_keyed.as_dict().items())],
        )
        yield _family(
            "netspectra_collect_rows_rate_unknown",
            "Rows whose sampling rate is unknown (0; their counts were multiplied by 1).",
            [],
            [([], float(rows.rate_unknown.value))],
        )
        yield _family(
            "netspectra_collect_queue_dropped_records",
            "Records dropped because the collector's queue was full (the publisher or engine fell behind).",
            [],
            [([], float(st.queue_dropped_records))],
        )
        pub = self._publisher() if self._publisher is not None else None
        if pub is not None:
            yield _family(
                "netspectra_collect_published_rows",
                "Rows published to NATS.",
                [],
                [([], pub.packets_published)],
            )
            yield _family("netspectra_collect_messages", "NATS messages published.", [], [([], pub.messages)])
            yield _family(
                "netspectra_collect_publish_failed",
                "JetStream publishes the server did not acknowledge.",
                [],
                [([], pub.publish_failed)],
            )


def _interface_families(table: Any) -> Iterator[Metric]:
    """The latest sFlow counters of every (exporter, ifIndex) kept (none yet: the families, empty)."""
    snap = table.snapshot() if table is not None else {}
    rows = [((e, str(r["if_index"])), r) for e, lst in snap.items() for r in lst]
    kept = GaugeMetricFamily(
        "netspectra_collect_exporter_interfaces",
        "Per exporter: interfaces whose latest sFlow counters are kept (netspectra_collect_interface_*).",
        labels=["exporter"],
    )
    for e, lst in snap.items():
        kept.add_metric([e], float(len(lst)))
    yield kept
    labels = ["exporter", "if_index"]
    for name, (field, doc) in INTERFACE_COUNTERS.items():
        yield _family(
            f"netspectra_collect_interface_{name}",
            f"Per sFlow interface, its latest counter sample: {doc}.",
            labels,
            [(list(k), float(r[field])) for k, r in rows if supported(field, r[field])],
        )
    for name, (field, doc) in INTERFACE_GAUGES.items():
        fam = GaugeMetricFamily(
            f"netspectra_collect_interface_{name}", f"Per sFlow interface: {doc}.", labels=labels
        )
        scale = 1e-9 if field == "received_ns" else 1.0
        for k, r in rows:
            if supported(field, r[field]):  # an unknown speed (all ones) has no series
                fam.add_metric(list(k), float(r[field]) * scale)
        yield fam
