"""Completion values: the most frequent values of a field."""

from __future__ import annotations

from typing import TYPE_CHECKING

from netspectra.storage.console.sources import (
    DEFAULT_ROW_BUDGET,
    ConsoleError,
    Source,
    qualify,
    sample_bound,
    sample_factor,
)
from netspectra.storage.schema import quote_identifier

if TYPE_CHECKING:
    from netspectra.storage.store import ClickHouseStore


def field_values(
    store: ClickHouseStore,
    src: Source,
    name: str,
    prefix: str = "",
    limit: int = 20,
    row_budget: int = DEFAULT_ROW_BUDGET,
) -> list[str]:
    """The most frequent values of field ``name`` of ``src`` that start with ``prefix`` (as text), at
    most ``limit``: what the filter input offers after ``Field =``. Reads a sample on a large store."""
    f = src.fields.get(name)
    if f is None:
        from netspectra.kinds import did_you_mean

        names = ", ".join(src.fields) or "none"
        hint = did_you_mean(name, src.fields)  # the fields here are named as stored (case counts)
        raise ConsoleError(f"{str(name)[:60]!r} is not a field of {src.id}{hint}; its fields are {names}")
    col = quote_identifier(f.name)
    where = [f"isNotNull({col})", "startsWith(toString(assumeNotNull(" + col + ")), %(prefix)s)"]
    params: dict[str, object] = {"prefix": prefix, "limit": int(limit)}
    if src.task:
        where.insert(0, "TaskName = %(task)s")
        params["task"] = src.task
    factor, _ = sample_factor(store, src, "first", None, None, row_budget)
    if factor > 1:
        where.append(f"{quote_identifier(src.sample_column)} <= %(hi)s")
        params["hi"] = sample_bound(factor)
    sql = qualify(
        store,
        f"SELECT toString(assumeNotNull({col})) AS v, count() AS n FROM %TABLE:{src.table}% "
        f"WHERE {' AND '.join(where)} GROUP BY v ORDER BY n DESC, v LIMIT %(limit)s",
    )
    return [str(r[0]) for r in store.query(sql, params)]
