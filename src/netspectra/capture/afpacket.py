"""Live capture from a Linux interface: an AF_PACKET TPACKET_V3 ring walked by numba, as PacketBatch.

:class:`LiveCapture` opens one ``AF_PACKET``/``SOCK_RAW`` socket on an interface, maps a TPACKET_V3
receive ring (``block_count`` blocks of ``block_size`` bytes) and yields :class:`PacketBatch` objects.
No Python runs per packet: :func:`walk_blocks` walks the ``tpacket3_hdr`` records of every ready
block into the same record arrays a capture file gives (offset, caplen, wire length, ns timestamp,
link type), :func:`~netspectra.capture.decode.decode_records` decodes them straight out of the ring,
and the blocks go back to the kernel before the batch is handed out.

Socket set-up, in the order libpcap uses (so no packet arrives before the filter is in place):
``socket(AF_PACKET, SOCK_RAW, 0)`` (receives nothing yet) -> ``PACKET_VERSION = TPACKET_V3`` ->
``SO_ATTACH_FILTER`` -> ``PACKET_RX_RING`` -> ``mmap`` -> ``bind(iface, ETH_P_ALL)`` ->
``PACKET_ADD_MEMBERSHIP`` (promiscuous mode, dropped with the socket) -> ``PACKET_FANOUT``.

Facts a consumer relies on:

* **Snap length** is enforced by the classic BPF program's return value (as libpcap does): without
  a filter expression a one-instruction program ``ret #snaplen`` is attached; with one, every
  non-zero return of the compiled program is capped to ``snaplen``.
* **Filter expressions** are compiled by ``tcpdump -ddd`` against a header-only pcap of the
  interface's link type (no interface is opened for that, no privilege needed) and attached with
  ``SO_ATTACH_FILTER``; a missing ``tcpdump`` or a bad expression raise :class:`LiveCaptureError`
  with tcpdump's message.
* **Link type** comes from the interface's ``ARPHRD`` (Ethernet and loopback -> 1, ``NONE``/
  ``RAWIP`` tunnels -> 101 raw IP). VLAN tags the kernel took off (``TP_STATUS_VLAN_VALID``) add 4
  bytes to the wire length, as libpcap reports them, and are put back into raw frames
  (:class:`~netspectra.probe.persist.RawFrames`), so a persisted pcap holds the frame as sent.
* **Fan-out** (``fanout_group``): every socket of the same group on the interface gets a disjoint
  share of the packets (``hash`` mode: by flow hash, both directions of a flow to one socket), so
  several probe processes can split one interface.
* **Nothing is dropped here silently**: a consumer slower than the wire fills the ring and the
  kernel drops; :meth:`LiveCapture.live_stats` reports ``PACKET_STATISTICS``
  (``tpacket_stats_v3``: packets, drops, freeze-queue count), accumulated (the kernel resets them on
  every read).
* **Stop**: :meth:`LiveCapture.stop` (thread-safe, also from a signal handler) wakes the poll at
  once; the iterator waits ``2 * retire_ms`` for the kernel to hand over its partly filled block,
  drains what is ready (at most one ring's worth, so a stop ends even under full traffic), yields
  the last batches and returns; the socket and ring are released when the iterator ends.

This module is the live :class:`~netspectra.batch.BatchSource` (iterate, ``stats``, ``stop()``,
``close()``); :class:`FanoutCapture` joins several sockets of one fan-out group into one source.
``netspectra probe --iface IFACE`` uses it (``--no-publish`` captures without NATS and prints the
counters: the integration tests inside network namespaces and the rate measurements of
``docs/capture-live.md`` run it that way).
"""

from __future__ import annotations

import contextlib
import logging
import mmap
import os
import select
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field

import numpy as np

from netspectra.batch import PacketBatch
from netspectra.bounded import BoundedQueue
from netspectra.capture.bpf import BpfError, attach_filter, compile_bpf, snaplen_program
from netspectra.capture.decode import DECODER_COLUMNS, decode_records, extras_into
from netspectra.capture.stats import CaptureStats
from netspectra.jit import njit
from netspectra.probe.persist import RawFrames

log = logging.getLogger(__name__)

__all__ = [
    "FANOUT_MODES",
    "FanoutCapture",
    "FanoutStats",
    "LiveCapture",
    "LiveCaptureError",
    "LiveChunk",
    "LiveOptions",
    "LiveStats",
    "gather_frames",
    "linktype_for_arphrd",
    "release_blocks",
    "walk_blocks",
]

