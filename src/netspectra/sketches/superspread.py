"""SuperSpread (skt_type 1): per-flow spread (number of distinct elements) and super-spreader detection.

The algorithm is the original's (Go2NetSpectra ``statistic/super_spread.go``), made reproducible:

* ``d`` rows of ``w`` cells. A cell holds a *GeneralHLL* (``m`` registers capped at
  ``cap = min(2**size - 1, 33)``, two hash seeds ``s0, s1`` of its own and a float ``p``, 1 when
  empty), a key (the fixed-width bytes of one flow) and a uint32 value.
* ``encode(x)`` with ``x = flow ‖ elem``: ``v = min(clz32(murmur(x, s0)) + 1, cap)``,
  ``r = murmur(x, s1) % m``. If ``v <= reg[r]`` the element changes nothing (−1). Otherwise
  ``reg[r] = v`` and the value of ``p`` *before* the update is returned; then
  ``p -= base**old / m`` and, if ``v < cap``, ``p += base**v / m``. So ``p = (1/m)·Σ base**reg`` over
  the registers below the cap: the probability that a new distinct element changes the HLL.
* ``insert(flow, elem)``: per row ``i``, ``j = murmur(flow, seed_i) % w``; ``p = encode(x)`` in cell
  ``(i, j)``; on −1 skip the row; else with probability ``(1/p) / ceil(1/p)`` apply ``ceil(1/p)``
  *units* (so a changing element is worth ``1/p`` distinct elements in expectation). A unit follows
  HeavyKeeper: value 0 → value 1 and the key becomes ``flow``; key equal to ``flow`` → value + 1;
  otherwise value − 1 with probability ``b**-value``, else the unit is dropped. A decrement to 0 keeps
  the old key; the next unit (of this packet or a later one) then takes the cell. The HLL is shared
  by all flows hashed to the cell; the packet length plays no part.
* ``query(flow) = max(1, max value over the rows whose cell key equals flow)``.
* Super-spreaders: distinct keys of cells with value > 0, estimated by ``query``, kept when
  ``>= threshold``, sorted by value descending (ties by key bytes, so output is deterministic).

Differences from the original, on purpose:

* ``reset`` also resets ``p`` to 1. The original left it stale (spec §12 bug 2): in the next period
  the first new elements of a cell were worth the old, large ``1/p`` each, then ``p`` fell below 0 and
  nothing counted any more (a negative number of units), so large spreads came out far too low.
* Registers are uint8 (a register never exceeds 33), not uint32: ``d·w·(m + L + 20)`` bytes instead of
  about ``d·w·(8m + L + 8)``.
* All randomness — row seeds, cell seeds and the coin flips of insert — comes from one splitmix64
  generator whose 64-bit state lives in the sketch, so a run is reproducible from its seed and
  :mod:`netspectra.sketches.superspread_ref` can replay it exactly. Draw order: at construction
  ``d`` row seeds, then ``(s0, s1)`` of each cell in row-major order; in insert, one uniform per row
  whose encode changed the HLL (the ``(1/p)/ceil(1/p)`` coin, drawn even when that probability is 1),
  then one uniform per unit that meets a foreign key with a non-zero value. Seeds are the high 32
  bits of a draw; uniforms are its high 53 bits times 2**-53.
* Updates are single-threaded per sketch (the original used CAS on shared cells); scale-out shards the
  stream by flow across sketches instead.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass

import numpy as np

from netspectra.jit import leading_zeros, njit
from netspectra.prefetch import prefetch
from netspectra.sketches.base import HeavyHitters, HitterType, Sketch, SketchParams, distinct_rows
from netspectra.sketches.keys import key_length
from netspectra.sketches.murmur import murmur3_32, pack_words
from netspectra.sketches.primitives import fmix32, mix_block, murmur_round
from netspectra.sketches.primitives import next64 as _next64
from netspectra.sketches.primitives import uniform as _uniform

SKT_TYPE = 1

DEFAULT_WIDTH = 1 << 20
DEFAULT_DEPTH = 3
DEFAULT_THRESHOLD = 4096
DEFAULT_M = 128
DEFAULT_SIZE = 5
DEFAULT_BASE = 0.5
DEFAULT_B = 1.08
#: ``b**-v`` is tabulated for values below this; larger values call ``pow`` (same in the reference).
DECAY_LEN = 4096
#: A register never exceeds 33 (clz32 + 1), so the cap is at most 33 whatever ``size`` says.
MAX_REGISTER = 33

_S32 = np.uint64(32)
_MAGIC = b"NSSS"
_FORMAT = 1


# --------------------------------------------------------------------------------------------- kernels
@njit(nogil=True, cache=True, inline="always")
def _clz32(x: np.uint32) -> int:
    # leading zero bits of the 32-bit word, 32 for zero (as the original's leadingZeros32); one lzcnt:
    # a binary search would branch on random hash bits and mispredict about once a call
    return int(leading_zeros(np.uint32(x)))


_M32 = np.uint64(0xFFFFFFFF)
_MC1 = np.uint64(0xCC9E2D51)
_MC2 = np.uint64(0x1B873593)
_MN = np.uint64(0xE6546B64)
_MF1 = np.uint64(0x85EBCA6B)
_MF2 = np.uint64(0xC2B2AE35)


@njit(nogil=True, cache=True, inline="always")
def _rotl32(x: np.uint64, r: int) -> np.uint64:
    return ((x << np.uint64(r)) | (x >> np.uint64(32 - r))) & _M32


@njit(nogil=True, cache=True, inline="always")
def _fmix32(h: np.uint64) -> np.uint32:
    h ^= h >> np.uint64(16)
    h = (h * _MF1) & _M32
    h ^= h >> np.uint64(13)
    h = (h * _MF2) & _M32
    h ^= h >> np.uint64(16)
    return np.uint32(h)


@njit(nogil=True, cache=True)
def murmur3_32_pair(data: np.ndarray, length: int, seed_a: int, seed_b: int) -> tuple[np.uint32, np.uint32]:
    """``(murmur3_32(data, length, seed_a), murmur3_32(data, length, seed_b))`` in one pass over the data.

    The one-row form of the encode's two hashes (the flow‖element bytes under the cell's two seeds).
    :func:`update_kernel` hashes a whole block of rows at once instead; this form is what the
    one-pass kernel that the block kernel is tested against (tests/unit/test_superspread_blocks.py)
    uses.
    """
    ha = np.uint64(seed_a) & _M32
    hb = np.uint64(seed_b) & _M32
    nblocks = length // 4
    for i in range(nblocks):
        o = i * 4
        k = (
            np.uint64(data[o])
            | (np.uint64(data[o + 1]) << np.uint64(8))
            | (np.uint64(data[o + 2]) << np.uint64(16))
            | (np.uint64(data[o + 3]) << np.uint64(24))
        )
        k = (_rotl32((k * _MC1) & _M32, 15) * _MC2) & _M32
        ha = (_rotl32(ha ^ k, 13) * np.uint64(5) + _MN) & _M32
        hb = (_rotl32(hb ^ k, 13) * np.uint64(5) + _MN) & _M32
    tail = nblocks * 4
    rem = length & 3
    if rem > 0:
        k = np.uint64(0)
        if rem == 3:
            k ^= np.uint64(data[tail + 2]) << np.uint64(16)
        if rem >= 2:
            k ^= np.uint64(data[tail + 1]) << np.uint64(8)
        k ^= np.uint64(data[tail])
        k = (_rotl32((k * _MC1) & _M32, 15) * _MC2) & _M32
        ha ^= k
        hb ^= k
    n = np.uint64(length) & _M32
    return _fmix32(ha ^ n), _fmix32(hb ^ n)


@njit(nogil=True, cache=True)
def init_seeds(rng: np.ndarray, row_seeds: np.ndarray, cell_seeds: np.ndarray) -> None:
    """Fill ``row_seeds`` (d,) then ``cell_seeds`` (d, w, 2) from the generator, in that order."""
    for i in range(row_seeds.shape[0]):
        row_seeds[i] = np.uint32(_next64(rng) >> _S32)
    d, w, _ = cell_seeds.shape
    for i in range(d):
        for j in range(w):
            cell_seeds[i, j, 0] = np.uint32(_next64(rng) >> _S32)
            cell_seeds[i, j, 1] = np.uint32(_next64(rng) >> _S32)


#: Packets whose hashes :func:`update_kernel` computes (and whose cells it prefetches) before it
#: applies any of them.
_BLOCK = 64


@njit(nogil=True, cache=True)
def update_kernel(
    x: np.ndarray,
    words: np.ndarray,
    L: int,
    row_seeds: np.ndarray,
    cell_seeds: np.ndarray,
    regs: np.ndarray,
    p: np.ndarray,
    keys: np.ndarray,
    values: np.ndarray,
    pw_m: np.ndarray,
    decay: np.ndarray,
    b: float,
    cap: int,
    rng: np.ndarray,
) -> None:
    """Insert every row of ``x`` in order (see the module docstring for the rules).

    ``x`` is uint8 (n, L + E): each row is a flow key (its first ``L`` bytes) followed by an element key;
    ``words`` is the same rows packed by :func:`~netspectra.sketches.murmur.pack_words`. Shapes of the
    state (all C-contiguous): row_seeds uint32 (d,), cell_seeds uint32 (d, w, 2), regs uint8
    (d, w, m), p float64 (d, w), keys uint8 (d, w, L), values uint32 (d, w), pw_m float64 (34,) =
    base**k / m, decay float64 = b**-v, rng uint64 (1,) (advanced in place).

    No hash depends on the state (the cell seeds are fixed at construction), so the rows go in blocks
    of :data:`_BLOCK` through three passes: (1) hash every flow under the row seeds and prefetch its
    cells' seeds; (2) hash every flow‖element under its cells' seeds and prefetch the register it
    ranks; (3) apply the block's updates packet by packet, row by row, as a one-pass loop would. The
    passes are software-pipelined over two blocks (pass 1 of block k runs between passes 2 and 3 of
    block k - 1), so every prefetch has a whole pass to arrive. Only pass 3 reads or writes the
    state, and it draws from the generator in the same order, so the result is the plain loop's (the
    reference's) bit for bit; a cell updated twice in a block sees its first update. The misses of a
    block overlap instead of following one another.

    The hashing is laid out for SIMD: the seed-independent half of MurmurHash3 (the mix of each
    4-byte block) is done once per row of ``x`` and shared by its ``2 + 2d`` hashes (the flow is a
    prefix of the flow‖element bytes), and the rounds run across the block's packets (one vector
    lane per packet), in 32-bit arrays the compiler vectorises.
    """
    n, LE = x.shape
    d, w, m = regs.shape
    nd = decay.shape[0]
    seeds = cell_seeds.reshape(d * w * 2)
    flat_regs = regs.reshape(d * w * m)
    flat_p = p.reshape(d * w)
    flat_values = values.reshape(d * w)
    flat_keys = keys.reshape(d * w * L)
    uw = np.uint64(w)
    um = np.uint64(m)
    m_mask = um - np.uint64(1) if m & (m - 1) == 0 else np.uint64(0)  # r = h % m as a mask when it can
    nbf = L // 4  # whole 4-byte blocks of the flow key
    nbx = LE // 4  # whole 4-byte blocks of the flow‖element row
    flow_tail = nbx  # rows of `mixed` holding the flow's and the row's tail block (1-3 bytes), mixed
    row_tail = nbx + 1
    flow_tail_mask = (np.uint64(1) << np.uint64(8 * (L & 3))) - np.uint64(1)
    len_f = np.uint64(L)
    len_x = np.uint64(LE)
    mixed = np.zeros((2, nbx + 2, _BLOCK), np.uint32)  # [buffer, block of the key, packet of the block]
    ha = np.empty(_BLOCK, np.uint32)  # running hashes, one lane per packet
    hb = np.empty(_BLOCK, np.uint32)
    cells = np.empty((2, d, _BLOCK), np.int64)  # [buffer, row, packet]: i * w + j
    slots = np.empty((d, _BLOCK), np.int64)  # the register (cell * m + r) the packet ranks in that row
    ranks = np.empty((d, _BLOCK), np.int64)  # its rank v
    nblocks = (n + _BLOCK - 1) // _BLOCK
    # software pipeline: step k hashes block k (pass 1) between pass 2 and pass 3 of block k - 1, so
    # each prefetch has a whole pass to land; blocks alternate between two buffers
    for step in range(nblocks + 1):
        cur = (step - 1) & 1  # buffer of block step - 1
        b0 = (step - 1) * _BLOCK
        nb = min(n - b0, _BLOCK) if step > 0 else 0
        if step > 0:
            # ---- pass 2: GeneralHLL encode's two hashes under the cell's seeds; prefetch the register
            for i in range(d):
                for tb in range(nb):
                    c = cells[cur, i, tb]
                    ha[tb] = seeds[2 * c]
                    hb[tb] = seeds[2 * c + 1]
                for q in range(nbx):
                    for tb in range(nb):
                        k = np.uint64(mixed[cur, q, tb])
                        ha[tb] = murmur_round(np.uint64(ha[tb]), k)
                        hb[tb] = murmur_round(np.uint64(hb[tb]), k)
                for tb in range(nb):
                    k = np.uint64(mixed[cur, row_tail, tb])
                    ha[tb] = fmix32(np.uint64(ha[tb]) ^ k ^ len_x)
                    hb[tb] = fmix32(np.uint64(hb[tb]) ^ k ^ len_x)
                for tb in range(nb):
                    v = _clz32(ha[tb]) + 1
                    ranks[i, tb] = v if v < cap else cap
                    h1 = np.uint64(hb[tb])
                    s = cells[cur, i, tb] * m + np.int64(h1 & m_mask if m_mask else h1 % um)
                    slots[i, tb] = s
                    prefetch(flat_regs, s)
        if step < nblocks:
            nxt = step & 1
            a0 = step * _BLOCK
            na = min(n - a0, _BLOCK)
            # ---- pass 1: mix the blocks of every row; the cell of every sketch row; prefetch its seeds
            for q in range(nbx):
                word = q >> 1
                shift = np.uint64((q & 1) * 32)
                for tb in range(na):
                    mixed[nxt, q, tb] = mix_block((words[a0 + tb, word] >> shift) & _M32)
            if L & 3:
                word = nbf >> 1
                shift = np.uint64((nbf & 1) * 32)
                for tb in range(na):
                    mixed[nxt, flow_tail, tb] = mix_block((words[a0 + tb, word] >> shift) & flow_tail_mask)
            if LE & 3:  # pack_words zero-pads, so the row's tail needs no mask
                word = nbx >> 1
                shift = np.uint64((nbx & 1) * 32)
                for tb in range(na):
                    mixed[nxt, row_tail, tb] = mix_block((words[a0 + tb, word] >> shift) & _M32)
            for i in range(0, d, 2):  # two sketch rows at a time: one pass over the mixed blocks
                sa = np.uint64(row_seeds[i])
                sb = np.uint64(row_seeds[i + 1]) if i + 1 < d else sa
                for tb in range(na):
                    ha[tb] = sa
                    hb[tb] = sb
                for q in range(nbf):
                    for tb in range(na):
                        k = np.uint64(mixed[nxt, q, tb])
                        ha[tb] = murmur_round(np.uint64(ha[tb]), k)
                        hb[tb] = murmur_round(np.uint64(hb[tb]), k)
                for tb in range(na):
                    k = np.uint64(mixed[nxt, flow_tail, tb])  # 0 without a tail: then the xor is a no-op
                    ha[tb] = fmix32(np.uint64(ha[tb]) ^ k ^ len_f)
                    hb[tb] = fmix32(np.uint64(hb[tb]) ^ k ^ len_f)
                for tb in range(na):
                    c = i * w + np.int64(np.uint64(ha[tb]) % uw)
                    cells[nxt, i, tb] = c
                    prefetch(seeds, 2 * c)
                if i + 1 < d:
                    for tb in range(na):
                        c = (i + 1) * w + np.int64(np.uint64(hb[tb]) % uw)
                        cells[nxt, i + 1, tb] = c
                        prefetch(seeds, 2 * c)
        # ---- pass 3: the updates, in packet order
        for k in range(nb * d):
            tb = k // d
            i = k - tb * d
            s = np.uint64(slots[i, tb])  # unsigned: indexing needs no negative-index fix-up
            v = ranks[i, tb]
            old = np.int64(flat_regs[s])
            if v <= old:
                continue  # the element changes nothing: a duplicate, or a smaller rank
            c = np.uint64(cells[cur, i, tb])
            flat_regs[s] = v
            before = flat_p[c]
            q = before - pw_m[old]
            if v < cap:
                q = q + pw_m[v]
            flat_p[c] = q
            if before <= 0.0:
                continue  # only when every register is at the cap: the HLL is saturated
            # ---- probabilistic increment worth 1/p in expectation
            inv = 1.0 / before
            units_f = math.ceil(inv)
            if _uniform(rng) >= inv / units_f:
                continue
            units = int(units_f)
            t = b0 + tb
            val = np.int64(flat_values[c])
            key0 = c * np.uint64(L)
            while units > 0:
                if val == 0:
                    val = 1
                    for e in range(L):
                        flat_keys[key0 + np.uint64(e)] = x[t, e]
                    units -= 1
                    continue
                same = True
                for e in range(L):
                    if flat_keys[key0 + np.uint64(e)] != x[t, e]:
                        same = False
                        break
                if same:
                    # every remaining unit would add one: add them at once
                    val += units
                    units = 0
                else:
                    units -= 1
                    prob = decay[val] if val < nd else math.pow(b, -float(val))
                    if _uniform(rng) < prob:
                        val -= 1
            if val > 0xFFFFFFFF:
                val = 0xFFFFFFFF
            flat_values[c] = np.uint32(val)


@njit(nogil=True, cache=True)
def query_kernel(
    flows: np.ndarray, row_seeds: np.ndarray, keys: np.ndarray, values: np.ndarray
) -> np.ndarray:
    """``max(1, max value over rows whose cell key equals the flow)`` for each row of ``flows``."""
    n, L = flows.shape
    d, w = values.shape
    out = np.empty(n, np.uint64)
    for t in range(n):
        est = np.uint32(0)
        for i in range(d):
            j = murmur3_32(flows[t], L, row_seeds[i]) % np.uint32(w)
            same = True
            for c in range(L):
                if keys[i, j, c] != flows[t, c]:
                    same = False
                    break
            if same and values[i, j] > est:
                est = values[i, j]
        out[t] = max(np.uint64(1), np.uint64(est))
    return out


@njit(nogil=True, cache=True)
def p_from_registers(regs: np.ndarray, pw_m: np.ndarray, cap: int, p: np.ndarray) -> None:
    """Recompute every cell's ``p = Σ_{reg < cap} base**reg / m`` from its registers (used by merge)."""
    d, w, m = regs.shape
    for i in range(d):
        for j in range(w):
            s = 0.0
            for r in range(m):
                v = regs[i, j, r]
                if v < cap:
                    s += pw_m[v]
            p[i, j] = s


