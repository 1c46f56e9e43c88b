"""Building blocks shared by the sketch kernels, each with its plain-Python twin for the references.

* splitmix64 — the sketches' one source of randomness: a 64-bit state advanced by the golden-ratio
  increment and finalised by Stafford's mix 13 (``z ^= z >> 30; z *= C1; z ^= z >> 27; z *= C2;
  z ^= z >> 31``). A uniform is the top 53 bits of a draw times 2**-53. The state lives in a uint64
  (1,) array owned by the sketch, so a run is reproducible from its seed and a reference replays it.
* :func:`murmur_row` / :func:`murmur_row2` — MurmurHash3 x86_32 of row ``p`` of an (n, kw) array of
  little-endian packed, zero-padded key words (:func:`~netspectra.sketches.murmur.pack_words`), under
  one or two seeds; equal to ``mmh3.hash(key_bytes, seed, signed=False)``.
* :func:`mix_block`, :func:`murmur_round`, :func:`fmix32` — the three steps of MurmurHash3 x86_32, for
  kernels that share the seed-independent mix between several hashes of one key, or that run the
  rounds of a block of keys side by side (one SIMD lane per key); tested against ``mmh3``.
  :func:`mix_leading_blocks` and :func:`mix_key_bytes` lay a block of packed keys out for the
  latter (one row per 4-byte block of the key, one lane per key).
* :func:`fmix64` — MurmurHash3's 64-bit finaliser, a bijection that spreads every input bit.
* :func:`fastmod32` — ``a % d`` for 32-bit ``a`` and ``d`` by multiplications (Lemire's direct
  remainder): exact, a few cycles instead of a division's 10-20, and it vectorises.
* :func:`popcount64` — set bits of a word (the SWAR count; numba has no portable popcount intrinsic).

All integer arithmetic is uint64 with explicit ``np.uint64`` constants (numba would otherwise promote a
mix of unsigned values and Python ints to float64).
"""

from __future__ import annotations

import numpy as np

from netspectra.jit import njit

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_C1 = np.uint64(0xBF58476D1CE4E5B9)
_C2 = np.uint64(0x94D049BB133111EB)
_S30 = np.uint64(30)
_S27 = np.uint64(27)
_S31 = np.uint64(31)
_S11 = np.uint64(11)
_TWO_M53 = 1.0 / float(1 << 53)

_M32 = np.uint64(0xFFFFFFFF)
_MC1 = np.uint64(0xCC9E2D51)
_MC2 = np.uint64(0x1B873593)
_MN = np.uint64(0xE6546B64)
_MF1 = np.uint64(0x85EBCA6B)
_MF2 = np.uint64(0xC2B2AE35)
_F64A = np.uint64(0xFF51AFD7ED558CCD)
_F64B = np.uint64(0xC4CEB9FE1A85EC53)
_S33 = np.uint64(33)
_S32 = np.uint64(32)

_P1 = np.uint64(0x5555555555555555)
_P2 = np.uint64(0x3333333333333333)
_P4 = np.uint64(0x0F0F0F0F0F0F0F0F)
_P8 = np.uint64(0x0101010101010101)
_S56 = np.uint64(56)

_M64 = (1 << 64) - 1


# ------------------------------------------------------------------------------------------ splitmix64
@njit(nogil=True, cache=True, inline="always")
def next64(rng: np.ndarray) -> np.uint64:
    """The next splitmix64 draw of the generator whose state is ``rng[0]`` (advanced in place)."""
    s = rng[0] + _GOLDEN
    rng[0] = s
    z = (s ^ (s >> _S30)) * _C1
    z = (z ^ (z >> _S27)) * _C2
    return z ^ (z >> _S31)


@njit(nogil=True, cache=True, inline="always")
def uniform(rng: np.ndarray) -> float:
    """A float in [0, 1) with 53 random bits (one draw)."""
    return float(next64(rng) >> _S11) * _TWO_M53


