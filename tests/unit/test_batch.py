"""PacketBatch's optional columns: absent by default, kept by every operation, checked by validate."""

from __future__ import annotations

import numpy as np
import pytest

from netspectra.batch import PacketBatch


def batch(n: int, optional: tuple[str, ...] = tuple(PacketBatch.OPTIONAL)) -> PacketBatch:
    b = PacketBatch.empty(n, optional)
    for c in b.columns():
        a = getattr(b, c)
        a[...] = np.arange(a.size, dtype=np.int64).reshape(a.shape).astype(a.dtype)
    return b


def test_absent_by_default_and_positional_construction_still_works() -> None:
    b = PacketBatch(*(getattr(batch(3, ()), c) for c in PacketBatch.COLUMNS))
    assert b.present() == () and b.columns() == PacketBatch.COLUMNS
    b.validate()


@pytest.mark.parametrize(
    "optional", [(), ("tcp_flags",), ("vlan_id", "ip_length"), tuple(PacketBatch.OPTIONAL)]
)
def test_head_slice_take_copy_concat_keep_the_optional_columns(optional: tuple[str, ...]) -> None:
    b = batch(10, optional)
    assert b.present() == optional
    for part, rows in (
        (b.head(4), np.arange(4)),
        (b.slice(3, 7), np.arange(3, 7)),
        (b.take(np.array([9, 0, 5])), np.array([9, 0, 5])),
        (b.take(np.arange(10) % 2 == 0), np.arange(0, 10, 2)),
        (b.copy(), np.arange(10)),
        (PacketBatch.concat([b.head(2), b.slice(2, 10)]), np.arange(10)),
    ):
        part.validate()
        assert part.present() == optional
        for c in b.columns():
            assert np.array_equal(getattr(part, c), getattr(b, c)[rows]), c
    assert not np.shares_memory(b.copy().ts_ns, b.ts_ns)


def test_concat_refuses_mixed_optional_columns() -> None:
    with pytest.raises(ValueError, match="batch 1 carries"):
        PacketBatch.concat([batch(2, ("tcp_flags",)), batch(2, ())])


def test_with_columns_adds_and_removes() -> None:
    b = batch(4, ())
    flags = np.array([2, 18, 16, 17], np.uint8)
    c = b.with_columns(tcp_flags=flags)
    assert c.present() == ("tcp_flags",) and c.tcp_flags is flags and b.tcp_flags is None
    assert c.with_columns(tcp_flags=None).present() == ()
    with pytest.raises(ValueError, match="not optional columns"):
        b.with_columns(ts_ns=b.ts_ns)
    with pytest.raises(ValueError, match="not optional columns"):
        PacketBatch.empty(1, ("flags",))


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [
        ("tcp_flags", np.zeros(3, np.uint16), "dtype uint16, expected uint8"),
        ("vlan_id", np.zeros(4, np.uint16), r"shape \(4,\), expected \(3,\)"),
        ("ip_length", np.zeros(6, np.uint32)[::2], "not C-contiguous"),
        ("icmp_type_code", [0, 0, 0], "expected a numpy array"),
    ],
)
def test_validate_checks_optional_columns(column: str, value: object, message: str) -> None:
    b = batch(3, ()).with_columns(**{column: value})
    with pytest.raises(ValueError, match=message):
        b.validate()


def _weighted(n: int = 4) -> PacketBatch:
    b = PacketBatch.empty(n, PacketBatch.EXPORT_COLUMNS)
    for c in b.columns():
        getattr(b, c)[...] = 0
    b.packets[:] = np.arange(1, n + 1) * 100
    b.octets[:] = b.packets * 1500
    b.sampling_rate[:] = 100
    b.exporter[:, 10:12] = 0xFF
    b.exporter[:, 15] = np.arange(n)
    return b


def test_flow_export_rows_carry_weights_and_their_exporter() -> None:
    b = _weighted()
    b.validate()
    assert b.weighted and b.exporter.shape == (4, 16)
    assert b.packet_counts().tolist() == [100, 200, 300, 400]
    assert b.byte_counts().tolist() == [150_000, 300_000, 450_000, 600_000]
    plain = PacketBatch.empty(2)
    plain.length[:] = [60, 1500]
    assert not plain.weighted
    assert plain.packet_counts().tolist() == [1, 1] and plain.byte_counts().tolist() == [60, 1500]
    # every operation keeps the 2-D exporter column with its rows
    assert b.take(np.array([3, 0])).exporter[:, 15].tolist() == [3, 0]
    assert PacketBatch.concat([b, b.slice(1, 2)]).exporter[:, 15].tolist() == [0, 1, 2, 3, 1]
    assert PacketBatch.row_bytes("exporter") == 16 and PacketBatch.row_bytes("packets") == 8
    with pytest.raises(ValueError, match="packets and octets go together"):
        b.with_columns(octets=None).validate()
    with pytest.raises(ValueError, match=r"exporter: shape \(4,\), expected \(4, 16\)"):
        b.with_columns(exporter=np.zeros(4, np.uint8)).validate()


def test_dimension_columns_follow_the_rows_and_dictionaries_only_grow() -> None:
    b = _weighted()
    dims = {"SrcAS": np.array([1, 2, 3, 4], np.uint32), "SrcNetName": np.array([0, 1, 1, 2], np.uint16)}
    e = b.with_dims(dims, {"SrcNetName": ("", "lan")})
    e.validate()
    t = e.take(np.array([2, 1]))
    assert t.dims is not None and t.dims["SrcAS"].tolist() == [3, 2] and t.dictionaries == e.dictionaries
    later = e.with_dims(dims, {"SrcNetName": ("", "lan", "dmz")})
    joined = PacketBatch.concat([e, later])
    assert joined.dims is not None and joined.dims["SrcAS"].tolist() == [1, 2, 3, 4] * 2
    assert joined.dictionaries == {"SrcNetName": ("", "lan", "dmz")}
    with pytest.raises(ValueError, match="different dimension columns"):
        PacketBatch.concat([e, b])
    with pytest.raises(ValueError, match="not an enrichment column"):
        b.with_dims({"Nope": np.zeros(4, np.uint32)}).validate()
    with pytest.raises(ValueError, match="dimension SrcAS: uint16"):
        b.with_dims({"SrcAS": np.zeros(4, np.uint16)}).validate()
