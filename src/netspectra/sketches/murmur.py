"""MurmurHash3 x86_32 as numba functions, and reproducible per-row seeds.

The original hashes every sketch key with MurmurHash3 x86_32 (``mmh3.hash(key, seed, signed=False)``
gives the same values); each sketch row has its own 32-bit seed. :func:`murmur3_32` hashes one uint8
row and is meant to be called from inside other ``@njit`` kernels; :func:`hash_rows` hashes every row
of a 2-D key array in one call.

All arithmetic is done in uint64 and masked to 32 bits: numba promotes uint32 operands to 64 bits and
would turn a mix of unsigned values and Python int literals into float64, so every constant is a
typed ``np.uint64``.

The original drew its seeds from an unseeded RNG, so two runs never hashed alike; here
:func:`derive_seeds` turns one integer into any number of 32-bit seeds through numpy's
``SeedSequence``, which is stable across numpy versions (same integer, same seeds).
"""

from __future__ import annotations

import numpy as np

from netspectra.jit import njit

_M32 = np.uint64(0xFFFFFFFF)
_C1 = np.uint64(0xCC9E2D51)
_C2 = np.uint64(0x1B873593)
_N = np.uint64(0xE6546B64)
_F1 = np.uint64(0x85EBCA6B)
_F2 = np.uint64(0xC2B2AE35)
_FIVE = np.uint64(5)
_R15 = np.uint64(15)
_R17 = np.uint64(17)
_R13 = np.uint64(13)
_R19 = np.uint64(19)
_S16 = np.uint64(16)
_S13 = np.uint64(13)
_S8 = np.uint64(8)
_S24 = np.uint64(24)


@njit(nogil=True, cache=True, inline="always")
def _rotl32(x: np.uint64, r: np.uint64) -> np.uint64:
    return ((x << r) | (x >> (np.uint64(32) - r))) & _M32


@njit(nogil=True, cache=True)
def murmur3_32(data: np.ndarray, length: int, seed: int) -> np.uint32:
    """MurmurHash3 x86_32 of ``data[:length]`` (a 1-D uint8 array) with a 32-bit ``seed``.

    Equal to ``mmh3.hash(bytes(data[:length]), seed, signed=False)``. ``length`` may be 0.
    """
    h = np.uint64(seed) & _M32
    nblocks = length // 4
    for i in range(nblocks):
        o = i * 4
        k = (
            np.uint64(data[o])
            | (np.uint64(data[o + 1]) << _S8)
            | (np.uint64(data[o + 2]) << _S16)
            | (np.uint64(data[o + 3]) << _S24)
        )
        k = (k * _C1) & _M32
        k = _rotl32(k, _R15)
        k = (k * _C2) & _M32
        h ^= k
        h = _rotl32(h, _R13)
        h = (h * _FIVE + _N) & _M32
    tail = nblocks * 4
    rem = length & 3
    k = np.uint64(0)
    if rem == 3:
        k ^= np.uint64(data[tail + 2]) << _S16
    if rem >= 2:
        k ^= np.uint64(data[tail + 1]) << _S8
    if rem >= 1:
        k ^= np.uint64(data[tail])
        k = (k * _C1) & _M32
        k = _rotl32(k, _R15)
        k = (k * _C2) & _M32
        h ^= k
    h ^= np.uint64(length) & _M32
    # fmix32: spread the last bits of entropy over the whole word
    h ^= h >> _S16
    h = (h * _F1) & _M32
    h ^= h >> _S13
    h = (h * _F2) & _M32
    h ^= h >> _S16
    return np.uint32(h)


