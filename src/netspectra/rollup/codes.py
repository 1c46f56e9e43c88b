"""Codes a rollup task keys on in place of wide dimension values, so that an entry stays one cache line.

Two kinds, each a bijection on what the task keys on (the tables hold exactly the entries they would
hold keyed on the values: same tuples, counters, closes, epochs); the rows and the summary are decoded
back to the values (:func:`~netspectra.rollup.kernels.decode_words`), so nothing handed out changes.

* **Flow tuple** (:class:`TupleDictionary`): a task that names ``Exporter``, ``InIf`` or ``OutIf`` keys
  on one 32-bit code per distinct ``(Protocol, Exporter, InIf, OutIf)`` tuple (the dimensions it does
  not name held at 0) instead of up to seven words: codes are given in order of first appearance and
  kept for the task's life (a tuple's code never changes; the dictionary holds the distinct tuples seen,
  16 to 40 bytes each: a handful for a capture, the exporters' interface pairs for flow exports).
* **Side codes** (:class:`SideKey`): the columns of an address side (``SrcAS``, ``SrcCountry``,
  ``SrcNet*``) are all functions of its side code (:func:`netspectra.enrich.kernels.side_code`: AS number,
  country and *network class*, :mod:`netspectra.enrich.networks`), which the enrichment stage hands over
  as one column (``SrcCode``/``DstCode``). A task keys on the code's high word (the AS number, when it
  names ``SrcAS``) and low word (country and class, when it names the country or an attribute), the
  parts it does not name masked out and the class mapped to the class of the attributes it names (two
  classes that differ only in attributes the task does not name are one entry). The classes are the
  configuration's (``networks``): a reload of a database changes neither them nor what they mean.

An auto task of both sides and the flow dimensions is then 5 key words (one cache line with the
counters, :mod:`netspectra.rollup.layout`) instead of 15 (two).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from netspectra.rollup import kernels as kern

#: The dimensions a flow-tuple code stands for, with their words in a tuple (``Exporter``: 4).
TUPLE_WORDS: dict[str, tuple[int, ...]] = {
    "Protocol": (0,),
    "Exporter": (1, 2, 3, 4),
    "InIf": (5,),
    "OutIf": (6,),
}
#: The dimensions whose presence makes a task key on flow-tuple codes (``Protocol`` alone packs in 8 bits).
TUPLE_TRIGGERS = ("Exporter", "InIf", "OutIf")
#: The network attributes in the order of ``class_attr``'s rows (netspectra.enrich.networks).
NET_DIMS = ("NetName", "NetRole", "NetSite", "NetRegion", "NetTenant")
#: A side code's country field (netspectra.enrich.kernels: bits 22..31) and class field (bits 0..20).
CC_SHIFT = 22
CC_MASK = 0x3FF
CLASS_MASK = (1 << 21) - 1


class TupleDictionary:
    """Flow tuples -> codes (see the module docstring): ``tuples[code]`` holds a code's seven words, an
    open-addressing ``index`` (code + 1 per slot, 0 empty) finds them; doubled when half full."""

    WORDS = 7

    def __init__(self, cap: int = 64) -> None:
        self.meta = np.zeros(1, np.int64)
        self._alloc(cap, np.zeros((0, self.WORDS), np.uint32))

    def _alloc(self, cap: int, held: np.ndarray) -> None:
        # filled first, then swapped in: a reader of the tuples (a summary's top values) never sees them
        # half made
        index = np.zeros(cap, np.int64)
        tuples = np.zeros((cap // 2, self.WORDS), np.uint32)
        meta = np.zeros(1, np.int64)
        if held.shape[0]:
            # the held tuples again, in code order: each gets its code back (order of first appearance)
            codes = np.empty((held.shape[0], 1), np.uint32)
            got = kern.intern_tuples(
                0, held[:, 0].astype(np.uint8), np.ascontiguousarray(held[:, 1:5]), held[:, 5].copy(),
                held[:, 6].copy(), tuples, index, meta, codes, 0,
            )  # fmt: skip
            assert got == held.shape[0]
            assert np.array_equal(codes[:, 0], np.arange(held.shape[0], dtype=np.uint32))
        self.tuples, self.index = tuples, index
        self.meta[0] = meta[0]

    def __len__(self) -> int:
        return int(self.meta[0])

    @property
    def nbytes(self) -> int:
        return self.index.nbytes + self.tuples.nbytes

    def code(
        self,
        protocol: np.ndarray,
        exporter: np.ndarray,
        in_if: np.ndarray,
        out_if: np.ndarray,
        out: np.ndarray,
        col: int,
    ) -> None:
        """The codes of ``out.shape[0]`` rows into ``out[:, col]`` (uint32, the rows' key words); an input
        of no rows is 0 in every row (``exporter``: ``(n, 4)`` uint32 words)."""
        i = 0
        while True:
            i = kern.intern_tuples(
                i, protocol, exporter, in_if, out_if, self.tuples, self.index, self.meta, out, col
            )
            if i >= out.shape[0]:
                return
            self._alloc(self.index.shape[0] * 2, self.tuples[: len(self)].copy())


@dataclass(frozen=True)
class SideKey:
    """How a task keys on one side's codes: the dimensions it names of the side (``names``, in the
    task's order), whether it keys the AS word (``hi``) and the low word (``lo``: country and class),
    whether it keeps the country, the class projection (``proj``: class -> class of the named attributes;
    empty: every attribute is named, the class itself) and the attribute codes of each (projected)
    class (``class_attr``: (5, classes) uint16, rows of unnamed attributes 0)."""

    side: str
    names: tuple[str, ...]
    hi: bool
    lo: bool
    keep_cc: bool
    proj: np.ndarray
    class_attr: np.ndarray
    classes: int  # the configuration's classes: a code's class must be below it

    @staticmethod
    def of(side: str, names: tuple[str, ...], class_attr: np.ndarray) -> SideKey:
        """The key of ``side`` for a task naming ``names`` of its columns, under the configuration's
        classes ``class_attr`` ((5, k) uint16:
        :attr:`netspectra.enrich.networks.CompiledNetworks.class_attr`)."""
        from netspectra.enrich.networks import network_classes

        named = [j for j, a in enumerate(NET_DIMS) if f"{side}{a}" in names]
        k = class_attr.shape[1]
        if len(named) == len(NET_DIMS):
            proj, table = np.empty(0, np.uint32), np.ascontiguousarray(class_attr, np.uint16)
        else:  # classes that differ only in attributes the task does not name are one
            proj, kept = network_classes(np.ascontiguousarray(class_attr[named], np.uint16))
            table = np.zeros((len(NET_DIMS), kept.shape[1]), np.uint16)
            table[named] = kept
        return SideKey(
            side,
            names,
            hi=f"{side}AS" in names,
            lo=f"{side}Country" in names or bool(named),
            keep_cc=f"{side}Country" in names,
            proj=proj,
            class_attr=table,
            classes=k,
        )
