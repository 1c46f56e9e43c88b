"""The shape of a service, and the thread that runs an asyncio service on its own event loop.

A :class:`Service` is one long-running part of NetSpectra (``probe``, ``engine``, ``api``, the
``nats-server`` child), built from ``(config, options)``. Contract:

* the constructor checks everything it can without side effects (:class:`ServiceError` with the fix);
* :meth:`Service.start` starts it in the background (threads, a child process) and returns once it
  works — or raises :class:`ServiceError` having released what it started;
* :meth:`Service.done` says it has ended on its own (a replay finished, a failure: :attr:`Service.error`);
* :meth:`Service.stop` ends it within ``timeout_s`` whatever happens (a step that hangs is abandoned,
  logged, and the stop goes on), idempotent;
* :meth:`Service.wire_ops` registers its metrics and readiness on an ops endpoint, :meth:`Service.ready`
  says what it lacks (``None``: ready), :meth:`Service.alive` whether its threads still make progress;
* :meth:`Service.summary` is its counters as a JSON-able dict (``--json``), :meth:`Service.report`
  the same as readable sections (:mod:`netspectra.services.summary`).

:class:`~netspectra.services.stack.Stack` runs a list of services: signals, the ops endpoint,
supervision and a bounded shutdown, for every command alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any, ClassVar

log = logging.getLogger(__name__)

__all__ = ["LoopThread", "Service", "ServiceError"]

#: One readable section of a summary: a title and ``(label, value)`` lines.
Section = tuple[str, list[tuple[str, Any]]]


class ServiceError(RuntimeError):
    """A service cannot start or failed; the message says what and what to do. ``code`` is the exit
    status a command should end with (2: usage/configuration, 1: run time)."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


class Service:
    """Base of every service (see the module docstring). Subclasses set :attr:`name`."""

    name: ClassVar[str] = "service"
    #: Seconds :meth:`stop` may take by default.
    stop_timeout_s: ClassVar[float] = 30.0

    error: BaseException | None = None

    def start(self) -> None:
        raise NotImplementedError

    def done(self) -> bool:
        return False

    def stop(self, timeout_s: float | None = None) -> None:
        raise NotImplementedError

    def ready(self) -> str | None:
        return None

    def alive(self) -> bool:
        return True

    def wire_ops(self, ep: Any) -> None:
        """Register this service's series and readiness checks on ``ep`` (before :meth:`start`)."""

    def summary(self) -> dict[str, Any]:
        return {}

    def report(self) -> list[Section]:
        return []

    def banner(self) -> str:
        """One line for the console once started: what it does and where (no secret)."""
        return ""


class LoopThread:
    """Runs ``main(stop)`` — a coroutine function taking an :class:`asyncio.Event` — on an event loop of
    its own in a daemon thread.

    Why a loop per service: services of one process must not share an event loop, or one that seldom
    yields (a publisher: ``nc.publish`` only appends to a buffer) starves the others' NATS readers (the
    cause of the losses of issue 12.7). :meth:`request_stop` sets ``stop`` from any thread;
    :meth:`join` waits a bounded time; :meth:`cancel` cancels ``main`` when it ignores ``stop``.
    ``result``/``error`` hold the outcome; ``last_tick`` is refreshed every second while the loop turns
    (liveness).
    """

    def __init__(self, name: str, main: Callable[[asyncio.Event], Coroutine[Any, Any, Any]]) -> None:
        self.name = name
        self._main = main
        self.loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._task: asyncio.Task[Any] | None = None
        self._started = threading.Event()
        self._stop_requested = threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None
        self.last_tick = time.monotonic()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> LoopThread:
        self._thread.start()
        self._started.wait(10)
        return self

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self.loop = loop
        try:
            loop.run_until_complete(self._amain())
        except BaseException as exc:
            self.error = self.error or exc
        finally:
            with contextlib.suppress(Exception):
                pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
                for t in pending:
                    t.cancel()
                loop.run_until_complete(asyncio.wait(pending, timeout=2) if pending else asyncio.sleep(0))
            with contextlib.suppress(Exception):
                loop.run_until_complete(loop.shutdown_default_executor())
            loop.close()

    async def _amain(self) -> None:
        self._stop = asyncio.Event()
        if self._stop_requested.is_set():
            self._stop.set()
        ticker = asyncio.create_task(self._tick())
        self._task = asyncio.create_task(self._main(self._stop))
        self._started.set()
        try:
            self.result = await self._task
        except asyncio.CancelledError:
            self.error = self.error or TimeoutError(f"{self.name}: cancelled after it did not stop in time")
        except BaseException as exc:
            self.error = exc
        finally:
            ticker.cancel()

    async def _tick(self) -> None:
        while True:
            self.last_tick = time.monotonic()
            await asyncio.sleep(1.0)

    def call(self, fn: Callable[[], Any]) -> None:
        """Run ``fn`` on the loop (thread-safe; ignored once the loop is closed)."""
        loop = self.loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(fn)

    def request_stop(self) -> None:
        self._stop_requested.set()
        if self._stop is not None:
            self.call(self._stop.set)

    def cancel(self) -> None:
        task = self._task
        if task is not None:
            self.call(task.cancel)

    def join(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` for the thread; True if it ended."""
        self._thread.join(max(0.0, timeout_s))
        return not self._thread.is_alive()

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def stop(self, timeout_s: float, what: str) -> bool:
        """Request the stop, wait ``timeout_s``, then cancel and wait 5 s more; True if it ended. Logs
        what was abandoned (``what`` names it)."""
        self.request_stop()
        if self.join(timeout_s):
            return True
        log.error("%s did not stop within %.0f s: cancelling it", what, timeout_s)
        self.cancel()
        if self.join(5.0):
            return True
        log.error("%s still runs after cancelling: abandoned (a daemon thread)", what)
        return False
