"""The alerter: evaluates the rules on the engine's tasks every ``check_interval`` and once at stop.

::

    Manager ──snapshot(task)──▶ rules ──▶ dedup/cooldown ──▶ summary ──▶ [AI analysis] ──▶ notifiers
                                                                    └──▶ history (+ sink)

What it guarantees (and the original did not):

* **Runs without SMTP.** Alerts always reach the log notifier; e-mail and webhooks are added when
  configured. The original built no alerter at all when ``smtp.host`` was empty (bug 10).
* **No alert storms.** A condition is identified by task, rule and metric (and, for sketch rules, each
  flow). A check notifies only when a condition is new (it did not hold at the previous check) or was
  last notified at least ``cooldown`` ago; a condition that stops holding is forgotten, so its return
  is new. A summary lists every currently firing rule of the tasks it reports, so the reader has the
  context. The original re-sent every standing condition at every check.
* **Failures are reported.** Each notifier's outcome is logged and kept in the :class:`AlertRecord`;
  a failing notifier does not stop the others. A condition counts as notified when at least one
  notifier delivered it; when all fail it is retried at the next check.
* **AI never delays or loses an alert.** The analysis gets ``ai_timeout_s``; on failure the alert goes
  out with a one-line note instead of the analysis.
* **Time from the engine's clock**, so a :class:`~netspectra.engine.manager.ManualClock` drives checks
  and cooldowns deterministically (:meth:`Alerter.wait_checks` waits for the timer's checks).
"""

from __future__ import annotations

import contextlib
import html
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from netspectra.ai.client import AI_SECTION_HEADING, AiClient, AiClientError, ai_section_html
from netspectra.alerting.notifiers import (
    EmailNotifier,
    LogNotifier,
    Notification,
    Notifier,
    NotifierError,
    WebhookNotifier,
)
from netspectra.alerting.rules import (
    TaskAlert,
    ai_input,
    evaluate,
    summary_html,
    summary_subject,
    summary_text,
)
from netspectra.config.models import AlertRule, Config
from netspectra.counters import Counter, LabeledCounter
from netspectra.engine.manager import SystemClock

log = logging.getLogger(__name__)

DEFAULT_COOLDOWN = timedelta(hours=1)
DEFAULT_AI_TIMEOUT_S = 60.0
DEFAULT_HISTORY = 1000
#: Seconds the final check at stop may spend on the AI analysis and the notifiers together: an AI
#: service, webhook or mail server that does not answer cannot hold the engine's stop (a webhook that
#: accepted and never answered held `up`'s Ctrl-C for 49 s: 4 attempts of 10 s, and the back-off).
FINAL_CHECK_TIMEOUT_S = 10.0

#: ``snapshot_of(task_name)``: the task's current snapshot.
SnapshotSource = Callable[[str], Any]
#: ``sink(record)``: called with every :class:`AlertRecord` (e.g. a ClickHouse alert table writer).
AlertSink = Callable[["AlertRecord"], None]


class AlertingConfigError(ValueError):
    """A configuration the alerter cannot work with; the message names the key and the fix."""


@dataclass
class AlertRecord:
    """One check that notified: what fired, what was sent, and how each delivery went.

    ``deliveries`` maps each notifier's name to ``None`` (delivered) or the error message;
    ``ai_status`` is ``"ok"``, ``"disabled"`` or ``"failed: …"``; ``suppressed`` counts the fired
    conditions left out because they were already notified within the cooldown.
    """

    time_ns: int
    subject: str
    alerts: tuple[TaskAlert, ...]
    html: str
    ai_status: str = "disabled"
    ai_analysis: str = ""
    deliveries: dict[str, str | None] = field(default_factory=dict)
    suppressed: int = 0
    final: bool = False

    @property
    def delivered(self) -> bool:
        """Whether at least one notifier delivered it."""
        return any(err is None for err in self.deliveries.values())

    @property
    def failures(self) -> dict[str, str]:
        return {k: v for k, v in self.deliveries.items() if v is not None}


