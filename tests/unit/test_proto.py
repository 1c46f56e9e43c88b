"""The wire contracts: regeneration is reproducible, and the messages and services are the original's.

The original's schema below is written from the spec (go2netspectra-spec.md §1, the original's
``api/proto/v1``), independently of our ``.proto`` files: field names, numbers, types and labels, and
the service and RPC names. Messages are also exchanged as raw protobuf bytes built by hand, as a
Go2NetSpectra peer would put them on the wire.
"""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
import sys
from concurrent import futures
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.unknown_fields import UnknownFieldSet

from netspectra.proto.v1 import ai_pb2, ai_pb2_grpc, query_pb2, query_pb2_grpc, traffic_pb2

ROOT = Path(__file__).resolve().parents[2]
GENERATED = ROOT / "src" / "netspectra" / "proto" / "v1"
F = descriptor_pb2.FieldDescriptorProto

# ---------------------------------------------------------------------------------------------------
# the original's schema, from the spec: message -> [(field, number, type, label, message type or "")]
OPT, REP = F.LABEL_OPTIONAL, F.LABEL_REPEATED
TS = ".google.protobuf.Timestamp"
ORIGINAL: dict[str, list[tuple[str, int, int, int, str]]] = {
    "FiveTuple": [
        ("src_ip", 1, F.TYPE_BYTES, OPT, ""),
        ("dst_ip", 2, F.TYPE_BYTES, OPT, ""),
        ("src_port", 3, F.TYPE_UINT32, OPT, ""),
        ("dst_port", 4, F.TYPE_UINT32, OPT, ""),
        ("protocol", 5, F.TYPE_UINT32, OPT, ""),
    ],
    "PacketInfo": [
        ("timestamp", 1, F.TYPE_MESSAGE, OPT, TS),
        ("five_tuple", 2, F.TYPE_MESSAGE, OPT, ".v1.FiveTuple"),
        ("length", 3, F.TYPE_UINT64, OPT, ""),
    ],
    "AggregationRequest": [
        ("end_time", 1, F.TYPE_MESSAGE, OPT, TS),
        ("task_name", 2, F.TYPE_STRING, OPT, ""),
        ("src_ip", 3, F.TYPE_STRING, OPT, ""),
        ("dst_ip", 4, F.TYPE_STRING, OPT, ""),
        ("src_port", 5, F.TYPE_UINT32, OPT, ""),
        ("dst_port", 6, F.TYPE_UINT32, OPT, ""),
        ("protocol", 7, F.TYPE_UINT32, OPT, ""),
    ],
    "TaskSummary": [
        ("task_name", 1, F.TYPE_STRING, OPT, ""),
        ("total_bytes", 2, F.TYPE_UINT64, OPT, ""),
        ("total_packets", 3, F.TYPE_UINT64, OPT, ""),
        ("flow_count", 4, F.TYPE_UINT64, OPT, ""),
    ],
    "QueryTotalCountsResponse": [("summaries", 1, F.TYPE_MESSAGE, REP, ".v1.TaskSummary")],
    "TraceFlowRequest": [
        ("task_name", 1, F.TYPE_STRING, OPT, ""),
        ("flow_keys", 2, F.TYPE_MESSAGE, REP, ".v1.TraceFlowRequest.FlowKeysEntry"),
        ("end_time", 3, F.TYPE_MESSAGE, OPT, TS),
    ],
    "FlowLifecycle": [
        ("first_seen", 1, F.TYPE_MESSAGE, OPT, TS),
        ("last_seen", 2, F.TYPE_MESSAGE, OPT, TS),
        ("total_packets", 3, F.TYPE_UINT64, OPT, ""),
        ("total_bytes", 4, F.TYPE_UINT64, OPT, ""),
    ],
    "TraceFlowResponse": [("lifecycle", 1, F.TYPE_MESSAGE, OPT, ".v1.FlowLifecycle")],
    "HealthCheckRequest": [],
    "HealthCheckResponse": [("status", 1, F.TYPE_STRING, OPT, "")],
    "SearchTasksRequest": [],
    "SearchTasksResponse": [("task_names", 1, F.TYPE_STRING, REP, "")],
    "HeavyHittersRequest": [
        ("task_name", 1, F.TYPE_STRING, OPT, ""),
        ("type", 2, F.TYPE_INT32, OPT, ""),
        ("end_time", 3, F.TYPE_MESSAGE, OPT, TS),
        ("limit", 4, F.TYPE_INT32, OPT, ""),
    ],
    "HeavyHitter": [("flow", 1, F.TYPE_STRING, OPT, ""), ("value", 2, F.TYPE_UINT64, OPT, "")],
    "HeavyHittersResponse": [("hitters", 1, F.TYPE_MESSAGE, REP, ".v1.HeavyHitter")],
    "AnalyzeTrafficRequest": [("text_input", 1, F.TYPE_STRING, OPT, "")],
    "AnalyzeTrafficResponse": [("text_output", 1, F.TYPE_STRING, OPT, "")],
    "AnalyzePromptRequest": [("prompt", 1, F.TYPE_STRING, OPT, "")],
    "AnalyzePromptResponse": [("chunk", 1, F.TYPE_STRING, OPT, "")],
}
ORIGINAL_FILE = {
    **dict.fromkeys(["FiveTuple", "PacketInfo"], "traffic"),
    **dict.fromkeys(["AnalyzeTrafficRequest", "AnalyzeTrafficResponse"], "ai"),
    **dict.fromkeys(["AnalyzePromptRequest", "AnalyzePromptResponse"], "ai"),
}
# service -> [(rpc, request, response, server streaming)]
SERVICES = {
    "QueryService": [
        ("HealthCheck", "HealthCheckRequest", "HealthCheckResponse", False),
        ("SearchTasks", "SearchTasksRequest", "SearchTasksResponse", False),
        ("AggregateFlows", "AggregationRequest", "QueryTotalCountsResponse", False),
        ("TraceFlow", "TraceFlowRequest", "TraceFlowResponse", False),
        ("QueryHeavyHitters", "HeavyHittersRequest", "HeavyHittersResponse", False),
        # additions (not in the original; new RPCs only)
        ("ListFlows", "ListFlowsRequest", "ListFlowsResponse", False),
        ("TopN", "TopNRequest", "TopNResponse", False),
        ("ListExporters", "ListExportersRequest", "ListExportersResponse", False),
    ],
    "AIService": [
        ("AnalyzeTraffic", "AnalyzeTrafficRequest", "AnalyzeTrafficResponse", False),
        ("AnalyzePromptStream", "AnalyzePromptRequest", "AnalyzePromptResponse", True),
    ],
}
MODULES = {"traffic": traffic_pb2, "query": query_pb2, "ai": ai_pb2}


