"""Numba kernels of the flow-record table: bidirectional flows with timeouts, flags and running statistics.

A table is three arrays indexed by slot: ``t``, ``(capacity, HOT)`` uint64 rows of everything every packet
updates (128 bytes, two cache lines, rows start on 64-byte boundaries); ``s``, ``(capacity, STATS)``
uint64 rows of the running statistics (``(0, STATS)`` when the task keeps none), also viewed as float64
(``sf``) for the running means; and ``sp``, ``(capacity, splt)`` int32, the first packet sizes (SPLT:
``size + 1``, negative for the reverse direction, 0 for no packet).

Hot row (``t``), ``d`` = direction (0: from the flow's source, the sender of its first packet; 1: back):

=======  ===========  ======================================================================
word     name         content
=======  ===========  ======================================================================
0, 1     LO_A, LO_B   address of the *lower* endpoint (the key is stored canonically)
2, 3     HI_A, HI_B   address of the higher endpoint
4        MISC         ``OCCUPIED | SWAP | reason << 56 | vlan << 40 | lo_port << 24 |
                      hi_port << 8 | protocol``; 0 = empty slot. ``SWAP``: the source is the
                      higher endpoint. ``reason`` only in emitted records.
5        FIRST        time of the first packet (int64 ns)
6 + d    LAST         time of the last packet of direction d (LAST + 1 starts at FIRST, so
                      max(LAST, LAST + 1) is the flow's last time)
8 + d    PKTS         packets
10 + d   BYTES        wire bytes
12 + d   IPB          IP bytes (total length of the outer IP packet)
14       TCP          flags OR of d=0 (bits 0-7) and d=1 (8-15); endpoint states (16-18 source,
                      19-21 destination); markers (22-31); SYN packets of d=0 (32-47) and d=1
                      (48-63), saturating at 65535
15       CNT          TCP: FIN and RST packets, d=0 (bits 0-15, 16-31) and d=1 (32-47, 48-63),
                      saturating; ICMP: type << 8 | code of the first ICMP packet of d=0
                      (bits 0-15) and d=1 (16-31)
=======  ===========  ======================================================================

Statistics row (``s``): packet size (wire length) min (low 32 bits) and max (high 32) at SZMM + 3d,
running mean at SZMEAN + 3d, Welford's M2 at SZM2 + 3d; inter-arrival time (ns) min at IATMIN + 4d,
max at IATMAX + 4d, running mean at IATMEAN + 4d, M2 at IATM2 + 4d (means and M2 are float64 bits).

An emitted record is the hot row followed, when the task keeps statistics, by the statistics row
(``HOT + STATS`` words), with the end reason in MISC.

Time: packets are accounted in arrival order at ``max(ts, clock)`` where ``clock`` is the largest
timestamp seen so far (as nfstream does), so records and inter-arrival times never run backwards;
the packets that arrived late are counted (``state[S_OUT_OF_ORDER]``).

Expiry (``params``): a flow ends at the earlier of its deadlines, ``last + idle`` (``last + grace``
once the TCP end condition holds with TCP end expiry on) and ``first + active``, which names the
reason. A packet that finds its flow past a deadline ends that record and starts a new one in the same
slot; so does a new SYN (without ACK) on an ended connection when TCP end expiry is on.
:func:`expire` ends every flow past a deadline at a given time, or every flow with a given reason (end
of input, shutdown), or the least recently active ones (table full), removing them with backward-shift
deletion (no tombstones). Ended records are copied to an *outbox*; when it is full a kernel stops and
the caller makes room.

Weighted rows (flow-export records: ``packets``, ``octets``, ``flow_start_ns``): a row of one packet at
one time is a packet. A row of several packets (or a span of time) adds its packets and bytes to its
direction (saturating), spans ``min(start, ts) .. max(start, ts)`` (its last time is its time in the
table: the clock, lateness, time jumps; its first time is the one a deadline is checked against, and
lowers the flow's FIRST), applies its flags (the OR of its packets) as one packet, and marks the
direction ``WEIGHTED``: the per-packet statistics, flag counts, IP bytes and SPLT it would need are not
known, and :mod:`netspectra.flows.records` leaves them null rather than invent them.

Probing is linear over a power-of-two capacity; ``update`` never lets more than ``limit`` slots be used
and stops, returning the packet index, when a new flow would need one more (the caller grows the table
or makes room, then resumes). Every kernel has a plain-Python twin in :mod:`netspectra.flows.ref`.

numba freezes module globals into the compiled code and invalidates its cache only when this file
changes: every constant the kernels use is defined here, not imported.
"""

