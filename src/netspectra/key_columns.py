"""The values of key fields in a batch, what a task does when a batch lacks one, and their text.

:mod:`netspectra.fields` says what each key field is; this module reads it from a
:class:`~netspectra.batch.PacketBatch`:

* :func:`field_values` — the field's column (``(n,)`` integers, ``(n, 16)`` address bytes), or
  ``None`` when the batch does not carry it;
* :class:`MissingFields` — a task's account of rows whose batch lacked a key field: such rows are
  counted under the field's *unknown* value (0: no VLAN, no interface, AS 0, the empty text), which is
  what the exporters and the enrichment stage write for "unknown" too, so nothing is dropped and
  nothing invented. The task says so once per field in the log (naming what provides the column) and
  counts the rows (:attr:`MissingFields.rows`, in the task's ``counters()``);
* :func:`field_bytes` — the big-endian bytes of a field as a sketch key holds them;
* :func:`value_text` / :class:`Decoder` — how a value is shown: addresses as text, AS numbers as
  ``AS64500``, dictionary codes as their text with the batch's dictionary (``-`` for unknown).
"""

from __future__ import annotations

import ipaddress
import logging
import threading
from collections.abc import Mapping, Sequence

import numpy as np

from netspectra.fields import BY_NAME, KeyField

log = logging.getLogger(__name__)

#: What fills a field's column, for the message of a task whose batches lack it.
_PROVIDERS = {
    "vlan_id": "captures decode it (the probe and analyze do for a configuration that needs it); flow "
    "exports carry it",
    "exporter": "flow exports carry it (netspectra collect, analyze --flow-export)",
    "in_if": "flow exports carry it (netspectra collect, analyze --flow-export)",
    "out_if": "flow exports carry it (netspectra collect, analyze --flow-export)",
}
#: How an unknown dictionary value (code 0, empty text) is shown in flow text.
UNKNOWN_TEXT = "-"


def field_values(batch: object, name: str) -> np.ndarray | None:
    """Field ``name``'s values in ``batch`` (its column, or its dimension), ``None`` if absent."""
    f = BY_NAME[name]
    if f.source == "dim":
        dims = getattr(batch, "dims", None)
        return None if dims is None else dims.get(f.column)
    return getattr(batch, f.column)


def zeros_of(field: KeyField, n: int) -> np.ndarray:
    """``n`` unknown values of ``field``."""
    return np.zeros((n, 16) if field.is_ip else n, np.dtype(field.dtype))


class MissingFields:
    """Rows of batches that lacked a key field, per field, for one task (see the module docstring).

    Thread-safe (a sketch task encodes keys outside its lock)."""

    def __init__(self, task_name: str, kind: str) -> None:
        self.task_name = task_name
        self.kind = kind
        self.rows: dict[str, int] = {}
        self._lock = threading.Lock()

    def values(self, batch: object, name: str) -> np.ndarray:
        """Field ``name``'s values in ``batch``, or its unknown value for every row (counted, and said
        once per field)."""
        got = field_values(batch, name)
        if got is not None:
            return got
        n = len(batch)  # type: ignore[arg-type]
        with self._lock:
            first = name not in self.rows
            self.rows[name] = self.rows.get(name, 0) + n
        if first:
            f = BY_NAME[name]
            source = (
                "the enrichment stage fills it (enrichment.* in the configuration; docs/enrichment.md)"
                if f.source == "dim"
                else _PROVIDERS.get(f.column, "")
            )
            log.warning(
                "%s task %s keys on %s but its batches do not carry it: their rows are counted under "
                "%s %s (unknown; counted in the task's missing_key_rows); %s",
                self.kind,
                self.task_name,
                name,
                name,
                "0" if f.kind != "dict" else "'' (empty text)",
                source,
            )
        return zeros_of(BY_NAME[name], n)

    def as_dict(self) -> dict[str, int]:
        with self._lock:
            return dict(self.rows)


def field_bytes(values: np.ndarray, field: KeyField) -> np.ndarray:
    """The ``(n, key_bytes)`` uint8 bytes of ``values`` as a sketch key holds them: addresses as they
    are, integers and codes big-endian at the field's width."""
    if field.is_ip:
        return np.ascontiguousarray(values, np.uint8)
    be = np.ascontiguousarray(values, np.dtype(field.dtype).newbyteorder(">"))
    return be.view(np.uint8).reshape(-1, field.key_bytes)


_V4_PREFIX = b"\x00" * 10 + b"\xff\xff"


def ip_text(raw: bytes) -> str:
    """An address as NetSpectra writes it: IPv4 (also IPv4-mapped) dotted, IPv6 RFC 5952."""
    if raw[:12] == _V4_PREFIX:
        return f"{raw[12]}.{raw[13]}.{raw[14]}.{raw[15]}"
    return ipaddress.IPv6Address(raw).compressed


class Decoder:
    """Text of key values, with the newest dictionaries seen (codes of a dictionary column keep their
    meaning; dictionaries only grow, so the longest one decodes every earlier code)."""

    def __init__(self) -> None:
        self.dictionaries: dict[str, tuple[str, ...]] = {}
        self._lock = threading.Lock()

    def learn(self, dictionaries: Mapping[str, Sequence[str]] | None) -> None:
        """Keep the longer of the known and the given dictionary of every column."""
        if not dictionaries:
            return
        with self._lock:
            for name, words in dictionaries.items():
                if len(words) > len(self.dictionaries.get(name, ())):
                    self.dictionaries[name] = tuple(words)

    def snapshot(self) -> dict[str, tuple[str, ...]]:
        with self._lock:
            return dict(self.dictionaries)


def dict_text(code: int, words: Sequence[str]) -> str:
    """A dictionary code's text (``""`` for 0 and for a code the dictionary does not know yet)."""
    return words[code] if 0 <= code < len(words) else ""


def decode_codes(codes: np.ndarray, words: Sequence[str]) -> list[str]:
    """Text of each code of ``codes`` (see :func:`dict_text`)."""
    table = np.array(list(words) or [""], dtype=object)
    c = np.asarray(codes).astype(np.int64)
    known = (c >= 0) & (c < len(table))
    out = np.full(c.shape, "", dtype=object)
    out[known] = table[c[known]]
    return out.tolist()


def value_text(field: KeyField, value: int | bytes, dictionaries: Mapping[str, Sequence[str]]) -> str:
    """One value as flow text shows it: an address, ``AS64500``, a number, or a dictionary's text
    (:data:`UNKNOWN_TEXT` for an unknown one)."""
    if field.is_ip:
        return ip_text(bytes(value))  # type: ignore[arg-type]
    if field.kind == "dict":
        return dict_text(int(value), dictionaries.get(field.column, ())) or UNKNOWN_TEXT  # type: ignore[arg-type]
    return f"{field.text_prefix}{int(value)}"  # type: ignore[arg-type]
