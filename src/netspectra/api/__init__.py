"""The query service: ``v1.QueryService`` over gRPC and an HTTP app (Grafana SimpleJSON, REST, OpenAPI).

Follow a query: :mod:`~netspectra.api.grpc_service` (:class:`QueryCore` holds the semantics and the
status codes; the servicer and the HTTP app in :mod:`~netspectra.api.http_app` are thin faces of it) →
:mod:`~netspectra.api.routing` (which store serves which task) → :mod:`netspectra.storage.queries`.
"""

from netspectra.api.grpc_service import QueryCore, QueryError, create_grpc_server
from netspectra.api.routing import StoreRouter

__all__ = ["QueryCore", "QueryError", "StoreRouter", "create_grpc_server"]
