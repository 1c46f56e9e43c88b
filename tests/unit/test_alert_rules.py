"""Alert rules on real task snapshots: metrics, operators, the original's HTML, dedup and cooldown."""

from __future__ import annotations

import ipaddress
import logging

import numpy as np
import pytest

from netspectra.ai.client import ai_section_html, markdown_to_html
from netspectra.alerting import (
    Alerter,
    AlertingConfigError,
    LogNotifier,
    Notification,
    Notifier,
    NotifierError,
    available_notifiers,
    build_notifiers,
    compare,
    evaluate,
    notifier_class,
    rules,
)
from netspectra.config import parse_config_text
from netspectra.config.models import AlertRule
from netspectra.engine.manager import ManualClock
from netspectra.sketches.base import HeavyHitters, HitterType, SketchSnapshot
from netspectra.tasks.exact import FlowSnapshot


def _ip16(text: str) -> bytes:
    ip = ipaddress.ip_address(text)
    return ip.packed if ip.version == 6 else b"\x00" * 10 + b"\xff\xff" + ip.packed


def flows(packets: list[int], sizes: list[int]) -> FlowSnapshot:
    m = len(packets)
    src = np.array([list(_ip16(f"10.0.0.{i + 1}")) for i in range(m)], dtype=np.uint8).reshape(m, 16)
    return FlowSnapshot(
        "per_five_tuple",
        ("SrcIP", "DstIP", "SrcPort", "DstPort", "Protocol"),
        src,
        np.zeros((m, 16), np.uint8),
        np.zeros(m, np.uint16),
        np.zeros(m, np.uint16),
        np.zeros(m, np.uint8),
        np.zeros(m, np.int64),
        np.zeros(m, np.int64),
        np.array(packets, np.uint64),
        np.array(sizes, np.uint64),
    )


def hitters(pairs: dict[str, int]) -> HeavyHitters:
    keys = np.array([list(_ip16(ip)) for ip in pairs], dtype=np.uint8).reshape(len(pairs), 16)
    return HeavyHitters.from_candidates(keys, np.array(list(pairs.values()), np.uint64))


def spread_snapshot(pairs: dict[str, int], name: str = "ss_src_dst") -> SketchSnapshot:
    return SketchSnapshot(name, 1, ("SrcIP",), {HitterType.SPREAD: hitters(pairs).decode(("SrcIP",))})


def cm_snapshot(count: dict[str, int], size: dict[str, int]) -> SketchSnapshot:
    f = ("SrcIP",)
    return SketchSnapshot(
        "cm_src", 0, f, {HitterType.COUNT: hitters(count).decode(f), HitterType.SIZE: hitters(size).decode(f)}
    )


def rule(metric: str, op: str, threshold: float, task: str = "per_five_tuple", name: str = "R") -> AlertRule:
    return AlertRule(name=name, task_name=task, metric=metric, operator=op, threshold=threshold)


# --- operators and metrics --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("op", "expect"), [(">", [False, False, True]), ("<", [True, False, False]), ("=", [False, True, False]),
                       (">=", [False, True, True]), ("<=", [True, True, False])]
)  # fmt: skip
def test_operators(op: str, expect: list[bool]) -> None:
    assert [compare(v, op, 5) for v in (4, 5, 6)] == expect


def test_unknown_operator_is_an_error_not_false() -> None:
    with pytest.raises(ValueError, match="unknown alert operator '=='"):
        compare(1, "==", 1)