from __future__ import annotations

import numpy as np

from netspectra.jit import njit

HOT = 16
STATS = 16
LO_A, LO_B, HI_A, HI_B, MISC, FIRST = 0, 1, 2, 3, 4, 5
LAST, PKTS, BYTES, IPB = 6, 8, 10, 12
TCP, CNT = 14, 15
SZMM, SZMEAN, SZM2 = 0, 1, 2  # + 3 * direction, in the statistics row
IATMIN, IATMAX, IATMEAN, IATM2 = 6, 7, 8, 9  # + 4 * direction, in the statistics row

OCCUPIED = np.uint64(1 << 63)
SWAP = np.uint64(1 << 62)
REASON_SHIFT = np.uint64(56)
REASON_MASK = np.uint64(0xF << 56)
KEY_MASK = np.uint64(~((1 << 62) | (0xF << 56)) & 0xFFFF_FFFF_FFFF_FFFF)

# End reasons (MISC bits 56-59 of an emitted record)
IDLE, ACTIVE, TCP_END, END_OF_INPUT, SHUTDOWN, TABLE_FULL = 1, 2, 3, 4, 5, 6
REASON_NAMES = {
    IDLE: "idle",
    ACTIVE: "active",
    TCP_END: "tcp_end",
    END_OF_INPUT: "end_of_input",
    SHUTDOWN: "shutdown",
    TABLE_FULL: "table_full",
}

# TCP endpoint states (Zeek's TCP_ENDPOINT_*), 3 bits each at TCP bits 16 (source) and 19 (destination)
INACTIVE, SYN_SENT, SYN_ACK_SENT, PARTIAL, ESTABLISHED, CLOSED, RESET = 0, 1, 2, 3, 4, 5, 6
STATE_SHIFT = 16  # + 3 * direction
# markers in the TCP word
SYN_THEN_RST = 1 << 22  # the source went from SYN_SENT straight to RESET (Zeek's RSTOS0 history)
ENDED = 1 << 23  # FIN from both sides, or a RST
ICMP_SEEN = 1 << 24  # + direction: the ICMP type/code of that direction is set (in CNT)
EST_SEEN = 1 << 26  # + direction: that endpoint reached ESTABLISHED at some point
FLAGS_KNOWN = 1 << 28  # a TCP packet of the flow came with the tcp_flags column
IPLEN_KNOWN = 1 << 29  # a packet of the flow came with the ip_length column
WEIGHTED = 1 << 30  # + direction: a row of several packets (a flow-export record) went that way
SYN_SHIFT = 32  # + 16 * direction, in TCP
FIN_SHIFT, RST_SHIFT = 0, 16  # + 32 * direction, in CNT
ICMP_SHIFT = 0  # + 16 * direction, in CNT
COUNT_MAX = 0xFFFF

# TCP flag bits
F_FIN, F_SYN, F_RST, F_ACK = 0x01, 0x02, 0x04, 0x10

# params vector
P_IDLE, P_ACTIVE, P_TCP_END, P_GRACE, P_SPLT, P_STATS = range(6)
N_PARAMS = 6
# state vector
S_USED, S_OUT, S_CLOCK, S_OUT_OF_ORDER, S_SCRATCH, S_MIN_FIRST = range(6)
N_STATE = 6

# update() return codes
DONE, TABLE_FULL_STOP, OUTBOX_FULL, TIME_JUMP = 0, 1, 2, 3

#: Packets per block of :func:`update` (keys and hashes first, then the home rows loaded ahead).
BLOCK = 32

_ONE = np.uint64(1)
_LOW32 = np.uint64(0xFFFF_FFFF)
_C16 = np.uint64(0xFFFF)
_S32 = np.uint64(32)
_S40 = np.uint64(40)
_S24 = np.uint64(24)
_S8 = np.uint64(8)
_K_MIX = np.uint64(0x9E37_79B9_7F4A_7C15)
_K_F1 = np.uint64(0xFF51_AFD7_ED55_8CCD)
_K_F2 = np.uint64(0xC4CE_B9FE_1A85_EC53)
_LOW_BITS = np.uint64(0x7FFF_FFFF_FFFF_FFFF)


