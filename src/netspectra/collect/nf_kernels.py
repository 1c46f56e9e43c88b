"""NetFlow v5 / v9 and IPFIX kernels: datagram headers, v5 records, v9/IPFIX data sets, sequences.

Four kernels, each called once per batch of datagrams (or once per run of data sets between two
template-bearing sets), none running Python per record:

* :func:`scan_datagrams` reads every datagram's header (any of the four protocols, detected from the
  first bytes), checks it, and lists the sets of v9/IPFIX messages;
* :func:`decode_v5` turns NetFlow v5 records into rows;
* :func:`decode_sets` runs each data set through its compiled template (:mod:`.templates`) and stops
  at the first set that needs Python (a template or options template set, options data, or no room
  left in the outputs), so the caller can apply it and resume;
* :func:`check_sequences` follows each stream's sequence number and counts what was lost.

Every read is bounds-checked against the datagram (or set) it belongs to: hostile input gives a
status code, never a read outside ``buf``. The plain-Python reference of all four is
:mod:`netspectra.collect.reference`; tests check that both decode the same rows.

The codes below are literals (numba freezes globals into its cache, which only this file's changes
invalidate); a unit test checks them against :mod:`.ie` and :mod:`.records`.
"""

from __future__ import annotations

import numpy as np

from netspectra.jit import njit

# datagram status (DG_NAMES in decoder.py)
DG_OK = 0
DG_TRUNCATED = 1  # shorter than its header, or than the length the header declares
DG_BAD_VERSION = 2  # not NetFlow 5/9, IPFIX or sFlow 5
DG_BAD_SET = 3  # a set length below 4 or past the end of the message: sets before it are kept
DG_BAD_V5_COUNT = 4  # v5 count of 0 or above 30, or more records than the datagram holds
DG_BAD_AGENT = 5  # sFlow agent address type neither 1 (IPv4) nor 2 (IPv6)
DG_BAD_SAMPLE = 6  # an sFlow sample or record overruns its container: samples before it are kept
DG_OVER_LIMIT = 7  # exporter or stream limit reached (set by the decoder): not decoded

# set status
SET_OK = 0
SET_UNKNOWN_TEMPLATE = 1
SET_MALFORMED = 2  # a record overruns its set: records before it are kept
SET_RESERVED = 3  # set id 2..255 (v9) / 4..255 (IPFIX): ignored
SET_CONTROL = 4  # template / options template set (handled by the caller)
SET_OPTIONS_DATA = 5  # data set of an options template (handled by the caller)
SET_REFRESH = 6  # (set by the caller before the call) a template set identical to one applied: skipped

# decode_sets stop reasons
STOP_DONE = 0
STOP_CONTROL = 1
STOP_OPTIONS = 2
STOP_FULL = 3

# export kinds (records.py)
_NETFLOW5 = 1
_NETFLOW9 = 2
_IPFIX = 3
_SFLOW5 = 4
_RATE_RECORD = 1

# template flags (templates.py)
F_OPTIONS = 1
F_REVERSE = 2  # reverse-PEN counters present: a second, reversed row per record
F_R_PKTS = 4  # ... among them reverse packets (their 0 means "no reverse traffic")
F_R_TCP = 8
F_R_ICMP = 16

_NTP_UNIX = 2208988800  # seconds from 1900-01-01 to 1970-01-01
_MAX_S = 9_200_000_000  # clamps keep bogus times inside int64 nanoseconds
_MAX_MS = 9_200_000_000_000
_MAX_US = 9_200_000_000_000_000


@njit(nogil=True, cache=True, inline="always")
def _u8(buf, p):
    return np.int64(buf[np.uint64(p)])


@njit(nogil=True, cache=True, inline="always")
def _be16(buf, p):
    return (_u8(buf, p) << 8) | _u8(buf, p + 1)


@njit(nogil=True, cache=True, inline="always")
def _be32(buf, p):
    return (_be16(buf, p) << 16) | _be16(buf, p + 2)


@njit(nogil=True, cache=True, inline="always")
def _ben(buf, p, n):
    """Big-endian unsigned number of ``n`` (1..8) bytes at ``p``, as uint64."""
    v = np.uint64(0)
    for k in range(n):
        v = (v << np.uint64(8)) | np.uint64(buf[np.uint64(p + k)])
    return v