def _module_of(message: str):
    return MODULES[ORIGINAL_FILE.get(message, "query")]


def _ours(message: str):
    return getattr(_module_of(message), message)


# ---------------------------------------------------------------------------------------------------
# a hand-written protobuf wire encoder (what a Go2NetSpectra peer puts on the wire)


def varint(v: int) -> bytes:
    v &= (1 << 64) - 1  # negative int32 values go on the wire as 10-byte two's complement
    out = bytearray()
    while v > 0x7F:
        out.append(v & 0x7F | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def vfield(num: int, v: int) -> bytes:
    return varint(num << 3) + varint(v)


def lfield(num: int, payload: bytes | str) -> bytes:
    raw = payload.encode() if isinstance(payload, str) else payload
    return varint(num << 3 | 2) + varint(len(raw)) + raw


def timestamp(seconds: int, nanos: int) -> bytes:
    return vfield(1, seconds) + vfield(2, nanos)


# ---------------------------------------------------------------------------------------------------
# regeneration


def _grpc_tools_version() -> str:
    pytest.importorskip("grpc_tools", reason="grpcio-tools is not installed (pip install grpcio-tools)")
    return importlib.metadata.version("grpcio-tools")


def _committed_tools_version() -> str:
    text = (GENERATED / "query_pb2_grpc.py").read_text()
    m = re.search(r"^GRPC_GENERATED_VERSION = '([^']+)'", text, re.M)
    assert m, "query_pb2_grpc.py carries no GRPC_GENERATED_VERSION"
    return m.group(1)


def test_regeneration_is_byte_identical(tmp_path: Path) -> None:
    installed = _grpc_tools_version()
    committed = _committed_tools_version()
    if installed != committed:
        pytest.skip(
            f"the committed modules were generated by grpcio-tools {committed}, {installed} is installed: "
            "byte identity needs the same version (test_descriptors_match_proto_sources still checks them)"
        )
    res = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "gen_proto.py"), "--out", str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    fresh = {p.name: p.read_bytes() for p in (tmp_path / "v1").iterdir()}
    have = {p.name: p.read_bytes() for p in GENERATED.iterdir() if p.is_file()}
    assert sorted(fresh) == sorted(have)
    assert {"query_pb2_grpc.py", "ai_pb2_grpc.py", "traffic_pb2.py", "traffic_pb2.pyi"} <= fresh.keys()
    assert "traffic_pb2_grpc.py" not in fresh  # no service in traffic.proto, no empty gRPC module
    for name in fresh:
        assert fresh[name] == have[name], f"{name} differs from a fresh generation: run tools/gen_proto.py"


