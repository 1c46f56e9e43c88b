"""The ``ListFlows`` wire contract agrees with the stored records: every record column has its
``FlowRecord`` field (of a type that holds it), and ``FlowOrder`` numbers the orders of ``list_flows``."""

from __future__ import annotations

import pyarrow as pa
import pytest

pytest.importorskip("grpc")

from google.protobuf.descriptor import FieldDescriptor

from netspectra.api.grpc_service import _proto_field
from netspectra.proto.v1 import query_pb2
from netspectra.storage.flow_records import FLOW_ORDERS, record_schema


def test_every_record_column_has_its_field() -> None:
    fields = query_pb2.FlowRecord.DESCRIPTOR.fields_by_name
    names = set()
    for col in record_schema():
        name = _proto_field(col.name, col.type)
        names.add(name)
        assert name in fields, f"{col.name} has no FlowRecord field {name}"
        fd = fields[name]
        if pa.types.is_timestamp(col.type):
            assert fd.message_type.full_name == "google.protobuf.Timestamp"
        elif pa.types.is_list(col.type):
            assert fd.is_repeated
        elif pa.types.is_floating(col.type):
            assert fd.type == FieldDescriptor.TYPE_DOUBLE
        elif pa.types.is_string(col.type):
            assert fd.type == FieldDescriptor.TYPE_STRING
        else:  # integers: a field at least as wide, signed where the column is
            assert fd.type in (
                FieldDescriptor.TYPE_UINT32,
                FieldDescriptor.TYPE_UINT64,
                FieldDescriptor.TYPE_INT64,
            ), name
            if pa.types.is_signed_integer(col.type) or pa.types.is_duration(col.type):
                assert fd.type == FieldDescriptor.TYPE_INT64, name
            if col.type in (pa.uint64(),):
                assert fd.type == FieldDescriptor.TYPE_UINT64, name
        # a nullable column is an optional field (absent where the value does not apply)
        if col.nullable and not pa.types.is_list(col.type):
            assert fd.has_presence, name
    assert names == set(fields), set(fields) - names


def test_flow_order_numbers_the_orders_of_list_flows() -> None:
    values = query_pb2.FlowOrder.DESCRIPTOR.values
    assert [v.name.removeprefix("FLOW_ORDER_").lower() for v in values] == list(FLOW_ORDERS)
    assert [v.number for v in values] == list(range(len(FLOW_ORDERS)))
