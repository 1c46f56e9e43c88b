"""The alert history in ClickHouse: :class:`AlertStoreSink` writes, :func:`alerts` reads.

The :class:`~netspectra.alerting.alerter.Alerter` calls its ``sink`` with every
:class:`~netspectra.alerting.alerter.AlertRecord`; :class:`AlertStoreSink` turns it into rows of the
``alerts`` table (see :mod:`netspectra.storage.schema`): one per fired rule, one per flow for a sketch
rule. It opens its store on first use and never raises into the alerter: a failed write is logged and
counted (:attr:`AlertStoreSink.failed`) and the next record tries again (reconnecting).

Alerts are kept in the store of the **exact** group (the first enabled ClickHouse writer of
``aggregator.exact``, :func:`alert_sink_for`), which is also where the query service reads them.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from netspectra.storage.base import StorageError
from netspectra.storage.schema import ALERT_COLUMNS, ALERT_TABLE
from netspectra.storage.store import ClickHouseStore

if TYPE_CHECKING:
    from netspectra.alerting.alerter import AlertRecord
    from netspectra.config.models import Config
    from netspectra.storage.clickhouse_config import ClickHouseConfig

log = logging.getLogger(__name__)

#: ``limit`` of :func:`alerts` when none (or 0 or less) is asked; the most rows served.
DEFAULT_ALERTS_LIMIT = 100
MAX_ALERTS_LIMIT = 10_000

_ARROW_TYPES = {
    "UInt64": pa.uint64(),
    "String": pa.string(),
    "Nullable(String)": pa.string(),
    "Float64": pa.float64(),
    "UInt8": pa.uint8(),
}


@dataclass(frozen=True, slots=True)
class StoredAlert:
    """One row of the alert history: a fired rule (for sketch rules, one flow) of one notification."""

    time_ns: int
    task: str
    rule: str
    metric: str
    operator: str
    threshold: float
    value: float
    flow: str | None
    subject: str
    delivered: tuple[str, ...]
    failed: dict[str, str]
    ai_status: str
    final: bool
    #: The AI analysis text sent with the alert ('' when none: AI off or failed, or stored before
    #: migration 6).
    ai_analysis: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, protojson style (camelCase; the 64-bit time as a string)."""
        d: dict[str, Any] = {
            "timeNs": str(self.time_ns),
            "task": self.task,
            "rule": self.rule,
            "metric": self.metric,
            "operator": self.operator,
            "threshold": self.threshold,
            "value": self.value,
            "subject": self.subject,
            "delivered": list(self.delivered),
            "failed": dict(self.failed),
            "aiStatus": self.ai_status,
            "aiAnalysis": self.ai_analysis,
            "final": self.final,
        }
        if self.flow is not None:
            d["flow"] = self.flow
        return d


def alert_rows(record: AlertRecord) -> pa.Table:
    """The ``alerts`` rows of one record: physical columns of :data:`ALERT_COLUMNS`, in order."""
    delivered = json.dumps([k for k, v in record.deliveries.items() if v is None])
    failed = json.dumps(record.failures, sort_keys=True)
    rows: list[tuple[Any, ...]] = []
    for task_alert in record.alerts:
        for result in task_alert.results:
            rule = result.rule
            head = (record.time_ns, rule.task_name, rule.name, rule.metric, rule.operator)
            tail = (
                record.subject,
                delivered,
                failed,
                record.ai_status,
                record.ai_analysis or "",
                int(record.final),
            )
            if result.value is not None or not result.items:
                value = float(result.value) if result.value is not None else 0.0
                rows.append((*head, float(rule.threshold), value, None, *tail))
            else:
                for flow, v in result.items:
                    rows.append((*head, float(rule.threshold), float(v), str(flow), *tail))
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in ALERT_COLUMNS]
    return pa.table(
        {
            name: pa.array(list(col), _ARROW_TYPES[typ])
            for (name, typ), col in zip(ALERT_COLUMNS, columns, strict=True)
        }
    )


