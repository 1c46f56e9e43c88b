"""Key fields: the names a task keys on, the batch column each comes from and its width in a key.

This is the one list of key fields. Everything that names fields — the configuration's validation,
the exact task's masks, the sketches' key encoding, the shard hash, the storage schema, the query
layer and the output tables — reads it from here.

Names are spelt as the original's configuration spells them and are case-sensitive (``SrcIP``, not
``srcip``). A task's key is a *set* of fields for the exact task (``[DstIP, SrcIP]`` counts the same
flows as ``[SrcIP, DstIP]``) and an ordered byte string for the sketches (the original's encoding).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from netspectra.kinds import did_you_mean


@dataclass(frozen=True, slots=True)
class KeyField:
    """One key field: its configuration ``name``, the :class:`~netspectra.batch.PacketBatch` ``column``
    it is read from, and ``key_bytes``, its width in a sketch's fixed-width key (IPs 16 bytes with IPv4
    mapped into IPv6, ports 2 bytes big-endian, the protocol 1 byte)."""

    name: str
    column: str
    key_bytes: int
    is_ip: bool = False


#: Every key field, in canonical order (the order of the columns of ``flow_metrics``).
KEY_FIELDS: tuple[KeyField, ...] = (
    KeyField("SrcIP", "src_ip", 16, is_ip=True),
    KeyField("DstIP", "dst_ip", 16, is_ip=True),
    KeyField("SrcPort", "src_port", 2),
    KeyField("DstPort", "dst_port", 2),
    KeyField("Protocol", "protocol", 1),
)
#: Field names in canonical order.
FIELD_NAMES: tuple[str, ...] = tuple(f.name for f in KEY_FIELDS)
#: Field name -> its width in a fixed-width key.
FIELD_BYTES: dict[str, int] = {f.name: f.key_bytes for f in KEY_FIELDS}
#: Field name -> :class:`KeyField`.
BY_NAME: dict[str, KeyField] = {f.name: f for f in KEY_FIELDS}


def field_error(name: object) -> str:
    """The message for a name that is not a key field: the name, a did-you-mean hint, the valid names."""
    hint = did_you_mean(name, FIELD_NAMES)
    return f"{name!r} is not a key field{hint}; valid fields are {', '.join(FIELD_NAMES)}"


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
            raise ValueError(f"{what}: unknown field {name!r}{hint}; valid fields: {', '.join(FIELD_NAMES)}")
        if name in out:
            raise ValueError(f"{what}: field {name!r} is listed twice")
        out.append(name)
    if required and not out:
        raise ValueError(f"{what} is empty; name at least one of: {', '.join(FIELD_NAMES)}")
    return tuple(out)


def key_length(fields: Sequence[str]) -> int:
    """Bytes of the fixed-width key built from ``fields``."""
    return sum(FIELD_BYTES[f] for f in validate_fields(fields, required=False))
