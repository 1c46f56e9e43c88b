"""``netspectra collect``: receive NetFlow v5/v9, IPFIX and sFlow v5 exports and publish them to NATS.

Parses the options, builds :class:`~netspectra.services.collect.CollectService`, runs it in a
:class:`~netspectra.services.stack.Stack` (signals, ops endpoint, bounded stop) and prints the summary
(``docs/collect.md``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from netspectra.cli.common import ConfigOption, fail, require
from netspectra.cli.live_cmds import (
    JetStreamOption,
    JsonOption,
    ShardsOption,
    StreamOption,
    SubjectOption,
    UrlOption,
    _load,
    _run,
)
from netspectra.ops.options import OpsListenOption
from netspectra.transport.names import DEFAULT_STREAM

log = logging.getLogger(__name__)

__all__ = ["collect"]


def collect(
    config: ConfigOption = None,
    listen: Annotated[
        list[str] | None,
        typer.Option(
            "--listen",
            "-l",
            help="UDP address to receive exports on: udp://HOST:PORT, HOST:PORT, [IPV6]:PORT or :PORT "
            "(every interface). Repeatable, or comma-separated. Every listener takes NetFlow v5, v9, IPFIX "
            "and sFlow v5 (the protocol is detected per datagram). Default: collect.listen of the "
            "configuration, "
            "udp://127.0.0.1:2055 and udp://127.0.0.1:6343.",
            show_default=False,
        ),
    ] = None,
    publish: Annotated[
        bool,
        typer.Option(
            "--publish/--no-publish",
            help="--no-publish: decode and count without NATS, then print the counters (debugging an "
            "exporter, measurements).",
        ),
    ] = True,
    url: UrlOption = None,
    subject: SubjectOption = None,
    shards: ShardsOption = None,
    probe_id: Annotated[
        str | None, typer.Option("--probe-id", help="Name in every message (default: collect:host:pid).")
    ] = None,
    jetstream: JetStreamOption = False,
    stream: StreamOption = DEFAULT_STREAM,
    duration: Annotated[
        float | None,
        typer.Option("--duration", min=0.0, help="Stop after this many seconds (default: never)."),
    ] = None,
    ready_file: Annotated[
        Path | None, typer.Option("--ready-file", hidden=True, help="Touched once the listeners are bound.")
    ] = None,
    dump: Annotated[
        Path | None,
        typer.Option("--dump-rows", hidden=True, help="At the stop, write every row to PREFIX.npz (tests)."),
    ] = None,
    json_out: JsonOption = False,
    ops_listen: OpsListenOption = None,
) -> None:
    """Collect flow exports — NetFlow v5, v9, IPFIX, sFlow v5 — and publish them to NATS as batches.

    Every exported flow record (or sFlow sample) becomes one row, keyed like a captured packet (sFlow:
    the sampled header is decoded by the capture decoder), whose packets and bytes are multiplied by its
    sampling rate — from the record, the exporter's options data, collect.exporter_sampling_rates, else
    collect.default_sampling_rate (such records are counted and logged once per exporter). Engines consume
    the rows like a probe's: the exact and sketch tasks count a record of N packets as N packets.

    Runs until SIGINT/SIGTERM (or --duration); then reads what the sockets still hold, publishes every row,
    and prints, per listener, the datagrams and the kernel's drops (receive buffer full: raise
    collect.socket_buffer and net.core.rmem_max) and, per exporter, datagrams, records, templates, data
    sets before their template, sequence gaps (lost export datagrams), decode errors, sampling rates and
    sFlow counter records. The latest sFlow counters of every interface (octets, packets, errors,
    discards, speed, status; at most collect.max_interfaces_per_exporter per exporter) are kept: in
    --json, and on /metrics (netspectra_collect_interface_*) with --ops-listen, beside every counter
    above. See docs/collect.md.
    """
    require("collect", "live")
    from netspectra.services.base import ServiceError
    from netspectra.services.collect import CollectOptions, CollectService

    cfg = _load(config)
    try:
        options = CollectOptions.from_config(
            cfg,
            listen=_listen(listen),
            publish=publish,
            url=url,
            subject=subject,
            shards=shards,
            probe_id=probe_id,
            jetstream=jetstream,
            stream=stream,
            ready_file=ready_file,
            dump_prefix=dump,
        )
        service = CollectService(options)
    except ServiceError as exc:
        raise fail(str(exc), exc.code) from None
    _run("collect", [service], cfg, ops_listen, json_out, duration_s=duration)


def _listen(values: list[str] | None) -> tuple[str, ...] | None:
    if not values:
        return None
    from netspectra.collect.source import parse_listen_option

    try:
        return parse_listen_option(values)
    except ValueError as exc:
        raise fail(f"--listen: {exc}") from None
