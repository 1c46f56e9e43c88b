"""Tokens, scopes and listen addresses of the network services (netspectra.auth, netspectra.rpc), the
strict JSON of the HTTP app (netspectra.api.http_input) and how input is echoed in messages."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from netspectra.api.grpc_service import MAX_MESSAGE_CHARS, QueryError, safe_message, shown
from netspectra.api.http_input import MAX_BODY_BYTES, check_text, parse_json
from netspectra.auth import (
    ClientSecurity,
    Scope,
    SecurityConfigError,
    ServiceSecurity,
    TokenSet,
    bearer_token,
)
from netspectra.config import ConfigError, parse_config_text
from netspectra.config.models import AuthConfig, TlsConfig
from netspectra.rpc import listens_beyond_loopback, needed_scope, warn_if_exposed

READ = "r" * 20
ADMIN = "a" * 20


def test_token_set_scopes() -> None:
    tokens = TokenSet([READ, "q" * 16], [ADMIN])
    assert tokens.scope_of(READ) is Scope.READ and tokens.scope_of("q" * 16) is Scope.READ
    assert tokens.scope_of(ADMIN) is Scope.ADMIN and Scope.ADMIN > Scope.READ
    for wrong in (None, "", READ[:-1], READ + "x", READ.upper(), " " + READ):
        assert tokens.scope_of(wrong) is None
    assert tokens.counts() == (2, 1) and bool(tokens) and not TokenSet()
    assert READ not in repr(tokens) and ADMIN not in repr(tokens)


def test_bearer_header() -> None:
    assert bearer_token(f"Bearer {READ}") == READ
    assert bearer_token(f"bearer   {READ} ") == READ
    for value in (None, "", READ, f"Basic {READ}", "Bearer", "Bearer  "):
        assert bearer_token(value) is None


def test_configured_tokens_are_checked_and_never_echoed() -> None:
    cfg = parse_config_text(f"api: {{auth: {{tokens: '{READ}, {'b' * 16}', admin_tokens: [{ADMIN}]}}}}")
    assert cfg.api.auth.tokens == (READ, "b" * 16) and cfg.api.auth.admin_tokens == (ADMIN,)
    assert READ not in repr(cfg.api)
    for text, words in (
        ("api: {auth: {tokens: [shortsecret]}}", ["api.auth.tokens", "16 or more", "token_urlsafe"]),
        ("api: {auth: {tokens: ['has space in the token x']}}", ["api.auth.tokens", "space"]),
        (f"ai: {{auth: {{tokens: [{READ}], admin_tokens: [{READ}]}}}}", ["ai.auth", "one scope"]),
        ("api: {tls: {key_file: k.pem}}", ["api.tls", "cert_file is empty"]),
        ("ai: {tls: {client_ca_file: ca.pem}}", ["ai.tls", "client_ca_file", "without cert_file"]),
    ):
        with pytest.raises(ConfigError) as info:
            parse_config_text(text)
        for word in words:
            assert word in str(info.value), (text, str(info.value))
        assert "shortsecret" not in str(info.value) and READ not in str(info.value)


def test_security_from_files_and_environment(tmp_path: Path) -> None:
    read_file = tmp_path / "read"
    read_file.write_text(f"# comment\n\n{'f' * 16}  # trailing comment\n{'g' * 16}\n")
    auth = AuthConfig(tokens=[READ], tokens_file=str(read_file))
    env = {"NETSPECTRA_API_TOKENS": "e" * 16 + ",h" + "h" * 16, "NETSPECTRA_API_ADMIN_TOKENS": ADMIN}
    sec = ServiceSecurity.load(auth, TlsConfig(), "api", env)
    for token in (READ, "f" * 16, "g" * 16, "e" * 16, "h" * 17):
        assert sec.tokens.scope_of(token) is Scope.READ, token
    assert sec.tokens.scope_of(ADMIN) is Scope.ADMIN
    assert sec.describe() == "plain text, 5 read and 1 admin token(s)" and sec.tls is None
    # the AI service reads its own variables only
    assert not ServiceSecurity.load(AuthConfig(), TlsConfig(), "ai", env).tokens
    assert (
        ServiceSecurity.load(AuthConfig(), TlsConfig(), "api", {}).describe()
        == "plain text, no authentication"
    )
    cases = [
        (AuthConfig(tokens_file=str(tmp_path / "nope")), {}, ["api.auth.tokens_file", "does not exist"]),
        (AuthConfig(admin_tokens_file=str(tmp_path)), {}, ["api.auth.admin_tokens_file", "is a directory"]),
        (AuthConfig(), {"NETSPECTRA_API_TOKENS": "short"}, ["NETSPECTRA_API_TOKENS", "16 or more"]),
        (AuthConfig(tokens=[READ]), {"NETSPECTRA_API_ADMIN_TOKENS": READ}, ["read and the admin scope"]),
    ]
    empty = tmp_path / "empty"
    empty.write_text("# nothing\n")
    cases.append((AuthConfig(tokens_file=str(empty)), {}, ["holds no token"]))
    for auth_cfg, environment, words in cases:
        with pytest.raises(SecurityConfigError) as info:
            ServiceSecurity.load(auth_cfg, TlsConfig(), "api", environment)
        for word in words:
            assert word in str(info.value), (word, str(info.value))
        assert READ not in str(info.value)
    with pytest.raises(SecurityConfigError, match=r"api\.tls\.cert_file: .* does not exist"):
        ServiceSecurity.load(AuthConfig(), TlsConfig(cert_file="/nope.pem", key_file="/nope.key"), "api", {})


def test_scopes_of_grpc_methods() -> None:
    assert needed_scope("/grpc.health.v1.Health/Check") is None
    assert needed_scope("/grpc.health.v1.Health/Watch") is None
    assert needed_scope("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo") is Scope.ADMIN
    assert needed_scope("/v1.QueryService/AggregateFlows") is Scope.READ
    assert needed_scope("/v1.AIService/AnalyzeTraffic") is Scope.READ


@pytest.mark.parametrize(
    ("addr", "exposed"),
    [
        ("127.0.0.1:50051", False),
        ("localhost:8080", False),
        ("[::1]:8080", False),
        ("127.0.0.2:1", False),
        (":50051", True),
        ("0.0.0.0:8080", True),
        ("[::]:8080", True),
        ("10.1.2.3:8080", True),
        ("api.example.org:8080", True),
    ],
)
def test_listen_addresses(addr: str, exposed: bool, caplog: pytest.LogCaptureFixture) -> None:
    assert listens_beyond_loopback(addr) is exposed
    caplog.set_level(logging.WARNING)
    warn_if_exposed(addr, ServiceSecurity(), "the query service (gRPC)")
    assert ("without authentication" in caplog.text) is exposed
    caplog.clear()
    warn_if_exposed(addr, ServiceSecurity(TokenSet([READ])), "the query service (gRPC)")
    assert caplog.text == ""


def test_client_security_from_environment() -> None:
    env = {"NETSPECTRA_AI_TOKEN": READ, "NETSPECTRA_AI_CA_FILE": "/ca.pem", "NETSPECTRA_AI_TLS": ""}
    sec = ClientSecurity.from_env("NETSPECTRA_AI", env)
    assert sec.token == READ and sec.uses_tls and READ not in repr(sec)
    assert not ClientSecurity.from_env("NETSPECTRA_AI", {}).uses_tls
    assert ClientSecurity.from_env("NETSPECTRA_AI", {"NETSPECTRA_AI_TLS": "true"}).uses_tls
    with pytest.raises(ValueError, match=r"cannot read the CA file /ca\.pem"):
        sec.channel("localhost:1")


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b"Infinity", "not a JSON number"),
        (b'{"a": -Infinity}', "not a JSON number"),
        (b'{"a": NaN}', "not a JSON number"),
        (b'{"a": 1e400}', "out of range"),
        (b'{"a": -1e400}', "out of range"),
        (b'{"a": ' + b"9" * 31 + b"}", "31 digits"),
        (b'{"a": "\\ud800"}', "lone surrogate"),
        (b'{"\\udfff": 1}', "object key"),
        (b'{"a": "\xed\xa0\x80"}', "not UTF-8"),
        (b"\xff", "not UTF-8"),
        (b"[" * 40 + b"]" * 40, "deeper than 32"),
        (b"[" * 100_000, "deeper than 32"),
        (b'{"a": "' + b"x" * 20_000 + b'"}', "20,000 characters"),
        (b"a=b", "not JSON"),
    ],
)
def test_strict_json(body: bytes, words: str) -> None:
    with pytest.raises(QueryError) as info:
        parse_json(body)
    assert info.value.code.name == "INVALID_ARGUMENT" and words in info.value.message, info.value.message
    assert len(info.value.message) < 300


def test_json_that_is_fine() -> None:
    assert parse_json(b"") is None and parse_json(b"  \n") is None
    assert parse_json(b'{"a": [1, 2.5, "\\u00e9", null, true], "b": {"c": 1e308}}') == {
        "a": [1, 2.5, "é", None, True],
        "b": {"c": 1e308},
    }
    assert parse_json(b"[" * 31 + b"]" * 31) is not None
    assert MAX_BODY_BYTES == 1 << 20


def test_names_and_echoes() -> None:
    assert check_text("per_src", "task") == "per_src"
    for bad, words in (
        ("a\x00b", r"U\+0000"),
        ("x" * 1025, "1,025 characters"),
        ("\ud800", "surrogate"),
        (5, "string"),
    ):
        with pytest.raises(QueryError, match=words):
            check_text(bad, "task")
    assert shown("x" * 10) == "'xxxxxxxxxx'"
    long = shown("x" * 1_000_000)
    assert len(long) < 120 and long.endswith("(1,000,000 characters)")
    assert shown("a\x00\ud800") == "'a\\x00\\ud800'"
    msg = safe_message("bad \ud800 \x1b[31m" + "y" * 5000)
    assert msg.encode("utf-8") and "\\ud800" in msg and "\x1b" not in msg
    assert len(msg) <= MAX_MESSAGE_CHARS and msg.endswith("characters)")
