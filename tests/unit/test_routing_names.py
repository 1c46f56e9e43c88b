"""A task name the configuration does not hold is refused with the configured names and, for a near miss,
the name meant (as ``query top`` and the configuration's errors do)."""

from __future__ import annotations

from pathlib import Path

import pytest

from netspectra.api.routing import StoreRouter, UnknownTaskError
from netspectra.config.loader import load_config

REPO = Path(__file__).resolve().parents[2]


def test_an_unknown_task_names_the_configured_ones_and_the_near_miss(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMTP_PORT", "0")
    monkeypatch.setenv("CLICKHOUSE_PORT", "0")
    router = StoreRouter(load_config(REPO / "configs" / "config.yaml", log_warnings=False))
    with pytest.raises(UnknownTaskError) as err:
        router.route("per_five_tupel")
    text = str(err.value)
    assert "unknown task 'per_five_tupel' (did you mean 'per_five_tuple'?)" in text, text
    assert "configured tasks: ['per_five_tuple'" in text, text
    with pytest.raises(UnknownTaskError) as err:
        router.route("flow")
    assert "did you mean" not in str(err.value), str(err.value)