@njit(nogil=True, cache=True, inline="always")
def _mix(h, w):
    h = (h ^ w) * _K_MIX
    return h ^ (h >> np.uint64(29))


@njit(nogil=True, cache=True, inline="always")
def hash_key(a, b, c, d, misc):
    """64-bit hash of a canonical key (the exact task's construction: multiply-xorshift, fmix64).

    ``misc`` must have SWAP and the reason bits cleared.
    """
    h = _mix(np.uint64(0x2545_F491_4F6C_DD1D), a)
    h = _mix(h, b)
    h = _mix(h, c)
    h = _mix(h, d)
    h = _mix(h, misc)
    h ^= h >> np.uint64(33)
    h *= _K_F1
    h ^= h >> np.uint64(33)
    h *= _K_F2
    h ^= h >> np.uint64(33)
    return h


@njit(nogil=True, cache=True, inline="always")
def _last(t, j):
    a = np.int64(t[j, LAST])
    b = np.int64(t[j, LAST + 1])
    return a if a >= b else b


@njit(nogil=True, cache=True, inline="always")
def _inc16(word, shift):
    """``word`` with its 16-bit counter at ``shift`` incremented (saturating at :data:`COUNT_MAX`)."""
    sh = np.uint64(shift)
    if ((word >> sh) & _C16) == _C16:
        return word
    return word + (_ONE << sh)


@njit(nogil=True, cache=True, inline="always")
def _tcp(tcpw, d, f):
    """The TCP word after a packet with flags ``f`` (non-zero) from direction ``d``.

    Endpoint states follow Zeek's TCP analyzer as far as flags alone tell it (no sequence numbers):
    RST -> RESET (final); else CLOSED and RESET stay; else FIN -> CLOSED; else SYN from INACTIVE ->
    SYN_SENT (SYN_ACK_SENT with ACK); else a packet from INACTIVE -> PARTIAL; else ACK from SYN_SENT
    or SYN_ACK_SENT -> ESTABLISHED, and the SYN_ACK_SENT peer of a SYN_SENT endpoint that ACKs
    becomes ESTABLISHED too (the handshake is complete).
    """
    tcpw |= np.uint64(f) << np.uint64(8 * d)
    es = np.uint64(STATE_SHIFT + 3 * d)
    ps = np.uint64(STATE_SHIFT + 3 * (1 - d))
    e = np.int64((tcpw >> es) & np.uint64(7))
    p = np.int64((tcpw >> ps) & np.uint64(7))
    if f & F_RST:
        if d == 0 and e == SYN_SENT:
            tcpw |= np.uint64(SYN_THEN_RST)
        e = RESET
    elif e in (CLOSED, RESET):
        pass
    elif f & F_FIN:
        e = CLOSED
    elif f & F_SYN:
        if e == INACTIVE:
            e = SYN_ACK_SENT if (f & F_ACK) else SYN_SENT
    elif e == INACTIVE:
        e = PARTIAL
    elif e in (SYN_SENT, SYN_ACK_SENT) and (f & F_ACK):
        if e == SYN_SENT and p == SYN_ACK_SENT:
            p = ESTABLISHED
            tcpw |= np.uint64(EST_SEEN << (1 - d))
        e = ESTABLISHED
        tcpw |= np.uint64(EST_SEEN << d)
    tcpw = (tcpw & ~(np.uint64(7) << es)) | (np.uint64(e) << es)
    tcpw = (tcpw & ~(np.uint64(7) << ps)) | (np.uint64(p) << ps)
    if e == RESET or p == RESET or (e == CLOSED and p == CLOSED):
        tcpw |= np.uint64(ENDED)
    if f & F_SYN:
        tcpw = _inc16(tcpw, SYN_SHIFT + 16 * d)
    return tcpw


