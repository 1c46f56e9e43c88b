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
HEAVY_HITTER_TYPE_COUNT: HeavyHitterType
HEAVY_HITTER_TYPE_SIZE: HeavyHitterType
HEAVY_HITTER_TYPE_SPREAD: HeavyHitterType

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
    __slots__ = ("hitters", "next_page_token")
    HITTERS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    hitters: _containers.RepeatedCompositeFieldContainer[HeavyHitter]
    next_page_token: str
    def __init__(self, hitters: _Optional[_Iterable[_Union[HeavyHitter, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...