def test_descriptors_match_proto_sources(tmp_path: Path) -> None:
    """Whatever grpcio-tools version is installed: the committed modules embed the current .proto files."""
    _grpc_tools_version()
    out = tmp_path / "set.pb"
    names = ["netspectra/v1/traffic.proto", "netspectra/v1/query.proto", "netspectra/v1/ai.proto"]
    subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", "-Iproto", f"--descriptor_set_out={out}", *names],
        cwd=ROOT,
        check=True,
    )
    fresh = {f.name: f for f in descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes()).file}
    for mod in MODULES.values():
        embedded = descriptor_pb2.FileDescriptorProto.FromString(mod.DESCRIPTOR.serialized_pb)
        want = fresh[embedded.name]
        for m in want.message_type:  # protoc adds json_name to descriptor sets, the Python plugin does not
            for f in m.field:
                f.ClearField("json_name")
            for nested in m.nested_type:
                for f in nested.field:
                    f.ClearField("json_name")
        assert embedded == want, f"{embedded.name}: committed module is stale, run tools/gen_proto.py"


def test_generated_modules_import_as_package() -> None:
    assert query_pb2.AggregationRequest.__module__ == "netspectra.proto.v1.query_pb2"
    grpc_src = (GENERATED / "query_pb2_grpc.py").read_text()
    assert "from netspectra.proto.v1 import query_pb2 as" in grpc_src
    assert not re.search(r"^from netspectra\.v1 ", grpc_src, re.M)
    assert traffic_pb2.DESCRIPTOR.package == query_pb2.DESCRIPTOR.package == ai_pb2.DESCRIPTOR.package == "v1"


# ---------------------------------------------------------------------------------------------------
# schema


@pytest.mark.parametrize("message", sorted(ORIGINAL))
def test_original_fields_unchanged(message: str) -> None:
    desc = descriptor_pb2.DescriptorProto()
    _ours(message).DESCRIPTOR.CopyToProto(desc)
    assert _ours(message).DESCRIPTOR.full_name == f"v1.{message}"
    by_number = {f.number: f for f in desc.field}
    for name, number, ftype, label, type_name in ORIGINAL[message]:
        f = by_number.get(number)
        assert f is not None, f"{message}: field {number} ({name}) missing"
        assert (f.name, f.type, f.label, f.type_name) == (name, ftype, label, type_name), (message, number)
        assert not f.HasField("oneof_index") and not f.proto3_optional, (message, name)


def test_additions_use_new_numbers_only() -> None:
    added = {
        "AggregationRequest": {"start_time": 8, "page_size": 9, "page_token": 10},
        "QueryTotalCountsResponse": {"next_page_token": 2},
        "TraceFlowRequest": {"start_time": 4, "page_size": 5, "page_token": 6},
        "TraceFlowResponse": {"flows": 2, "next_page_token": 3},
        "HeavyHittersRequest": {"start_time": 5, "page_size": 6, "page_token": 7},
        "HeavyHittersResponse": {"next_page_token": 2, "reason": 3},
    }
    for message, fields in ORIGINAL.items():
        ours = {f.name: f.number for f in _ours(message).DESCRIPTOR.fields}
        original = {name: number for name, number, *_ in fields}
        assert {k: ours[k] for k in original} == original
        extra = {k: v for k, v in ours.items() if k not in original}
        assert extra == added.get(message, {}), message
        assert not set(extra.values()) & set(original.values())
    assert query_pb2.HEAVY_HITTER_TYPE_COUNT == 0
    assert query_pb2.HEAVY_HITTER_TYPE_SIZE == 1
    assert query_pb2.HEAVY_HITTER_TYPE_SPREAD == 2


