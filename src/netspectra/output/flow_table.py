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

import contextlib
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pyarrow as pa

from netspectra.atomic import AtomicFile, atomic_file

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


def write_parquet(
    table: pa.Table, path: str | os.PathLike[str], compression: str = "zstd", *, store_schema: bool = True
) -> Path:
    """Write ``table`` to ``path`` as Parquet, atomically (see the module docstring); return the path.

    Nanosecond UTC timestamps are kept as Parquet ``TIMESTAMP(NANOS, UTC)``, so a round trip through
    pyarrow gives back the same schema and values. ``store_schema=False``: without the Arrow schema in
    the file's metadata, so that pyarrow reads each column by its Parquet type alone — for a table whose
    types are all Parquet's own, the same table, except that dictionary columns read as their values
    (the way to write text columns held as dictionaries as plain strings, without making the strings).
    """

    def write(fh: BinaryIO) -> None:
        import pyarrow.parquet as pq  # loaded when a file is written (a report needs only the schema)

        pq.write_table(table, fh, compression=compression, store_schema=store_schema)

    return _atomic_write(Path(path), write)


def write_csv(table: pa.Table, path: str | os.PathLike[str]) -> Path:
    """Write ``table`` to ``path`` as CSV with a header row, atomically; return the path.

    Timestamps are ISO 8601 UTC with nanoseconds and a ``Z`` (``2024-05-01T12:00:00.123456789Z``);
    durations are integer nanoseconds; lists are JSON arrays (``[60,54,300]``); nulls are empty
    fields; strings are quoted only where needed.
    """
    import pyarrow.csv as pacsv  # loaded when a file is written (a report needs only the schema)

    text_table = _csv_text(table)

    def write(fh: BinaryIO) -> None:
        pacsv.write_csv(text_table, fh, write_options=_csv_options())

    return _atomic_write(Path(path), write)


def _csv_options() -> Any:
    import pyarrow.csv as pacsv

    return pacsv.WriteOptions(include_header=True, quoting_style="needed")


def _csv_text(table: pa.Table) -> pa.Table:
    """``table`` with the columns :func:`write_csv` writes as text made text (times, durations, lists)."""
    columns = []
    for field, col in zip(table.schema, table.columns, strict=True):
        if pa.types.is_timestamp(field.type):
            col = _iso_utc(col)
        elif pa.types.is_duration(field.type):
            col = col.cast(pa.int64())
        elif pa.types.is_list(field.type):
            col = _json_lists(col)
        columns.append(col)
    return pa.Table.from_arrays(columns, names=table.column_names)


class TableStream:
    """A table written to ``path`` in parts (Parquet, or CSV with ``csv``), atomically as
    :func:`write_parquet` and :func:`write_csv` write a whole one: the parts go into a temporary file in
    the same directory, which :meth:`commit` makes the file at ``path``; :meth:`abort` (or an error of
    :meth:`write`) removes it. The file holds the parts' rows in the order written: the rows and schema
    of :func:`write_parquet` (:func:`write_csv`) of their concatenation, a Parquet row group per part.
    Every part must have the schema of the first."""

    def __init__(self, path: str | os.PathLike[str], *, csv: bool = False, compression: str = "zstd") -> None:
        self.path = Path(path)
        self.csv = csv
        self.compression = compression
        self.rows = 0
        self._file: AtomicFile | None = None
        self._writer: Any = None
        self._schema: pa.Schema | None = None

    def __repr__(self) -> str:
        return f"TableStream({str(self.path)!r}, csv={self.csv}, rows={self.rows})"

    def write(self, table: pa.Table) -> None:
        """Append ``table``'s rows."""
        try:
            if self._writer is None:
                self._schema = table.schema
                self._file = AtomicFile(self.path, buffering=1 << 20)
                if self.csv:
                    import pyarrow.csv as pacsv

                    text = _csv_text(table)
                    options = _csv_options()
                    self._writer = pacsv.CSVWriter(self._file.fh, text.schema, write_options=options)
                    self._writer.write_table(text)
                else:
                    import pyarrow.parquet as pq

                    self._writer = pq.ParquetWriter(self._file.fh, table.schema, compression=self.compression)
                    self._writer.write_table(table)
            else:
                if not table.schema.equals(self._schema):
                    # (checked here: pyarrow's CSV writer crashes the process on a table of another schema)
                    raise ValueError(f"{self!r}: a part of another schema than the first:\n{table.schema}")
                self._writer.write_table(_csv_text(table) if self.csv else table)
        except BaseException:
            self.abort()
            raise
        self.rows += table.num_rows

    def commit(self) -> Path:
        """Make what was written the file at ``path``; ``path``. ``RuntimeError`` if nothing was written (no
        part, not even an empty one: there is no schema to write)."""
        if self._file is None:
            raise RuntimeError(f"{self!r}: nothing was written")
        try:
            self._writer.close()
        except BaseException:
            self.abort()
            raise
        path = self._file.commit()
        log.debug("wrote %s (%d rows, in parts)", path, self.rows)
        return path

    def abort(self) -> None:
        """Remove the temporary file (the file at ``path`` stays as it was)."""
        if self._file is not None:
            with contextlib.suppress(Exception):
                if self._writer is not None:
                    self._writer.close()
            self._file.abort()
            self._file = None
            self._writer = None


def _json_lists(col: pa.ChunkedArray | pa.Array) -> pa.Array:
    """A list column of integers as JSON arrays (``[60,-54,300]``, ``[]``; a null list stays null), made by
    Arrow's kernels (a Python string per row took seconds for a million flow records with SPLT)."""
    import pyarrow.compute as pc

    col = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    texts = pc.cast(col, pa.list_(pa.string()))
    joined = pc.binary_join(texts, ",")
    return pc.binary_join_element_wise(pa.scalar("["), joined, pa.scalar("]"), "")


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
