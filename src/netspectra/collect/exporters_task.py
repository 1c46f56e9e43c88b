"""The ``exporters`` task: per flow exporter, what its records brought — the state behind
``netspectra query exporters``.

For every exporter address (the batches' optional ``exporter`` column, :mod:`netspectra.batch`) the task
keeps the first and last record end time seen, the rows (flow records), the packets and bytes they stand
for (``packet_counts()``/``byte_counts()``: multiplied by the sampling rate), the rows per sampling rate
(at most :data:`MAX_RATES` distinct rates per exporter; further ones are counted under rate 0xFFFFFFFF,
"other") and the rows whose rate is unknown (0). Batches without the exporter column (captured packets)
are only counted (``rows_without_exporter``).

Per batch the work is vectorised: the common batch (one exporter) is one comparison and a few sums;
several exporters are grouped with one sort (``np.unique`` over 16-byte rows) and ``reduceat``. Python
runs per distinct exporter and rate of a batch, never per row. The task is state (cumulative since the
period began), not records: every snapshot supersedes the previous one.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from netspectra.batch import PacketBatch

__all__ = ["MAX_EXPORTERS", "MAX_RATES", "ExportersSnapshot", "ExportersTask"]

#: Distinct sampling rates kept per exporter (a hostile exporter may send any rate).
MAX_RATES = 64
#: The rate under which rows of further rates are counted.
OTHER_RATE = 0xFFFF_FFFF
#: Exporters kept; rows of further exporters are counted in ``rows_over_limit``.
MAX_EXPORTERS = 100_000


class ExportersSnapshot:
    """The per-exporter state at one moment (copies). Columns, one entry per exporter, in the order first
    seen: ``exporter`` uint8 (m, 16), ``first_ns``/``last_ns`` int64, ``records``/``packets``/``bytes``
    uint64, ``records_without_rate`` uint64, and ``rates``: per exporter a dict rate → records."""

    kind = "exporters"

    def __init__(
        self, task_name: str, cols: dict[str, np.ndarray], rates: list[dict[int, int]], extra: dict[str, int]
    ) -> None:
        self.task_name = task_name
        self.exporter: np.ndarray = cols["exporter"]
        self.first_ns: np.ndarray = cols["first_ns"]
        self.last_ns: np.ndarray = cols["last_ns"]
        self.records: np.ndarray = cols["records"]
        self.packets: np.ndarray = cols["packets"]
        self.bytes: np.ndarray = cols["bytes"]
        self.records_without_rate: np.ndarray = cols["records_without_rate"]
        self.rates = rates
        self.rows_without_exporter = extra.get("rows_without_exporter", 0)
        self.rows_over_limit = extra.get("rows_over_limit", 0)

    def __len__(self) -> int:
        return int(self.exporter.shape[0])

    def addresses(self) -> list[str]:
        """The exporters' addresses as text (IPv4 dotted, IPv6 compressed)."""
        from netspectra.collect.addr import to_text

        return [to_text(bytes(a)) for a in self.exporter]

    def rows(self) -> list[dict[str, Any]]:
        """One dict per exporter (for reports and tests)."""
        return [
            {
                "exporter": a,
                "first_ns": int(self.first_ns[i]),
                "last_ns": int(self.last_ns[i]),
                "records": int(self.records[i]),
                "packets": int(self.packets[i]),
                "bytes": int(self.bytes[i]),
                "records_without_rate": int(self.records_without_rate[i]),
                "sampling_rates": dict(sorted(self.rates[i].items())),
            }
            for i, a in enumerate(self.addresses())
        ]

    def to_arrow(self) -> Any:
        """TaskName, Exporter, FirstSeen, LastSeen (UTC ns), Records, Packets, Bytes, SamplingRates and
        RecordsPerRate (lists, by rate), RecordsWithoutRate."""
        import pyarrow as pa

        m = len(self)
        rates = [sorted(r.items()) for r in self.rates]
        ts = pa.timestamp("ns", tz="UTC")
        return pa.table(
            {
                "TaskName": pa.array([self.task_name] * m, pa.string()),
                "Exporter": pa.array(self.addresses(), pa.string()),
                "FirstSeen": pa.array(self.first_ns, pa.int64()).cast(ts),
                "LastSeen": pa.array(self.last_ns, pa.int64()).cast(ts),
                "Records": pa.array(self.records, pa.uint64()),
                "Packets": pa.array(self.packets, pa.uint64()),
                "Bytes": pa.array(self.bytes, pa.uint64()),
                "SamplingRates": pa.array([[k for k, _ in r] for r in rates], pa.list_(pa.uint32())),
                "RecordsPerRate": pa.array([[v for _, v in r] for r in rates], pa.list_(pa.uint64())),
                "RecordsWithoutRate": pa.array(self.records_without_rate, pa.uint64()),
            }
        )


