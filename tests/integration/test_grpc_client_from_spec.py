"""A client written only from the original's contract (spec §1: messages, fields, numbers, service),
compiled here with ``grpc_tools.protoc`` into a temporary folder, calls every RPC of NetSpectra's server.

The spec client runs in a subprocess of its own: its ``v1.*`` messages would clash with NetSpectra's in
this process's descriptor pool (same full names, other file names). The server runs in this process on
127.0.0.1 over a chdb store filled from ``gnutella.pcap`` through the engine (one snapshot).
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from netspectra.api.grpc_service import QueryCore, create_grpc_server
from netspectra.batch import PacketBatch
from netspectra.capture.reader import read_captures
from netspectra.config import parse_config_text
from netspectra.engine.manager import Manager, ManualClock

pytest.importorskip("grpc_tools", reason="grpcio-tools is not installed (pip install grpcio-tools)")

ROOT = Path(__file__).resolve().parents[2]
CAPTURE = ROOT / "tests" / "data" / "captures" / "gnutella.pcap"
GOLDEN = json.loads((ROOT / "tests" / "golden" / "expected" / "gnutella.pcap.summary.json").read_text())
T0_S = 1_704_067_200

# Spec §1, "query", transcribed: the original's messages only (no NetSpectra additions).
SPEC_PROTO = """
syntax = "proto3";
package v1;
import "google/protobuf/timestamp.proto";

message AggregationRequest {
  google.protobuf.Timestamp end_time = 1;
  string task_name = 2;
  string src_ip = 3;
  string dst_ip = 4;
  uint32 src_port = 5;
  uint32 dst_port = 6;
  uint32 protocol = 7;
}
message TaskSummary {
  string task_name = 1;
  uint64 total_bytes = 2;
  uint64 total_packets = 3;
  uint64 flow_count = 4;
}
message QueryTotalCountsResponse { repeated TaskSummary summaries = 1; }
message TraceFlowRequest {
  string task_name = 1;
  map<string, string> flow_keys = 2;
  google.protobuf.Timestamp end_time = 3;
}
message FlowLifecycle {
  google.protobuf.Timestamp first_seen = 1;
  google.protobuf.Timestamp last_seen = 2;
  uint64 total_packets = 3;
  uint64 total_bytes = 4;
}
message TraceFlowResponse { FlowLifecycle lifecycle = 1; }
message HealthCheckRequest {}
message HealthCheckResponse { string status = 1; }
message SearchTasksRequest {}
message SearchTasksResponse { repeated string task_names = 1; }
message HeavyHittersRequest {
  string task_name = 1;
  int32 type = 2;
  google.protobuf.Timestamp end_time = 3;
  int32 limit = 4;
}
message HeavyHitter { string flow = 1; uint64 value = 2; }
message HeavyHittersResponse { repeated HeavyHitter hitters = 1; }

service QueryService {
  rpc HealthCheck(HealthCheckRequest) returns (HealthCheckResponse);
  rpc SearchTasks(SearchTasksRequest) returns (SearchTasksResponse);
  rpc AggregateFlows(AggregationRequest) returns (QueryTotalCountsResponse);
  rpc TraceFlow(TraceFlowRequest) returns (TraceFlowResponse);
  rpc QueryHeavyHitters(HeavyHittersRequest) returns (HeavyHittersResponse);
}
"""

CLIENT = """
import json, sys
import grpc
from google.protobuf.timestamp_pb2 import Timestamp
sys.path.insert(0, sys.argv[1])
from v1 import query_pb2 as pb, query_pb2_grpc as rpc
assert "netspectra" not in sys.modules
stub = rpc.QueryServiceStub(grpc.insecure_channel(sys.argv[2]))
out = {}
out["health"] = stub.HealthCheck(pb.HealthCheckRequest(), timeout=30).status
out["tasks"] = list(stub.SearchTasks(pb.SearchTasksRequest(), timeout=30).task_names)
agg = stub.AggregateFlows(pb.AggregationRequest(), timeout=30)
out["aggregate"] = {s.task_name: [s.total_packets, s.total_bytes, s.flow_count] for s in agg.summaries}
end = Timestamp(seconds=int(sys.argv[3]))
req = pb.AggregationRequest(task_name="per_five_tuple", src_ip="10.0.2.15", end_time=end)
agg = stub.AggregateFlows(req, timeout=30)
out["filtered"] = [[s.task_name, s.total_packets] for s in agg.summaries]
req = pb.TraceFlowRequest(task_name="per_src", flow_keys={"SrcIP": "10.0.2.15"}, end_time=end)
tr = stub.TraceFlow(req, timeout=30)
lc = tr.lifecycle
out["trace"] = [lc.first_seen.ToNanoseconds(), lc.last_seen.ToNanoseconds(), lc.total_packets, lc.total_bytes]
hh = stub.QueryHeavyHitters(pb.HeavyHittersRequest(task_name="ss", type=2, limit=1), timeout=30)
out["spread"] = [[h.flow, h.value] for h in hh.hitters]
hh = stub.QueryHeavyHitters(pb.HeavyHittersRequest(task_name="cm", type=0), timeout=30)  # limit 0
out["count"] = [[h.flow, h.value] for h in hh.hitters]
try:
    stub.TraceFlow(pb.TraceFlowRequest(task_name="per_src", flow_keys={"Bogus": "1"}), timeout=30)
