"""Key fields beyond the five: the one list, configuration, key extraction per kind, missing columns, the
exact task's extra key words against their references, sketch keys and their text, query filters."""

from __future__ import annotations

import logging

import numpy as np
import pyarrow as pa
import pytest

from netspectra.batch import PacketBatch
from netspectra.config.loader import ConfigError, parse_config_text
from netspectra.engine.kind import columns_needed
from netspectra.enrich.columns import COLUMNS
from netspectra.fields import BY_NAME, FIELD_NAMES, KEY_FIELDS, PACKET_FIELDS, key_length, validate_fields
from netspectra.key_columns import MissingFields, decode_codes, value_text
from netspectra.output.flow_table import FLOW_TABLE_SCHEMA, flow_table_schema
from netspectra.sketches.base import SketchTask
from netspectra.sketches.keys import decode_flow, encode_flow_element, encode_keys, encode_keys_ref
from netspectra.storage.queries import FlowFilter
from netspectra.storage.schema import ADDED_KEY_COLUMNS, FLOW_COLUMNS, KEY_COLUMNS
from netspectra.tasks import exact_kernels as kern
from netspectra.tasks.exact import MAX_LOAD_DEN, MAX_LOAD_NUM, ExactTask
from netspectra.tasks.exact_fields import ExtraLayout
from netspectra.tasks.exact_ref import ReferenceFlows, reference_table

V4 = np.frombuffer(bytes(10) + b"\xff\xff", np.uint8)
OTHER = tuple(f for f in FIELD_NAMES if f not in PACKET_FIELDS)
DICT_FIELDS = tuple(f.name for f in KEY_FIELDS if f.kind == "dict")
WORDS = {c.name: ("", "FR", "DE", "site a", "x-y") for c in COLUMNS if c.kind == "dict"}


