import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class FiveTuple(_message.Message):
    __slots__ = ("src_ip", "dst_ip", "src_port", "dst_port", "protocol")
    SRC_IP_FIELD_NUMBER: _ClassVar[int]
    DST_IP_FIELD_NUMBER: _ClassVar[int]
    SRC_PORT_FIELD_NUMBER: _ClassVar[int]
    DST_PORT_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    src_ip: bytes
    dst_ip: bytes
    src_port: int
    dst_port: int
    protocol: int
    def __init__(self, src_ip: _Optional[bytes] = ..., dst_ip: _Optional[bytes] = ..., src_port: _Optional[int] = ..., dst_port: _Optional[int] = ..., protocol: _Optional[int] = ...) -> None: ...

class PacketInfo(_message.Message):
    __slots__ = ("timestamp", "five_tuple", "length")
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    FIVE_TUPLE_FIELD_NUMBER: _ClassVar[int]
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    timestamp: _timestamp_pb2.Timestamp
    five_tuple: FiveTuple
    length: int
    def __init__(self, timestamp: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., five_tuple: _Optional[_Union[FiveTuple, _Mapping]] = ..., length: _Optional[int] = ...) -> None: ...

class PacketBatch(_message.Message):
    __slots__ = ("version", "count", "seq", "probe_id", "shard", "n_shards", "link_type", "kernel_dropped", "probe_dropped", "skipped", "shard_packets", "ts_base", "compression", "packed_size", "padding", "ts_ns", "src_ip", "dst_ip", "src_port", "dst_port", "protocol", "length", "tcp_flags", "vlan_id", "icmp_type_code", "ip_length", "packets", "octets", "sampling_rate", "flow_start_ns", "in_if", "out_if", "exporter", "packed", "ts_delta", "length16", "src_ip4", "dst_ip4", "ip6_rows", "src_ip6", "dst_ip6")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    PROBE_ID_FIELD_NUMBER: _ClassVar[int]
    SHARD_FIELD_NUMBER: _ClassVar[int]
    N_SHARDS_FIELD_NUMBER: _ClassVar[int]
    LINK_TYPE_FIELD_NUMBER: _ClassVar[int]
    KERNEL_DROPPED_FIELD_NUMBER: _ClassVar[int]
    PROBE_DROPPED_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_FIELD_NUMBER: _ClassVar[int]
    SHARD_PACKETS_FIELD_NUMBER: _ClassVar[int]
    TS_BASE_FIELD_NUMBER: _ClassVar[int]
    COMPRESSION_FIELD_NUMBER: _ClassVar[int]
    PACKED_SIZE_FIELD_NUMBER: _ClassVar[int]
    PADDING_FIELD_NUMBER: _ClassVar[int]
    TS_NS_FIELD_NUMBER: _ClassVar[int]
    SRC_IP_FIELD_NUMBER: _ClassVar[int]
    DST_IP_FIELD_NUMBER: _ClassVar[int]
    SRC_PORT_FIELD_NUMBER: _ClassVar[int]
    DST_PORT_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    TCP_FLAGS_FIELD_NUMBER: _ClassVar[int]
    VLAN_ID_FIELD_NUMBER: _ClassVar[int]
    ICMP_TYPE_CODE_FIELD_NUMBER: _ClassVar[int]
    IP_LENGTH_FIELD_NUMBER: _ClassVar[int]
    PACKETS_FIELD_NUMBER: _ClassVar[int]
    OCTETS_FIELD_NUMBER: _ClassVar[int]
    SAMPLING_RATE_FIELD_NUMBER: _ClassVar[int]
    FLOW_START_NS_FIELD_NUMBER: _ClassVar[int]
    IN_IF_FIELD_NUMBER: _ClassVar[int]
    OUT_IF_FIELD_NUMBER: _ClassVar[int]
    EXPORTER_FIELD_NUMBER: _ClassVar[int]
    PACKED_FIELD_NUMBER: _ClassVar[int]
    TS_DELTA_FIELD_NUMBER: _ClassVar[int]
    LENGTH16_FIELD_NUMBER: _ClassVar[int]
    SRC_IP4_FIELD_NUMBER: _ClassVar[int]
    DST_IP4_FIELD_NUMBER: _ClassVar[int]
    IP6_ROWS_FIELD_NUMBER: _ClassVar[int]
    SRC_IP6_FIELD_NUMBER: _ClassVar[int]
    DST_IP6_FIELD_NUMBER: _ClassVar[int]
    version: int
    count: int
    seq: int
    probe_id: str
    shard: int
    n_shards: int
    link_type: int
    kernel_dropped: int
    probe_dropped: int
    skipped: int
    shard_packets: int
    ts_base: int
    compression: int
    packed_size: int
    padding: bytes
    ts_ns: bytes
    src_ip: bytes
    dst_ip: bytes
    src_port: bytes
    dst_port: bytes
    protocol: bytes
    length: bytes
    tcp_flags: bytes
    vlan_id: bytes
    icmp_type_code: bytes
    ip_length: bytes
    packets: bytes
    octets: bytes
    sampling_rate: bytes
    flow_start_ns: bytes
    in_if: bytes
    out_if: bytes
    exporter: bytes
    packed: bytes
    ts_delta: bytes
    length16: bytes
    src_ip4: bytes
    dst_ip4: bytes
    ip6_rows: bytes
    src_ip6: bytes
    dst_ip6: bytes
    def __init__(self, version: _Optional[int] = ..., count: _Optional[int] = ..., seq: _Optional[int] = ..., probe_id: _Optional[str] = ..., shard: _Optional[int] = ..., n_shards: _Optional[int] = ..., link_type: _Optional[int] = ..., kernel_dropped: _Optional[int] = ..., probe_dropped: _Optional[int] = ..., skipped: _Optional[int] = ..., shard_packets: _Optional[int] = ..., ts_base: _Optional[int] = ..., compression: _Optional[int] = ..., packed_size: _Optional[int] = ..., padding: _Optional[bytes] = ..., ts_ns: _Optional[bytes] = ..., src_ip: _Optional[bytes] = ..., dst_ip: _Optional[bytes] = ..., src_port: _Optional[bytes] = ..., dst_port: _Optional[bytes] = ..., protocol: _Optional[bytes] = ..., length: _Optional[bytes] = ..., tcp_flags: _Optional[bytes] = ..., vlan_id: _Optional[bytes] = ..., icmp_type_code: _Optional[bytes] = ..., ip_length: _Optional[bytes] = ..., packets: _Optional[bytes] = ..., octets: _Optional[bytes] = ..., sampling_rate: _Optional[bytes] = ..., flow_start_ns: _Optional[bytes] = ..., in_if: _Optional[bytes] = ..., out_if: _Optional[bytes] = ..., exporter: _Optional[bytes] = ..., packed: _Optional[bytes] = ..., ts_delta: _Optional[bytes] = ..., length16: _Optional[bytes] = ..., src_ip4: _Optional[bytes] = ..., dst_ip4: _Optional[bytes] = ..., ip6_rows: _Optional[bytes] = ..., src_ip6: _Optional[bytes] = ..., dst_ip6: _Optional[bytes] = ...) -> None: ...
