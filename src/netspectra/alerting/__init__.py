"""Alerting: rules evaluated on the engine's task snapshots, deduplicated, sent to notifiers.

* :mod:`~netspectra.alerting.rules` — metrics, operators, the original's HTML fragments and layout.
* :mod:`~netspectra.alerting.alerter` — :class:`Alerter`: the periodic and final checks on a
  :class:`~netspectra.engine.manager.Manager`, deduplication with a cooldown, AI enrichment, history.
* :mod:`~netspectra.alerting.notifiers` — :class:`Notifier` registry: log, webhook, e-mail.
"""

from netspectra.alerting.alerter import (
    Alerter,
    AlertingConfigError,
    AlertRecord,
    attach_alerter,
    build_notifiers,
)
from netspectra.alerting.notifiers import (
    EmailNotifier,
    LogNotifier,
    Notification,
    Notifier,
    NotifierError,
    WebhookNotifier,
    available_notifiers,
    notifier_class,
    verify_signature,
)
from netspectra.alerting.rules import RuleResult, TaskAlert, compare, evaluate, evaluate_rule

__all__ = [
    "AlertRecord",
    "Alerter",
    "AlertingConfigError",
    "EmailNotifier",
    "LogNotifier",
    "Notification",
    "Notifier",
    "NotifierError",
    "RuleResult",
    "TaskAlert",
    "WebhookNotifier",
    "attach_alerter",
    "available_notifiers",
    "build_notifiers",
    "compare",
    "evaluate",
    "evaluate_rule",
    "notifier_class",
    "verify_signature",
]
