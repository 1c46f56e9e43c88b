"""Bearer tokens and TLS of the network services (``netspectra api``, ``netspectra ai``) and their clients.

Server side: :meth:`ServiceSecurity.load` turns the ``<section>.auth`` / ``<section>.tls`` configuration
(:class:`~netspectra.config.models.AuthConfig`, :class:`~netspectra.config.models.TlsConfig`), the token
files they name and the environment (:data:`ENV_TOKENS`) into what the servers use: a :class:`TokenSet`
and the PEM files (:class:`TlsFiles`), every file read and checked once, at start-up. Problems raise
:class:`SecurityConfigError` naming the key (or variable) and the fix.

Contracts:

* **Scopes.** :attr:`Scope.READ` (every query) and :attr:`Scope.ADMIN` (read + the admin endpoints).
  Which endpoint needs which is decided by each service (:mod:`netspectra.rpc` for gRPC,
  :mod:`netspectra.api.http_app` for HTTP); health checks need none.
* **No token configured = no authentication** (the services log a warning when they listen on a
  non-loopback address that way).
* **Comparison is constant-time**: a presented token is hashed and compared with every configured
  token's hash by :func:`hmac.compare_digest`, without an early exit, so the time taken says nothing
  about which token (or how much of one) matched.
* **Tokens never appear in logs, errors or ``repr``**; failures are logged without the token and at
  most once per :data:`AUTH_LOG_INTERVAL_S` (with the count of those suppressed).

Client side: :class:`ClientSecurity` (a token and TLS files for ``netspectra query``, ``ask-ai`` and
the alerter's AI client) opens gRPC channels that send ``authorization: Bearer <token>``.
"""

from __future__ import annotations

import collections
import hashlib
import hmac
import ipaddress
import logging
import os
import ssl
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path
from typing import Any

import grpc

log = logging.getLogger(__name__)

#: Environment variables whose tokens are added to the configured ones, per service section:
#: ``(read, admin)``; each holds tokens separated by commas or white space.
ENV_TOKENS: dict[str, tuple[str, str]] = {
    "api": ("NETSPECTRA_API_TOKENS", "NETSPECTRA_API_ADMIN_TOKENS"),
    "ai": ("NETSPECTRA_AI_TOKENS", "NETSPECTRA_AI_ADMIN_TOKENS"),
}
#: Failed authentications are logged at most once per this many seconds (with a count of the rest).
AUTH_LOG_INTERVAL_S = 10.0


class SecurityConfigError(ValueError):
    """Tokens or TLS files cannot be used; the message names the key or variable and the fix."""


class Scope(IntEnum):
    """What a token may do; a higher scope includes the lower ones."""

    READ = 1
    ADMIN = 2


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


class TokenSet:
    """The accepted tokens and their scopes. Falsy when empty (= no authentication).

    :meth:`scope_of` takes the same time whichever token is presented (see the module docstring).
    """

    def __init__(self, read: Iterable[str] = (), admin: Iterable[str] = ()) -> None:
        entries: dict[bytes, Scope] = {}
        for token in read:
            entries.setdefault(_digest(token), Scope.READ)
        for token in admin:
            entries[_digest(token)] = Scope.ADMIN
        self._entries = tuple(entries.items())

    def __bool__(self) -> bool:
        return bool(self._entries)

    def __repr__(self) -> str:
        n_admin = sum(1 for _, s in self._entries if s is Scope.ADMIN)
        return f"TokenSet({len(self._entries) - n_admin} read, {n_admin} admin)"

    def counts(self) -> tuple[int, int]:
        """``(read tokens, admin tokens)``."""
        n_admin = sum(1 for _, s in self._entries if s is Scope.ADMIN)
        return len(self._entries) - n_admin, n_admin

    def scope_of(self, token: str | None) -> Scope | None:
        """The scope of ``token``; ``None`` when it is missing or not one of ours."""
        if not token:
            return None
        presented = _digest(token)
        found: Scope | None = None
        for digest, scope in self._entries:  # no early exit: constant time in the matching position
            if hmac.compare_digest(presented, digest):
                found = scope
        return found


class RefusalLog:
    """Logs refused calls: one :class:`~netspectra.engine.metrics.RateLimitedLog` per reason (no token,
    an invalid token, a read token on an admin method), so that a flood of one kind hides no other."""

    def __init__(self, logger: logging.Logger, interval_s: float = AUTH_LOG_INTERVAL_S) -> None:
        self._logger = logger
        self._interval = interval_s
        self._by_reason: dict[str, Any] = {}

    def refused(self, what: str, peer: str, reason: str) -> None:
        """Log ``<what> from <peer> refused: <reason>`` (never a token)."""
        from netspectra.engine.metrics import RateLimitedLog

        limited = self._by_reason.get(reason)
        if limited is None:
            limited = self._by_reason.setdefault(reason, RateLimitedLog(self._logger, self._interval))
        limited.log(logging.WARNING, "%s from %s refused: %s", what, peer, reason)