# --------------------------------------------------------------------------------------------- helpers
def power_tables(m: int, base: float, b: float) -> tuple[np.ndarray, np.ndarray]:
    """``base**k / m`` for k in 0..33 and ``b**-v`` for v < DECAY_LEN, computed as the reference does."""
    pw_m = np.array([math.pow(base, float(k)) / float(m) for k in range(MAX_REGISTER + 1)], np.float64)
    decay = np.array([math.pow(b, -float(v)) for v in range(DECAY_LEN)], np.float64)
    return pw_m, decay


@dataclass(frozen=True, slots=True)
class SuperSpreadParams:
    """Validated parameters; a 0 in the config means the original's default (see ``from_config``)."""

    width: int = DEFAULT_WIDTH
    depth: int = DEFAULT_DEPTH
    threshold: int = DEFAULT_THRESHOLD
    m: int = DEFAULT_M
    size: int = DEFAULT_SIZE
    base: float = DEFAULT_BASE
    b: float = DEFAULT_B
    flow_len: int = 16
    elem_len: int = 16
    seed: int = 0

    @classmethod
    def from_config(
        cls,
        *,
        width: int = 0,
        depth: int = 0,
        threshold: int = 0,
        m: int = 0,
        size: int = 0,
        base: float = 0.0,
        b: float = 0.0,
        flow_len: int = 16,
        elem_len: int = 16,
        seed: int = 0,
    ) -> SuperSpreadParams:
        """Apply the original's defaults to zero values, then validate (``ValueError`` names the key)."""
        p = cls(
            width=width or DEFAULT_WIDTH,
            depth=depth or DEFAULT_DEPTH,
            threshold=threshold or DEFAULT_THRESHOLD,
            m=m or DEFAULT_M,
            size=size or DEFAULT_SIZE,
            base=base or DEFAULT_BASE,
            b=b or DEFAULT_B,
            flow_len=flow_len,
            elem_len=elem_len,
            seed=seed,
        )
        p.validate()
        return p

    @property
    def cap(self) -> int:
        return min((1 << self.size) - 1, MAX_REGISTER)

    def validate(self) -> None:
        def need(ok: bool, key: str, what: str, value: object) -> None:
            if not ok:
                raise ValueError(f"SuperSpread: {key} must be {what}, got {value!r}")

        need(1 <= self.width <= 1 << 31, "width", "between 1 and 2**31", self.width)
        need(1 <= self.depth <= 64, "depth", "between 1 and 64", self.depth)
        need(self.threshold >= 1, "count_thereshold", "at least 1", self.threshold)
        need(1 <= self.m <= 1 << 16, "m", "between 1 and 65536", self.m)
        need(1 <= self.size <= 32, "size", "between 1 and 32 (register bits)", self.size)
        need(0.0 < self.base < 1.0, "base", "in (0, 1)", self.base)
        need(self.b > 1.0, "b", "greater than 1", self.b)
        need(1 <= self.flow_len <= 74, "flow key length", "between 1 and 74 bytes", self.flow_len)
        need(0 <= self.elem_len <= 74, "element key length", "between 0 and 74 bytes", self.elem_len)
        need(0 <= self.seed < 1 << 64, "seed", "a 64-bit non-negative integer", self.seed)


