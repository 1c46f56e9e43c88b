"""Key fields: the names a task keys on, where each is read from, its width, kind and how it is shown.

This is the one list of key fields. Everything that names fields — the configuration's validation,
the exact task's keys, the sketches' key encoding, the shard hash, the storage schema, the query
layer and the output tables — reads it from here.

Names are spelt as the original's configuration spells them and are case-sensitive (``SrcIP``, not
``srcip``). A task's key is a *set* of fields for the exact task (``[DstIP, SrcIP]`` counts the same
flows as ``[SrcIP, DstIP]``) and an ordered byte string for the sketches (the original's encoding).

Three groups, in canonical order (the order of the key columns of ``flow_metrics``):

* the **packet** fields, the original's five (:data:`PACKET_FIELDS`): required columns of every batch;
* the **record** fields: ``VlanID`` (the outermost VLAN tag of a packet, the VLAN of an export record),
  ``ExporterAddress``, ``InIf``, ``OutIf`` — optional batch columns, filled by flow exports (and VLAN
  by captures that decode it);
* the **enrichment** columns (:data:`netspectra.enrich.columns.COLUMNS`: ``SrcAS``, ``DstCountry``,
  ``InIfBoundary``, ``ExporterName``, …), carried in ``PacketBatch.dims``: AS numbers as integers,
  the others as dictionary codes whose text the batch's ``dictionaries`` give.

A batch that lacks a field's column (``InIf`` of a captured packet, ``SrcAS`` without enrichment) gives
every row the field's *unknown* value (0, which is also what an exporter or the enrichment stage writes
for "unknown"); a task says so once in the log and counts those rows (:mod:`netspectra.key_columns`).

This module is light (no numpy): the configuration reads it without loading the kernels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from netspectra.enrich.columns import COLUMNS as ENRICH_COLUMNS
from netspectra.kinds import did_you_mean

#: Where a field's values come from: a required batch column, an optional one, or ``batch.dims``.
SOURCES = ("column", "optional", "dim")
#: What a field's values are: a 16-byte address, an unsigned integer, or a dictionary code.
KINDS = ("ip", "int", "dict")


@dataclass(frozen=True, slots=True)
class KeyField:
    """One key field.

    ``name``: the configuration's name and the column of ``flow_metrics``. ``source`` and ``column``:
    where a batch holds it (``PacketBatch.<column>``, or ``batch.dims[column]``). ``key_bytes``: its
    width in a sketch's fixed-width key (addresses 16 bytes with IPv4 mapped into IPv6, integers and
    codes big-endian at the width of their column). ``kind``: ``ip``, ``int`` or ``dict`` (a code decoded
    to text with the batch's dictionary of ``column``). ``dtype``: numpy dtype name of one value
    (``uint8`` for the 16 bytes of an address). ``clickhouse``: the type of its ``flow_metrics`` column
    inside ``Nullable`` (addresses and dictionary text as ``String``). ``text_prefix``: shown before an
    integer in flow text (``AS`` of an AS number).
    """

    name: str
    source: str
    column: str
    key_bytes: int
    kind: str = "int"
    dtype: str = "uint8"
    clickhouse: str = "UInt8"
    text_prefix: str = ""
    doc: str = ""

    @property
    def is_ip(self) -> bool:
        return self.kind == "ip"

    @property
    def is_packet_field(self) -> bool:
        """One of the original five: read from a required column of every batch."""
        return self.source == "column"

    @property
    def arrow_type(self) -> str:
        """The pyarrow type name of its output column (``string`` for addresses and dictionary text)."""
        return "string" if self.kind in ("ip", "dict") else self.dtype


def _enrichment(col: object) -> KeyField:
    name, dtype, kind = col.name, col.dtype, col.kind  # type: ignore[attr-defined]
    width = {"uint8": 1, "uint16": 2, "uint32": 4, "uint64": 8}[dtype]
    if kind == "dict":
        return KeyField(name, "dim", name, width, "dict", dtype, "String", doc=col.doc)  # type: ignore[attr-defined]
    ch = {"uint8": "UInt8", "uint16": "UInt16", "uint32": "UInt32", "uint64": "UInt64"}[dtype]
    prefix = "AS" if name.endswith("AS") else ""
    return KeyField(name, "dim", name, width, "int", dtype, ch, prefix, col.doc)  # type: ignore[attr-defined]


#: Every key field, in canonical order (the order of the key columns of ``flow_metrics``).
KEY_FIELDS: tuple[KeyField, ...] = (
    KeyField("SrcIP", "column", "src_ip", 16, "ip", "uint8", "String", doc="source address (outer IP)"),
    KeyField("DstIP", "column", "dst_ip", 16, "ip", "uint8", "String", doc="destination address"),
    KeyField("SrcPort", "column", "src_port", 2, "int", "uint16", "UInt16", doc="source port"),
    KeyField("DstPort", "column", "dst_port", 2, "int", "uint16", "UInt16", doc="destination port"),
    KeyField("Protocol", "column", "protocol", 1, "int", "uint8", "UInt8", doc="IP protocol"),
    KeyField("VlanID", "optional", "vlan_id", 2, "int", "uint16", "UInt16", doc="outermost VLAN id"),
    KeyField("ExporterAddress", "optional", "exporter", 16, "ip", "uint8", "String",
             doc="address of the exporter that sent the record"),
    KeyField("InIf", "optional", "in_if", 4, "int", "uint32", "UInt32", doc="input interface index"),
    KeyField("OutIf", "optional", "out_if", 4, "int", "uint32", "UInt32", doc="output interface index"),
    *(_enrichment(c) for c in ENRICH_COLUMNS),
)  # fmt: skip
#: Field names in canonical order.
FIELD_NAMES: tuple[str, ...] = tuple(f.name for f in KEY_FIELDS)
#: The original's five, read from the required columns of every batch (the exact task's fast path,
#: the shard hash).
PACKET_FIELDS: tuple[str, ...] = tuple(f.name for f in KEY_FIELDS if f.is_packet_field)
#: Field name -> its width in a fixed-width key.
FIELD_BYTES: dict[str, int] = {f.name: f.key_bytes for f in KEY_FIELDS}
#: Field name -> :class:`KeyField`.
BY_NAME: dict[str, KeyField] = {f.name: f for f in KEY_FIELDS}
#: The attributes of a task entry that list key fields (exact: ``key_fields``; sketch: ``flow_fields``
#: and ``element_fields``).
KEY_FIELD_LISTS: tuple[str, ...] = ("key_fields", "flow_fields", "element_fields")


def _valid_list() -> str:
    return f"{', '.join(PACKET_FIELDS)}, VlanID, ExporterAddress, InIf, OutIf and the enrichment columns " + (
        ", ".join(c.name for c in ENRICH_COLUMNS)
    )


def field_error(name: object) -> str:
    """The message for a name that is not a key field: the name, a did-you-mean hint, the valid names."""
    hint = did_you_mean(name, FIELD_NAMES)
    return f"{name!r} is not a key field{hint}; valid fields are {_valid_list()}"


def validate_fields(
    fields: Sequence[str], what: str = "key_fields", *, required: bool = True
) -> tuple[str, ...]:
    """``fields`` as a tuple in the given order, or ``ValueError`` naming ``what`` and the problem.

    Contract: ``fields`` is a sequence (a bare string is refused: it would otherwise be taken character
    by character), every entry is a key field (case-sensitive, as the original — which silently gave an
    unknown field 0 bytes), none is listed twice, and when ``required`` there is at least one.
    """
    if isinstance(fields, str | bytes):
        raise ValueError(f"{what} must be a list of field names, got the string {fields!r}")
    out: list[str] = []
    for name in fields:
        if name not in BY_NAME:
            hint = did_you_mean(name, FIELD_NAMES)
            raise ValueError(f"{what}: unknown field {name!r}{hint}; valid fields: {_valid_list()}")
        if name in out:
            raise ValueError(f"{what}: field {name!r} is listed twice")
        out.append(name)
    if required and not out:
        raise ValueError(f"{what} is empty; name at least one of: {', '.join(FIELD_NAMES)}")
    return tuple(out)


def key_length(fields: Sequence[str]) -> int:
    """Bytes of the fixed-width key built from ``fields``."""
    return sum(FIELD_BYTES[f] for f in validate_fields(fields, required=False))


def canonical(fields: Sequence[str]) -> tuple[str, ...]:
    """``fields`` in canonical order (the order of :data:`KEY_FIELDS`)."""
    chosen = set(fields)
    return tuple(f for f in FIELD_NAMES if f in chosen)
