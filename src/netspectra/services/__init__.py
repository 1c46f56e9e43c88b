"""Services: the long-running parts of NetSpectra, each built from ``(config, options)``, and the
:class:`~netspectra.services.stack.Stack` that runs them (``docs/operations.md``).

==================  ===============================================  ==========================
service             what                                             commands
==================  ===============================================  ==========================
``probe``           source (replay, live ring) → NATS                ``probe``, ``up``
``engine``          NATS → manager → writers, alerter                ``engine``, ``up``
``collect``         NetFlow/IPFIX/sFlow exports (UDP) → NATS         ``collect``, ``up --collect``
``api``             query service (gRPC + HTTP) in the process       ``up`` (``api`` hosts its own)
``nats-server``     supervised ``nats-server`` child                 ``up``
==================  ===============================================  ==========================

The command-line modules only parse options, build services, run a stack and print its summary.
Adding a service: one module with a :class:`~.base.Service` subclass
(start/stop/done/ready/wire_ops/summary/report), one line in :data:`SERVICES`, and a command that
builds it and runs it in a :class:`~.stack.Stack` (or ``up`` adding it to its stack).

Names are imported on first use, so a command imports only the services it runs.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["SERVICES", "Service", "ServiceError", "Stack", "StackResult", "service_class"]

#: Service name -> ``module:class`` (imported on first use).
SERVICES: dict[str, str] = {
    "probe": "netspectra.services.probe:ProbeService",
    "engine": "netspectra.services.engine:EngineService",
    "collect": "netspectra.services.collect:CollectService",
    "api": "netspectra.services.api:ApiService",
    "nats-server": "netspectra.services.natsserver:NatsServerService",
}

_WHERE = {
    "Service": "netspectra.services.base",
    "ServiceError": "netspectra.services.base",
    "Stack": "netspectra.services.stack",
    "StackResult": "netspectra.services.stack",
}


def service_class(name: str) -> Any:
    """The class of service ``name`` (``KeyError`` listing the known names)."""
    try:
        where = SERVICES[name]
    except KeyError:
        raise KeyError(f"no service {name!r}; known: {', '.join(SERVICES)}") from None
    module, _, cls = where.partition(":")
    return getattr(importlib.import_module(module), cls)


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
