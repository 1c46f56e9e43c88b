"""Flow-key field names, as the original's configuration spells them (``key_fields`` of a task).

A task's key is a *set* of fields: ``[DstIP, SrcIP]`` and ``[SrcIP, DstIP]`` count the same flows.
The configured order is kept only for display (the original joins key strings in config order, e.g.
``10.0.0.1-10.0.0.2-1234-80-6``). Names are case-sensitive, exactly as in the original.
"""

from __future__ import annotations

from collections.abc import Sequence

#: Every key field, in canonical order (the order of the columns of ``flow_metrics``).
FIELD_NAMES: tuple[str, ...] = ("SrcIP", "DstIP", "SrcPort", "DstPort", "Protocol")


def validate_key_fields(fields: Sequence[str]) -> tuple[str, ...]:
    """Return ``fields`` as a tuple in the configured order, or raise ``ValueError``.

    Contract: every name is one of :data:`FIELD_NAMES` (an unknown name is rejected once here, where
    the original logged an error for every packet), no name appears twice, and there is at least one.
    The message names the offending entry and lists the valid names.
    """
    if isinstance(fields, str | bytes):
        # A bare string would otherwise be iterated character by character.
        raise ValueError(f"key_fields must be a list of field names, got the string {fields!r}")
    out: list[str] = []
    for name in fields:
        if name not in FIELD_NAMES:
            hint = ""
            matches = [f for f in FIELD_NAMES if isinstance(name, str) and f.lower() == name.lower()]
            if matches:
                hint = f" (names are case-sensitive: did you mean {matches[0]!r}?)"
            raise ValueError(f"unknown key field {name!r}{hint}; valid fields: {', '.join(FIELD_NAMES)}")
        if name in out:
            raise ValueError(f"key field {name!r} is listed twice; valid fields: {', '.join(FIELD_NAMES)}")
        out.append(name)
    if not out:
        raise ValueError(f"key_fields is empty; name at least one of: {', '.join(FIELD_NAMES)}")
    return tuple(out)