# --------------------------------------------------------------------------------------------- sketch
class SuperSpreadSketch(Sketch, skt_type=SKT_TYPE):
    """SuperSpread over fixed-width flow and element keys (see the module docstring for the algorithm).

    Contract: ``update`` consumes key rows in order and is deterministic given the construction seed
    and the sequence of updates; ``query``/``super_spreaders`` never change state; ``reset`` returns
    the sketch to its freshly built state except for the seeds and the generator position.
    Not thread-safe: one writer at a time (the kernels release the GIL, so different sketches can be
    updated from different threads). As a :class:`~netspectra.sketches.base.Sketch` it is fed
    flow‖element keys (``uses_elements``); packet lengths are ignored.
    """

    uses_elements = True
    accepts_weights = True

    def __init__(self, params: SuperSpreadParams | None = None, **config: object) -> None:
        if params is None:
            params = SuperSpreadParams.from_config(**config)  # type: ignore[arg-type]
        elif config:
            raise TypeError("pass either params or config keywords, not both")
        params.validate()
        self.params = params
        d, w, m, L = params.depth, params.width, params.m, params.flow_len
        self._pw_m, self._decay = power_tables(m, params.base, params.b)
        self._rng = np.array([params.seed], np.uint64)
        self.row_seeds = np.empty(d, np.uint32)
        self.cell_seeds = np.empty((d, w, 2), np.uint32)
        init_seeds(self._rng, self.row_seeds, self.cell_seeds)
        self.regs = np.zeros((d, w, m), np.uint8)
        self.p = np.ones((d, w), np.float64)
        self.keys = np.zeros((d, w, L), np.uint8)
        self.values = np.zeros((d, w), np.uint32)

    @classmethod
    def from_params(cls, params: SketchParams) -> SuperSpreadSketch:
        """A sketch for a configured task: key widths from its fields, ``count_thereshold`` as threshold."""
        return cls(
            SuperSpreadParams.from_config(
                width=params.width,
                depth=params.depth,
                threshold=params.count_threshold,
                m=params.m,
                size=params.size,
                base=params.base,
                b=params.b,
                flow_len=key_length(params.flow_fields),
                elem_len=key_length(params.element_fields),
                seed=params.seed,
            )
        )

    def __repr__(self) -> str:
        p = self.params
        return (
            f"SuperSpreadSketch(w={p.width}, d={p.depth}, m={p.m}, size={p.size}, base={p.base}, b={p.b}, "
            f"threshold={p.threshold}, key={p.flow_len}+{p.elem_len} B)"
        )

    # ---------------------------------------------------------------- properties
    @property
    def rng_state(self) -> int:
        """The generator's current 64-bit state (what a reference replay must start from)."""
        return int(self._rng[0])

    @property
    def memory_bytes(self) -> int:
        """Bytes held by the cell arrays: ``d·w·(m + L + 20)`` (uint8 registers, key, value, p, seeds)."""
        return int(
            self.regs.nbytes + self.p.nbytes + self.keys.nbytes + self.values.nbytes + self.cell_seeds.nbytes
        )

    @property
    def original_memory_bytes(self) -> int:
        """The original's footprint for the same parameters, ≈ ``d·w·(8m + L + 8)`` (spec §3)."""
        d, w, m, L = self.params.depth, self.params.width, self.params.m, self.params.flow_len
        return d * w * (8 * m + L + 8)

    # ---------------------------------------------------------------- updates
    def update_pairs(self, flow_keys: np.ndarray, elem_keys: np.ndarray) -> None:
        """Insert ``n`` observations: ``flow_keys`` uint8 (n, flow_len), ``elem_keys`` uint8 (n, elem_len)."""
        fk = self._check_keys(flow_keys, self.params.flow_len, "flow_keys")
        ek = self._check_keys(elem_keys, self.params.elem_len, "elem_keys")
        if fk.shape[0] != ek.shape[0]:
            raise ValueError(f"flow_keys has {fk.shape[0]} rows but elem_keys has {ek.shape[0]}")
        self.update(np.concatenate([fk, ek], axis=1))

    def update(
        self, keys: np.ndarray, lengths: np.ndarray | None = None, packets: np.ndarray | None = None
    ) -> None:
        """Insert ``n`` observations given as flow‖element keys: uint8 (n, flow_len + elem_len), in order.

        ``keys`` is what ``encode_flow_element(batch, flow_fields, element_fields)`` returns. ``lengths``
        is accepted for the :class:`Sketch` interface and ignored: spread does not depend on bytes.
        A weighted row (``packets``) is its packets of one (flow, element) pair: the first is the pair,
        the others are duplicates, which change nothing, so the row goes in once (a row of 0 packets
        not at all).
        """
        x = self._check_keys(
            distinct_rows(keys, packets), self.params.flow_len + self.params.elem_len, "keys"
        )
        if x.shape[0] == 0:
            return
        update_kernel(
            x,
            pack_words(x),
            self.params.flow_len,
            self.row_seeds,
            self.cell_seeds,
            self.regs,
            self.p,
            self.keys,
            self.values,
            self._pw_m,
            self._decay,
            float(self.params.b),
            self.params.cap,
            self._rng,
        )

    @staticmethod
    def _check_keys(a: np.ndarray, length: int, name: str) -> np.ndarray:
        a = np.asarray(a)
        if a.dtype != np.uint8 or a.ndim != 2 or a.shape[1] != length:
            raise ValueError(f"{name} must be uint8 of shape (n, {length}), got {a.dtype} {a.shape}")
        return np.ascontiguousarray(a)

    def reset(self) -> None:
        """Clear registers, keys, values and ``p`` (the original forgot ``p``: spec §12 bug 2)."""
        self.regs.fill(0)
        self.p.fill(1.0)
        self.keys.fill(0)
        self.values.fill(0)

    # ---------------------------------------------------------------- queries
    def query(self, flows: np.ndarray) -> np.ndarray:
        """Spread estimates (uint64, at least 1) of each row of ``flows`` (uint8 (n, flow_len))."""
        fk = self._check_keys(flows, self.params.flow_len, "flows")
        return query_kernel(fk, self.row_seeds, self.keys, self.values)

    def query_one(self, flow: bytes) -> int:
        """Spread estimate of one flow given as its key bytes."""
        return int(self.query(np.frombuffer(flow, np.uint8).reshape(1, -1))[0])

    def thresholds(self) -> dict[HitterType, int]:
        return {HitterType.SPREAD: self.params.threshold}

    def super_spreaders(self, threshold: int | None = None) -> HeavyHitters:
        """Flows whose estimate is ``>= threshold`` (default: the configured one), by value desc.

        Equivalent to the original's scan-then-query: a key is stored only at its own hashed cell of
        each row, so ``query(k)`` is the largest value among the cells holding ``k``; that max is taken
        over the non-empty cells directly (no re-hashing). Ties are ordered by key bytes.
        """
        thr = self.params.threshold if threshold is None else int(threshold)
        nz = self.values > 0
        return HeavyHitters.from_candidates(self.keys[nz], self.values[nz], max(thr, 1))

    def heavy_hitters(self) -> dict[HitterType, HeavyHitters]:
        """``{SPREAD: super_spreaders()}`` at the configured threshold (Type 2 rows)."""
        return {HitterType.SPREAD: self.super_spreaders()}

    # ---------------------------------------------------------------- merge
    def merge(self, other: Sketch) -> None:
        """Fold ``other`` (same parameters and seed) into this sketch, in place.

        What is exact: registers of the same cell merge by max (the HLL of the union of both streams),
        and ``p`` is recomputed from the merged registers, so later inserts see the right probability.
        What is approximate (the HeavyKeeper counters are not mergeable): a cell holding the same key
        on both sides keeps the larger value — exact when the flow's elements all went to one side
        (streams sharded by flow), an underestimate (by at most half) when its distinct elements were
        split between the sides. Cells holding different keys keep the larger value and its key (on a
        tie, this sketch's), as if the smaller side's units had been spent decaying it without
        effect — a large HeavyKeeper value decays with probability ``b**-value``, close to 0.
        """
        if not isinstance(other, SuperSpreadSketch):
            raise TypeError(f"can only merge a SuperSpreadSketch, not {type(other).__name__}")
        if other.params != self.params:
            raise ValueError(
                f"cannot merge SuperSpread sketches with different parameters: {self.params} "
                f"vs {other.params}"
            )
        if not (
            np.array_equal(self.row_seeds, other.row_seeds)
            and np.array_equal(self.cell_seeds, other.cell_seeds)
        ):
            raise ValueError("cannot merge SuperSpread sketches with different hash seeds")
        np.maximum(self.regs, other.regs, out=self.regs)
        p_from_registers(self.regs, self._pw_m, self.params.cap, self.p)
        take = other.values > self.values
        self.values[take] = other.values[take]
        self.keys[take] = other.keys[take]

    # ---------------------------------------------------------------- serialisation
    def to_bytes(self) -> bytes:
        """A self-describing binary image: magic, format, JSON params + generator state, raw arrays."""
        header = json.dumps(
            {
                "format": _FORMAT,
                "skt_type": SKT_TYPE,
                "params": {f: getattr(self.params, f) for f in SuperSpreadParams.__dataclass_fields__},
                "rng_state": self.rng_state,
            },
            sort_keys=True,
        ).encode()
        parts = [_MAGIC, struct.pack("<I", len(header)), header]
        for a in (self.row_seeds, self.cell_seeds, self.regs, self.p, self.keys, self.values):
            parts.append(np.ascontiguousarray(a).astype(a.dtype.newbyteorder("<"), copy=False).tobytes())
        return b"".join(parts)

    @classmethod
    def from_bytes(cls, data: bytes) -> SuperSpreadSketch:
        """Rebuild a sketch from :meth:`to_bytes`; ``ValueError`` on a foreign or truncated image."""
        if len(data) < 8 or data[:4] != _MAGIC:
            raise ValueError("not a SuperSpread image (bad magic)")
        (hlen,) = struct.unpack_from("<I", data, 4)
        try:
            header = json.loads(data[8 : 8 + hlen])
        except ValueError as e:
            raise ValueError(f"corrupt SuperSpread image header: {e}") from e
        if header.get("format") != _FORMAT or header.get("skt_type") != SKT_TYPE:
            raise ValueError(f"unsupported SuperSpread image: format {header.get('format')}")
        params = SuperSpreadParams(**header["params"])
        params.validate()
        d, w, m, L = params.depth, params.width, params.m, params.flow_len
        shapes = [
            ((d,), np.uint32),
            ((d, w, 2), np.uint32),
            ((d, w, m), np.uint8),
            ((d, w), np.float64),
            ((d, w, L), np.uint8),
            ((d, w), np.uint32),
        ]
        need = 8 + hlen + sum(int(np.prod(s)) * np.dtype(t).itemsize for s, t in shapes)
        if len(data) != need:
            raise ValueError(f"SuperSpread image has {len(data)} bytes, expected {need}")
        sk = cls.__new__(cls)
        sk.params = params
        sk._pw_m, sk._decay = power_tables(m, params.base, params.b)
        sk._rng = np.array([header["rng_state"]], np.uint64)
        off = 8 + hlen
        arrays = []
        for shape, dt in shapes:
            size = int(np.prod(shape)) * np.dtype(dt).itemsize
            le = np.dtype(dt).newbyteorder("<")
            arrays.append(np.frombuffer(data, le, int(np.prod(shape)), off).astype(dt).reshape(shape))
            off += size
        sk.row_seeds, sk.cell_seeds, sk.regs, sk.p, sk.keys, sk.values = arrays
        return sk
