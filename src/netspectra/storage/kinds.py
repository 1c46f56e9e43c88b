"""Writer kinds: what each kind of writer declares (its parameters, the groups it serves) and builds.

A writer entry of the configuration (``aggregator.<group>.writers[i]``) is ``type``, ``enabled``,
``snapshot_interval`` and the kind's own parameters under the kind's key — ``clickhouse: {...}`` for
``type: clickhouse``, ``parquet: {root_path: ...}`` for ``type: parquet`` (the original's layout, where
every writer entry could carry every kind's block; blocks of other kinds are accepted and ignored, as
the original ignores them). The :class:`WriterKind` says which key, which model validates it, which
aggregator groups the kind can store, and where the implementation lives.

Kinds are registered in :data:`netspectra.kinds.WRITERS`: one line per built-in; plugins through the
``netspectra.writers`` entry points (a :class:`WriterKind`, or — the earlier form — a
:class:`~netspectra.storage.base.Writer` subclass, whose ``params_model`` and ``groups`` class attributes
are read when present), and :class:`~netspectra.storage.base.Writer` subclasses defined in-process with
``kind=...`` are found too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import ConfigDict

from netspectra.config.base import Section
from netspectra.kinds import KindError, load_object
from netspectra.storage.clickhouse_config import ClickHouseConfig

if TYPE_CHECKING:
    from netspectra.storage.base import Writer


class RootPathConfig(Section):
    """``gob`` / ``text`` / ``parquet`` of a writer: where its files go."""

    root_path: str = ""


class OpenParams(Section):
    """Parameters of a plugin writer that declares no model: every key is kept, unchecked."""

    model_config = ConfigDict(frozen=True, extra="allow")


@dataclass(frozen=True)
class WriterKind:
    """One kind of writer (see the module docstring).

    ``impl`` is ``"module:Class"`` of the :class:`~netspectra.storage.base.Writer` subclass, or the class
    itself; it is imported only when a writer is created. ``groups`` are the aggregator kinds whose
    snapshots the kind can store (``exact`` flows, ``sketch`` heavy hitters, ...).
    """

    name: str
    params_model: type[Section]
    groups: tuple[str, ...]
    impl: Any
    params_key: str = ""
    description: str = ""
    aliases_of: str = field(default="")

    @property
    def key(self) -> str:
        """The key of the writer entry that holds this kind's parameters."""
        return self.params_key or self.name

    def writer_class(self) -> type[Writer]:
        """The implementation (imports its module on first use)."""
        return load_object(self.impl) if isinstance(self.impl, str) else self.impl

    def create(self, cfg: Any, group: str) -> Writer:
        """A new, not yet opened writer for the validated entry ``cfg`` of ``aggregator.<group>.writers``."""
        return self.writer_class()(cfg, group)


_FILES = "netspectra.storage.files"

CLICKHOUSE = WriterKind(
    "clickhouse",
    ClickHouseConfig,
    ("exact", "sketch", "flows", "rollup", "exporters"),
    "netspectra.storage.clickhouse:ClickHouseWriter",
    description="ClickHouse tables: embedded chdb (clickhouse.host empty) or a server",
)
PARQUET = WriterKind(
    "parquet",
    RootPathConfig,
    ("exact", "sketch", "flows", "rollup"),
    f"{_FILES}:ParquetWriter",
    description="one Parquet file per task per snapshot under parquet.root_path",
)
GOB = WriterKind(
    "gob",
    RootPathConfig,
    ("exact",),
    f"{_FILES}:ParquetWriter",
    description="the original's Go-only gob files, written as Parquet under gob.root_path",
    aliases_of="parquet",
)
TEXT = WriterKind(
    "text",
    RootPathConfig,
    ("exact", "sketch", "flows"),
    f"{_FILES}:TextWriter",
    description="the original's text files under text.root_path",
)


def as_writer_kind(name: str, obj: Any) -> WriterKind:
    """The registry's check: a :class:`WriterKind` named ``name``, or a
    :class:`~netspectra.storage.base.Writer` subclass (the earlier plugin form) described as one."""
    from netspectra.storage.base import GROUPS, Writer

    if isinstance(obj, WriterKind):
        if obj.name != name:
            raise KindError(f"its kind object is named {obj.name!r}; register it under that name")
        return obj
    if isinstance(obj, type) and issubclass(obj, Writer):
        return WriterKind(
            name,
            getattr(obj, "params_model", None) or OpenParams,
            tuple(getattr(obj, "groups", None) or GROUPS),
            obj,
            description=(obj.__doc__ or "").strip().split("\n")[0],
        )
    raise KindError(f"is a {type(obj).__name__}, neither a WriterKind nor a Writer subclass")