@njit(nogil=True, cache=True, inline="always")
def _i32(v):
    """The signed 32-bit value of the low 32 bits of ``v`` (uptime differences wrap at 2^32 ms)."""
    v = v & 0xFFFFFFFF
    return v - 0x100000000 if v >= 0x80000000 else v


@njit(nogil=True, cache=True, inline="always")
def _ntp_ns(v):
    """RFC 7011 §6.1.9 NTP timestamp (uint64) to ns since the Unix epoch (clamped to int64)."""
    sec = np.int64(v >> np.uint64(32))
    frac = v & np.uint64(0xFFFFFFFF)
    if sec > _MAX_S + _NTP_UNIX:
        sec = _MAX_S + _NTP_UNIX
    return (sec - _NTP_UNIX) * 1_000_000_000 + np.int64((frac * np.uint64(1_000_000_000)) >> np.uint64(32))


@njit(nogil=True, cache=True, inline="always")
def _clamp(v, lim):
    """A uint64 ``v`` as int64, at most ``lim``."""
    if v > np.uint64(lim):
        return np.int64(lim)
    return np.int64(v)


@njit(nogil=True, cache=True, inline="always")
def _put_v4(out, j, v):
    for k in range(10):
        out[j, k] = 0
    out[j, 10] = 0xFF
    out[j, 11] = 0xFF
    out[j, 12] = (v >> 24) & 0xFF
    out[j, 13] = (v >> 16) & 0xFF
    out[j, 14] = (v >> 8) & 0xFF
    out[j, 15] = v & 0xFF


@njit(nogil=True, cache=True, inline="always")
def _put_v6(out, j, buf, p):
    if p < 0:
        for k in range(16):
            out[j, k] = 0
    else:
        for k in range(16):
            out[j, k] = buf[np.uint64(p + k)]


@njit(nogil=True, cache=True, inline="always")
def _is_zero(buf, p, n):
    for k in range(n):  # noqa: SIM110 (numba: no generator in all())
        if buf[np.uint64(p + k)] != 0:
            return False
    return True


@njit(nogil=True, cache=True, inline="always")
def _ports_icmp(proto, sport, dport, icmp_tc, icmp_t, icmp_c):
    """NetSpectra's flow semantics on exported fields: ``(sport, dport, icmp_type, icmp_code)``.

    Ports survive only for TCP, UDP and SCTP (as the capture decoder keeps them); ICMP type and code
    come from the ICMP fields, else from the destination port when the source port is 0 (Cisco's
    placing in v5 and many v9 exporters).
    """
    t = 0
    c = 0
    if proto == 1 or proto == 58:
        if icmp_tc >= 0:
            t = (icmp_tc >> 8) & 0xFF
            c = icmp_tc & 0xFF
        elif icmp_t >= 0 or icmp_c >= 0:
            t = max(icmp_t, 0) & 0xFF
            c = max(icmp_c, 0) & 0xFF
        elif sport == 0:
            t = (dport >> 8) & 0xFF
            c = dport & 0xFF
    if proto == 6 or proto == 17 or proto == 132:
        return sport, dport, t, c
    return 0, 0, t, c


# --------------------------------------------------------------------------------------------------
# datagram headers
# --------------------------------------------------------------------------------------------------


