"""The sFlow v5 kernel: flow samples to rows, counter samples to interface-counter rows.

One call decodes every sFlow datagram of a batch (their headers already read by
:func:`netspectra.collect.nf_kernels.scan_datagrams`). Per flow sample (format 1) and expanded flow
sample (format 3) it writes one row: sampling rate, input/output interface (compact or expanded
form; the "local" interface 0x3FFFFFFF, discards and "multiple" output as 0, as Akvorado does), and
from its flow records:

* raw packet header (0:1): the header bytes are copied to ``header_buf`` with the frame length less
  the stripped trailer (the FCS: a ``stripped`` above 4 is not a trailer and is not subtracted) as
  wire length and the header protocol mapped to a link type (1 Ethernet, 11 IPv4 -> 228, 12 IPv6
  -> 229, others 65535), for the capture decoder; the innermost 802.1Q/802.1ad tag of an Ethernet
  header gives the VLAN when no extended switch record does (as Akvorado reads QinQ);
* sampled IPv4 (0:3) / IPv6 (0:4): addresses, ports, protocol, TCP flags, IP length;
* extended switch (0:1001): ingress / egress VLAN.

Counter samples (formats 2 and 4) with generic interface counters (0:1) give one counters row each.
Samples of other enterprises or formats are skipped by their length. A sample or record that
overruns its container ends the datagram (``DG_BAD_SAMPLE``): samples before it are kept.

Reference implementation: :func:`netspectra.collect.reference.decode_sflow_datagram`.
"""

from __future__ import annotations

import numpy as np

from netspectra.collect.nf_kernels import _be16, _be32, _ports_icmp, _put_v4, _put_v6
from netspectra.jit import njit

_SFLOW5 = 4
_RATE_RECORD = 1
_DG_BAD_SAMPLE = 6
_LOCAL_IF = 0x3FFFFFFF
#: Generic interface counters: 4-byte fields except if_speed, in_octets and out_octets (8 bytes).
N_COUNTERS = 19


@njit(nogil=True, cache=True, inline="always")
def _compact_if(v):
    """ifIndex of a compact interface value (format 0 only; local -> 0)."""
    if (v >> 30) != 0:
        return 0
    v &= 0x3FFFFFFF
    return 0 if v == _LOCAL_IF else v