def full_batch(rng: np.random.Generator, n: int, pool: int = 3, dims: bool = True) -> PacketBatch:
    """Packets with every optional key column and every enrichment column, values from small pools (so
    keys repeat and differ in one field), some IPv6."""
    b = PacketBatch.empty(n, ("vlan_id", "in_if", "out_if", "exporter"))
    hosts = rng.integers(0, 256, (pool + 1, 16)).astype(np.uint8)
    hosts[: pool // 2 + 1, :12] = V4
    for c in ("src_ip", "dst_ip", "exporter"):
        getattr(b, c)[:] = hosts[rng.integers(0, pool + 1, n)]
    b.ts_ns[:] = rng.integers(0, 10**12, n)
    b.src_port[:] = rng.integers(0, pool, n)
    b.dst_port[:] = rng.integers(0, pool, n)
    b.protocol[:] = rng.choice(np.array([6, 17], np.uint8), n)
    b.length[:] = rng.integers(40, 1500, n)
    b.vlan_id[:] = rng.integers(0, pool, n)
    b.in_if[:] = rng.integers(0, pool, n) * 1_000_000  # beyond 16 bits
    b.out_if[:] = np.uint32(0xFFFF_FFFF) - rng.integers(0, pool, n).astype(np.uint32)
    if not dims:
        return b
    cols = {}
    for c in COLUMNS:
        top = len(WORDS[c.name]) if c.kind == "dict" else 4_000_000_000
        vals = rng.integers(0, pool, n) * (top // pool if c.kind != "dict" else 1)
        cols[c.name] = np.minimum(vals, top - 1).astype(np.dtype(c.dtype))
    return b.with_dims(cols, {k: v for k, v in WORDS.items()})


# --- the list ------------------------------------------------------------------------------------------


def test_one_list_holds_the_five_the_record_fields_and_every_enrichment_column() -> None:
    assert PACKET_FIELDS == ("SrcIP", "DstIP", "SrcPort", "DstPort", "Protocol")
    assert FIELD_NAMES[5:9] == ("VlanID", "ExporterAddress", "InIf", "OutIf")
    assert FIELD_NAMES[9:] == tuple(c.name for c in COLUMNS)
    assert BY_NAME["SrcAS"].kind == "int" and BY_NAME["SrcAS"].key_bytes == 4
    assert BY_NAME["DstCountry"].kind == "dict" and BY_NAME["DstCountry"].clickhouse == "String"
    assert BY_NAME["InIfBoundary"].key_bytes == 1  # its codes are uint8
    assert BY_NAME["ExporterAddress"].is_ip and BY_NAME["ExporterAddress"].source == "optional"
    # storage has a column per key field, in the same order; the added ones follow Protocol
    names = [n for n, _ in FLOW_COLUMNS]
    assert KEY_COLUMNS == FIELD_NAMES and ADDED_KEY_COLUMNS == OTHER
    assert names[names.index("Protocol") + 1 : names.index("StartNs")] == list(OTHER)
    assert dict(FLOW_COLUMNS)["SrcAS"] == "Nullable(UInt32)" and dict(FLOW_COLUMNS)["SrcCountry"] == (
        "Nullable(String)"
    )


@pytest.mark.parametrize(
    ("fields", "message"),
    [(["SrcAs"], "did you mean 'SrcAS'"), (["inif"], "did you mean 'InIf'"), (["SrcAS", "SrcAS"], "twice")],
)
def test_validation_knows_the_new_fields(fields: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        validate_fields(fields)
    assert validate_fields(["SrcAS", "DstCountry", "ExporterAddress"]) == (
        "SrcAS",
        "DstCountry",
        "ExporterAddress",
    )
    assert key_length(["SrcAS", "DstCountry", "ExporterAddress", "InIfBoundary"]) == 4 + 2 + 16 + 1


def test_configuration_accepts_the_new_fields_with_did_you_mean_errors() -> None:
    text = """
aggregator:
  types: [exact, sketch]
  exact:
    tasks: [{name: by_as, key_fields: [SrcAS]}, {name: by_if, key_fields: [ExporterAddress, InIf, VlanID]}]
  sketch:
    tasks:
      - {name: countries, skt_type: 1, flow_fields: [SrcAS], element_fields: [DstCountry], width: 64,
         depth: 2}
enrichment:
  geoip: {asn_database: /nonexistent/asn.mmdb}
  networks: {10.0.0.0/8: {name: corp, country: FR}}
"""
    cfg = parse_config_text(text)
    assert cfg.aggregator.exact.tasks[1].key_fields == ("ExporterAddress", "InIf", "VlanID")
    assert cfg.aggregator.sketch.tasks[0].element_fields == ("DstCountry",)
    assert columns_needed(cfg) == ("vlan_id",)  # a reader decodes VLANs for the task keyed on them
    with pytest.raises(ConfigError, match=r"key_fields.*'SrcAs'.*did you mean 'SrcAS'"):
        parse_config_text(text.replace("[SrcAS]}", "[SrcAs]}"))
    with pytest.raises(ConfigError, match=r"element_fields.*did you mean 'DstCountry'"):
        parse_config_text(text.replace("[DstCountry]", "[DstCountri]"))
    with pytest.raises(ConfigError, match=r"shard_fields.*'SrcAS' is not a packet field"):
        parse_config_text("probe:\n  shard_fields: [SrcAS]\n")


ENRICHED_TASK = """
aggregator:
  types: [exact]
  exact:
    tasks: [{name: t, key_fields: [SrcIP, FIELD]}]
"""


@pytest.mark.parametrize(
    ("field", "enrichment", "fills"),
    [
        ("SrcAS", "", "enrichment.geoip.asn_database or enrichment.networks.<cidr>.asn"),
        ("SrcAS", "networks: {10.0.0.0/8: corp}", "enrichment.geoip.asn_database"),
        ("SrcAS", "networks: {10.0.0.0/8: {asn: 64500}}", None),
        ("DstAS", "geoip: {asn_database: /x/asn.mmdb}", None),
        ("DstCountry", "geoip: {asn_database: /x/asn.mmdb}", "enrichment.geoip.country_database"),
        ("DstCountry", "geoip: {country_database: /x/city.mmdb}", None),
        ("SrcNetSite", "networks: {10.0.0.0/8: {name: corp}}", "enrichment.networks.<cidr>.site"),
        ("SrcNetSite", "networks: {10.0.0.0/8: {site: par1}}", None),
        ("InIfBoundary", "classifiers: {exporters: ['ClassifyGroup(\"g\")']}", "classifiers.interfaces"),
        ("InIfBoundary", "classifiers: {interfaces: ['ClassifyExternal()']}", None),
        ("ExporterName", "classifiers: {exporters: ['ClassifyGroup(\"g\")']}", "exporters.<address>.name"),
        ("ExporterName", "exporters: {192.0.2.1: {name: edge1}}", None),
        ("ExporterGroup", "exporters: {192.0.2.1: {name: edge1}}", "classifiers.exporters"),
        ("ExporterGroup", "classifiers: {exporters: ['ClassifyGroup(\"g\")']}", None),
    ],
)
def test_a_key_field_no_batch_can_supply_is_refused(field: str, enrichment: str, fills: str | None) -> None:
    """An enrichment column is a key field only when the configuration fills it: otherwise every row
    would count under its unknown value, and the configuration says so, naming the key and what fills
    the column. The same holds for the sketches' flow and element fields."""
    text = ENRICHED_TASK.replace("FIELD", field) + (f"enrichment:\n  {enrichment}\n" if enrichment else "")
    if fills is None:
        assert parse_config_text(text).aggregator.exact.tasks[0].key_fields == ("SrcIP", field)
        return
    with pytest.raises(ConfigError) as err:
        parse_config_text(text)
    msg = str(err.value)
    assert f"aggregator.exact.tasks[0].key_fields[1] (t): no batch can supply {field}" in msg
    assert fills in msg and "unknown value" in msg
    sketch = (
        "aggregator:\n  types: [sketch]\n  sketch:\n    tasks:\n      - {name: s, skt_type: 1, "
        f"flow_fields: [SrcIP], element_fields: [{field}], width: 64, depth: 2}}\n"
    )
    with pytest.raises(
        ConfigError, match=rf"aggregator\.sketch\.tasks\[0\]\.element_fields\[0\] \(s\).*{field}"
    ):
        parse_config_text(sketch + (f"enrichment:\n  {enrichment}\n" if enrichment else ""))


def test_record_fields_are_not_refused_by_the_configuration() -> None:
    """InIf, OutIf, ExporterAddress and VlanID come with the batches (flow exports, decoded VLANs), which
    the configuration cannot see: accepted; a batch without them counts under unknown at run time."""
    cfg = parse_config_text(ENRICHED_TASK.replace("FIELD", "InIf, OutIf, ExporterAddress, VlanID"))
    assert cfg.aggregator.exact.tasks[0].key_fields[1:] == ("InIf", "OutIf", "ExporterAddress", "VlanID")


# --- extraction ---------------------------------------------------------------------------------------


def test_extra_words_pack_and_unpack_every_kind() -> None:
    rng = np.random.default_rng(1)
    b = full_batch(rng, 500)
    layout = ExtraLayout(OTHER)
    # VlanID 16 + InIf 32 (+ OutIf: next word), the exporter 2 words, AS numbers 32 bits, codes 16/8
    assert layout.fields == OTHER and layout.words < len(OTHER)
    words = layout.pack(b)
    assert words.shape == (500, layout.words) and words.flags.c_contiguous
    back = layout.unpack(words)
    np.testing.assert_array_equal(back["ExporterAddress"], b.exporter)
    np.testing.assert_array_equal(back["VlanID"], b.vlan_id)
    np.testing.assert_array_equal(back["InIf"], b.in_if)
    np.testing.assert_array_equal(back["OutIf"], b.out_if)
    for c in COLUMNS:
        np.testing.assert_array_equal(back[c.name], b.dims[c.name])
        assert back[c.name].dtype == np.dtype(c.dtype)
    with pytest.raises(ValueError, match="packet field"):
        ExtraLayout(["SrcIP"])


def test_missing_columns_count_under_unknown_and_are_said_once(caplog: pytest.LogCaptureFixture) -> None:
    b = full_batch(np.random.default_rng(2), 40, dims=False)
    missing = MissingFields("t", "exact")
    with caplog.at_level(logging.WARNING, "netspectra.key_columns"):
        for _ in range(3):
            assert (missing.values(b, "SrcAS") == 0).all()
            assert missing.values(b, "InIf") is b.in_if
    assert missing.as_dict() == {"SrcAS": 120}
    assert sum("keys on SrcAS" in r.message and "enrichment" in r.message for r in caplog.records) == 1
    plain = PacketBatch.empty(5)
    assert (missing.values(plain, "ExporterAddress") == 0).all() and missing.values(
        plain, "ExporterAddress"
    ).shape == (
        5,
        16,
    )
    assert any("netspectra collect" in r.message for r in caplog.records if "ExporterAddress" in r.message)


# --- the exact task -----------------------------------------------------------------------------------

TASKS = [
    ("SrcAS",),
    ("ExporterAddress", "InIf"),
    ("SrcIP", "DstCountry", "VlanID", "OutIf"),
    (*PACKET_FIELDS, *OTHER),
    ("DstPort", "InIfBoundary", "ExporterName"),
]


def flows_of(snap) -> dict[tuple, list[int]]:  # type: ignore[no-untyped-def]
    out = {}
    for i in range(len(snap)):
        key = [bytes(snap.src_ip[i]), bytes(snap.dst_ip[i]), int(snap.src_port[i]), int(snap.dst_port[i]),
               int(snap.protocol[i])]  # fmt: skip
        for f in snap.extra_fields:
            v = snap.extra[f][i]
            key.append(bytes(v) if BY_NAME[f].is_ip else int(v))
        out[tuple(key)] = [
            int(snap.first_ns[i]),
            int(snap.last_ns[i]),
            int(snap.packets[i]),
            int(snap.bytes[i]),
        ]
    return out


@pytest.mark.parametrize("fields", TASKS, ids=["-".join(t)[:40] for t in TASKS])
def test_exact_with_extra_words_matches_both_references(fields: tuple[str, ...]) -> None:
    """The kernel with extra key words and its Python twin build the same index and rows, slot by slot,
    through growth; the flows are those of the dict reference."""
    rng = np.random.default_rng(3)
    batches = [full_batch(rng, 700) for _ in range(3)] + [full_batch(rng, 300, pool=40)]
    task = ExactTask("t", fields, capacity_hint=1)
    ref = ReferenceFlows(fields)
    for b in batches:
        task.update(b)
        ref.update(b)
    assert flows_of(task.snapshot()) == ref.flows
    index, rows, wide = reference_table(batches, fields, 16, (MAX_LOAD_NUM, MAX_LOAD_DEN))
    nx = task.extra_layout.words if task.extra_layout else 0
    np.testing.assert_array_equal(task._index, index)
    got = task._rows.array[: int(task._state[0]) * (kern.ROW_WORDS + nx)].reshape(-1, kern.ROW_WORDS + nx)
    np.testing.assert_array_equal(got, rows)
    gw = task._wide.array[: int(task._state[1]) * (kern.WIDE_ROW_WORDS + nx)].reshape(
        -1, kern.WIDE_ROW_WORDS + nx
    )
    np.testing.assert_array_equal(gw, wide)
    # every slot's tag is the high half of the hash of the row it points to (the extra words included)
    used, wused = int(task._state[0]), int(task._state[1])
    homes = kern.home_slots(task.capacity, task._rows.array, task._wide.array, used, wused, nx)
    assert len(homes) == len(task)


def test_exact_task_keyed_only_on_packet_fields_has_no_extra_words() -> None:
    task = ExactTask("t", PACKET_FIELDS)
    assert task.extra_layout is None and task._rw == kern.ROW_WORDS
    snap = task.snapshot()
    assert snap.extra == {} and snap.to_arrow().schema == FLOW_TABLE_SCHEMA


def test_snapshot_output_decodes_and_orders_the_extra_fields() -> None:
    rng = np.random.default_rng(4)
    b = full_batch(rng, 400)
    fields = ("DstCountry", "SrcAS", "ExporterAddress", "SrcIP")
    task = ExactTask("t", fields)
    task.update(b)
    snap = task.snapshot()
    table = snap.to_arrow()
    assert table.schema == flow_table_schema(("ExporterAddress", "SrcAS", "DstCountry"))
    assert (
        table.schema.field("SrcAS").type == pa.uint32()
        and table.schema.field("DstCountry").type == pa.string()
    )
    assert set(table.column("DstCountry").to_pylist()) <= set(WORDS["DstCountry"])
    # the order is total and deterministic: the same rows sorted twice, however taken
    a = snap.sorted("bytes").to_arrow()
    b2 = snap.take(np.arange(len(snap))[::-1]).sorted("bytes").to_arrow()
    assert a.equals(b2)
    keys = snap.flow_keys()
    assert len(set(keys)) == len(snap) and all(k.count("-") >= 3 for k in keys)
    # the rows a report prints, built without Arrow, are Arrow's rows (times as integer ns)
    assert snap.sorted("bytes").to_rows() == _with_int_times(a).to_pylist()
    # a later batch's longer dictionary decodes every earlier code
    more = b.with_dims(b.dims, {k: (*v, "NEW") for k, v in b.dictionaries.items()})
    more.dims["DstCountry"][:] = len(WORDS["DstCountry"])
    task.update(more)
    assert "NEW" in task.snapshot().to_arrow().column("DstCountry").to_pylist()


# --- sketch keys --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fields", [("SrcAS",), ("ExporterAddress", "InIf", "DstCountry"), (*PACKET_FIELDS, *OTHER)]
)
def test_sketch_keys_of_every_kind_match_the_reference(fields: tuple[str, ...]) -> None:
    rng = np.random.default_rng(5)
    b = full_batch(rng, 300)
    np.testing.assert_array_equal(encode_keys(b, fields), encode_keys_ref(b, fields))
    keys = encode_keys(b, fields)
    assert keys.shape == (300, key_length(fields))
    plain = full_batch(rng, 30, dims=False)
    missing = MissingFields("s", "sketch")
    np.testing.assert_array_equal(encode_keys(plain, fields, missing), encode_keys_ref(plain, fields))
    elem = encode_flow_element(b, ("SrcAS",), ("DstCountry",))
    assert elem.shape == (300, 6)
    assert elem[:, 4:].tobytes() == b.dims["DstCountry"].astype(">u2").tobytes()


def test_flow_text_shows_the_new_fields_readably() -> None:
    b = full_batch(np.random.default_rng(6), 1)
    b.dims["SrcAS"][:] = 64500
    b.dims["DstCountry"][:] = 1
    b.dims["SrcNetName"][:] = 0
    b.exporter[:] = np.concatenate([V4, [192, 0, 2, 1]])
    b.in_if[:] = 7
    fields = ("SrcAS", "DstCountry", "SrcNetName", "ExporterAddress", "InIf")
    text = decode_flow(encode_keys(b, fields)[0], fields, b.dictionaries)
    assert text == "AS64500 FR - 192.0.2.1 7"
    assert value_text(BY_NAME["DstCountry"], 99, {}) == "-"  # a code no dictionary knows yet
    assert decode_codes(np.array([0, 2, 7]), ("", "a", "b")) == ["", "b", ""]
    task = SketchTask("s", 0, ["SrcAS", "DstCountry"], variant="mv", width=64, depth=2, count_threshold=1,
                      size_threshold=1, seed=1)  # fmt: skip
    task.update(b)
    assert task.snapshot().count.flows == ("AS64500 FR",)
    plain = task
    plain.update(full_batch(np.random.default_rng(7), 5, dims=False))
    assert plain.counters()["missing_key_rows"] == {"SrcAS": 5, "DstCountry": 5}


# --- queries ------------------------------------------------------------------------------------------


def test_flow_filter_takes_every_key_field_and_checks_it() -> None:
    f = FlowFilter.from_keys(
        {"SrcAS": "AS64500", "InIf": "3", "DstCountry": "FR", "ExporterAddress": "::ffff:192.0.2.1"}
    )
    conds, params = f.conditions()
    assert params == {"f_SrcAS": 64500, "f_InIf": 3, "f_DstCountry": "FR", "f_ExporterAddress": "192.0.2.1"}
    assert all(c.endswith(f"%(f_{c.split()[0]})s") for c in conds)
    for keys, message in [
        ({"SrcAS": "AS-1"}, "SrcAS"),
        ({"InIf": 2**32}, "InIf"),
        ({"VlanID": 70000}, "VlanID"),
        ({"ExporterAddress": "x"}, "not an IP address"),
        ({"DstCountry": 5}, "DstCountry"),
        ({"SrcAs": "1"}, "unsupported flow key: SrcAs .*did you mean 'SrcAS'"),
        ({"DstPrt": "53"}, "unsupported flow key: DstPrt .*did you mean 'DstPort'"),
    ]:
        with pytest.raises(ValueError, match=message):
            FlowFilter.from_keys(keys)
    with pytest.raises(ValueError, match="unsupported flow key: SrcIP"):
        FlowFilter(fields=(("SrcIP", "10.0.0.1"),))  # the five have their own arguments
    # countries and the classifiers' classes as stored, as TopN and the console read them: "fr" and
    # "Cogent" matched nothing, "externl" said nothing
    f = FlowFilter.from_keys({"DstCountry": "fr", "InIfProvider": "Cogent", "OutIfBoundary": "Internal"})
    assert f.conditions()[1] == {
        "f_DstCountry": "FR",
        "f_InIfProvider": "cogent",
        "f_OutIfBoundary": "internal",
    }
    assert FlowFilter.from_keys({"SrcNetName": "Lab 2"}).conditions()[1] == {"f_SrcNetName": "Lab 2"}
    with pytest.raises(
        ValueError, match=r"InIfBoundary: 'externl' is not a boundary \(did you mean 'external'"
    ):
        FlowFilter.from_keys({"InIfBoundary": "externl"})


def _with_int_times(table: pa.Table) -> pa.Table:
    for name in ("StartTime", "EndTime"):
        i = table.schema.get_field_index(name)
        table = table.set_column(i, name, table.column(i).cast(pa.int64()))
    return table