class AlerterMetrics:
    """Counters of one :class:`Alerter` (thread-safe; exported by :mod:`netspectra.ops`).

    ``sent`` / ``failed``: notifications delivered / not delivered, by notifier name (each notifier
    appears at 0 from the start); ``checks``: checks run, by ``outcome`` (``notified``, ``quiet``,
    ``error``); ``undelivered``: notifications no notifier delivered.
    """

    def __init__(self, notifier_names: Sequence[str] = ()) -> None:
        self.sent = LabeledCounter()
        self.failed = LabeledCounter()
        self.checks = LabeledCounter()
        self.undelivered = Counter()
        for name in notifier_names:
            self.sent.touch(name)
            self.failed.touch(name)
        for outcome in ("notified", "quiet", "error"):
            self.checks.touch(outcome)


class Alerter:
    """Evaluates ``rules`` on the snapshots ``snapshot_of`` gives and notifies (module docstring).

    Use :meth:`attach` to run on a :class:`~netspectra.engine.manager.Manager` (its clock, its
    consistent snapshots, a final check when it stops), or give ``snapshot_of`` and call :meth:`check`.
    ``ai_timeout_s`` bounds the AI analysis (``None``: the ``ai_client``'s own timeout); ``cooldown``
    (timedelta or seconds) is how long a standing condition stays quiet after it was notified.
    """

    def __init__(
        self,
        rules: Sequence[AlertRule],
        notifiers: Sequence[Notifier],
        *,
        check_interval: timedelta | float = timedelta(seconds=600),
        snapshot_of: SnapshotSource | None = None,
        clock: Any = None,
        cooldown: timedelta | float = DEFAULT_COOLDOWN,
        ai_client: AiClient | None = None,
        ai_timeout_s: float | None = None,
        history_size: int = DEFAULT_HISTORY,
        sink: AlertSink | None = None,
        final_timeout_s: float = FINAL_CHECK_TIMEOUT_S,
    ) -> None:
        if not notifiers:
            raise AlertingConfigError("the alerter needs at least one notifier (the log notifier will do)")
        self.rules = tuple(rules)
        self.notifiers = tuple(notifiers)
        self.interval_s = _secs(check_interval)
        if self.interval_s <= 0:
            raise AlertingConfigError("alerter.check_interval must be positive, e.g. 600s")
        self.cooldown_s = _secs(cooldown)
        if self.cooldown_s < 0:
            raise AlertingConfigError("the alert cooldown must not be negative")
        self.snapshot_of = snapshot_of
        self.clock = clock or SystemClock()
        self.ai_client = ai_client
        self.ai_timeout_s = ai_timeout_s
        self.final_timeout_s = float(final_timeout_s)
        self._final_deadline: float | None = None
        self.history: deque[AlertRecord] = deque(maxlen=history_size)
        self.sink = sink
        self.task_names = tuple(dict.fromkeys(r.task_name for r in self.rules))
        self._notified: dict[tuple[str, ...], int] = {}  # condition -> monotonic ns of its last notification
        self._check_lock = threading.Lock()
        self._stop_evt = threading.Event()
        self._thread: threading.Thread | None = None
        self._checks = 0
        self._checks_cond = threading.Condition()
        self._stopped = False
        self.metrics = AlerterMetrics([n.name for n in self.notifiers])

    def __repr__(self) -> str:
        names = ", ".join(n.name for n in self.notifiers)
        return f"Alerter({len(self.rules)} rule(s), every {self.interval_s:g} s, notifiers: {names})"

    # -- construction from the configuration --------------------------------------------------------

    @classmethod
    def from_config(
        cls,
        cfg: Config,
        *,
        notifiers: Sequence[Notifier] | None = None,
        extra_notifiers: Sequence[Notifier] = (),
        env: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> Alerter:
        """The alerter of ``cfg.alerter`` with :func:`build_notifiers` (unless ``notifiers`` is given,
        plus ``extra_notifiers``) and the AI client of ``alerter.ai_analysis``.

        :class:`AlertingConfigError` when ``alerter.enabled`` is false or a notifier's settings are
        incomplete (e.g. ``smtp.host`` set but ``smtp.to`` empty).
        """
        al = cfg.alerter
        if not al.enabled:
            raise AlertingConfigError("alerter.enabled is false; set it to true to evaluate alert rules")
        chosen = list(notifiers) if notifiers is not None else build_notifiers(cfg, env=env)
        chosen.extend(extra_notifiers)
        ai_client = kwargs.pop("ai_client", None)
        ai_timeout_s = kwargs.pop(
            "ai_timeout_s", _secs(getattr(al.ai_analysis, "timeout", DEFAULT_AI_TIMEOUT_S))
        )
        if ai_client is None and al.ai_analysis.enabled:
            if al.ai_analysis.service_addr:
                ai_client = AiClient(al.ai_analysis.service_addr, timeout_s=ai_timeout_s)
            else:
                log.warning(
                    "alerter.ai_analysis.enabled is true but service_addr is empty (ALERTER_AI_SERVICE_ADDR "
                    "unset?): alerts are sent without AI analysis"
                )
        cooldown = kwargs.pop("cooldown", getattr(al, "cooldown", None))
        if cooldown is None:
            cooldown = DEFAULT_COOLDOWN
        return cls(
            al.rules,
            chosen,
            check_interval=al.check_interval,
            cooldown=cooldown,
            ai_client=ai_client,
            ai_timeout_s=ai_timeout_s,
            **kwargs,
        )

    # -- running on a manager ------------------------------------------------------------------------

    def attach(self, manager: Any, *, start: bool = True) -> Alerter:
        """Evaluate on ``manager``'s tasks with its clock; a final check runs when it stops.

        Rules naming a task the manager does not run are reported (WARNING) and skipped.
        ``start`` starts the periodic timer now.
        """
        known = {t.name for t in manager.tasks}
        missing = [n for n in self.task_names if n not in known]
        if missing:
            log.warning(
                "alert rules of task(s) %s are skipped: the engine does not run them (aggregator.types?)",
                ", ".join(missing),
            )
        self.task_names = tuple(n for n in self.task_names if n in known)
        self.snapshot_of = lambda name: manager.snapshot(name)[0]
        self.clock = manager.clock
        manager.on_stop.append(lambda _m: self.stop())
        if start:
            self.start()
        return self

    def start(self) -> None:
        """Start the timer: a check every ``check_interval`` on the clock. Idempotent."""
        if self.snapshot_of is None:
            raise RuntimeError("Alerter.start() without a snapshot source: attach() it to a manager")
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._loop, name="ns-alerter", daemon=True)
        self._thread.start()
        log.info("%r started", self)

    def _loop(self) -> None:
        step = max(1, round(self.interval_s * 1e9))
        deadline = self.clock.monotonic_ns() + step
        while not self.clock.wait_until(deadline, self._stop_evt):
            try:
                self.check()
            except Exception:
                self.metrics.checks.inc("error")
                log.exception("alert check failed")
            with self._checks_cond:
                self._checks += 1
                self._checks_cond.notify_all()
            now = self.clock.monotonic_ns()
            deadline += step
            if deadline <= now:  # late (pause, clock jump): one check, then back on the grid
                deadline += ((now - deadline) // step + 1) * step

    def wait_checks(self, n: int, timeout: float = 10.0) -> bool:
        """Wait until the timer has run at least ``n`` checks since :meth:`start`; False on timeout."""
        with self._checks_cond:
            return self._checks_cond.wait_for(lambda: self._checks >= n, timeout)

    @property
    def checks_run(self) -> int:
        """Checks the timer has run (the final check at stop not included)."""
        return self._checks

    def stop(self) -> AlertRecord | None:
        """Stop the timer, run one final check, close the AI client. Idempotent (later calls: None)."""
        with self._checks_cond:
            if self._stopped:
                return None
            self._stopped = True
        # The stop is bounded: a check still notifying, then the final check's AI analysis and notifiers
        # share final_timeout_s (set before the join, so that a check in flight gives up too).
        self._final_deadline = time.monotonic() + self.final_timeout_s
        for n in self.notifiers:
            n.deadline = self._final_deadline
        self._stop_evt.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
        record = None
        if self.snapshot_of is not None:
            try:
                record = self.check(final=True)
            except Exception:
                log.exception("final alert check failed")
        if self.ai_client is not None:
            self.ai_client.close()
        for n in self.notifiers:
            with contextlib.suppress(Exception):
                n.close()
        return record

    # -- one check -----------------------------------------------------------------------------------

    def evaluate(self) -> list[TaskAlert]:
        """Every task's fired rules now (no dedup, nothing sent). A task whose snapshot fails is logged
        and skipped."""
        if self.snapshot_of is None:
            raise RuntimeError("no snapshot source: attach() the alerter to a manager or pass snapshot_of")
        alerts: list[TaskAlert] = []
        for name in self.task_names:
            try:
                snap = self.snapshot_of(name)
            except Exception:
                log.exception("alerting: cannot snapshot task %s; its rules are skipped this check", name)
                continue
            try:
                alert = evaluate(name, snap, self.rules)
            except Exception:
                log.exception("alerting: evaluating the rules of task %s failed", name)
                continue
            if alert is not None:
                alerts.append(alert)
        return alerts

    def check(self, *, final: bool = False) -> AlertRecord | None:
        """Evaluate, deduplicate, and notify; the :class:`AlertRecord` if anything was sent, else None."""
        with self._check_lock:
            now = self.clock.monotonic_ns()
            fired = self.evaluate()
            current = {fp for a in fired for r in a.results for fp in r.fingerprints}
            # conditions that no longer hold are forgotten: their return is news
            for fp in [fp for fp in self._notified if fp not in current]:
                del self._notified[fp]
            cooldown_ns = round(self.cooldown_s * 1e9)

            def due(fp: tuple[str, ...]) -> bool:
                last = self._notified.get(fp)
                return last is None or now - last >= cooldown_ns

            report = [a for a in fired if any(due(fp) for r in a.results for fp in r.fingerprints)]
            reported = {id(a) for a in report}
            suppressed = sum(len(a.results) for a in fired if id(a) not in reported)
            if not report:
                if fired:
                    log.info(
                        "alerting: %d standing condition(s) already notified; nothing sent", len(current)
                    )
                self.metrics.checks.inc("quiet")
                return None
            record = self._notify(report, final=final)
            self.metrics.checks.inc("notified")
            record.suppressed = suppressed
            if record.delivered:
                for a in report:
                    for r in a.results:
                        for fp in r.fingerprints:
                            self._notified[fp] = now
            self.history.append(record)
            if self.sink is not None:
                try:
                    self.sink(record)
                except Exception:
                    log.exception("alert history sink failed")
            return record

    def _notify(self, alerts: list[TaskAlert], *, final: bool) -> AlertRecord:
        subject = summary_subject(len(alerts))
        body = summary_html(alerts)
        ai_status, analysis = "disabled", ""
        if self.ai_client is not None:
            try:
                ai_timeout = self.ai_timeout_s
                if self._final_deadline is not None:  # stopping: at most half of what is left
                    half = max(0.1, (self._final_deadline - time.monotonic()) / 2)
                    ai_timeout = min(ai_timeout if ai_timeout is not None else DEFAULT_AI_TIMEOUT_S, half)
                analysis = self.ai_client.analyze(ai_input(alerts), timeout_s=ai_timeout)
                ai_status = "ok"
                body += ai_section_html(analysis)
            except AiClientError as exc:
                ai_status = f"failed: {exc}"
                log.warning("AI analysis failed (%s); the alert is sent without it", exc)
                note = html.escape(str(exc))
                body += f"{AI_SECTION_HEADING}<p><em>AI analysis unavailable: {note}</em></p>"
            except Exception as exc:  # never lose the alert to the AI path
                ai_status = f"failed: {type(exc).__name__}: {exc}"
                log.exception("AI analysis failed; the alert is sent without it")
        n_rules = sum(len(a.results) for a in alerts)
        log.info("alerting: %d rule(s) of %d task(s) fired; notifying", n_rules, len(alerts))
        notification = Notification(
            subject=subject,
            html=body,
            text=summary_text(alerts),
            alerts=tuple(r.to_dict() for a in alerts for r in a.results),
            ai_analysis=analysis,
            time_ns=self.clock.time_ns(),
        )
        record = AlertRecord(
            notification.time_ns, subject, tuple(alerts), body, ai_status, analysis, final=final
        )
        for i, n in enumerate(self.notifiers):
            key = n.name if n.name not in record.deliveries else f"{n.name}#{i + 1}"
            try:
                n.send(notification)
                record.deliveries[key] = None
                self.metrics.sent.inc(n.name)
            except NotifierError as exc:
                record.deliveries[key] = str(exc)
                self.metrics.failed.inc(n.name)
                log.error("alert notification via %s failed: %s", key, exc)
            except Exception as exc:
                record.deliveries[key] = f"{type(exc).__name__}: {exc}"
                self.metrics.failed.inc(n.name)
                log.exception("alert notification via %s failed", key)
        if not record.delivered:
            self.metrics.undelivered.inc()
            log.error("alert %r was not delivered by any notifier; it is retried at the next check", subject)
        return record


def _secs(value: timedelta | float) -> float:
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


def _get(section: Any, key: str, default: Any = None) -> Any:
    if section is None:
        return default
    if isinstance(section, Mapping):
        return section.get(key, default)
    return getattr(section, key, default)


def build_notifiers(cfg: Config, *, env: Mapping[str, str] | None = None) -> list[Notifier]:
    """The notifiers of a configuration: always the log; e-mail when ``smtp.host`` is set; webhooks
    from ``alerter.webhooks`` and the environment ``NETSPECTRA_ALERT_WEBHOOK_URL``
    (with ``…_SECRET``, ``…_FORMAT`` json|slack).

    :class:`AlertingConfigError` when a configured notifier is incomplete.
    """
    env = os.environ if env is None else env
    out: list[Notifier] = [LogNotifier()]
    smtp = cfg.smtp
    if smtp.host:
        try:
            out.append(EmailNotifier.from_config(smtp))
        except ValueError as exc:
            raise AlertingConfigError(str(exc)) from None
    else:
        log.warning("smtp.host is empty: alerts are not e-mailed (they still go to the log and any webhook)")
    hooks: list[Any] = []
    wh = getattr(cfg.alerter, "webhook", None) or getattr(cfg.alerter, "webhooks", None)
    if wh:
        hooks.extend(wh if isinstance(wh, list | tuple) else [wh])
    if env.get("NETSPECTRA_ALERT_WEBHOOK_URL"):
        hooks.append(
            {
                "url": env["NETSPECTRA_ALERT_WEBHOOK_URL"],
                "secret": env.get("NETSPECTRA_ALERT_WEBHOOK_SECRET", ""),
                "format": env.get("NETSPECTRA_ALERT_WEBHOOK_FORMAT", "json") or "json",
            }
        )
    for i, h in enumerate(hooks):
        url = _get(h, "url", "")
        if not url:
            continue
        try:
            out.append(
                WebhookNotifier(
                    url,
                    secret=_get(h, "secret", "") or "",
                    format=_get(h, "format", "json") or "json",
                    timeout_s=_secs(_get(h, "timeout", 10.0)),
                    retries=int(_get(h, "retries", 3)),
                )
            )
        except ValueError as exc:
            raise AlertingConfigError(f"alerter.webhook[{i}]: {exc}") from None
    return out


def attach_alerter(manager: Any, cfg: Config, **kwargs: Any) -> Alerter | None:
    """The configured alerter attached to (and started on) ``manager``; ``None`` when
    ``alerter.enabled`` is false or there are no rules (said in the log).

    A ``sink`` with a ``close()`` (e.g. :class:`~netspectra.storage.alerts.AlertStoreSink`) is closed
    when the manager stops, after the alerter's final check.
    """
    if not cfg.alerter.enabled:
        log.info("alerting is off (alerter.enabled is false)")
        return None
    if not cfg.alerter.rules:
        log.warning("alerter.enabled is true but alerter.rules is empty: nothing to evaluate")
        return None
    alerter = Alerter.from_config(cfg, **kwargs).attach(manager)
    close = getattr(alerter.sink, "close", None)
    if callable(close):
        manager.on_stop.append(lambda _m: close())
    return alerter
