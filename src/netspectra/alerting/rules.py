"""Alert rules evaluated on task snapshots, and the HTML the original's alerts are made of.

A rule (``alerter.rules[]``) is ``metric operator threshold`` on one task. The metric belongs to the
task's aggregator kind (:class:`~netspectra.engine.kind.Metric`; every snapshot says its kind in its
``kind`` attribute), which computes its value on a snapshot:

* scalar metrics — exact tasks' ``total_packets``, ``total_bytes``, ``total_flows`` — one number per
  snapshot, compared with the threshold;
* per-flow metrics — sketch tasks' ``heavy_hitter_count`` (packets per flow), ``heavy_hitter_size``
  (bytes per flow), ``super_spreader_spread`` (distinct elements per flow) — every heavy hitter the
  sketch reports (already at or above the task's own threshold) is compared, and the rule fires with
  the list of those that pass. As in the original, ``heavy_hitter_count`` on a SuperSpread task
  compares the spreads (the original kept them in its Count list).

Operators are ``> < = >= <=`` (the configuration rejects anything else; :func:`compare` raises
``ValueError`` rather than returning False as the original did).

HTML: each fired rule gives the original's fragment (``<h3>Alert: NAME</h3><ul>…</ul>``, plus a
``Flow/Source | Value`` table for sketch rules); the fragments of one task are joined by
``<br><hr><br>`` and the tasks of one check by ``<hr>`` under the summary heading
(:func:`summary_html`). Names and flows are HTML-escaped (the original inserted them raw), and a
table lists at most :data:`MAX_TABLE_ROWS` items, then says how many more there are.
"""

from __future__ import annotations

import html
import operator
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from netspectra.config.models import AlertRule
from netspectra.engine.kind import AggregatorKind, Metric
from netspectra.kinds import AGGREGATORS, KindError

#: The product name in headings and subjects.
PRODUCT = "NetSpectra"
#: Rows of a sketch rule's table; the rest are counted in a last row.
MAX_TABLE_ROWS = 50

OPERATORS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt,
    "<": operator.lt,
    "=": operator.eq,
    ">=": operator.ge,
    "<=": operator.le,
}


def compare(value: float, op: str, threshold: float) -> bool:
    """``value op threshold``; ``ValueError`` for an operator other than ``> < = >= <=``."""
    try:
        fn = OPERATORS[op]
    except KeyError:
        raise ValueError(
            f"unknown alert operator {op!r}; valid operators are {', '.join(OPERATORS)}"
        ) from None
    return bool(fn(float(value), float(threshold)))


@dataclass(frozen=True, slots=True)
class RuleResult:
    """One fired rule: the rule, the observed value (scalar metrics) or the items that passed
    (per-flow metrics, ``(flow, value)`` in the sketch's order), its HTML fragment, and the unit of the
    observed value."""

    rule: AlertRule
    value: float | None = None
    items: tuple[tuple[str, int], ...] = ()
    html: str = ""
    unit: str = ""

    @property
    def fingerprints(self) -> tuple[tuple[str, ...], ...]:
        """What identifies this condition across checks: the rule, plus each flow for per-flow rules."""
        base = (self.rule.task_name, self.rule.name, self.rule.metric)
        if self.value is None:
            return tuple((*base, flow) for flow, _ in self.items)
        return (base,)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description (webhooks, history)."""
        d: dict[str, Any] = {
            "rule": self.rule.name,
            "task": self.rule.task_name,
            "metric": self.rule.metric,
            "operator": self.rule.operator,
            "threshold": self.rule.threshold,
        }
        if self.value is not None:
            d["value"] = self.value
            d["unit"] = self.unit
        else:
            d["items"] = [{"flow": f, "value": v} for f, v in self.items]
        return d


@dataclass(frozen=True, slots=True)
class TaskAlert:
    """The fired rules of one task in one check; :attr:`html` is the task's summary fragment."""

    task_name: str
    results: tuple[RuleResult, ...] = field(default_factory=tuple)

    @property
    def html(self) -> str:
        return "<br><hr><br>".join(r.html for r in self.results)


def _esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def _head(rule: AlertRule) -> str:
    return (
        f"<h3>Alert: {_esc(rule.name)}</h3>"
        "<ul>"
        f"<li><b>Task:</b> <code>{_esc(rule.task_name)}</code></li>"
        f"<li><b>Metric:</b> <code>{_esc(rule.metric)}</code></li>"
        f"<li><b>Condition:</b> <code>{_esc(rule.operator)} {rule.threshold:.2f}</code></li>"
    )


def exact_fragment(rule: AlertRule, value: float, unit: str = "") -> str:
    """The original's fragment of a fired scalar (exact-task) rule."""
    return f"{_head(rule)}<li><b>Observed Value:</b> <code>{value:.0f} {unit}</code></li></ul>"


