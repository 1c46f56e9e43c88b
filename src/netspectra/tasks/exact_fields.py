"""The key fields of an exact task beyond the five: packed into extra 64-bit key words per row.

The exact task's kernel keys the five packet fields in its own compact encoding
(:mod:`netspectra.tasks.exact_kernels`). Any other key field (``VlanID``, ``ExporterAddress``,
``InIf``, ``OutIf``, the enrichment columns) goes into *extra key words*: per batch, one
``(n, X)`` uint64 matrix built with a few numpy operations per field (:meth:`ExtraLayout.pack`), which
the kernel hashes, compares and stores after each row's own words. A task without such fields has no
extra words and runs the five-tuple kernel exactly as before.

Layout (:class:`ExtraLayout`): fields in canonical order (:data:`netspectra.fields.KEY_FIELDS`); an
address takes two whole words (its 16 bytes as two native words), an integer or a dictionary code is
packed into the current word at the next free bit offset when it fits (a word holds e.g. VlanID,
InIf and a 16-bit code: 16 + 32 + 16 bits), else starts the next word. ``SrcAS`` + ``DstAS`` take
one word, an exporter and both interfaces three.

A field the batch lacks is 0 in every row (:class:`~netspectra.key_columns.MissingFields` counts and
reports it). :meth:`ExtraLayout.unpack` turns a snapshot's words back into each field's values.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from netspectra.fields import BY_NAME, canonical
from netspectra.key_columns import MissingFields, field_values, zeros_of


@dataclass(frozen=True, slots=True)
class Slot:
    """Where one field lives in the extra words: ``word`` index; an integer at bit ``shift`` with
    ``bits`` bits, an address in words ``word`` and ``word + 1``."""

    name: str
    word: int
    shift: int
    bits: int


class ExtraLayout:
    """The extra key words of a set of fields (see the module docstring); ``fields`` are the task's
    key fields that are not packet fields (any order: the layout takes them in canonical order)."""

    def __init__(self, fields: Sequence[str]) -> None:
        slots: list[Slot] = []
        word, used = 0, 0
        for name in canonical(fields):
            f = BY_NAME[name]
            if f.is_packet_field:
                raise ValueError(f"{name} is a packet field: the exact task keys it in its own encoding")
            if f.is_ip:
                if used:
                    word, used = word + 1, 0
                slots.append(Slot(name, word, 0, 128))
                word += 2
                continue
            bits = 8 * f.key_bytes
            if used + bits > 64:
                word, used = word + 1, 0
            slots.append(Slot(name, word, used, bits))
            used += bits
        self.slots: tuple[Slot, ...] = tuple(slots)
        self.words: int = word + (1 if used else 0)
        self.fields: tuple[str, ...] = tuple(s.name for s in self.slots)

    def __repr__(self) -> str:
        return f"ExtraLayout({list(self.fields)}, words={self.words})"

    def pack(self, batch: object, missing: MissingFields | None = None) -> np.ndarray:
        """The ``(n, words)`` uint64 extra key words of every row of ``batch`` (C-contiguous)."""
        n = len(batch)  # type: ignore[arg-type]
        out = np.zeros((n, self.words), np.uint64)
        for s in self.slots:
            f = BY_NAME[s.name]
            values = missing.values(batch, s.name) if missing is not None else field_values(batch, s.name)
            if values is None:
                values = zeros_of(f, n)
            if f.is_ip:
                out[:, s.word : s.word + 2] = np.ascontiguousarray(values, np.uint8).view(np.uint64)
            elif s.shift == 0:
                out[:, s.word] |= values.astype(np.uint64)
            else:
                out[:, s.word] |= values.astype(np.uint64) << np.uint64(s.shift)
        return out

    def unpack(self, words: np.ndarray) -> dict[str, np.ndarray]:
        """Each field's values (addresses ``(m, 16)`` uint8, integers at their dtype) from ``(m, words)``
        extra key words."""
        out: dict[str, np.ndarray] = {}
        m = words.shape[0]
        for s in self.slots:
            f = BY_NAME[s.name]
            if f.is_ip:
                out[s.name] = (
                    np.ascontiguousarray(words[:, s.word : s.word + 2]).view(np.uint8).reshape(m, 16)
                )
            else:
                mask = np.uint64((1 << s.bits) - 1)
                out[s.name] = ((words[:, s.word] >> np.uint64(s.shift)) & mask).astype(np.dtype(f.dtype))
        return out
