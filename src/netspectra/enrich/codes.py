"""Dictionary encodings of the enrichment's string columns.

Every string column leaves enrichment as integer codes plus a dictionary (code -> text); code 0 is
always ``""`` (unknown). Two kinds of dictionary:

* **Fixed** — the same for every process and every release, so codes can be stored and compared
  across runs: the countries (:data:`COUNTRY_CODES`, every pair of letters ``AA`` .. ``ZZ`` at a
  computed position, so a code never depends on which database was loaded) and the interface boundary
  (:data:`BOUNDARIES`, Akvorado's order: ``""``, ``external``, ``internal``).
* **Append-only** (:class:`Dictionary`) — the values of the ``networks`` map and of the classifiers.
  Codes are handed out in order of first appearance and never change or disappear for the life of the
  object, so a batch enriched earlier still decodes with a later copy of the dictionary (a consumer
  keeps the longest copy it has seen).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence

import numpy as np

_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"

#: Country code -> text: 0 is unknown (``""``), then ``AA``, ``AB``, ... ``ZZ`` (677 entries).
COUNTRY_CODES: tuple[str, ...] = ("", *(a + b for a in _LETTERS for b in _LETTERS))
#: Highest country code (``ZZ``); codes fit in 10 bits.
MAX_COUNTRY_CODE = len(COUNTRY_CODES) - 1

#: Interface boundary code -> text (Akvorado's values, in its order).
BOUNDARIES: tuple[str, ...] = ("", "external", "internal")
BOUNDARY_EXTERNAL = 1
BOUNDARY_INTERNAL = 2


def country_code(text: object) -> int:
    """The code of an ISO 3166 alpha-2 country (``"FR"``, case-insensitive), or 0 when ``text`` is not
    two ASCII letters (empty, missing, a name, a three-letter code)."""
    if not isinstance(text, str) or len(text) != 2:
        return 0
    a, b = text.upper()
    if a not in _LETTERS or b not in _LETTERS:
        return 0
    return 1 + _LETTERS.index(a) * 26 + _LETTERS.index(b)


def country_text(codes: np.ndarray) -> np.ndarray:
    """Country codes as an object array of text (``""`` = unknown), for output and tests."""
    return np.asarray(COUNTRY_CODES, dtype=object)[np.asarray(codes, dtype=np.intp)]


class DictionaryFullError(ValueError):
    """A :class:`Dictionary` holds as many values as its code type can number."""


class Dictionary:
    """An append-only string dictionary: ``code(text)`` gives the same code for the same text forever.

    Code 0 is ``""``. ``capacity`` bounds the number of values (including ``""``): uint16 columns
    hold 65,536. Thread-safe: codes may be asked for from any thread.
    """

    def __init__(self, values: Iterable[str] = (), *, capacity: int = 1 << 16) -> None:
        self._lock = threading.Lock()
        self._values: list[str] = [""]
        self._codes: dict[str, int] = {"": 0}
        self.capacity = capacity
        for v in values:
            self.code(v)

    @classmethod
    def restored(cls, values: Sequence[str], *, capacity: int = 1 << 16) -> Dictionary:
        """The dictionary whose :meth:`values` were ``values`` (code order; ``""`` first, each once): the
        same codes, made at once instead of a :meth:`code` call per value. ``ValueError`` otherwise."""
        d = cls(capacity=capacity)
        codes = {v: c for c, v in enumerate(values)}
        if not values or values[0] != "" or len(codes) != len(values) or len(values) > capacity:
            raise ValueError("not the values of a dictionary: '' first, each value once, within capacity")
        d._values, d._codes = list(values), codes
        return d

    def code(self, text: str) -> int:
        """The code of ``text``, added if new; :class:`DictionaryFullError` when there is no room left."""
        c = self._codes.get(text)
        if c is not None:
            return c
        with self._lock:
            c = self._codes.get(text)
            if c is None:
                if len(self._values) >= self.capacity:
                    raise DictionaryFullError(
                        f"the dictionary already holds {self.capacity} values; {text!r} cannot be added"
                    )
                c = len(self._values)
                self._values.append(text)
                self._codes[text] = c
            return c

    def values(self) -> tuple[str, ...]:
        """Code -> text, as a tuple (a copy: later additions do not change it)."""
        with self._lock:
            return tuple(self._values)

    def __len__(self) -> int:
        return len(self._values)