# <linux/if_packet.h>, <linux/if_ether.h>, <asm-generic/socket.h>
SOL_PACKET = 263
PACKET_ADD_MEMBERSHIP = 1
PACKET_MR_PROMISC = 1
PACKET_RX_RING = 5
PACKET_STATISTICS = 6
PACKET_VERSION = 10
PACKET_FANOUT = 18
PACKET_IGNORE_OUTGOING = 23
TPACKET_V3 = 2
ETH_P_ALL = 0x0003
PACKET_FANOUT_FLAG_DEFRAG = 0x8000
#: ``PACKET_FANOUT`` modes by name (``hash`` splits by flow, the mode that keeps flows whole).
FANOUT_MODES: dict[str, int] = {"hash": 0, "lb": 1, "cpu": 2, "rollover": 3, "rnd": 4, "qm": 5}

TP_STATUS_USER = 1
TP_STATUS_VLAN_VALID = 1 << 4
TP_STATUS_VLAN_TPID_VALID = 1 << 6
#: Smallest slot of one packet in a block (tpacket3_hdr 48 + sockaddr_ll 20, aligned, + a frame).
_MIN_SLOT = 64
_TPACKET3_HDR_LEN = 48
_U32_MAX = 0xFFFFFFFF

LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
#: ARPHRD_* -> pcap link type, for the device types whose frames start at ``tp_mac`` as that type.
_ARPHRD_LINKTYPE = {1: LINKTYPE_ETHERNET, 772: LINKTYPE_ETHERNET, 0xFFFE: LINKTYPE_RAW, 519: LINKTYPE_RAW}


class LiveCaptureError(RuntimeError):
    """A live capture cannot be set up; the message says what to change."""


@dataclass(frozen=True)
class LiveOptions:
    """How to open a live capture (see the module docstring for each mechanism).

    ``block_size`` must be a multiple of the page size and hold at least one ``snaplen`` frame;
    the ring is ``block_size * block_count`` bytes of locked kernel memory. ``retire_ms`` bounds
    the latency at low rates (a partly filled block is handed over after that long).
    ``batch_size`` is the most records decoded per batch (at least one block's worth is allowed).
    ``keep_raw`` also copies the captured frames out (:attr:`LiveChunk.raw`, for pcap persistence).
    ``extras`` makes the batches carry the decoder's optional columns (TCP flags, VLAN id — the tag the
    kernel took off the frame counts as the outermost one —, ICMP type and code, IP length), as
    :class:`~netspectra.capture.reader.CaptureReader` does with the same option.
    """

    interface: str
    snaplen: int = 1600
    promiscuous: bool = True
    block_size: int = 1 << 20
    block_count: int = 64
    retire_ms: int = 50
    fanout_group: int | None = None
    fanout_mode: str = "hash"
    bpf_filter: str | None = None
    ignore_outgoing: bool = False
    batch_size: int = 65_536
    keep_raw: bool = False
    poll_ms: int = 1000
    extras: bool = False

    def validate(self) -> None:
        """Raise :class:`LiveCaptureError` naming the bad option and the accepted values."""

        def need(ok: bool, msg: str) -> None:
            if not ok:
                raise LiveCaptureError(msg)

        need(bool(self.interface), "interface: an interface name is required (see `ip link`)")
        need(16 <= self.snaplen <= 262_144, f"snaplen must be in [16, 262144], got {self.snaplen}")
        page = mmap.PAGESIZE
        need(
            self.block_size >= page and self.block_size % page == 0,
            f"block_size must be a positive multiple of the page size ({page}), got {self.block_size}",
        )
        need(
            self.block_size >= self.snaplen + 128,
            f"block_size {self.block_size} cannot hold one frame of snaplen {self.snaplen}: raise it",
        )
        need(self.block_count >= 2, f"block_count must be at least 2, got {self.block_count}")
        need(1 <= self.retire_ms <= 60_000, f"retire_ms must be in [1, 60000], got {self.retire_ms}")
        need(self.batch_size >= 1, f"batch_size must be positive, got {self.batch_size}")
        need(
            self.fanout_mode in FANOUT_MODES,
            f"fanout_mode must be one of {', '.join(FANOUT_MODES)}, got {self.fanout_mode!r}",
        )
        need(
            self.fanout_group is None or 0 <= self.fanout_group <= 0xFFFF,
            f"fanout_group must be in [0, 65535], got {self.fanout_group}",
        )