def bearer_token(value: str | None) -> str | None:
    """The token of an ``Authorization`` value ``Bearer <token>`` (scheme case-insensitive), else ``None``."""
    if not value:
        return None
    scheme, _, token = value.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


@dataclass(frozen=True)
class TlsFiles:
    """The PEM files of a TLS server, read at start-up: certificate chain, key, and for mutual TLS the
    CAs that sign client certificates. ``repr`` never shows the key."""

    cert_file: str
    key_file: str
    client_ca_file: str
    cert_chain: bytes = field(repr=False)
    private_key: bytes = field(repr=False)
    client_ca: bytes | None = field(repr=False, default=None)

    @property
    def mutual(self) -> bool:
        return self.client_ca is not None


@dataclass(frozen=True)
class ServiceSecurity:
    """Tokens and TLS of one service; both empty = plain text, no authentication."""

    tokens: TokenSet = field(default_factory=TokenSet)
    tls: TlsFiles | None = None

    @classmethod
    def load(cls, auth: Any, tls: Any, section: str, env: Mapping[str, str] | None = None) -> ServiceSecurity:
        """From ``<section>.auth`` and ``<section>.tls`` (``section`` is ``api`` or ``ai``): the configured
        tokens, those of ``*_file`` and of the :data:`ENV_TOKENS` variables; the TLS files read and
        checked. :class:`SecurityConfigError` names the key and the fix."""
        env = os.environ if env is None else env
        read, admin = list(auth.tokens), list(auth.admin_tokens)
        read += _token_file(auth.tokens_file, f"{section}.auth.tokens_file")
        admin += _token_file(auth.admin_tokens_file, f"{section}.auth.admin_tokens_file")
        read_var, admin_var = ENV_TOKENS[section]
        read += _env_tokens(env, read_var)
        admin += _env_tokens(env, admin_var)
        both = set(read) & set(admin)
        if both:
            raise SecurityConfigError(
                f"{section}.auth: {len(both)} token(s) have both the read and the admin scope (from the "
                f"configuration, its files or {read_var}/{admin_var}); give each token one scope"
            )
        return cls(TokenSet(read, admin), _tls_files(tls, section) if tls.enabled else None)

    def describe(self) -> str:
        """One line for the start-up log (no secrets)."""
        parts = []
        if self.tls is None:
            parts.append("plain text")
        else:
            parts.append("TLS" + (" with client certificates (mutual TLS)" if self.tls.mutual else ""))
        n_read, n_admin = self.tokens.counts()
        parts.append(f"{n_read} read and {n_admin} admin token(s)" if self.tokens else "no authentication")
        return ", ".join(parts)


def _tokens_from_text(text: str, where: str) -> list[str]:
    from netspectra.config.models import _token_list

    try:
        return list(_token_list(text))
    except ValueError as exc:
        raise SecurityConfigError(f"{where}: {exc}") from None


def _env_tokens(env: Mapping[str, str], name: str) -> list[str]:
    return _tokens_from_text(env.get(name, ""), f"environment variable {name}")


def _read(path: str, key: str, what: str) -> bytes:
    p = Path(path).expanduser()
    try:
        return p.read_bytes()
    except FileNotFoundError:
        raise SecurityConfigError(f"{key}: {path} does not exist; give the path of {what}") from None
    except IsADirectoryError:
        raise SecurityConfigError(f"{key}: {path} is a directory; give the path of {what}") from None
    except OSError as exc:
        raise SecurityConfigError(
            f"{key}: cannot read {path} ({exc.strerror}); give a readable {what}"
        ) from None


def _token_file(path: str, key: str) -> list[str]:
    """Tokens of a file: one per line, ``#`` comments and blank lines ignored."""
    if not path.strip():
        return []
    raw = _read(path.strip(), key, "a file with one token per line")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise SecurityConfigError(f"{key}: {path} is not UTF-8 text; write one token per line") from None
    lines = [line.split("#", 1)[0].strip() for line in text.splitlines()]
    tokens = []
    for n, line in enumerate(lines, 1):
        if line:
            tokens += _tokens_from_text(line, f"{key} ({path}, line {n})")
    if not tokens:
        raise SecurityConfigError(f"{key}: {path} holds no token; write one token per line")
    return tokens


