"""Run services together: signals, the ops endpoint, supervision and a bounded shutdown.

Every long-running command is a :class:`Stack` of services (``probe``: a probe; ``engine``: an engine;
``up``: nats-server, engine, query service and optionally a probe). :meth:`Stack.run`:

1. installs SIGINT/SIGTERM handlers (a signal during start-up is acted on between start steps, never
   in the middle of one: what started is unwound, the command exits 0);
2. wires every service to the ops endpoint and starts them in order;
3. supervises from the main thread: liveness (``/healthz``) beats while every service's threads turn;
   a service that ends on its own is reported — an *essential* one ends the stack (the probe of
   ``netspectra probe`` finishing its files, an engine that failed, a nats-server that could not be
   restarted), another one only logs (``up``'s probe);
4. stops every service in reverse order, each within its ``stop_timeout_s`` (a step that hangs is
   abandoned with an error in the log, the stop goes on): SIGTERM never hangs.

The outcome is a :class:`StackResult`: per service its summary (``--json``) and report (readable), and
the error that ended the stack, if any.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from netspectra.services.base import Section, Service, ServiceError

log = logging.getLogger(__name__)

__all__ = ["Stack", "StackResult", "StopSignals", "arm_exit_watchdog"]


def arm_exit_watchdog(code: int, timeout_s: float = 30.0) -> None:
    """Make sure the process ends: if it still runs ``timeout_s`` after this call — a library thread
    that is not a daemon keeps the interpreter waiting, or a library's exit handler hangs (a C thread
    watches, so this works even while the interpreter is finalizing) — every thread's stack is printed
    on stderr, so that the culprit can be fixed, and the process exits at once (``code`` when the
    interpreter still runs Python, else 1). Call it when a command has stopped its services and printed
    its summary; only in a process of the command's own (:data:`netspectra.process.OWN_PROCESS`)."""
    import faulthandler
    import os
    import sys

    from netspectra import process

    if not process.OWN_PROCESS or threading.current_thread() is not threading.main_thread():
        return
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()

    def fire() -> None:
        sys.stderr.write(f"netspectra: still running {timeout_s:.0f} s after the stop; threads:\n")
        sys.stderr.flush()
        faulthandler.dump_traceback(all_threads=True)
        os._exit(code)

    timer = threading.Timer(timeout_s, fire)
    timer.daemon = True
    timer.start()
    # the last resort, from a C thread: also while the interpreter finalizes (holding the GIL)
    faulthandler.dump_traceback_later(timeout_s + 5, exit=True)


class StopSignals:
    """SIGINT/SIGTERM turned into a flag (``event``, ``reason``), from the moment it is created: a
    command creates it before it starts anything, so that a signal during the set-up is noted and acted
    on between steps, never in the middle of one. In the main thread only (elsewhere: nothing is
    installed, the flag is still usable). :meth:`restore` puts the previous handlers back."""

    def __init__(self, name: str = "netspectra") -> None:
        self.name = name
        self.event = threading.Event()
        self.reason = ""
        self.stopping = False
        self._old: dict[int, Any] = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._on_signal)

    def _on_signal(self, signum: int, _frame: object) -> None:
        sig = signal.Signals(signum).name
        if self.stopping:
            log.warning(
                "%s: %s while stopping: already stopping (every step has a time limit)", self.name, sig
            )
            return
        self.set(f"{sig} received")

    def set(self, reason: str) -> None:
        if not self.event.is_set():
            self.reason = reason
            self.event.set()

    def restore(self) -> None:
        for sig, handler in self._old.items():
            with contextlib.suppress(ValueError, TypeError):
                signal.signal(sig, handler)
        self._old = {}


@dataclass
class StackResult:
    """What a stack did: ``summary`` (service name → counters), ``sections`` (readable), ``error``
    (the message that ended it, or None) and ``code`` (the exit status)."""

    summary: dict[str, Any] = field(default_factory=dict)
    sections: list[Section] = field(default_factory=list)
    error: str | None = None
    code: int = 0
    interrupted: bool = False


