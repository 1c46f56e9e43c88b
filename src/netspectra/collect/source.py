"""The collector as a :class:`~netspectra.batch.BatchSource`: UDP exports in, PacketBatch rows out.

::

    UDP listeners (UdpReceiver: one thread each, recvmmsg)
        │ DatagramBatch, in the listener's thread
        ▼
    FlowDecoder.decode ──▶ flow_batch (keys from sampled headers, counts × sampling rate)
        │ PacketBatch (one row per flow record)
        ▼
    bounded queue (rows) ──▶ __iter__ (coalesces small batches) ──▶ publisher / engine
        full: the batch is dropped and counted (``queue_dropped_records``): a listener never waits,
        or the kernel would drop instead, unseen until the next datagram

:class:`CollectorSource` is what ``netspectra collect`` publishes to NATS, what ``up --collect`` runs
in-process, and what the service-level tests feed. Contract (the BatchSource one): iterating blocks
until rows come and ends after :meth:`stop`, having handed out every row decoded until then —
:meth:`stop` first makes every listener read what its socket still holds (a graceful stop loses
nothing already received), then counts the data sets still waiting for a template as dropped, then
ends the iteration once the queue is empty. ``stats`` is a :class:`CollectorSourceStats`, current at
any time. Data sets that wait for their template too long are expired by a timer (once a second),
also when no datagram arrives.
"""

from __future__ import annotations

import errno
import logging
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

from netspectra.batch import PacketBatch
from netspectra.bounded import BoundedQueue
from netspectra.collect.batches import EXTRA_COLUMNS, FlowBatchStats, flow_batch
from netspectra.collect.records import DatagramBatch
from netspectra.config.collect import CollectConfig, parse_udp_listen

log = logging.getLogger(__name__)

__all__ = ["CollectorError", "CollectorSource", "CollectorSourceStats"]

#: Rows at most in one batch handed out by the iteration (small receive batches are coalesced).
MAX_BATCH_ROWS = 65_536


class CollectorError(RuntimeError):
    """The collector cannot start: an address that cannot be bound, with the reason and the fix."""


class CollectorSourceStats:
    """Everything the collector counts: the decoder's (per exporter), the listeners', the conversion's,
    the queue's. Read at any time; :meth:`as_dict` for summaries, metrics and tests."""

    def __init__(self, source: CollectorSource) -> None:
        self._source = source

    @property
    def decoder(self) -> Any:
        return self._source.decoder.stats

    @property
    def rows(self) -> FlowBatchStats:
        return self._source.rows

    def listeners(self) -> list[dict[str, object]]:
        return self._source.receiver.stats()

    @property
    def queue_dropped_records(self) -> int:
        return int(self._source.queue.dropped_units)

    @property
    def queue_dropped_batches(self) -> int:
        return int(self._source.queue.dropped_items)

    @property
    def kernel_drops(self) -> int:
        return sum(int(x["drops"]) for x in self.listeners())  # type: ignore[call-overload]

    def as_dict(self) -> dict[str, Any]:
        return {
            "listeners": self.listeners(),
            "kernel_drops": self.kernel_drops,
            "decoder": self.decoder.as_dict(),
            "rows": self.rows.as_dict(),
            "queue_dropped_records": self.queue_dropped_records,
            "queue_dropped_batches": self.queue_dropped_batches,
            "batches_out": self._source.batches_out,
            "rows_out": self._source.rows_out,
        }