@dataclass
class LiveStats:
    """Counters of one live capture.

    ``capture``: what this socket read and decoded (records, IP rows, decoder outcomes) — the same
    :class:`CaptureStats` a file reader gives. ``kernel_packets``/``kernel_drops``/
    ``kernel_freeze_q``: ``tpacket_stats_v3`` accumulated over the life of the socket
    (``kernel_packets`` includes the drops, as the kernel reports it). ``batches``: batches yielded.
    """

    capture: CaptureStats = field(default_factory=CaptureStats)
    kernel_packets: int = 0
    kernel_drops: int = 0
    kernel_freeze_q: int = 0
    batches: int = 0

    def as_dict(self) -> dict[str, object]:
        """Plain JSON-able dict (for logs, metrics and the command-line tool)."""
        d = asdict(self)
        d["capture"] = self.capture.as_dict()
        return d


@dataclass(frozen=True, slots=True)
class LiveChunk:
    """One batch of a live capture and, with ``keep_raw``, the raw frames of all its records."""

    batch: PacketBatch
    raw: RawFrames | None


# --------------------------------------------------------------------------------------------------
# kernels
# --------------------------------------------------------------------------------------------------


@njit(nogil=True, cache=True, inline="always")
def _le16(buf, p):
    return np.int64(buf[p]) | (np.int64(buf[p + 1]) << 8)


@njit(nogil=True, cache=True, inline="always")
def _le32(buf, p):
    return (
        np.int64(buf[p])
        | (np.int64(buf[p + 1]) << 8)
        | (np.int64(buf[p + 2]) << 16)
        | (np.int64(buf[p + 3]) << 24)
    )


@njit(nogil=True, cache=True)
def walk_blocks(
    ring,
    block_size,
    block_count,
    first_block,
    max_records,
    linktype,
    rec_off,
    rec_caplen,
    rec_wirelen,
    rec_ts,
    rec_linktype,
    rec_vlan,
):
    """Walk the ready blocks of ``ring`` from ``first_block``; return ``(records, blocks)``.

    A block is ready when its ``block_status`` has ``TP_STATUS_USER``. Blocks are taken in ring
    order while ready and while all their records fit in ``max_records``; a block is never split.
    For each packet: ``rec_off`` = offset of the frame in ``ring`` (``tp_mac``), ``rec_caplen`` =
    ``tp_snaplen``, ``rec_wirelen`` = ``tp_len`` (+4, saturating at ``2**32 - 1``, when the kernel
    stripped a VLAN tag of an Ethernet frame; lengths are not judged here: a length above
    ``MAX_WIRE_LENGTH`` is counted as damage by ``decode_records``, as for files), ``rec_ts`` =
    ``tp_sec * 1e9 + tp_nsec``, ``rec_linktype`` = ``linktype``, ``rec_vlan`` = ``tpid << 16 | tci``
    of the stripped tag, else -1. Offsets and lengths are clamped to their block, so a corrupt ring
    cannot make a reader leave it. The blocks stay owned by user space: release them with
    :func:`release_blocks` once the records are consumed.
    """
    n = 0
    nb = 0
    b = first_block
    lt = np.uint16(linktype)
    while nb < block_count:
        base = np.int64(b) * block_size
        end = base + block_size
        if (_le32(ring, base + 8) & TP_STATUS_USER) == 0:
            break
        num = _le32(ring, base + 12)
        if n + num > max_records:
            break
        p = base + _le32(ring, base + 16)
        for _ in range(num):
            if p < base or p + _TPACKET3_HDR_LEN > end:
                break
            sec = _le32(ring, p + 4)
            nsec = _le32(ring, p + 8)
            snap = _le32(ring, p + 12)
            tplen = _le32(ring, p + 16)
            st = _le32(ring, p + 20)
            mac = p + _le16(ring, p + 24)
            if mac > end:
                mac = end
            if mac + snap > end:
                snap = end - mac
            rec_off[n] = mac
            rec_caplen[n] = snap
            rec_ts[n] = sec * 1_000_000_000 + nsec
            rec_linktype[n] = lt
            if (st & TP_STATUS_VLAN_VALID) != 0 and linktype == LINKTYPE_ETHERNET:
                tpid = _le16(ring, p + 36) if (st & TP_STATUS_VLAN_TPID_VALID) != 0 else 0x8100
                rec_vlan[n] = (tpid << 16) | (_le32(ring, p + 32) & 0xFFFF)
                # Saturate: a wrapped uint32 would turn a nonsense length into a small plausible one,
                # and decode_records must see it to count it as IMPLAUSIBLE_LENGTH like a file's.
                rec_wirelen[n] = min(tplen + 4, _U32_MAX)
            else:
                rec_vlan[n] = -1
                rec_wirelen[n] = tplen
            n += 1
            nxt = _le32(ring, p)
            if nxt == 0:
                break
            p += nxt
        nb += 1
        b = (b + 1) % block_count
    return n, nb


