"""Export datagrams from a capture file: the UDP payloads a collector would have received.

A capture of exports (``tcpdump -w exports.pcap udp port 2055``) is the usual way to debug an
exporter; :func:`datagrams_from_capture` turns one into :class:`~.records.DatagramBatch` objects for
:class:`~.decoder.FlowDecoder` (the offline ``analyze --flow-export`` path, and the tests on real
exports). The container is walked by :class:`~netspectra.capture.reader.CaptureReader`; a kernel
finds each record's UDP payload behind Ethernet (802.1Q/QinQ tags), Linux SLL/SLL2, raw IP or BSD
null headers, over IPv4 or IPv6 (hop-by-hop, routing and destination options headers walked).
Records that are not UDP, IP fragments (a capture shows an export datagram above the path MTU in
pieces that the live socket would have had reassembled by the kernel; they are not reassembled
here) and payloads cut by the snap length are counted in :class:`CaptureDatagramStats`, by reason.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from os import PathLike

import numpy as np

from netspectra.collect.nf_kernels import _be16, _put_v4, _put_v6, _u8
from netspectra.collect.records import DatagramBatch
from netspectra.jit import njit

LOCATE_OK = 0
LOCATE_NOT_UDP = 1  # not IP, or IP but not UDP, or a link type not handled
LOCATE_FRAGMENT = 2  # an IP fragment (not reassembled)
LOCATE_TRUNCATED = 3  # the snap length cut the headers or the payload
LOCATE_PORT = 4  # UDP, but not to one of the wanted ports
LOCATE_NAMES = {
    LOCATE_OK: "ok",
    LOCATE_NOT_UDP: "not_udp",
    LOCATE_FRAGMENT: "ip_fragment",
    LOCATE_TRUNCATED: "truncated",
    LOCATE_PORT: "other_port",
}


@njit(nogil=True, cache=True)
def locate_udp(buf, rec_off, rec_caplen, rec_linktype, n, ports, pay_off, pay_len, src, sport, status):
    """Find the UDP payload of records ``0 .. n-1``.

    Per record: ``status`` (``LOCATE_*``), and when OK ``pay_off``/``pay_len`` (in ``buf``), ``src``
    (IP source, 16 bytes mapped), ``sport``. ``ports`` (int64) lists wanted destination ports; empty:
    every UDP datagram. Returns how many are OK.
    """
    buflen = buf.shape[0]
    k = 0
    for i in range(n):
        status[i] = LOCATE_NOT_UDP
        off = np.int64(rec_off[i])
        end = off + np.int64(rec_caplen[i])
        if off < 0 or end > buflen:
            status[i] = LOCATE_TRUNCATED
            continue
        lt = rec_linktype[i]
        p = off
        et = -1
        if lt == 1:
            if end - p < 14:
                status[i] = LOCATE_TRUNCATED
                continue
            et = _be16(buf, p + 12)
            p += 14
        elif lt == 113:
            if end - p < 16:
                status[i] = LOCATE_TRUNCATED
                continue
            et = _be16(buf, p + 14)
            p += 16
        elif lt == 276:
            if end - p < 20:
                status[i] = LOCATE_TRUNCATED
                continue
            et = _be16(buf, p)
            p += 20
        elif lt == 0 or lt == 108:
            if end - p < 4:
                status[i] = LOCATE_TRUNCATED
                continue
            p += 4
            et = 0  # by the version nibble below
        elif lt == 101 or lt == 12 or lt == 14 or lt == 228 or lt == 229:
            et = 0
        else:
            continue
        while et == 0x8100 or et == 0x88A8 or et == 0x9100:
            if end - p < 4:
                et = -2
                break
            et = _be16(buf, p + 2)
            p += 4
        if et == -2:
            status[i] = LOCATE_TRUNCATED
            continue
        if end - p < 1:
            status[i] = LOCATE_TRUNCATED
            continue
        ver = _u8(buf, p) >> 4
        if et == 0x0800 or (et == 0 and ver == 4):
            if end - p < 20:
                status[i] = LOCATE_TRUNCATED
                continue
            ihl = (_u8(buf, p) & 0xF) * 4
            if ver != 4 or ihl < 20:
                continue
            frag = _be16(buf, p + 6)
            if (frag & 0x3FFF) != 0:
                status[i] = LOCATE_FRAGMENT
                continue
            if _u8(buf, p + 9) != 17:
                continue
            _put_v4(src, i, (_be16(buf, p + 12) << 16) | _be16(buf, p + 14))
            p += ihl
        elif et == 0x86DD or (et == 0 and ver == 6):
            if end - p < 40:
                status[i] = LOCATE_TRUNCATED
                continue
            nh = _u8(buf, p + 6)
            _put_v6(src, i, buf, p + 8)
            p += 40
            frag = False
            while nh == 0 or nh == 43 or nh == 60 or nh == 44:
                if end - p < 8:
                    break
                if nh == 44:
                    frag = True
                    break
                nh = _u8(buf, p)
                p += (_u8(buf, p + 1) + 1) * 8
            if frag:
                status[i] = LOCATE_FRAGMENT
                continue
            if nh != 17:
                continue
        else:
            continue
        if end - p < 8:
            status[i] = LOCATE_TRUNCATED
            continue
        ulen = _be16(buf, p + 4)
        if ulen < 8 or p + ulen > end:
            status[i] = LOCATE_TRUNCATED
            continue
        dport = _be16(buf, p + 2)
        if ports.shape[0] > 0:
            want = False
            for q in range(ports.shape[0]):
                if ports[q] == dport:
                    want = True
            if not want:
                status[i] = LOCATE_PORT
                continue
        sport[i] = _be16(buf, p)
        pay_off[i] = p + 8
        pay_len[i] = ulen - 8
        status[i] = LOCATE_OK
        k += 1
    return k


@dataclass
class CaptureDatagramStats:
    """What :func:`datagrams_from_capture` found: records read, datagrams given, the rest by reason."""

    records: int = 0
    datagrams: int = 0
    skipped: dict[str, int] = field(default_factory=dict)


def datagrams_from_capture(
    path: str | PathLike[str],
    *,
    ports: tuple[int, ...] = (),
    batch_records: int = 65536,
    stats: CaptureDatagramStats | None = None,
) -> Iterator[DatagramBatch]:
    """Yield the UDP payloads of a capture file as datagram batches (capture time as receive time).

    ``ports``: keep only datagrams to these UDP destination ports (empty: all). Batches own their
    bytes (copied out of the reader's window). ``stats`` (optional) is filled as the file is read.
    Raises :class:`~netspectra.capture.errors.CaptureError` as the capture reader does, after
    yielding every datagram before the damage.
    """
    from netspectra.capture.reader import CaptureReader

    st = stats if stats is not None else CaptureDatagramStats()
    want = np.array(ports, np.int64)
    reader = CaptureReader(path, batch_size=batch_records)
    for chunk in reader.records(batch_records):
        n = chunk.n
        pay_off = np.zeros(n, np.int64)
        pay_len = np.zeros(n, np.uint32)
        src = np.zeros((n, 16), np.uint8)
        sport = np.zeros(n, np.uint16)
        status = np.zeros(n, np.uint8)
        buf = np.asarray(chunk.buf).view()
        buf.flags.writeable = False  # one compiled kernel whatever the byte source (mmap or gzip)
        off = np.ascontiguousarray(chunk.off, np.int64)
        caplen = np.ascontiguousarray(chunk.caplen, np.int64)
        linktype = np.ascontiguousarray(chunk.linktype, np.int64)
        locate_udp(buf, off, caplen, linktype, n, want, pay_off, pay_len, src, sport, status)
        st.records += n
        for code, c in zip(*np.unique(status, return_counts=True), strict=True):
            if code != LOCATE_OK:
                name = LOCATE_NAMES[int(code)]
                st.skipped[name] = st.skipped.get(name, 0) + int(c)
        ok = np.flatnonzero(status == LOCATE_OK)
        if not ok.size:
            continue
        lens = pay_len[ok]
        starts = np.zeros(ok.size, np.int64)
        starts[1:] = np.cumsum(lens[:-1], dtype=np.int64)
        out = np.empty(int(lens.sum()), np.uint8)
        _gather(buf, pay_off[ok], lens, starts, out)
        st.datagrams += int(ok.size)
        yield DatagramBatch(
            buf=out,
            off=starts,
            length=lens,
            sender=src[ok],
            sender_port=sport[ok],
            received_ns=np.ascontiguousarray(chunk.ts_ns[ok], np.int64),
        )


@njit(nogil=True, cache=True)
def _gather(buf, src_off, lens, dst_off, out):
    for i in range(src_off.shape[0]):
        o = src_off[i]
        d = dst_off[i]
        for b in range(lens[i]):
            out[d + b] = buf[o + b]
