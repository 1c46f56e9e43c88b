from netspectra.offline.warmup import _frame, _pcap, _pcapng, capture_formats, warm_up


def test_warm_up_reads_both_formats(tmp_path) -> None:
    from netspectra.capture.reader import CaptureReader

    for name, data in (("a.pcap", _pcap(_frame())), ("a.pcapng", _pcapng(_frame()))):
        (tmp_path / name).write_bytes(data)
        reader = CaptureReader(tmp_path / name)
        (batch,) = list(reader)
        assert len(batch) == 1 and int(batch.dst_port[0]) == 80 and reader.stats.by_status["ok"] == 1
    assert warm_up() >= 0.0


_FIRST_MESSAGE = """
import numpy as np
from numba.core.registry import CPUDispatcher

from netspectra.batch import PacketBatch
from netspectra.offline.warmup import warm_up_wire
from netspectra.transport import codec, dense

def loaded():
    return {
        (m.__name__, n): len(d.signatures)
        for m in (codec, dense)
        for n, d in vars(m).items()
        if isinstance(d, CPUDispatcher)
    }

warm_up_wire()
before = loaded()
rng = np.random.default_rng(5)
n = 5000
src = np.zeros((n, 16), np.uint8)
dst = np.zeros((n, 16), np.uint8)
src[:, 10:12] = dst[:, 10:12] = 0xFF
src[:, 12:] = rng.integers(0, 256, (n, 4))
dst[:, 12:] = rng.integers(0, 256, (n, 4))
src[::50] = rng.integers(0, 256, (len(src[::50]), 16))  # IPv6 rows among them
batch = PacketBatch(
    np.arange(n, dtype=np.int64) * 1000, src, dst, rng.integers(0, 65536, n).astype(np.uint16),
    rng.integers(0, 65536, n).astype(np.uint16), np.full(n, 6, np.uint8), np.full(n, 60, np.uint32),
)
for fields in (codec.FIVE_TUPLE, ("SrcIP",)):
    for part in codec.split_by_shard(batch, codec.shard_of(batch, 16, fields), 16):
        for layout in (1, 2):
            got, _ = codec.decode_batch(codec.encode_batch(part, layout=layout))
            assert len(got) == len(part)
after = loaded()
assert sum(before.values()) > 0
print(sorted(k for k in after if after[k] != before[k]))
"""


def test_warm_up_wire_loads_what_a_first_message_needs() -> None:
    """After :func:`warm_up_wire`, a probe's first batch and an engine's first message (layouts 1 and
    2, IPv4 and IPv6 rows, both shard keys) load no further codec kernel (a fresh process: what was
    loaded is the dispatchers' signatures)."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", _FIRST_MESSAGE], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]", f"kernels first loaded by the message: {out.stdout}"


def test_capture_formats_are_the_readers_own(tmp_path) -> None:
    """The formats as the reader detects them (magic, gzip looked into); a file it refuses adds none."""
    import gzip

    (tmp_path / "a.pcap").write_bytes(_pcap(_frame()))
    (tmp_path / "b.cap").write_bytes(_pcapng(_frame()))  # the name says nothing
    (tmp_path / "c.pcap.gz").write_bytes(gzip.compress(_pcapng(_frame())))
    (tmp_path / "junk.pcap").write_bytes(b"not a capture at all")
    (tmp_path / "empty.pcap").write_bytes(b"")
    paths = {p.name: p for p in tmp_path.iterdir()}
    assert capture_formats([paths["a.pcap"]]) == {"pcap"}
    assert capture_formats([paths["b.cap"], paths["c.pcap.gz"]]) == {"pcapng"}
    assert capture_formats([paths["junk.pcap"], paths["empty.pcap"], tmp_path / "missing.pcap"]) == set()
    assert capture_formats(paths.values()) == {"pcap", "pcapng"}


_ONE_FORMAT = """
import sys
from pathlib import Path
from numba.core.registry import CPUDispatcher
from netspectra.capture import decode, pcap, pcapng
from netspectra.capture.reader import CaptureReader
from netspectra.config import load_config
from netspectra.offline.warmup import capture_formats, warm_up

def loaded():
    return {(m.__name__, n): len(d.signatures) for m in (decode, pcap, pcapng)
            for n, d in vars(m).items() if isinstance(d, CPUDispatcher)}

