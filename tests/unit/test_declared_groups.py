"""The entry-point groups remembered between the command line's starts (netspectra.declared_groups): a
group no installed distribution declares is answered without reading the metadata; a distribution
installed, removed or rewritten is seen at the next start; a declared group is read as before."""

from __future__ import annotations

import importlib.metadata
import sys
from pathlib import Path

import pytest

import netspectra.kinds as kinds
from netspectra import declared_groups, process


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """A command-line process with its own cache directory and a plugin directory on ``sys.path``; counts
    the reads of the installed distributions' metadata."""
    monkeypatch.setenv(declared_groups.ENV, str(tmp_path / "cache"))
    monkeypatch.setattr(process, "OWN_PROCESS", True)
    plugins = tmp_path / "site"
    plugins.mkdir()
    monkeypatch.syspath_prepend(str(plugins))
    reads: list[int] = []
    real = importlib.metadata.distributions

    def counted():  # type: ignore[no-untyped-def]
        reads.append(1)
        return real()

    # kinds imports it where it scans (importlib.metadata costs a start ~10 ms when nothing scans)
    monkeypatch.setattr(importlib.metadata, "distributions", counted)
    new_start(monkeypatch)
    return reads


def new_start(monkeypatch: pytest.MonkeyPatch) -> None:
    """What a new process starts with: nothing scanned, nothing remembered yet."""
    monkeypatch.setattr(kinds, "_SCANNED", None)
    monkeypatch.setattr(declared_groups, "_FOUND", [])


def _install(site: Path, name: str, entry_points: str) -> Path:
    info = site / f"{name}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(entry_points)
    return info