def test_trace_flow_keys_is_a_string_map() -> None:
    field = query_pb2.TraceFlowRequest.DESCRIPTOR.fields_by_name["flow_keys"]
    entry = field.message_type
    assert entry.GetOptions().map_entry
    assert [(f.name, f.number, f.type) for f in entry.fields] == [
        ("key", 1, F.TYPE_STRING),
        ("value", 2, F.TYPE_STRING),
    ]


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_services_and_rpcs(service: str) -> None:
    mod = query_pb2 if service == "QueryService" else ai_pb2
    sd = mod.DESCRIPTOR.services_by_name[service]
    assert sd.full_name == f"v1.{service}"
    got = [
        (m.name, m.input_type.name, m.output_type.name, m.server_streaming, m.client_streaming)
        for m in sd.methods
    ]
    assert got == [(*rpc, False) for rpc in SERVICES[service]]


class _RecordingChannel:
    """Stands in for grpc.Channel: records the method paths and streaming kinds a stub asks for."""

    def __init__(self) -> None:
        self.paths: list[tuple[str, str]] = []

    def _record(self, kind: str):
        def make(path: str, **_kw):
            self.paths.append((kind, path))
            return lambda *a, **k: None

        return make

    def __getattr__(self, name: str):
        if name in ("unary_unary", "unary_stream", "stream_unary", "stream_stream"):
            return self._record(name)
        raise AttributeError(name)


def test_stub_paths() -> None:
    ch = _RecordingChannel()
    query_pb2_grpc.QueryServiceStub(ch)
    ai_pb2_grpc.AIServiceStub(ch)
    want = [
        ("unary_stream" if stream else "unary_unary", f"/v1.{svc}/{rpc}")
        for svc in ("QueryService", "AIService")
        for rpc, _req, _resp, stream in SERVICES[svc]
    ]
    assert ch.paths == want


# ---------------------------------------------------------------------------------------------------
# the original's schema built by hand in its own descriptor pool, exchanged with ours


def _original_pool() -> descriptor_pool.DescriptorPool:
    from google.protobuf import timestamp_pb2

    pool = descriptor_pool.DescriptorPool()
    ts = descriptor_pb2.FileDescriptorProto()
    timestamp_pb2.DESCRIPTOR.CopyToProto(ts)
    pool.Add(ts)
    files: dict[str, descriptor_pb2.FileDescriptorProto] = {}
    for message, fields in ORIGINAL.items():
        fname = f"original/{ORIGINAL_FILE.get(message, 'query')}.proto"
        fdp = files.setdefault(
            fname,
            descriptor_pb2.FileDescriptorProto(
                name=fname, package="v1", syntax="proto3", dependency=["google/protobuf/timestamp.proto"]
            ),
        )
        m = fdp.message_type.add(name=message)
        for name, number, ftype, label, type_name in fields:
            f = m.field.add(name=name, number=number, type=ftype, label=label)
            if type_name:
                f.type_name = type_name
        if message == "TraceFlowRequest":
            entry = m.nested_type.add(name="FlowKeysEntry")
            entry.options.map_entry = True
            entry.field.add(name="key", number=1, type=F.TYPE_STRING, label=OPT)
            entry.field.add(name="value", number=2, type=F.TYPE_STRING, label=OPT)
    for name in ("original/traffic.proto", "original/query.proto", "original/ai.proto"):
        pool.Add(files[name])
    return pool


def _fill(msg, depth: int = 0) -> None:
    """Give every field of ``msg`` a non-default value, derived from the field number."""
    for f in msg.DESCRIPTOR.fields:
        if f.message_type is not None and f.message_type.GetOptions().map_entry:
            getattr(msg, f.name).update({"SrcIP": "192.168.1.104", "DstPort": "443"})
        elif f.type == f.TYPE_MESSAGE:
            if f.message_type.full_name == "google.protobuf.Timestamp":
                sub = getattr(msg, f.name).add() if f.is_repeated else getattr(msg, f.name)
                sub.seconds, sub.nanos = 1_700_000_000 + f.number, 123_456_789
            elif depth < 3:
                sub = getattr(msg, f.name).add() if f.is_repeated else getattr(msg, f.name)
                _fill(sub, depth + 1)
        else:
            if f.type == f.TYPE_STRING:
                value: object = f"{f.name}-ü-{f.number}"
            elif f.type == f.TYPE_BYTES:
                value = bytes(range(f.number, f.number + 16))
            elif f.type == f.TYPE_INT32:
                value = -f.number
            else:
                value = (1 << 40) + f.number if f.type == f.TYPE_UINT64 else 70000 + f.number
            if f.is_repeated:
                getattr(msg, f.name).extend([value, value])
            else:
                setattr(msg, f.name, value)