class SplitMix64:
    """Plain-Python twin of :func:`next64` / :func:`uniform`: the state is the whole generator."""

    def __init__(self, state: int) -> None:
        self.state = state & _M64

    def next64(self) -> int:
        self.state = (self.state + 0x9E3779B97F4A7C15) & _M64
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M64
        return z ^ (z >> 31)

    def uniform(self) -> float:
        """A float in [0, 1) with 53 random bits."""
        return (self.next64() >> 11) * (1.0 / (1 << 53))

    def seed32(self) -> int:
        """A 32-bit seed: the high half of a draw."""
        return self.next64() >> 32


# ------------------------------------------------------------------------------------------- hashing
@njit(nogil=True, cache=True, inline="always")
def _rotl32(x: np.uint64, r: int) -> np.uint64:
    return ((x << np.uint64(r)) | (x >> np.uint64(32 - r))) & _M32


@njit(nogil=True, cache=True, inline="always")
def mix_block(k: np.uint64) -> np.uint64:
    """MurmurHash3 x86_32's mix of one 4-byte block ``k``: the half of a round that does not depend on
    the seed, so kernels hashing one key under several seeds mix its blocks once."""
    return (_rotl32((k * _MC1) & _M32, 15) * _MC2) & _M32


@njit(nogil=True, cache=True, inline="always")
def murmur_round(h: np.uint64, k: np.uint64) -> np.uint64:
    """MurmurHash3 x86_32's round: fold the mixed block ``k`` into the running hash ``h``. A tail block
    (1-3 bytes, mixed the same way) is folded by ``h ^= k`` alone."""
    return (_rotl32(h ^ k, 13) * np.uint64(5) + _MN) & _M32


@njit(nogil=True, cache=True, inline="always")
def fmix32(h: np.uint64) -> np.uint64:
    """MurmurHash3 x86_32's finaliser (after ``h ^= length``)."""
    h ^= h >> np.uint64(16)
    h = (h * _MF1) & _M32
    h ^= h >> np.uint64(13)
    h = (h * _MF2) & _M32
    return h ^ (h >> np.uint64(16))