def test_exact_metrics_and_original_fragment() -> None:
    snap = flows([3, 4], [1000, 2000])
    alert = evaluate(
        "per_five_tuple",
        snap,
        [
            rule("total_packets", ">", 6, name="Pk"),
            rule("total_bytes", ">=", 3000, name="By"),
            rule("total_flows", "=", 2, name="Fl"),
            rule("total_flows", ">", 2, name="NotFired"),
            rule("total_packets", ">", 0, task="other", name="OtherTask"),
        ],
    )
    assert alert is not None
    assert [r.rule.name for r in alert.results] == ["Pk", "By", "Fl"]
    assert [r.value for r in alert.results] == [7.0, 3000.0, 2.0]
    assert alert.results[0].html == (
        "<h3>Alert: Pk</h3><ul><li><b>Task:</b> <code>per_five_tuple</code></li>"
        "<li><b>Metric:</b> <code>total_packets</code></li>"
        "<li><b>Condition:</b> <code>&gt; 6.00</code></li>"
        "<li><b>Observed Value:</b> <code>7 packets</code></li></ul>"
    )
    assert alert.html.count("<br><hr><br>") == 2
    assert "<code>3000 bytes</code>" in alert.html and "<code>2 flows</code>" in alert.html


def test_nothing_fires_gives_none() -> None:
    assert evaluate("per_five_tuple", flows([1], [10]), [rule("total_packets", ">", 100)]) is None


def test_super_spreader_rule_table() -> None:
    snap = spread_snapshot({"198.18.1.1": 2893, "10.1.1.1": 300})
    r = rule("super_spreader_spread", ">", 1000, task="ss_src_dst", name="Potential_DDoS_Source_Detected")
    alert = evaluate("ss_src_dst", snap, [r])
    assert alert is not None
    (res,) = alert.results
    assert res.items == (("198.18.1.1", 2893),)
    assert res.html == (
        "<h3>Alert: Potential_DDoS_Source_Detected</h3><ul><li><b>Task:</b> <code>ss_src_dst</code></li>"
        "<li><b>Metric:</b> <code>super_spreader_spread</code></li>"
        "<li><b>Condition:</b> <code>&gt; 1000.00</code></li></ul><p><b>Triggering Items:</b></p>"
        '<table border="1" cellpadding="5" cellspacing="0"><tr><th>Flow/Source</th><th>Value</th></tr>'
        "<tr><td><code>198.18.1.1</code></td><td>2893</td></tr></table>"
    )
    assert res.fingerprints == (
        ("ss_src_dst", "Potential_DDoS_Source_Detected", "super_spreader_spread", "198.18.1.1"),
    )


def test_count_and_size_rules_on_countmin() -> None:
    snap = cm_snapshot({"10.0.0.1": 50, "10.0.0.2": 5}, {"10.0.0.1": 9000, "10.0.0.2": 70000})
    alert = evaluate(
        "cm_src",
        snap,
        [
            rule("heavy_hitter_count", ">", 10, task="cm_src"),
            rule("heavy_hitter_size", ">=", 70000, task="cm_src"),
        ],
    )
    assert alert is not None
    count, size = alert.results
    assert count.items == (("10.0.0.1", 50),)
    assert size.items == (("10.0.0.2", 70000),)
    assert "<td>70000 bytes</td>" in size.html and "<td>50</td>" in count.html


def test_heavy_hitter_count_on_superspread_compares_spreads_as_the_original() -> None:
    alert = evaluate(
        "ss_src_dst", spread_snapshot({"1.2.3.4": 40}), [rule("heavy_hitter_count", ">", 10, "ss_src_dst")]
    )
    assert alert is not None and alert.results[0].items == (("1.2.3.4", 40),)


def test_metric_of_the_wrong_kind_is_an_error() -> None:
    with pytest.raises(ValueError, match="cannot be evaluated on exact task data"):
        evaluate("per_five_tuple", flows([1], [1]), [rule("heavy_hitter_count", ">", 0)])
    with pytest.raises(ValueError, match="cannot be evaluated on sketch task data"):
        evaluate("ss_src_dst", spread_snapshot({"1.2.3.4": 4}), [rule("total_bytes", ">", 0, "ss_src_dst")])


def test_html_is_escaped_and_long_tables_cut() -> None:
    r = rule("super_spreader_spread", ">", 0, task="ss_src_dst", name="<script>x</script>")
    many = {f"10.0.{i // 250}.{i % 250 + 1}": 1000 - i for i in range(rules.MAX_TABLE_ROWS + 7)}
    alert = evaluate("ss_src_dst", spread_snapshot(many), [r])
    assert alert is not None
    html = alert.html
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert html.count("<tr><td><code>") == rules.MAX_TABLE_ROWS
    assert "… and 7 more" in html
    assert len(alert.results[0].items) == rules.MAX_TABLE_ROWS + 7  # every item is still in the result