path = Path(sys.argv[1])
warm_up(load_config(), formats=capture_formats([path]))
before = loaded()
batches = list(CaptureReader(path))
assert sum(len(b) for b in batches) > 0
after = loaded()
print(sorted(k for k in after if after[k] != before[k]))
print(sorted(k for k, v in before.items() if v))
"""


def test_warm_up_of_a_files_format_loads_what_reading_it_needs(tmp_path) -> None:
    """After warming up the reader for a file's format alone, reading the file loads no further reader
    kernel; the other format's walker is not loaded."""
    import ast
    import subprocess
    import sys
    from pathlib import Path

    captures = Path(__file__).parents[1] / "data" / "captures"
    walkers = {
        "pcap": ("netspectra.capture.pcap", "walk_pcap_records"),
        "pcapng": ("netspectra.capture.pcapng", "walk_pcapng_blocks"),
    }
    for name, fmt, other in (
        ("gnutella.pcap", "pcap", "pcapng"),
        ("dhcp_big_endian.pcapng", "pcapng", "pcap"),
    ):
        out = subprocess.run(
            [sys.executable, "-c", _ONE_FORMAT, str(captures / name)],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert out.returncode == 0, out.stderr
        first_loaded, warmed = (ast.literal_eval(line) for line in out.stdout.splitlines())
        assert first_loaded == [], f"{name}: kernels first loaded by reading it: {first_loaded}"
        assert walkers[fmt] in warmed and walkers[other] not in warmed, warmed


_ENRICHED_RUN = """
import sys
import numpy as np
from numba.core.registry import CPUDispatcher

from netspectra.config.loader import parse_config_text
from netspectra.engine.enrichment import EnrichmentStage
from netspectra.enrich import classify, kernels, table
from netspectra.offline.warmup import warm_up

def loaded():
    return {
        (m.__name__, n): len(d.signatures)
        for m in (kernels, table, classify)
        for n, d in vars(m).items()
        if isinstance(d, CPUDispatcher)
    }

reads = sys.argv[1] == "rollup"
text = '''
aggregator:
  types: [exact, rollup]
  exact:
    tasks: [{name: t, key_fields: [SrcIP, DstIP, SrcPort, DstPort, Protocol], num_shards: 1}]
  rollup:
    tasks: [{name: traffic}]
enrichment:
  networks:
    10.0.0.0/8: {name: lan, role: internal}
    2001:db8::/32: {name: doc}
'''
if not reads:
    text = text.replace("types: [exact, rollup]", "types: [exact]")
cfg = parse_config_text(text)
warm_up(cfg, formats=())
count = sum(loaded().values())
stage = EnrichmentStage.from_config(cfg)  # (builds the table: the table kernels are not the warm-up's)
assert (stage is not None) == reads
before = loaded()
if stage is not None:
    from netspectra.batch import PacketBatch
    rng = np.random.default_rng(5)
    n = 500
    src = np.zeros((n, 16), np.uint8)
    src[:, 10:12] = 0xFF
    src[:, 12:] = rng.integers(0, 256, (n, 4))
    src[::50] = rng.integers(0, 256, (len(src[::50]), 16))  # IPv6 rows among them
    batch = PacketBatch(
        np.arange(n, dtype=np.int64) * 1000, src, src[::-1].copy(), np.zeros(n, np.uint16),
        np.zeros(n, np.uint16), np.full(n, 6, np.uint8), np.full(n, 60, np.uint32),
    )
    assert "SrcCode" in stage.apply(batch).dims
after = loaded()
print(count, sorted(k for k in after if after[k] != before[k]))
"""


def test_warm_up_loads_what_the_enrichment_stage_calls_and_nothing_else() -> None:
    """After :func:`warm_up` of a configuration, enriching a first batch (the stage built: a networks map,
    no database; the rollup task reads side codes) loads no further enrichment kernel; a
    configuration whose tasks read no enrichment column (no stage) loads none at all (a fresh process
    each: what was loaded is the dispatchers' signatures)."""
    import subprocess
    import sys

    for mode, loaded_by_warm_up in (("rollup", True), ("exact", False)):
        out = subprocess.run(
            [sys.executable, "-c", _ENRICHED_RUN, mode], capture_output=True, text=True, timeout=300
        )
        assert out.returncode == 0, out.stderr
        count, first_loaded_later = out.stdout.split(" ", 1)
        assert (int(count) > 0) == loaded_by_warm_up, out.stdout
        assert first_loaded_later.strip() == "[]", f"kernels first loaded after the warm-up: {out.stdout}"


_EXPORTS = """
import importlib, pkgutil, sys
from pathlib import Path
from numba.core.registry import CPUDispatcher
import netspectra.collect
from netspectra.collect.batches import flow_batch
from netspectra.collect.capture import datagrams_from_capture
from netspectra.collect.decoder import FlowDecoder
from netspectra.config import load_config
from netspectra.offline.warmup import warm_up

def loaded():
    names = pkgutil.iter_modules(netspectra.collect.__path__, "netspectra.collect.")
    mods = [importlib.import_module(m.name) for m in names]
    return {(m.__name__, n): len(d.signatures) for m in mods
            for n, d in vars(m).items() if isinstance(d, CPUDispatcher)}

warm_up(load_config(), formats=(), exports=True)
before = loaded()
rows = 0
for path in sys.argv[1:]:
    for extras in (False, True):
        decoder = FlowDecoder()
        for dg in datagrams_from_capture(path):
            rows += len(flow_batch(decoder.decode(dg).records, extras=extras))
        decoder.close()
assert rows > 0
after = loaded()
print(sorted(k for k in after if after[k] != before.get(k, 0)))
"""


def test_warm_up_exports_loads_what_real_exports_need() -> None:
    """After ``warm_up(exports=True)`` (``analyze --flow-export``), decoding real NetFlow v5/v9, IPFIX and
    sFlow captures loads no further kernel of the collector's modules: the first run after installation
    no longer counts their compilation in its elapsed time and rate."""
    import subprocess
    import sys
    from pathlib import Path

    data = Path(__file__).parents[1] / "data" / "collect"
    files = [str(data / f) for f in ("netflow5.pcap", "netflow9.pcap", "ipfix.pcap", "sflow.pcap")]
    cmd = [sys.executable, "-c", _EXPORTS, *files]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]", f"kernels first loaded by the real exports: {out.stdout}"


def test_warm_up_exports_says_nothing_about_its_made_up_exporters(caplog) -> None:
    """The warm-up's datagrams carry no sampling rate: what the decoders would log about that exporter is
    not the user's (it appeared before the report of every ``analyze --flow-export``)."""
    import logging

    from netspectra.offline.warmup import warm_up_exports

    with caplog.at_level(logging.DEBUG):
        warm_up_exports()
    assert not [r for r in caplog.records if r.levelno >= logging.INFO], caplog.text
    assert logging.getLogger("netspectra.collect").level == logging.NOTSET  # restored
