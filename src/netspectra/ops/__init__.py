"""Operations: Prometheus metrics, health/readiness endpoints and structured logs (``docs/operations.md``).

* :mod:`~netspectra.ops.collectors` — Prometheus collectors that read the existing counter objects
  (engine, NATS consumer, probe, persistence, alerter) at scrape time; nothing is counted twice;
* :mod:`~netspectra.ops.httpmetrics` — request counters and latency of the HTTP API;
* :mod:`~netspectra.ops.server` — the ops HTTP server (``/metrics``, ``/healthz``, ``/readyz``);
* :mod:`~netspectra.ops.endpoint` — one service's endpoint: registry, liveness, readiness checks;
* :mod:`~netspectra.ops.logs` — ``--log-format text|json``;
* :mod:`~netspectra.ops.options` — the ``--ops-listen`` option.

Importing the package imports none of them (the CLI reads :mod:`~netspectra.ops.logs` at every start).
"""