@njit(nogil=True, cache=True)
def release_blocks(ring32, block_size, block_count, first_block, blocks):
    """Give ``blocks`` blocks from ``first_block`` back to the kernel (``block_status = 0``).

    ``ring32`` is the ring viewed as uint32: each status is one aligned 32-bit store.
    """
    words = block_size // 4
    for k in range(blocks):
        b = (first_block + k) % block_count
        ring32[np.int64(b) * words + 2] = np.uint32(0)


@njit(nogil=True, cache=True)
def gather_frames(ring, n, rec_off, rec_caplen, rec_vlan, out_data, out_off, out_caplen):
    """Copy ``n`` frames out of ``ring`` into ``out_data`` back to back, re-inserting VLAN tags.

    A frame with ``rec_vlan >= 0`` gets its 802.1Q/802.1ad tag put back after the two MAC
    addresses (12 bytes), as it was on the wire. ``out_off`` (n + 1 entries) and ``out_caplen``
    describe the copies; returns the bytes written (``out_data`` needs
    ``sum(caplen) + 4 * tagged``).
    """
    q = 0
    for i in range(n):
        src = rec_off[i]
        cap = np.int64(rec_caplen[i])
        out_off[i] = q
        v = rec_vlan[i]
        if v >= 0 and cap >= 12:
            for k in range(12):
                out_data[q + k] = ring[src + k]
            out_data[q + 12] = (v >> 24) & 0xFF
            out_data[q + 13] = (v >> 16) & 0xFF
            out_data[q + 14] = (v >> 8) & 0xFF
            out_data[q + 15] = v & 0xFF
            for k in range(12, cap):
                out_data[q + 4 + k] = ring[src + k]
            cap += 4
        else:
            for k in range(cap):
                out_data[q + k] = ring[src + k]
        out_caplen[i] = cap
        q += cap
    out_off[n] = q
    return q


# --------------------------------------------------------------------------------------------------
# socket helpers
# --------------------------------------------------------------------------------------------------


def linktype_for_arphrd(arphrd: int) -> int:
    """The pcap link type of an interface of ``ARPHRD_*`` type ``arphrd`` (LiveCaptureError if none)."""
    try:
        return _ARPHRD_LINKTYPE[arphrd]
    except KeyError:
        raise LiveCaptureError(
            f"interface hardware type ARPHRD {arphrd} is not supported for live capture "
            "(supported: Ethernet, loopback, raw-IP tunnels)"
        ) from None


# --------------------------------------------------------------------------------------------------
# the capture
# --------------------------------------------------------------------------------------------------


