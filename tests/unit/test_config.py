"""Configuration: Go env expansion, .env, schema compatibility with the original, validation messages, CLI."""

from __future__ import annotations

import copy
import json
import os
import re
import textwrap
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from netspectra.config import (
    Config,
    ConfigError,
    default_config_path,
    effective_config_dict,
    expand_env,
    format_go_duration,
    load_config,
    parse_config_text,
    parse_go_duration,
)
from netspectra.config.models import KEY_FIELDS
from netspectra.fields import PACKET_FIELDS
from netspectra.sketches.sketch_kind import DEFAULT_SEED

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "configs" / "config.yaml"
PACKAGED = REPO / "src" / "netspectra" / "data" / "config.yaml"


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Run in an empty directory and restore os.environ afterwards (load_config loads .env into it)."""
    monkeypatch.chdir(tmp_path)
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


def _minimal() -> dict[str, Any]:
    return {
        "alerter": {
            "enabled": True,
            "rules": [
                {"name": "r", "task_name": "flows", "metric": "total_bytes", "operator": ">", "threshold": 1},
            ],
        },
        "aggregator": {
            "types": ["exact", "sketch"],
            "exact": {
                "writers": [{"type": "parquet", "enabled": True, "snapshot_interval": "60s"}],
                "tasks": [{"name": "flows", "key_fields": ["SrcIP", "DstIP"]}],
            },
            "sketch": {
                "writers": [{"type": "text", "enabled": True}],
                "tasks": [
                    {"name": "cm", "skt_type": 0, "flow_fields": ["SrcIP"]},
                    {"name": "ss", "skt_type": 1, "flow_fields": ["SrcIP"], "element_fields": ["DstIP"]},
                ],
            },
        },
    }


def _parse(data: dict[str, Any]) -> Config:
    return parse_config_text(yaml.safe_dump(data, sort_keys=False), source="test.yaml", expand=False)


def _error_lines(data: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        _parse(data)
    return info.value.errors


# --------------------------------------------------------------------------------------------------
# Go os.ExpandEnv
# --------------------------------------------------------------------------------------------------

ENV = {"A": "x", "B_2": "y", "A B": "spaced", "*": "star", "1": "one"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("$A", "x"),
        ("${A}", "x"),
        ("pre-${A}-post", "pre-x-post"),
        ("$UNSET", ""),  # unset -> "" (Python's expandvars would keep "$UNSET")
        ("${UNSET}", ""),
        ("$A.b", "x.b"),  # the name stops at the first non [A-Za-z0-9_]
        ("$B_2/", "y/"),
        ("$Ab", ""),  # longest name: "Ab", unset
        ("$1x", "onex"),  # a digit is a one-character special name
        ("$*", "star"),
        ("${*}", "star"),
        ("${A B}", "spaced"),  # braces take everything up to "}"
        ("a$$b", "ab"),  # "$$" looks up the variable "$" (not the pid)
        ("a${}b", "ab"),  # "${}" is bad syntax and eaten
        ("a${Ab", "aAb"),  # "${" without "}" loses only "${"
        ("cost $", "cost $"),  # a lone "$" at the end stays
        ("a $ b", "a $ b"),  # "$" followed by a non-name stays
        ("$é", "$é"),  # names are ASCII only
        ("no dollar", "no dollar"),
    ],
)
def test_expand_env_follows_go(text: str, expected: str) -> None:
    assert expand_env(text, ENV) == expected


def test_a_lookup_answering_none_keeps_the_reference_as_written() -> None:
    """What the configuration loader does for an unset name of digits (a classifier template's group):
    the reference exactly as the text spells it, the others expanded as Go does."""

    def lookup(name: str) -> str | None:
        return None if name.isdigit() else ENV.get(name, "")

    text = '"$1" "${2}" "${12}" "$1x" "$$" "$A/x" "${NOPE}" "$" "${"'
    assert expand_env(text, lookup) == '"$1" "${2}" "${12}" "$1x" "" "x/x" "" "$" ""'


def test_expand_env_uses_process_environment_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NS_TEST_VAR", "v")
    monkeypatch.delenv("NS_TEST_UNSET", raising=False)
    assert expand_env("${NS_TEST_VAR}:$NS_TEST_VAR:${NS_TEST_UNSET}:$NS_TEST_UNSET") == "v:v::"
    assert os.path.expandvars("$NS_TEST_UNSET") == "$NS_TEST_UNSET"  # the behaviour we must not have


def test_unset_variable_in_config_gives_empty_then_default(tmp_path: Path) -> None:
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text(
        'probe:\n  nats_url: "${NS_TEST_NATS}"\n  subject: "s.$NS_TEST_SUFFIX"\nsmtp:\n  port: $NS_P\n'
    )
    os.environ.pop("NS_TEST_NATS", None)
    os.environ["NS_TEST_SUFFIX"] = "raw"
    os.environ.pop("NS_P", None)
    cfg = load_config(cfg_file)
    assert cfg.probe.nats_url == "nats://127.0.0.1:4222"  # "" -> the NATS client's default
    assert cfg.probe.subject == "s.raw"
    assert cfg.smtp.port == 0  # `port:` with nothing is YAML null -> not given


# --------------------------------------------------------------------------------------------------
# .env
# --------------------------------------------------------------------------------------------------


def test_dotenv_never_overrides_the_environment(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("NS_T_A=from_cwd_env\nNS_T_B=from_cwd_env\n")
    conf_dir = tmp_path / "conf"
    conf_dir.mkdir()
    (conf_dir / ".env").write_text("NS_T_B=from_conf_env\nNS_T_C=from_conf_env\n")
    (conf_dir / "config.yaml").write_text(
        "smtp:\n  host: ${NS_T_A}\n  username: ${NS_T_B}\n  from: ${NS_T_C}\n"
    )
    os.environ["NS_T_A"] = "from_environment"
    os.environ.pop("NS_T_B", None)
    os.environ.pop("NS_T_C", None)
    cfg = load_config(conf_dir / "config.yaml")
    assert cfg.smtp.host == "from_environment"  # the environment wins over any .env
    assert cfg.smtp.username == "from_cwd_env"  # ./.env wins over the config directory's .env
    assert cfg.smtp.from_ == "from_conf_env"
    assert os.environ["NS_T_A"] == "from_environment"


# --------------------------------------------------------------------------------------------------
# Durations
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("600s", timedelta(seconds=600)),
        ("720h", timedelta(hours=720)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("250ms", timedelta(milliseconds=250)),
        ("1.5h", timedelta(minutes=90)),
        (".5s", timedelta(milliseconds=500)),
        ("1h0.5m", timedelta(hours=1, seconds=30)),
        ("10us", timedelta(microseconds=10)),
        ("10µs", timedelta(microseconds=10)),
        ("1500ns", timedelta(microseconds=2)),  # rounded to the timedelta's resolution
        ("0", timedelta(0)),
        ("-2m", timedelta(minutes=-2)),
        ("+3s", timedelta(seconds=3)),
    ],
)
def test_go_durations(text: str, expected: timedelta) -> None:
    assert parse_go_duration(text) == expected


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "not a duration"),
        ("600", "missing unit"),
        ("10 minutes", "unknown unit ' minutes'"),
        ("5d", "unknown unit 'd'"),
        ("1h 30m", "unknown unit 'h '"),
        (".s", "without digits"),
        ("h", "unexpected 'h'"),
        ("3000000h", "out of range"),
    ],
)
def test_bad_go_durations(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=r"duration|range") as info:
        parse_go_duration(text)
    assert reason in str(info.value)


@pytest.mark.parametrize(
    ("td", "text"),
    [
        (timedelta(0), "0s"),
        (timedelta(seconds=600), "10m0s"),
        (timedelta(hours=720), "720h0m0s"),
        (timedelta(milliseconds=250), "250ms"),
        (timedelta(seconds=1.5), "1.5s"),
        (timedelta(microseconds=10), "10µs"),
        (timedelta(minutes=-2), "-2m0s"),
    ],
)
def test_go_duration_format_round_trips(td: timedelta, text: str) -> None:
    assert format_go_duration(td) == text
    assert parse_go_duration(text) == td


def test_duration_fields_parse_and_reject() -> None:
    data = _minimal()
    data["aggregator"]["period"] = "1h30m"
    data["alerter"]["check_interval"] = "250ms"
    cfg = _parse(data)
    assert cfg.aggregator.period == timedelta(minutes=90)
    assert cfg.alerter.check_interval == timedelta(milliseconds=250)
    assert cfg.aggregator.exact.writers[0].snapshot_interval == timedelta(seconds=60)
    assert cfg.aggregator.sketch.writers[0].snapshot_interval is None  # absent: only the final snapshot
    data["aggregator"]["period"] = 600  # a bare number has no unit, as in Go
    (line,) = _error_lines(data)
    assert line.startswith("aggregator.period: '600' is not a duration (missing unit")
    assert "write a Go duration such as 600s" in line


# --------------------------------------------------------------------------------------------------
# Aliases, defaults
# --------------------------------------------------------------------------------------------------


def test_thereshold_spelling_is_an_alias() -> None:
    data = _minimal()
    task = data["aggregator"]["sketch"]["tasks"][0]
    task.update({"size_thereshold": 4096000, "count_thereshold": 4096})
    cfg = _parse(data)
    cm = cfg.aggregator.sketch.tasks[0]
    assert (cm.params.size_threshold, cm.params.count_threshold) == (4096000, 4096)
    task.update({"size_threshold": 4096000, "count_threshold": 4096})  # both spellings, same values: fine
    assert _parse(data).aggregator.sketch.tasks[0].params.count_threshold == 4096
    del task["size_thereshold"], task["count_thereshold"]
    assert _parse(data).aggregator.sketch.tasks[0].params.size_threshold == 4096000


def test_both_threshold_spellings_with_different_values_is_an_error() -> None:
    data = _minimal()
    data["aggregator"]["sketch"]["tasks"][0].update({"count_threshold": 10, "count_thereshold": 20})
    (line,) = _error_lines(data)
    assert line.startswith("aggregator.sketch.tasks[0]: both count_threshold (10)")
    assert "count_thereshold (20)" in line and "keep only one" in line


def test_defaults_the_original_applies() -> None:
    data = _minimal()
    data["aggregator"]["exact"]["tasks"] += [
        {"name": "big", "key_fields": ["SrcIP"], "num_shards": 40000},
        {"name": "some", "key_fields": ["DstIP"], "num_shards": 64},
    ]
    data["probe"] = {"persistence": {"enabled": True, "num_workers": 0, "channel_buffer_size": -5}}
    # the new default variants, sized by memory (issue 18)
    cm, ss = _parse(data).aggregator.sketch.tasks
    assert (cm.params.variant, cm.params.memory, cm.params.count_threshold) == ("heavyguardian", 2**20, 512)
    assert (ss.params.variant, ss.params.memory, ss.params.count_threshold) == ("spreadkeeper", 4 << 20, 4096)
    # the original's defaults, where its variants are asked for
    for task in data["aggregator"]["sketch"]["tasks"]:
        task["variant"] = "original"
    cfg = _parse(data)
    shards = [t.num_shards for t in cfg.aggregator.exact.tasks]
    assert shards == [256, 256, 64]  # absent (0) and >= 32768 -> 256
    cm, ss = cfg.aggregator.sketch.tasks
    assert cm.skt_type == 0
    assert (cm.params.width, cm.params.depth, cm.params.size_threshold, cm.params.count_threshold) == (
        2**20,
        3,
        524288,
        512,
    )
    assert ss.skt_type == 1
    assert (
        ss.params.width,
        ss.params.depth,
        ss.params.count_threshold,
        ss.params.m,
        ss.params.size,
        ss.params.base,
        ss.params.b,
    ) == (
        2**20,
        3,
        4096,
        128,
        5,
        0.5,
        1.08,
    )
    assert ss.seed == DEFAULT_SEED  # reproducible by default
    p = cfg.probe.persistence
    assert (p.num_workers, p.channel_buffer_size, p.encoding) == (1, 10000, "pcap")
    assert cfg.api.grpc_listen_addr == "127.0.0.1:50051" and cfg.ai.grpc_listen_addr == "127.0.0.1:50052"
    assert cfg.aggregator.num_workers == 16 and cfg.aggregator.size_of_packet_channel == 10000


def test_seed_and_explicit_values_are_kept() -> None:
    data = _minimal()
    data["aggregator"]["sketch"]["tasks"][1].update(
        {"seed": 17371, "width": 8192, "depth": 2, "m": 32, "variant": "original"}
    )
    ss = _parse(data).aggregator.sketch.tasks[1]
    assert (ss.seed, ss.params.width, ss.params.depth, ss.params.m, ss.params.size) == (17371, 8192, 2, 32, 5)


def test_null_values_mean_not_given_and_numbers_coerce_to_strings() -> None:
    text = textwrap.dedent(
        """
        smtp:
          host: mail.example.com
          port:
          password: 123
          to: "a@x.org, b@y.org ,"
        alerter:
        """
    )
    cfg = parse_config_text(text)
    assert cfg.smtp.port == 0
    assert cfg.smtp.password == "123"  # yaml.v3 accepts a number into a Go string
    assert cfg.smtp.recipients == ("a@x.org", "b@y.org")
    assert cfg.alerter.enabled is False  # Go's zero value


def test_yaml_booleans_are_yaml_1_2() -> None:
    cfg = parse_config_text("smtp:\n  password: no\n  username: on\nalerter:\n  enabled: true\n")
    assert cfg.smtp.password == "no" and cfg.smtp.username == "on"
    assert cfg.alerter.enabled is True


def test_config_is_frozen() -> None:
    cfg = _parse(_minimal())
    with pytest.raises(ValueError, match="frozen"):
        cfg.aggregator.num_workers = 3  # type: ignore[misc]


# --------------------------------------------------------------------------------------------------
# Validation messages: key path, bad value, fix
# --------------------------------------------------------------------------------------------------


def _set(data: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    data = copy.deepcopy(data)
    node: Any = data
    parts = path.split(".")
    for part in parts[:-1]:
        node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
    last = parts[-1]
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return data


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        (
            "aggregator.types",
            ["exact", "flow"],
            "aggregator.types[1]: 'flow' is not a valid aggregator type (did you mean 'flows'?); "
            "valid aggregator types are exact, sketch, flows",
        ),
        (
            "aggregator.types",
            "exact",
            "aggregator.types: 'exact' is a single string; write a YAML list, e.g. [exact]",
        ),
        (
            "aggregator.exact.tasks.0.key_fields",
            ["SrcIP", "DstIP", "SrcMac"],
            "aggregator.exact.tasks[0].key_fields[2]: 'SrcMac' is not a key field; "
            "valid fields are SrcIP, DstIP, SrcPort, DstPort, Protocol",
        ),
        (
            "aggregator.exact.tasks.0.key_fields",
            ["srcip"],
            "aggregator.exact.tasks[0].key_fields[0]: 'srcip' is not a key field (names are case-sensitive: "
            "did you mean 'SrcIP'?); valid fields are",
        ),
        (
            "aggregator.exact.tasks.0.key_fields",
            [],
            "aggregator.exact.tasks[0].key_fields: key_fields is empty; list at least one of SrcIP,",
        ),
        (
            "aggregator.exact.tasks.0.key_fields",
            ["SrcIP", "SrcIP"],
            "aggregator.exact.tasks[0].key_fields: SrcIP listed more than once in ['SrcIP', 'SrcIP']; "
            "list each field once",
        ),
        (
            "aggregator.exact.tasks.0.num_shards",
            -1,
            "aggregator.exact.tasks[0].num_shards: Input should be greater than or equal to 0 (got -1)",
        ),
        (
            "aggregator.sketch.tasks.0.skt_type",
            2,
            "aggregator.sketch.tasks[0].skt_type: 2 is not a sketch type; "
            "valid skt_type values are 0 (CountMin",
        ),
        (
            "aggregator.sketch.tasks.1.element_fields",
            [],
            "aggregator.sketch.tasks[1]: element_fields is empty; a SuperSpread task (skt_type 1) counts",
        ),
        (
            "aggregator.sketch.tasks.0.flow_fields",
            ["Port"],
            "aggregator.sketch.tasks[0].flow_fields[0]: 'Port' is not a key field",
        ),
        (
            "aggregator.sketch.tasks.0.width",
            "wide",
            "aggregator.sketch.tasks[0].width: Input should be a valid integer, unable to parse string as an "
            "integer (got 'wide'); write a whole number",
        ),
        (
            "aggregator.exact.writers.0.type",
            "csv",
            "aggregator.exact.writers[0].type: 'csv' is not a writer type of the exact group; "
            "valid types are clickhouse, parquet, gob, text",
        ),
        (
            "aggregator.sketch.writers.0.type",
            "gob",
            "aggregator.sketch.writers[0].type: 'gob' is not a writer type of the sketch group; "
            "valid types are clickhouse, parquet, text",
        ),
        (
            "aggregator.exact.writers.0.snapshot_interval",
            "1 minute",
            "aggregator.exact.writers[0].snapshot_interval: '1 minute' is not a duration "
            "(unknown unit ' minute')",
        ),
        (
            "alerter.rules.0.operator",
            "!=",
            "alerter.rules[0].operator: '!=' is not a valid operator; valid operators are >, <, =, >=, <=",
        ),
        (
            "alerter.rules.0.operator",
            "==",
            "alerter.rules[0].operator: '==' is not a valid operator (did you mean '='?)",
        ),
        (
            "alerter.rules.0.metric",
            "ByteCount",
            "alerter.rules[0].metric: 'ByteCount' is not a valid metric; valid metrics are total_packets, "
            "total_bytes, total_flows, heavy_hitter_count, heavy_hitter_size, super_spreader_spread",
        ),
        (
            "alerter.rules.0.task_name",
            "flow",
            "alerter.rules[0].task_name: 'flow' is not a configured task (did you mean 'flows'?); "
            "known tasks are flows, cm, ss",
        ),
        (
            "alerter.rules.0.metric",
            "heavy_hitter_count",
            "alerter.rules[0].metric: 'heavy_hitter_count' is a metric of sketch tasks, not of exact tasks "
            "such as 'flows'; exact tasks have total_packets, total_bytes, total_flows",
        ),
        ("alerter.check_interval", "0s", "alerter.check_interval: '0s' is not positive; write e.g. 600s"),
        ("alerter.enabled", "maybe", "alerter.enabled: Input should be a valid boolean"),
        (
            "aggregator.num_workers",
            0,
            "aggregator.num_workers: Input should be greater than or equal to 1 (got 0)",
        ),
        (
            "probe.persistence.encoding",
            "json",
            "probe.persistence.encoding: 'json' is not a valid encoding; valid encodings are pcap, text, gob",
        ),
        ("smtp.port", 70000, "smtp.port: Input should be less than or equal to 65535 (got 70000)"),
        ("aggregator.exact", ["x"], "aggregator.exact: Input should be a valid dictionary or instance"),
    ],
)
def test_validation_error_names_path_value_and_fix(path: str, value: Any, expected: str) -> None:
    lines = _error_lines(_set(_minimal(), path, value))
    assert any(line.startswith(expected) for line in lines), lines


def test_missing_key_names_it() -> None:
    data = _minimal()
    del data["aggregator"]["exact"]["tasks"][0]["key_fields"]
    assert _error_lines(data) == ["aggregator.exact.tasks[0].key_fields: Field required; add this key"]


def test_duplicate_task_names_across_groups() -> None:
    data = _set(_minimal(), "aggregator.sketch.tasks.0.name", "flows")
    (line,) = _error_lines(data)
    assert line == (
        "aggregator.sketch.tasks[0].name: 'flows' is already the name of aggregator.exact.tasks[0]; "
        "task names must be unique across every group (rename one)"
    )


def test_metric_must_suit_the_sketch_type() -> None:
    data = _minimal()
    data["alerter"]["rules"] = [
        {"name": "a", "task_name": "cm", "metric": "super_spreader_spread", "operator": ">", "threshold": 1},
        {"name": "b", "task_name": "ss", "metric": "heavy_hitter_size", "operator": ">=", "threshold": 1},
        {"name": "c", "task_name": "ss", "metric": "total_flows", "operator": "<", "threshold": 1},
    ]
    lines = _error_lines(data)
    assert lines[0].startswith("alerter.rules[0].metric: 'super_spreader_spread' needs a SuperSpread task")
    assert lines[1].startswith("alerter.rules[1].metric: 'heavy_hitter_size' needs a CountMin task")
    assert lines[2].startswith(
        "alerter.rules[2].metric: 'total_flows' is a metric of exact tasks, not of sketch tasks such as 'ss'"
    )


def test_every_problem_is_listed_one_per_line() -> None:
    data = _set(_minimal(), "aggregator.types", ["exact", "bogus"])
    data = _set(data, "aggregator.exact.tasks.0.key_fields", ["SrcIP", "Nope"])
    data = _set(data, "alerter.rules.0.operator", "~")
    with pytest.raises(ConfigError) as info:
        _parse(data)
    msg = str(info.value).splitlines()
    assert msg[0] == "invalid configuration test.yaml:"
    assert len(info.value.errors) == 3
    assert [m.strip() for m in msg[1:4]] == info.value.errors


# --------------------------------------------------------------------------------------------------
# Unknown keys and the original's outdated example
# --------------------------------------------------------------------------------------------------


def test_unknown_keys_are_accepted_with_a_warning() -> None:
    data = _minimal()
    data["aggregator"]["exact"]["tasks"][0]["num_shard"] = 8
    data["telemetry"] = {"on": True}
    cfg = _parse(data)
    assert (
        "aggregator.exact.tasks[0].num_shard: unknown key, ignored; did you mean 'num_shards'?"
        in cfg.warnings
    )
    assert any(
        w.startswith("telemetry: unknown key, ignored; known keys here: aggregator, ai,")
        for w in cfg.warnings
    )


def test_unknown_keys_are_logged_by_load_config(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("probe:\n  subject_name: gopacket\n")
    with caplog.at_level("WARNING", logger="netspectra.config.loader"):
        cfg = load_config(f)
    assert cfg.warnings == ("probe.subject_name: unknown key, ignored; write subject instead",)
    assert "probe.subject_name" in caplog.text
    assert cfg.probe.subject == "gons.packets.raw"


STALE_EXAMPLE = textwrap.dedent(
    """
    probe:
      nats_url: "nats://localhost:4222"
      subject_name: "gopacket"
    aggregator:
      period: "60s"
      types: ["exact", "sketch"]
      exact:
        tasks:
          - name: "per_src_ip"
            key: ["SrcIP"]
        writers:
          - type: "clickhouse"
            snapshot_interval: "10s"
            clickhouse: {host: "localhost", port: 19000, user: "default", password: "123"}
      sketch:
        tasks:
          - name: "per_flow_ss"
            key: ["SrcIP"]
            elementkey: ["DstIP"]
            skt_type: 1
            m: 1048576
            size: 128
            base: 2
            b: 4
    api:
      rpc_listen_addr: ":50051"
    smtp:
      user: "user@example.com"
    ai:
      rpc_listen_addr: ":50052"
      openai:
        api_key: "your-api-key-here"
        model: "gpt-4"
    """
)


def test_stale_example_keys_get_clear_warnings() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config_text(STALE_EXAMPLE, source="config.yaml.example")
    err = info.value
    # the keys the outdated example lacks are errors ...
    assert "aggregator.exact.tasks[0].key_fields: Field required; add this key" in err.errors
    assert "aggregator.sketch.tasks[0].flow_fields: Field required; add this key" in err.errors
    # ... and the warnings say which key of the example to rename
    assert err.warnings == [
        "probe.subject_name: unknown key, ignored; write subject instead",
        "aggregator.exact.tasks[0].key: unknown key, ignored; write key_fields instead",
        "aggregator.exact.writers[0].clickhouse.user: unknown key, ignored; write username instead",
        "aggregator.sketch.tasks[0].key: unknown key, ignored; write flow_fields instead",
        "aggregator.sketch.tasks[0].elementkey: unknown key, ignored; write element_fields instead",
        "api.rpc_listen_addr: unknown key, ignored; write grpc_listen_addr instead",
        "smtp.user: unknown key, ignored; write username instead",
        "ai.rpc_listen_addr: unknown key, ignored; write grpc_listen_addr instead",
        "ai.openai: unknown key, ignored; write api_key, model and base_url directly under ai instead",
    ]
    assert "warning: probe.subject_name" in str(err)


def test_stale_superspread_parameters_are_refused_as_analyze_refuses_them() -> None:
    fixed = STALE_EXAMPLE.replace("key:", "key_fields:", 1).replace(
        'key: ["SrcIP"]', 'flow_fields: ["SrcIP"]'
    )
    fixed = fixed.replace("elementkey:", "element_fields:")
    with pytest.raises(ConfigError) as info:
        parse_config_text(fixed)
    assert info.value.errors == [
        "aggregator.sketch.tasks[0].m: Input should be less than or equal to 65536 (got 1048576); "
        "use a smaller value",
        "aggregator.sketch.tasks[0].size: Input should be less than or equal to 32 (got 128); "
        "use a smaller value",
        "aggregator.sketch.tasks[0].base: Input should be less than 1 (got 2)",
    ]


def test_sketch_too_large_for_memory_is_refused_with_need_and_limit() -> None:
    data = _minimal()
    data["aggregator"]["sketch"]["tasks"][0].update({"width": 4294967295, "depth": 3})
    (line,) = _error_lines(data)
    assert line.startswith("aggregator.sketch.tasks[0] (cm): the task would allocate 768.0 GiB")
    assert "(heavyguardian, sized like mv at depth 3 x width 4294967295)" in line
    assert "more than the default limit (" in line
    assert "set aggregator.max_memory to change it" in line
    # the limit is configurable: a small cap refuses a sketch that fits the machine
    data = _minimal()
    data["aggregator"]["max_memory"] = "64MiB"
    data["aggregator"]["sketch"]["tasks"][0].update({"width": 2**20, "depth": 3})
    data["aggregator"]["sketch"]["tasks"][1].update({"width": 1024, "depth": 2})
    (line,) = _error_lines(data)
    assert (
        "the task would allocate 192.0 MiB" in line and "more than aggregator.max_memory (64.0 MiB)" in line
    )
    # together: two tasks that fit alone but not side by side
    data["aggregator"]["max_memory"] = "128MiB"
    data["aggregator"]["sketch"]["tasks"][0].update({"width": 2**19, "depth": 3})
    data["aggregator"]["sketch"]["tasks"][1].update({"width": 2**17, "depth": 3, "m": 128})
    (line,) = _error_lines(data)
    assert line.startswith("aggregator: the running tasks would allocate")


def test_tasks_of_a_group_not_in_types_warn() -> None:
    data = _set(_minimal(), "aggregator.types", ["exact"])
    cfg = _parse(data)
    assert any(
        w.startswith("aggregator.sketch.tasks: 2 task(s) configured but 'sketch' is not in")
        for w in cfg.warnings
    )


# --------------------------------------------------------------------------------------------------
# Files: shipped, packaged, errors
# --------------------------------------------------------------------------------------------------


def test_shipped_config_loads_with_the_original_tasks_and_rules() -> None:
    cfg = load_config(SHIPPED)
    assert cfg.source == str(SHIPPED)
    assert cfg.task_names() == ("per_five_tuple", "ss_src_dst", "cm_src_left")
    (exact,) = cfg.aggregator.exact.tasks
    assert exact.key_fields == PACKET_FIELDS and exact.num_shards == 128
    ss, cm = cfg.aggregator.sketch.tasks
    assert (ss.skt_type, ss.flow_fields, ss.element_fields) == (
        1,
        ("SrcIP",),
        ("DstIP",),
    )
    assert (
        ss.params.width,
        ss.params.depth,
        ss.params.count_threshold,
        ss.params.m,
        ss.params.size,
        ss.params.b,
        ss.params.base,
    ) == (
        32768,
        2,
        64,
        128,
        5,
        1.08,
        0.5,
    )
    assert (cm.skt_type, cm.flow_fields) == (0, ("SrcIP",))
    assert cm.element_fields == ("DstIP", "SrcPort", "DstPort", "Protocol")
    assert (cm.params.width, cm.params.depth, cm.params.size_threshold, cm.params.count_threshold) == (
        32768,
        2,
        4096000,
        4096,
    )
    enabled = {
        (w.type, w.snapshot_interval)
        for g in (cfg.aggregator.exact, cfg.aggregator.sketch)
        for w in g.writers
        if w.enabled
    }
    assert enabled == {("clickhouse", timedelta(seconds=60))}
    assert [(r.name, r.task_name, r.metric, r.operator, r.threshold) for r in cfg.alerter.rules] == [
        ("Potential_DDoS_Source_Detected", "ss_src_dst", "super_spreader_spread", ">", 5000),
        ("Potential_Nmap_Scan_Detected", "cm_src_left", "heavy_hitter_count", ">", 10),
        ("Total_Traffic_Spike", "per_five_tuple", "total_bytes", ">", 1000000),
    ]
    assert cfg.aggregator.period == timedelta(hours=720)
    assert cfg.alerter.check_interval == timedelta(seconds=600)
    assert cfg.warnings == ()  # loads cleanly with no variable set
    # the original's spelling is kept in the file, so a user of the original recognises it
    assert "count_thereshold:" in SHIPPED.read_text()


def test_shipped_config_expands_placeholders(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLICKHOUSE_HOST", "ch.internal")
    monkeypatch.setenv("CLICKHOUSE_PORT", "19000")
    monkeypatch.setenv("SMTP_PASSWORD", "s3cret")
    monkeypatch.setenv("AI_API_KEY", "k")
    cfg = load_config(SHIPPED)
    ch = cfg.aggregator.exact.writers[1].params
    assert (ch.host, ch.port, ch.database, ch.username) == ("ch.internal", 19000, "default", "default")
    eff = effective_config_dict(cfg)
    assert eff["smtp"]["password"] == "***" and eff["ai"]["api_key"] == "***"
    assert eff["aggregator"]["exact"]["writers"][1]["clickhouse"]["password"] == ""  # empty stays visible
    assert eff["alerter"]["check_interval"] == "10m0s"
    assert eff["aggregator"]["sketch"]["tasks"][1]["size_threshold"] == 4096000
    assert "from" in eff["smtp"]
    json.dumps(eff)  # JSON-able


def test_packaged_copy_is_identical() -> None:
    assert PACKAGED.read_bytes() == SHIPPED.read_bytes()


def test_env_example_lists_every_placeholder() -> None:
    example = (REPO / "configs" / ".env.example").read_text()
    names = {
        line.split("=", 1)[0] for line in example.splitlines() if "=" in line and not line.startswith("#")
    }
    text = SHIPPED.read_text()
    code = "\n".join(line.split("#", 1)[0] for line in text.splitlines())  # placeholders outside comments
    placeholders = set(re.findall(r"\$\{([A-Za-z0-9_]+)\}", code))
    assert len(placeholders) >= 10
    assert placeholders <= names, placeholders - names


def test_default_path_prefers_local_configs(tmp_path: Path) -> None:
    assert default_config_path().read_bytes() == PACKAGED.read_bytes()  # empty cwd: the packaged copy
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "config.yaml").write_text("aggregator:\n  num_workers: 3\n")
    assert default_config_path() == Path("configs/config.yaml")
    assert load_config().aggregator.num_workers == 3


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"configuration file not found: .*nope\.yaml"):
        load_config(tmp_path / "nope.yaml")


def test_yaml_error_names_file_line_and_column(tmp_path: Path) -> None:
    f = tmp_path / "broken.yaml"
    f.write_text("aggregator:\n  types: [exact\n  period: 1h\n")
    with pytest.raises(ConfigError) as info:
        load_config(f)
    (line,) = info.value.errors
    assert line.startswith(f"{f}:3:9: YAML syntax error:")


def test_top_level_must_be_a_mapping() -> None:
    with pytest.raises(ConfigError, match="the top level is a list, not a mapping"):
        parse_config_text("- a\n- b\n")


def _alias_bomb() -> str:
    lines = ['l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, 10)]  # 9**10 nodes
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(
    ("text", "where", "expected"),
    [
        # a "billion laughs": hung in the parsed-config cache's walk of the data
        (_alias_bomb(), ":6:", "aliases repeat 1"),
        # an alias inside its own anchor's node: walked forever
        ("aggregator: &a\n  types: [*a]\n", ":2:11:", "the alias *a is inside the node its anchor names"),
        # libyaml's composer recursed on the C stack: a segmentation fault
        ("aggregator: " + "[" * 50_000 + "]" * 50_000 + "\n", ":1:112:", "nested more than 100 levels"),
        ("aggregator:\n" + "".join("  " * i + f"k{i}:\n" for i in range(1, 200)), ":101:", "nested more"),
    ],
    ids=["alias-bomb", "recursive-alias", "deep-flow", "deep-block"],
)
def test_yaml_structure_out_of_bounds_is_refused_with_its_place(
    tmp_path: Path, text: str, where: str, expected: str
) -> None:
    f = tmp_path / "c.yaml"
    f.write_text(text)
    app, prefix = _cli()
    result = CliRunner().invoke(app, [*prefix, "-c", str(f)])
    assert result.exit_code == 2, result.output
    out = " ".join(result.output.split())
    assert f"{f}{where}" in out and expected in out, out


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # PyYAML's constructors raised bare ValueError/IndexError (a traceback) for these explicit tags
        (
            "aggregator:\n  num_workers: !!float true\n",
            ":2:16: YAML syntax error: the value 'true' cannot be read",
        ),
        ("aggregator:\n  num_workers: !!float ''\n", ":2:16: YAML syntax error: the value '' cannot be read"),
        ("aggregator:\n  num_workers: !!int x\n", ":2:16: YAML syntax error: the value 'x' cannot be read"),
        # our duplicate-key check unpacked a sequence's items as key-value pairs
        (
            "aggregator: !!set [a, b]\n",
            ":1:13: YAML syntax error: expected a mapping node, but found sequence",
        ),
    ],
)
def test_yaml_explicit_tags_that_do_not_fit_their_value_are_errors_with_their_place(
    tmp_path: Path, text: str, expected: str
) -> None:
    f = tmp_path / "c.yaml"
    f.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(f)
    (line,) = info.value.errors
    assert line.startswith(f"{f}{expected}"), line


def test_yaml_anchors_and_merge_keys_within_bounds_still_work() -> None:
    cfg = parse_config_text(
        "x-task: &task\n  key_fields: [SrcIP]\n"
        "aggregator:\n  types: [exact]\n  exact:\n    tasks:\n"
        "      - {<<: *task, name: a}\n      - {<<: *task, name: b}\n"
    )
    assert [t.key_fields for t in cfg.aggregator.exact.tasks] == [("SrcIP",), ("SrcIP",)]


def test_key_fields_match_the_tasks_vocabulary() -> None:
    from netspectra import fields

    assert fields.FIELD_NAMES == KEY_FIELDS


# --------------------------------------------------------------------------------------------------
# netspectra config check
# --------------------------------------------------------------------------------------------------


def _cli() -> tuple[Any, list[str]]:
    """The typer app and the argument prefix of ``netspectra config check``."""
    from netspectra.cli import main

    return main.app, ["config", "check"]


def test_config_check_valid_prints_effective_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMTP_PASSWORD", "hunter2")
    app, prefix = _cli()
    result = CliRunner().invoke(app, [*prefix, "--config", str(SHIPPED), "--json"])
    assert result.exit_code == 0, result.output
    start = result.stdout.index("{")
    eff = json.loads(result.stdout[start : result.stdout.rindex("}") + 1])
    assert eff["smtp"]["password"] == "***"
    assert [t["name"] for t in eff["aggregator"]["exact"]["tasks"]] == ["per_five_tuple"]
    assert "hunter2" not in result.output


def test_config_check_masks_every_secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # nats.token, a webhook's secret and its URL's token, and credentials in a NATS URL were printed
    # in clear (only password, api_key and the API tokens were masked)
    monkeypatch.setenv("NATS_TOKEN", "natstok-42")
    monkeypatch.setenv("NATS_URL", "nats://alice:urlpw-42@127.0.0.1:4222,nats://urltok-42@10.0.0.2:4222")
    doc = _minimal()
    doc["alerter"]["webhooks"] = [
        {"url": "https://hooks.example.org/services/hooktok-42", "secret": "hmac-42"},
        {"url": "http://127.0.0.1:9000"},
    ]
    f = tmp_path / "c.yaml"
    f.write_text(yaml.safe_dump(doc) + "probe:\n  nats_url: ${NATS_URL}\nnats:\n  token: ${NATS_TOKEN}\n")
    app, prefix = _cli()
    for fmt in (["--json"], []):
        result = CliRunner().invoke(app, [*prefix, "--config", str(f), *fmt])
        assert result.exit_code == 0, result.output
        # each secret by its whole text ("-42" alone was also in pytest's directory pytest-42x)
        for secret in ("natstok-42", "urlpw-42", "urltok-42", "hooktok-42", "hmac-42"):
            assert secret not in result.output
    eff = effective_config_dict(load_config(f))
    assert eff["nats"]["token"] == "***"
    assert eff["probe"]["nats_url"] == "nats://alice:***@127.0.0.1:4222,nats://***@10.0.0.2:4222"
    assert eff["alerter"]["webhooks"][0] | {"timeout": None} == {
        "url": "https://hooks.example.org/***",
        "secret": "***",
        "format": "json",
        "timeout": None,
        "retries": 3,
    }
    assert eff["alerter"]["webhooks"][1]["url"] == "http://127.0.0.1:9000"  # nothing to hide
    assert eff["alerter"]["webhooks"][1]["secret"] == ""  # empty stays visible


def test_config_check_yaml_output_and_warnings(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("probe:\n  subject_name: x\n")
    app, prefix = _cli()
    result = CliRunner().invoke(app, [*prefix, "-c", str(f)])
    assert result.exit_code == 0, result.output
    assert "subject: gons.packets.raw" in result.output
    assert "probe.subject_name: unknown key, ignored; write subject instead" in result.output


def test_config_check_invalid_exits_2_with_every_error(tmp_path: Path) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text(
        "aggregator:\n  types: [exact]\n  exact:\n    tasks:\n      - name: t\n"
        "        key_fields: [SrcIP, Mac]\n  period: 5 days\n"
    )
    app, prefix = _cli()
    result = CliRunner().invoke(app, [*prefix, "-c", str(f)])
    assert result.exit_code == 2
    out = " ".join(result.output.split())  # rich may wrap long lines
    assert "aggregator.exact.tasks[0].key_fields[1]: 'Mac' is not a key field" in out
    assert "aggregator.period: '5 days' is not a duration" in out


def test_secrets_stay_out_of_repr() -> None:
    cfg = parse_config_text("smtp:\n  password: hunter2\nai:\n  api_key: sk-123\n")
    assert cfg.smtp.password == "hunter2" and cfg.ai.api_key == "sk-123"
    assert "hunter2" not in repr(cfg) and "sk-123" not in repr(cfg)


# --------------------------------------------------------------------------------------------------
# clickhouse: data_dir, retention, history_resolution (additions of NetSpectra's storage)
# --------------------------------------------------------------------------------------------------


def _clickhouse(**keys: Any) -> dict[str, Any]:
    writer = {"type": "clickhouse", "enabled": True, "clickhouse": keys}
    return {"aggregator": {"types": ["exact"], "exact": {"writers": [writer]}}}


def test_clickhouse_storage_keys_default() -> None:
    ch = _parse(_clickhouse(host="")).aggregator.exact.writers[0].params
    assert (ch.data_dir, ch.retention, ch.history_resolution) == ("", None, timedelta(hours=1))


def test_clickhouse_storage_keys_parse_go_durations() -> None:
    ch = _parse(_clickhouse(data_dir="/var/lib/ns", retention="720h", history_resolution="10m"))
    c = ch.aggregator.exact.writers[0].params
    assert (c.data_dir, c.retention, c.history_resolution) == (
        "/var/lib/ns",
        timedelta(days=30),
        timedelta(minutes=10),
    )
    zero = _parse(_clickhouse(retention="0")).aggregator.exact.writers[0].params
    assert zero.retention is None  # 0 = keep everything, like an absent key


def test_clickhouse_storage_keys_refuse_bad_values() -> None:
    lines = _error_lines(_clickhouse(retention="-1h", history_resolution="500ms"))
    text = "\n".join(lines)
    assert "aggregator.exact.writers[0].clickhouse.retention: '-1h0m0s' is negative" in text
    assert "aggregator.exact.writers[0].clickhouse.history_resolution: '500ms' is not a whole number" in text


def test_alerting_additions_webhooks_cooldown_timeout_starttls() -> None:
    from netspectra.config import parse_config_text

    cfg = parse_config_text(
        "alerter:\n  cooldown: 30m\n"
        "  ai_analysis: {enabled: true, service_addr: 'localhost:50052', timeout: 5s}\n"
        "  webhooks:\n    - {url: 'http://127.0.0.1:9/hook', secret: s3cret, format: slack, retries: 1}\n"
        "smtp: {host: mail.example, starttls: always}\n"
    )
    assert cfg.alerter.cooldown.total_seconds() == 1800
    assert cfg.alerter.ai_analysis.timeout.total_seconds() == 5
    (hook,) = cfg.alerter.webhooks
    assert (hook.format, hook.retries, hook.secret) == ("slack", 1, "s3cret")
    assert "s3cret" not in repr(hook)
    assert cfg.smtp.starttls == "always"
    with pytest.raises(ConfigError, match="format"):
        parse_config_text("alerter:\n  webhooks:\n    - {url: 'http://x', format: teams}\n")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # passed config check, then the alerter refused to start (without naming the key)
        ("alerter:\n  cooldown: -5s\n", "alerter.cooldown: '-5s' is negative; write e.g. 1h, or 0"),
        # passed config check, then the alerter's AI client raised ValueError (a traceback)
        ("alerter:\n  ai_analysis: {timeout: 0s}\n", "alerter.ai_analysis.timeout: '0s' is not positive"),
        (
            "alerter:\n  webhooks:\n    - {url: 'http://127.0.0.1:9/h', timeout: -5s}\n",
            "alerter.webhooks[0].timeout: '-5s' is not positive",
        ),
    ],
)
def test_alerting_durations_out_of_range_are_refused_by_config_check(text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config_text(text)
    assert any(expected in e for e in info.value.errors), info.value.errors
    assert parse_config_text("alerter:\n  cooldown: 0s\n").alerter.cooldown.total_seconds() == 0


def test_probe_live_keys_defaults_and_values() -> None:
    from netspectra.config import parse_config_text

    p = parse_config_text("probe: {}\n").probe
    assert (p.interface, p.bpf_filter, p.snaplen, p.promiscuous, p.fanout_group) == ("", "", 1600, True, None)
    assert (p.block_size, p.block_count, p.shards, p.shard_fields) == (1 << 20, 64, 16, ("SrcIP",))
    assert (p.persistence.rotate_bytes, p.persistence.rotate_seconds) == (None, None)
    p = parse_config_text(
        "probe:\n  interface: eth1\n  bpf_filter: 'tcp port 80'\n  snaplen: 128\n  promiscuous: false\n"
        "  fanout_group: 7\n  shards: 4\n  shard_fields: [SrcIP, DstIP]\n"
        "  persistence: {enabled: true, encoding: parquet, rotate_bytes: 1048576, rotate_seconds: 30}\n"
    ).probe
    assert (p.interface, p.bpf_filter, p.snaplen, p.promiscuous, p.fanout_group) == (
        "eth1",
        "tcp port 80",
        128,
        False,
        7,
    )
    assert (p.shards, p.shard_fields) == (4, ("SrcIP", "DstIP"))
    assert (p.persistence.encoding, p.persistence.rotate_bytes, p.persistence.rotate_seconds) == (
        "parquet",
        1048576,
        30.0,
    )


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        ("probe.snaplen", 8, "probe.snaplen: Input should be greater than or equal to 16"),
        ("probe.fanout_group", 70000, "probe.fanout_group: Input should be less than or equal to 65535"),
        ("probe.shards", 0, "probe.shards: Input should be greater than or equal to 1"),
        (
            "probe.shard_fields",
            ["srcip"],
            "probe.shard_fields: 'srcip' is not a valid key field (names are case-sensitive: did you mean",
        ),
        ("probe.shard_fields", [], "probe.shard_fields: at least one shard field is needed"),
        (
            "probe.persistence.rotate_bytes",
            0,
            "probe.persistence.rotate_bytes: Input should be greater than 0",
        ),
        ("probe.persistence.rotate_seconds", -1, "probe.persistence.rotate_seconds: Input should be greater"),
    ],
)
def test_probe_live_keys_refuse_bad_values(path: str, value: Any, expected: str) -> None:
    lines = _error_lines(_set(_minimal(), path, value))
    assert any(line.startswith(expected) for line in lines), lines


def test_persister_from_config_takes_rotation_and_parquet(tmp_path: Path) -> None:
    from netspectra.config import parse_config_text
    from netspectra.services.probe import make_persister

    cfg = parse_config_text(
        f"probe:\n  persistence: {{enabled: true, path: '{tmp_path}', encoding: parquet, "
        "rotate_bytes: 4096, rotate_seconds: 2.5}\n"
    )
    pers = make_persister(cfg.probe.persistence, live=False)
    assert pers is not None
    assert (pers.encoding, pers.rotate_bytes, pers.rotate_seconds) == ("parquet", 4096, 2.5)
    pcap = parse_config_text("probe:\n  persistence: {enabled: true}\n").probe.persistence
    assert make_persister(pcap, live=False) is None  # a replay has no raw frames to write as pcap
    assert make_persister(pcap, live=True) is not None
    assert make_persister(parse_config_text("probe: {}\n").probe.persistence, live=True) is None


# --------------------------------------------------------------------------------------------------
# Checked once, fully (issue 12): what analyze/engine would refuse, config check refuses
# --------------------------------------------------------------------------------------------------


@pytest.mark.shared
@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (
            "config-cm-width-max.yaml",
            "would allocate 512.0 GiB (heavyguardian, sized like mv at depth 2 x width",
        ),
        ("config-ss-depth-huge.yaml", "depth: Input should be less than or equal to 64 (got 100000)"),
    ],
)
def test_repro_configs_are_refused_by_config_check_and_analyze(
    shared_data: Path, name: str, expected: str
) -> None:
    import subprocess
    import sys

    path = shared_data / "repro" / name
    for args in (
        ["config", "check", "-c", str(path)],
        ["analyze", "-c", str(path), str(REPO / "tests" / "data" / "captures" / "gnutella.pcap")],
    ):
        res = subprocess.run(
            [sys.executable, "-m", "netspectra", *args], capture_output=True, text=True, timeout=120
        )
        assert res.returncode == 2, (args, res.stderr)
        assert expected in res.stderr and "Traceback" not in res.stderr


def test_parsing_leaves_the_garbage_collector_as_it_was() -> None:
    """The collector is paused while a configuration is parsed (start-up of large maps), then restored:
    on again, also after a YAML error; left off when it was off."""
    import gc

    from netspectra.config.loader import parse_config_text

    assert gc.isenabled()
    parse_config_text("aggregator: {types: [exact]}\n")
    assert gc.isenabled()
    with pytest.raises(ConfigError):
        parse_config_text("aggregator: [\n")
    assert gc.isenabled()
    gc.disable()
    try:
        parse_config_text("aggregator: {types: [exact]}\n")
        assert not gc.isenabled()
    finally:
        gc.enable()


def _doc_yaml_blocks() -> list[Any]:
    """Every ```yaml block of README.md and docs/*.md that is a NetSpectra configuration (not, e.g., a
    Prometheus scrape configuration), as a pytest param named after its page and line."""
    blocks = []
    for page in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        text = page.read_text()
        for m in re.finditer(r"```ya?ml\n(.*?)```", text, re.S):
            if "scrape_configs:" in m.group(1):
                continue
            line = text.count("\n", 0, m.start()) + 1
            blocks.append(pytest.param(m.group(1), id=f"{page.name}:{line}"))
    return blocks


@pytest.mark.parametrize("block", _doc_yaml_blocks())
def test_documented_yaml_has_no_unknown_top_level_section(block: str, tmp_path: Path) -> None:
    # docs/storage.md's TLS example was a top-level `clickhouse:` section, which the loader ignores
    # (with a warning): a user copying it got a plain-text connection to localhost. The examples may be
    # fragments (files that do not exist here, tasks named elsewhere), but every section they show
    # must be one the configuration reads.
    path = tmp_path / "example.yaml"
    path.write_text(block)
    try:
        warnings = load_config(path, log_warnings=False).warnings
    except ConfigError as exc:
        warnings = exc.warnings
    top = [w for w in warnings if re.match(r"[A-Za-z_]+: unknown key", w)]
    assert not top, top


@pytest.mark.parametrize("block", _doc_yaml_blocks())
def test_documented_yaml_has_no_unknown_key_at_any_depth(block: str, tmp_path: Path) -> None:
    # docs/collect.md's exporters example held a `clickhouse: {...}` placeholder: copied as is, the loader
    # warned about an unknown key '...' and the writer went to the embedded engine's defaults. A section
    # of a plugin kind this checkout lacks (docs/kinds.md's `portcount`) is the one unknown key allowed.
    path = tmp_path / "example.yaml"
    path.write_text(block)
    try:
        cfg = load_config(path, log_warnings=False)
        warnings, plugins = cfg.warnings, set()
    except ConfigError as exc:
        warnings = exc.warnings
        plugins = set(
            re.findall(r"aggregator\.types\[\d+\]: '(\w+)' is not a valid aggregator type", str(exc))
        )
    unknown = [
        w
        for w in warnings
        if "unknown key" in w and not any(w.startswith(f"aggregator.{p}:") for p in plugins)
    ]
    assert not unknown, unknown


def test_the_exporters_example_of_collect_md_is_complete(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The exporters example is a whole configuration: it loads without a warning and runs an exact task
    and an exporters task on one ClickHouse server (a placeholder or an enabled group without tasks
    warned)."""
    text = (REPO / "docs" / "collect.md").read_text()
    (block,) = [b for b in re.findall(r"```ya?ml\n(.*?)```", text, re.S) if "exporters:" in b]
    path = tmp_path / "exporters.yaml"
    path.write_text(block)
    monkeypatch.setenv("CLICKHOUSE_HOST", "ch.example.net")
    cfg = load_config(path, log_warnings=False)
    assert list(cfg.warnings) == []
    assert [t.name for t in cfg.aggregator.group("exporters").tasks] == ["exporters"]
    assert cfg.aggregator.exact.tasks and "exporters" in cfg.aggregator.types
    (writer,) = cfg.aggregator.group("exporters").writers
    assert writer.params == cfg.aggregator.exact.writers[0].params and writer.params.host == "ch.example.net"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("127.0.0.1:", "has no port (an unset ${VAR}?)"),
        ("8080", "is not HOST:PORT"),
        ("::1:8080", "is not HOST:PORT"),
        ("0.0.0.0:65536", "is not HOST:PORT"),
        ("localhost:grpc", "is not HOST:PORT"),
    ],
)
def test_a_listen_address_without_a_usable_port_is_refused(value: str, message: str) -> None:
    # `grpc_listen_addr: "127.0.0.1:${GRPC_PORT}"` with GRPC_PORT unset was valid, and gRPC then
    # listened on its default port, 443
    keys = (("api", "grpc_listen_addr"), ("api", "http_listen_addr"), ("ai", "grpc_listen_addr"))
    for section, key in keys:
        with pytest.raises(ConfigError) as info:
            parse_config_text(f"{section}:\n  {key}: '{value}'\n")
        assert f"{section}.{key}" in str(info.value) and message in str(info.value), str(info.value)


def test_listen_addresses_as_written_are_kept() -> None:
    for value in ("127.0.0.1:0", ":50051", "[::1]:8080", "[::]:50051", "0.0.0.0:65535", "localhost:8080"):
        assert parse_config_text(f"api:\n  grpc_listen_addr: '{value}'\n").api.grpc_listen_addr == value
    assert parse_config_text("api:\n  grpc_listen_addr: ''\n").api.grpc_listen_addr == "127.0.0.1:50051"


def test_writers_of_one_database_with_different_retentions_are_warned_about() -> None:
    """Each ClickHouse writer drops old partitions of its group's tables (defaults included) and of the
    tables whose key its section sets: two writers of one database that disagree make the shortest win,
    which config check says (naming both); its own group's key alone, or another database, is quiet."""

    def config(exact: dict[str, str], rollup: dict[str, str], other_db: bool = False) -> list[str]:
        def writer(keys: dict[str, str], database: str = "d") -> list[dict[str, Any]]:
            ch = {"data_dir": "/tmp/unused", "database": database, **keys}
            return [{"type": "clickhouse", "enabled": True, "clickhouse": ch}]

        doc = {
            "aggregator": {
                "types": ["exact", "rollup"],
                "exact": {"writers": writer(exact), "tasks": [{"name": "five", "key_fields": ["SrcIP"]}]},
                "rollup": {"writers": writer(rollup, "e" if other_db else "d"), "tasks": [{"name": "t"}]},
            }
        }
        cfg = parse_config_text(yaml.safe_dump(doc), source="t.yaml", expand=False)
        return [w for w in cfg.warnings if "retention" in w]

    assert config({}, {"rollup_1m_retention": "720h"}) == []  # the exact writer's defaults stay its own
    (said,) = config({"rollup_1m_retention": "168h"}, {"rollup_1m_retention": "720h"})
    assert said.startswith("aggregator.exact.writers[0].clickhouse.rollup_1m_retention: ")
    assert "of rollup_1m by different retentions" in said and "the shortest wins" in said
    assert "aggregator.exact.writers[0].clickhouse.rollup_1m_retention = 168h0m0s" in said
    assert "aggregator.rollup.writers[0].clickhouse.rollup_1m_retention = 720h0m0s" in said
    # a key set in the exact writer's section against the rollup writer's default (a week): also said
    (said,) = config({"rollup_5m_retention": "0"}, {})
    assert "rollup_5m" in said and "= forever" in said and "2160h0m0s" in said
    assert config({"rollup_1m_retention": "168h"}, {"rollup_1m_retention": "720h"}, other_db=True) == []
    (said,) = config({"retention": "24h"}, {"retention": "48h"})  # tables of one key: named together
    assert "flow_metrics, heavy_hitters, alerts, exporters" in said