@njit(nogil=True, cache=True)
def scan_datagrams(
    buf,
    dg_off,
    dg_len,
    dg_recv_ns,
    sender,
    n,
    dg_kind,
    dg_status,
    dg_domain,
    dg_seq,
    dg_count,
    dg_export_ns,
    dg_uptime_ms,
    dg_aux,
    dg_addr,
    dg_body,
    dg_end,
    set_off,
    set_len,
    set_dg,
    set_id,
):
    """Read the header of datagrams ``0 .. n-1``; list the sets of v9/IPFIX messages.

    Per datagram: ``dg_kind`` (0 unknown, else the export kind), ``dg_status`` (``DG_*``),
    ``dg_domain`` (v9 source id, IPFIX observation domain, sFlow sub-agent, v5 engine type/id),
    ``dg_seq`` (the header's sequence number), ``dg_count`` (v5 records, v9 header count, sFlow
    samples), ``dg_export_ns`` (the header's export time; sFlow: the receive time), ``dg_uptime_ms``
    (v5/v9/sFlow uptime, -1 for IPFIX), ``dg_aux`` (v5 sampling field), ``dg_addr`` (exporter
    address: the sender, or the sFlow agent address), ``dg_body``/``dg_end`` (the part after the
    header). Set arrays need ``sum(dg_len) // 4 + n`` entries. Returns the number of sets listed, in
    datagram order then set order.
    """
    buflen = np.int64(buf.shape[0])
    ns = 0
    for i in range(n):
        off = np.int64(dg_off[i])
        if off < 0 or off > buflen:
            off = buflen
        end = off + np.int64(dg_len[i])
        if end > buflen:
            end = buflen
        size = end - off
        dg_kind[i] = 0
        dg_status[i] = DG_OK
        dg_domain[i] = 0
        dg_seq[i] = 0
        dg_count[i] = 0
        dg_export_ns[i] = dg_recv_ns[i]
        dg_uptime_ms[i] = -1
        dg_aux[i] = 0
        dg_body[i] = off
        dg_end[i] = end
        for k in range(16):
            dg_addr[i, k] = sender[i, k]
        if size < 4:
            dg_status[i] = DG_TRUNCATED
            continue
        version = _be16(buf, off)
        if version == 5:
            dg_kind[i] = _NETFLOW5
            if size < 24:
                dg_status[i] = DG_TRUNCATED
                continue
            count = _be16(buf, off + 2)
            dg_count[i] = count
            dg_uptime_ms[i] = _be32(buf, off + 4)
            dg_export_ns[i] = _be32(buf, off + 8) * 1_000_000_000 + min(_be32(buf, off + 12), 999_999_999)
            dg_seq[i] = _be32(buf, off + 16)
            dg_domain[i] = (_u8(buf, off + 20) << 8) | _u8(buf, off + 21)
            dg_aux[i] = _be16(buf, off + 22)
            dg_body[i] = off + 24
            if count == 0 or count > 30 or size < 24 + 48 * count:
                dg_status[i] = DG_BAD_V5_COUNT
        elif version == 9 or version == 10:
            hl = 20 if version == 9 else 16
            dg_kind[i] = _NETFLOW9 if version == 9 else _IPFIX
            if size < hl:
                dg_status[i] = DG_TRUNCATED
                continue
            if version == 9:
                dg_count[i] = _be16(buf, off + 2)
                dg_uptime_ms[i] = _be32(buf, off + 4)
                dg_export_ns[i] = _be32(buf, off + 8) * 1_000_000_000
                dg_seq[i] = _be32(buf, off + 12)
                dg_domain[i] = _be32(buf, off + 16)
            else:
                mlen = _be16(buf, off + 2)
                if mlen < hl or mlen > size:
                    dg_status[i] = DG_TRUNCATED
                    continue
                end = off + mlen  # bytes after the message are not part of it
                dg_end[i] = end
                dg_export_ns[i] = _be32(buf, off + 4) * 1_000_000_000
                dg_seq[i] = _be32(buf, off + 8)
                dg_domain[i] = _be32(buf, off + 12)
            dg_body[i] = off + hl
            p = off + hl
            while end - p >= 4:
                sid = _be16(buf, p)
                slen = _be16(buf, p + 2)
                if slen < 4 or slen > end - p:
                    # v9 exporters may pad the datagram with zeros after the last flowset
                    if not (version == 9 and sid == 0 and slen == 0 and _is_zero(buf, p, end - p)):
                        dg_status[i] = DG_BAD_SET
                    break
                set_off[ns] = p
                set_len[ns] = slen
                set_dg[ns] = i
                set_id[ns] = sid
                ns += 1
                p += slen
        elif version == 0 and _be32(buf, off) == 5:
            dg_kind[i] = _SFLOW5
            if size < 8:
                dg_status[i] = DG_TRUNCATED
                continue
            at = _be32(buf, off + 4)
            if at == 1:
                alen = 4
            elif at == 2:
                alen = 16
            else:
                dg_status[i] = DG_BAD_AGENT
                continue
            if size < 8 + alen + 16:
                dg_status[i] = DG_TRUNCATED
                continue
            if alen == 4:
                _put_v4(dg_addr, i, _be32(buf, off + 8))
            else:
                _put_v6(dg_addr, i, buf, off + 8)
            q = off + 8 + alen
            dg_domain[i] = _be32(buf, q)
            dg_seq[i] = _be32(buf, q + 4)
            dg_uptime_ms[i] = _be32(buf, q + 8)
            dg_count[i] = _be32(buf, q + 12)
            dg_body[i] = q + 16
        else:
            dg_status[i] = DG_BAD_VERSION
    return ns


