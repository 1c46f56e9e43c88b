"""Compile (or load from numba's cache) every kernel of the offline path before the clock starts.

The first run after installation compiles the kernels (several seconds); later runs load them from
numba's on-disk cache (well under a second). Doing it up front on a two-packet capture keeps that
one-time cost out of the reported packets/s, and lets the CLI say what the wait is.
"""

from __future__ import annotations

import logging
import struct
import tempfile
import time
from collections.abc import Collection, Iterable
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING, Any

from netspectra.capture.reader import CaptureReader
from netspectra.kinds import AGGREGATORS

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from netspectra.config.models import Config


def _frame() -> bytes:
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40, 0, 0, 64, 6, 0, bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2]))
    tcp = struct.pack("!HHIIBBHHH", 1234, 80, 0, 0, 0x50, 0x02, 1024, 0, 0)
    return b"\x00" * 12 + b"\x08\x00" + ip + tcp


def _pcap(frame: bytes) -> bytes:
    head = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
    return head + struct.pack("<IIII", 1, 0, len(frame), len(frame)) + frame


def _pcapng(frame: bytes) -> bytes:
    shb = struct.pack("<IIIHHqI", 0x0A0D0D0A, 28, 0x1A2B3C4D, 1, 0, -1, 28)
    idb = struct.pack("<IIHHII", 1, 20, 1, 0, 65535, 20)
    pad = (-len(frame)) % 4
    size = 32 + len(frame) + pad
    epb = struct.pack("<IIIIIII", 6, size, 0, 0, 1, len(frame), len(frame)) + frame + b"\0" * pad
    return shb + idb + epb + struct.pack("<I", size)


def warm_up(
    cfg: Config | None = None,
    *,
    reader: bool = True,
    wire: bool | None = None,
    formats: Collection[str] = ("pcap", "pcapng"),
    exports: bool | None = None,
) -> float:
    """Run the reader once per capture format of ``formats`` (``"pcap"``, ``"pcapng"``), then let every
    aggregator kind that ``cfg`` runs warm up the kernels of its tasks (``None``: every built-in kind,
    every variant — for an image build); seconds taken. ``reader=False`` leaves the capture reader out
    (an engine reads no files); ``wire`` (default: only for ``cfg`` None) also loads the wire codec's
    kernels (:func:`warm_up_wire`); ``exports`` (default: only for ``cfg`` None) the flow-export path's
    (:func:`warm_up_exports`: ``analyze --flow-export``)."""
    t0 = time.perf_counter()
    if exports or (exports is None and cfg is None):
        warm_up_exports(cfg)
    if reader and formats:
        frame = _frame()
        files = (("pcap", "w.pcap", _pcap), ("pcapng", "w.pcapng", _pcapng))
        # the decoder with the optional columns is another kernel signature: read as the run will (a
        # flows task's first run compiled it after the clock had started: 12 s of "Elapsed")
        if cfg is None:
            extras_modes: tuple[bool, ...] = (False, True)
        else:
            from netspectra.engine.kind import columns_needed

            extras_modes = (bool(columns_needed(cfg)),)
        with tempfile.TemporaryDirectory(prefix="netspectra-warmup-") as tmp:
            for name, data in ((name, make(frame)) for fmt, name, make in files if fmt in formats):
                path = Path(tmp) / name
                path.write_bytes(data)
                for extras in extras_modes:
                    for _ in CaptureReader(path, extras=extras):
                        pass
    if wire or (wire is None and cfg is None):
        warm_up_wire()
    if cfg is None:
        for name in AGGREGATORS.builtins:
            AGGREGATORS.get(name).warm_up(None)
    else:
        for name, group in cfg.aggregator.running_groups():
            AGGREGATORS.get(name).warm_up(group.tasks)
    if cfg is None or cfg.enrichment.enabled:
        _warm_up_enrichment(cfg)
    return time.perf_counter() - t0


def capture_formats(paths: Iterable[str | PathLike[str]]) -> set[str]:
    """The capture formats (``"pcap"``, ``"pcapng"``) of ``paths``, from their magic as the reader detects
    it (:func:`~netspectra.capture.source.sniff`, gzip included): what :func:`warm_up` needs to read so
    that every walker these files use is loaded before the clock starts. A file the reader will refuse
    (missing, unreadable, no capture magic) adds nothing: no walker reads it."""
    from netspectra.capture.source import CaptureError, sniff

    out: set[str] = set()
    for path in paths:
        try:
            out.add(sniff(path)[0])
        except (CaptureError, OSError):
            continue
    return out


def _udp_frame(payload: bytes, dport: int) -> bytes:
    """An Ethernet/IPv4/UDP frame carrying ``payload`` (checksums zero: nothing here verifies them)."""
    udp = struct.pack("!HHHH", 40000, dport, 8 + len(payload), 0) + payload
    ip = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0, bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])
    )
    return b"\x00" * 12 + b"\x08\x00" + ip + udp