class Stack:
    """Services run as one (see the module docstring).

    ``essential``: names of the services whose end ends the stack (default: all). ``duration_s``: stop
    after that long. ``on_tick(stack)`` is called from the supervising loop about every 0.2 s (``up``
    uses it to snapshot a finished replay). ``on_started(stack)`` once everything started.
    """

    def __init__(
        self,
        name: str,
        services: Sequence[Service],
        *,
        ops: Any = None,
        essential: Sequence[str] | None = None,
        duration_s: float | None = None,
        on_started: Callable[[Stack], None] | None = None,
        on_tick: Callable[[Stack], None] | None = None,
        signals: StopSignals | None = None,
    ) -> None:
        self.name = name
        self.services = list(services)
        self.ops = ops
        self.essential = set(essential) if essential is not None else {s.name for s in self.services}
        self.duration_s = duration_s
        self.on_started = on_started
        self.on_tick = on_tick
        self.signals = signals
        self._started: list[Service] = []
        self._ended: set[str] = set()

    def service(self, name: str) -> Service | None:
        return next((s for s in self.services if s.name == name), None)

    def _signals(self) -> StopSignals:
        if self.signals is None:
            self.signals = StopSignals(self.name)
        return self.signals

    @property
    def stop_requested(self) -> threading.Event:
        return self._signals().event

    @property
    def stop_reason(self) -> str:
        return self._signals().reason

    def request_stop(self, reason: str) -> None:
        """Stop the stack soon (thread-safe; the first reason wins)."""
        self._signals().set(reason)

    # -- run ---------------------------------------------------------------------------------------

    def run(self) -> StackResult:
        result = StackResult()
        signals = self._signals()
        try:
            try:
                self._start_all()
            except ServiceError as exc:
                result.error, result.code = str(exc), exc.code
                self.request_stop(str(exc))
            except BaseException:
                self.request_stop("start-up failed")
                self._stop_all()  # what started (and the service that failed half-way) is stopped first
                raise
            else:
                if not self.stop_requested.is_set():
                    if self.on_started is not None:
                        self.on_started(self)
                    self._supervise(result)
            result.interrupted = self.stop_reason.endswith("received")
            self._stop_all()
        finally:
            signals.restore()
        for s in self.services:
            if s.error is not None and result.error is None and s.name in self.essential:
                result.error = str(s.error)
                result.code = getattr(s.error, "code", 1)
        for s in self.services:
            try:
                result.summary[s.name] = s.summary()
                result.sections.extend(s.report())
            except Exception:  # a summary must never hide the outcome
                log.exception("%s: summary of %s failed", self.name, s.name)
        return result

    def _start_all(self) -> None:
        if self.ops is not None:
            for s in self.services:
                s.wire_ops(self.ops)
            # alive while starting too (a JetStream engine may wait long for earlier members)
            starting = threading.Event()
            beat = self.ops.heartbeat

            def beating() -> None:
                while not starting.wait(1.0):
                    if all(s.alive() for s in self._started):
                        beat.beat()

            threading.Thread(target=beating, name="ns-start-heartbeat", daemon=True).start()
            try:
                self._start_each()
            finally:
                starting.set()
            return
        self._start_each()

    def _start_each(self) -> None:
        for s in self.services:
            if self.stop_requested.is_set():
                log.info("%s: %s during start-up: stopping what started", self.name, self.stop_reason)
                return
            try:
                s.start(self.stop_requested)
            finally:
                # A service whose start failed half-way is stopped with the others: what it started goes
                # down in order (an engine that cannot reach NATS had opened its writers: an embedded
                # ClickHouse left open at exit crashed the process). Every service's stop copes with a
                # partial start.
                self._started.append(s)

    def _supervise(self, result: StackResult) -> None:
        t0 = time.monotonic()
        heartbeat = self.ops.heartbeat if self.ops is not None else None
        while not self.stop_requested.wait(0.2):
            if heartbeat is not None and all(s.alive() for s in self._started):
                heartbeat.beat()
            for s in self._started:
                if s.name in self._ended or not s.done():
                    continue
                self._ended.add(s.name)
                if s.error is not None:
                    if s.name in self.essential:  # the command reports the error at its end
                        log.info("%s: %s failed: %s", self.name, s.name, s.error)
                        result.error, result.code = str(s.error), getattr(s.error, "code", 1)
                        self.request_stop(f"{s.name} failed")
                    else:
                        log.error("%s failed: %s (the rest of the stack keeps running)", s.name, s.error)
                elif s.name in self.essential:
                    self.request_stop(f"{s.name} finished")
                else:
                    log.info("%s: %s finished", self.name, s.name)
            if self.duration_s is not None and time.monotonic() - t0 >= self.duration_s:
                self.request_stop("--duration reached")
            if self.on_tick is not None and not self.stop_requested.is_set():
                try:
                    self.on_tick(self)
                except Exception:
                    log.exception("%s: periodic hook failed", self.name)

    def _stop_all(self) -> None:
        self._signals().stopping = True
        if self.ops is not None:
            self.ops.set_stopping(self.stop_reason or "stopping")
        log.info("%s: stopping (%s)", self.name, self.stop_reason or "done")
        for s in reversed(self._started):
            t0 = time.monotonic()
            try:
                s.stop(s.stop_timeout_s)
            except Exception:
                log.exception("%s: stopping %s failed", self.name, s.name)
            log.debug("%s: %s stopped in %.1f s", self.name, s.name, time.monotonic() - t0)
        if self.ops is not None:
            self.ops.stop()
