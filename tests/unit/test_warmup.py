from netspectra.offline.warmup import _frame, _pcap, _pcapng, warm_up


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