@njit(nogil=True, cache=True, inline="always")
def _packet(t, j, d, proto, f, has_flags, icmp, has_icmp, has_iplen):
    """Apply the flags, ICMP type/code and 'known' markers of one packet of direction ``d``."""
    tcpw = t[j, TCP]
    if has_iplen:
        tcpw |= np.uint64(IPLEN_KNOWN)
    if proto == 6:
        if has_flags:
            tcpw |= np.uint64(FLAGS_KNOWN)
            if f != 0:
                tcpw = _tcp(tcpw, d, f)
                if f & (F_FIN | F_RST):
                    cnt = t[j, CNT]
                    if f & F_FIN:
                        cnt = _inc16(cnt, FIN_SHIFT + 32 * d)
                    if f & F_RST:
                        cnt = _inc16(cnt, RST_SHIFT + 32 * d)
                    t[j, CNT] = cnt
    elif (proto == 1 or proto == 58) and has_icmp:
        seen = np.uint64(ICMP_SEEN << d)
        if (tcpw & seen) == 0:
            tcpw |= seen
            t[j, CNT] |= np.uint64(icmp) << np.uint64(ICMP_SHIFT + 16 * d)
    t[j, TCP] = tcpw


@njit(nogil=True, cache=True, inline="always")
def _splt_entry(ln, d):
    """An SPLT entry: ``size + 1`` (never 0, which marks "no packet"), negative for direction 1;
    sizes saturate at 2**31 - 2 (far beyond any frame a capture layer accepts)."""
    v = np.int64(ln) + 1
    if v > 2147483647:
        v = 2147483647
    return np.int32(v) if d == 0 else np.int32(-v)


@njit(nogil=True, cache=True, inline="always")
def _init(t, s, sf, sp, j, a, b, c, e, misc, swap, tt, ln, ipl, proto, f, has_flags, icmp, has_icmp,
          has_iplen):  # fmt: skip
    """Slot ``j`` becomes a new flow whose first packet (from its source: direction 0) is this one."""
    t[j, LO_A] = a
    t[j, LO_B] = b
    t[j, HI_A] = c
    t[j, HI_B] = e
    t[j, MISC] = misc | (SWAP if swap else np.uint64(0))
    ut = np.uint64(tt)
    t[j, FIRST] = ut
    t[j, LAST] = ut
    t[j, LAST + 1] = ut
    t[j, PKTS] = _ONE
    t[j, PKTS + 1] = 0
    t[j, BYTES] = np.uint64(ln)
    t[j, BYTES + 1] = 0
    t[j, IPB] = np.uint64(ipl)
    t[j, IPB + 1] = 0
    t[j, TCP] = 0
    t[j, CNT] = 0
    _packet(t, j, 0, proto, f, has_flags, icmp, has_icmp, has_iplen)
    if s.shape[0] != 0:
        lw = np.uint64(ln)
        s[j, SZMM] = lw | (lw << _S32)
        sf[j, SZMEAN] = np.float64(ln)
        for k in range(SZM2, STATS):
            s[j, k] = 0
    n = sp.shape[1]
    if n > 0:
        sp[j, 0] = _splt_entry(ln, 0)
        for k in range(1, n):
            sp[j, k] = 0


@njit(nogil=True, cache=True, inline="always")
def _add(t, s, sf, sp, j, d, tt, ln, ipl, proto, f, has_flags, icmp, has_icmp, has_iplen):
    """Account one packet of direction ``d`` into the flow of slot ``j``."""
    before = t[j, PKTS + d]
    t[j, PKTS + d] = before + _ONE
    t[j, BYTES + d] += np.uint64(ln)
    t[j, IPB + d] += np.uint64(ipl)
    if s.shape[0] != 0:
        x = np.float64(ln)
        mm = SZMM + 3 * d
        if before == 0:
            lw = np.uint64(ln)
            s[j, mm] = lw | (lw << _S32)
            sf[j, mm + 1] = x
            sf[j, mm + 2] = 0.0
        else:
            lo = s[j, mm] & _LOW32
            hi = s[j, mm] >> _S32
            lw = np.uint64(ln)
            if lw < lo:
                lo = lw
            if lw > hi:
                hi = lw
            s[j, mm] = lo | (hi << _S32)
            mean = sf[j, mm + 1]
            delta = x - mean
            mean += delta / np.float64(before + _ONE)
            sf[j, mm + 1] = mean
            sf[j, mm + 2] += delta * (x - mean)
        if before > 0:
            iat = tt - np.int64(t[j, LAST + d])
            ia = IATMIN + 4 * d
            y = np.float64(iat)
            if before == 1:
                s[j, ia] = np.uint64(iat)
                s[j, ia + 1] = np.uint64(iat)
                sf[j, ia + 2] = y
                sf[j, ia + 3] = 0.0
            else:
                if iat < np.int64(s[j, ia]):
                    s[j, ia] = np.uint64(iat)
                if iat > np.int64(s[j, ia + 1]):
                    s[j, ia + 1] = np.uint64(iat)
                mean = sf[j, ia + 2]
                delta = y - mean
                mean += delta / np.float64(before)
                sf[j, ia + 2] = mean
                sf[j, ia + 3] += delta * (y - mean)
    t[j, LAST + d] = np.uint64(tt)
    _packet(t, j, d, proto, f, has_flags, icmp, has_icmp, has_iplen)
    n = sp.shape[1]
    if n > 0:
        # unsigned: counts of weighted rows can exceed int64 (their SPLT is null anyway)
        k = t[j, PKTS] + t[j, PKTS + 1] - _ONE
        if k < np.uint64(n):
            sp[j, np.int64(k)] = _splt_entry(ln, d)