@njit(nogil=True, cache=True)
def murmur3_32_words(words: np.ndarray, length: int, seed: int) -> np.uint32:
    """MurmurHash3 x86_32 of a key given as little-endian packed, zero-padded uint64 words.

    ``words`` is a 1-D uint64 array holding the ``length`` key bytes (byte ``b`` in bits
    ``8*(b%8)`` of word ``b//8``) and zeros after them. Equal to :func:`murmur3_32` of the bytes, but
    reads 4-byte blocks out of words instead of assembling them byte by byte (the sketches' hot path).
    """
    h = np.uint64(seed) & _M32
    nblocks = length // 4
    for i in range(nblocks):
        k = (words[i >> 1] >> np.uint64((i & 1) * 32)) & _M32
        k = (k * _C1) & _M32
        k = _rotl32(k, _R15)
        k = (k * _C2) & _M32
        h ^= k
        h = _rotl32(h, _R13)
        h = (h * _FIVE + _N) & _M32
    if length & 3:
        # the tail block is the remaining 1-3 bytes little-endian; padding zeros fill the rest
        k = (words[nblocks >> 1] >> np.uint64((nblocks & 1) * 32)) & _M32
        k = (k * _C1) & _M32
        k = _rotl32(k, _R15)
        k = (k * _C2) & _M32
        h ^= k
    h ^= np.uint64(length) & _M32
    h ^= h >> _S16
    h = (h * _F1) & _M32
    h ^= h >> _S13
    h = (h * _F2) & _M32
    h ^= h >> _S16
    return np.uint32(h)


def pack_words(keys: np.ndarray) -> np.ndarray:
    """(n, L) uint8 keys as (n, ceil(L/8)) little-endian uint64 words, zero-padded (one numpy copy at
    most; a view when L is a multiple of 8 on a little-endian host)."""
    keys = np.ascontiguousarray(keys, dtype=np.uint8)
    n, L = keys.shape
    kw = (L + 7) // 8
    if kw * 8 != L:
        padded = np.zeros((n, kw * 8), np.uint8)
        padded[:, :L] = keys
        keys = padded
    return keys.view("<u8").astype(np.uint64, copy=False).reshape(n, kw)


@njit(nogil=True, cache=True)
def hash_rows(keys: np.ndarray, seed: int) -> np.ndarray:
    """``murmur3_32`` of every row of a C-contiguous (n, L) uint8 array; returns uint32 (n,)."""
    n, L = keys.shape
    out = np.empty(n, np.uint32)
    for i in range(n):
        out[i] = murmur3_32(keys[i], L, seed)
    return out


def murmur3_32_py(data: bytes, seed: int) -> int:
    """Plain-Python MurmurHash3 x86_32 (the reference the kernel is tested against, besides mmh3)."""
    m = 0xFFFFFFFF

    def rotl(x: int, r: int) -> int:
        return ((x << r) | (x >> (32 - r))) & m

    h = seed & m
    n = len(data)
    for o in range(0, n - n % 4, 4):
        k = int.from_bytes(data[o : o + 4], "little")
        k = rotl((k * 0xCC9E2D51) & m, 15)
        h ^= (k * 0x1B873593) & m
        h = (rotl(h, 13) * 5 + 0xE6546B64) & m
    tail = data[n - n % 4 :]
    if tail:
        k = int.from_bytes(tail, "little")
        k = rotl((k * 0xCC9E2D51) & m, 15)
        h ^= (k * 0x1B873593) & m
    h ^= n
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & m
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & m
    return h ^ (h >> 16)


def derive_seeds(seed: int, count: int) -> np.ndarray:
    """``count`` 32-bit hash seeds (uint32 array) derived reproducibly from one non-negative ``seed``.

    Contract: the same ``(seed, count)`` always gives the same array; a longer ``count`` extends a shorter
    one's prefix (``SeedSequence.generate_state`` draws a stream), so a depth-3 sketch shares its first
    two row seeds with a depth-2 sketch of the same seed.
    """
    if seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed}")
    if count < 0:
        raise ValueError(f"count must be non-negative, got {count}")
    return np.random.SeedSequence(seed).generate_state(count, dtype=np.uint32)
