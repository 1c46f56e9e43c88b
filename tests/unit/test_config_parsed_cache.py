"""The parsed-configuration cache (netspectra.config.parsed_cache): a configuration parsed once, the same
Config from the cache (without importing PyYAML), nothing stale, errors as without it, a damaged entry
ignored."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest
import yaml

from netspectra.config import loader, parsed_cache
from netspectra.config.loader import ConfigError, load_config


def _networks_yaml(n: int, name: str = "net") -> str:
    lines = ["enrichment:", "  networks:"]
    for i in range(n):
        lines.append(f"    10.{i // 256}.{i % 256}.0/24: {{name: {name}{i}, role: r{i % 7}, site: s{i % 3}}}")
    return "\n".join(lines) + "\n"


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = tmp_path / "cache"
    monkeypatch.setenv(parsed_cache.ENV, str(d))
    return d


@pytest.fixture
def parses(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many times the YAML parser ran."""
    calls: list[int] = []
    real = loader._load_yaml

    def counted(text: str):  # type: ignore[no-untyped-def]
        calls.append(len(text))
        return real(text)

    monkeypatch.setattr(loader, "_load_yaml", counted)
    return calls


def entries(cache: Path) -> list[Path]:
    return sorted(cache.glob("parsed-*.json"))


def test_large_config_parsed_once_same_config(tmp_path: Path, cache: Path, parses: list[int]) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(_networks_yaml(700))
    assert len(path.read_text()) >= parsed_cache.MIN_BYTES
    first = load_config(path)
    assert len(parses) == 1 and len(entries(cache)) == 1
    second = load_config(path)
    assert len(parses) == 1  # from the cache
    assert second.model_dump() == first.model_dump()
    assert list(second.enrichment.networks) == list(first.enrichment.networks)  # the order too
    fresh = yaml.load(path.read_text(), Loader=loader._Yaml12BoolLoader)
    assert json.loads(entries(cache)[0].read_text())["data"] == fresh


def test_edited_file_is_a_new_key(tmp_path: Path, cache: Path, parses: list[int]) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(_networks_yaml(700))
    assert load_config(path).enrichment.networks["10.0.5.0/24"].name == "net5"
    path.write_text(path.read_text().replace("name: net5,", "name: renamed,"))  # an edit
    assert load_config(path).enrichment.networks["10.0.5.0/24"].name == "renamed"
    assert load_config(path).enrichment.networks["10.0.5.0/24"].name == "renamed"
    assert len(parses) == 2 and len(entries(cache)) == 2


def test_an_entry_under_another_keys_name_is_refused(tmp_path: Path, cache: Path, parses: list[int]) -> None:
    """An entry records its key: copied over another text's entry (same user), it is not read for that
    text, which is parsed again (and its entry rewritten)."""
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text(_networks_yaml(20, "alpha"))
    b.write_text(_networks_yaml(20, "beta"))
    load_config(a)
    load_config(b)
    assert len(parses) == 2 and len(entries(cache)) == 2
    entry_a = next(e for e in entries(cache) if "alpha0" in e.read_text())
    entry_b = next(e for e in entries(cache) if e != entry_a)
    entry_b.write_bytes(entry_a.read_bytes())  # a's data under b's key
    assert load_config(b).enrichment.networks["10.0.0.0/24"].name == "beta0"
    assert len(parses) == 3 and "beta0" in entry_b.read_text()
    assert load_config(b).enrichment.networks["10.0.0.0/24"].name == "beta0" and len(parses) == 3


def test_another_loaders_rules_are_a_new_key(cache: Path) -> None:
    """The directory is shared by every installed NetSpectra: a loader with other rules (here PyYAML's
    SafeLoader, for which ``yes`` is a boolean) never gets this loader's data for the same text."""
    text = "flag: yes\n" + _networks_yaml(700)
    ours = parsed_cache.parse_yaml(text, loader._load_yaml, loader._yaml_rules())
    assert ours["flag"] == "yes"  # YAML 1.2 booleans: only true/false

    def safe(t: str):  # type: ignore[no-untyped-def]
        return yaml.load(t, Loader=yaml.SafeLoader)

    safe_rules = repr(
        sorted(
            (k, [(t, r.pattern) for t, r in v]) for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()
        )
    )
    assert parsed_cache.parse_yaml(text, safe, safe_rules)["flag"] is True  # parsed, not our entry
    assert len(entries(cache)) == 2
    assert parsed_cache.parse_yaml(text, loader._load_yaml, loader._yaml_rules())["flag"] == "yes"