def test_summary_layout_and_subject() -> None:
    a = evaluate("per_five_tuple", flows([3], [3]), [rule("total_packets", ">", 1)])
    b = evaluate(
        "ss_src_dst", spread_snapshot({"1.2.3.4": 9}), [rule("super_spreader_spread", ">", 1, "ss_src_dst")]
    )
    assert a is not None and b is not None
    body = rules.summary_html([a, b])
    assert body == (
        "<h1>NetSpectra Alert Summary</h1>"
        "<p>The following alerts were triggered during the last check:</p><hr>" + a.html + "<hr>" + b.html
    )
    assert rules.summary_subject(2) == "NetSpectra Alert Summary (2 Triggered)"
    assert rules.ai_input([a, b]) == a.html + "\n" + b.html
    assert "observed 3 packets" in rules.summary_text([a, b]) and "1.2.3.4 (9)" in rules.summary_text([a, b])


def test_markdown_to_html_escapes_raw_html() -> None:
    out = markdown_to_html("# Threat\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n<img src=x onerror=alert(1)>")
    assert "<h1>Threat</h1>" in out and "<table>" in out
    assert "<img" not in out and "&lt;img" in out
    assert ai_section_html("**high**").startswith("<hr><h2>AI-Powered Analysis</h2><p><strong>high</strong>")


# --- notifier registry ------------------------------------------------------------------------------


class Collect(Notifier, kind="test-collect"):
    """A real notifier that keeps what it is sent (and can be told to fail)."""

    def __init__(self, fail: bool = False) -> None:
        self.sent: list[Notification] = []
        self.fail = fail

    def send(self, notification: Notification) -> None:
        if self.fail:
            raise NotifierError("collector is down")
        self.sent.append(notification)


def test_registry() -> None:
    kinds = available_notifiers()
    assert {"log", "webhook", "email", "test-collect"} <= set(kinds)
    assert notifier_class("test-collect") is Collect
    with pytest.raises(ValueError, match="unknown notifier kind 'pager'"):
        notifier_class("pager")
    with pytest.raises(TypeError, match="already registered"):

        class Other(Notifier, kind="log"):
            def send(self, notification: Notification) -> None: ...


# --- dedup, cooldown, failures ----------------------------------------------------------------------


class Source:
    """Snapshots per task that a test changes between checks."""

    def __init__(self) -> None:
        self.snaps: dict[str, object] = {}

    def __call__(self, name: str) -> object:
        return self.snaps[name]


SS_RULE = rule("super_spreader_spread", ">", 100, task="ss_src_dst", name="SS")
BYTES_RULE = rule("total_bytes", ">", 1000, name="Bytes")


def make_alerter(*notifiers: Notifier, cooldown: float = 600) -> tuple[Alerter, Source, ManualClock]:
    src, clock = Source(), ManualClock()
    al = Alerter([SS_RULE, BYTES_RULE], list(notifiers), check_interval=60, snapshot_of=src, clock=clock,
                 cooldown=cooldown)  # fmt: skip
    src.snaps = {"ss_src_dst": spread_snapshot({"1.1.1.1": 500}), "per_five_tuple": flows([1], [5000])}
    return al, src, clock


def test_standing_condition_is_not_resent_until_cooldown() -> None:
    sink = Collect()
    al, _, clock = make_alerter(sink)
    first = al.check()
    assert first is not None and first.delivered and len(sink.sent) == 1
    assert sink.sent[0].subject == "NetSpectra Alert Summary (2 Triggered)"
    clock.advance(60)
    assert al.check() is None and len(sink.sent) == 1  # the bug-10 storm: same condition, no new mail
    clock.advance(600)
    again = al.check()
    assert again is not None and len(sink.sent) == 2  # cooldown over: reminded
    assert list(al.history) == [first, again]