def _tls_files(tls: Any, section: str) -> TlsFiles:
    key_cert, key_key, key_ca = (f"{section}.tls.{k}" for k in ("cert_file", "key_file", "client_ca_file"))
    cert_file, key_file, ca_file = tls.cert_file.strip(), tls.key_file.strip(), tls.client_ca_file.strip()
    chain = _read(cert_file, key_cert, "the PEM certificate chain of the server (leaf first)")
    key = _read(key_file, key_key, "the PEM private key of the certificate")
    ca = _read(ca_file, key_ca, "the PEM CA certificates that sign client certificates") if ca_file else None
    # check now what the servers would find later (and report it with the keys that name the files)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        ctx.load_cert_chain(str(Path(cert_file).expanduser()), str(Path(key_file).expanduser()))
    except ssl.SSLError as exc:
        raise SecurityConfigError(
            f"{key_cert} / {key_key}: the certificate and key cannot be used together ({exc.reason or exc}); "
            "give a PEM certificate chain and the PEM private key of its first certificate"
        ) from None
    if ca is not None:
        try:
            ctx.load_verify_locations(cafile=str(Path(ca_file).expanduser()))
        except ssl.SSLError as exc:
            raise SecurityConfigError(
                f"{key_ca}: {ca_file} holds no usable CA certificate ({exc.reason or exc}); give PEM "
                "CA certificates"
            ) from None
    return TlsFiles(cert_file, key_file, ca_file, chain, key, ca)


def is_loopback_host(host: str) -> bool:
    """Whether ``host`` (a name or an address) can only be reached from this machine."""
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# --------------------------------------------------------------------------------------------------
# client side
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClientSecurity:
    """What a client sends and trusts: a bearer token (``repr`` hides it) and TLS.

    ``tls`` with an empty ``ca_file`` trusts the system's CAs; ``cert_file`` + ``key_file`` present a
    client certificate (mutual TLS). A ``ca_file`` or client certificate implies ``tls``.
    """

    token: str = field(default="", repr=False)
    tls: bool = False
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""

    @property
    def uses_tls(self) -> bool:
        return self.tls or bool(self.ca_file or self.cert_file)

    @classmethod
    def from_env(cls, prefix: str, env: Mapping[str, str] | None = None) -> ClientSecurity:
        """From ``<prefix>_TOKEN``, ``<prefix>_CA_FILE``, ``<prefix>_CERT_FILE``, ``<prefix>_KEY_FILE`` and
        ``<prefix>_TLS`` (``1``/``true``), e.g. prefix ``NETSPECTRA_AI`` for the alerter's AI client."""
        env = os.environ if env is None else env
        return cls(
            token=env.get(f"{prefix}_TOKEN", "").strip(),
            tls=env.get(f"{prefix}_TLS", "").strip().lower() in ("1", "true", "yes"),
            ca_file=env.get(f"{prefix}_CA_FILE", "").strip(),
            cert_file=env.get(f"{prefix}_CERT_FILE", "").strip(),
            key_file=env.get(f"{prefix}_KEY_FILE", "").strip(),
        )

    def channel_credentials(self) -> Any:
        """``grpc.ssl_channel_credentials`` of the files (``ValueError`` naming a file it cannot read)."""
        if bool(self.cert_file) != bool(self.key_file):
            raise ValueError("a client certificate needs both the certificate file and its key file")
        ca = _client_read(self.ca_file, "the CA file") if self.ca_file else None
        cert = _client_read(self.cert_file, "the client certificate") if self.cert_file else None
        key = _client_read(self.key_file, "the client key") if self.key_file else None
        return grpc.ssl_channel_credentials(root_certificates=ca, private_key=key, certificate_chain=cert)

    def channel(self, target: str) -> Any:
        """A gRPC channel to ``target`` (``host:port``) with this TLS, sending the token on every call."""
        if self.uses_tls:
            channel = grpc.secure_channel(target, self.channel_credentials())
        else:
            host = target.rpartition(":")[0] or target
            if self.token and not is_loopback_host(host):
                log.warning(
                    "sending a bearer token to %s without TLS: anyone on the path can read it (use TLS)",
                    target,
                )
            channel = grpc.insecure_channel(target)
        if self.token:
            channel = grpc.intercept_channel(channel, _TokenClientInterceptor(self.token))
        return channel


def _client_read(path: str, what: str) -> bytes:
    try:
        return Path(path).expanduser().read_bytes()
    except OSError as exc:
        raise ValueError(f"cannot read {what} {path}: {exc.strerror}") from None


class _CallDetails(
    collections.namedtuple(
        "_CallDetails", ("method", "timeout", "metadata", "credentials", "wait_for_ready", "compression")
    ),
    grpc.ClientCallDetails,
):
    pass


class _TokenClientInterceptor(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    """Adds ``authorization: Bearer <token>`` to the metadata of every call."""

    def __init__(self, token: str) -> None:
        self._header = ("authorization", f"Bearer {token}")

    def __repr__(self) -> str:
        return "_TokenClientInterceptor(***)"

    def _details(self, details: Any) -> Any:
        metadata = [*(details.metadata or ()), self._header]
        return _CallDetails(
            details.method,
            details.timeout,
            metadata,
            details.credentials,
            getattr(details, "wait_for_ready", None),
            getattr(details, "compression", None),
        )

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_stream_unary(self, continuation: Any, details: Any, request_iterator: Any) -> Any:
        return continuation(self._details(details), request_iterator)

    def intercept_stream_stream(self, continuation: Any, details: Any, request_iterator: Any) -> Any:
        return continuation(self._details(details), request_iterator)
