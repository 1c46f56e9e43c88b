"""The words of the rollups: their dimensions, their time resolutions and the tables that hold them.

Light on purpose (no numpy): the configuration validates a rollup task's ``dimensions`` with it, and the
storage declares the rollup tables from it, without loading a kernel.

A **dimension** is a column a rollup row is keyed on. Every row of a batch has a value for each (0 or
``""`` when unknown); the rollup task keys its counters on the tuple of the values of its task's
dimensions and one time bucket:

* from the batch: ``Protocol``; for flow exports ``Exporter`` (the exporter's address), ``InIf`` and
  ``OutIf`` (interface indexes) — 0 / ``""`` for captures;
* from the enrichment stage: every column of :data:`netspectra.enrich.columns.COLUMNS` (``SrcAS``,
  ``DstCountry``, ``SrcNetName``, ``InIfBoundary``, ``ExporterName``, …) — unknown when the batch is not
  enriched (no ``enrichment`` section, or the column's source is not configured).

Addresses and ports are not dimensions: the rollups are for the long view (Akvorado's consolidated
tables drop them too); the full-resolution tables keep them.

A **resolution** is a bucket width with its table and its retention key (``clickhouse.<key>``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from netspectra.enrich.columns import COLUMNS


@dataclass(frozen=True, slots=True)
class Dimension:
    """One rollup dimension: ``name`` (the column name, Akvorado's), where its value comes from
    (``source``: a :class:`~netspectra.batch.PacketBatch` column, or ``"enrichment"``), its kind
    (``number``: an integer; ``text``: a dictionary code decoded to text; ``address``: 16 bytes, stored
    as IP text), its width in 32-bit row words, its ClickHouse type, one line of documentation and the
    width of its values in ``bits`` (its column type's: a rollup task packs values of at most 16 bits
    into shared key words, :mod:`netspectra.rollup.keyplan`)."""

    name: str
    source: str
    kind: str
    words: int
    clickhouse: str
    doc: str
    bits: int = 32

    @property
    def enriched(self) -> bool:
        return self.source == "enrichment"


_BATCH: tuple[Dimension, ...] = (
    Dimension("Protocol", "protocol", "number", 1, "UInt8", "IP protocol (6 TCP, 17 UDP, ...)", 8),
    Dimension("Exporter", "exporter", "address", 4, "String", "the flow exporter's address ('' if none)",
              128),
    Dimension("InIf", "in_if", "number", 1, "UInt32", "input interface index at the exporter (0: none)"),
    Dimension("OutIf", "out_if", "number", 1, "UInt32", "output interface index at the exporter (0: none)"),
)  # fmt: skip

_BITS = {"uint8": 8, "uint16": 16, "uint32": 32}

#: Every dimension, in column order: the batch's, then the enrichment's.
DIMENSIONS: tuple[Dimension, ...] = (
    *_BATCH,
    *(
        Dimension(
            c.name, "enrichment", "number" if c.kind == "number" else "text", 1,
            "UInt32" if c.kind == "number" else "String", c.doc, _BITS[c.dtype],
        )
        for c in COLUMNS
    ),
)  # fmt: skip
BY_NAME: dict[str, Dimension] = {d.name: d for d in DIMENSIONS}
NAMES: tuple[str, ...] = tuple(BY_NAME)


@dataclass(frozen=True, slots=True)
class Resolution:
    """A rollup resolution: its ``label`` (``1m``), bucket width, table and retention setting."""

    label: str
    seconds: int
    table: str
    retention_setting: str
    default_retention: timedelta

    @property
    def ns(self) -> int:
        return self.seconds * 1_000_000_000


#: The resolutions, finest first. Retention defaults: a week of minutes, 90 days of 5 minutes, two years
#: of hours (Akvorado's defaults are close: 15 days / 90 days / 5 years at 1m / 5m / 1h).
RESOLUTIONS: tuple[Resolution, ...] = (
    Resolution("1m", 60, "rollup_1m", "rollup_1m_retention", timedelta(hours=168)),
    Resolution("5m", 300, "rollup_5m", "rollup_5m_retention", timedelta(hours=2160)),
    Resolution("1h", 3600, "rollup_1h", "rollup_1h_retention", timedelta(hours=17520)),
)
RESOLUTION_BY_LABEL: dict[str, Resolution] = {r.label: r for r in RESOLUTIONS}


def parse_dimension(name: str) -> Dimension:
    """The dimension called ``name`` (case-sensitive); ``ValueError`` naming the valid ones otherwise."""
    dim = BY_NAME.get(name)
    if dim is None:
        from netspectra.kinds import did_you_mean

        hint = did_you_mean(name, NAMES)
        raise ValueError(f"{name!r} is not a rollup dimension{hint}; dimensions are {', '.join(NAMES)}")
    return dim
