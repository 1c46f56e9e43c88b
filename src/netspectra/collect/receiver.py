"""The UDP receive layer: sockets with large buffers, recvmmsg batches, kernel drops, clean stop.

:class:`UdpReceiver` binds one socket per listen address and runs one thread per socket. Each thread
reads up to ``batch`` datagrams per system call — ``recvmmsg(2)`` through :mod:`ctypes` (one call,
the GIL released, no Python per datagram), or a ``recvmsg_into`` loop where recvmmsg is missing —
and hands them to ``on_batch`` as one :class:`~.records.DatagramBatch`: the payloads compacted into
one fresh buffer, sender addresses (IPv4 mapped) and ports, and the kernel's receive time of each
datagram (``SO_TIMESTAMPNS``). ``on_batch`` runs in the receiving thread (decode there, or queue).

Accounting, per listener (:meth:`UdpReceiver.stats`): datagrams, bytes, batches, datagrams cut by
the buffer slot (``truncated``: counted, never decoded as if whole), and the kernel's own drops —
``SO_RXQ_OVFL`` (the socket's overflow counter, carried with each datagram once it is non-zero) and
the ``drops`` column of ``/proc/net/udp{,6}`` for the socket's inode, which also counts drops while
nothing is read. ``SO_RCVBUF`` is asked for (then ``SO_RCVBUFFORCE`` when the kernel grants less
and the process may); the size granted is reported, as Linux reports it (twice the usable payload).

:meth:`UdpReceiver.stop` hands on what the sockets still hold, ends the threads within ``poll_s``
(each blocking read has that timeout) and closes the sockets.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import select
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from netspectra.collect.records import DatagramBatch
from netspectra.jit import njit

log = logging.getLogger(__name__)

SO_RXQ_OVFL = getattr(socket, "SO_RXQ_OVFL", 40)
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
MSG_WAITFORONE = 0x10000
MSG_TRUNC = getattr(socket, "MSG_TRUNC", 0x20)
#: The largest UDP payload over IPv4 (65535 - 20 - 8); a slot of this size never truncates.
MAX_DATAGRAM = 65507

# struct mmsghdr on 64-bit Linux: msghdr (56 bytes) + msg_len (4) + padding
_MMSGHDR = np.dtype(
    {
        "names": ["name", "namelen", "iov", "iovlen", "control", "controllen", "flags", "len"],
        "formats": [np.uint64, np.uint32, np.uint64, np.uint64, np.uint64, np.uint64, np.int32, np.uint32],
        "offsets": [0, 8, 16, 24, 32, 40, 48, 56],
        "itemsize": 64,
    }
)
_SOCKADDR = 128  # sizeof(struct sockaddr_storage)
_CONTROL = 64  # room for SCM_TIMESTAMPNS (32) and SO_RXQ_OVFL (24) control messages


@dataclass
class ListenerStats:
    """Counters of one listener (plain ints, written by its thread only)."""

    address: str
    rcvbuf_requested: int = 0
    rcvbuf_granted: int = 0
    method: str = ""
    datagrams: int = 0
    bytes: int = 0
    batches: int = 0
    truncated: int = 0
    kernel_drops: int = 0  # SO_RXQ_OVFL: the socket's drop counter, as last reported
    errors: int = 0
    extra: dict[str, int] = field(default_factory=dict)


def _libc_recvmmsg() -> Callable[..., int] | None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.recvmmsg
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int, ctypes.c_void_p]
    fn.restype = ctypes.c_int
    return fn


_RECVMMSG = _libc_recvmmsg()


def proc_udp_drops(sock: socket.socket) -> int | None:
    """The ``drops`` column of ``/proc/net/udp`` (or ``udp6``) for ``sock``'s inode; None if absent."""
    inode = str(os.fstat(sock.fileno()).st_ino)
    for name in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            with open(name) as f:
                next(f, None)
                for line in f:
                    cols = line.split()
                    if len(cols) >= 13 and cols[9] == inode:
                        return int(cols[12])
        except OSError:
            continue
    return None


@njit(nogil=True, cache=True)
def _compact(slots, lens, out, starts):
    """Copy ``lens[i]`` bytes of slot row ``i`` to ``out[starts[i]:]``."""
    for i in range(lens.shape[0]):
        s = starts[i]
        for b in range(lens[i]):
            out[s + b] = slots[i, b]


