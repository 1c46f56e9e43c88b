"""The command line's numba-free kernels (netspectra.jit, nojit_load, nojit_export; issue 19).

A process that needs the numba-free mode is a subprocess (numba must not be imported there before the
mode is on); numba's answers come from this process, where ``netspectra.jit.njit`` is numba's."""

from __future__ import annotations

import collections
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from netspectra import jit, nojit_load

ROOT = Path(__file__).resolve().parents[2]
CAPTURES = ROOT / "tests" / "data" / "captures"
GNUTELLA = CAPTURES / "gnutella.pcap"

pytestmark = pytest.mark.skipif(not nojit_load.platform_supported(), reason="x86-64 Linux only")

#: A numba-free process: ``netspectra analyze`` run in-process (as the console script would run it),
#: every lazy kernel's first call recorded; then the steps named on the command line; prints one JSON
#: line of what it saw.
CHILD = r"""
import copy, json, pickle, sys
import numpy as np
from netspectra import jit

calls = {}
own_call = jit.LazyKernel.__call__

def copied(v):
    if isinstance(v, np.ndarray):
        c = v.copy(order="K")
        c.setflags(write=v.flags.writeable)
        return c
    return v

def recording(self, *args, **kw):
    if self.key in calls or kw:
        return own_call(self, *args, **kw)
    before = [copied(a) for a in args]
    res = own_call(self, *args)
    calls[self.key] = {"args": before, "after": [copied(a) for a in args], "result": copied(res)}
    return res

jit.LazyKernel.__call__ = recording
capture, record, steps = sys.argv[1], sys.argv[2], sys.argv[3:]
sys.argv = ["netspectra", "analyze", capture, "--json"]
from netspectra.cli import main as cli
try:
    cli.main(numba_free=True)
except SystemExit as e:
    assert not e.code, e.code
seen = {"mode_after_analyze": jit._State.mode, "numba_after_analyze": "numba" in sys.modules,
        "llvmlite_after_analyze": "llvmlite" in sys.modules, "reason": jit._State.reason}
if "bad-decode" in steps:
    from netspectra.capture.decode import decode_records
    bad = [copied(a) for a in calls["netspectra.capture.decode:decode_records"]["args"]]
    bad[7] = bad[7][:0]
    try:
        decode_records(*bad)
    except Exception as e:
        seen["raised"] = [type(e).__name__, list(e.args)]
    seen["numba_after_raise"] = "numba" in sys.modules
if "miss" in steps:
    from netspectra.sketches.keys import _encode_address_words
    args = [copied(a) for a in calls["netspectra.sketches.keys:_encode_address_words"]["args"]]
    args[0] = np.asfortranarray(np.repeat(args[0], 2, axis=1))[:, ::2]  # layout A: not exported
    assert not args[0].flags.c_contiguous
    _encode_address_words(*args)
    seen["miss_result"] = [a.tolist() if isinstance(a, np.ndarray) else a for a in args]
    calls["miss"] = {"args": [copied(a) for a in args]}
def a_layout(v):
    # the same values, neither C- nor F-contiguous (a signature no export holds)
    wide = np.repeat(v, 2, axis=-1)[..., ::2]
    assert not wide.flags.c_contiguous and not wide.flags.f_contiguous
    return wide

if "miss-hg" in steps:  # a kernel with callees and the prefetch intrinsic, compiled by numba now
    from netspectra.sketches.heavyguardian import hg_update
    args = [copied(a) for a in calls["netspectra.sketches.heavyguardian:hg_update"]["args"]]
    args[2] = a_layout(args[2])  # the keys' words, read
    calls["miss-hg"] = {"args": [copied(a) for a in args]}
    res = hg_update(*args)
    calls["miss-hg"].update(after=[copied(a) for a in args], result=copied(res))
if "switch" in steps:
    k = calls["netspectra.capture.decode:decode_records"]
    import numba  # numba imported after the loader: its C extensions reused
    jit.switch_to_numba("test")
    from netspectra.capture.decode import decode_records
    args = [copied(a) for a in k["args"]]
    res = decode_records(*args)
    seen["switch_same"] = bool(
        all(np.array_equal(a, b) if isinstance(a, np.ndarray) else a == b for a, b in zip(args, k["after"]))
        and np.array_equal(np.asarray(res), np.asarray(k["result"]))
    )
    seen["decode_is_dispatcher"] = type(decode_records).__name__ == "CPUDispatcher"
    left = [f"{n}.{a}" for n, m in list(sys.modules.items()) if m is not None and n.startswith("netspectra")
            for a, v in vars(m).items() if type(v) in (jit.LazyKernel, jit.LazyObject)]
    seen["lazy_left_in_globals"] = left
    import netspectra.sketches.heavyguardian as hg
    seen["prefetch_type"] = type(hg.prefetch).__module__
from netspectra import jit as j2
j2.export_if_needed()
seen["mode"] = jit._State.mode
seen["numba"] = "numba" in sys.modules
seen["reason_end"] = jit._State.reason
with open(record, "wb") as fh:
    pickle.dump(calls, fh)
print("SEEN " + json.dumps(seen))
"""