@pytest.mark.parametrize("message", sorted(ORIGINAL))
def test_exchange_with_original_schema(message: str) -> None:
    pool = _original_pool()
    Original = message_factory.GetMessageClass(pool.FindMessageTypeByName(f"v1.{message}"))
    orig = Original()
    _fill(orig)
    wire = orig.SerializeToString(deterministic=True)
    # original → ours: every field arrives, nothing is unknown
    ours = _ours(message).FromString(wire)
    assert ours.SerializeToString(deterministic=True) == wire
    assert len(UnknownFieldSet(ours)) == 0
    # ours (additions set too) → original: the original's fields are intact, additions are unknown to it
    full = _ours(message)()
    _fill(full)
    back = Original.FromString(full.SerializeToString(deterministic=True))
    n_added = len(full.DESCRIPTOR.fields) - len(ORIGINAL[message])
    assert len({f.field_number for f in UnknownFieldSet(back)}) == n_added
    back.DiscardUnknownFields()
    assert back == orig


def test_raw_original_bytes_parse() -> None:
    # AggregationRequest as the original's query/v2 client sends it, every field set
    raw = (
        lfield(1, timestamp(1_700_000_000, 5))
        + lfield(2, "per_five_tuple")
        + lfield(3, "10.0.0.1")
        + lfield(4, "10.0.0.2")
        + vfield(5, 1234)
        + vfield(6, 80)
        + vfield(7, 6)
    )
    req = query_pb2.AggregationRequest.FromString(raw)
    assert (req.end_time.seconds, req.end_time.nanos, req.task_name) == (1_700_000_000, 5, "per_five_tuple")
    assert (req.src_ip, req.dst_ip) == ("10.0.0.1", "10.0.0.2")
    assert (req.src_port, req.dst_port, req.protocol) == (1234, 80, 6)
    assert not req.HasField("start_time") and req.page_size == 0
    assert req.SerializeToString() == raw  # same bytes back, field order as every protobuf encoder

    hh = query_pb2.HeavyHittersRequest.FromString(
        lfield(1, "cm_src_left") + vfield(2, 2) + lfield(3, timestamp(7, 0)) + vfield(4, -1)
    )
    assert (hh.task_name, hh.type, hh.end_time.seconds, hh.limit) == ("cm_src_left", 2, 7, -1)

    trace = query_pb2.TraceFlowRequest.FromString(
        lfield(1, "per_five_tuple")
        + lfield(2, lfield(1, "SrcIP") + lfield(2, "192.168.1.104"))
        + lfield(2, lfield(1, "DstPort") + lfield(2, "443"))
        + lfield(3, timestamp(9, 1))
    )
    assert dict(trace.flow_keys) == {"SrcIP": "192.168.1.104", "DstPort": "443"}
    assert trace.end_time.seconds == 9

    # responses as our server writes them, read back field by field
    resp = query_pb2.QueryTotalCountsResponse(
        summaries=[query_pb2.TaskSummary(task_name="t", total_bytes=1 << 40, total_packets=3, flow_count=2)]
    )
    summary = lfield(1, "t") + vfield(2, 1 << 40) + vfield(3, 3) + vfield(4, 2)
    assert resp.SerializeToString() == lfield(1, summary)
    life = query_pb2.TraceFlowResponse(lifecycle=query_pb2.FlowLifecycle(total_packets=4, total_bytes=5))
    life.lifecycle.first_seen.seconds = 1
    life.lifecycle.last_seen.seconds = 2
    assert life.SerializeToString() == lfield(
        1, lfield(1, vfield(1, 1)) + lfield(2, vfield(1, 2)) + vfield(3, 4) + vfield(4, 5)
    )
    hitters = query_pb2.HeavyHittersResponse(hitters=[query_pb2.HeavyHitter(flow="10.0.0.1", value=9)])
    assert hitters.SerializeToString() == lfield(1, lfield(1, "10.0.0.1") + vfield(2, 9))
    assert query_pb2.HealthCheckResponse(status="ok").SerializeToString() == lfield(1, "ok")
    tasks = query_pb2.SearchTasksResponse(task_names=["a", "b"])
    assert tasks.SerializeToString() == lfield(1, "a") + lfield(1, "b")
    assert ai_pb2.AnalyzePromptResponse(chunk="x").SerializeToString() == lfield(1, "x")
    assert ai_pb2.AnalyzeTrafficRequest.FromString(lfield(1, "alert")).text_input == "alert"


