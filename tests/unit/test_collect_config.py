"""The ``collect`` configuration section: defaults, listen addresses, per-exporter rates, errors."""

from __future__ import annotations

from datetime import timedelta

import pytest
from pydantic import ValidationError

from netspectra.config.collect import DEFAULT_LISTEN, CollectConfig, parse_udp_listen
from netspectra.config.models import Config


def test_defaults_listen_on_loopback() -> None:
    c = Config().collect
    assert c.listen == DEFAULT_LISTEN
    assert c.listen_addresses() == [("127.0.0.1", 2055), ("127.0.0.1", 6343)]
    assert c.default_sampling_rate == 1 and c.exporter_sampling_rates == {}
    assert c.pending_max_age == timedelta(seconds=10) and c.socket_buffer == 32 << 20


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("udp://0.0.0.0:2055", ("0.0.0.0", 2055)),
        ("127.0.0.1:9995", ("127.0.0.1", 9995)),
        (":6343", ("0.0.0.0", 6343)),
        ("udp://[::1]:4739", ("::1", 4739)),
        ("[2001:db8::1]:2055", ("2001:db8::1", 2055)),
        ("udp://127.0.0.1:0", ("127.0.0.1", 0)),
    ],
)
def test_listen_addresses(text: str, want: tuple[str, int]) -> None:
    assert parse_udp_listen(text) == want


@pytest.mark.parametrize(
    ("listen", "message"),
    [
        (["tcp://127.0.0.1:2055"], "only udp://"),
        (["127.0.0.1"], "no valid port"),
        (["127.0.0.1:70000"], "no valid port"),
        (["[::1:2055"], "unclosed"),
        (["fe80::zz:2055"], "not an IPv6 address"),
        (["127.0.0.1:2055", "udp://127.0.0.1:2055"], "given twice"),
        ([], "no listen address"),
    ],
)
def test_bad_listen_addresses_name_the_key_and_the_fix(listen: list[str], message: str) -> None:
    with pytest.raises(ValidationError) as e:
        Config.model_validate({"collect": {"listen": listen}})
    text = str(e.value)
    assert "collect.listen" in text and message in text
    assert "udp://HOST:PORT" in text or message == "given twice"


def test_listen_from_one_string() -> None:
    """An expanded ${VAR}: addresses separated by commas or spaces."""
    c = CollectConfig.model_validate({"listen": "udp://127.0.0.1:2055, udp://[::1]:2055"})
    assert c.listen_addresses() == [("127.0.0.1", 2055), ("::1", 2055)]


def test_exporter_sampling_rates() -> None:
    c = CollectConfig.model_validate(
        {"exporter_sampling_rates": {"::ffff:192.0.2.1": 1000, "2001:db8::1": 64}}
    )
    assert c.exporter_sampling_rates == {"192.0.2.1": 1000, "2001:db8::1": 64}
    for bad, message in (
        ({"router-1": 100}, "not an IP address"),
        ({"192.0.2.1": 0}, "greater than or equal to 1"),
        ({"192.0.2.1": 10, "::ffff:192.0.2.1": 20}, "given twice"),
    ):
        with pytest.raises(ValidationError, match=message):
            CollectConfig.model_validate({"exporter_sampling_rates": bad})


def test_limits_and_sizes() -> None:
    c = CollectConfig.model_validate(
        {
            "socket_buffer": "64MiB",
            "pending_max_age": "30s",
            "pending_max_bytes": "16MiB",
            "default_sampling_rate": 0,
        }
    )
    assert c.socket_buffer == 64 << 20 and c.pending_max_age == timedelta(seconds=30)
    assert c.pending_max_bytes == 16 << 20 and c.default_sampling_rate == 0
    with pytest.raises(ValidationError, match="max_templates"):
        CollectConfig.model_validate({"max_templates": 0})
    # a negative age was accepted and acted as 0 (every early data set dropped), silently
    assert CollectConfig.model_validate({"pending_max_age": "0s"}).pending_max_age == timedelta(0)
    with pytest.raises(ValidationError) as e:
        Config.model_validate({"collect": {"pending_max_age": "-5s"}})
    assert "collect.pending_max_age" in str(e.value) and "'-5s' is negative; write e.g. 10s, or 0" in str(
        e.value
    )


def test_unknown_collect_keys_are_warnings() -> None:
    cfg = Config.model_validate({"collect": {"lisen": ["127.0.0.1:2055"]}})
    assert any("collect.lisen" in w for w in cfg.warnings)