def _env(cache: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("NUMBA_CACHE_DIR", None)
    env["XDG_CACHE_HOME"] = str(cache)
    env["PYTHONPATH"] = str(ROOT / "src") + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


def _child(cache: Path, tmp: Path, capture: Path, *steps: str, **extra: str) -> tuple[dict, dict]:
    record = tmp / f"calls-{len(list(tmp.iterdir()))}.pkl"
    stdout = _run([sys.executable, "-c", CHILD, str(capture), str(record), *steps], cache, **extra)
    line = next(ln for ln in stdout.splitlines() if ln.startswith("SEEN "))
    with open(record, "rb") as fh:
        return json.loads(line[5:]), pickle.load(fh)


def _analyze(cache: Path, capture: Path | list[str], **extra: str) -> dict:
    args = [str(capture)] if isinstance(capture, Path) else capture
    return _without_timings(json.loads(_run([sys.executable, "-m", "netspectra", "analyze", *args, "--json"],
                                            cache, **extra)))  # fmt: skip


def _run(argv: list[str], cache: Path, **extra: str) -> str:
    """``argv`` in a child with the test's environment (:func:`_env`); its standard output (status 0)."""
    env = _env(cache, **extra)
    out = subprocess.run(argv, env=env, capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert out.returncode == 0, out.stderr[-4000:]
    return out.stdout


def _without_timings(report: Any) -> Any:
    """The report without the fields that measure time (they differ from run to run)."""
    if isinstance(report, dict):
        return {
            k: _without_timings(v)
            for k, v in report.items()
            if k not in ("elapsed_s", "packets_per_second", "records_per_second")
        }
    if isinstance(report, list):
        return [_without_timings(v) for v in report]
    return report


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A user cache holding a current export: written by a first run (on numba) of analyze of a pcap
    and a pcapng capture."""
    where = tmp_path_factory.mktemp("nojit-cache")
    _analyze(where, GNUTELLA)
    _analyze(where, CAPTURES / "dhcp_big_endian.pcapng")
    return where


def _export_file(cache: Path) -> Path:
    (path,) = (cache / "netspectra" / "kernels").glob("netspectra-nojit-*.bin")
    return path


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return (
            isinstance(a, np.ndarray)
            and isinstance(b, np.ndarray)
            and a.dtype == b.dtype
            and a.shape == b.shape
            and a.tobytes() == b.tobytes()
        )
    if isinstance(a, tuple) and isinstance(b, tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


def _numba_kernel(key: str) -> Any:
    import importlib

    module, _, qualname = key.partition(":")
    return getattr(importlib.import_module(module), qualname)


def _copied(v: Any) -> Any:
    if isinstance(v, np.ndarray):
        c = v.copy(order="K")
        c.setflags(write=v.flags.writeable)
        return c
    return v


def test_kernels_byte_equal_to_numba(cache: Path, tmp_path: Path) -> None:
    """Every kernel analyze calls, numba-free on gnutella's real batches: results and every argument
    after the call byte-equal to numba's on the same arguments; numba never imported."""
    seen, calls = _child(cache, tmp_path, GNUTELLA)
    assert seen["mode"] == "nojit" and not seen["numba"] and not seen["llvmlite_after_analyze"], seen
    assert {
        "netspectra.capture.decode:decode_records",
        "netspectra.capture.pcap:walk_pcap_records",
        "netspectra.tasks.exact_kernels:update_flows",
    } <= set(calls)
    for key, call in calls.items():
        kernel = _numba_kernel(key)
        assert type(kernel).__name__ == "CPUDispatcher"  # this process: numba's own
        args = [_copied(a) for a in call["args"]]
        res = kernel(*args)
        assert _same(res, call["result"]), key
        for got, want in zip(args, call["after"], strict=True):
            assert _same(got, want), key


def test_exception_is_numbas(cache: Path, tmp_path: Path) -> None:
    seen, calls = _child(cache, tmp_path, GNUTELLA, "bad-decode")
    from netspectra.capture.decode import decode_records

    bad = [_copied(a) for a in calls["netspectra.capture.decode:decode_records"]["args"]]
    bad[7] = bad[7][:0]
    with pytest.raises(ValueError) as numba_raised:
        decode_records(*bad)
    assert seen["raised"] == ["ValueError", list(numba_raised.value.args)]
    assert not seen["numba_after_raise"] and seen["mode"] == "nojit"


def test_signature_miss_falls_back_to_numba(cache: Path, tmp_path: Path) -> None:
    """An array layout no export holds: the process switches to numba, which compiles it; the answer is
    numba's."""
    seen, calls = _child(cache, tmp_path, GNUTELLA, "miss")
    assert seen["mode"] == "numba" and seen["numba"]
    assert "no exported signature matches" in seen["reason_end"]
    from netspectra.sketches.keys import _encode_address_words

    args = [_copied(a) for a in calls["miss"]["args"]]
    _encode_address_words(*args)
    assert [a.tolist() if isinstance(a, np.ndarray) else a for a in args] == seen["miss_result"]


def test_signature_miss_compiles_a_kernel_with_callees_and_intrinsics(cache: Path, tmp_path: Path) -> None:
    """After the switch, numba compiles a new signature of a kernel that calls other kernels and the
    prefetch intrinsic (resolved from the modules' namespaces, now numba's): numba's answer."""
    seen, calls = _child(cache, tmp_path, GNUTELLA, "miss-hg")
    assert seen["mode"] == "numba" and "hg_update" in seen["reason_end"]
    from netspectra.sketches.heavyguardian import hg_update

    call = calls["miss-hg"]
    args = [_copied(a) for a in call["args"]]
    args[2] = np.repeat(args[2], 2, axis=-1)[..., ::2]  # as the child passed it (pickling made it C)
    res = hg_update(*args)
    assert _same(res, call["result"])
    for got, want in zip(args, call["after"], strict=True):
        assert np.array_equal(got, want) if isinstance(got, np.ndarray) else got == want


def test_numba_imported_after_the_loader(cache: Path, tmp_path: Path) -> None:
    seen, _calls = _child(cache, tmp_path, GNUTELLA, "switch")
    assert seen["switch_same"] and seen["decode_is_dispatcher"] and seen["mode"] == "numba"
    # what numba's compiler reads in the modules' namespaces is numba's own again
    assert seen["lazy_left_in_globals"] == [] and seen["prefetch_type"].startswith("numba")


@pytest.mark.parametrize(
    "capture", ["gnutella.pcap", "bot.pcap", "4in6tunnel.pcap", "802.1ad_QinQ.pcap", "dhcp_big_endian.pcapng"]
)
def test_analyze_report_same_as_numba(cache: Path, capture: str) -> None:
    assert _analyze(cache, CAPTURES / capture) == _analyze(cache, CAPTURES / capture, NETSPECTRA_NOJIT="0")


@pytest.mark.parametrize("enriched", [False, True], ids=["shipped", "enriched"])
def test_cached_start_imports_neither_numba_nor_distribution_metadata(
    cache: Path, tmp_path: Path, enriched: bool
) -> None:
    """A start with everything cached (the kernels exported, the configuration validated before, the
    entry-point groups remembered: netspectra.declared_groups) imports neither numba nor
    importlib.metadata (10-20 ms of email, zipfile and socket modules): no kind registry scans, no
    pydantic validator is built (the sketch tasks read their validated parameters as they are; the
    enrichment's warm-up and the classifiers' defaults are constructed, not validated), and the validated
    configuration's key needs no version. Enriched: an MMDB database, a networks map and a rollup task."""
    argv = [sys.executable, "-X", "importtime", "-m", "netspectra", "analyze", str(GNUTELLA), "--json"]
    if enriched:
        mmdb = next(
            (p for p in (Path("/work/shared/data/mmdb"), ROOT / "tests" / "data" / "mmdb") if p.exists()),
            None,
        )
        if mmdb is None:
            pytest.skip("the MMDB test databases are not here")
        conf = tmp_path / "enriched.yaml"
        five = {"name": "five", "key_fields": ["SrcIP", "DstIP"]}
        doc = {
            "aggregator": {
                "types": ["exact", "rollup"],
                "exact": {"tasks": [five]},
                "rollup": {"tasks": [{"name": "traffic"}]},
            },
            "enrichment": {
                "geoip": {"asn_database": str(mmdb / "GeoLite2-ASN-Test.mmdb")},
                "networks": {"10.0.0.0/8": {"name": "lan", "role": "internal"}},
            },
        }
        conf.write_text(json.dumps(doc))
        argv += ["-c", str(conf)]
    for _ in range(2):  # the second: whatever the first found stale (or compiled) is current again
        out = subprocess.run(argv, env=_env(cache), capture_output=True, text=True, cwd=ROOT, timeout=600)
        assert out.returncode == 0, out.stderr[-4000:]
    lines = out.stderr.splitlines()
    imported = {ln.rsplit("|", 1)[-1].strip() for ln in lines if ln.startswith("import time:")}
    assert "netspectra.tasks.exact" in imported  # it did run, and the listing is read
    assert ("netspectra.enrich.enricher" in imported) == enriched
    assert not {"numba", "importlib.metadata"} & imported


def test_flow_export_report_same_as_numba(cache: Path) -> None:
    """``analyze --flow-export`` (a kernel taking a tuple of arrays): numba on the first run, which adds
    its signatures to the export; numba-free on the next, with numba's report."""
    collect = ROOT / "tests" / "data" / "collect"
    args = ["--flow-export", *(str(collect / f) for f in ("netflow9.pcap", "sflow.pcap", "ipfix.pcap"))]
    first = _analyze(cache, args)
    bundle = nojit_load.read_export(_export_file(cache))
    assert any(
        s[0] == "tuple"
        for o in bundle["kernels"]["netspectra.capture.decode:decode_records"]
        for s in o["args"]
    )
    assert _analyze(cache, args) == first == _analyze(cache, args, NETSPECTRA_NOJIT="0")


def test_stale_export_falls_back_and_is_rewritten(cache: Path, tmp_path: Path) -> None:
    path = _export_file(cache)
    good = path.read_bytes()
    try:
        bundle = nojit_load.decode_export(good)
        rel, mtime_ns, size = bundle["files"][0]
        bundle["files"][0] = (rel, mtime_ns - 1, size)  # a source file changed since
        path.write_bytes(nojit_load.encode_export(bundle))
        seen, _ = _child(cache, tmp_path, GNUTELLA)
        assert seen["mode"] == "numba" and "source files changed" in seen["reason_end"]
        # written again at the end of that run: current, the next run is numba-free
        nojit_load.read_export(path)
        seen, _ = _child(cache, tmp_path, GNUTELLA)
        assert seen["mode"] == "nojit" and not seen["numba"]
        # another runtime (a NUMBA_* switch): numba, and the report is the same
        seen, _ = _child(cache, tmp_path, GNUTELLA, NUMBA_OPT="2")
        assert seen["mode"] == "numba" and "another runtime" in seen["reason_end"]
    finally:
        path.write_bytes(good)


def test_damaged_export_falls_back(cache: Path, tmp_path: Path) -> None:
    path = _export_file(cache)
    good = path.read_bytes()
    try:
        path.write_bytes(good[:-10] + b"0123456789")
        seen, _ = _child(cache, tmp_path, GNUTELLA)
        assert seen["mode"] == "numba" and "damaged" in seen["reason_end"]
    finally:
        path.write_bytes(good)


def test_nojit_off_by_environment(cache: Path, tmp_path: Path) -> None:
    seen, _ = _child(cache, tmp_path, GNUTELLA, NETSPECTRA_NOJIT="0")
    assert seen["mode"] == "numba" and seen["reason_end"] is None and seen["numba"]


# --------------------------------------------------------------------------------------------------
# The type check against numba's typeof, in this process
# --------------------------------------------------------------------------------------------------


def _values() -> list[Any]:
    a = np.arange(24, dtype=np.uint64).reshape(4, 6)
    ro = a.copy()
    ro.setflags(write=False)
    unaligned = np.frombuffer(b"\0" * 33, dtype=np.uint8)[1:].view(np.uint32)
    return [
        None,
        True,
        np.bool_(False),
        0,
        -(2**63),
        2**63 - 1,
        2**63,
        1.5,
        np.float64(2.0),
        np.float32(2.0),
        np.int64(3),
        np.int32(3),
        np.uint64(3),
        np.uint8(3),
        a,
        ro,
        np.asfortranarray(a),
        a[:, ::2],
        a[0],
        a.astype(np.int64),
        a.astype(np.uint32),
        a.astype(np.float64),
        a.astype(np.bool_),
        a.view(">u8"),
        np.zeros(0, np.uint8),
        np.zeros((), np.int64),
        unaligned,
        np.ma.masked_array(np.arange(3)),
        np.memmap,
        "text",
        (1, 2),
        (1, 2.0),
        (True, np.int64(2)),
        (a, a[0]),
        (a[0], a),
        (a.astype(np.uint8)[0], ro),
        (),
        ((1, 2), a),
        collections.namedtuple("Pair", "x y")(1, 2),
        [1, 2],
    ]


def test_type_check_is_numbas_exact_match() -> None:
    """For every pair (value, signature of another value as numba types it): the generated check calls
    the compiled code exactly when numba's typeof of the value is that signature, or refuses (never a
    wrong signature)."""
    import numba

    from netspectra.nojit_export import arg_spec

    values = _values()
    specs = []
    for v in values:
        try:
            t = numba.typeof(v)
        except Exception:  # numba cannot type it: no signature
            continue
        spec = arg_spec(t)
        if spec is not None:
            specs.append((spec, t))
    assert len(specs) >= 20
    for spec, t in specs:
        check = jit._generated_check("k", [([spec], lambda *a: "hit")], lambda args: "miss")
        for v in values:
            try:
                same = numba.typeof(v) == t
            except Exception:
                same = False
            got = check(v)
            if not same:
                assert got == "miss", (spec, v)
            elif not (isinstance(v, np.ndarray) and not v.flags.aligned):  # stricter: unaligned refused
                assert got == "hit", (spec, v)
    check = jit._generated_check("k", [([("scalar", "int64")], lambda *a: "hit")], lambda args: "miss")
    assert check(1, 2) == "miss" and check() == "miss"


def test_ordinary_process_gets_numbas_own_names() -> None:
    """Library users, services, tests: ``njit`` and ``leading_zeros`` are numba's objects, the kernels
    numba's dispatchers, and the numba-free mode cannot be turned on once numba is imported."""
    import numba
    from numba.cpython.unsafe.numbers import leading_zeros

    from netspectra.jit import leading_zeros as lz
    from netspectra.jit import njit
    from netspectra.prefetch import prefetch
    from netspectra.sketches.murmur import hash_rows

    assert njit is numba.njit and lz is leading_zeros
    assert type(hash_rows).__name__ == "CPUDispatcher"
    assert type(prefetch).__module__.startswith("numba")
    assert not jit.use_numba_free_kernels() and not jit.numba_free()


def test_elf_image_refuses_what_it_does_not_link() -> None:
    with pytest.raises(nojit_load.NoJitUnavailableError, match="not an ELF64"):
        nojit_load.ElfImage([b"MZ" + b"\0" * 62], {})
    with pytest.raises(nojit_load.NoJitUnavailableError, match="not an export"):
        nojit_load.decode_export(b"something else")


def test_installed_numba_is_one_the_loader_was_checked_against(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The fingerprints of the numba functions the loader repeats match the installed numba (else this
    fails: the numba-free mode would silently never be used); another fingerprint gets no export."""
    import numba  # noqa: F401 - imported, as in the exporting process

    from netspectra import nojit_export

    assert nojit_export.numba_supported()
    where = "numba.core.cpu:CPUContext.get_executable"
    monkeypatch.setitem(nojit_export.FINGERPRINTS, where, frozenset({"0" * 16}))
    assert not nojit_export.numba_supported()
    assert not nojit_export.export([], tmp_path / "export.bin")
    assert not (tmp_path / "export.bin").exists()