def test_text_with_variables_is_never_cached(
    tmp_path: Path, cache: Path, parses: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A ``${VAR}`` value (a password) never reaches the disk: such a text is parsed at every start; with
    the variable unset (nothing expanded into the text) it is cached."""
    path = tmp_path / "config.yaml"
    path.write_text(_networks_yaml(700) + "nats:\n  user: ${CH_USER}\n  password: ${CH_SECRET}\n")
    monkeypatch.setenv("CH_USER", "u")
    monkeypatch.setenv("CH_SECRET", "s3cret-value")
    assert load_config(path).nats.password == "s3cret-value"
    monkeypatch.setenv("CH_SECRET", "other")
    assert load_config(path).nats.password == "other"
    assert len(parses) == 2 and not cache.exists()
    monkeypatch.delenv("CH_USER")
    monkeypatch.setenv("CH_SECRET", "")
    for _ in range(2):
        assert load_config(path).nats.password == ""
    assert len(parses) == 3 and len(entries(cache)) == 1
    assert "s3cret" not in entries(cache)[0].read_text()


def test_text_with_a_literal_secret_is_never_cached(tmp_path: Path, cache: Path, parses: list[int]) -> None:
    """A password or token written in the file itself is not copied into the cache; the same keys left
    empty are no secret, and such a text is cached."""
    path = tmp_path / "config.yaml"
    for secret in (
        "nats:\n  user: u\n  password: hunter2-literal\n",
        "api:\n  auth:\n    tokens: [abcdefghijklmnopqrstuvwxyz012345]\n",
        "alerter:\n  notifiers:\n    - {type: email, smtp-password: hunter2-literal}\n",
    ):
        path.write_text(_networks_yaml(3) + secret)
        with contextlib.suppress(ConfigError):  # (validation comes after the parse and the cache)
            load_config(path)
        assert entries(cache) == [], secret
    path.write_text(_networks_yaml(3) + "nats:\n  password: ''\n")
    load_config(path)
    load_config(path)
    assert len(entries(cache)) == 1
    assert parsed_cache.holds_secret({"a": [{"b": {"API-Key": "x"}}]})
    assert not parsed_cache.holds_secret({"a": [{"b": {"api_key": ""}}], "tokens": []})
    assert parsed_cache.holds_secret({"probe": {"nats_url": "nats://u:p@127.0.0.1:4222"}})
    assert parsed_cache.holds_secret({"alerter": {"webhooks": [{"url": "https://hooks.example/T0/B0/x"}]}})
    assert not parsed_cache.holds_secret({"probe": {"nats_url": "nats://127.0.0.1:4222"}, "to": ["a@b.c"]})


def test_errors_are_never_cached(tmp_path: Path, cache: Path, parses: list[int]) -> None:
    path = tmp_path / "config.yaml"
    text = _networks_yaml(700)
    path.write_text(text + "    10.0.1.0/24: {name: twice}\n")  # a key written twice: a parse error
    for _ in range(2):
        with pytest.raises(ConfigError, match=r"config.yaml:\d+:\d+: YAML syntax error.*second time"):
            load_config(path)
    assert len(parses) == 2 and entries(cache) == []
    path.write_text(text + "    10.0.0.0/8: {name: 5}\n    not-a-cidr: {name: x}\n")  # parses; invalid
    for _ in range(2):
        with pytest.raises(ConfigError, match="not-a-cidr") as err:
            load_config(path)
        assert "is not a network" in str(err.value)
    assert len(parses) == 3  # the second from the cache: the same validation error


def test_small_config_cached_too_and_off_bypasses_the_cache(
    tmp_path: Path, cache: Path, parses: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A small text is cached as well (its parse is quick, but a hit spares PyYAML's import); ``off``
    parses every time and writes nothing."""
    path = tmp_path / "config.yaml"
    path.write_text(_networks_yaml(5))
    first = load_config(path)
    assert load_config(path).model_dump() == first.model_dump()
    assert len(parses) == 1 and len(entries(cache)) == 1
    monkeypatch.setenv(parsed_cache.ENV, "off")
    path.write_text(_networks_yaml(700))
    load_config(path)
    load_config(path)
    assert len(parses) == 3 and len(entries(cache)) == 1


def test_a_cached_configuration_loads_without_importing_pyyaml(tmp_path: Path) -> None:
    """The second process that loads the same configuration finds its data in the cache and never
    imports PyYAML (nor its parser): ~10 ms of a command's start."""
    import os
    import subprocess
    import sys

    path = tmp_path / "config.yaml"
    path.write_text(_networks_yaml(5) + "probe:\n  interface: eth9\n")
    code = (
        "import sys\nfrom netspectra.config import load_config\n"
        f"print(load_config({str(path)!r}).probe.interface, 'yaml' in sys.modules)\n"
    )
    env = {**os.environ, parsed_cache.ENV: str(tmp_path / "cache")}
    runs = [
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
        for _ in range(2)
    ]
    assert [r.stdout.split() for r in runs] == [["eth9", "True"], ["eth9", "False"]]


def test_the_rules_fingerprint_follows_the_parser_files(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The key's rules change with PyYAML's files (another release, libyaml's extension added or gone)
    and are ``None`` (no cache: every text parsed) where PyYAML is not a directory of files."""
    from importlib.machinery import ModuleSpec, PathFinder

    here = loader._yaml_rules()
    assert here is not None and len(here) == 20
    fake = tmp_path / "yaml"
    fake.mkdir()
    (fake / "__init__.py").write_text("__version__ = '0'\n")

    def rules_with(spec: ModuleSpec | None) -> str | None:
        monkeypatch.setattr(
            PathFinder, "find_spec", classmethod(lambda cls, name, path=None, target=None: spec)
        )
        loader._yaml_rules.cache_clear()
        try:
            return loader._yaml_rules()
        finally:
            monkeypatch.undo()
            loader._yaml_rules.cache_clear()

    package = ModuleSpec("yaml", None, is_package=True)
    package.submodule_search_locations = [str(fake)]
    other = rules_with(package)
    assert other is not None and other != here
    (fake / "_yaml.so").write_bytes(b"\0")
    assert rules_with(package) not in (None, here, other)
    assert rules_with(None) is None
    assert rules_with(ModuleSpec("yaml", None)) is None  # a module without a directory (an archive's)
    assert loader._yaml_rules() == here


def test_data_json_cannot_keep_is_not_cached(tmp_path: Path, cache: Path, parses: list[int]) -> None:
    path = tmp_path / "config.yaml"
    # a YAML timestamp (datetime) and an integer key: valid YAML that JSON would change
    path.write_text(_networks_yaml(700) + "x-note: {when: 2024-01-01, 7: seven}\n")
    a = load_config(path, log_warnings=False)
    b = load_config(path, log_warnings=False)
    assert len(parses) == 2 and entries(cache) == []
    assert a.warnings == b.warnings


def test_damaged_entry_is_parsed_again_and_replaced(tmp_path: Path, cache: Path, parses: list[int]) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(_networks_yaml(700))
    want = load_config(path).model_dump()
    (entry,) = entries(cache)
    for damage in ('{"format": 1, "da', '{"format": 999, "data": {}}', "[]"):
        entry.write_text(damage)
        assert load_config(path).model_dump() == want
    assert len(parses) == 4
    assert load_config(path).model_dump() == want and len(parses) == 4  # replaced by a good entry


def test_unwritable_directory_never_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv(parsed_cache.ENV, str(blocker / "sub"))  # under a file: mkdir fails
    path = tmp_path / "config.yaml"
    path.write_text(_networks_yaml(700))
    assert len(load_config(path).enrichment.networks) == 700


def test_entries_pruned_to_keep(tmp_path: Path, cache: Path) -> None:
    path = tmp_path / "config.yaml"
    for i in range(parsed_cache.KEEP + 3):
        path.write_text(_networks_yaml(700, name=f"v{i}-"))
        load_config(path)
    assert len(entries(cache)) == parsed_cache.KEEP


def test_same_plain_data() -> None:
    same = parsed_cache._same
    assert same({"a": [1, 2.5, "x", None, True]}, {"a": [1, 2.5, "x", None, True]})
    assert not same({"a": 1, "b": 2}, {"b": 2, "a": 1})  # order matters
    assert not same([True], [1]) and not same([1], [1.0]) and not same([float("nan")], [float("nan")])
    assert not same({1: "x"}, {"1": "x"}) and not same((1,), [1])
