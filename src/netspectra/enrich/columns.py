"""The columns the enrichment stage adds: names, types and dictionaries (the integration contract).

Names are Akvorado's. Numbers are integers with 0 = unknown; strings are dictionary-encoded: an integer
code per row plus a per-column dictionary (code -> text, code 0 = ``""`` = unknown). ``fixed``
dictionaries (countries, boundaries) never change; the others are append-only for the life of an
:class:`~netspectra.enrich.enricher.Enricher` (codes keep their meaning; later batches may use new ones).

This module is light (no numpy import at module level beyond dtypes by name) so storage and the key
fields can read the list without loading the kernels.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class EnrichColumn:
    """One output column: ``name``, numpy ``dtype`` name, ``kind`` (``"number"`` or ``"dict"``),
    ``dictionary`` (``"country"``, ``"boundary"`` — fixed — or the name of an append-only dictionary),
    ``needs`` (``"addresses"``, ``"exporter"`` or ``"interfaces"``: which inputs produce it) and the
    configuration that fills it (``source``)."""

    name: str
    dtype: str
    kind: str
    dictionary: str | None
    needs: str
    source: str
    doc: str


def _side(prefix: str, who: str) -> tuple[EnrichColumn, ...]:
    return (
        EnrichColumn(f"{prefix}AS", "uint32", "number", None, "addresses", "geoip.asn_database, networks.asn",
                     f"AS number of the {who} address"),
        EnrichColumn(f"{prefix}Country", "uint16", "dict", "country", "addresses",
                     "geoip.country_database, networks.country", f"ISO 3166 alpha-2 country of the {who}"),
        EnrichColumn(f"{prefix}NetName", "uint16", "dict", "name", "addresses", "networks.name",
                     f"name of the {who}'s network"),
        EnrichColumn(f"{prefix}NetRole", "uint16", "dict", "role", "addresses", "networks.role",
                     f"role of the {who}'s network"),
        EnrichColumn(f"{prefix}NetSite", "uint16", "dict", "site", "addresses", "networks.site",
                     f"site of the {who}'s network"),
        EnrichColumn(f"{prefix}NetRegion", "uint16", "dict", "region", "addresses", "networks.region",
                     f"region of the {who}'s network"),
        EnrichColumn(f"{prefix}NetTenant", "uint16", "dict", "tenant", "addresses", "networks.tenant",
                     f"tenant of the {who}'s network"),
    )  # fmt: skip


def _interface(prefix: str, which: str) -> tuple[EnrichColumn, ...]:
    rules = "classifiers.interfaces"
    return (
        EnrichColumn(f"{prefix}IfBoundary", "uint8", "dict", "boundary", "interfaces", rules,
                     f"{which} interface: external or internal"),
        EnrichColumn(f"{prefix}IfConnectivity", "uint16", "dict", "connectivity", "interfaces", rules,
                     f"{which} interface: transit, pni, ix, ..."),
        EnrichColumn(f"{prefix}IfProvider", "uint16", "dict", "provider", "interfaces", rules,
                     f"{which} interface: the provider behind it"),
    )  # fmt: skip


_EXPORTER = tuple(
    EnrichColumn(f"Exporter{attr.capitalize()}", "uint16", "dict", f"exporter_{attr}", "exporter", source,
                 f"the exporter's {attr}")
    for attr, source in (
        ("name", "exporters.<address>.name"),
        ("group", "classifiers.exporters"),
        ("role", "classifiers.exporters"),
        ("site", "classifiers.exporters"),
        ("region", "classifiers.exporters"),
        ("tenant", "classifiers.exporters"),
    )
)  # fmt: skip

#: Every column, in output order.
COLUMNS: tuple[EnrichColumn, ...] = (
    *_side("Src", "source"),
    *_side("Dst", "destination"),
    *_interface("In", "input"),
    *_interface("Out", "output"),
    *_EXPORTER,
)
BY_NAME: dict[str, EnrichColumn] = {c.name: c for c in COLUMNS}

#: The columns of each address side, in output order.
SIDE_COLUMNS: dict[str, tuple[str, ...]] = {
    side: tuple(c.name for c in COLUMNS if c.needs == "addresses" and c.name.startswith(side))
    for side in ("Src", "Dst")
}
#: Per side, the name of its *side code* column (uint64, not a dimension of its own: every column of
#: the side is a function of it, see :func:`netspectra.enrich.kernels.side_code`), which the enrichment
#: stage adds for the rollup tasks that key on it (:mod:`netspectra.rollup.codes`).
SIDE_CODES: dict[str, str] = {"Src": "SrcCode", "Dst": "DstCode"}
