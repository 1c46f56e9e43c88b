"""The plain-Python reference of the collector's kernels: one datagram at a time, one dict per row.

Written from the same rules as the kernels (:mod:`.nf_kernels`, :mod:`.sflow_kernels`, documented in
docs/collect.md) but independently, with :mod:`struct`, so that tests can check that both read every
datagram — real exports, built ones, fuzzed ones — into the same rows. It keeps templates, options
rates and boot times like :class:`~.decoder.FlowDecoder`, without its limits and without waiting
sets (a data set before its template is dropped here). Far too slow for traffic: a test oracle.
"""

from __future__ import annotations

import struct
from typing import Any

from netspectra.collect import ie
from netspectra.collect.addr import to16, to_text
from netspectra.collect.records import (
    IPFIX,
    NETFLOW5,
    NETFLOW9,
    RATE_CONFIG,
    RATE_DEFAULT,
    RATE_OPTIONS,
    RATE_RECORD,
    RATE_UNKNOWN,
    SFLOW5,
    InterfaceCounters,
)
from netspectra.collect.templates import TemplateField, parse_options_data, parse_template_set

Row = dict[str, Any]
_ZERO16 = bytes(16)
_START_KINDS = (
    ie.K_FIRST_UPTIME,
    ie.K_START_S,
    ie.K_START_MS,
    ie.K_START_US,
    ie.K_START_NS,
    ie.K_START_DELTA_US,
)
_STOP_KINDS = (ie.K_LAST_UPTIME, ie.K_END_S, ie.K_END_MS, ie.K_END_US, ie.K_END_NS, ie.K_END_DELTA_US)
_NTP_UNIX = 2208988800


def _be(b: bytes) -> int:
    return int.from_bytes(b, "big")