@njit(nogil=True, cache=True, inline="always")
def _sat(a, b):
    c = a + b
    return c if c >= a else np.uint64(0xFFFF_FFFF_FFFF_FFFF)


@njit(nogil=True, cache=True, inline="always")
def _weigh(t, j, d, first, pk, oc, created):
    """Make the packet just applied to slot ``j`` (direction ``d``) a row of ``pk`` packets and ``oc``
    bytes whose first packet came at ``first``: counters, FIRST, and the WEIGHTED marker. ``created``:
    the row started the flow (its counters hold that one packet; its IP bytes are not known)."""
    if created:
        t[j, PKTS] = pk
        t[j, BYTES] = oc
        t[j, IPB] = 0
        t[j, FIRST] = np.uint64(first)
        t[j, LAST + 1] = np.uint64(first)
    else:
        t[j, PKTS + d] = _sat(t[j, PKTS + d], pk)
        t[j, BYTES + d] = _sat(t[j, BYTES + d], oc)
        if first < np.int64(t[j, FIRST]):
            t[j, FIRST] = np.uint64(first)
    t[j, TCP] |= np.uint64(WEIGHTED << d)


@njit(nogil=True, cache=True, inline="always")
def _add_flags(t, j, d, tt, proto, f, has_flags, icmp, has_icmp):
    """The part of :func:`_add` a weighted row keeps: its time and its flags (no size, no gap, no SPLT)."""
    t[j, LAST + d] = np.uint64(tt)
    _packet(t, j, d, proto, f, has_flags, icmp, has_icmp, False)


@njit(nogil=True, cache=True, inline="always")
def _emit(t, s, sp, j, reason, out, out_sp, k):
    for w in range(HOT):
        out[k, w] = t[j, w]
    out[k, MISC] = (t[j, MISC] & ~REASON_MASK) | (np.uint64(reason) << REASON_SHIFT)
    if s.shape[0] != 0:
        for w in range(STATS):
            out[k, HOT + w] = s[j, w]
    for w in range(sp.shape[1]):
        out_sp[k, w] = sp[j, w]


@njit(nogil=True, cache=True, inline="always")
def _move(t, s, sp, src, dst):
    for w in range(HOT):
        t[dst, w] = t[src, w]
    if s.shape[0] != 0:
        for w in range(STATS):
            s[dst, w] = s[src, w]
    for w in range(sp.shape[1]):
        sp[dst, w] = sp[src, w]


@njit(nogil=True, cache=True, inline="always")
def _timeout_reason(t, j, now, idle, active, tcp_end, grace):
    """The reason the flow of slot ``j`` has ended by time ``now`` (0: it has not).

    The flow ends at its earlier deadline — ``last + idle`` (``last + grace`` once the TCP end
    condition holds with TCP end expiry on) or ``first + active`` — and that deadline names the
    reason (idle wins a tie), so the reason does not depend on when the table is looked at.
    """
    ended = tcp_end and (t[j, TCP] & np.uint64(ENDED)) != 0
    limit = grace if ended else idle
    last = _last(t, j)
    first = np.int64(t[j, FIRST])
    # differences, not sums: times near the ends of int64 (clamped timestamps) must not overflow
    if now - last >= limit or now - first >= active:
        if last - first <= active - limit:  # last + limit <= first + active: the idle deadline came first
            return TCP_END if ended else IDLE
        return ACTIVE
    return 0