@njit(nogil=True, cache=True)
def decode_sflow(
    buf,
    dgs,
    dg_body,
    dg_end,
    dg_count,
    dg_recv_ns,
    dg_domain,
    dg_stream,
    dg_status,
    dg_nsamples,
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
    c_dg,
    c_seq,
    c_values,
    j,
    h,
):
    """Decode the sFlow datagrams ``dgs``; returns ``(j, h, c)``: rows, header bytes, counter rows.

    Outputs need ``sum(dg_end - dg_body) // 40 + 1`` rows, as many header bytes, and
    ``sum(...) // 96 + 1`` counter rows (``c_values`` (m, 19) uint64 in
    :data:`netspectra.collect.records.InterfaceCounters.WIRE` order). ``dg_nsamples`` receives the
    flow samples decoded per datagram; ``dg_status`` is set to ``DG_BAD_SAMPLE`` on overruns.
    """
    c = 0
    for t in range(dgs.shape[0]):
        i = dgs[t]
        p = np.int64(dg_body[i])
        end = np.int64(dg_end[i])
        recv = dg_recv_ns[i]
        nflow = 0
        for _ in range(np.int64(dg_count[i])):
            if end - p < 8:
                dg_status[i] = _DG_BAD_SAMPLE
                break
            fmt = _be32(buf, p)
            slen = _be32(buf, p + 4)
            p += 8
            if slen > end - p:
                dg_status[i] = _DG_BAD_SAMPLE
                break
            send = p + slen
            ent = fmt >> 12
            form = fmt & 0xFFF
            if ent == 0 and (form == 1 or form == 3):
                if form == 1:
                    if slen < 32:
                        dg_status[i] = _DG_BAD_SAMPLE
                        break
                    rate = _be32(buf, p + 8)
                    iif = _compact_if(_be32(buf, p + 20))
                    oif = _compact_if(_be32(buf, p + 24))
                    nrec = _be32(buf, p + 28)
                    q = p + 32
                else:
                    if slen < 44:
                        dg_status[i] = _DG_BAD_SAMPLE
                        break
                    rate = _be32(buf, p + 12)
                    iif = _be32(buf, p + 28) if _be32(buf, p + 24) == 0 else 0
                    oif = _be32(buf, p + 36) if _be32(buf, p + 32) == 0 else 0
                    if iif == _LOCAL_IF:
                        iif = 0
                    if oif == _LOCAL_IF:
                        oif = 0
                    nrec = _be32(buf, p + 40)
                    q = p + 44
                bad = False
                hpos = np.int64(-1)
                hl = np.int64(0)
                hwire = np.int64(0)
                hlink = np.int64(0)
                hvlan = np.int64(0)
                v = 0
                src4 = np.int64(0)
                dst4 = np.int64(0)
                src6 = np.int64(-1)
                dst6 = np.int64(-1)
                iplen = np.int64(0)
                sport = np.int64(0)
                dport = np.int64(0)
                proto = np.int64(0)
                tflags = np.int64(0)
                svlan = np.int64(-1)
                dvlan = np.int64(-1)
                for _r in range(nrec):
                    if send - q < 8:
                        bad = True
                        break
                    rfmt = _be32(buf, q)
                    rlen = _be32(buf, q + 4)
                    d = q + 8
                    if rlen > send - d:
                        bad = True
                        break
                    if (rfmt >> 12) == 0:
                        rf = rfmt & 0xFFF
                        if rf == 1:
                            if rlen < 16:
                                bad = True
                                break
                            hp = _be32(buf, d)
                            frame = _be32(buf, d + 4)
                            stripped = _be32(buf, d + 8)
                            size = _be32(buf, d + 12)
                            if size > rlen - 16:
                                size = rlen - 16
                            hpos = d + 16
                            hl = size
                            # stripped is the FCS (4) for most agents; some put the bytes cut from the
                            # payload there (frame 1390, stripped 1262): only a trailer is subtracted
                            hwire = frame - stripped if stripped <= 4 and frame >= stripped else frame
                            if hwire < hl:
                                hwire = hl
                            hvlan = 0
                            if hp == 1:
                                hlink = 1
                                # the innermost 802.1Q/802.1ad tag (as Akvorado reads QinQ)
                                x = hpos + 12
                                while x + 4 <= hpos + hl:
                                    et = _be16(buf, x)
                                    if et != 0x8100 and et != 0x88A8 and et != 0x9100:
                                        break
                                    hvlan = _be16(buf, x + 2) & 0xFFF
                                    x += 4
                            elif hp == 11:
                                hlink = 228
                            elif hp == 12:
                                hlink = 229
                            else:
                                hlink = 0xFFFF
                        elif rf == 3:
                            if rlen < 32:
                                bad = True
                                break
                            v = 4
                            iplen = _be32(buf, d)
                            proto = _be32(buf, d + 4) & 0xFF
                            src4 = _be32(buf, d + 8)
                            dst4 = _be32(buf, d + 12)
                            sport = _be32(buf, d + 16) & 0xFFFF
                            dport = _be32(buf, d + 20) & 0xFFFF
                            tflags = _be32(buf, d + 24) & 0xFFFF
                        elif rf == 4:
                            if rlen < 56:
                                bad = True
                                break
                            v = 6
                            iplen = _be32(buf, d)
                            proto = _be32(buf, d + 4) & 0xFF
                            src6 = d + 8
                            dst6 = d + 24
                            sport = _be32(buf, d + 40) & 0xFFFF
                            dport = _be32(buf, d + 44) & 0xFFFF
                            tflags = _be32(buf, d + 48) & 0xFFFF
                        elif rf == 1001:
                            if rlen < 16:
                                bad = True
                                break
                            svlan = _be32(buf, d)
                            dvlan = _be32(buf, d + 8)
                    q = d + rlen
                if bad:
                    dg_status[i] = _DG_BAD_SAMPLE
                    break
                if v == 4:
                    _put_v4(src_ip, j, src4)
                    _put_v4(dst_ip, j, dst4)
                else:
                    _put_v6(src_ip, j, buf, src6)
                    _put_v6(dst_ip, j, buf, dst6)
                sp, dp, it, ic = _ports_icmp(proto, sport, dport, -1, -1, -1)
                ip_version[j] = v
                src_port[j] = sp
                dst_port[j] = dp
                protocol[j] = proto
                tcp_flags[j] = tflags
                icmp_type[j] = it if v != 0 else 0
                icmp_code[j] = ic if v != 0 else 0
                packets[j] = 1
                if hpos >= 0:
                    for b in range(hl):
                        header_buf[h + b] = buf[np.uint64(hpos + b)]
                    hdr_off[j] = h
                    hdr_len[j] = hl
                    hdr_wirelen[j] = hwire
                    hdr_linktype[j] = hlink
                    h += hl
                    nbytes[j] = hwire
                else:
                    hdr_off[j] = 0
                    hdr_len[j] = 0
                    hdr_wirelen[j] = 0
                    hdr_linktype[j] = 0
                    nbytes[j] = iplen
                flow_start_ns[j] = recv
                flow_end_ns[j] = recv
                received_ns[j] = recv
                in_if[j] = iif
                out_if[j] = oif
                src_vlan[j] = svlan if 0 <= svlan < 4096 else (hvlan if svlan < 0 else 0)
                dst_vlan[j] = dvlan if 0 <= dvlan < 4096 else (hvlan if dvlan < 0 else 0)
                sampling_rate[j] = rate
                sampling_source[j] = _RATE_RECORD if rate > 0 else 0
                export_kind[j] = _SFLOW5
                domain[j] = dg_domain[i]
                row_stream[j] = dg_stream[i]
                row_sampler[j] = -1
                j += 1
                nflow += 1
            elif ent == 0 and (form == 2 or form == 4):
                if form == 2:
                    if slen < 12:
                        dg_status[i] = _DG_BAD_SAMPLE
                        break
                    nrec = _be32(buf, p + 8)
                    q = p + 12
                else:
                    if slen < 16:
                        dg_status[i] = _DG_BAD_SAMPLE
                        break
                    nrec = _be32(buf, p + 12)
                    q = p + 16
                seq = _be32(buf, p)
                bad = False
                for _r in range(nrec):
                    if send - q < 8:
                        bad = True
                        break
                    rfmt = _be32(buf, q)
                    rlen = _be32(buf, q + 4)
                    d = q + 8
                    if rlen > send - d:
                        bad = True
                        break
                    if rfmt == 1 and rlen >= 88:
                        c_dg[c] = i
                        c_seq[c] = seq
                        x = d
                        for f in range(N_COUNTERS):
                            if f == 2 or f == 5 or f == 12:
                                c_values[c, f] = (np.uint64(_be32(buf, x)) << np.uint64(32)) | np.uint64(
                                    _be32(buf, x + 4)
                                )
                                x += 8
                            else:
                                c_values[c, f] = np.uint64(_be32(buf, x))
                                x += 4
                        c += 1
                    q = d + rlen
                if bad:
                    dg_status[i] = _DG_BAD_SAMPLE
                    break
            p = send
        dg_nsamples[i] = nflow
    return j, h, c
