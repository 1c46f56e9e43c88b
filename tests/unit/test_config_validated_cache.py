"""The validated-configuration cache (netspectra.config.validated_cache): in the command line's process a
configuration validated once is read back as the same Config, without validating; every input its
result depends on is part of the key or checked at the read (text, variables, NetSpectra's source, the
kinds known, the machine's memory); what cannot be cached is not; a damaged entry is ignored and
rewritten."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import time
import types
from pathlib import Path
from typing import Any

import pytest

from netspectra import process
from netspectra.config import base, loader, parsed_cache, validated_cache
from netspectra.config.loader import ConfigError, load_config, parse_config_text

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "src" / "netspectra" / "data" / "config.yaml"


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A cache directory of this test, in a process that counts as the command line's."""
    d = tmp_path / "cache"
    monkeypatch.setenv(parsed_cache.ENV, str(d))
    monkeypatch.setattr(process, "OWN_PROCESS", True)
    from netspectra.kinds import WRITERS

    # writer classes other tests defined in this process are kinds beyond the built-ins (no cache)
    monkeypatch.setattr(WRITERS, "_local", None)
    return d


@pytest.fixture
def validations(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The sources of the texts validated (parsed and checked by the models), in order."""
    calls: list[str] = []
    real = loader._validate

    def counted(text: str, source: str, rules: str | None) -> Any:
        calls.append(source)
        return real(text, source, rules)

    monkeypatch.setattr(loader, "_validate", counted)
    return calls


def entries(cache: Path) -> list[Path]:
    return sorted(cache.glob("validated-*.pickle"))


def _write(tmp_path: Path, text: str, name: str = "config.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_shipped_configuration_validated_once_same_config(
    tmp_path: Path, cache: Path, validations: list[str]
) -> None:
    first = load_config(SHIPPED)
    assert validations == [str(SHIPPED)] and len(entries(cache)) == 1
    copy = _write(tmp_path, SHIPPED.read_text())  # the same text elsewhere: the same entry
    second = load_config(copy)
    assert len(validations) == 1
    assert second.source == str(copy) and first.source == str(SHIPPED)
    assert load_config(SHIPPED) == first  # fields, fields set, private state (warnings, source)
    assert len(validations) == 1
    assert second.model_dump() == first.model_dump()
    assert second.warnings == first.warnings
    assert second.model_dump_json() == first.model_dump_json()
    assert loader.effective_config_dict(second) == loader.effective_config_dict(first)
    # a kind's group class and a sketch task's kind object are the process's own, not copies
    assert [type(g) for g in second.aggregator.groups.values()] == [
        type(g) for g in first.aggregator.groups.values()
    ]
    from netspectra.kinds import SKETCHES

    for task in second.aggregator.sketch.tasks:
        assert task.kind is SKETCHES.get(task.kind.name)
    # an entry holds no secret and is its owner's alone
    assert oct(entries(cache)[0].stat().st_mode & 0o777) == "0o600"


def test_warnings_come_back_with_the_configuration(
    tmp_path: Path, cache: Path, validations: list[str]
) -> None:
    path = _write(tmp_path, "aggregator:\n  types: [exact]\n  typo_key: 1\n")
    first = load_config(path, log_warnings=False)
    second = load_config(path, log_warnings=False)
    assert len(validations) == 1
    assert second.warnings == first.warnings and any("typo_key" in w for w in first.warnings)
    empty = _write(tmp_path, "", "empty.yaml")
    assert load_config(empty).warnings == load_config(empty).warnings != ()
    assert len(validations) == 2


def test_edited_text_is_validated_again(tmp_path: Path, cache: Path, validations: list[str]) -> None:
    path = _write(tmp_path, "aggregator:\n  num_workers: 3\n")
    assert load_config(path).aggregator.num_workers == 3
    path.write_text("aggregator:\n  num_workers: 4\n")
    assert load_config(path).aggregator.num_workers == 4
    assert load_config(path).aggregator.num_workers == 4
    assert len(validations) == 2 and len(entries(cache)) == 2


def test_variables_with_values_are_never_cached(
    tmp_path: Path, cache: Path, validations: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A ``${VAR}`` that expands to a value (often a secret) makes the text validated at every start and
    never written; unset, the text is cached; set again, it is validated with the new value."""
    path = _write(tmp_path, "probe:\n  interface: ${NS_TEST_IFACE}\n")
    monkeypatch.setenv("NS_TEST_IFACE", "eth7-secret-ish")
    assert load_config(path).probe.interface == "eth7-secret-ish"
    assert load_config(path).probe.interface == "eth7-secret-ish"
    assert len(validations) == 2 and entries(cache) == []
    monkeypatch.delenv("NS_TEST_IFACE")
    unset = load_config(path).probe.interface
    assert load_config(path).probe.interface == unset
    assert len(validations) == 3 and len(entries(cache)) == 1
    monkeypatch.setenv("NS_TEST_IFACE", "eth8")
    assert load_config(path).probe.interface == "eth8"  # not the cached value of the unset variable
    assert len(validations) == 4
    assert all(b"eth7" not in p.read_bytes() for p in cache.glob("*"))


def test_literal_secrets_are_never_cached(tmp_path: Path, cache: Path, validations: list[str]) -> None:
    path = _write(tmp_path, "nats:\n  user: u\n  password: hunter2-literal\n")
    load_config(path)
    load_config(path)
    assert len(validations) == 2 and entries(cache) == []
    assert all(b"hunter2" not in p.read_bytes() for p in cache.glob("*"))


def test_errors_are_never_cached_and_stay_the_same(
    tmp_path: Path, cache: Path, validations: list[str]
) -> None:
    path = _write(tmp_path, "aggregator:\n  types: [exact, skech]\n  num_workers: 0\n")
    messages = []
    for _ in range(2):
        with pytest.raises(ConfigError) as err:
            load_config(path)
        messages.append(str(err.value))
    assert messages[0] == messages[1] and "skech" in messages[0] and "num_workers" in messages[0]
    assert len(validations) == 2 and entries(cache) == []


def test_source_change_makes_entries_stale(
    tmp_path: Path, cache: Path, validations: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An entry records the NetSpectra modules' source files loaded when it was stored; one of them edited
    (size, modification time, change time or inode) makes it stale: validated again and rewritten."""
    module_file = tmp_path / "probe_module.py"
    module_file.write_text("X = 1\n")
    module = types.ModuleType("netspectra._test_probe_module")
    module.__file__ = str(module_file)
    monkeypatch.setitem(sys.modules, module.__name__, module)
    path = _write(tmp_path, "aggregator:\n  num_workers: 5\n")
    load_config(path)
    load_config(path)
    assert len(validations) == 1
    module_file.write_text("X = 22\n")  # NetSpectra upgraded or edited in place
    assert load_config(path).aggregator.num_workers == 5
    assert len(validations) == 2
    load_config(path)  # the rewritten entry is fresh again
    assert len(validations) == 2
    stat = module_file.stat()
    os.utime(module_file, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10_000_000))  # touched only
    load_config(path)
    assert len(validations) == 3
    # edited in place with the same size, its modification time put back (touch -r, cp -p, an edit within
    # one tick of a coarse clock): the inode's change time still moves
    stat = module_file.stat()
    module_file.write_text("X = 33\n")
    os.utime(module_file, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert module_file.stat().st_size == stat.st_size and module_file.stat().st_mtime_ns == stat.st_mtime_ns
    load_config(path)
    assert len(validations) == 4
    # replaced by another file (a new inode: rsync -t, an installer) of the same size and time
    stat = module_file.stat()
    other = tmp_path / "other.py"
    other.write_text("X = 44\n")
    os.utime(other, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    other.replace(module_file)
    load_config(path)
    assert len(validations) == 5


def test_damaged_or_foreign_entries_fall_back_silently_and_are_rewritten(
    tmp_path: Path, cache: Path, validations: list[str]
) -> None:
    path = _write(tmp_path, "aggregator:\n  num_workers: 6\n")
    load_config(path)
    (entry,) = entries(cache)
    head = entry.read_bytes().split(b"\n", 1)[0] + b"\n"
    damaged = [
        b"",  # empty
        b"\x00\x01garbage",  # not a header
        head,  # a header without the pickle
        head + entry.read_bytes()[len(head) : len(head) + 40],  # a pickle cut short
        head + pickle.dumps(print),  # a global an entry may not name
        head + pickle.dumps({"not": "a config"}),  # not a configuration
        b'{"format": 999, "sources": []}\n' + entry.read_bytes()[len(head) :],  # another format
    ]
    for n, content in enumerate(damaged, start=2):
        entry.write_bytes(content)
        assert load_config(path).aggregator.num_workers == 6
        assert len(validations) == n, content[:60]
        assert entries(cache) == [entry] and entry.read_bytes().startswith(head)  # rewritten
    load_config(path)
    assert len(validations) == len(damaged) + 1  # the rewritten entry is used


def test_an_entry_never_imports_a_module_it_names(
    tmp_path: Path, cache: Path, validations: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Importing a module runs it: an entry naming ``netspectra.__main__`` ran the whole command inside
    the unpickler (a second command within the first). Only modules already imported and the built-in
    kinds' modules may be named; no other module named by an entry is imported."""
    path = _write(tmp_path, "aggregator:\n  num_workers: 5\n")
    load_config(path)
    (entry,) = entries(cache)
    head = entry.read_bytes().split(b"\n", 1)[0] + b"\n"
    for module in ("netspectra.weights", "netspectra.cli.not_a_module_yet"):
        monkeypatch.delitem(sys.modules, module, raising=False)
        entry.write_bytes(head + f"c{module}\nConfig\n.".encode())  # a GLOBAL opcode, then STOP
        before = len(validations)
        assert load_config(path).aggregator.num_workers == 5
        assert len(validations) == before + 1  # refused, validated again
        assert module not in sys.modules
    # nor through a package's lazy attributes (its module __getattr__ imports the submodule)
    monkeypatch.delitem(sys.modules, "netspectra.collect.receiver", raising=False)
    entry.write_bytes(head + b"cnetspectra.collect\nUdpReceiver\n.")
    before = len(validations)
    assert load_config(path).aggregator.num_workers == 5 and len(validations) == before + 1
    assert "netspectra.collect.receiver" not in sys.modules
    # a built-in kind's module not imported yet is still named (its task and parameter models)
    monkeypatch.delitem(sys.modules, "netspectra.rollup.kind", raising=False)
    assert validated_cache._may_import("netspectra.rollup.kind")
    assert not validated_cache._may_import("netspectra.cli.not_a_module_yet")


def test_an_entry_under_another_keys_name_is_refused(
    tmp_path: Path, cache: Path, validations: list[str]
) -> None:
    """An entry copied, renamed or linked to another key's name held another configuration: the command
    ran configuration B's tasks for file A, without A's warnings."""
    a = _write(tmp_path, "aggregator:\n  num_workers: 3\n  typo_key: 1\n", "a.yaml")
    b = _write(tmp_path, "aggregator:\n  num_workers: 4\n", "b.yaml")
    load_config(a)
    (entry_a,) = entries(cache)
    load_config(b)
    (entry_b,) = set(entries(cache)) - {entry_a}
    for plant in ("copy", "symlink"):
        entry_a.unlink()
        if plant == "copy":
            entry_a.write_bytes(entry_b.read_bytes())
        else:
            entry_a.symlink_to(entry_b.name)
        before = len(validations)
        cfg = load_config(a)
        assert cfg.aggregator.num_workers == 3 and any("typo_key" in w for w in cfg.warnings)
        assert len(validations) == before + 1  # refused, validated again, rewritten as a's own
        assert not entry_a.is_symlink()
        assert load_config(a).aggregator.num_workers == 3 and len(validations) == before + 1


def test_entries_another_user_could_have_written_are_refused(
    tmp_path: Path, cache: Path, validations: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An entry owned by another user, writable by others or a symbolic link (a cache directory shared
    through $NETSPECTRA_CONFIG_CACHE): its configuration was used as this user's. Validated and parsed
    entries alike are refused, the text parsed and validated again."""
    path = _write(tmp_path, "aggregator:\n  num_workers: 3\n")
    load_config(path)
    (entry,) = entries(cache)
    (parsed,) = cache.glob("parsed-*.json")
    parses: list[str] = []
    real_parse = loader._load_yaml
    monkeypatch.setattr(loader, "_load_yaml", lambda text: parses.append(text) or real_parse(text))
    uid = os.geteuid()
    for how in ("mode", "owner"):
        if how == "mode":
            entry.chmod(0o622)
            parsed.chmod(0o622)
        else:
            monkeypatch.setattr(os, "geteuid", lambda: uid + 1)  # the entries are now another user's
        before = len(validations)
        assert load_config(path).aggregator.num_workers == 3
        assert len(validations) == before + 1 and len(parses) == 1  # neither entry read
        monkeypatch.setattr(os, "geteuid", lambda: uid)
        assert entry.stat().st_mode & 0o777 == 0o600  # rewritten, private
        parses.clear()
    moved = entry.with_name("elsewhere")
    entry.rename(moved)
    entry.symlink_to(moved.name)  # the right content, through a link
    before = len(validations)
    assert load_config(path).aggregator.num_workers == 3 and len(validations) == before + 1
    assert not entry.is_symlink()


def test_a_fifo_in_an_entrys_place_is_refused_without_waiting(
    tmp_path: Path, cache: Path, validations: list[str]
) -> None:
    """A FIFO where an entry is (validated or parsed) blocked the command for ever in open()."""
    import threading

    path = _write(tmp_path, "aggregator:\n  num_workers: 3\n")
    load_config(path)
    for entry in [*entries(cache), *cache.glob("parsed-*.json")]:
        entry.unlink()
        os.mkfifo(entry)
    got: list[int] = []
    loading = threading.Thread(
        target=lambda: got.append(load_config(path).aggregator.num_workers), daemon=True
    )
    loading.start()
    loading.join(30)
    assert got == [3] and len(validations) == 2


def test_no_home_directory_means_no_cache_not_a_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No $HOME and a user id without a passwd entry (a container's): pathlib cannot find the home
    directory, and every command failed with RuntimeError from the caches' directory."""
    import pwd

    from netspectra import declared_groups
    from netspectra.user_cache import user_cache_dir

    def no_entry(uid: int) -> Any:
        raise KeyError(uid)

    for name in ("HOME", "XDG_CACHE_HOME", parsed_cache.ENV):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(pwd, "getpwuid", no_entry)
    monkeypatch.setattr(process, "OWN_PROCESS", True)
    monkeypatch.setattr(declared_groups, "_FOUND", [])
    assert user_cache_dir("", "config") is None and user_cache_dir("~/x", "config") is None
    assert user_cache_dir(str(tmp_path), "config") == tmp_path  # a path of its own still works
    assert parsed_cache.cache_dir() is None and not validated_cache.active()
    assert declared_groups.remembered(("/nonexistent-path-entry",)) is None
    path = _write(tmp_path, "aggregator:\n  num_workers: 7\n")
    assert load_config(path).aggregator.num_workers == 7


def test_unwritable_directory_never_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv(parsed_cache.ENV, str(blocker / "sub"))  # under a file: mkdir fails
    monkeypatch.setattr(process, "OWN_PROCESS", True)
    path = _write(tmp_path, "aggregator:\n  num_workers: 7\n")
    assert load_config(path).aggregator.num_workers == 7
    assert load_config(path).aggregator.num_workers == 7


def test_only_the_command_lines_process_and_not_when_off(
    tmp_path: Path, cache: Path, validations: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _write(tmp_path, "aggregator:\n  num_workers: 8\n")
    monkeypatch.setattr(process, "OWN_PROCESS", False)  # a library user, a test runner
    load_config(path)
    load_config(path)
    assert len(validations) == 2 and entries(cache) == []
    monkeypatch.setattr(process, "OWN_PROCESS", True)
    monkeypatch.setenv(parsed_cache.ENV, "off")
    load_config(path)
    load_config(path)
    assert len(validations) == 4 and entries(cache) == []


MMDB_END = b"\xab\xcd\xefMaxMind.com"  # what ends an MMDB file (its metadata marker)


def test_geoip_database_files_are_watched_not_a_reason_to_validate_again(
    tmp_path: Path, cache: Path, validations: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A GeoIP database's warnings depend on the file (absent, not an MMDB file): the entry records the
    file's identity (or its absence) and is read back only while the file is in that state; it appears,
    is rewritten, replaced or removed: validated again, with the warnings of the new state."""
    db = tmp_path / "asn.mmdb"
    path = _write(tmp_path, f"enrichment:\n  geoip:\n    asn_database: {db}\n")
    # a file changed less than this long ago is not recorded (test_a_file_changed_just_now_...); each
    # change below is followed by a wait past it, so that the state is cached
    monkeypatch.setattr(validated_cache, "RACY_NS", 100_000_000)

    def warned() -> list[str]:
        return [w for w in load_config(path, log_warnings=False).warnings if "asn_database" in w]

    assert any("is not a file" in w for w in warned())
    assert any("is not a file" in w for w in warned())
    assert len(validations) == 1 and len(entries(cache)) == 1  # cached while the file is absent
    db.write_bytes(b"x" * 64)  # appears, not an MMDB file
    time.sleep(0.15)
    assert any("not a MaxMind DB" in w for w in warned())
    assert warned() and len(validations) == 2
    db.write_bytes(b"y" * 49 + MMDB_END + b"\0")  # rewritten in place, same size: an MMDB file now
    time.sleep(0.15)
    assert warned() == [] and warned() == [] and len(validations) == 3
    other = tmp_path / "other.mmdb"
    other.write_bytes(b"z" * 64)
    os.replace(other, db)  # another file under the name
    time.sleep(0.15)
    assert any("not a MaxMind DB" in w for w in warned()) and len(validations) == 4
    db.unlink()
    assert any("is not a file" in w for w in warned()) and len(validations) == 5
    assert any("is not a file" in w for w in warned()) and len(validations) == 5

    # a relative path is looked at where the command runs, as validation looks at it
    rel = _write(tmp_path, "enrichment:\n  geoip:\n    country_database: geo/c.mmdb\n", "rel.yaml")
    here, there = tmp_path / "here", tmp_path / "there"
    for d in (here, there):
        (d / "geo").mkdir(parents=True)
    (there / "geo" / "c.mmdb").write_bytes(b"w" * 48 + MMDB_END + b"\0")
    time.sleep(0.15)
    monkeypatch.chdir(here)
    assert any("is not a file" in w for w in load_config(rel, log_warnings=False).warnings)
    monkeypatch.chdir(there)
    assert not load_config(rel, log_warnings=False).warnings
    n = len(validations)
    monkeypatch.chdir(here)
    assert any("is not a file" in w for w in load_config(rel, log_warnings=False).warnings)
    assert len(validations) == n + 1


def test_a_file_changed_just_now_is_not_recorded(
    tmp_path: Path, cache: Path, validations: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file changed within the last :data:`~netspectra.config.validated_cache.RACY_NS` may change again
    within the same tick of the file system's clock, in place with the same size, after validation read
    it: its identity would not change, and the entry would give the old warnings while the file is
    another. Such a configuration is validated again until the file is older (as git treats an index
    entry as racily clean)."""
    assert validated_cache.RACY_NS >= 2_000_000_000  # file systems that stamp whole seconds, or two (FAT)
    monkeypatch.setattr(validated_cache, "RACY_NS", 300_000_000)  # shorter, for the test's sake
    db = tmp_path / "asn.mmdb"
    db.write_bytes(b"x" * 64)
    path = _write(tmp_path, f"enrichment:\n  geoip:\n    asn_database: {db}\n")
    assert any("not a MaxMind DB" in w for w in load_config(path, log_warnings=False).warnings)
    assert entries(cache) == []
    time.sleep(0.35)
    load_config(path, log_warnings=False)
    load_config(path, log_warnings=False)
    assert len(validations) == 2 and len(entries(cache)) == 1


def test_a_file_that_changes_while_validation_runs_is_not_recorded_in_its_new_state(
    tmp_path: Path, cache: Path, validations: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The entry records the state a watched file had when validation looked at it, not a later one: a
    GeoIP database that appears (an updater's rename) after the warnings were made and before the entry
    is written makes the next start validate again, instead of warning "is not a file" at every start
    while the file is there."""
    db = tmp_path / "asn.mmdb"
    path = _write(tmp_path, f"enrichment:\n  geoip:\n    asn_database: {db}\n")
    counted = loader._validate

    def then_the_file_appears(text: str, source: str, rules: str | None) -> Any:
        out = counted(text, source, rules)
        db.write_bytes(b"v" * 49 + MMDB_END + b"\0")
        return out

    monkeypatch.setattr(loader, "_validate", then_the_file_appears)
    assert any("is not a file" in w for w in load_config(path, log_warnings=False).warnings)
    monkeypatch.setattr(loader, "_validate", counted)
    assert load_config(path, log_warnings=False).warnings == ()
    assert len(validations) == 2


def test_a_path_seen_in_two_states_by_one_validation_is_not_cached(
    tmp_path: Path, cache: Path, validations: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both databases at one path, the file appearing between the two looks: the two warnings disagree
    about the file, so the configuration is not cached (validated again next time)."""
    db = tmp_path / "geo.mmdb"
    path = _write(tmp_path, f"enrichment:\n  geoip:\n    asn_database: {db}\n    country_database: {db}\n")
    real = os.path.isfile
    looks: list[str] = []

    def isfile(p: Any) -> bool:
        seen = real(p)
        if str(p) == str(db) and not looks:
            db.write_bytes(b"u" * 64)  # appears right after the first look
        looks.append(str(p))
        return seen

    from netspectra.config import enrichment

    monkeypatch.setattr(enrichment.os.path, "isfile", isfile)
    warned = load_config(path, log_warnings=False).warnings
    monkeypatch.setattr(enrichment.os.path, "isfile", real)
    assert any("asn_database" in w and "is not a file" in w for w in warned)
    assert any("country_database" in w and "not a MaxMind DB" in w for w in warned)
    assert entries(cache) == []
    again = load_config(path, log_warnings=False).warnings
    assert all("not a MaxMind DB" in w for w in again) and len(again) == 2
    assert len(validations) == 2


def test_validation_looking_elsewhere_is_never_cached(
    tmp_path: Path, cache: Path, validations: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A validator that says its result depends on something other than a named file (a ClickHouse CA file
    under ``~``, read by its expanded path) keeps the configuration out of the cache."""
    real = loader._validate

    def reads_elsewhere(text: str, source: str, rules: str | None) -> Any:
        base.note_outside_read()
        return real(text, source, rules)

    monkeypatch.setattr(loader, "_validate", reads_elsewhere)
    path = _write(tmp_path, "aggregator:\n  num_workers: 3\n")
    assert load_config(path).aggregator.num_workers == load_config(path).aggregator.num_workers == 3
    assert entries(cache) == []
    before = base.outside_reads()
    base.note_outside_read()
    assert base.outside_reads() == before + 1


def test_kinds_beyond_the_builtins_turn_the_cache_off(
    tmp_path: Path, cache: Path, validations: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A plugin kind (or one defined in-process) can validate anything with code that is not
    NetSpectra's: while one is known, nothing is cached."""
    from netspectra.kinds import WRITERS

    path = _write(tmp_path, "aggregator:\n  num_workers: 9\n")
    monkeypatch.setattr(WRITERS, "_local", lambda: {"my_writer": object()})
    load_config(path)
    load_config(path)
    assert len(validations) == 2 and entries(cache) == []


def test_the_key_follows_memory_and_versions(
    tmp_path: Path, cache: Path, validations: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without ``aggregator.max_memory`` the tasks are checked against half of the machine's memory: a
    configuration valid on one machine may not be on another with the same cache directory."""
    path = _write(tmp_path, "aggregator:\n  num_workers: 10\n")
    load_config(path)
    monkeypatch.setattr(base, "physical_memory_bytes", lambda: 1 << 30)
    load_config(path)
    load_config(path)
    assert len(validations) == 2 and len(entries(cache)) == 2
    key = validated_cache._key("x", "rules")
    # another NetSpectra (installation or checkout) sharing the cache directory: its own keys
    with monkeypatch.context() as m:
        m.setattr(validated_cache, "_package", lambda: ("/elsewhere/netspectra", "0.0.1"))
        assert validated_cache._key("x", "rules") != key
    assert validated_cache._key("x", "rules") == key
    import pydantic

    monkeypatch.setattr(pydantic, "VERSION", "0.0.0")
    assert validated_cache._key("x", "rules") != key
    assert validated_cache._key("x", "other rules") != validated_cache._key("x", "rules")


def test_parse_config_text_uses_it_too(cache: Path, validations: list[str]) -> None:
    text = "aggregator:\n  num_workers: 11\n"
    assert parse_config_text(text).aggregator.num_workers == 11
    assert parse_config_text(text, source="<other>").source == "<other>"
    assert validations == ["<string>"]


def test_second_command_line_process_validates_nothing(tmp_path: Path) -> None:
    """Two ``netspectra config check`` processes print the same, the second from the cache (no pydantic
    validator built for the configuration's root model)."""
    env = {**os.environ, parsed_cache.ENV: str(tmp_path / "cache")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")])
    code = (
        "import sys\nfrom netspectra import process\nprocess.OWN_PROCESS = True\n"
        "from netspectra.config import load_config\nfrom netspectra.config.models import Config\n"
        f"cfg = load_config({str(SHIPPED)!r})\n"
        "print(type(Config.__pydantic_validator__).__name__, len(cfg.task_names()))\n"
    )
    runs = [
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
        for _ in range(2)
    ]
    first, second = (r.stdout.split() for r in runs)
    assert first[0] == "SchemaValidator" and second[0] == "MockValSer"
    assert first[1] == second[1] != "0"
    cli = [
        subprocess.run(
            [sys.executable, "-m", "netspectra", "config", "check", "--config", str(SHIPPED)],
            capture_output=True,
            text=True,
            env=env,
        )
        for _ in range(2)
    ]
    assert cli[0].returncode == cli[1].returncode == 0
    assert cli[0].stdout == cli[1].stdout and cli[0].stdout


def test_nothing_cached_when_a_source_file_cannot_be_looked_at(
    tmp_path: Path, cache: Path, validations: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A NetSpectra module whose file cannot be stat'ed (a package inside an archive) could change unseen:
    nothing is cached then."""
    module = types.ModuleType("netspectra._test_zipped_module")
    module.__file__ = str(tmp_path / "archive.zip" / "netspectra" / "_test_zipped_module.py")
    monkeypatch.setitem(sys.modules, module.__name__, module)
    path = _write(tmp_path, "aggregator:\n  num_workers: 12\n")
    load_config(path)
    load_config(path)
    assert len(validations) == 2 and entries(cache) == []