except grpc.RpcError as exc:
    out["error"] = [exc.code().name, exc.details()]
print(json.dumps(out))
"""


def config_text(data_dir: str, database: str) -> str:
    ch = f"{{data_dir: {json.dumps(data_dir)}, database: {database}}}"
    writer = f"[{{type: clickhouse, enabled: true, snapshot_interval: 60s, clickhouse: {ch}}}]"
    return (
        "aggregator:\n  types: [exact, sketch]\n  num_workers: 2\n"
        f"  exact:\n    writers: {writer}\n"
        "    tasks:\n      - {name: per_five_tuple, key_fields: [SrcIP, DstIP, SrcPort, DstPort, Protocol]}\n"
        "      - {name: per_src, key_fields: [SrcIP]}\n"
        f"  sketch:\n    writers: {writer}\n"
        "    tasks:\n      - {name: ss, skt_type: 1, flow_fields: [SrcIP], element_fields: [DstIP],\n"
        "         width: 4096, depth: 2, count_thereshold: 5, m: 128, size: 5, b: 1.08, base: 0.5, seed: 3}\n"
        "      - {name: cm, skt_type: 0, flow_fields: [SrcIP], width: 4096, depth: 2,\n"
        "         size_thereshold: 1000, count_thereshold: 10, seed: 5}\n"
    )


@pytest.fixture(scope="module")
def server_addr(chdb_data_dir: Path) -> Iterator[str]:
    cfg = parse_config_text(config_text(str(chdb_data_dir), f"ns_spec_{uuid.uuid4().hex[:10]}"))
    clock = ManualClock(T0_S * 10**9)
    manager = Manager.from_config(cfg, clock=clock)
    manager.start()
    try:
        manager.submit(PacketBatch.concat(list(read_captures([CAPTURE]))))
        assert manager.flush(60)
        clock.advance(60)
        assert manager.settle(60)
    finally:
        manager.stop()
    core = QueryCore(cfg)
    server, port, _ = create_grpc_server(core, "127.0.0.1:0", max_workers=4)
    server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.stop(1).wait()
        core.close()


def compile_spec(tmp: Path) -> Path:
    src = tmp / "proto" / "v1"
    src.mkdir(parents=True)
    (src / "query.proto").write_text(SPEC_PROTO)
    out = tmp / "gen"
    (out / "v1").mkdir(parents=True)
    (out / "v1" / "__init__.py").write_text("")
    res = subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", f"-I{tmp / 'proto'}", f"--python_out={out}",
         f"--grpc_python_out={out}", "v1/query.proto"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    return out


def test_spec_client_calls_every_rpc(server_addr: str, tmp_path: Path) -> None:
    gen = compile_spec(tmp_path)
    res = subprocess.run(
        [sys.executable, "-c", CLIENT, str(gen), server_addr, str(T0_S + 60)],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    got = json.loads(res.stdout)
    assert got["health"] == "ok"
    assert got["tasks"] == ["per_five_tuple", "per_src", "ss", "cm"]
    assert got["aggregate"]["per_five_tuple"] == [GOLDEN["ip_packets"], GOLDEN["ip_bytes"], GOLDEN["flows"]]
    assert got["aggregate"]["per_src"][:2] == [GOLDEN["ip_packets"], GOLDEN["ip_bytes"]]
    batch = PacketBatch.concat(list(read_captures([CAPTURE])))
    mapped = np.frombuffer(b"\x00" * 10 + b"\xff\xff" + bytes([10, 0, 2, 15]), np.uint8)
    mine = (batch.src_ip == mapped).all(axis=1)
    assert got["filtered"] == [["per_five_tuple", int(mine.sum())]]  # the filter the original ignored
    first, last, packets, nbytes = got["trace"]
    assert (packets, nbytes) == (int(mine.sum()), int(batch.length[mine].sum()))
    assert (first, last) == (int(batch.ts_ns[mine].min()), int(batch.ts_ns[mine].max()))
    assert got["spread"][0][0] == "10.0.2.15" and got["spread"][0][1] > 300
    assert 0 < len(got["count"]) <= 10  # limit 0: the server's default (the original answered nothing)
    assert got["error"] == ["INVALID_ARGUMENT", "unsupported flow key: Bogus"]
