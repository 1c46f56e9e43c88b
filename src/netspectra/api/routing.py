"""Which ClickHouse store answers for which task.

The original's ``ns-api`` built one querier per task group from the **first enabled ClickHouse writer**
of that group; NetSpectra does the same for every group: exact tasks are read from the exact group's
store, sketch tasks from the sketch group's, flows tasks (flow records) from the flows group's. Two
groups whose writers name the same ClickHouse (same server and database, or the same embedded data
directory and database) share one :class:`ClickHouseStore`.

Stores are opened lazily, on the first query that needs them, and a store that cannot be opened is
retried at the next query: the query service starts (and answers ``HealthCheck``/``SearchTasks``) while
ClickHouse is still down, and recovers when it comes back.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from netspectra.config import ClickHouseConfig, Config
from netspectra.sketches.kind import HitterType
from netspectra.storage.base import StorageError
from netspectra.storage.store import ClickHouseStore, connect_store

log = logging.getLogger(__name__)

#: An aggregator kind's name (``exact``, ``sketch``, ``flows``, a plugin's).
Group = str


class UnknownTaskError(LookupError):
    """The task is not in the configuration."""


class NoStoreError(StorageError):
    """The task's group has no enabled ClickHouse writer, or its store cannot be reached."""


@dataclass(frozen=True, slots=True)
class TaskRoute:
    """Where one task lives: its group, its store's configuration and, for sketch tasks, its sketch
    kind's name and the heavy-hitter types it reports (CountMin: 0 count and 1 size; SuperSpread: 2)."""

    name: str
    group: Group
    clickhouse: ClickHouseConfig | None
    sketch_kind: str = ""
    hitter_types: tuple[HitterType, ...] = ()


def first_clickhouse(cfg: Config, group: Group) -> ClickHouseConfig | None:
    """``clickhouse`` of the first enabled ``clickhouse`` writer of ``aggregator.<group>``, else ``None``."""
    for writer in cfg.aggregator.group(group).writers:
        if writer.enabled and writer.type == "clickhouse":
            return writer.params
    return None


def _where(ch: ClickHouseConfig) -> str:
    return f"database {ch.database!r} of " + (f"the server {ch.host}" if ch.host else "the embedded engine")


class StoreRouter:
    """Task name → :class:`TaskRoute` → an open :class:`ClickHouseStore`; thread-safe.

    :meth:`store_for` raises :class:`UnknownTaskError` for a task the configuration does not name and
    :class:`NoStoreError` when its group has no ClickHouse writer or the store cannot be opened.
    """

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self._stores: list[tuple[ClickHouseConfig, ClickHouseStore]] = []
        self._lock = threading.Lock()
        self._closed = False
        self.routes: dict[str, TaskRoute] = {}
        stores = {group: first_clickhouse(cfg, group) for group in cfg.aggregator.groups}
        for group, _, task in cfg.tasks():
            if group == "sketch":
                kind = task.kind
                self.routes[task.name] = TaskRoute(
                    task.name, group, stores[group], kind.title or kind.name, tuple(sorted(kind.hitter_types))
                )
            else:
                self.routes[task.name] = TaskRoute(task.name, group, stores[group])

    def task_names(self) -> list[str]:
        """Exact task names, then sketch task names, in configuration order (the original's order)."""
        return list(self.cfg.task_names())

    def exact_task_names(self) -> list[str]:
        return self.group_task_names("exact")

    def group_task_names(self, group: Group) -> list[str]:
        """Names of the tasks of ``aggregator.<group>``, in configuration order."""
        return [t.name for t in self.cfg.aggregator.group(group).tasks]

    def route(self, task: str) -> TaskRoute:
        try:
            return self.routes[task]
        except KeyError:
            from netspectra.kinds import did_you_mean, shown

            names = self.task_names()
            raise UnknownTaskError(
                f"unknown task {shown(task)}{did_you_mean(task, names)}; configured tasks: {names}"
            ) from None

    def group_store(self, group: Group) -> ClickHouseStore:
        """The open store of ``group`` (see the class docstring for errors)."""
        ch = first_clickhouse(self.cfg, group)
        if ch is None:
            raise NoStoreError(
                f"aggregator.{group}.writers has no enabled clickhouse writer: nothing to query for "
                f"{group} tasks"
            )
        return self._open(ch)

    def store_for(self, task: str) -> tuple[TaskRoute, ClickHouseStore]:
        route = self.route(task)
        return route, self.group_store(route.group)

    def _open(self, ch: ClickHouseConfig) -> ClickHouseStore:
        with self._lock:
            if self._closed:  # the service is stopping: never reopen what close() released
                raise NoStoreError("the query service is stopping")
            for known, store in self._stores:
                if known == ch:
                    if store.is_open:
                        return store
                    break
            else:
                store = None
            try:
                fresh = connect_store(ch)
            except StorageError as exc:
                # the driver's words (addresses, users, engine messages) go to the log, not to clients
                log.warning("cannot open the ClickHouse store %s: %s", _where(ch), exc)
                raise NoStoreError("the store cannot be opened (see the server log)") from exc
            self._stores = [(k, s) for k, s in self._stores if k != ch] + [(ch, fresh)]
            return fresh

    def close(self) -> None:
        """Close every store opened so far and open none after (idempotent)."""
        with self._lock:
            self._closed = True
            stores, self._stores = self._stores, []
        for _, store in stores:
            store.close()