@njit(nogil=True, cache=True)
def update(t, s, sf, sp, state, params, start, limit, ts, src, dst, sport, dport, proto, length, flags, vlan,
           icmp, iplen, out, out_sp, wpk, woct, wstart):  # fmt: skip
    """Account packets ``start .. n-1``; returns ``(index of the first packet not done, code)``.

    ``t``, ``s`` (``sf``: its float64 view) and ``sp`` are the table's arrays (see the module docstring);
    ``state`` (int64, :data:`N_STATE`) holds used slots, outbox fill, the clock and counters and is
    updated in place; ``params`` (int64, :data:`N_PARAMS`) the timeouts (ns), TCP end expiry (0/1),
    SPLT length and statistics (0/1). ``src``/``dst`` are the addresses as (n, 2) uint64; ``flags``,
    ``vlan``, ``icmp``, ``iplen`` are the optional columns, each of length n or 0 (absent). ``out`` is
    the outbox (rows of ``HOT`` or ``HOT + STATS`` words), ``out_sp`` its SPLT rows. ``wpk``, ``woct``
    (uint64) and ``wstart`` (int64) are the weighted rows' ``packets``, ``octets`` and
    ``flow_start_ns``, each of length n or 0 (see the module docstring); rows of 0 packets must not be
    passed (the task leaves them out).

    Codes: :data:`DONE` (every packet is in), :data:`TABLE_FULL_STOP` (a new flow would need more
    than ``limit`` used slots), :data:`OUTBOX_FULL` (a record must be emitted and the outbox is full),
    :data:`TIME_JUMP` (the packet is more than ``idle`` older than the clock: another time base — the
    caller ends every open flow and resets the clock). In the stop cases nothing of the returned packet
    has been applied.
    """
    cap_mask = np.uint64(t.shape[0] - 1)
    used = state[S_USED]
    k_out = state[S_OUT]
    clock = state[S_CLOCK]
    ooo = state[S_OUT_OF_ORDER]
    out_cap = out.shape[0]
    idle = params[P_IDLE]
    active = params[P_ACTIVE]
    tcp_end = params[P_TCP_END] != 0
    grace = params[P_GRACE]
    stats = s.shape[0] != 0
    n = ts.shape[0]
    has_flags = flags.shape[0] != 0
    has_vlan = vlan.shape[0] != 0
    has_icmp = icmp.shape[0] != 0
    has_iplen = iplen.shape[0] != 0
    has_w = wpk.shape[0] != 0
    has_ws = wstart.shape[0] != 0
    keys = np.empty((BLOCK, 7), np.uint64)
    touch = np.uint64(0)
    code = DONE
    stop = n
    for base in range(start, n, BLOCK):
        end = min(base + BLOCK, n)
        for i in range(base, end):
            r = i - base
            a0 = src[i, 0]
            a1 = src[i, 1]
            b0 = dst[i, 0]
            b1 = dst[i, 1]
            ps = np.uint64(sport[i])
            pd = np.uint64(dport[i])
            fwd = a0 < b0 or (a0 == b0 and (a1 < b1 or (a1 == b1 and ps <= pd)))
            v = np.uint64(vlan[i]) & np.uint64(0xFFF) if has_vlan else np.uint64(0)
            if fwd:
                misc = OCCUPIED | (v << _S40) | (ps << _S24) | (pd << _S8) | np.uint64(proto[i])
                keys[r, 0] = a0
                keys[r, 1] = a1
                keys[r, 2] = b0
                keys[r, 3] = b1
            else:
                misc = OCCUPIED | (v << _S40) | (pd << _S24) | (ps << _S8) | np.uint64(proto[i])
                keys[r, 0] = b0
                keys[r, 1] = b1
                keys[r, 2] = a0
                keys[r, 3] = a1
            keys[r, 4] = misc
            keys[r, 5] = hash_key(keys[r, 0], keys[r, 1], keys[r, 2], keys[r, 3], misc) & cap_mask
            keys[r, 6] = np.uint64(1) if fwd else np.uint64(0)
        for r in range(end - base):
            # every cache line of the home slot that the update touches, loaded ahead so that the
            # misses of a block overlap instead of coming one packet at a time
            h = keys[r, 5]
            touch ^= t[h, MISC] ^ t[h, PKTS]
            if stats:
                touch ^= s[h, SZMM] ^ s[h, IATMEAN]
        for i in range(base, end):
            r = i - base
            a = keys[r, 0]
            b = keys[r, 1]
            c = keys[r, 2]
            e = keys[r, 3]
            misc = keys[r, 4]
            j = keys[r, 5]
            fwd = keys[r, 6] != 0
            tt = ts[i]
            multi = False
            pk = _ONE
            oc = np.uint64(0)
            tf = tt
            if has_w:
                pk = wpk[i]
                oc = woct[i]
                if has_ws:
                    tf = wstart[i]
                    if tf > tt:
                        tf, tt = tt, tf
                multi = pk != _ONE or oc > _LOW32 or tf != tt
            if tt < clock:
                # the difference as uint64 is exact (it is below 2**64) where int64 could overflow
                if np.uint64(clock) - np.uint64(tt) > np.uint64(idle):
                    code = TIME_JUMP
                    stop = i
                    break
                tt = clock
                late = 1
            else:
                late = 0
            ln = length[i]
            if multi:
                ipl = np.uint32(0)
                t_chk = tf  # a deadline is checked against the row's first packet
            else:
                ipl = iplen[i] if has_iplen else np.uint32(0)
                t_chk = tt
            known_ipl = has_iplen and not multi
            f = np.int64(flags[i]) if has_flags else np.int64(0)
            ic = icmp[i] if has_icmp else np.uint16(0)
            pr = proto[i]
            while True:
                m = t[j, MISC]
                if m == 0:
                    if used >= limit:
                        code = TABLE_FULL_STOP
                        break
                    _init(t, s, sf, sp, j, a, b, c, e, misc, not fwd, tt, ln, ipl, pr, f, has_flags, ic,
                          has_icmp, known_ipl)  # fmt: skip
                    if multi:
                        _weigh(t, j, 0, tf, pk, oc, True)
                    used += 1
                    break
                if (
                    (m & KEY_MASK) == misc
                    and t[j, LO_A] == a
                    and t[j, LO_B] == b
                    and t[j, HI_A] == c
                    and t[j, HI_B] == e
                ):
                    reason = _timeout_reason(t, j, t_chk, idle, active, tcp_end, grace)
                    if (
                        reason == 0
                        and tcp_end
                        and (f & F_SYN) != 0
                        and (f & F_ACK) == 0
                        and (t[j, TCP] & np.uint64(ENDED)) != 0
                    ):
                        reason = TCP_END  # a new connection on the same ports
                    if reason != 0:
                        if k_out >= out_cap:
                            code = OUTBOX_FULL
                            break
                        _emit(t, s, sp, j, reason, out, out_sp, k_out)
                        k_out += 1
                        _init(t, s, sf, sp, j, a, b, c, e, misc, not fwd, tt, ln, ipl, pr, f, has_flags, ic,
                              has_icmp, known_ipl)  # fmt: skip
                        if multi:
                            _weigh(t, j, 0, tf, pk, oc, True)
                    else:
                        d = 1 if fwd == ((m & SWAP) != 0) else 0
                        if multi:
                            _add_flags(t, j, d, tt, pr, f, has_flags, ic, has_icmp)
                            _weigh(t, j, d, tf, pk, oc, False)
                        else:
                            _add(t, s, sf, sp, j, d, tt, ln, ipl, pr, f, has_flags, ic, has_icmp, has_iplen)
                    break
                j = (j + _ONE) & cap_mask
            if code != DONE:
                stop = i
                break
            clock = tt
            ooo += late
        if code != DONE:
            break
    state[S_USED] = used
    state[S_OUT] = k_out
    state[S_CLOCK] = clock
    state[S_OUT_OF_ORDER] = ooo
    state[S_SCRATCH] = np.int64(touch & _LOW_BITS)  # an observable use of the loads
    return stop, code