def _senders(addrs: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(k, 16) mapped addresses and ports from ``k`` sockaddr_storage rows (vectorised)."""
    a = addrs[:k]
    family = a[:, 0].astype(np.uint16) | (a[:, 1].astype(np.uint16) << 8)
    port = (a[:, 2].astype(np.uint16) << 8) | a[:, 3]
    out = np.zeros((k, 16), np.uint8)
    v4 = family == socket.AF_INET
    out[v4, 10:12] = 0xFF
    out[v4, 12:16] = a[v4, 4:8]
    v6 = family == socket.AF_INET6
    out[v6] = a[v6, 8:24]
    return out, port


class _Listener:
    """One bound socket and its receive buffers (used by its own thread only)."""

    def __init__(
        self, host: str, port: int, rcvbuf: int, batch: int, slot: int, method: str, linger_s: float = 0.002
    ) -> None:
        fam = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(fam, socket.SOCK_DGRAM)
        try:
            # No SO_REUSEADDR: for UDP on Linux it lets a second socket bind the same port and take every
            # datagram from the first (a second collector silently starved a running one); UDP has no
            # TIME_WAIT, so a restart binds again without it.
            self.stats = ListenerStats(address="")
            self.stats.rcvbuf_requested = rcvbuf
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            granted = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
            if granted < 2 * rcvbuf:  # Linux doubles what it grants; less: capped by net.core.rmem_max
                try:
                    self.sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, rcvbuf)
                    granted = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
                except OSError:
                    pass  # no CAP_NET_ADMIN: keep what rmem_max allowed (logged below)
            self.stats.rcvbuf_granted = granted
            self.sock.setsockopt(socket.SOL_SOCKET, SO_RXQ_OVFL, 1)
            self.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            self.sock.bind((host, port))
        except OSError:
            self.sock.close()
            raise
        bound = self.sock.getsockname()
        self.address = f"[{bound[0]}]:{bound[1]}" if fam == socket.AF_INET6 else f"{bound[0]}:{bound[1]}"
        self.port = int(bound[1])
        self.stats.address = self.address
        self.batch = batch
        self.slot = slot
        self.linger_s = linger_s
        self.closed_proc_drops: int | None = None
        self._poll = select.poll()
        self._poll.register(self.sock.fileno(), select.POLLIN)
        self.method = "recvmmsg" if (method in ("auto", "recvmmsg") and _RECVMMSG is not None) else "recvmsg"
        if method == "recvmmsg" and _RECVMMSG is None:
            log.warning("recvmmsg is not available here; reading with recvmsg")
        self.stats.method = self.method
        self.slots = np.zeros((batch, slot), np.uint8)
        self.names = np.zeros((batch, _SOCKADDR), np.uint8)
        self.control = np.zeros((batch, _CONTROL), np.uint8)
        iov = np.zeros((batch, 2), np.uint64)
        iov[:, 0] = self.slots.ctypes.data + np.arange(batch, dtype=np.uint64) * np.uint64(slot)
        iov[:, 1] = slot
        self.iov = iov
        self.hdrs = np.zeros(batch, _MMSGHDR)
        self._reset_headers()

    def _reset_headers(self) -> None:
        h = self.hdrs
        b = self.batch
        h["name"] = self.names.ctypes.data + np.arange(b, dtype=np.uint64) * np.uint64(_SOCKADDR)
        h["namelen"] = _SOCKADDR
        h["iov"] = self.iov.ctypes.data + np.arange(b, dtype=np.uint64) * np.uint64(16)
        h["iovlen"] = 1
        h["control"] = self.control.ctypes.data + np.arange(b, dtype=np.uint64) * np.uint64(_CONTROL)
        h["controllen"] = _CONTROL
        h["flags"] = 0
        h["len"] = 0

    def read(self, nowait: bool = False) -> DatagramBatch | None:
        """Wait (at most the socket timeout) for datagrams; read up to ``batch`` of them. ``nowait``:
        only what is queued now (None when nothing is)."""
        if self.method == "recvmmsg":
            return self._read_mmsg(nowait)
        return self._read_msg(nowait)

    def _read_mmsg(self, nowait: bool = False) -> DatagramBatch | None:
        self.hdrs["namelen"] = _SOCKADDR
        self.hdrs["controllen"] = _CONTROL
        fd = self.sock.fileno()
        flags = socket.MSG_DONTWAIT if nowait else MSG_WAITFORONE
        k = _RECVMMSG(fd, self.hdrs.ctypes.data, self.batch, flags, None)  # type: ignore[misc]
        if k < 0:
            e = ctypes.get_errno()
            if e in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EINTR):
                return None
            raise OSError(e, os.strerror(e))
        if k == 0:
            return None
        if k < self.batch and self.linger_s > 0 and not nowait:
            # a part-full batch: wait up to linger_s for more, so that a moderate rate still gives
            # batches large enough to amortise the decoder's per-batch cost
            deadline = time.monotonic() + self.linger_s
            while k < self.batch:
                left = deadline - time.monotonic()
                if left <= 0 or not self._poll.poll(left * 1000):
                    break
                m = _RECVMMSG(  # type: ignore[misc]
                    fd,
                    self.hdrs.ctypes.data + k * _MMSGHDR.itemsize,
                    self.batch - k,
                    socket.MSG_DONTWAIT,
                    None,
                )
                if m <= 0:
                    break
                k += m
        h = self.hdrs[:k]
        lens = h["len"].astype(np.int64)
        trunc = (h["flags"] & MSG_TRUNC) != 0
        sender, port = _senders(self.names, k)
        ts, drops = _control(self.control, h["controllen"], k)
        return self._batch(lens, trunc, sender, port, ts, drops)

    def _read_msg(self, nowait: bool = False) -> DatagramBatch | None:
        lens, trunc, senders, ports, stamps = [], [], [], [], []
        drops = -1
        flags = socket.MSG_DONTWAIT if nowait else 0
        deadline = 0.0
        for i in range(self.batch):
            try:
                n, anc, fl, addr = self.sock.recvmsg_into([memoryview(self.slots[i])], 64, flags)
            except (BlockingIOError, InterruptedError, TimeoutError):
                left = deadline - time.monotonic()
                if i == 0 or nowait or left <= 0 or not self._poll.poll(left * 1000):
                    break
                try:
                    n, anc, fl, addr = self.sock.recvmsg_into([memoryview(self.slots[i])], 64, flags)
                except (BlockingIOError, InterruptedError, TimeoutError):
                    break
            if i == 0:
                deadline = time.monotonic() + self.linger_s
            flags = socket.MSG_DONTWAIT
            lens.append(n)
            trunc.append(bool(fl & MSG_TRUNC))
            a = socket.inet_pton(socket.AF_INET6 if ":" in addr[0] else socket.AF_INET, addr[0])
            senders.append(a if len(a) == 16 else b"\x00" * 10 + b"\xff\xff" + a)
            ports.append(addr[1])
            stamp = time.time_ns()
            for level, typ, data in anc:
                if level == socket.SOL_SOCKET and typ == SO_TIMESTAMPNS and len(data) >= 16:
                    sec, nsec = np.frombuffer(data[:16], np.int64)
                    stamp = int(sec) * 1_000_000_000 + int(nsec)
                elif level == socket.SOL_SOCKET and typ == SO_RXQ_OVFL and len(data) >= 4:
                    drops = max(drops, int(np.frombuffer(data[:4], np.uint32)[0]))
            stamps.append(stamp)
        if not lens:
            return None
        return self._batch(
            np.array(lens, np.int64),
            np.array(trunc, bool),
            np.frombuffer(b"".join(senders), np.uint8).reshape(-1, 16),
            np.array(ports, np.uint16),
            np.array(stamps, np.int64),
            drops,
        )

    def _batch(
        self,
        lens: np.ndarray,
        trunc: np.ndarray,
        sender: np.ndarray,
        port: np.ndarray,
        ts: np.ndarray,
        drops: int,
    ) -> DatagramBatch | None:
        st = self.stats
        k = lens.shape[0]
        if drops >= 0:
            st.kernel_drops = max(st.kernel_drops, drops)
        if trunc.any():
            # a datagram larger than the slot: counted, and not handed on as if it were whole
            st.truncated += int(trunc.sum())
            keep = ~trunc
            lens, sender, port, ts = lens[keep], sender[keep], port[keep], ts[keep]
            idx = np.flatnonzero(keep)
        else:
            idx = None
        n = lens.shape[0]
        st.datagrams += n
        st.bytes += int(lens.sum())
        st.batches += 1
        if n == 0:
            return None
        starts = np.zeros(n, np.int64)
        starts[1:] = np.cumsum(lens[:-1])
        out = np.empty(int(lens.sum()), np.uint8)
        slots = self.slots[:k] if idx is None else self.slots[idx]
        _compact(slots, lens, out, starts)
        return DatagramBatch(out, starts, lens.astype(np.uint32), sender, port.astype(np.uint16), ts)

    def close(self) -> None:
        if self.sock.fileno() >= 0:
            try:  # the last word of /proc on this socket, for stats() after the stop
                self.closed_proc_drops = proc_udp_drops(self.sock)
            except OSError:
                self.closed_proc_drops = None
        self.sock.close()


def _control(control: np.ndarray, controllen: np.ndarray, k: int) -> tuple[np.ndarray, int]:
    """Receive times (ns) and the largest SO_RXQ_OVFL count in ``k`` control buffers (vectorised).

    The kernel writes SCM_TIMESTAMPNS first (a 16-byte cmsghdr then a timespec: 32 bytes), then, once
    the socket has dropped anything, SO_RXQ_OVFL (a cmsghdr then a uint32) at byte 32.
    """
    c = control[:k]
    typ0 = c[:, 12:16].copy().view(np.int32).reshape(-1)
    sec = c[:, 16:24].copy().view(np.int64).reshape(-1)
    nsec = c[:, 24:32].copy().view(np.int64).reshape(-1)
    ts = np.where(typ0 == SO_TIMESTAMPNS, sec * 1_000_000_000 + nsec, time.time_ns())
    has = (controllen[:k] >= 52) & (c[:, 44:48].copy().view(np.int32).reshape(-1) == SO_RXQ_OVFL)
    drops = int(c[has, 48:52].copy().view(np.uint32).max()) if has.any() else -1
    return ts.astype(np.int64), drops


class UdpReceiver:
    """Receive export datagrams on several UDP addresses (see the module docstring).

    ``addresses``: ``(host, port)`` pairs (port 0: any free port; read the bound ones from
    :attr:`addresses`). ``on_batch(batch)`` is called in the listener's thread for every batch; an
    exception there is logged (rate-limited) and counted, and receiving goes on. ``method``:
    ``auto`` (recvmmsg if available), ``recvmmsg`` or ``recvmsg``. ``slot``: the largest datagram kept
    whole (bigger ones are counted as truncated and dropped). ``linger_s``: how long a part-full batch
    waits for more datagrams (0: hand over what one read gives) — a bound on the latency it adds, and
    what keeps batches large, so the decoder's per-batch cost small, at moderate rates. ``drain_s``:
    the longest :meth:`stop` reads what the sockets still hold.
    """

    def __init__(
        self,
        addresses: list[tuple[str, int]],
        on_batch: Callable[[DatagramBatch], None],
        *,
        rcvbuf: int = 32 << 20,
        batch: int = 256,
        slot: int = MAX_DATAGRAM,
        method: str = "auto",
        poll_s: float = 0.2,
        linger_s: float = 0.002,
        drain_s: float = 2.0,
    ) -> None:
        if method not in ("auto", "recvmmsg", "recvmsg"):
            raise ValueError(f"method must be auto, recvmmsg or recvmsg, not {method!r}")
        self._on_batch = on_batch
        self._poll_s = poll_s
        self._drain_s = drain_s
        # compile (or load) the copy kernel now, not while the first datagrams wait in the socket
        _compact(
            np.zeros((1, 1), np.uint8), np.ones(1, np.int64), np.zeros(1, np.uint8), np.zeros(1, np.int64)
        )
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._listeners: list[_Listener] = []
        try:
            for host, port in addresses:
                lst = _Listener(host, port, rcvbuf, batch, slot, method, linger_s)
                lst.sock.settimeout(None)
                lst.sock.setsockopt(
                    socket.SOL_SOCKET, socket.SO_RCVTIMEO, _timeval(poll_s)
                )  # a blocking read returns within poll_s, so stop() is prompt
                self._listeners.append(lst)
                if lst.stats.rcvbuf_granted < 2 * rcvbuf:
                    log.warning(
                        "collector %s: SO_RCVBUF %d asked, the kernel granted %d (net.core.rmem_max caps it; "
                        "raise it with sysctl -w net.core.rmem_max=%d, or run with CAP_NET_ADMIN)",
                        lst.address,
                        rcvbuf,
                        lst.stats.rcvbuf_granted // 2,
                        rcvbuf,
                    )
                else:
                    log.info("collector listening on udp://%s (SO_RCVBUF %d granted)", lst.address, rcvbuf)
        except OSError:
            self.close()
            raise

    @property
    def addresses(self) -> list[str]:
        """``host:port`` of every bound listener."""
        return [lst.address for lst in self._listeners]

    @property
    def ports(self) -> list[int]:
        return [lst.port for lst in self._listeners]

    def start(self) -> UdpReceiver:
        """Start one receiving thread per listener."""
        for lst in self._listeners:
            t = threading.Thread(target=self._run, args=(lst,), name=f"collect-{lst.address}", daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def _run(self, lst: _Listener) -> None:
        last_err = 0.0
        draining = False
        drain_until = 0.0
        while True:
            # once stop() is asked: read what the socket still holds, without waiting, then end (a
            # sender that never pauses cannot keep the stop waiting: at most drain_s of it)
            if not draining and self._stop.is_set():
                draining, drain_until = True, time.monotonic() + self._drain_s
            elif draining and time.monotonic() > drain_until:
                break
            try:
                batch = lst.read(nowait=draining)
            except OSError as exc:
                if draining:
                    break
                lst.stats.errors += 1
                if time.monotonic() - last_err > 30:
                    last_err = time.monotonic()
                    log.error("collector %s: receive failed: %s", lst.address, exc)
                time.sleep(0.05)
                continue
            if batch is None:
                if draining:
                    break
                continue
            try:
                self._on_batch(batch)
            except Exception:  # the consumer's failure must not stop the listener; it is counted
                lst.stats.errors += 1
                if time.monotonic() - last_err > 30:
                    last_err = time.monotonic()
                    log.exception("collector %s: handling a batch failed", lst.address)

    def stop(self) -> None:
        """Stop the threads and close the sockets. Each thread first hands on every datagram its socket
        holds at that moment (a graceful stop loses nothing already received), then ends (within
        ``poll_s`` of a read it was waiting in)."""
        self._stop.set()
        for t in self._threads:
            t.join(timeout=10 * self._poll_s + 5)
        self._threads.clear()
        self.close()

    def close(self) -> None:
        for lst in self._listeners:
            lst.close()

    def stats(self) -> list[dict[str, object]]:
        """Per listener: counters, SO_RCVBUF asked/granted, read method, and the kernel's drops:
        ``kernel_drops`` (SO_RXQ_OVFL as carried by the last datagram read: it lags behind drops that
        happen while nothing is queued after them), ``proc_drops`` (``/proc/net/udp``, current; None
        when the socket is closed or /proc is absent) and ``drops``, the larger of the two."""
        out = []
        for lst in self._listeners:
            s = lst.stats
            row: dict[str, object] = {k: v for k, v in s.__dict__.items() if k != "extra"}
            if lst.sock.fileno() < 0:
                row["proc_drops"] = lst.closed_proc_drops
            else:
                try:
                    row["proc_drops"] = proc_udp_drops(lst.sock)
                except OSError:
                    row["proc_drops"] = None
            # the best count: /proc is current; SO_RXQ_OVFL only as recent as the last datagram read
            row["drops"] = max(int(s.kernel_drops), int(row["proc_drops"] or 0))
            out.append(row)
        return out

    def __enter__(self) -> UdpReceiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _timeval(seconds: float) -> bytes:
    sec = int(seconds)
    usec = int((seconds - sec) * 1_000_000)
    return np.array([sec, usec], np.int64).tobytes()
