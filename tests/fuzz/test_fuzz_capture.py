"""Fuzzing the capture reader: mutated real captures, generated pcap/pcapng structures, damaged gzip.

The invariants are in :mod:`fuzzlib` (its docstring lists them). This is the short, derandomized
run of the test suite (``-m fuzz`` selects it); ``NETSPECTRA_FUZZ_EXAMPLES=N`` runs N fresh random
inputs per test (see docs/capture.md, "Fuzzing"). Every input that ever broke an invariant is kept
in ``tests/data/fuzz`` and replayed by ``test_fuzz_corpus.py`` on every run.
"""

from __future__ import annotations

import gzip
import struct
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as hs

from netspectra.capture import linktypes as lt
from netspectra.capture import status as st
from netspectra.capture.decode import decode_records
from netspectra.capture.decode_ref import decode_one

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fuzzlib import check_capture, check_damaged_gzip, fuzz_settings, read, seeds

pytestmark = pytest.mark.fuzz

SEEDS = seeds()
INTERESTING_U32 = (0, 1, 3, 12, 16, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, st.MAX_WIRE_LENGTH + 1, 0x0A0D0D0A)


@pytest.fixture(scope="module")
def tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("fuzz")
    check_capture(SEEDS[0], d)  # load the kernels before the first timed example
    return d


def mutate(draw: hs.DrawFn, raw: bytes) -> bytes:
    """A few structure-aware mutations: bytes, 32-bit fields (lengths!), cuts, inserts, deletions."""
    b = bytearray(raw)
    for _ in range(draw(hs.integers(1, 6))):
        kind = draw(hs.sampled_from(("byte", "u32", "cut", "insert", "delete", "duplicate")))
        pos = draw(hs.integers(0, max(0, len(b) - 1)))
        if kind == "byte" and b:
            b[pos] = draw(hs.integers(0, 255))
        elif kind == "u32" and len(b) >= 4:
            pos -= pos % 4  # most fields are 32-bit aligned
            value = draw(hs.sampled_from(INTERESTING_U32) | hs.integers(0, 2**32 - 1))
            b[pos : pos + 4] = struct.pack(draw(hs.sampled_from("<>")) + "I", value)[: len(b) - pos]
        elif kind == "cut":
            del b[pos:]
        elif kind == "insert":
            b[pos:pos] = draw(hs.binary(min_size=1, max_size=16))
        elif kind == "delete":
            del b[pos : pos + draw(hs.integers(1, 64))]
        elif kind == "duplicate":
            b[pos:pos] = b[pos : pos + draw(hs.integers(1, 256))]
    return bytes(b)


@hs.composite
def mutated_capture(draw: hs.DrawFn) -> bytes:
    return mutate(draw, draw(hs.sampled_from(SEEDS)))


@fuzz_settings(250)
@given(data=mutated_capture(), cut=hs.integers(0, 2**16))
def test_mutated_real_captures(tmp: Path, data: bytes, cut: int) -> None:
    check_capture(data, tmp, cut=cut)


# --- generated structures ---------------------------------------------------------------------------


def _frame(draw: hs.DrawFn) -> bytes:
    """Random bytes, or an Ethernet/IPv4/UDP-ish frame with random fields (reaches the decoder's paths)."""
    if draw(hs.booleans()):
        return draw(hs.binary(max_size=96))
    ethertype = draw(hs.sampled_from((0x0800, 0x86DD, 0x8100, 0x8847, 0x8864, 0x0806)))
    ip = bytes([draw(hs.sampled_from((0x45, 0x46, 0x60, 0x4F, 0x44)))]) + draw(
        hs.binary(min_size=0, max_size=60)
    )
    return bytes(12) + struct.pack("!H", ethertype) + ip


