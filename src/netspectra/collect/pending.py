"""Data sets that arrived before their template, kept for a bounded time and size.

After a collector restart, or when UDP reorders a template behind its data, an exporter's data sets
name a template the collector does not know yet. Akvorado, GoFlow2 and nfcapd drop them at once;
NetSpectra keeps a copy (the set bytes and the header context they need) for ``max_age_s`` seconds
of *export* time (the receive times of later datagrams, so a replayed capture behaves as the live
collector would), in at most ``max_bytes`` overall and ``max_bytes_per_exporter`` per exporter. When
the template arrives the sets are decoded, in arrival order, into the batch being decoded then;
sets that expire, or that find no room, are counted as dropped — never silently.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class PendingSet:
    """One waiting data set and the header context of its datagram."""

    data: bytes  # the whole set, header included
    exporter: int
    stream: int
    template_id: int
    kind: int
    domain: int
    export_ns: int
    uptime_ms: int
    received_ns: int


class PendingSets:
    """Waiting data sets by ``(stream, template id)``; not thread-safe (the decoder's lock)."""

    def __init__(
        self, max_age_s: float = 10.0, max_bytes: int = 8 << 20, max_bytes_per_exporter: int = 1 << 20
    ):
        self.max_age_ns = int(max_age_s * 1e9)
        self.max_bytes = max_bytes
        self.max_bytes_per_exporter = max_bytes_per_exporter
        self._sets: OrderedDict[int, PendingSet] = OrderedDict()  # arrival order
        self._by_key: dict[tuple[int, int], list[int]] = {}
        self._bytes = 0
        self._bytes_of: dict[int, int] = {}
        self._next = 0

    def __len__(self) -> int:
        return len(self._sets)

    @property
    def bytes(self) -> int:
        return self._bytes

    def add(self, item: PendingSet) -> bool:
        """Keep ``item``; False (the caller counts it dropped) when the limits leave no room."""
        n = len(item.data)
        if self.max_age_ns <= 0 or self._bytes + n > self.max_bytes:
            return False
        if self._bytes_of.get(item.exporter, 0) + n > self.max_bytes_per_exporter:
            return False
        k = self._next
        self._next += 1
        self._sets[k] = item
        self._by_key.setdefault((item.stream, item.template_id), []).append(k)
        self._bytes += n
        self._bytes_of[item.exporter] = self._bytes_of.get(item.exporter, 0) + n
        return True

    def has(self, stream: int, template_id: int) -> bool:
        return (stream, template_id) in self._by_key

    def take(self, stream: int, template_id: int) -> list[PendingSet]:
        """Remove and return the sets waiting for a template, oldest first."""
        keys = self._by_key.pop((stream, template_id), [])
        return [self._remove(k) for k in keys]

    def _remove(self, k: int) -> PendingSet:
        item = self._sets.pop(k)
        n = len(item.data)
        self._bytes -= n
        left = self._bytes_of[item.exporter] - n
        if left:
            self._bytes_of[item.exporter] = left
        else:
            del self._bytes_of[item.exporter]
        return item

    def expire(self, now_ns: int) -> list[PendingSet]:
        """Remove and return the sets received more than ``max_age_s`` before ``now_ns``."""
        out: list[PendingSet] = []
        limit = now_ns - self.max_age_ns
        while self._sets:
            k, item = next(iter(self._sets.items()))
            if item.received_ns > limit:
                break
            out.append(self._remove(k))
            lst = self._by_key[(item.stream, item.template_id)]
            lst.remove(k)
            if not lst:
                del self._by_key[(item.stream, item.template_id)]
        return out

    def drain(self) -> list[PendingSet]:
        """Remove and return everything (at shutdown: counted as dropped)."""
        out = list(self._sets.values())
        self._sets.clear()
        self._by_key.clear()
        self._bytes = 0
        self._bytes_of.clear()
        return out
