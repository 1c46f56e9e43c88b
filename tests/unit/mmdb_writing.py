"""Writing MMDB test databases with the maintained writer (``mmdb-writer``, the ``test`` extra)."""

from __future__ import annotations

from pathlib import Path


def write_mmdb(
    path: Path, entries: list[tuple[str, dict]], *, ip_version: int = 6, db_type: str = "Test"
) -> Path:
    """An MMDB at ``path`` mapping each network of ``entries`` to its record, written by ``mmdb-writer``;
    a later entry overrides an earlier one where they overlap. IPv4 networks of an IPv6 database go to
    the IPv4 tree at ``::/96`` (the writer adds no 6to4/Teredo aliases)."""
    from mmdb_writer import MMDBWriter
    from netaddr import IPSet

    w = MMDBWriter(ip_version=ip_version, database_type=db_type, ipv4_compatible=ip_version == 6)
    for net, record in entries:
        w.insert_network(IPSet([net]), record)
    w.to_db_file(str(path))
    return path