def sketch_fragment(rule: AlertRule, items: Sequence[tuple[str, int]], suffix: str = "") -> str:
    """The original's fragment of a fired per-flow (sketch) rule: the head and a ``Flow/Source | Value``
    table (``suffix`` after each value, e.g. `` bytes``)."""
    rows = "".join(
        f"<tr><td><code>{_esc(flow)}</code></td><td>{value}{suffix}</td></tr>"
        for flow, value in items[:MAX_TABLE_ROWS]
    )
    if len(items) > MAX_TABLE_ROWS:
        rows += f'<tr><td colspan="2">… and {len(items) - MAX_TABLE_ROWS} more</td></tr>'
    table = (
        '<table border="1" cellpadding="5" cellspacing="0">'
        f"<tr><th>Flow/Source</th><th>Value</th></tr>{rows}</table>"
    )
    return f"{_head(rule)}</ul><p><b>Triggering Items:</b></p>{table}"


def rule_metric(snapshot: Any, rule: AlertRule) -> tuple[AggregatorKind, Metric]:
    """The kind that produced ``snapshot`` (its ``kind`` attribute) and ``rule``'s metric of that kind;
    ``ValueError`` when the snapshot has no kind or the metric does not belong to it."""
    name = getattr(snapshot, "kind", None)
    try:
        kind = AGGREGATORS.get(name) if isinstance(name, str) else None
    except KindError:
        kind = None
    if kind is None:
        raise ValueError(f"rule {rule.name!r}: a {type(snapshot).__name__} names no aggregator kind")
    metric = kind.metrics.get(rule.metric)
    if metric is None:
        raise ValueError(f"rule {rule.name!r}: {rule.metric!r} cannot be evaluated on {name} task data")
    return kind, metric


def evaluate_rule(snapshot: Any, rule: AlertRule) -> RuleResult | None:
    """The result of ``rule`` on ``snapshot`` if it fires, else ``None``.

    ``ValueError`` when the metric does not belong to the snapshot's kind of task.
    """
    kind, metric = rule_metric(snapshot, rule)
    values = kind.metric_values(rule.metric, snapshot)
    if metric.per_flow:
        items = tuple(
            (flow, int(v))
            for flow, v in values
            if compare(v, rule.operator, rule.threshold)  # type: ignore[union-attr]
        )
        if not items:
            return None
        return RuleResult(rule, None, items, sketch_fragment(rule, items, metric.suffix))
    value = float(values)  # type: ignore[arg-type]
    if not compare(value, rule.operator, rule.threshold):
        return None
    return RuleResult(rule, value, (), exact_fragment(rule, value, metric.unit), metric.unit)


def evaluate(task_name: str, snapshot: Any, rules: Iterable[AlertRule]) -> TaskAlert | None:
    """Every rule of ``task_name`` (others are skipped) on one snapshot; ``None`` if none fires."""
    fired = [r for r in (evaluate_rule(snapshot, rule) for rule in rules if rule.task_name == task_name) if r]
    return TaskAlert(task_name, tuple(fired)) if fired else None


def summary_subject(n_tasks: int) -> str:
    """The e-mail subject: ``NetSpectra Alert Summary (N Triggered)``, N = tasks with fired rules."""
    return f"{PRODUCT} Alert Summary ({n_tasks} Triggered)"


def summary_html(alerts: Sequence[TaskAlert]) -> str:
    """The original's e-mail body (without the AI section)."""
    return (
        f"<h1>{PRODUCT} Alert Summary</h1>"
        "<p>The following alerts were triggered during the last check:</p><hr>"
        + "<hr>".join(a.html for a in alerts)
    )


def ai_input(alerts: Sequence[TaskAlert]) -> str:
    """What the AI analysis gets: the task fragments joined by newlines (as the original)."""
    return "\n".join(a.html for a in alerts)


def summary_text(alerts: Sequence[TaskAlert]) -> str:
    """A plain-text rendering of the alerts (log notifier, e-mail text part, chat webhooks)."""
    lines: list[str] = []
    for a in alerts:
        for r in a.results:
            rule = r.rule
            cond = f"{rule.metric} {rule.operator} {rule.threshold:g}"
            if r.value is not None:
                lines.append(
                    f"- {rule.name} [{rule.task_name}]: {cond}; observed {r.value:.0f} {r.unit}".rstrip()
                )
            else:
                shown = ", ".join(f"{f} ({v})" for f, v in r.items[:10])
                more = f" and {len(r.items) - 10} more" if len(r.items) > 10 else ""
                lines.append(
                    f"- {rule.name} [{rule.task_name}]: {cond}; {len(r.items)} item(s): {shown}{more}"
                )
    return "\n".join(lines)