@hs.composite
def generated_pcap(draw: hs.DrawFn) -> bytes:
    be = draw(hs.booleans())
    bo = ">" if be else "<"
    magic = draw(hs.sampled_from((0xA1B2C3D4, 0xA1B23C4D)))
    linktype = draw(hs.sampled_from((*sorted(lt.SUPPORTED_LINKTYPES), 127, 0x04000001)))
    snaplen = draw(hs.sampled_from((0, 64, 65535, 262144, 2**31)))
    out = struct.pack(bo + "IHHiIII", magic, 2, 4, 0, 0, snaplen, linktype)
    for _ in range(draw(hs.integers(0, 12))):
        frame = _frame(draw)
        wire = draw(hs.sampled_from((len(frame), len(frame) + 100, st.MAX_WIRE_LENGTH, 4_093_509_168)))
        sec, frac = draw(hs.integers(0, 2**32 - 1)), draw(hs.integers(0, 2**32 - 1))
        out += struct.pack(bo + "IIII", sec, frac, len(frame), wire) + frame
    return out


def _block(bo: str, btype: int, body: bytes) -> bytes:
    body += bytes(-len(body) % 4)
    return struct.pack(bo + "II", btype, 12 + len(body)) + body + struct.pack(bo + "I", 12 + len(body))


@hs.composite
def generated_pcapng(draw: hs.DrawFn) -> bytes:
    out = b""
    for _ in range(draw(hs.integers(1, 3))):  # sections
        bo = draw(hs.sampled_from("<>"))
        out += _block(bo, 0x0A0D0D0A, struct.pack(bo + "IHHq", 0x1A2B3C4D, 1, 0, -1))
        n_if = draw(hs.integers(0, 3))
        for _ in range(n_if):
            opts = b""
            if draw(hs.booleans()):
                opts += struct.pack(bo + "HH", 9, 1) + bytes([draw(hs.integers(0, 255))]) + bytes(3)
            if draw(hs.booleans()):
                off = draw(hs.sampled_from((0, 3600, -3600, 2**62, -(2**62), 2**63 - 1, -(2**63))))
                opts += struct.pack(bo + "HHq", 14, 8, off)
            if opts:
                opts += struct.pack(bo + "HH", 0, 0)
            linktype = draw(hs.sampled_from((*sorted(lt.SUPPORTED_LINKTYPES), 127)))
            out += _block(
                bo, 1, struct.pack(bo + "HHI", linktype, 0, draw(hs.sampled_from((0, 64, 65535)))) + opts
            )
        for _ in range(draw(hs.integers(0, 8))):
            frame = _frame(draw)
            wire = draw(hs.sampled_from((len(frame), len(frame) + 7, 2**20 + 1, 0xFFFFFFFF)))
            kind = draw(hs.sampled_from(("epb", "epb", "spb", "opb", "other")))
            iface = draw(hs.integers(0, max(0, n_if - 1)))
            units = draw(
                hs.sampled_from((0, 1_700_000_000_000_000, 2**63, 2**64 - 1)) | hs.integers(0, 2**64 - 1)
            )
            if kind == "epb":
                body = (
                    struct.pack(bo + "IIIII", iface, units >> 32, units & 0xFFFFFFFF, len(frame), wire)
                    + frame
                )
                out += _block(bo, 6, body)
            elif kind == "opb":
                body = struct.pack(bo + "HHIIII", iface, 0, units >> 32, units & 0xFFFFFFFF, len(frame), wire)
                out += _block(bo, 2, body + frame)
            elif kind == "spb":
                out += _block(bo, 3, struct.pack(bo + "I", wire) + frame)
            else:
                out += _block(bo, draw(hs.sampled_from((4, 5, 0xBAD, 0x80000001))), frame)
    return out