class ExportersTask:
    """Per-exporter accounting (see the module docstring); not thread-safe (the engine's LockedTask)."""

    kind = "exporters"

    def __init__(self, name: str, max_exporters: int = MAX_EXPORTERS) -> None:
        self.name = name
        self.max_exporters = max_exporters
        self.reset()

    def reset(self) -> None:
        self._index: dict[bytes, int] = {}
        cap = 16
        self._addr = np.zeros((cap, 16), np.uint8)
        self._first = np.zeros(cap, np.int64)
        self._last = np.zeros(cap, np.int64)
        self._records = np.zeros(cap, np.uint64)
        self._packets = np.zeros(cap, np.uint64)
        self._bytes = np.zeros(cap, np.uint64)
        self._no_rate = np.zeros(cap, np.uint64)
        self._rates: list[dict[int, int]] = []
        self.rows_without_exporter = 0
        self.rows_over_limit = 0

    def _slot(self, key: bytes) -> int:
        i = self._index.get(key)
        if i is not None:
            return i
        i = len(self._index)
        if i >= self.max_exporters:
            return -1
        if i >= self._addr.shape[0]:
            for name in ("_addr", "_first", "_last", "_records", "_packets", "_bytes", "_no_rate"):
                old = getattr(self, name)
                new = np.zeros((2 * old.shape[0], *old.shape[1:]), old.dtype)
                new[: old.shape[0]] = old
                setattr(self, name, new)
        self._addr[i] = np.frombuffer(key, np.uint8)
        self._first[i] = np.iinfo(np.int64).max
        self._last[i] = np.iinfo(np.int64).min
        self._rates.append({})
        self._index[key] = i
        return i

    def update(self, batch: PacketBatch) -> None:
        n = len(batch)
        if n == 0:
            return
        exp = batch.exporter
        if exp is None:
            self.rows_without_exporter += n
            return
        packets = batch.packet_counts()
        octets = batch.byte_counts()
        rate = batch.sampling_rate if batch.sampling_rate is not None else np.ones(n, np.uint32)
        if bool((exp == exp[0]).all()):  # the usual batch: one exporter
            groups: list[tuple[bytes, np.ndarray | slice]] = [(exp[0].tobytes(), slice(None))]
        else:
            keys = np.ascontiguousarray(exp).view(np.dtype((np.void, 16))).reshape(-1)
            uniq, inv = np.unique(keys, return_inverse=True)
            order = np.argsort(inv, kind="stable")
            bounds = np.searchsorted(inv[order], np.arange(uniq.shape[0] + 1))
            groups = [(uniq[g].tobytes(), order[bounds[g] : bounds[g + 1]]) for g in range(uniq.shape[0])]
        for key, rows in groups:
            i = self._slot(key)
            p, b, r, t = packets[rows], octets[rows], rate[rows], batch.ts_ns[rows]
            if i < 0:
                self.rows_over_limit += int(p.shape[0])
                continue
            self._records[i] += np.uint64(p.shape[0])
            self._packets[i] += p.sum(dtype=np.uint64)
            self._bytes[i] += b.sum(dtype=np.uint64)
            self._first[i] = min(int(self._first[i]), int(t.min()))
            self._last[i] = max(int(self._last[i]), int(t.max()))
            seen = self._rates[i]
            if r.shape[0] and bool((r == r[0]).all()):
                vals, counts = r[:1], np.array([r.shape[0]])
            else:
                vals, counts = np.unique(r, return_counts=True)
            for v, c in zip(vals.tolist(), counts.tolist(), strict=True):
                if v == 0:
                    self._no_rate[i] += np.uint64(c)
                key_rate = v if (v in seen or len(seen) < MAX_RATES) else OTHER_RATE
                seen[key_rate] = seen.get(key_rate, 0) + c

    def snapshot(self) -> ExportersSnapshot:
        m = len(self._index)
        cols = {
            "exporter": self._addr[:m].copy(),
            "first_ns": self._first[:m].copy(),
            "last_ns": self._last[:m].copy(),
            "records": self._records[:m].copy(),
            "packets": self._packets[:m].copy(),
            "bytes": self._bytes[:m].copy(),
            "records_without_rate": self._no_rate[:m].copy(),
        }
        extra = {"rows_without_exporter": self.rows_without_exporter, "rows_over_limit": self.rows_over_limit}
        return ExportersSnapshot(self.name, cols, [dict(r) for r in self._rates], extra)