class LiveCapture:
    """A live capture on one interface (see the module docstring); iterate it for batches.

    The socket is opened in the constructor, so permission, interface and filter errors come at
    once as :class:`LiveCaptureError`. Iterating (``for batch in cap``, or :meth:`chunks` for the
    raw frames too) may be done once; it ends after :meth:`stop`. Use as a context manager or call
    :meth:`close`.
    """

    def __init__(self, options: LiveOptions) -> None:
        options.validate()
        self.options = o = options
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._stats = LiveStats()
        self._iterating = False
        self._iter_thread = 0
        self._closed = False
        try:
            self.ifindex = socket.if_nametoindex(o.interface)
        except OSError:
            names = ", ".join(name for _, name in socket.if_nameindex())
            raise LiveCaptureError(f"interface {o.interface!r} not found (available: {names})") from None
        try:
            self._sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        except PermissionError:
            raise LiveCaptureError(
                "live capture needs CAP_NET_RAW: run as root or `setcap cap_net_raw,cap_net_admin+ep` "
                "on the Python interpreter"
            ) from None
        self._mm: mmap.mmap | None = None
        self._wake_r, self._wake_w = os.pipe()
        try:
            self._open()
        except BaseException:
            self.close()
            raise

    def _open(self) -> None:
        o = self.options
        s = self._sock
        # The link type decides the filter's offsets, so read the device type first.
        try:
            with open(f"/sys/class/net/{o.interface}/type") as fh:
                arphrd = int(fh.read().strip())
        except (OSError, ValueError):
            arphrd = 1
        self.linktype = linktype_for_arphrd(arphrd)
        s.setsockopt(SOL_PACKET, PACKET_VERSION, TPACKET_V3)
        try:
            prog = compile_bpf(o.bpf_filter, self.linktype, o.snaplen) if o.bpf_filter else None
        except BpfError as exc:
            raise LiveCaptureError(str(exc)) from None
        attach_filter(s, prog or snaplen_program(o.snaplen))
        if o.ignore_outgoing:
            s.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
        frame_size = 2048 if o.block_size % 2048 == 0 else 16
        req = struct.pack(
            "7I",
            o.block_size,
            o.block_count,
            frame_size,
            (o.block_size // frame_size) * o.block_count,
            o.retire_ms,
            0,
            0,
        )
        try:
            s.setsockopt(SOL_PACKET, PACKET_RX_RING, req)
        except OSError as exc:
            raise LiveCaptureError(
                f"PACKET_RX_RING of {o.block_count} x {o.block_size} bytes refused ({exc.strerror}): "
                "lower block_count/block_size"
            ) from None
        self._ring_bytes = o.block_size * o.block_count
        self._mm = mmap.mmap(s.fileno(), self._ring_bytes, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        self._ring = np.frombuffer(self._mm, np.uint8)
        self._ring32 = np.frombuffer(self._mm, np.uint32)
        s.bind((o.interface, ETH_P_ALL))
        hatype = s.getsockname()[3]
        if _ARPHRD_LINKTYPE.get(hatype, self.linktype) != self.linktype:
            raise LiveCaptureError(f"interface {o.interface!r} changed type while opening (ARPHRD {hatype})")
        if o.promiscuous:
            mreq = struct.pack("iHH8s", self.ifindex, PACKET_MR_PROMISC, 0, b"")
            s.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP, mreq)
        if o.fanout_group is not None:
            arg = o.fanout_group | ((FANOUT_MODES[o.fanout_mode] | PACKET_FANOUT_FLAG_DEFRAG) << 16)
            try:
                s.setsockopt(SOL_PACKET, PACKET_FANOUT, struct.pack("I", arg))
            except OSError as exc:
                raise LiveCaptureError(
                    f"PACKET_FANOUT group {o.fanout_group} ({o.fanout_mode}) refused ({exc.strerror}): "
                    "every socket of a group must use the same mode"
                ) from None
        self._block = 0
        cap = max(o.batch_size, o.block_size // _MIN_SLOT + 1)
        self._cap = cap
        self._rec_off = np.empty(cap, np.int64)
        self._rec_caplen = np.empty(cap, np.uint32)
        self._rec_wirelen = np.empty(cap, np.uint32)
        self._rec_ts = np.empty(cap, np.int64)
        self._rec_linktype = np.empty(cap, np.uint16)
        self._rec_vlan = np.empty(cap, np.int64)
        self._status = np.empty(cap, np.uint8)
        self._aux = np.empty(cap, np.uint16)
        self._warm_up()
        log.info(
            "live capture on %s (ifindex %d, link type %d): ring %d x %d bytes, snaplen %d%s%s",
            o.interface,
            self.ifindex,
            self.linktype,
            o.block_count,
            o.block_size,
            o.snaplen,
            f", filter {o.bpf_filter!r}" if o.bpf_filter else "",
            f", fanout group {o.fanout_group} ({o.fanout_mode})" if o.fanout_group is not None else "",
        )

    def _warm_up(self) -> None:
        """Load (or compile) every kernel now, not on the first packets: calls that touch nothing."""
        o = self.options
        rec = (self._rec_off, self._rec_caplen, self._rec_wirelen, self._rec_ts, self._rec_linktype)
        walk_blocks(self._ring, o.block_size, o.block_count, 0, 0, self.linktype, *rec, self._rec_vlan)
        out = PacketBatch.empty(0, DECODER_COLUMNS if o.extras else ())
        decode_records(self._ring, self._rec_off, self._rec_caplen, self._rec_wirelen, self._rec_ts,
                       self._rec_linktype, 0, out.ts_ns, out.src_ip, out.dst_ip, out.src_port, out.dst_port,
                       out.protocol, out.length, self._status, self._aux,
                       extras_into(out, 0, self._rec_vlan) if o.extras else None)  # fmt: skip
        release_blocks(self._ring32, o.block_size, o.block_count, 0, 0)
        if o.keep_raw:
            gather_frames(self._ring, 0, self._rec_off, self._rec_caplen, self._rec_vlan,
                          np.empty(0, np.uint8), np.empty(1, np.int64), np.empty(0, np.uint32))  # fmt: skip

    # -- control ------------------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the iterator to finish: it drains the ready blocks, yields them and returns."""
        self._stop.set()
        # Already closed, or the pipe is full: the iterator is awake anyway.
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    @property
    def stats(self) -> LiveStats:
        """The counters now (:class:`~netspectra.batch.BatchSource`'s ``stats``; see :meth:`live_stats`)."""
        return self.live_stats()

    def live_stats(self) -> LiveStats:
        """Current counters (reads and accumulates the kernel's ``PACKET_STATISTICS``)."""
        self._poll_kernel_stats()
        with self._lock:
            st = self._stats
            return LiveStats(
                capture=CaptureStats().merge(st.capture),
                kernel_packets=st.kernel_packets,
                kernel_drops=st.kernel_drops,
                kernel_freeze_q=st.kernel_freeze_q,
                batches=st.batches,
            )

    def _poll_kernel_stats(self) -> None:
        with self._lock:
            if self._closed:
                return
            raw = self._sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 12)
            packets, drops, freeze = struct.unpack("3I", raw)
            self._stats.kernel_packets += packets
            self._stats.kernel_drops += drops
            self._stats.kernel_freeze_q += freeze

    # -- iteration ----------------------------------------------------------------------------------

    def __iter__(self) -> Iterator[PacketBatch]:
        """The batches (never empty ones: a chunk of only non-IP records yields nothing)."""
        return self.batches()

    def batches(
        self, sink: Callable[[PacketBatch, RawFrames | None], object] | None = None
    ) -> Iterator[PacketBatch]:
        """The batches, each first handed to ``sink(batch, raw)`` (e.g. :meth:`Persister.offer`).

        The probe's seam (:class:`~netspectra.services.probe.ProbeService`): the publisher iterates
        ``batches(persister.offer)``, ``stop()`` ends it, ``kernel_drops`` goes into every message.
        ``raw`` is None unless ``keep_raw`` (pcap persistence).
        The sink sees every chunk (non-IP frames too); batches without rows are not yielded.
        """
        for chunk in self.chunks():
            if sink is not None:
                sink(chunk.batch, chunk.raw)
            if len(chunk.batch):
                yield chunk.batch

    def kernel_drops(self) -> int:
        """Packets the kernel dropped on this socket so far (cheap: one ``getsockopt``)."""
        self._poll_kernel_stats()
        return self._stats.kernel_drops

    def chunks(self) -> Iterator[LiveChunk]:
        """Yield :class:`LiveChunk` objects until :meth:`stop`; closes the capture at the end."""
        if self._iterating or self._closed:
            raise RuntimeError("a LiveCapture can be iterated once")
        self._iterating = True
        self._iter_thread = threading.get_ident()
        poller = select.poll()
        poller.register(self._sock.fileno(), select.POLLIN | select.POLLERR)
        poller.register(self._wake_r, select.POLLIN)
        try:
            budget = -1
            while not self._closed:  # closed by this thread while the generator was suspended
                if budget < 0 and self._stop.is_set():
                    # Let the kernel's retire timer hand over its partly filled block, so packets that
                    # arrived before stop() are delivered; then at most one ring's worth more.
                    time.sleep(min(1.0, 2 * self.options.retire_ms / 1000))
                    budget = self.options.block_count
                taken, chunk = self._drain_once()
                if chunk is not None:
                    yield chunk
                if budget >= 0:
                    budget -= taken
                    if taken == 0 or budget <= 0:
                        break
                elif taken == 0:
                    poller.poll(self.options.poll_ms)
        finally:
            self._iterating = False
            self.close()

    def _drain_once(self) -> tuple[int, LiveChunk | None]:
        """Walk, decode and release the ready blocks: ``(blocks taken, chunk or None if no record)``."""
        o = self.options
        n, nb = walk_blocks(
            self._ring,
            o.block_size,
            o.block_count,
            self._block,
            self._cap,
            self.linktype,
            self._rec_off,
            self._rec_caplen,
            self._rec_wirelen,
            self._rec_ts,
            self._rec_linktype,
            self._rec_vlan,
        )
        if nb == 0:
            return 0, None
        if n == 0:
            release_blocks(self._ring32, o.block_size, o.block_count, self._block, nb)
            self._block = (self._block + nb) % o.block_count
            return nb, None
        out = PacketBatch.empty(n, DECODER_COLUMNS if o.extras else ())
        k = decode_records(
            self._ring,
            self._rec_off,
            self._rec_caplen,
            self._rec_wirelen,
            self._rec_ts,
            self._rec_linktype,
            n,
            out.ts_ns,
            out.src_ip,
            out.dst_ip,
            out.src_port,
            out.dst_port,
            out.protocol,
            out.length,
            self._status,
            self._aux,
            extras_into(out, 0, self._rec_vlan) if o.extras else None,
        )
        raw = self._gather(n) if o.keep_raw else None
        release_blocks(self._ring32, o.block_size, o.block_count, self._block, nb)
        self._block = (self._block + nb) % o.block_count
        batch = out.head(k) if k >= n // 2 else out.take(np.arange(k))
        with self._lock:
            st = self._stats
            st.capture.add_records(
                self._rec_caplen[:n], self._rec_wirelen[:n], self._rec_ts[:n], self._rec_linktype[:n]
            )
            st.capture.add_decoded(self._status[:n], self._aux[:n], batch.length)
            st.batches += 1
        return nb, LiveChunk(batch, raw)

    def _gather(self, n: int) -> RawFrames:
        tagged = int(np.count_nonzero(self._rec_vlan[:n] >= 0))
        total = int(self._rec_caplen[:n].sum(dtype=np.int64)) + 4 * tagged
        data = np.empty(total, np.uint8)
        off = np.empty(n + 1, np.int64)
        caplen = np.empty(n, np.uint32)
        gather_frames(self._ring, n, self._rec_off, self._rec_caplen, self._rec_vlan, data, off, caplen)
        return RawFrames(
            data=data,
            off=off,
            caplen=caplen,
            wirelen=self._rec_wirelen[:n].copy(),
            ts_ns=self._rec_ts[:n].copy(),
            linktype=self.linktype,
            # Re-inserted VLAN tags make a frame up to 4 bytes longer than the snap length.
            snaplen=self.options.snaplen + (4 if self.linktype == LINKTYPE_ETHERNET else 0),
        )

    # -- teardown -----------------------------------------------------------------------------------

    def close(self) -> None:
        """Release the ring and the socket (idempotent); the kernel counters are read one last time.

        While another thread iterates, this only stops it: the iterator releases the ring when it
        ends, so the ring is never unmapped under a running kernel.
        """
        if self._closed:
            return
        if self._iterating and threading.get_ident() != self._iter_thread:
            self.stop()
            return
        try:
            if self._mm is not None:
                self._poll_kernel_stats()
        except OSError:
            pass
        with self._lock:
            self._closed = True
        self._ring = self._ring32 = np.empty(0, np.uint8)
        if self._mm is not None:
            try:
                self._mm.close()
            except BufferError:
                log.debug("ring still referenced by a view; left to the GC")
            self._mm = None
        self._sock.close()
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)

    def __enter__(self) -> LiveCapture:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self.close()