@njit(nogil=True, cache=True, inline="always")
def mix_leading_blocks(
    words: np.ndarray, a0: int, na: int, nblocks: int, raw: np.ndarray, mixed: np.ndarray, buf: int
) -> None:
    """``mixed[buf, q, tb]`` = :func:`mix_block` of the 4-byte block ``q < nblocks`` (bytes ``4q ..
    4q + 3``) of row ``a0 + tb`` of the packed rows ``words`` (n, kw), for ``tb < na``: the layout of
    kernels that run MurmurHash3's rounds across a block of keys, one lane per key. The rows' words are
    read in order and transposed into ``raw`` (uint32, at least ``nblocks + 1`` rows of ``na``) so that
    the mix runs over contiguous lanes (strided loads would not vectorise)."""
    s32 = np.uint64(32)
    m32 = np.uint64(0xFFFFFFFF)
    for tb in range(na):
        for c in range((nblocks + 1) // 2):
            v = words[a0 + tb, c]
            raw[2 * c, tb] = v & m32
            raw[2 * c + 1, tb] = v >> s32
    for q in range(nblocks):
        for tb in range(na):
            mixed[buf, q, tb] = mix_block(np.uint64(raw[q, tb]))


@njit(nogil=True, cache=True, inline="always")
def mix_key_bytes(
    words: np.ndarray, a0: int, na: int, o: int, nbytes: int, mixed: np.ndarray, buf: int, row: int
) -> None:
    """``mixed[buf, row, tb]`` = :func:`mix_block` of bytes ``o .. o + nbytes - 1`` (1-4 of them: a
    block, or a tail, zero-extended) of row ``a0 + tb`` of the packed rows ``words``, for ``tb < na``.
    The bytes may start anywhere and straddle two words (a second key that does not start on a 4-byte
    boundary of the row)."""
    wq = o >> 3
    sh = np.uint64(8 * (o & 7))
    mask = (np.uint64(1) << np.uint64(8 * nbytes)) - np.uint64(1)
    if (o & 7) + nbytes > 8:
        back = np.uint64(64 - 8 * (o & 7))
        for tb in range(na):
            v = (words[a0 + tb, wq] >> sh) | (words[a0 + tb, wq + 1] << back)
            mixed[buf, row, tb] = mix_block(v & mask)
    else:
        for tb in range(na):
            mixed[buf, row, tb] = mix_block((words[a0 + tb, wq] >> sh) & mask)


@njit(nogil=True, cache=True, inline="always")
def murmur_row(words: np.ndarray, p: int, length: int, seed: np.uint64) -> np.uint64:
    """MurmurHash3 x86_32 of the ``length`` key bytes packed in row ``p`` of ``words`` (scalar indexing
    only: taking a view of the row per packet would cost reference counting in the hot loop)."""
    h = seed & _M32
    nblocks = length // 4
    for i in range(nblocks):
        k = (words[p, i >> 1] >> np.uint64((i & 1) * 32)) & _M32
        k = (_rotl32((k * _MC1) & _M32, 15) * _MC2) & _M32
        h = (_rotl32(h ^ k, 13) * np.uint64(5) + _MN) & _M32
    if length & 3:
        # the tail block is the remaining 1-3 bytes; the zero padding fills the rest of the word
        k = (words[p, nblocks >> 1] >> np.uint64((nblocks & 1) * 32)) & _M32
        h ^= (_rotl32((k * _MC1) & _M32, 15) * _MC2) & _M32
    h ^= np.uint64(length) & _M32
    h ^= h >> np.uint64(16)
    h = (h * _MF1) & _M32
    h ^= h >> np.uint64(13)
    h = (h * _MF2) & _M32
    h ^= h >> np.uint64(16)
    return h


@njit(nogil=True, cache=True, inline="always")
def murmur_row2(words: np.ndarray, p: int, length: int, s0: np.uint64, s1: np.uint64) -> tuple:
    """:func:`murmur_row` under two seeds in one pass: the two independent multiply chains interleave
    (instruction-level parallelism), about 1.5× faster than two calls."""
    a = s0 & _M32
    b = s1 & _M32
    nblocks = length // 4
    for i in range(nblocks):
        k = (words[p, i >> 1] >> np.uint64((i & 1) * 32)) & _M32
        k = (_rotl32((k * _MC1) & _M32, 15) * _MC2) & _M32
        a = (_rotl32(a ^ k, 13) * np.uint64(5) + _MN) & _M32
        b = (_rotl32(b ^ k, 13) * np.uint64(5) + _MN) & _M32
    if length & 3:
        k = (words[p, nblocks >> 1] >> np.uint64((nblocks & 1) * 32)) & _M32
        k = (_rotl32((k * _MC1) & _M32, 15) * _MC2) & _M32
        a ^= k
        b ^= k
    ln = np.uint64(length) & _M32
    a ^= ln
    b ^= ln
    a ^= a >> np.uint64(16)
    b ^= b >> np.uint64(16)
    a = (a * _MF1) & _M32
    b = (b * _MF1) & _M32
    a ^= a >> np.uint64(13)
    b ^= b >> np.uint64(13)
    a = (a * _MF2) & _M32
    b = (b * _MF2) & _M32
    a ^= a >> np.uint64(16)
    b ^= b >> np.uint64(16)
    return a, b


@njit(nogil=True, cache=True, inline="always")
def fmix64(x: np.uint64) -> np.uint64:
    """MurmurHash3's 64-bit finaliser (a bijection on 64-bit words)."""
    x ^= x >> _S33
    x *= _F64A
    x ^= x >> _S33
    x *= _F64B
    x ^= x >> _S33
    return x


@njit(nogil=True, cache=True, inline="always")
def fastmod32_magic(d: np.uint64) -> np.uint64:
    """The multiplier :func:`fastmod32` needs for the divisor ``d`` (1 <= d < 2**32):
    ``⌊(2**64 - 1) / d⌋ + 1`` modulo 2**64."""
    return np.uint64(0xFFFFFFFFFFFFFFFF) // d + np.uint64(1)


@njit(nogil=True, cache=True, inline="always")
def fastmod32(a: np.uint64, magic: np.uint64, d: np.uint64) -> np.uint64:
    """``a % d`` for ``a, d < 2**32`` (``d >= 1``, ``magic = fastmod32_magic(d)``), exactly: the
    fraction ``magic · a mod 2**64`` times ``d``, high 64 bits (Lemire, Kaser, Kurz, "Faster remainder
    by direct computation", 2019, proved for 32-bit numerators and divisors). The 64 × 32-bit high
    product is built from two 32 × 32-bit ones, so no 128-bit multiply is needed."""
    low = magic * a
    return ((low >> _S32) * d + (((low & _M32) * d) >> _S32)) >> _S32


def fmix64_py(x: int) -> int:
    """Plain-Python :func:`fmix64`."""
    x &= _M64
    x ^= x >> 33
    x = (x * 0xFF51AFD7ED558CCD) & _M64
    x ^= x >> 33
    x = (x * 0xC4CEB9FE1A85EC53) & _M64
    return x ^ (x >> 33)


@njit(nogil=True, cache=True, inline="always")
def popcount64(x: np.uint64) -> int:
    """Number of set bits of a 64-bit word."""
    x = x - ((x >> np.uint64(1)) & _P1)
    x = (x & _P2) + ((x >> np.uint64(2)) & _P2)
    x = (x + (x >> np.uint64(4))) & _P4
    return int((x * _P8) >> _S56)


# ----------------------------------------------------------------------------------- key words ↔ bytes
def words_to_keys(words: np.ndarray, key_length: int) -> np.ndarray:
    """(..., kw) uint64 packed key words → (..., key_length) uint8 key bytes (a copy)."""
    w = np.ascontiguousarray(words).astype("<u8")
    kw = w.shape[-1]
    return np.ascontiguousarray(w.view(np.uint8).reshape(*w.shape[:-1], kw * 8)[..., :key_length])


def aligned_zeros(shape: int | tuple[int, ...], dtype: type | np.dtype) -> np.ndarray:
    """A zeroed C-contiguous array whose data starts on a 64-byte boundary (a cache line): a sketch's
    bucket of 64 or 128 bytes then spans one or two lines, not two or three (numpy's large
    allocations start 16 bytes into a page). Its ``nbytes`` is what it holds; 64 bytes more are
    allocated."""
    dt = np.dtype(dtype)
    size = int(np.prod(shape)) * dt.itemsize
    raw = np.zeros(size + 64, np.uint8)
    skip = -raw.ctypes.data % 64
    return raw[skip : skip + size].view(dt).reshape(shape)


# ------------------------------------------------------------------------------------ weighted rows
_ALL_ONES = np.uint64(0xFFFF_FFFF_FFFF_FFFF)


@njit(nogil=True, cache=True, inline="always")
def sat_add(a: np.uint64, b: np.uint64) -> np.uint64:
    """``a + b``, or 2**64 - 1 where the sum would wrap (counters fed weighted rows saturate)."""
    c = a + b
    return c if c >= a else _ALL_ONES


@njit(nogil=True, cache=True, inline="always")
def row_bytes_from(octets: np.uint64, packets: np.uint64, k: np.uint64) -> np.uint64:
    """Bytes of packets ``k .. packets - 1`` of a weighted row (its N packets carry ``q = octets // N``
    bytes, the last ``octets % N`` of them one more: :mod:`netspectra.weights`)."""
    q = octets // packets
    big = octets - q * packets
    rest = packets - k
    return rest * q + (big if big < rest else rest)


@njit(nogil=True, cache=True, inline="always")
def packet_size(octets: np.uint64, packets: np.uint64, k: np.uint64) -> np.uint64:
    """Bytes of packet ``k`` (0-based) of a weighted row (same rule as :func:`row_bytes_from`)."""
    q = octets // packets
    big = octets - q * packets
    return q + np.uint64(1) if k >= packets - big else q


def row_bytes_from_ref(octets: int, packets: int, k: int) -> int:
    """Plain-Python twin of :func:`row_bytes_from`."""
    q, big = divmod(octets, packets)
    rest = packets - k
    return rest * q + min(big, rest)