# --------------------------------------------------------------------------------------------------
# NetFlow v5
# --------------------------------------------------------------------------------------------------


@njit(nogil=True, cache=True)
def decode_v5(
    buf,
    dgs,
    dg_body,
    dg_count,
    dg_export_ns,
    dg_uptime_ms,
    dg_aux,
    dg_recv_ns,
    dg_domain,
    dg_stream,
    src_ip,
    dst_ip,
    ip_version,
    src_port,
    dst_port,
    protocol,
    tcp_flags,
    icmp_type,
    icmp_code,
    packets,
    nbytes,
    flow_start_ns,
    flow_end_ns,
    received_ns,
    in_if,
    out_if,
    src_vlan,
    dst_vlan,
    sampling_rate,
    sampling_source,
    hdr_off,
    hdr_len,
    hdr_wirelen,
    hdr_linktype,
    export_kind,
    domain,
    row_stream,
    row_sampler,
    j,
):
    """Rows for the records of the v5 datagrams ``dgs`` (checked by :func:`scan_datagrams`: status OK),
    written from row ``j``; returns the next free row. Outputs need ``sum(dg_count[dgs])`` rows."""
    for t in range(dgs.shape[0]):
        i = dgs[t]
        base = np.int64(dg_body[i])
        exp_ns = np.int64(dg_export_ns[i])
        up = np.int64(dg_uptime_ms[i])
        rate = np.int64(dg_aux[i]) & 0x3FFF
        for r in range(np.int64(dg_count[i])):
            p = base + 48 * r
            _put_v4(src_ip, j, _be32(buf, p))
            _put_v4(dst_ip, j, _be32(buf, p + 4))
            ip_version[j] = 4
            in_if[j] = _be16(buf, p + 12)
            out_if[j] = _be16(buf, p + 14)
            packets[j] = np.uint64(_be32(buf, p + 16))
            nbytes[j] = np.uint64(_be32(buf, p + 20))
            flow_start_ns[j] = exp_ns - _i32(up - _be32(buf, p + 24)) * 1_000_000
            flow_end_ns[j] = exp_ns - _i32(up - _be32(buf, p + 28)) * 1_000_000
            proto = _u8(buf, p + 38)
            sp, dp, it, ic = _ports_icmp(proto, _be16(buf, p + 32), _be16(buf, p + 34), -1, -1, -1)
            src_port[j] = sp
            dst_port[j] = dp
            icmp_type[j] = it
            icmp_code[j] = ic
            protocol[j] = proto
            tcp_flags[j] = _u8(buf, p + 37)
            received_ns[j] = dg_recv_ns[i]
            src_vlan[j] = 0
            dst_vlan[j] = 0
            sampling_rate[j] = rate
            sampling_source[j] = _RATE_RECORD if rate > 0 else 0
            hdr_off[j] = 0
            hdr_len[j] = 0
            hdr_wirelen[j] = 0
            hdr_linktype[j] = 0
            export_kind[j] = _NETFLOW5
            domain[j] = dg_domain[i]
            row_stream[j] = dg_stream[i]
            row_sampler[j] = -1
            j += 1
    return j


# --------------------------------------------------------------------------------------------------
# NetFlow v9 / IPFIX data sets
# --------------------------------------------------------------------------------------------------