def warm_up_exports(cfg: Config | None = None, *, collect: Any = None) -> None:
    """Load the kernels of ``analyze --flow-export`` (the capture's UDP payloads, the NetFlow v5/v9, IPFIX
    and sFlow decoders, the rows they make, with and without the optional columns) by running that path
    over a capture of one datagram of each: otherwise the first run after installation counted their
    compilation (seconds) in its elapsed time and rate, an image built with ``warm_up()`` compiled
    them at its first export, and a ``collect`` service's first datagrams waited for them while its
    socket buffers filled. ``collect``: the collector's settings when there is no ``cfg`` (a service's
    options)."""
    from netspectra.collect import build
    from netspectra.collect.batches import flow_batch
    from netspectra.collect.capture import datagrams_from_capture
    from netspectra.collect.decoder import FlowDecoder

    payloads = [
        build.netflow5([{"src": "10.0.0.1", "dst": "10.0.0.2", "sport": 1234, "dport": 80}]),
        *build.synthetic_v9(2, per_datagram=2),
        *build.synthetic_ipfix(2, per_datagram=2),
        *build.synthetic_sflow(2, per_datagram=2),
    ]
    head = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
    records = b"".join(
        struct.pack("<IIII", 1_700_000_000 + i, 0, len(f), len(f)) + f
        for i, f in enumerate(_udp_frame(p, 2055) for p in payloads)
    )
    if cfg is not None:
        collect = cfg.collect
    # what the decoders say about these made-up exporters (no sampling rate, ...) is not the user's
    quiet = logging.getLogger("netspectra.collect")
    level = quiet.level
    quiet.setLevel(logging.CRITICAL + 1)
    try:
        with tempfile.TemporaryDirectory(prefix="netspectra-warmup-") as tmp:
            path = Path(tmp) / "exports.pcap"
            path.write_bytes(head + records)
            batches = []
            for extras in (False, True):
                decoder = FlowDecoder(collect)
                for dg in datagrams_from_capture(path):
                    batches.append(flow_batch(decoder.decode(dg).records, extras=extras))
                decoder.close()
    finally:
        quiet.setLevel(level)
    if cfg is not None:
        _warm_up_weighted_tasks(cfg, batches)


def _warm_up_weighted_tasks(cfg: Config, batches: list[Any]) -> None:
    """The configured tasks' kernels for weighted rows (packets, octets, first and last times of flow
    records: other signatures than a capture's packets), on throw-away tasks fed ``batches``: the first
    ``analyze --flow-export`` run compiled them after its clock started (4-7 s of "Elapsed")."""
    from netspectra.engine.registry import build_groups

    keys = logging.getLogger("netspectra")  # the made-up rows lack enrichment columns etc.: not the user's
    level = keys.level
    keys.setLevel(logging.CRITICAL + 1)
    try:
        for group in build_groups(cfg, writers=False):
            for task in group.tasks:
                try:
                    for batch in batches:
                        task.update(batch)
                except Exception:  # a warm-up never fails the command: the run reports what is wrong
                    log.debug("warm-up of task %s on flow records failed", task.name, exc_info=True)
    finally:
        keys.setLevel(level)


def warm_up_wire() -> None:
    """Load the wire codec's kernels (both layouts' encoder and decoder, IPv4 and IPv6 rows, the shard
    hash and split): a probe's first batch and an engine's first message would otherwise wait for them
    (about half a second), while packets queue up behind."""
    import numpy as np

    from netspectra.batch import PacketBatch
    from netspectra.transport import codec

    # PacketBatch.empty's arrays are uninitialised: every column written here, so that the same paths
    # run every time (row 1 IPv4-mapped, row 0 not; distinct times: layout 2 sends offsets from a base)
    src = np.zeros((2, 16), np.uint8)
    src[1, 10:12] = 0xFF
    dst = src.copy()
    src[:, 15], dst[:, 15] = [1, 2], [3, 4]
    batch = PacketBatch(
        np.array([1_000, 2_000], np.int64), src, dst, np.array([1234, 80], np.uint16),
        np.array([80, 1234], np.uint16), np.array([6, 17], np.uint8), np.array([60, 1500], np.uint32),
    )  # fmt: skip
    for fields in (codec.FIVE_TUPLE, ("SrcIP",)):
        parts = codec.split_by_shard(batch, codec.shard_of(batch, 16, fields), 16)
        # a probe encodes the split's parts (slices of one reordered copy), an engine decodes them
        for part in [batch, *(p for p in parts if len(p))]:
            for layout in (1, 2):
                payload = codec.encode_batch(part, layout=layout)
                codec.decode_batch(payload)
                # an engine's NATS client hands large payloads over as bytearrays (nats_parser): the
                # kernels' writable-array variants
                codec.decode_batch(bytearray(payload))


def _warm_up_enrichment(cfg: Config | None = None) -> None:
    """The enrichment kernels on an empty table: those the enrichment stage of ``cfg`` calls (the columns
    and side codes its tasks read: :func:`~netspectra.engine.kind.enrichment_reads`; none when no task
    reads one: there is no stage), every one (lookups, side codes, exporter/interface pairs) for
    ``cfg`` None."""
    import numpy as np

    from netspectra.config.enrichment import EnrichmentConfig
    from netspectra.enrich.columns import SIDE_CODES

    columns: tuple[str, ...] | None = None
    codes: tuple[str, ...] = tuple(SIDE_CODES)
    if cfg is not None:
        from netspectra.engine.kind import enrichment_reads

        wanted, columns, codes = enrichment_reads(cfg, None)  # as EnrichmentStage.from_config asks them
        if not wanted:
            return
    from netspectra.config.enrichment import ClassifiersConfig, GeoIPConfig
    from netspectra.enrich.enricher import Enricher

    # the defaults (no database, no map) without validating them: building the models' validators for
    # that (pydantic's first build in a process, with its plugin scan) cost a cached start ~20 ms
    empty = EnrichmentConfig.model_construct(
        geoip=GeoIPConfig.model_construct(), classifiers=ClassifiersConfig.model_construct()
    )
    enricher = Enricher(empty, background=False)
    addrs = np.zeros((2, 16), np.uint8)
    enricher.enrich(
        addrs, addrs, exporter=addrs, in_if=np.zeros(2, np.uint32), out_if=np.zeros(2, np.uint32),
        columns=columns, codes=codes,
    )  # fmt: skip
    enricher.close()