def test_an_undeclared_group_is_answered_without_reading_metadata(
    tmp_path: Path, cli: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert kinds._entry_points("netspectra.aggregators") == []
    assert len(cli) == 1 and len(list((tmp_path / "cache").glob("entry-points-*.json"))) == 1
    new_start(monkeypatch)
    assert kinds._entry_points("netspectra.aggregators") == []
    assert kinds._entry_points("pydantic") == []
    assert "exact" in kinds.AGGREGATORS.names()
    assert len(cli) == 1  # the second start read no metadata
    # a group some distribution declares is read from the metadata, with its distributions
    if "console_scripts" in (declared_groups.remembered(tuple(sys.path)) or ()):
        assert kinds._entry_points("console_scripts") and len(cli) == 2


def test_a_distribution_installed_removed_or_rewritten_is_seen_at_the_next_start(
    tmp_path: Path, cli: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    site = tmp_path / "site"
    assert kinds._entry_points("netspectra.writers") == []
    (site / "ns_dg_writer.py").write_text("KIND = None\n")
    info = _install(site, "ns_dg_probe", "[console_scripts]\nx = ns_dg_writer:KIND\n")
    new_start(monkeypatch)
    assert kinds._entry_points("netspectra.writers") == []  # read again: a new distribution
    assert len(cli) == 2
    new_start(monkeypatch)
    assert kinds._entry_points("netspectra.writers") == [] and len(cli) == 2  # remembered again
    # the same distribution's entry points rewritten in place (an editable install's metadata)
    (info / "entry_points.txt").write_text("[netspectra.writers]\nmine = ns_dg_writer:KIND\n")
    new_start(monkeypatch)
    (ep,) = kinds._entry_points("netspectra.writers")
    assert ep.name == "mine" and ep.value == "ns_dg_writer:KIND" and len(cli) == 3
    assert "mine" in kinds.WRITERS.names()
    new_start(monkeypatch)
    assert [e.name for e in kinds._entry_points("netspectra.writers")] == ["mine"]  # declared: read
    assert len(cli) == 4
    for p in info.iterdir():  # removed
        p.unlink()
    info.rmdir()
    new_start(monkeypatch)
    assert kinds._entry_points("netspectra.writers") == [] and len(cli) == 5


def test_entry_points_rewritten_with_the_same_size_and_time_are_seen(
    tmp_path: Path, cli: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """entry_points.txt rewritten in place with its size and modification time put back (cp -p, two
    writes within one tick of a coarse clock) hid the plugin group it now declares."""
    import os

    site = tmp_path / "site"
    info = _install(site, "ns_dg_same", "[console_scripts]\nabcdef = ns_dg_same:KIND\n")
    assert kinds._entry_points("netspectra.sketches") == [] and len(cli) == 1
    eps = info / "entry_points.txt"
    before = eps.stat()
    eps.write_text("[netspectra.sketches]\nab = ns_dg_same:KIND\n")  # the same number of bytes
    os.utime(eps, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert eps.stat().st_size == before.st_size and eps.stat().st_mtime_ns == before.st_mtime_ns
    new_start(monkeypatch)
    assert [e.name for e in kinds._entry_points("netspectra.sketches")] == ["ab"] and len(cli) == 2


def test_damaged_entries_are_ignored_and_rewritten(
    tmp_path: Path, cli: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    kinds._entry_points("netspectra.sketches")
    (entry,) = (tmp_path / "cache").glob("entry-points-*.json")
    good = entry.read_text()
    stale = '{"format": 1, "fingerprint": "x", "groups": []}'
    for damaged in ("", "{", "[]", stale, good.replace("[", "[1, ")):
        entry.write_text(damaged)
        new_start(monkeypatch)
        before = len(cli)
        assert kinds._entry_points("netspectra.sketches") == []
        assert len(cli) == before + 1, damaged
        assert entry.read_text() == good  # rewritten
    new_start(monkeypatch)
    kinds._entry_points("netspectra.sketches")
    assert len(cli) == 6


def test_an_entry_another_user_could_have_written_is_ignored(
    tmp_path: Path, cli: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An entry of another user (or writable by others) saying no group is declared hid this user's
    plugins."""
    import os

    kinds._entry_points("netspectra.aggregators")
    (entry,) = (tmp_path / "cache").glob("entry-points-*.json")
    uid = os.geteuid()
    monkeypatch.setattr(os, "geteuid", lambda: uid + 1)
    new_start(monkeypatch)
    assert declared_groups.remembered(tuple(sys.path)) is None
    monkeypatch.setattr(os, "geteuid", lambda: uid)
    entry.chmod(0o646)
    new_start(monkeypatch)
    assert declared_groups.remembered(tuple(sys.path)) is None
    entry.chmod(0o600)
    new_start(monkeypatch)
    assert declared_groups.remembered(tuple(sys.path)) is not None


def test_only_the_command_line_and_not_when_off(
    tmp_path: Path, cli: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(process, "OWN_PROCESS", False)
    for _ in range(2):
        new_start(monkeypatch)
        kinds._entry_points("netspectra.aggregators")
    assert len(cli) == 2 and not (tmp_path / "cache").exists()
    monkeypatch.setattr(process, "OWN_PROCESS", True)
    monkeypatch.setenv(declared_groups.ENV, "off")
    for _ in range(2):
        new_start(monkeypatch)
        kinds._entry_points("netspectra.aggregators")
    assert len(cli) == 4 and not (tmp_path / "cache").exists()


def test_discovery_it_does_not_cover_is_never_remembered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive = tmp_path / "plugins.zip"
    archive.write_bytes(b"PK\x05\x06" + b"\x00" * 18)
    assert declared_groups.fingerprint([str(tmp_path)]) is not None
    assert declared_groups.fingerprint([str(tmp_path), str(archive)]) is None
    egg = tmp_path / "x.egg"
    egg.mkdir()
    assert declared_groups.fingerprint([str(egg)]) is None

    class Finder:
        @staticmethod
        def find_distributions(context=None):  # type: ignore[no-untyped-def]
            return iter(())

    monkeypatch.setattr(sys, "meta_path", [*sys.meta_path, Finder])
    assert declared_groups.fingerprint([str(tmp_path)]) is None


def test_other_files_in_a_path_directory_do_not_make_a_new_read(
    tmp_path: Path, cli: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``python -m netspectra`` puts the current directory on ``sys.path``: files made there (a busy
    ``/tmp``) are not distributions, and the remembered answer stays good; a distribution made there is
    seen."""
    site = tmp_path / "site"
    assert kinds._entry_points("netspectra.aggregators") == [] and len(cli) == 1
    (site / "capture.pcap").write_bytes(b"\0" * 24)
    (site / "out").mkdir()
    new_start(monkeypatch)
    assert kinds._entry_points("netspectra.aggregators") == [] and len(cli) == 1
    (site / "ns_dg_agg.py").write_text("KIND = None\n")
    _install(site, "ns_dg_agg", "[netspectra.aggregators]\nmine = ns_dg_agg:KIND\n")
    new_start(monkeypatch)
    assert [e.name for e in kinds._entry_points("netspectra.aggregators")] == ["mine"] and len(cli) == 2