@njit(nogil=True, cache=True, inline="always")
def _home(t, j, cap_mask):
    return hash_key(t[j, LO_A], t[j, LO_B], t[j, HI_A], t[j, HI_B], t[j, MISC] & KEY_MASK) & cap_mask


@njit(nogil=True, cache=True)
def _delete(t, s, sp, hole):
    """Empty slot ``hole`` by backward-shift deletion: later members of its cluster that may live
    earlier move back, so every key stays reachable from its home slot without tombstones."""
    cap_mask = np.uint64(t.shape[0] - 1)
    h = np.uint64(hole)
    j = h
    while True:
        j = (j + _ONE) & cap_mask
        if t[j, MISC] == 0:
            break
        home = _home(t, j, cap_mask)
        # the member at j may fill the hole unless its home lies cyclically in (h, j]
        movable = (home <= h or home > j) if j > h else (home <= h and home > j)
        if movable:
            _move(t, s, sp, j, h)
            h = j
    for w in range(HOT):
        t[h, w] = 0


@njit(nogil=True, cache=True)
def first_free(t):
    """Index of an empty slot (-1 if none): where a whole-table walk starts."""
    for j in range(t.shape[0]):
        if t[j, MISC] == 0:
            return j
    return -1


@njit(nogil=True, cache=True)
def expire(t, s, sp, state, params, origin, done, now, cutoff, final_reason, out, out_sp):
    """Walk the table from slot ``origin`` (an empty slot), ``done`` slots already walked, ending flows.

    A flow ends with ``final_reason`` when it is non-zero (end of input, shutdown); else with the reason
    of its timeout at time ``now`` (:func:`_timeout_reason`); else with :data:`TABLE_FULL` when its last
    packet is at or before ``cutoff`` (pass the smallest int64 to evict nothing). Ended flows go to the
    outbox and leave the table — except with ``final_reason``, where every flow is copied out and the
    table is left as it is: the caller discards the whole table afterwards. Returns the slots walked so
    far: the table's capacity when the walk is complete, less when the outbox filled (make room and call
    again with that value as ``done``). ``state[S_MIN_FIRST]`` is lowered to the first-packet time of
    every flow the walk leaves in the table (the caller sets it before the walk).
    """
    cap = t.shape[0]
    cap_mask = np.uint64(cap - 1)
    idle = params[P_IDLE]
    active = params[P_ACTIVE]
    tcp_end = params[P_TCP_END] != 0
    grace = params[P_GRACE]
    used = state[S_USED]
    k_out = state[S_OUT]
    out_cap = out.shape[0]
    k = done
    while k < cap:
        j = np.uint64(origin + k) & cap_mask
        if t[j, MISC] == 0:
            k += 1
            continue
        if final_reason != 0:
            reason = final_reason
        else:
            reason = _timeout_reason(t, j, now, idle, active, tcp_end, grace)
            if reason == 0 and _last(t, j) <= cutoff:
                reason = TABLE_FULL
        if reason == 0:
            first = np.int64(t[j, FIRST])
            if first < state[S_MIN_FIRST]:
                state[S_MIN_FIRST] = first
            k += 1
            continue
        if k_out >= out_cap:
            break
        _emit(t, s, sp, j, reason, out, out_sp, k_out)
        k_out += 1
        if final_reason != 0:
            k += 1  # the whole table goes: no need to keep it consistent
            continue
        _delete(t, s, sp, j)
        used -= 1
        # slot j may now hold a member moved back from further on: look at it again (k unchanged)
    state[S_USED] = used
    state[S_OUT] = k_out
    return k


@njit(nogil=True, cache=True)
def rehash(old, old_s, old_sp, new, new_s, new_sp):
    """Move every flow of the table ``old`` into the empty, larger ``new``; returns the flows moved."""
    cap_mask = np.uint64(new.shape[0] - 1)
    moved = 0
    stats = old_s.shape[0] != 0
    for r in range(old.shape[0]):
        if old[r, MISC] == 0:
            continue
        j = _home(old, r, cap_mask)
        while new[j, MISC] != 0:
            j = (j + _ONE) & cap_mask
        for w in range(HOT):
            new[j, w] = old[r, w]
        if stats:
            for w in range(STATS):
                new_s[j, w] = old_s[r, w]
        for w in range(old_sp.shape[1]):
            new_sp[j, w] = old_sp[r, w]
        moved += 1
    return moved


@njit(nogil=True, cache=True)
def last_seen(t):
    """The last-packet time of every occupied slot, in slot order (for choosing what to evict)."""
    n = 0
    for j in range(t.shape[0]):
        if t[j, MISC] != 0:
            n += 1
    out = np.empty(n, np.int64)
    n = 0
    for j in range(t.shape[0]):
        if t[j, MISC] != 0:
            out[n] = _last(t, j)
            n += 1
    return out