def test_packet_info_bytes_of_the_original_probe() -> None:
    ft = lfield(1, bytes([10, 0, 0, 1])) + lfield(2, bytes([10, 0, 0, 2])) + vfield(3, 1234) + vfield(4, 80)
    ft += vfield(5, 6)
    raw = lfield(1, timestamp(1_700_000_000, 42)) + lfield(2, ft) + vfield(3, 1514)
    pi = traffic_pb2.PacketInfo.FromString(raw)
    assert pi.five_tuple.src_ip == b"\x0a\x00\x00\x01" and pi.five_tuple.protocol == 6 and pi.length == 1514
    assert pi.SerializeToString() == raw


# ---------------------------------------------------------------------------------------------------
# a real gRPC server: the original's request bytes on the original's paths


def test_grpc_paths_end_to_end() -> None:
    grpc = pytest.importorskip("grpc")

    class Query(query_pb2_grpc.QueryServiceServicer):
        def HealthCheck(self, request, context):  # noqa: N802 (gRPC names)
            return query_pb2.HealthCheckResponse(status="ok")

        def SearchTasks(self, request, context):  # noqa: N802 (gRPC names)
            return query_pb2.SearchTasksResponse(task_names=["per_five_tuple"])

        def AggregateFlows(self, request, context):  # noqa: N802 (gRPC names)
            return query_pb2.QueryTotalCountsResponse(
                summaries=[query_pb2.TaskSummary(task_name=request.task_name, total_packets=request.src_port)]
            )

        def TraceFlow(self, request, context):  # noqa: N802 (gRPC names)
            return query_pb2.TraceFlowResponse(
                lifecycle=query_pb2.FlowLifecycle(total_packets=len(request.flow_keys))
            )

        def QueryHeavyHitters(self, request, context):  # noqa: N802 (gRPC names)
            return query_pb2.HeavyHittersResponse(
                hitters=[query_pb2.HeavyHitter(flow=request.task_name, value=request.type)]
            )

    class AI(ai_pb2_grpc.AIServiceServicer):
        def AnalyzeTraffic(self, request, context):  # noqa: N802 (gRPC names)
            return ai_pb2.AnalyzeTrafficResponse(text_output=request.text_input.upper())

        def AnalyzePromptStream(self, request, context):  # noqa: N802 (gRPC names)
            for word in request.prompt.split():
                yield ai_pb2.AnalyzePromptResponse(chunk=word)

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    query_pb2_grpc.add_QueryServiceServicer_to_server(Query(), server)
    ai_pb2_grpc.add_AIServiceServicer_to_server(AI(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
            # raw bytes in, raw bytes out: nothing of ours on the client side
            def call(path: str, body: bytes) -> bytes:
                return ch.unary_unary(path)(body, timeout=10)

            assert call("/v1.QueryService/HealthCheck", b"") == lfield(1, "ok")
            assert call("/v1.QueryService/SearchTasks", b"") == lfield(1, "per_five_tuple")
            out = call("/v1.QueryService/AggregateFlows", lfield(2, "t1") + vfield(5, 77))
            assert out == lfield(1, lfield(1, "t1") + vfield(3, 77))
            out = call("/v1.QueryService/TraceFlow", lfield(2, lfield(1, "SrcIP") + lfield(2, "1.2.3.4")))
            assert out == lfield(1, vfield(3, 1))
            out = call("/v1.QueryService/QueryHeavyHitters", lfield(1, "cm") + vfield(2, 1))
            assert out == lfield(1, lfield(1, "cm") + vfield(2, 1))
            assert call("/v1.AIService/AnalyzeTraffic", lfield(1, "ddos")) == lfield(1, "DDOS")
            stream = ch.unary_stream("/v1.AIService/AnalyzePromptStream")
            chunks = list(stream(lfield(1, "a b c"), timeout=10))
            assert chunks == [lfield(1, "a"), lfield(1, "b"), lfield(1, "c")]
            # and the generated stub speaks the same paths
            stub = query_pb2_grpc.QueryServiceStub(ch)
            assert stub.HealthCheck(query_pb2.HealthCheckRequest(), timeout=10).status == "ok"
    finally:
        server.stop(grace=None)