@njit(nogil=True, cache=True, inline="always")
def ht_lookup(keys, vals, key):
    """Slot of ``key`` in the open-addressing table ``keys``/``vals`` (linear probing, Fibonacci
    hashing, -1 empty, -2 deleted), or -1."""
    mask = np.uint64(keys.shape[0] - 1)
    h = (np.uint64(key) * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(40)
    for _ in range(keys.shape[0]):
        i = np.int64(h & mask)
        k = keys[i]
        if k == key:
            return np.int64(vals[i])
        if k == -1:
            return -1
        h += np.uint64(1)
    return -1


@njit(nogil=True, cache=True)
def decode_sets(
    buf,
    set_off,
    set_len,
    set_dg,
    set_id,
    s0,
    nsets,
    dg_stream,
    dg_kind,
    dg_export_ns,
    dg_uptime_ms,
    dg_recv_ns,
    dg_domain,
    stream_sysinit_ms,
    ht_keys,
    ht_vals,
    t_kind,
    t_len,
    t_n,
    t_min,
    t_flags,
    set_status,
    set_nrec,
    set_slot,
    src_ip,
    dst_ip,
    ip_version,
    src_port,
    dst_port,
    protocol,
    tcp_flags,
    icmp_type,
    icmp_code,
    packets,
    nbytes,
    flow_start_ns,
    flow_end_ns,
    received_ns,
    in_if,
    out_if,
    src_vlan,
    dst_vlan,
    sampling_rate,
    sampling_source,
    hdr_off,
    hdr_len,
    hdr_wirelen,
    hdr_linktype,
    header_buf,
    export_kind,
    domain,
    row_stream,
    row_sampler,
    j,
    h,
):
    """Decode data sets ``s0 ..`` into rows from ``j`` (headers into ``header_buf`` from ``h``).

    Returns ``(s, j, h, reason)``: ``reason`` is ``STOP_DONE`` (every set done, ``s == nsets``),
    ``STOP_CONTROL`` / ``STOP_OPTIONS`` (set ``s`` is a template set or options data: the caller
    handles it and resumes at ``s + 1``) or ``STOP_FULL`` (set ``s`` may not fit the outputs: the
    caller grows them and resumes at ``s``). Per set: ``set_status`` (``SET_*``), ``set_nrec``
    (data records decoded), ``set_slot`` (template slot, -1 if unknown). Sets whose ``set_status``
    is ``SET_REFRESH`` on entry are skipped (the caller knows them: a periodic template refresh).
    """
    cap_rows = packets.shape[0]
    cap_hdr = header_buf.shape[0]
    s = s0
    while s < nsets:
        if set_status[s] == SET_REFRESH:  # marked by the caller: a template set it already applied
            s += 1
            continue
        i = set_dg[s]
        kind = dg_kind[i]
        ipfix = kind == _IPFIX
        sid = np.int64(set_id[s])
        set_nrec[s] = 0
        set_slot[s] = -1
        if sid < 256:
            if (ipfix and (sid == 2 or sid == 3)) or ((not ipfix) and (sid == 0 or sid == 1)):
                set_status[s] = SET_CONTROL
                return s, j, h, STOP_CONTROL
            set_status[s] = SET_RESERVED
            s += 1
            continue
        stream = np.int64(dg_stream[i])
        slot = ht_lookup(ht_keys, ht_vals, (stream << 16) | sid)
        set_slot[s] = slot
        if slot < 0:
            set_status[s] = SET_UNKNOWN_TEMPLATE
            s += 1
            continue
        flags = t_flags[slot]
        if flags & F_OPTIONS:
            set_status[s] = SET_OPTIONS_DATA
            return s, j, h, STOP_OPTIONS
        off = np.int64(set_off[s])
        end = off + np.int64(set_len[s])
        minlen = np.int64(t_min[slot])
        most = (end - off - 4) // minlen
        if flags & F_REVERSE:
            most *= 2
        if j + most > cap_rows or h + (end - off) > cap_hdr:
            return s, j, h, STOP_FULL
        set_status[s] = SET_OK
        nf = t_n[slot]
        exp_ns = np.int64(dg_export_ns[i])
        up = np.int64(dg_uptime_ms[i])
        sysinit = np.int64(stream_sysinit_ms[stream])
        recv = dg_recv_ns[i]
        dom = dg_domain[i]
        p = off + 4
        nrec = 0
        while end - p >= minlen:
            q = p
            bad = False
            src4 = np.int64(0)
            dst4 = np.int64(0)
            v4 = False
            src6 = np.int64(-1)
            dst6 = np.int64(-1)
            v6 = False
            v6nz = False
            sport = np.int64(0)
            dport = np.int64(0)
            proto = np.int64(0)
            flags_tcp = np.int64(0)
            icmp_tc = np.int64(-1)
            icmp_t = np.int64(-1)
            icmp_c = np.int64(-1)
            byt = np.uint64(0)
            pkt = np.uint64(0)
            have_pkt = False
            iif = np.int64(0)
            oif = np.int64(0)
            iphys = np.int64(0)
            ophys = np.int64(0)
            svlan = np.int64(0)
            dvlan = np.int64(0)
            have_vlan = False
            start = np.int64(0)
            have_start = False
            stop = np.int64(0)
            have_stop = False
            rate = np.uint64(0)
            sampler = np.int64(-1)
            dl_pos = np.int64(-1)
            dl_len = np.int64(0)
            dl_size = np.int64(-1)
            r_byt = np.uint64(0)
            r_pkt = np.uint64(0)
            r_tcp = np.int64(0)
            r_icmp = np.int64(-1)
            for f in range(nf):
                k = t_kind[slot, f]
                fl = np.int64(t_len[slot, f])
                if fl == 65535 and ipfix:
                    if q >= end:
                        bad = True
                        break
                    fl = _u8(buf, q)
                    q += 1
                    if fl == 255:
                        if q + 2 > end:
                            bad = True
                            break
                        fl = _be16(buf, q)
                        q += 2
                if q + fl > end:
                    bad = True
                    break
                if k != 0:
                    if k == 1:
                        v4 = True
                        src4 = _be32(buf, q)
                    elif k == 2:
                        v4 = True
                        dst4 = _be32(buf, q)
                    elif k == 3:
                        v6 = True
                        if not _is_zero(buf, q, 16):
                            src6 = q
                            v6nz = True
                    elif k == 4:
                        v6 = True
                        if not _is_zero(buf, q, 16):
                            dst6 = q
                            v6nz = True
                    elif k == 34:
                        dl_pos = q
                        dl_len = fl
                    else:
                        v = _ben(buf, q, fl)
                        if k == 5:
                            sport = np.int64(v & np.uint64(0xFFFF))
                        elif k == 6:
                            dport = np.int64(v & np.uint64(0xFFFF))
                        elif k == 7:
                            proto = np.int64(v & np.uint64(0xFF))
                        elif k == 8:
                            byt = v
                        elif k == 9:
                            pkt = v
                            have_pkt = True
                        elif k == 10:
                            iif = np.int64(v & np.uint64(0xFFFFFFFF))
                        elif k == 11:
                            oif = np.int64(v & np.uint64(0xFFFFFFFF))
                        elif k == 12:
                            iphys = np.int64(v & np.uint64(0xFFFFFFFF))
                        elif k == 13:
                            ophys = np.int64(v & np.uint64(0xFFFFFFFF))
                        elif k == 14:
                            flags_tcp = np.int64(v & np.uint64(0xFFFF))
                        elif k == 15:
                            icmp_tc = np.int64(v & np.uint64(0xFFFF))
                        elif k == 16:
                            icmp_t = np.int64(v & np.uint64(0xFF))
                        elif k == 17:
                            icmp_c = np.int64(v & np.uint64(0xFF))
                        elif k == 18:
                            svlan = np.int64(v & np.uint64(0xFFF))
                            have_vlan = True
                        elif k == 19:
                            dvlan = np.int64(v & np.uint64(0xFFF))
                            have_vlan = True
                        elif k == 20 or k == 21:
                            rel = np.int64(v & np.uint64(0xFFFFFFFF))
                            if ipfix:
                                # without systemInitTimeMilliseconds (not received yet): the export time
                                t = exp_ns if sysinit < 0 else (sysinit + rel) * 1_000_000
                            else:
                                t = exp_ns - _i32(up - rel) * 1_000_000
                            if k == 20:
                                start = t
                                have_start = True
                            else:
                                stop = t
                                have_stop = True
                        elif k == 22:
                            start = _clamp(v, _MAX_S) * 1_000_000_000
                            have_start = True
                        elif k == 23:
                            stop = _clamp(v, _MAX_S) * 1_000_000_000
                            have_stop = True
                        elif k == 24:
                            start = _clamp(v, _MAX_MS) * 1_000_000
                            have_start = True
                        elif k == 25:
                            stop = _clamp(v, _MAX_MS) * 1_000_000
                            have_stop = True
                        elif k == 26 or k == 28:
                            start = _ntp_ns(v)
                            have_start = True
                        elif k == 27 or k == 29:
                            stop = _ntp_ns(v)
                            have_stop = True
                        elif k == 30:
                            start = exp_ns - _clamp(v, _MAX_US) * 1000
                            have_start = True
                        elif k == 31:
                            stop = exp_ns - _clamp(v, _MAX_US) * 1000
                            have_stop = True
                        elif k == 32:
                            rate = v
                        elif k == 33:
                            sampler = np.int64(v & np.uint64(0x7FFFFFFFFFFFFFFF))
                        elif k == 35:
                            dl_size = np.int64(v & np.uint64(0xFFFFFFFF))
                        elif k == 40:
                            r_byt = v
                        elif k == 41:
                            r_pkt = v
                        elif k == 42:
                            r_tcp = np.int64(v & np.uint64(0xFFFF))
                        elif k == 43:
                            r_icmp = np.int64(v & np.uint64(0xFFFF))
                q += fl
            if bad or q == p:  # q == p: a record of no byte would never end the set
                set_status[s] = SET_MALFORMED
                break
            p = q
            nrec += 1
            # --- the forward row
            if v6nz or (v6 and not v4):
                ipv = 6
            elif v4:
                ipv = 4
            else:
                ipv = 0
            if ipv == 6:
                _put_v6(src_ip, j, buf, src6)
                _put_v6(dst_ip, j, buf, dst6)
            elif ipv == 4:
                _put_v4(src_ip, j, src4)
                _put_v4(dst_ip, j, dst4)
            else:
                _put_v6(src_ip, j, buf, -1)
                _put_v6(dst_ip, j, buf, -1)
            if iif == 0:
                iif = iphys
            if oif == 0:
                oif = ophys
            if not have_start:
                start = stop if have_stop else exp_ns
            if not have_stop:
                stop = start if have_start else exp_ns
            if dl_pos >= 0 and dl_len > 0:
                wl = dl_size if dl_size >= 0 else dl_len
                if not have_pkt:
                    pkt = np.uint64(1)
                    if byt == np.uint64(0):
                        byt = np.uint64(wl)
                for b in range(dl_len):
                    header_buf[h + b] = buf[np.uint64(dl_pos + b)]
                if not have_vlan:  # the innermost 802.1Q/802.1ad tag of the frame, as for sFlow
                    x = dl_pos + 12
                    while x + 4 <= dl_pos + dl_len:
                        et = _be16(buf, x)
                        if et != 0x8100 and et != 0x88A8 and et != 0x9100:
                            break
                        svlan = _be16(buf, x + 2) & 0xFFF
                        dvlan = svlan
                        x += 4
                hdr_off[j] = h
                hdr_len[j] = dl_len
                hdr_wirelen[j] = wl
                hdr_linktype[j] = 1
                h += dl_len
            else:
                hdr_off[j] = 0
                hdr_len[j] = 0
                hdr_wirelen[j] = 0
                hdr_linktype[j] = 0
            sp, dp, it, ic = _ports_icmp(proto, sport, dport, icmp_tc, icmp_t, icmp_c)
            ip_version[j] = ipv
            src_port[j] = sp
            dst_port[j] = dp
            protocol[j] = proto
            tcp_flags[j] = flags_tcp
            icmp_type[j] = it
            icmp_code[j] = ic
            packets[j] = pkt
            nbytes[j] = byt
            flow_start_ns[j] = start
            flow_end_ns[j] = stop
            received_ns[j] = recv
            in_if[j] = iif
            out_if[j] = oif
            src_vlan[j] = svlan
            dst_vlan[j] = dvlan
            if rate > np.uint64(0xFFFFFFFF):
                rate = np.uint64(0xFFFFFFFF)
            sampling_rate[j] = rate
            sampling_source[j] = _RATE_RECORD if rate > np.uint64(0) else 0
            export_kind[j] = kind
            domain[j] = dom
            row_stream[j] = stream
            row_sampler[j] = sampler
            j += 1
            # --- the reverse row of an RFC 5103 biflow, when it saw traffic
            if flags & F_REVERSE:
                has_rev = r_pkt > np.uint64(0) if flags & F_R_PKTS else r_byt > np.uint64(0)
                if has_rev:
                    for b in range(16):
                        src_ip[j, b] = dst_ip[j - 1, b]
                        dst_ip[j, b] = src_ip[j - 1, b]
                    rtc = r_icmp if flags & F_R_ICMP else icmp_tc
                    sp, dp, it, ic = _ports_icmp(proto, dport, sport, rtc, icmp_t, icmp_c)
                    ip_version[j] = ipv
                    src_port[j] = sp
                    dst_port[j] = dp
                    protocol[j] = proto
                    tcp_flags[j] = r_tcp if flags & F_R_TCP else flags_tcp
                    icmp_type[j] = it
                    icmp_code[j] = ic
                    packets[j] = r_pkt
                    nbytes[j] = r_byt
                    flow_start_ns[j] = start
                    flow_end_ns[j] = stop
                    received_ns[j] = recv
                    in_if[j] = oif
                    out_if[j] = iif
                    src_vlan[j] = dvlan
                    dst_vlan[j] = svlan
                    sampling_rate[j] = rate
                    sampling_source[j] = _RATE_RECORD if rate > np.uint64(0) else 0
                    hdr_off[j] = 0
                    hdr_len[j] = 0
                    hdr_wirelen[j] = 0
                    hdr_linktype[j] = 0
                    export_kind[j] = kind
                    domain[j] = dom
                    row_stream[j] = stream
                    row_sampler[j] = sampler
                    j += 1
        set_nrec[s] = nrec
        s += 1
    return s, j, h, STOP_DONE


# --------------------------------------------------------------------------------------------------
# sequence numbers
# --------------------------------------------------------------------------------------------------


@njit(nogil=True, cache=True)
def check_sequences(dgs, dg_stream, dg_kind, dg_seq, dg_nrec, stream_next, lost, event):
    """Follow the sequence number of each stream over the datagrams ``dgs`` (in arrival order).

    ``stream_next[stream]`` is the sequence number the stream's next datagram should carry (-1:
    unknown), updated in place. What a sequence number counts: v5 and IPFIX count data records
    (``dg_nrec``: records of the datagram, -1 when unknown, e.g. a data set without its template),
    v9 and sFlow count datagrams. Per datagram: ``lost`` (records for v5/IPFIX, datagrams for
    v9/sFlow, missing between the expected and the received number) and ``event`` (0 first or
    unknown, 1 in order, 2 gap, 3 backwards: a restart or reordering; the stream is resynchronised).
    """
    for t in range(dgs.shape[0]):
        i = dgs[t]
        st = dg_stream[i]
        seq = np.int64(dg_seq[i]) & 0xFFFFFFFF
        kind = dg_kind[i]
        lost[i] = 0
        expected = stream_next[st]
        if expected < 0:
            event[i] = 0
        else:
            d = (seq - expected) & 0xFFFFFFFF
            if d == 0:
                event[i] = 1
            elif d < 0x80000000:
                event[i] = 2
                lost[i] = d
            else:
                event[i] = 3
        if kind == _NETFLOW5 or kind == _IPFIX:  # noqa: SIM109 (a numba loop)
            n = np.int64(dg_nrec[i])
            stream_next[st] = -1 if n < 0 else (seq + n) & 0xFFFFFFFF
        else:
            stream_next[st] = (seq + 1) & 0xFFFFFFFF