@fuzz_settings(250)
@given(
    data=hs.one_of(generated_pcap(), generated_pcapng()),
    cut=hs.integers(0, 2**16),
    junk=hs.binary(max_size=8),
)
def test_generated_structures(tmp: Path, data: bytes, cut: int, junk: bytes) -> None:
    whole = check_capture(data, tmp, cut=cut)
    # Garbage after intact gzip data changes nothing but a warning (what gzip -dc does).
    p = tmp / "junk.gz"
    p.write_bytes(gzip.compress(data, mtime=0) + junk)
    got = read(p)
    assert got.rows == whole.rows
    garbage = junk.lstrip(b"\0")
    if garbage and b"\x1f\x8b".startswith(garbage[:2]):  # the start of another member, cut: damage
        # (unless the capture's own damage comes first)
        assert got.error is not None and got.error.decompressed
        assert got.error_key() == whole.error_key() or "gzip member header" in got.error.expected
    else:
        assert got.error_key() == whole.error_key()
        if got.stats is not None:
            assert len(got.stats.warnings) == (1 if garbage else 0), junk


@hs.composite
def damaged_gzip(draw: hs.DrawFn) -> bytes:
    """Gzip of a capture (one or two members), with bytes overwritten anywhere and perhaps cut."""
    data = draw(hs.one_of(generated_pcap(), hs.sampled_from(SEEDS)))
    z = bytearray(gzip.compress(data, compresslevel=draw(hs.sampled_from((1, 6, 9))), mtime=0))
    if draw(hs.booleans()):
        z += gzip.compress(data[: len(data) // 2], mtime=0)  # a second member
    for _ in range(draw(hs.integers(1, 4))):
        z[draw(hs.integers(0, len(z) - 1))] = draw(hs.integers(0, 255))
    return bytes(z[: draw(hs.integers(0, len(z)))])


@fuzz_settings(250)
@given(data=damaged_gzip())
def test_damaged_gzip(tmp: Path, data: bytes) -> None:
    check_damaged_gzip(data, tmp)


# --- the decoder kernel on records that lie about where they are ------------------------------------


@pytest.fixture(scope="module")
def decoder_compiled() -> None:
    """The first call of the decoder kernel compiles it (seconds after a change): done before the
    examples, whose per-input deadline catches hangs, not compilation."""
    test_decoder_never_reads_outside_its_buffer_and_agrees_with_reference.hypothesis.inner_test(b"", [])


@pytest.mark.usefixtures("decoder_compiled")
@fuzz_settings(300)
@given(
    buf=hs.binary(max_size=256),
    recs=hs.lists(
        hs.tuples(
            hs.integers(-(2**40), 2**40),
            hs.integers(0, 2**32 - 1),
            hs.sampled_from((0, 60, 1514, st.MAX_WIRE_LENGTH, st.MAX_WIRE_LENGTH + 1, 2**32 - 1)),
            hs.sampled_from((*sorted(lt.SUPPORTED_LINKTYPES), 127, 65535)),
        ),
        max_size=32,
    ),
)
def test_decoder_never_reads_outside_its_buffer_and_agrees_with_reference(
    buf: bytes, recs: list[tuple]
) -> None:
    n = len(recs)
    arr = np.frombuffer(buf, np.uint8)
    off = np.array([r[0] for r in recs], np.int64)
    caplen = np.array([r[1] for r in recs], np.uint32)
    wirelen = np.array([r[2] for r in recs], np.uint32)
    linktype = np.array([r[3] for r in recs], np.uint16)
    ts = np.arange(n, dtype=np.int64)
    out = [np.empty(n, np.int64), np.empty((n, 16), np.uint8), np.empty((n, 16), np.uint8)]
    out += [np.empty(n, np.uint16), np.empty(n, np.uint16), np.empty(n, np.uint8), np.empty(n, np.uint32)]
    status, aux = np.empty(n, np.uint8), np.empty(n, np.uint16)
    k = decode_records(arr, off, caplen, wirelen, ts, linktype, n, *out, status, aux)
    row = 0
    for i, (o, c, w, link) in enumerate(recs):
        start = o if 0 <= o <= len(buf) else len(buf)  # the kernel's documented clamping
        s, a, key = decode_one(buf[start : min(start + c, len(buf))], link, w)
        assert (int(status[i]), int(aux[i])) == (s, a), i
        if key is not None:
            assert bytes(out[1][row]) == key[0] and bytes(out[2][row]) == key[1] and int(out[6][row]) == w
            row += 1
    assert row == k
