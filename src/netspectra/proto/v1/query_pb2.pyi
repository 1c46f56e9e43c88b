import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class HeavyHitterType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    HEAVY_HITTER_TYPE_COUNT: _ClassVar[HeavyHitterType]
    HEAVY_HITTER_TYPE_SIZE: _ClassVar[HeavyHitterType]
    HEAVY_HITTER_TYPE_SPREAD: _ClassVar[HeavyHitterType]

class FlowOrder(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FLOW_ORDER_FIRST_SEEN: _ClassVar[FlowOrder]
    FLOW_ORDER_LAST_SEEN: _ClassVar[FlowOrder]
    FLOW_ORDER_DURATION: _ClassVar[FlowOrder]
    FLOW_ORDER_BYTES: _ClassVar[FlowOrder]
    FLOW_ORDER_PACKETS: _ClassVar[FlowOrder]

class TopMetric(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TOP_METRIC_BYTES: _ClassVar[TopMetric]
    TOP_METRIC_PACKETS: _ClassVar[TopMetric]
HEAVY_HITTER_TYPE_COUNT: HeavyHitterType
HEAVY_HITTER_TYPE_SIZE: HeavyHitterType
HEAVY_HITTER_TYPE_SPREAD: HeavyHitterType
FLOW_ORDER_FIRST_SEEN: FlowOrder
FLOW_ORDER_LAST_SEEN: FlowOrder
FLOW_ORDER_DURATION: FlowOrder
FLOW_ORDER_BYTES: FlowOrder
FLOW_ORDER_PACKETS: FlowOrder
TOP_METRIC_BYTES: TopMetric
TOP_METRIC_PACKETS: TopMetric

class AggregationRequest(_message.Message):
    __slots__ = ("end_time", "task_name", "src_ip", "dst_ip", "src_port", "dst_port", "protocol", "start_time", "page_size", "page_token")
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    TASK_NAME_FIELD_NUMBER: _ClassVar[int]
    SRC_IP_FIELD_NUMBER: _ClassVar[int]
    DST_IP_FIELD_NUMBER: _ClassVar[int]
    SRC_PORT_FIELD_NUMBER: _ClassVar[int]
    DST_PORT_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    end_time: _timestamp_pb2.Timestamp
    task_name: str
    src_ip: str
    dst_ip: str
    src_port: int
    dst_port: int
    protocol: int
    start_time: _timestamp_pb2.Timestamp
    page_size: int
    page_token: str
    def __init__(self, end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., task_name: _Optional[str] = ..., src_ip: _Optional[str] = ..., dst_ip: _Optional[str] = ..., src_port: _Optional[int] = ..., dst_port: _Optional[int] = ..., protocol: _Optional[int] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class TaskSummary(_message.Message):
    __slots__ = ("task_name", "total_bytes", "total_packets", "flow_count")
    TASK_NAME_FIELD_NUMBER: _ClassVar[int]
    TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    TOTAL_PACKETS_FIELD_NUMBER: _ClassVar[int]
    FLOW_COUNT_FIELD_NUMBER: _ClassVar[int]
    task_name: str
    total_bytes: int
    total_packets: int
    flow_count: int
    def __init__(self, task_name: _Optional[str] = ..., total_bytes: _Optional[int] = ..., total_packets: _Optional[int] = ..., flow_count: _Optional[int] = ...) -> None: ...

class QueryTotalCountsResponse(_message.Message):
    __slots__ = ("summaries", "next_page_token")
    SUMMARIES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    summaries: _containers.RepeatedCompositeFieldContainer[TaskSummary]
    next_page_token: str
    def __init__(self, summaries: _Optional[_Iterable[_Union[TaskSummary, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class TraceFlowRequest(_message.Message):
    __slots__ = ("task_name", "flow_keys", "end_time", "start_time", "page_size", "page_token")
    class FlowKeysEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    TASK_NAME_FIELD_NUMBER: _ClassVar[int]
    FLOW_KEYS_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    task_name: str
    flow_keys: _containers.ScalarMap[str, str]
    end_time: _timestamp_pb2.Timestamp
    start_time: _timestamp_pb2.Timestamp
    page_size: int
    page_token: str
    def __init__(self, task_name: _Optional[str] = ..., flow_keys: _Optional[_Mapping[str, str]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class FlowLifecycle(_message.Message):
    __slots__ = ("first_seen", "last_seen", "total_packets", "total_bytes")
    FIRST_SEEN_FIELD_NUMBER: _ClassVar[int]
    LAST_SEEN_FIELD_NUMBER: _ClassVar[int]
    TOTAL_PACKETS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    first_seen: _timestamp_pb2.Timestamp
    last_seen: _timestamp_pb2.Timestamp
    total_packets: int
    total_bytes: int
    def __init__(self, first_seen: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_seen: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., total_packets: _Optional[int] = ..., total_bytes: _Optional[int] = ...) -> None: ...

class FlowDetail(_message.Message):
    __slots__ = ("flow_keys", "lifecycle")
    class FlowKeysEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    FLOW_KEYS_FIELD_NUMBER: _ClassVar[int]
    LIFECYCLE_FIELD_NUMBER: _ClassVar[int]
    flow_keys: _containers.ScalarMap[str, str]
    lifecycle: FlowLifecycle
    def __init__(self, flow_keys: _Optional[_Mapping[str, str]] = ..., lifecycle: _Optional[_Union[FlowLifecycle, _Mapping]] = ...) -> None: ...

class TraceFlowResponse(_message.Message):
    __slots__ = ("lifecycle", "flows", "next_page_token")
    LIFECYCLE_FIELD_NUMBER: _ClassVar[int]
    FLOWS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    lifecycle: FlowLifecycle
    flows: _containers.RepeatedCompositeFieldContainer[FlowDetail]
    next_page_token: str
    def __init__(self, lifecycle: _Optional[_Union[FlowLifecycle, _Mapping]] = ..., flows: _Optional[_Iterable[_Union[FlowDetail, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class HealthCheckRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class HealthCheckResponse(_message.Message):
    __slots__ = ("status",)
    STATUS_FIELD_NUMBER: _ClassVar[int]
    status: str
    def __init__(self, status: _Optional[str] = ...) -> None: ...

class SearchTasksRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class SearchTasksResponse(_message.Message):
    __slots__ = ("task_names",)
    TASK_NAMES_FIELD_NUMBER: _ClassVar[int]
    task_names: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, task_names: _Optional[_Iterable[str]] = ...) -> None: ...

class HeavyHittersRequest(_message.Message):
    __slots__ = ("task_name", "type", "end_time", "limit", "start_time", "page_size", "page_token")
    TASK_NAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    task_name: str
    type: int
    end_time: _timestamp_pb2.Timestamp
    limit: int
    start_time: _timestamp_pb2.Timestamp
    page_size: int
    page_token: str
    def __init__(self, task_name: _Optional[str] = ..., type: _Optional[int] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., limit: _Optional[int] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class HeavyHitter(_message.Message):
    __slots__ = ("flow", "value")
    FLOW_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    flow: str
    value: int
    def __init__(self, flow: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...

class HeavyHittersResponse(_message.Message):
    __slots__ = ("hitters", "next_page_token", "reason")
    HITTERS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    hitters: _containers.RepeatedCompositeFieldContainer[HeavyHitter]
    next_page_token: str
    reason: str
    def __init__(self, hitters: _Optional[_Iterable[_Union[HeavyHitter, _Mapping]]] = ..., next_page_token: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class ListFlowsRequest(_message.Message):
    __slots__ = ("task_name", "start_time", "end_time", "src_ip", "dst_ip", "host", "src_port", "dst_port", "port", "protocol", "vlan_id", "end_reasons", "conn_states", "min_bytes", "order_by", "descending", "page_size", "page_token")
    TASK_NAME_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    SRC_IP_FIELD_NUMBER: _ClassVar[int]
    DST_IP_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    SRC_PORT_FIELD_NUMBER: _ClassVar[int]
    DST_PORT_FIELD_NUMBER: _ClassVar[int]
    PORT_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    VLAN_ID_FIELD_NUMBER: _ClassVar[int]
    END_REASONS_FIELD_NUMBER: _ClassVar[int]
    CONN_STATES_FIELD_NUMBER: _ClassVar[int]
    MIN_BYTES_FIELD_NUMBER: _ClassVar[int]
    ORDER_BY_FIELD_NUMBER: _ClassVar[int]
    DESCENDING_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    task_name: str
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    src_ip: str
    dst_ip: str
    host: str
    src_port: int
    dst_port: int
    port: int
    protocol: int
    vlan_id: int
    end_reasons: _containers.RepeatedScalarFieldContainer[str]
    conn_states: _containers.RepeatedScalarFieldContainer[str]
    min_bytes: int
    order_by: FlowOrder
    descending: bool
    page_size: int
    page_token: str
    def __init__(self, task_name: _Optional[str] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., src_ip: _Optional[str] = ..., dst_ip: _Optional[str] = ..., host: _Optional[str] = ..., src_port: _Optional[int] = ..., dst_port: _Optional[int] = ..., port: _Optional[int] = ..., protocol: _Optional[int] = ..., vlan_id: _Optional[int] = ..., end_reasons: _Optional[_Iterable[str]] = ..., conn_states: _Optional[_Iterable[str]] = ..., min_bytes: _Optional[int] = ..., order_by: _Optional[_Union[FlowOrder, str]] = ..., descending: _Optional[bool] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class FlowRecord(_message.Message):
    __slots__ = ("task_name", "src_ip", "dst_ip", "src_port", "dst_port", "protocol", "vlan_id", "first_seen", "last_seen", "duration_ns", "src_to_dst_packets", "src_to_dst_bytes", "dst_to_src_packets", "dst_to_src_bytes", "end_reason", "conn_state", "src_to_dst_ip_bytes", "dst_to_src_ip_bytes", "src_to_dst_tcp_flags", "dst_to_src_tcp_flags", "src_to_dst_syn", "src_to_dst_fin", "src_to_dst_rst", "dst_to_src_syn", "dst_to_src_fin", "dst_to_src_rst", "src_to_dst_icmp_type_code", "dst_to_src_icmp_type_code", "src_to_dst_size_min", "src_to_dst_size_max", "src_to_dst_size_mean", "src_to_dst_size_stddev", "src_to_dst_iat_min_ns", "src_to_dst_iat_max_ns", "src_to_dst_iat_mean_ns", "src_to_dst_iat_stddev_ns", "dst_to_src_size_min", "dst_to_src_size_max", "dst_to_src_size_mean", "dst_to_src_size_stddev", "dst_to_src_iat_min_ns", "dst_to_src_iat_max_ns", "dst_to_src_iat_mean_ns", "dst_to_src_iat_stddev_ns", "splt_size", "splt_direction")
    TASK_NAME_FIELD_NUMBER: _ClassVar[int]
    SRC_IP_FIELD_NUMBER: _ClassVar[int]
    DST_IP_FIELD_NUMBER: _ClassVar[int]
    SRC_PORT_FIELD_NUMBER: _ClassVar[int]
    DST_PORT_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    VLAN_ID_FIELD_NUMBER: _ClassVar[int]
    FIRST_SEEN_FIELD_NUMBER: _ClassVar[int]
    LAST_SEEN_FIELD_NUMBER: _ClassVar[int]
    DURATION_NS_FIELD_NUMBER: _ClassVar[int]
    SRC_TO_DST_PACKETS_FIELD_NUMBER: _ClassVar[int]
    SRC_TO_DST_BYTES_FIELD_NUMBER: _ClassVar[int]
    DST_TO_SRC_PACKETS_FIELD_NUMBER: _ClassVar[int]
    DST_TO_SRC_BYTES_FIELD_NUMBER: _ClassVar[int]
    END_REASON_FIELD_NUMBER: _ClassVar[int]
    CONN_STATE_FIELD_NUMBER: _ClassVar[int]
    SRC_TO_DST_IP_BYTES_FIELD_NUMBER: _ClassVar[int]
    DST_TO_SRC_IP_BYTES_FIELD_NUMBER: _ClassVar[int]
    SRC_TO_DST_TCP_FLAGS_FIELD_NUMBER: _ClassVar[int]
    DST_TO_SRC_TCP_FLAGS_FIELD_NUMBER: _ClassVar[int]
    SRC_TO_DST_SYN_FIELD_NUMBER: _ClassVar[int]
    SRC_TO_DST_FIN_FIELD_NUMBER: _ClassVar[int]
    SRC_TO_DST_RST_FIELD_NUMBER: _ClassVar[int]
    DST_TO_SRC_SYN_FIELD_NUMBER: _ClassVar[int]
    DST_TO_SRC_FIN_FIELD_NUMBER: _ClassVar[int]
    DST_TO_SRC_RST_FIELD_NUMBER: _ClassVar[int]
    SRC_TO_DST_ICMP_TYPE_CODE_FIELD_NUMBER: _ClassVar[int]
    DST_TO_SRC_ICMP_TYPE_CODE_FIELD_NUMBER: _ClassVar[int]
    SRC_TO_DST_SIZE_MIN_FIELD_NUMBER: _ClassVar[int]
    SRC_TO_DST_SIZE_MAX_FIELD_NUMBER: _ClassVar[int]
    SRC_TO_DST_SIZE_MEAN_FIELD_NUMBER: _ClassVar[int]
    SRC_TO_DST_SIZE_STDDEV_FIELD_NUMBER: _ClassVar[int]
    SRC_TO_DST_IAT_MIN_NS_FIELD_NUMBER: _ClassVar[int]
    SRC_TO_DST_IAT_MAX_NS_FIELD_NUMBER: _ClassVar[int]
    SRC_TO_DST_IAT_MEAN_NS_FIELD_NUMBER: _ClassVar[int]
    SRC_TO_DST_IAT_STDDEV_NS_FIELD_NUMBER: _ClassVar[int]
    DST_TO_SRC_SIZE_MIN_FIELD_NUMBER: _ClassVar[int]
    DST_TO_SRC_SIZE_MAX_FIELD_NUMBER: _ClassVar[int]
    DST_TO_SRC_SIZE_MEAN_FIELD_NUMBER: _ClassVar[int]
    DST_TO_SRC_SIZE_STDDEV_FIELD_NUMBER: _ClassVar[int]
    DST_TO_SRC_IAT_MIN_NS_FIELD_NUMBER: _ClassVar[int]
    DST_TO_SRC_IAT_MAX_NS_FIELD_NUMBER: _ClassVar[int]
    DST_TO_SRC_IAT_MEAN_NS_FIELD_NUMBER: _ClassVar[int]
    DST_TO_SRC_IAT_STDDEV_NS_FIELD_NUMBER: _ClassVar[int]
    SPLT_SIZE_FIELD_NUMBER: _ClassVar[int]
    SPLT_DIRECTION_FIELD_NUMBER: _ClassVar[int]
    task_name: str
    src_ip: str
    dst_ip: str
    src_port: int
    dst_port: int
    protocol: int
    vlan_id: int
    first_seen: _timestamp_pb2.Timestamp
    last_seen: _timestamp_pb2.Timestamp
    duration_ns: int
    src_to_dst_packets: int
    src_to_dst_bytes: int
    dst_to_src_packets: int
    dst_to_src_bytes: int
    end_reason: str
    conn_state: str
    src_to_dst_ip_bytes: int
    dst_to_src_ip_bytes: int
    src_to_dst_tcp_flags: int
    dst_to_src_tcp_flags: int
    src_to_dst_syn: int
    src_to_dst_fin: int
    src_to_dst_rst: int
    dst_to_src_syn: int
    dst_to_src_fin: int
    dst_to_src_rst: int
    src_to_dst_icmp_type_code: int
    dst_to_src_icmp_type_code: int
    src_to_dst_size_min: int
    src_to_dst_size_max: int
    src_to_dst_size_mean: float
    src_to_dst_size_stddev: float
    src_to_dst_iat_min_ns: int
    src_to_dst_iat_max_ns: int
    src_to_dst_iat_mean_ns: int
    src_to_dst_iat_stddev_ns: int
    dst_to_src_size_min: int
    dst_to_src_size_max: int
    dst_to_src_size_mean: float
    dst_to_src_size_stddev: float
    dst_to_src_iat_min_ns: int
    dst_to_src_iat_max_ns: int
    dst_to_src_iat_mean_ns: int
    dst_to_src_iat_stddev_ns: int
    splt_size: _containers.RepeatedScalarFieldContainer[int]
    splt_direction: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, task_name: _Optional[str] = ..., src_ip: _Optional[str] = ..., dst_ip: _Optional[str] = ..., src_port: _Optional[int] = ..., dst_port: _Optional[int] = ..., protocol: _Optional[int] = ..., vlan_id: _Optional[int] = ..., first_seen: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_seen: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., duration_ns: _Optional[int] = ..., src_to_dst_packets: _Optional[int] = ..., src_to_dst_bytes: _Optional[int] = ..., dst_to_src_packets: _Optional[int] = ..., dst_to_src_bytes: _Optional[int] = ..., end_reason: _Optional[str] = ..., conn_state: _Optional[str] = ..., src_to_dst_ip_bytes: _Optional[int] = ..., dst_to_src_ip_bytes: _Optional[int] = ..., src_to_dst_tcp_flags: _Optional[int] = ..., dst_to_src_tcp_flags: _Optional[int] = ..., src_to_dst_syn: _Optional[int] = ..., src_to_dst_fin: _Optional[int] = ..., src_to_dst_rst: _Optional[int] = ..., dst_to_src_syn: _Optional[int] = ..., dst_to_src_fin: _Optional[int] = ..., dst_to_src_rst: _Optional[int] = ..., src_to_dst_icmp_type_code: _Optional[int] = ..., dst_to_src_icmp_type_code: _Optional[int] = ..., src_to_dst_size_min: _Optional[int] = ..., src_to_dst_size_max: _Optional[int] = ..., src_to_dst_size_mean: _Optional[float] = ..., src_to_dst_size_stddev: _Optional[float] = ..., src_to_dst_iat_min_ns: _Optional[int] = ..., src_to_dst_iat_max_ns: _Optional[int] = ..., src_to_dst_iat_mean_ns: _Optional[int] = ..., src_to_dst_iat_stddev_ns: _Optional[int] = ..., dst_to_src_size_min: _Optional[int] = ..., dst_to_src_size_max: _Optional[int] = ..., dst_to_src_size_mean: _Optional[float] = ..., dst_to_src_size_stddev: _Optional[float] = ..., dst_to_src_iat_min_ns: _Optional[int] = ..., dst_to_src_iat_max_ns: _Optional[int] = ..., dst_to_src_iat_mean_ns: _Optional[int] = ..., dst_to_src_iat_stddev_ns: _Optional[int] = ..., splt_size: _Optional[_Iterable[int]] = ..., splt_direction: _Optional[_Iterable[int]] = ...) -> None: ...

class ListFlowsResponse(_message.Message):
    __slots__ = ("flows", "next_page_token", "total")
    FLOWS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    flows: _containers.RepeatedCompositeFieldContainer[FlowRecord]
    next_page_token: str
    total: int
    def __init__(self, flows: _Optional[_Iterable[_Union[FlowRecord, _Mapping]]] = ..., next_page_token: _Optional[str] = ..., total: _Optional[int] = ...) -> None: ...

class DimensionFilter(_message.Message):
    __slots__ = ("dimension", "values", "exclude")
    DIMENSION_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    EXCLUDE_FIELD_NUMBER: _ClassVar[int]
    dimension: str
    values: _containers.RepeatedScalarFieldContainer[str]
    exclude: bool
    def __init__(self, dimension: _Optional[str] = ..., values: _Optional[_Iterable[str]] = ..., exclude: _Optional[bool] = ...) -> None: ...

class TopNRequest(_message.Message):
    __slots__ = ("dimension", "metric", "filters", "start_time", "end_time", "limit", "task_name", "resolution_seconds")
    DIMENSION_FIELD_NUMBER: _ClassVar[int]
    METRIC_FIELD_NUMBER: _ClassVar[int]
    FILTERS_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    TASK_NAME_FIELD_NUMBER: _ClassVar[int]
    RESOLUTION_SECONDS_FIELD_NUMBER: _ClassVar[int]
    dimension: str
    metric: TopMetric
    filters: _containers.RepeatedCompositeFieldContainer[DimensionFilter]
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    limit: int
    task_name: str
    resolution_seconds: int
    def __init__(self, dimension: _Optional[str] = ..., metric: _Optional[_Union[TopMetric, str]] = ..., filters: _Optional[_Iterable[_Union[DimensionFilter, _Mapping]]] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., limit: _Optional[int] = ..., task_name: _Optional[str] = ..., resolution_seconds: _Optional[int] = ...) -> None: ...

class TopNEntry(_message.Message):
    __slots__ = ("value", "packets", "bytes")
    VALUE_FIELD_NUMBER: _ClassVar[int]
    PACKETS_FIELD_NUMBER: _ClassVar[int]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    value: str
    packets: int
    bytes: int
    def __init__(self, value: _Optional[str] = ..., packets: _Optional[int] = ..., bytes: _Optional[int] = ...) -> None: ...

class TopNResponse(_message.Message):
    __slots__ = ("entries", "total_packets", "total_bytes", "distinct_values", "task_name", "table", "resolution_seconds", "start_time", "end_time", "reason")
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    TOTAL_PACKETS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    DISTINCT_VALUES_FIELD_NUMBER: _ClassVar[int]
    TASK_NAME_FIELD_NUMBER: _ClassVar[int]
    TABLE_FIELD_NUMBER: _ClassVar[int]
    RESOLUTION_SECONDS_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[TopNEntry]
    total_packets: int
    total_bytes: int
    distinct_values: int
    task_name: str
    table: str
    resolution_seconds: int
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    reason: str
    def __init__(self, entries: _Optional[_Iterable[_Union[TopNEntry, _Mapping]]] = ..., total_packets: _Optional[int] = ..., total_bytes: _Optional[int] = ..., distinct_values: _Optional[int] = ..., task_name: _Optional[str] = ..., table: _Optional[str] = ..., resolution_seconds: _Optional[int] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., reason: _Optional[str] = ...) -> None: ...

class ListExportersRequest(_message.Message):
    __slots__ = ("task_name", "start_time", "end_time")
    TASK_NAME_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    task_name: str
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    def __init__(self, task_name: _Optional[str] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class SamplingRateRecords(_message.Message):
    __slots__ = ("rate", "records")
    RATE_FIELD_NUMBER: _ClassVar[int]
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    rate: int
    records: int
    def __init__(self, rate: _Optional[int] = ..., records: _Optional[int] = ...) -> None: ...

class Exporter(_message.Message):
    __slots__ = ("task_name", "address", "first_seen", "last_seen", "records", "packets", "bytes", "sampling_rates", "records_without_sampling_rate")
    TASK_NAME_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    FIRST_SEEN_FIELD_NUMBER: _ClassVar[int]
    LAST_SEEN_FIELD_NUMBER: _ClassVar[int]
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    PACKETS_FIELD_NUMBER: _ClassVar[int]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    SAMPLING_RATES_FIELD_NUMBER: _ClassVar[int]
    RECORDS_WITHOUT_SAMPLING_RATE_FIELD_NUMBER: _ClassVar[int]
    task_name: str
    address: str
    first_seen: _timestamp_pb2.Timestamp
    last_seen: _timestamp_pb2.Timestamp
    records: int
    packets: int
    bytes: int
    sampling_rates: _containers.RepeatedCompositeFieldContainer[SamplingRateRecords]
    records_without_sampling_rate: int
    def __init__(self, task_name: _Optional[str] = ..., address: _Optional[str] = ..., first_seen: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_seen: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., records: _Optional[int] = ..., packets: _Optional[int] = ..., bytes: _Optional[int] = ..., sampling_rates: _Optional[_Iterable[_Union[SamplingRateRecords, _Mapping]]] = ..., records_without_sampling_rate: _Optional[int] = ...) -> None: ...

class ListExportersResponse(_message.Message):
    __slots__ = ("exporters", "reason")
    EXPORTERS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    exporters: _containers.RepeatedCompositeFieldContainer[Exporter]
    reason: str
    def __init__(self, exporters: _Optional[_Iterable[_Union[Exporter, _Mapping]]] = ..., reason: _Optional[str] = ...) -> None: ...
