"""Transport: how packet batches travel from a probe to an engine.

:mod:`netspectra.transport.codec` turns a :class:`~netspectra.batch.PacketBatch` into one
``v1.PacketBatch`` protobuf message of packed little-endian columns and back: layout 1 (zero-copy on
receive) or the dense layout 2 (:mod:`netspectra.transport.dense`: 4-byte IPv4 addresses, timestamp
offsets, optional compression). It also reads and writes the original's one-``PacketInfo``-per-message
format (compatibility path) and shards batches by a flow hash. The wire layout is documented in
``docs/wire.md``.
"""

from netspectra.lazy import lazy_exports

_CODEC = "netspectra.transport.codec"
_WHERE = {
    name: _CODEC
    for name in (
        "COMPRESSIONS",
        "FIVE_TUPLE",
        "LAYOUTS",
        "LAYOUT_VERSION",
        "SHARD_SEED",
        "BatchMeta",
        "PacketInfoStats",
        "batch_to_packet_infos",
        "decode_batch",
        "encode_batch",
        "packet_info_to_batch",
        "shard_of",
        "split_by_shard",
    )
}
__getattr__ = lazy_exports(__name__, _WHERE)
__all__ = sorted(_WHERE)