# --------------------------------------------------------------------------------------------------
# several sockets of one fan-out group as one source
# --------------------------------------------------------------------------------------------------


@dataclass
class FanoutStats:
    """Counters of a :class:`FanoutCapture`: one :class:`LiveStats` per socket, and their sums."""

    sockets: list[LiveStats] = field(default_factory=list)

    @property
    def kernel_packets(self) -> int:
        return sum(s.kernel_packets for s in self.sockets)

    @property
    def kernel_drops(self) -> int:
        return sum(s.kernel_drops for s in self.sockets)

    @property
    def kernel_freeze_q(self) -> int:
        return sum(s.kernel_freeze_q for s in self.sockets)

    @property
    def batches(self) -> int:
        return sum(s.batches for s in self.sockets)

    @property
    def capture(self) -> CaptureStats:
        """Every socket's :class:`CaptureStats` merged."""
        total = CaptureStats()
        for s in self.sockets:
            total.merge(s.capture)
        return total

    def as_dict(self) -> dict[str, object]:
        c = self.capture
        return {
            "kernel_packets": self.kernel_packets,
            "kernel_drops": self.kernel_drops,
            "kernel_freeze_q": self.kernel_freeze_q,
            "captured_records": c.records,
            "captured_ip_packets": c.ip_packets,
            "captured_bytes": c.wire_bytes,
            "batches": self.batches,
            "sockets": [s.as_dict() for s in self.sockets],
        }