class CollectorSource:
    """Flow exports received on UDP as a source of batches (see the module docstring).

    ``listen``: addresses (``udp://HOST:PORT``, ``HOST:PORT``, ``:PORT``; default ``collect.listen``).
    ``extras``: fill the decoder's optional columns (a configuration with flow records asks for them).
    ``queue_rows``: rows decoded and not yet taken before new ones are dropped (counted).
    Binding happens here: :class:`CollectorError` names the address that cannot be bound and why.
    """

    def __init__(
        self,
        collect: CollectConfig | None = None,
        *,
        listen: Sequence[str] | None = None,
        extras: bool = False,
        queue_rows: int = 1 << 21,
        linger_s: float = 0.002,
    ) -> None:
        from netspectra.collect.decoder import FlowDecoder
        from netspectra.collect.receiver import UdpReceiver

        cfg = collect if collect is not None else CollectConfig()
        if listen:  # the configuration's checks (ValueError naming a bad address)
            cfg = CollectConfig.model_validate({**cfg.model_dump(), "listen": tuple(listen)})
        self.config = cfg
        self.extras = extras
        self.decoder = FlowDecoder(cfg)
        self.rows = FlowBatchStats()
        self.queue: BoundedQueue[PacketBatch] = BoundedQueue(
            queue_rows, units=len, name="collector queue", unit="records", logger=log
        )
        self.batches_out = 0
        self.rows_out = 0
        self._stopping = threading.Event()
        self._stopped = False
        self._lock = threading.Lock()
        self._expirer: threading.Thread | None = None
        addresses = cfg.listen_addresses()
        try:
            self.receiver = UdpReceiver(
                addresses,
                self._on_batch,
                rcvbuf=cfg.socket_buffer,
                batch=cfg.batch_datagrams,
                linger_s=linger_s,
            )
        except OSError as exc:
            raise CollectorError(_bind_message(cfg.listen, addresses, exc)) from None
        self.stats = CollectorSourceStats(self)

    # -- life --------------------------------------------------------------------------------------

    @property
    def addresses(self) -> list[str]:
        """``host:port`` of every bound listener (the real port where 0 was asked)."""
        return self.receiver.addresses

    def start(self) -> CollectorSource:
        """Start receiving (one thread per listener) and the expiry timer."""
        self.receiver.start()
        self._expirer = threading.Thread(target=self._expire, name="collect-expire", daemon=True)
        self._expirer.start()
        return self

    def _expire(self) -> None:
        while not self._stopping.wait(1.0):
            try:
                self.decoder.expire(time.time_ns())
            except Exception:  # never stop the collector over bookkeeping; logged
                log.exception("collector: expiring waiting data sets failed")

    def _on_batch(self, dg: DatagramBatch) -> None:
        """A listener's batch of datagrams (its thread): decode, convert, queue (never waits)."""
        result = self.decoder.decode(dg)
        batch = flow_batch(result.records, extras=self.extras, stats=self.rows)
        if len(batch):
            self.queue.put(batch, block=False)

    def __iter__(self) -> Iterator[PacketBatch]:
        q = self.queue
        while True:
            items = q.take(MAX_BATCH_ROWS, timeout=0.2)
            if items is None:  # stopped, and everything queued was handed out
                return
            if not items:
                continue
            batch = items[0] if len(items) == 1 else PacketBatch.concat(items)
            self.batches_out += 1
            self.rows_out += len(batch)
            yield batch

    def stop(self) -> None:
        """Receive what the sockets hold, then end the iteration once everything queued was handed out
        (idempotent; any thread)."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
        self._stopping.set()
        self.receiver.stop()  # drains the sockets into _on_batch, joins the threads, closes the sockets
        dropped = self.decoder.close()
        if dropped:
            log.warning(
                "collector: %d data set(s) still waited for their template at the stop: counted in "
                "pending_dropped_sets",
                dropped,
            )
        self.queue.close()

    def close(self) -> None:
        self.stop()

    def kernel_drops(self) -> int:
        """Datagrams the kernel dropped on the listeners' sockets (receive buffers full), all together."""
        return self.stats.kernel_drops

    def __enter__(self) -> CollectorSource:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def columns_for(extras: bool) -> tuple[str, ...]:
    """The optional columns of the collector's batches."""
    return (*PacketBatch.EXPORT_COLUMNS, *(EXTRA_COLUMNS if extras else ()))


def _bind_message(listen: Sequence[str], addresses: list[tuple[str, int]], exc: OSError) -> str:
    where = ", ".join(f"udp://{h}:{p}" if ":" not in h else f"udp://[{h}]:{p}" for h, p in addresses)
    if exc.errno == errno.EADDRINUSE:
        fix = (
            "another process (an earlier collector, nfcapd, pmacct) already listens there: stop it or "
            "--listen elsewhere"
        )
    elif exc.errno == errno.EACCES:
        fix = "ports below 1024 need root or CAP_NET_BIND_SERVICE: use the usual 2055/4739/6343"
    elif exc.errno == errno.EADDRNOTAVAIL:
        fix = "no interface has that address: use 0.0.0.0 (every interface) or one of the machine's addresses"
    else:
        fix = "check the address"
    return f"collector: cannot listen on {where}: {exc.strerror or exc}; {fix} (collect.listen / --listen)"


def parse_listen_option(values: Sequence[str]) -> tuple[str, ...]:
    """``--listen`` values (each may hold several, comma-separated) as listen addresses; ValueError
    naming a bad one."""
    out: list[str] = []
    for v in values:
        for part in v.replace(",", " ").split():
            parse_udp_listen(part)
            out.append(part)
    return tuple(out)
