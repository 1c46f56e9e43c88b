"""Hostile input against a real ``netspectra api`` over a chdb store filled from gnutella.pcap.

Every JSON endpoint gets every field replaced by every value of :data:`HOSTILE` (non-finite and huge
numbers, lone surrogates, NUL, control characters, very long strings, wrong types, deep nesting), plus
whole bodies that are not JSON, not UTF-8, too deep or too large; ``GET /api/v1/alerts`` gets the
same in its query string; the gRPC methods get the same values and raw bytes that are not a valid
message. The service must answer every one without a 5xx (gRPC: never ``INTERNAL``/``UNKNOWN``), with
the documented error shape ``{"code", "message"}``, and with no internals (SQL, engine messages,
object addresses, tracebacks) in any answer or an unbounded echo of the input; its log must hold no
traceback. Finally the data must be unchanged.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import re
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from api_process import GOLDEN, ApiProcess, fill_store

from netspectra.proto.v1 import query_pb2, query_pb2_grpc

pytestmark = pytest.mark.timeout(900)

MB = "x" * 1_000_000
#: Hostile JSON values, as JSON text (so that NaN, Infinity and 1e400 can be sent as such).
HOSTILE: dict[str, str] = {
    "Infinity": "Infinity",
    "-Infinity": "-Infinity",
    "NaN": "NaN",
    "1e400": "1e400",
    "-1e400": "-1e400",
    "1e308": "1e308",
    "-1e308": "-1e308",
    "int64 max": "9223372036854775807",
    "int64 min - 1": "-9223372036854775809",
    "uint64 max + 1": "18446744073709551616",
    "40 digits": "1" * 40,
    "-1": "-1",
    "0.5": "0.5",
    "lone high surrogate": '"\\ud800"',
    "lone low surrogate": '"a\\udfffb"',
    "NUL": '"a\\u0000b"',
    "control": '"\\u0001\\u001b[31m\\r\\n"',
    "1 MB string": json.dumps(MB),
    "20 kB string": json.dumps("y" * 20_000),
    "5 kB string": json.dumps("z" * 5_000),
    "SQL": json.dumps("x'; DROP TABLE flow_metrics; --"),
    "format": json.dumps("%(task)s {0} %s"),
    "emoji": json.dumps("🦊\u202e"),
    "true": "true",
    "null": "null",
    "empty string": '""',
    "empty list": "[]",
    "list": '[1, "a", null]',
    "object": '{"a": {"b": 1}}',
    "deep": "[" * 5000 + "]" * 5000,
    "deep object": '{"a":' * 100 + "1" + "}" * 100,
}

#: Bodies sent whole to every JSON endpoint.
RAW_BODIES: dict[str, bytes] = {
    "not JSON": b"{",
    "form": b"a=b&c=d",
    "bare Infinity": b"Infinity",
    "bare 1e400": b"1e400",
    "a list": b"[1, 2]",
    "a string": b'"text"',
    "not UTF-8": b'{"taskName": "\xff\xfe"}',
    "UTF-8 surrogate": b'{"taskName": "\xed\xa0\x80"}',
    "very deep": b"[" * 200_000,
    "2 MB": b'{"a": "' + b"x" * 2_000_000 + b'"}',
    "NUL bytes": b"\x00" * 64,
}

#: JSON endpoints and a valid body of each; every leaf field gets every hostile value.
ENDPOINTS: dict[str, dict[str, Any]] = {
    "/query": {
        "range": {"from": "2024-01-01T00:00:00Z", "to": "2100-01-01T00:00:00Z"},
        "targets": [{"target": "per_five_tuple:top", "payload": {"limit": 2}}],
        "maxDataPoints": 10,
        "adhocFilters": [{"key": "SrcAS", "operator": "=", "value": "15169"}],
    },
    "/annotations": {
        "range": {"from": "2024-01-01T00:00:00Z", "to": "2100-01-01T00:00:00Z"},
        "annotation": {"name": "alerts", "query": "per_src"},
    },
    "/search": {"target": ""},
    "/metrics": {"target": ""},
    "/tag-keys": {},
    "/tag-values": {"key": "SrcAS"},
    "/api/v1/aggregate": {
        "taskName": "per_src",
        "srcIp": "10.0.2.15",
        "dstPort": 53,
        "startTime": "2024-01-01T00:00:00Z",
        "pageSize": 1,
        "pageToken": "",
    },
    "/api/v1/trace": {"taskName": "per_five_tuple", "flowKeys": {"SrcIP": "10.0.2.15"}, "pageSize": 2},
    "/api/v1/flows/trace": {"taskName": "per_src", "flowKeys": {"SrcIP": "10.0.2.15"}},
    "/api/v1/heavy-hitters": {"taskName": "ss", "type": 2, "limit": 3},
    "/api/v1/flows": {
        "taskName": "flows",
        "host": "10.0.2.15",
        "port": 53,
        "endReasons": ["idle", "end_of_input"],
        "connStates": ["SF"],
        "minBytes": "100",
        "orderBy": "FLOW_ORDER_BYTES",
        "descending": True,
        "startTime": "2000-01-01T00:00:00Z",
        "pageSize": 3,
    },
    "/api/v1/alerts": {
        "start": "2024-01-01T00:00:00Z",
        "end": "2100-01-01T00:00:00Z",
        "task": "per_src",
        "limit": 5,
    },
}

INTERNALS = re.compile(
    r"Traceback|File \"|\bSELECT\b|\bFROM\b|\bWHERE\b|DB::Exception|Code: \d+|(?i:chdb)|0x[0-9a-f]{6,}|"
    r"<[\w.]+ object|(?i:clickhouse_driver|pydantic|starlette|fastapi|uvicorn)"
)
ERROR_CODES = {"INVALID_ARGUMENT", "NOT_FOUND", "RESOURCE_EXHAUSTED", "UNIMPLEMENTED"}


def leaves(doc: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from leaves(v, (*path, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield from leaves(v, (*path, i))
    else:
        yield path


def with_value(doc: Any, path: tuple[Any, ...], marker: str) -> Any:
    """A deep copy of ``doc`` with the leaf at ``path`` replaced by ``marker``."""
    doc = json.loads(json.dumps(doc))
    node = doc
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = marker
    return doc


def hostile_bodies() -> Iterator[tuple[str, str, bytes]]:
    """``(path, case, body)``: every leaf of every endpoint × every hostile value, a hostile key in each
    object, and the raw bodies."""
    marker = "@@HOSTILE@@"
    for path, body in ENDPOINTS.items():
        for leaf in leaves(body):
            template = json.dumps(with_value(body, leaf, marker))
            for name, value in HOSTILE.items():
                yield (
                    path,
                    f"{'.'.join(map(str, leaf))} = {name}",
                    template.replace(f'"{marker}"', value).encode("utf-8", "surrogatepass"),
                )
        for name in ("lone high surrogate", "NUL", "1 MB string", "20 kB string", "SQL"):
            key = HOSTILE[name]
            doc = json.dumps(body)
            yield path, f"key {name}", (doc[:-1] + f", {key}: 1}}").encode()
        for name, raw in RAW_BODIES.items():
            yield path, f"body {name}", raw


class Http:
    """Plain ``http.client`` (no URL length limit on the client side)."""

    def __init__(self, host: str) -> None:
        self.host = host
        self.conn = http.client.HTTPConnection(host, timeout=120)

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, str, str]:
        for attempt in (0, 1):
            try:
                self.conn.request(method, path, body=body, headers=headers or {})
                res = self.conn.getresponse()
                return res.status, res.getheader("content-type", ""), res.read().decode("utf-8")
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                # the server closes a connection after refusing an oversized request: reconnect once
                self.conn.close()
                self.conn = http.client.HTTPConnection(self.host, timeout=120)
                if attempt:
                    raise
        raise AssertionError("unreachable")


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiProcess]:
    tmp = tmp_path_factory.mktemp("hostile")
    conf = fill_store(tmp)
    proc = ApiProcess(conf, tmp).start()
    try:
        yield proc
    finally:
        logs = proc.stop()
        assert proc.proc.returncode == 0, logs[-3000:]
        assert "Traceback" not in logs and '"level": "ERROR"' not in logs, logs[-5000:]


def check_answer(status: int, ctype: str, text: str, what: str) -> None:
    assert status < 500, (what, status, text[:500])
    assert not INTERNALS.search(text), (what, status, text[:500])
    if status >= 400:
        assert ctype.startswith("application/json"), (what, status, ctype, text[:300])
        doc = json.loads(text)
        assert set(doc) == {"code", "message"} and doc["code"] in ERROR_CODES, (what, doc)
        assert len(doc["message"]) <= 600, (what, len(doc["message"]))


def test_hostile_json_bodies(api: ApiProcess) -> None:
    client = Http(api.http)
    seen: dict[int, int] = {}
    n = 0
    for path, case, body in hostile_bodies():
        status, ctype, text = client.request("POST", path, body, {"Content-Type": "application/json"})
        check_answer(status, ctype, text, f"POST {path} {case}")
        seen[status] = seen.get(status, 0) + 1
        n += 1
    assert n > 600, n
    assert seen.get(400, 0) > n // 2 and 200 in seen and 413 in seen, seen


def test_the_findings_of_issue_12(api: ApiProcess) -> None:
    """The cases that used to give 500 or leak internals as 503, each with its exact answer."""
    client = Http(api.http)
    for body in (b'{"range": {"from": Infinity}}', b'{"range": {"to": 1e400}}', b'{"maxDataPoints": 1e400}'):
        status, _, text = client.request("POST", "/query", body)
        assert status == 400 and json.loads(text)["code"] == "INVALID_ARGUMENT", text
    for body in (
        b'{"start": Infinity}',
        b'{"limit": 1e400}',
        b'{"task": "\\ud800"}',
        b'{"task": "a\\u0000"}',
    ):
        status, _, text = client.request("POST", "/api/v1/alerts", body)
        assert status == 400, (body, text)
    big = json.dumps({"task": MB}).encode()
    status, _, text = client.request("POST", "/api/v1/alerts", big)
    assert status == 400 and "1,000,000 characters" in text and len(text) < 400, text
    status, _, text = client.request(
        "POST", "/annotations", json.dumps({"annotation": {"query": MB}}).encode()
    )
    assert status == 400 and len(text) < 400, text
    status, _, text = client.request("POST", "/annotations", b'{"annotation": {"query": "\\udfff"}}')
    assert status == 400 and "surrogate" in text, text
    # a far-future or far-past epoch: 400 or "no bound", never a failed query
    status, _, text = client.request("POST", "/query", b'{"range": {"from": -5}, "targets": []}')
    assert status == 400 and "before 1970" in text, text
    status, _, text = client.request(
        "POST", "/query", b'{"range": {"to": 1e300}, "targets": [{"target": "per_src"}]}'
    )
    assert status == 200, text
    # FastAPI's own validation errors and unknown routes have the documented shape too
    status, _, text = client.request("GET", "/nope")
    assert status == 404 and json.loads(text)["code"] == "NOT_FOUND", text
    status, _, text = client.request("DELETE", "/api/v1/tasks")
    assert status == 405 and set(json.loads(text)) == {"code", "message"}, text


def test_hostile_query_strings(api: ApiProcess) -> None:
    from urllib.parse import quote

    client = Http(api.http)
    values = [
        "Infinity", "-Infinity", "NaN", "1e400", "-1", "0", "1" * 40, "99999999999999999999", "\x00",
        "%ED%A0%80", "a\nb", "x'; DROP TABLE alerts; --", "%(task)s", "🦊", "z" * 5000,
        "2024-13-45T99:99:99Z", "9999-12-31", "0001-01-01", "true", "[]",
    ]  # fmt: skip
    n = 0
    for param in ("start", "end", "task", "limit"):
        for value in values:
            raw = value if value.startswith("%") else quote(value, safe="")
            status, ctype, text = client.request("GET", f"/api/v1/alerts?{param}={raw}")
            check_answer(status, ctype, text, f"GET alerts {param}={value[:20]!r}")
            n += 1
    assert n == 80
    # a request line beyond the HTTP server's limit (h11: 16 KiB) is refused by the HTTP layer before the
    # app: "400 Bad Request" and the connection closed (possibly while the client is still sending)
    head = raw_exchange(api.http, f"GET /api/v1/alerts?task={'x' * 1_000_000} HTTP/1.1\r\nHost: x\r\n\r\n")
    assert head == "" or head.startswith("HTTP/1.1 400 "), head[:200]
    assert not INTERNALS.search(head), head[:500]
    # below it, the app refuses the long name itself, with its bounded message
    status, ctype, text = client.request("GET", f"/api/v1/alerts?task={'x' * 8000}")
    check_answer(status, ctype, text, "8 kB task")
    assert status == 400 and "8,000 characters" in text


def raw_exchange(host: str, request: str) -> str:
    """Send ``request`` on a raw socket and read the answer until the server closes ("" if it reset the
    connection before answering)."""
    import socket

    name, _, port = host.rpartition(":")
    chunks = []
    with socket.create_connection((name, int(port)), timeout=30) as sock:
        with contextlib.suppress(OSError):  # refused while sending: read what was answered
            sock.sendall(request.encode("latin-1"))
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except OSError:
            pass
    return b"".join(chunks).decode("latin-1")


def grpc_cases() -> Iterator[tuple[str, Any]]:
    """``(method, request)`` of hostile but encodable requests."""
    A, T, H = query_pb2.AggregationRequest, query_pb2.TraceFlowRequest, query_pb2.HeavyHittersRequest
    strings = [
        "x" * 1_000_000,
        "a\x00b",
        "\x01\x1b[31m",
        "x'; DROP TABLE flow_metrics; --",
        "%(task)s",
        "🦊",
        "",
    ]
    for s in strings:
        yield "AggregateFlows", A(task_name=s)
        yield "AggregateFlows", A(src_ip=s)
        yield "AggregateFlows", A(page_size=1, page_token=s)
        yield "TraceFlow", T(task_name=s, flow_keys={"SrcIP": "10.0.2.15"})
        yield "TraceFlow", T(task_name="per_src", flow_keys={"SrcIP": s})
        yield "TraceFlow", T(task_name="per_src", flow_keys={s or "k": "1"})
        yield "QueryHeavyHitters", H(task_name=s, type=0)
        yield "QueryHeavyHitters", H(task_name="cm", type=0, page_size=1, page_token=s)
    yield "TraceFlow", T(task_name="per_src", flow_keys={f"k{i}": "1" for i in range(10_000)})
    for n in (-1, -(2**31), 2**31 - 1):
        yield "AggregateFlows", A(page_size=n & 0xFFFFFFFF)
        yield "QueryHeavyHitters", H(task_name="ss", type=2, limit=n, page_size=n & 0xFFFFFFFF)
        yield "QueryHeavyHitters", H(task_name="ss", type=n)
        yield "AggregateFlows", A(src_port=n & 0xFFFFFFFF, protocol=n & 0xFFFFFFFF)
    for seconds, nanos in ((2**63 - 1, 0), (-(2**63), 0), (0, -1), (0, 2**31 - 1), (253_402_300_800, 0)):
        ts = {"seconds": seconds, "nanos": nanos}
        yield "AggregateFlows", A(end_time=ts)
        yield "AggregateFlows", A(start_time=ts)
        yield "QueryHeavyHitters", H(task_name="ss", type=2, start_time=ts)


#: Bytes that are not a valid request message: bad tags, truncated varints, strings that are not UTF-8.
RAW_MESSAGES = {
    "garbage": b"\xff\xff\xff\xff",
    "truncated varint": b"\x08\xff",
    "length beyond the end": b"\x0a\xff\xff\xff\x0f",
    "task_name lone surrogate (CESU-8)": b"\x0a\x03\xed\xa0\x80",
    "task_name not UTF-8": b"\x0a\x02\xff\xfe",
    "group without end": b"\x0b",
}


def test_hostile_grpc(api: ApiProcess) -> None:
    allowed = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND}
    with grpc.insecure_channel(api.grpc, options=[("grpc.max_receive_message_length", 8 << 20)]) as channel:
        stub = query_pb2_grpc.QueryServiceStub(channel)
        n = 0
        for method, req in grpc_cases():
            try:
                getattr(stub, method)(req, timeout=60)
            except grpc.RpcError as exc:
                details = exc.details() or ""
                assert exc.code() in allowed, (method, str(req)[:200], exc.code(), details[:300])
                assert len(details) <= 600 and not INTERNALS.search(details), (method, details[:300])
            n += 1
        assert n > 80
        for method in ("AggregateFlows", "TraceFlow", "QueryHeavyHitters"):
            raw = channel.unary_unary(f"/v1.QueryService/{method}")  # bytes in, bytes out
            for name, data in RAW_MESSAGES.items():
                try:
                    raw(data, timeout=60)
                except grpc.RpcError as exc:
                    details = exc.details() or ""
                    assert exc.code() in allowed | {grpc.StatusCode.RESOURCE_EXHAUSTED}, (
                        method,
                        name,
                        exc.code(),
                        details,
                    )
                    assert not INTERNALS.search(details), (method, name, details)
                else:
                    raise AssertionError(f"{method} accepted {name}")
        # the data did not change
        resp = stub.AggregateFlows(query_pb2.AggregationRequest(task_name="per_five_tuple"), timeout=60)
        assert (resp.summaries[0].total_packets, resp.summaries[0].flow_count) == (
            GOLDEN["ip_packets"],
            GOLDEN["flows"],
        )


def test_logs_hold_no_traceback_so_far(api: ApiProcess) -> None:
    logs = api.logs()
    assert "Traceback" not in logs and "internal error" not in logs, logs[-3000:]
    assert MB[:1000] not in logs  # hostile input is never logged whole


def test_long_names_and_repeated_values_are_refused_or_served_not_failed(api: ApiProcess) -> None:
    """What a fuzzing pass found: an unknown filter field echoed whole in the console's 400 (a 2,000-char
    name made a 2 kB message), an exporters task name of 1 MB and 100,000 repeated end reasons sent to
    ClickHouse as one over-long query (``UNAVAILABLE`` where the input was at fault)."""
    client = Http(api.http)
    status, ctype, text = client.request("GET", f"/api/v1/console/flows?filter={'x' * 2000}")
    doc = json.loads(text)  # a filter's 400 also says where (position) and what was expected
    assert ctype.startswith("application/json") and not INTERNALS.search(text), text[:800]
    assert status == 400 and "unknown field" in doc["message"] and len(doc["message"]) <= 600, text[:800]
    assert doc["position"] == 0, doc
    # the same states listed 100,000 times are the same filter as listed once (REST body under 1 MB)
    base = {"taskName": "flows", "pageSize": 3}
    once = client.request("POST", "/api/v1/flows", json.dumps({**base, "endReasons": ["idle"]}).encode())
    many = client.request(
        "POST", "/api/v1/flows", json.dumps({**base, "endReasons": ["idle"] * 100_000}).encode()
    )
    assert once[0] == 200 and many[0] == 200, many[2][:300]
    got, want = json.loads(many[2]), json.loads(once[2])
    assert got["flows"] == want["flows"] and got["total"] == want["total"], (got, want)  # tokens differ
    with grpc.insecure_channel(api.grpc) as channel:
        stub = query_pb2_grpc.QueryServiceStub(channel)
        many_sf = query_pb2.ListFlowsRequest(task_name="flows", conn_states=["SF"] * 100_000, page_size=1)
        resp = stub.ListFlows(many_sf, timeout=60)
        assert (
            resp.total
            == stub.ListFlows(
                query_pb2.ListFlowsRequest(task_name="flows", conn_states=["SF"], page_size=1), timeout=60
            ).total
        )
        with pytest.raises(grpc.RpcError) as err:
            stub.ListExporters(query_pb2.ListExportersRequest(task_name="x" * 1_000_000), timeout=60)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value.details()
        assert "task_name" in err.value.details() and len(err.value.details()) <= 600


def test_forged_page_tokens_are_refused_naming_page_token(api: ApiProcess) -> None:
    """A page token is ``base64url(json{"o": offset, "q": digest of the request})``: anyone can make one.
    An offset beyond 64 bits used to reach the store's parameter check ("integer parameter ... is out of
    the 64-bit range", not naming the field), and 1.5, true or "7" were taken as offsets."""
    import base64

    from netspectra.api.grpc_service import _query_digest

    def token(req: Any, offset: object) -> str:
        doc = json.dumps({"o": offset, "q": _query_digest(req)}).encode()
        return base64.urlsafe_b64encode(doc).rstrip(b"=").decode()

    with grpc.insecure_channel(api.grpc) as channel:
        stub = query_pb2_grpc.QueryServiceStub(channel)
        for method, req in (
            ("ListFlows", query_pb2.ListFlowsRequest(task_name="flows", page_size=2)),
            ("AggregateFlows", query_pb2.AggregationRequest(task_name="per_src", page_size=2)),
            ("QueryHeavyHitters", query_pb2.HeavyHittersRequest(task_name="cm", type=0, page_size=2)),
        ):
            for offset in (2**64, 10**30, -1, 1.5, True, "7", None):
                req.page_token = token(req, offset)
                with pytest.raises(grpc.RpcError) as err:
                    getattr(stub, method)(req, timeout=60)
                what = (method, offset, err.value.code(), err.value.details())
                assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, what
                assert "page_token" in err.value.details(), what
            req.page_token = token(req, 2)  # a well-formed one is served
            getattr(stub, method)(req, timeout=60)