def _s32(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v >= 1 << 31 else v


def _ntp_ns(v: int) -> int:
    sec = min(v >> 32, 9_200_000_000 + _NTP_UNIX)
    return (sec - _NTP_UNIX) * 1_000_000_000 + (((v & 0xFFFFFFFF) * 1_000_000_000) >> 32)


def _ports_icmp(
    proto: int, sport: int, dport: int, tc: int | None, t: int | None, c: int | None
) -> tuple[int, ...]:
    it = ic = 0
    if proto in (1, 58):
        if tc is not None:
            it, ic = (tc >> 8) & 0xFF, tc & 0xFF
        elif t is not None or c is not None:
            it, ic = (t or 0) & 0xFF, (c or 0) & 0xFF
        elif sport == 0:
            it, ic = (dport >> 8) & 0xFF, dport & 0xFF
    if proto in (6, 17, 132):
        return sport, dport, it, ic
    return 0, 0, it, ic


def _row(**kw: Any) -> Row:
    row: Row = {
        "exporter": "",
        "export_kind": 0,
        "domain": 0,
        "src_ip": "::",
        "dst_ip": "::",
        "ip_version": 0,
        "src_port": 0,
        "dst_port": 0,
        "protocol": 0,
        "tcp_flags": 0,
        "icmp_type": 0,
        "icmp_code": 0,
        "packets": 0,
        "bytes": 0,
        "flow_start_ns": 0,
        "flow_end_ns": 0,
        "received_ns": 0,
        "in_if": 0,
        "out_if": 0,
        "src_vlan": 0,
        "dst_vlan": 0,
        "sampling_rate": 0,
        "sampling_source": 0,
        "hdr_len": 0,
        "hdr_wirelen": 0,
        "hdr_linktype": 0,
        "header": b"",
    }
    row.update(kw)
    return row


class ReferenceDecoder:
    """Decode datagrams one by one into row dicts (the keys of ``FlowRecords.as_dicts()`` without
    ``hdr_off``; ``sampler`` kept internally)."""

    def __init__(self, default_rate: int = 1, exporter_rates: dict[str, int] | None = None) -> None:
        self.default_rate = default_rate
        self.exporter_rates = {to16(k): v for k, v in (exporter_rates or {}).items()}
        self.templates: dict[tuple[bytes, int, int, int], tuple[tuple[TemplateField, ...], bool]] = {}
        self.options_rates: dict[tuple[bytes, int, int, int], int] = {}
        self.sysinit: dict[tuple[bytes, int, int], int] = {}

    def decode(self, data: bytes, sender: str | bytes, received_ns: int = 0) -> tuple[list[Row], list[Row]]:
        """Rows and interface-counter rows of one datagram from ``sender``."""
        s16 = to16(sender)
        rows: list[Row] = []
        counters: list[Row] = []
        if len(data) < 4:
            return rows, counters
        version = _be(data[0:2])
        if version == 5:
            rows = self._v5(data, s16, received_ns)
        elif version in (9, 10):
            rows = self._v9_ipfix(data, s16, received_ns, version)
        elif version == 0 and _be(data[0:4]) == 5:
            rows, counters = self._sflow(data, received_ns)
        for r in rows:
            if not r.pop("_rated", False):
                self._rate(r)
        return rows, counters

    # -- sampling ---------------------------------------------------------------------------------

    def _rate(self, r: Row) -> None:
        sampler = r.pop("_sampler", -1)
        stream = r.pop("_stream", None)
        exporter = to16(r["exporter"])
        if r["sampling_rate"]:
            r["sampling_source"] = RATE_RECORD
            return
        if stream is not None:
            key = sampler & 0xFFFFFFFF if sampler >= 0 else 0
            rate = self.options_rates.get((*stream, key)) or self.options_rates.get((*stream, 0), 0)
            if rate:
                r["sampling_rate"], r["sampling_source"] = rate, RATE_OPTIONS
                return
        if exporter in self.exporter_rates:
            r["sampling_rate"], r["sampling_source"] = self.exporter_rates[exporter], RATE_CONFIG
        elif self.default_rate:
            r["sampling_rate"], r["sampling_source"] = self.default_rate, RATE_DEFAULT
        else:
            r["sampling_rate"], r["sampling_source"] = 0, RATE_UNKNOWN

    # -- NetFlow v5 -------------------------------------------------------------------------------

    def _v5(self, d: bytes, s16: bytes, recv: int) -> list[Row]:
        if len(d) < 24:
            return []
        _v, count, up, secs, nsecs, _seq, etype, eid, samp = struct.unpack_from(">HHIIIIBBH", d)
        if count == 0 or count > 30 or len(d) < 24 + 48 * count:
            return []
        exp_ns = secs * 1_000_000_000 + min(nsecs, 999_999_999)
        rate = samp & 0x3FFF
        out = []
        for k in range(count):
            r = d[24 + 48 * k : 72 + 48 * k]
            src, dst, _nh, iif, oif, pkts, octs, first, last, sp, dp, _p, flags, proto = struct.unpack_from(
                ">4s4s4sHHIIIIHHBBB", r
            )
            sp, dp, it, ic = _ports_icmp(proto, sp, dp, None, None, None)
            out.append(
                _row(
                    exporter=to_text(s16),
                    export_kind=NETFLOW5,
                    domain=(etype << 8) | eid,
                    src_ip=to_text(to16(src)),
                    dst_ip=to_text(to16(dst)),
                    ip_version=4,
                    src_port=sp,
                    dst_port=dp,
                    protocol=proto,
                    tcp_flags=flags,
                    icmp_type=it,
                    icmp_code=ic,
                    packets=pkts,
                    bytes=octs,
                    flow_start_ns=exp_ns - _s32(up - first) * 1_000_000,
                    flow_end_ns=exp_ns - _s32(up - last) * 1_000_000,
                    received_ns=recv,
                    in_if=iif,
                    out_if=oif,
                    sampling_rate=rate,
                )
            )
        return out

    # -- NetFlow v9 / IPFIX -----------------------------------------------------------------------

    def _v9_ipfix(self, d: bytes, s16: bytes, recv: int, version: int) -> list[Row]:
        if version == 9:
            if len(d) < 20:
                return []
            _v, _c, up, secs, _seq, domain = struct.unpack_from(">HHIIII", d)
            exp_ns, p, end = secs * 1_000_000_000, 20, len(d)
        else:
            if len(d) < 16:
                return []
            _v, mlen, secs, _seq, domain = struct.unpack_from(">HHIII", d)
            if mlen < 16 or mlen > len(d):
                return []
            up, exp_ns, p, end = -1, secs * 1_000_000_000, 16, mlen
        kind = NETFLOW9 if version == 9 else IPFIX
        stream = (s16, kind, domain)
        out: list[Row] = []
        while end - p >= 4:
            sid, slen = struct.unpack_from(">HH", d, p)
            if slen < 4 or slen > end - p:
                break
            body = d[p + 4 : p + slen]
            p += slen
            if sid < 256:
                if (version == 9 and sid in (0, 1)) or (version == 10 and sid in (2, 3)):
                    self._templates(body, version, sid, stream)
                continue
            tpl = self.templates.get((*stream, sid))
            if tpl is None:
                continue
            fields, options = tpl
            if options:
                # an options rate applies from here on: the rows before it keep the rates known now
                for r in out:
                    if not r.get("_rated"):
                        self._rate(r)
                        r["_rated"] = True
                values, _n, _ok = parse_options_data(body, fields, version)
                for v in values:
                    if v.rate > 0:
                        self.options_rates[(*stream, v.sampler_id & 0xFFFFFFFF)] = v.rate
                    if v.system_init_ms >= 0:
                        self.sysinit[stream] = v.system_init_ms
                continue
            out.extend(self._data(body, fields, version, stream, exp_ns, up, recv))
        return out

    def _templates(self, body: bytes, version: int, sid: int, stream: tuple[bytes, int, int]) -> None:
        from netspectra.collect.templates import compile_template

        records, _err = parse_template_set(body, version, sid)
        for rec in records:
            if not rec.fields:
                if rec.template_id == sid:
                    for key in [
                        k for k, v in self.templates.items() if k[:3] == stream and v[1] == rec.options
                    ]:
                        del self.templates[key]
                else:
                    self.templates.pop((*stream, rec.template_id), None)
                continue
            if isinstance(compile_template(rec.fields, version, rec.options), str):
                continue  # refused, as the cache refuses it
            self.templates[(*stream, rec.template_id)] = (rec.fields, rec.options)

    def _data(
        self,
        body: bytes,
        fields: tuple[TemplateField, ...],
        version: int,
        stream: tuple[bytes, int, int],
        exp_ns: int,
        up: int,
        recv: int,
    ) -> list[Row]:
        ipfix = version == 10
        min_len = sum(1 if (ipfix and f.length == ie.VARLEN) else f.length for f in fields)
        out: list[Row] = []
        n = len(body)
        p = 0
        reverse = any(
            ie.kind_of(f.type, f.pen) in (ie.K_R_BYTES, ie.K_R_PKTS) and 1 <= f.length <= 8 for f in fields
        )
        while n - p >= min_len:
            vals: dict[int, Any] = {}
            ok = True
            for f in fields:
                ln = f.length
                if ipfix and ln == ie.VARLEN:
                    if p >= n:
                        ok = False
                        break
                    ln = body[p]
                    p += 1
                    if ln == 255:
                        if n - p < 2:
                            ok = False
                            break
                        ln = _be(body[p : p + 2])
                        p += 2
                if n - p < ln:
                    ok = False
                    break
                raw = body[p : p + ln]
                p += ln
                k = ie.kind_of(f.type, f.pen)
                if k in ie.ADDRESS_KINDS:
                    if ln == ie.ADDRESS_KINDS[k]:
                        vals.setdefault(k, []).append(raw)
                elif k == ie.K_DLFS:
                    vals[k] = raw
                elif k != ie.K_SKIP and 1 <= ln <= 8 and not (ipfix and f.length == ie.VARLEN):
                    vals[k] = _be(raw)
                    if k in _START_KINDS:
                        vals["start"] = (k, vals[k])  # the last time field of each end wins
                    elif k in _STOP_KINDS:
                        vals["stop"] = (k, vals[k])
            if not ok:
                break
            out.extend(self._record(vals, version, stream, exp_ns, up, recv, reverse))
        return out

    def _record(
        self,
        v: dict[int, Any],
        version: int,
        stream: tuple[bytes, int, int],
        exp_ns: int,
        up: int,
        recv: int,
        reverse: bool,
    ) -> list[Row]:
        def last(k: int) -> Any:
            return v[k][-1] if k in v else None

        v4 = ie.K_SRC4 in v or ie.K_DST4 in v
        v6 = ie.K_SRC6 in v or ie.K_DST6 in v
        src6 = next((a for a in reversed(v.get(ie.K_SRC6, [])) if a != _ZERO16), None)
        dst6 = next((a for a in reversed(v.get(ie.K_DST6, [])) if a != _ZERO16), None)
        if src6 is not None or dst6 is not None or (v6 and not v4):
            ipv, src, dst = 6, src6 or _ZERO16, dst6 or _ZERO16
        elif v4:
            ipv = 4
            src, dst = to16(last(ie.K_SRC4) or b"\0" * 4), to16(last(ie.K_DST4) or b"\0" * 4)
        else:
            ipv, src, dst = 0, _ZERO16, _ZERO16

        def t_of(k: int, x: int) -> int:
            if k in (ie.K_FIRST_UPTIME, ie.K_LAST_UPTIME):
                x &= 0xFFFFFFFF
                if version == 10:
                    si = self.sysinit.get(stream, -1)
                    return exp_ns if si < 0 else (si + x) * 1_000_000
                return exp_ns - _s32(up - x) * 1_000_000
            if k in (ie.K_START_S, ie.K_END_S):
                return min(x, 9_200_000_000) * 1_000_000_000
            if k in (ie.K_START_MS, ie.K_END_MS):
                return min(x, 9_200_000_000_000) * 1_000_000
            if k in (ie.K_START_US, ie.K_END_US, ie.K_START_NS, ie.K_END_NS):
                return _ntp_ns(x)
            return exp_ns - min(x, 9_200_000_000_000_000) * 1000

        start = t_of(*v["start"]) if "start" in v else None
        stop = t_of(*v["stop"]) if "stop" in v else None
        if start is None:
            start = stop if stop is not None else exp_ns
        if stop is None:
            stop = start
        proto = v.get(ie.K_PROTO, 0) & 0xFF
        sport, dport = v.get(ie.K_SPORT, 0) & 0xFFFF, v.get(ie.K_DPORT, 0) & 0xFFFF
        tc = v.get(ie.K_ICMP_TC)
        tc = None if tc is None else tc & 0xFFFF
        ity = v.get(ie.K_ICMP_TYPE)
        icd = v.get(ie.K_ICMP_CODE)
        iif = v.get(ie.K_IN_IF, 0) & 0xFFFFFFFF or v.get(ie.K_IN_PHYS, 0) & 0xFFFFFFFF
        oif = v.get(ie.K_OUT_IF, 0) & 0xFFFFFFFF or v.get(ie.K_OUT_PHYS, 0) & 0xFFFFFFFF
        pkts = v.get(ie.K_PKTS)
        byts = v.get(ie.K_BYTES, 0)
        hdr = v.get(ie.K_DLFS, b"")
        wl = 0
        if hdr:
            wl = v[ie.K_DLF_SIZE] & 0xFFFFFFFF if ie.K_DLF_SIZE in v else len(hdr)
            if pkts is None:
                pkts = 1
                if byts == 0:
                    byts = wl
        rate = min(v.get(ie.K_SAMPLING, 0), 0xFFFFFFFF)
        sampler = v[ie.K_SAMPLER_ID] & 0x7FFFFFFFFFFFFFFF if ie.K_SAMPLER_ID in v else -1
        svlan, dvlan = v.get(ie.K_SRC_VLAN, 0) & 0xFFF, v.get(ie.K_DST_VLAN, 0) & 0xFFF
        if hdr and ie.K_SRC_VLAN not in v and ie.K_DST_VLAN not in v:
            x = 12  # the innermost VLAN tag of the sampled frame
            while x + 4 <= len(hdr) and _be(hdr[x : x + 2]) in (0x8100, 0x88A8, 0x9100):
                svlan = dvlan = _be(hdr[x + 2 : x + 4]) & 0xFFF
                x += 4
        flags = v.get(ie.K_TCP_FLAGS, 0) & 0xFFFF
        sp, dp, it, ic = _ports_icmp(proto, sport, dport, tc, ity, icd)
        kind = NETFLOW9 if version == 9 else IPFIX
        common = dict(
            exporter=to_text(stream[0]),
            export_kind=kind,
            domain=stream[2],
            ip_version=ipv,
            protocol=proto,
            flow_start_ns=start,
            flow_end_ns=stop,
            received_ns=recv,
            sampling_rate=rate,
            _sampler=sampler,
            _stream=stream,
        )
        rows = [
            _row(
                **common,
                src_ip=to_text(src),
                dst_ip=to_text(dst),
                src_port=sp,
                dst_port=dp,
                tcp_flags=flags,
                icmp_type=it,
                icmp_code=ic,
                packets=pkts or 0,
                bytes=byts,
                in_if=iif,
                out_if=oif,
                src_vlan=svlan,
                dst_vlan=dvlan,
                hdr_len=len(hdr),
                hdr_wirelen=wl,
                hdr_linktype=1 if hdr else 0,
                header=hdr,
            )
        ]
        if reverse:
            r_pkts = v.get(ie.K_R_PKTS)
            r_bytes = v.get(ie.K_R_BYTES, 0)
            has = (r_pkts or 0) > 0 if any_r_pkts(v) else r_bytes > 0
            if has:
                rtc = v.get(ie.K_R_ICMP_TC, tc)
                rtc = None if rtc is None else rtc & 0xFFFF
                sp2, dp2, it2, ic2 = _ports_icmp(proto, dport, sport, rtc, ity, icd)
                rows.append(
                    _row(
                        **common,
                        src_ip=to_text(dst),
                        dst_ip=to_text(src),
                        src_port=sp2,
                        dst_port=dp2,
                        tcp_flags=v.get(ie.K_R_TCP_FLAGS, flags) & 0xFFFF,
                        icmp_type=it2,
                        icmp_code=ic2,
                        packets=r_pkts or 0,
                        bytes=r_bytes,
                        in_if=oif,
                        out_if=iif,
                        src_vlan=dvlan,
                        dst_vlan=svlan,
                    )
                )
        return rows

    # -- sFlow ------------------------------------------------------------------------------------

    def _sflow(self, d: bytes, recv: int) -> tuple[list[Row], list[Row]]:
        rows: list[Row] = []
        counters: list[Row] = []
        if len(d) < 8:
            return rows, counters
        at = _be(d[4:8])
        alen = {1: 4, 2: 16}.get(at)
        if alen is None or len(d) < 8 + alen + 16:
            return rows, counters
        agent = to_text(to16(d[8 : 8 + alen]))
        q = 8 + alen
        sub, _seq, _up, nsamples = struct.unpack_from(">IIII", d, q)
        p, end = q + 16, len(d)
        for _ in range(nsamples):
            if end - p < 8:
                break
            fmt, slen = struct.unpack_from(">II", d, p)
            p += 8
            if slen > end - p:
                break
            sample = d[p : p + slen]
            p += slen
            ent, form = fmt >> 12, fmt & 0xFFF
            if ent == 0 and form in (1, 3):
                row = self._flow_sample(sample, form, agent, sub, recv)
                if row is None:
                    break
                rows.append(row)
            elif ent == 0 and form in (2, 4):
                got = self._counter_sample(sample, form, agent, sub, recv)
                if got is None:
                    break
                counters.extend(got)
        return rows, counters

    @staticmethod
    def _flow_sample(s: bytes, form: int, agent: str, sub: int, recv: int) -> Row | None:
        def compact(x: int) -> int:
            if x >> 30:
                return 0
            x &= 0x3FFFFFFF
            return 0 if x == 0x3FFFFFFF else x

        if form == 1:
            if len(s) < 32:
                return None
            _seq, _src, rate, _pool, _drops, i, o, nrec = struct.unpack_from(">IIIIIIII", s)
            iif, oif, q = compact(i), compact(o), 32
        else:
            if len(s) < 44:
                return None
            _seq, _t, _i, rate, _pool, _drops, ifm, iv, ofm, ov, nrec = struct.unpack_from(">IIIIIIIIIII", s)
            iif = iv if ifm == 0 and iv != 0x3FFFFFFF else 0
            oif = ov if ofm == 0 and ov != 0x3FFFFFFF else 0
            q = 44
        ipv, src, dst, iplen, sport, dport, proto, flags = 0, _ZERO16, _ZERO16, 0, 0, 0, 0, 0
        hdr, hwire, hlink, hvlan, svlan, dvlan = b"", 0, 0, 0, -1, -1
        have_hdr = False
        for _ in range(nrec):
            if len(s) - q < 8:
                return None
            rfmt, rlen = struct.unpack_from(">II", s, q)
            dpos = q + 8
            if rlen > len(s) - dpos:
                return None
            r = s[dpos : dpos + rlen]
            q = dpos + rlen
            if rfmt >> 12:
                continue
            rf = rfmt & 0xFFF
            if rf == 1:
                if rlen < 16:
                    return None
                hp, frame, stripped, size = struct.unpack_from(">IIII", r)
                size = min(size, rlen - 16)
                hdr = r[16 : 16 + size]
                have_hdr = True
                hwire = frame - stripped if stripped <= 4 and frame >= stripped else frame
                hwire = max(hwire, size)
                hlink = {1: 1, 11: 228, 12: 229}.get(hp, 0xFFFF)
                hvlan = 0
                if hp == 1:
                    x = 12
                    while x + 4 <= size and _be(hdr[x : x + 2]) in (0x8100, 0x88A8, 0x9100):
                        hvlan = _be(hdr[x + 2 : x + 4]) & 0xFFF
                        x += 4
            elif rf == 3:
                if rlen < 32:
                    return None
                iplen, pr, a, b, sp, dp, fl, _tos = struct.unpack_from(">II4s4sIIII", r)
                ipv, src, dst, sport, dport, proto, flags = (
                    4,
                    to16(a),
                    to16(b),
                    sp & 0xFFFF,
                    dp & 0xFFFF,
                    pr & 0xFF,
                    fl & 0xFFFF,
                )
            elif rf == 4:
                if rlen < 56:
                    return None
                iplen, pr, a, b, sp, dp, fl, _prio = struct.unpack_from(">II16s16sIIII", r)
                ipv, src, dst, sport, dport, proto, flags = (
                    6,
                    a,
                    b,
                    sp & 0xFFFF,
                    dp & 0xFFFF,
                    pr & 0xFF,
                    fl & 0xFFFF,
                )
            elif rf == 1001:
                if rlen < 16:
                    return None
                svlan, _sp, dvlan, _dp = struct.unpack_from(">IIII", r)
        sp, dp, it, ic = _ports_icmp(proto, sport, dport, None, None, None)
        if ipv == 0:
            it = ic = 0

        def vlan(v: int) -> int:
            if 0 <= v < 4096:
                return v
            return hvlan if v < 0 else 0

        return _row(
            exporter=agent,
            export_kind=SFLOW5,
            domain=sub,
            src_ip=to_text(src),
            dst_ip=to_text(dst),
            ip_version=ipv,
            src_port=sp,
            dst_port=dp,
            protocol=proto,
            tcp_flags=flags,
            icmp_type=it,
            icmp_code=ic,
            packets=1,
            bytes=hwire if have_hdr else iplen,
            flow_start_ns=recv,
            flow_end_ns=recv,
            received_ns=recv,
            in_if=iif,
            out_if=oif,
            src_vlan=vlan(svlan),
            dst_vlan=vlan(dvlan),
            sampling_rate=rate,
            hdr_len=len(hdr) if have_hdr else 0,
            hdr_wirelen=hwire if have_hdr else 0,
            hdr_linktype=hlink if have_hdr else 0,
            header=hdr,
        )

    @staticmethod
    def _counter_sample(s: bytes, form: int, agent: str, sub: int, recv: int) -> list[Row] | None:
        if form == 2:
            if len(s) < 12:
                return None
            seq, _src, nrec = struct.unpack_from(">III", s)
            q = 12
        else:
            if len(s) < 16:
                return None
            seq, _t, _i, nrec = struct.unpack_from(">IIII", s)
            q = 16
        out = []
        for _ in range(nrec):
            if len(s) - q < 8:
                return None
            rfmt, rlen = struct.unpack_from(">II", s, q)
            dpos = q + 8
            if rlen > len(s) - dpos:
                return None
            if rfmt == 1 and rlen >= 88:
                row: Row = {"exporter": agent, "domain": sub, "received_ns": recv, "sample_seq": seq}
                x = dpos
                for name, w in InterfaceCounters.WIRE:
                    row[name] = _be(s[x : x + w])
                    x += w
                out.append(row)
            q = dpos + rlen
        return out


def any_r_pkts(v: dict[int, Any]) -> bool:
    """Whether a record's template had a reverse packet counter (its 0 then means no reverse row)."""
    return ie.K_R_PKTS in v