_DONE = object()


class FanoutCapture:
    """``sockets`` live captures of one ``PACKET_FANOUT`` group on one interface, in one process, as one
    :class:`~netspectra.batch.BatchSource`.

    Each socket is read by a thread of its own (the ring walk and decode release the GIL) into a
    bounded queue; iterating yields the batches of all sockets as they come (per socket in order).
    With one socket it is a plain :class:`LiveCapture` behind a thread. A consumer slower than the
    wire fills the queue, the threads wait, the rings fill and the kernel drops — counted in
    ``stats`` as for one socket. ``stop()``/``close()``/``stats`` as :class:`LiveCapture`; all sockets
    are opened in the constructor (:class:`LiveCaptureError` closes those already open).
    """

    def __init__(self, options: LiveOptions, sockets: int = 1, *, queue_batches: int = 64) -> None:
        if sockets < 1:
            raise LiveCaptureError(f"sockets must be at least 1, got {sockets}")
        if sockets > 1 and options.fanout_group is None:
            raise LiveCaptureError(
                f"{sockets} sockets on one interface need a fan-out group (fanout_group / --fanout-group), "
                "or each would see every packet"
            )
        self.options = options
        self.captures: list[LiveCapture] = []
        try:
            for _ in range(sockets):
                self.captures.append(LiveCapture(options))
        except BaseException:
            self.close()
            raise
        self.linktype = self.captures[0].linktype
        self._queue: BoundedQueue[object] = BoundedQueue(max(1, queue_batches), name="capture sockets queue")
        self._stop = threading.Event()
        self._abandoned = threading.Event()
        self._iterated = False

    @property
    def stats(self) -> FanoutStats:
        return FanoutStats([c.live_stats() for c in self.captures])

    def kernel_drops(self) -> int:
        """Packets the kernel dropped on every socket so far."""
        return sum(c.kernel_drops() for c in self.captures)

    def stop(self) -> None:
        """Every socket drains its ready blocks and ends (thread-safe)."""
        self._stop.set()
        for c in self.captures:
            c.stop()

    def close(self) -> None:
        self.stop()
        for c in self.captures:
            c.close()

    def __iter__(self) -> Iterator[PacketBatch]:
        return self.batches()

    def batches(
        self, sink: Callable[[PacketBatch, RawFrames | None], object] | None = None
    ) -> Iterator[PacketBatch]:
        """The batches of every socket (see :meth:`LiveCapture.batches` for ``sink``, which must be
        thread-safe here: each socket's thread calls it, e.g. :meth:`Persister.offer`)."""
        for _, batch in self.tagged(sink):
            yield batch

    def tagged(
        self, sink: Callable[[PacketBatch, RawFrames | None], object] | None = None
    ) -> Iterator[tuple[int, PacketBatch]]:
        """``(socket index, batch)`` of every socket as they come; ends once every socket ended."""
        if self._iterated:
            raise RuntimeError("a FanoutCapture can be iterated once")
        self._iterated = True

        def put(item: object) -> None:
            # blocks while the consumer is behind (the ring holds the packets meanwhile); gives up once
            # the consumer has left
            self._queue.put(item, block=True, abort=self._abandoned)

        def read(i: int, cap: LiveCapture) -> None:
            try:
                for batch in cap.batches(sink):
                    put((i, batch))
            except BaseException as exc:  # handed to the iterating thread
                put(exc)
            finally:
                put(_DONE)

        threads = [
            threading.Thread(target=read, args=(i, c), name=f"ns-capture-{i}", daemon=True)
            for i, c in enumerate(self.captures)
        ]
        for t in threads:
            t.start()
        running = len(threads)
        error: BaseException | None = None
        try:
            while running:
                item = self._queue.get()
                if item is _DONE:
                    running -= 1
                elif isinstance(item, BaseException):
                    error = error or item
                    self.stop()
                else:
                    yield item  # type: ignore[misc]
        finally:
            self._abandoned.set()  # a consumer that left early must not leave the readers blocked
            self.stop()
            for t in threads:
                t.join(timeout=5)
        if error is not None:
            raise error
