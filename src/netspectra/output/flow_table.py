"""The flow table: the columns of the original's ClickHouse ``flow_metrics`` table, as files.

:data:`FLOW_TABLE_SCHEMA` is ``flow_metrics`` without its ``Timestamp`` (the snapshot time belongs to
whoever stores the snapshot). Key fields a task does not use are NULL, as in the original. A task
keyed on other fields too (VlanID, ExporterAddress, InIf, OutIf, SrcAS, DstCountry, …) has their
columns after ``Protocol`` (:func:`flow_table_schema`).
Times are ``timestamp[ns, tz=UTC]`` — real UTC instants (the original stored local time as UTC).

Both writers are atomic: the file appears under its final name complete or not at all. They write to a
temporary file in the same directory, fsync it, ``os.replace`` it over ``path`` and fsync the directory.
A reader therefore sees either the previous file or the new one, never a half-written one, and a crash
leaves at most a ``.<name>.*.tmp`` file behind (removed on every error we see).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pyarrow as pa

from netspectra.atomic import atomic_file

log = logging.getLogger(__name__)

TIMESTAMP_TYPE = pa.timestamp("ns", tz="UTC")

#: ``flow_metrics`` minus ``Timestamp``: names, types and nullability (ClickHouse ``Nullable``).
FLOW_TABLE_SCHEMA = pa.schema(
    [
        pa.field("TaskName", pa.string(), nullable=False),
        pa.field("SrcIP", pa.string()),
        pa.field("DstIP", pa.string()),
        pa.field("SrcPort", pa.uint16()),
        pa.field("DstPort", pa.uint16()),
        pa.field("Protocol", pa.uint8()),
        pa.field("StartTime", TIMESTAMP_TYPE, nullable=False),
        pa.field("EndTime", TIMESTAMP_TYPE, nullable=False),
        pa.field("ByteCount", pa.uint64(), nullable=False),
        pa.field("PacketCount", pa.uint64(), nullable=False),
    ]
)


def flow_table_schema(extra_fields: Sequence[str] = ()) -> pa.Schema:
    """:data:`FLOW_TABLE_SCHEMA` with a nullable column for each key field of ``extra_fields`` (fields
    beyond the five packet fields, :mod:`netspectra.fields`) after ``Protocol``, in the given order:
    addresses and dictionary text as strings, integers at their width (``flow_metrics`` has the same
    columns)."""
    if not extra_fields:
        return FLOW_TABLE_SCHEMA
    from netspectra.fields import BY_NAME

    at = FLOW_TABLE_SCHEMA.get_field_index("Protocol") + 1
    fields = list(FLOW_TABLE_SCHEMA)
    extra = [pa.field(name, pa.type_for_alias(BY_NAME[name].arrow_type)) for name in extra_fields]
    return pa.schema(fields[:at] + extra + fields[at:])


def write_parquet(table: pa.Table, path: str | os.PathLike[str], compression: str = "zstd") -> Path:
    """Write ``table`` to ``path`` as Parquet, atomically (see the module docstring); return the path.

    Nanosecond UTC timestamps are kept as Parquet ``TIMESTAMP(NANOS, UTC)``, so a round trip through
    pyarrow gives back the same schema and values.
    """

    def write(fh: BinaryIO) -> None:
        import pyarrow.parquet as pq  # loaded when a file is written (a report needs only the schema)

        pq.write_table(table, fh, compression=compression)

    return _atomic_write(Path(path), write)


def write_csv(table: pa.Table, path: str | os.PathLike[str]) -> Path:
    """Write ``table`` to ``path`` as CSV with a header row, atomically; return the path.

    Timestamps are ISO 8601 UTC with nanoseconds and a ``Z`` (``2024-05-01T12:00:00.123456789Z``);
    durations are integer nanoseconds; lists are JSON arrays (``[60,54,300]``); nulls are empty
    fields; strings are quoted only where needed.
    """
    import pyarrow.csv as pacsv  # loaded when a file is written (a report needs only the schema)

    columns = []
    for field, col in zip(table.schema, table.columns, strict=True):
        if pa.types.is_timestamp(field.type):
            col = _iso_utc(col)
        elif pa.types.is_duration(field.type):
            col = col.cast(pa.int64())
        elif pa.types.is_list(field.type):
            text = [None if v is None else "[" + ",".join(map(str, v)) + "]" for v in col.to_pylist()]
            col = pa.array(text, pa.string())
        columns.append(col)
    text_table = pa.Table.from_arrays(columns, names=table.column_names)
    options = pacsv.WriteOptions(include_header=True, quoting_style="needed")

    def write(fh: BinaryIO) -> None:
        pacsv.write_csv(text_table, fh, write_options=options)

    return _atomic_write(Path(path), write)


def _iso_utc(col: pa.ChunkedArray) -> pa.Array:
    """A timestamp column as ISO 8601 UTC strings with nanoseconds and 'Z'; nulls stay null."""
    col = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    unit = col.type.unit
    # The stored integers are UTC instants whatever the column's tz (Arrow's convention).
    ints = col.cast(pa.int64()).fill_null(0).to_numpy(zero_copy_only=False)
    text = np.datetime_as_string(ints.astype(f"datetime64[{unit}]").astype("datetime64[ns]"), unit="ns")
    arr = pa.array(np.char.add(text, "Z"), pa.string())
    if col.null_count:
        arr = pa.compute.if_else(col.is_valid(), arr, pa.scalar(None, pa.string()))
    return arr


def _atomic_write(path: Path, write: Callable[[BinaryIO], None]) -> Path:
    with atomic_file(path) as fh:
        write(fh)
    log.debug("wrote %s", path)
    return path