def test_new_flow_or_returning_condition_is_news() -> None:
    sink = Collect()
    al, src, clock = make_alerter(sink)
    al.check()
    clock.advance(60)
    src.snaps["ss_src_dst"] = spread_snapshot({"1.1.1.1": 520, "2.2.2.2": 300})  # a new spreader
    rec = al.check()
    assert rec is not None and [a.task_name for a in rec.alerts] == ["ss_src_dst"]  # only that task
    assert rec.suppressed == 1  # the byte rule still holds, already notified
    assert rec.alerts[0].results[0].items == (("1.1.1.1", 520), ("2.2.2.2", 300))
    clock.advance(60)
    src.snaps["per_five_tuple"] = flows([1], [10])  # the byte condition clears ...
    assert al.check() is None
    clock.advance(60)
    src.snaps["per_five_tuple"] = flows([1], [9000])  # ... and comes back: news again
    back = al.check()
    assert back is not None and [a.task_name for a in back.alerts] == ["per_five_tuple"]


def test_failures_are_reported_and_retried(caplog: pytest.LogCaptureFixture) -> None:
    broken, ok = Collect(fail=True), Collect()
    al, _, _ = make_alerter(broken, ok)
    with caplog.at_level(logging.ERROR):
        rec = al.check()
    assert rec is not None and rec.delivered
    assert rec.failures == {"test-collect": "collector is down"}
    assert rec.deliveries["test-collect#2"] is None
    assert "collector is down" in caplog.text
    # all notifiers failing: the condition is not marked as notified, the next check tries again
    al2, _, clock2 = make_alerter(Collect(fail=True))
    r1 = al2.check()
    assert r1 is not None and not r1.delivered
    clock2.advance(60)
    assert al2.check() is not None


def test_alerter_without_smtp_uses_the_log(caplog: pytest.LogCaptureFixture) -> None:
    cfg = parse_config_text(CONFIG)
    with caplog.at_level(logging.WARNING):
        notifiers = build_notifiers(cfg, env={})
    assert [type(n) for n in notifiers] == [LogNotifier]
    assert "smtp.host is empty" in caplog.text
    al = Alerter.from_config(cfg, env={}, snapshot_of=lambda n: flows([5], [5000]))
    with caplog.at_level(logging.WARNING):
        rec = al.check()
    assert rec is not None and rec.deliveries == {"log": None}
    assert "ALERT NetSpectra Alert Summary (1 Triggered)" in caplog.text


def test_bad_notifier_settings_fail_at_start() -> None:
    cfg = parse_config_text(CONFIG + "smtp:\n  host: mail.example.org\n  from: a@example.org\n")
    with pytest.raises(AlertingConfigError, match=r"smtp\.to is empty"):
        build_notifiers(cfg, env={})
    with pytest.raises(AlertingConfigError, match="must start with http"):
        build_notifiers(parse_config_text(CONFIG), env={"NETSPECTRA_ALERT_WEBHOOK_URL": "ftp://x"})
    env = {
        "NETSPECTRA_ALERT_WEBHOOK_URL": "https://hooks.example.org/T0/B1/secret",
        "NETSPECTRA_ALERT_WEBHOOK_FORMAT": "slack",
    }
    hooks = build_notifiers(parse_config_text(CONFIG), env=env)
    assert hooks[1].kind == "webhook" and "secret" not in hooks[1].name
    with pytest.raises(AlertingConfigError, match=r"alerter\.enabled is false"):
        Alerter.from_config(parse_config_text(CONFIG.replace("enabled: true", "enabled: false")), env={})


CONFIG = """
aggregator:
  types: [exact]
  exact:
    tasks:
      - {name: per_five_tuple, key_fields: [SrcIP, DstIP, SrcPort, DstPort, Protocol]}
alerter:
  enabled: true
  check_interval: 60s
  rules:
    - {name: Total_Traffic_Spike, task_name: per_five_tuple, metric: total_bytes, operator: ">",
       threshold: 1000}
"""
