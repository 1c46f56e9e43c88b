"""Enrichment: the words operators use (AS, country, network names, interface classes) for every row.

* :mod:`netspectra.config.enrichment` (outside this package, beside the other sections) — the
  ``enrichment`` configuration;
* :mod:`~netspectra.enrich.expr` — the classifier rule language (a safe subset of Akvorado's);
* :mod:`~netspectra.enrich.columns` — the output columns, their types and dictionaries;
* :mod:`~netspectra.enrich.codes` — country and boundary codes, append-only dictionaries;
* :mod:`~netspectra.enrich.mmdb` — MMDB databases loaded with ``maxminddb`` into step functions;
* :mod:`~netspectra.enrich.networks` — the ``networks`` map compiled the same way;
* :mod:`~netspectra.enrich.table` — step functions, their merge and bucket index (the lookup table);
* :mod:`~netspectra.enrich.kernels` — the numba lookup kernel (and its plain-Python reference);
* :mod:`~netspectra.enrich.classify` — exporter and interface classification, cached per pair;
* :mod:`~netspectra.enrich.enricher` — :class:`Enricher`, the stage (reloads, counters).

Names are re-exported lazily: importing the configuration does not load numpy, numba or maxminddb.
"""

from netspectra.lazy import lazy_exports

__all__ = ["COLUMNS", "EnrichedBatch", "Enricher", "EnrichmentConfig"]

__getattr__ = lazy_exports(
    __name__,
    {
        "COLUMNS": "netspectra.enrich.columns",
        "EnrichedBatch": "netspectra.enrich.enricher",
        "Enricher": "netspectra.enrich.enricher",
        "EnrichmentConfig": "netspectra.config.enrichment",
    },
)