class AlertStoreSink:
    """An alerter ``sink`` that writes each :class:`AlertRecord` into the ``alerts`` table of ``store``
    (a :class:`ClickHouseStore`, or the ``clickhouse`` section to build one from).

    The store is opened (schema included) on the first record and reopened after a failure. Never raises:
    :attr:`written` counts rows stored, :attr:`failed` records that could not be stored.
    """

    def __init__(self, store: ClickHouseStore | ClickHouseConfig) -> None:
        self.store = store if isinstance(store, ClickHouseStore) else ClickHouseStore(store)
        self.written = 0
        self.failed = 0
        self._ready = False
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"AlertStoreSink({self.store!r})"

    def __call__(self, record: AlertRecord) -> None:
        try:
            rows = alert_rows(record)
            with self._lock:
                if not self._ready:
                    self.store.open()
                    self.store.ensure_schema()
                    self._ready = True
                self.store.insert(ALERT_TABLE, rows)
                self.written += rows.num_rows
        except Exception as exc:
            self.failed += 1
            with self._lock:
                self._ready = False
                self.store.close()
            if isinstance(exc, StorageError):
                log.error("alert %r not stored in ClickHouse: %s", record.subject, exc)
            else:
                log.exception("alert %r not stored in ClickHouse", record.subject)

    def close(self) -> None:
        """Release the store (idempotent; a later record reopens it)."""
        with self._lock:
            self._ready = False
            self.store.close()


def alert_sink_for(cfg: Config) -> AlertStoreSink | None:
    """The sink of ``cfg``'s alert history: on the store of the first enabled ClickHouse writer of
    ``aggregator.exact``; ``None`` when there is none."""
    for writer in cfg.aggregator.exact.writers:
        if writer.enabled and writer.type == "clickhouse":
            return AlertStoreSink(writer.params)
    return None


def alerts(
    store: ClickHouseStore,
    start_ns: int | None = None,
    end_ns: int | None = None,
    task: str | None = None,
    limit: int = DEFAULT_ALERTS_LIMIT,
    involving: str | None = None,
) -> list[StoredAlert]:
    """Stored alerts with ``start_ns <= time <= end_ns`` (either bound optional), of ``task`` if given,
    newest first, at most ``limit`` (0 or less: :data:`DEFAULT_ALERTS_LIMIT`; cut to
    :data:`MAX_ALERTS_LIMIT`). ``involving``: only the alerts whose flow text holds it as one of its
    space-separated fields (an address: the console's host page). ``ValueError`` for a negative time or
    ``start_ns > end_ns``."""
    for name, v in (("start_ns", start_ns), ("end_ns", end_ns)):
        if v is not None and v < 0:
            raise ValueError(f"{name} must not be negative")
    if start_ns is not None and end_ns is not None and start_ns > end_ns:
        raise ValueError("the start time is after the end time")
    limit = DEFAULT_ALERTS_LIMIT if limit <= 0 else min(int(limit), MAX_ALERTS_LIMIT)
    where = ["1 = 1"]
    params: dict[str, object] = {"limit": limit}
    if start_ns is not None:
        where.append("TimestampNs >= %(start)s")
        params["start"] = start_ns
    if end_ns is not None:
        where.append("TimestampNs <= %(end)s")
        params["end"] = end_ns
    if task is not None:
        where.append("TaskName = %(task)s")
        params["task"] = task
    if involving is not None:
        where.append("has(splitByChar(' ', ifNull(Flow, '')), %(involving)s)")
        params["involving"] = involving
    cols = ", ".join(name for name, _ in ALERT_COLUMNS)
    sql = (
        f"SELECT {cols} FROM {store.table(ALERT_TABLE)} WHERE {' AND '.join(where)} "
        "ORDER BY TimestampNs DESC, TaskName, RuleName, Flow LIMIT %(limit)s"
    )
    out = []
    for row in store.query(sql, params):
        (
            t,
            task_name,
            rule,
            metric,
            op,
            threshold,
            value,
            flow,
            subject,
            delivered,
            failed,
            ai,
            text,
            final,
        ) = row
        out.append(
            StoredAlert(
                int(t),
                task_name,
                rule,
                metric,
                op,
                float(threshold),
                float(value),
                flow,
                subject,
                tuple(json.loads(delivered or "[]")),
                dict(json.loads(failed or "{}")),
                ai,
                bool(final),
                text or "",
            )
        )
    return out


__all__: Sequence[str] = (
    "DEFAULT_ALERTS_LIMIT",
    "MAX_ALERTS_LIMIT",
    "AlertStoreSink",
    "StoredAlert",
    "alert_rows",
    "alert_sink_for",
    "alerts",
)
