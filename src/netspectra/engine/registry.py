"""The groups of a configuration: one :class:`TaskGroup` per aggregator type in ``aggregator.types``.

The types themselves are the aggregator kinds of :data:`netspectra.kinds.AGGREGATORS` (``exact``,
``sketch``; plugins through the ``netspectra.aggregators`` entry-point group, whose object is an
:class:`~netspectra.engine.kind.AggregatorKind` or a factory ``(Config) -> TaskGroup``)::

    # the plugin's pyproject.toml
    [project.entry-points."netspectra.aggregators"]
    flowlets = "netspectra_flowlets:KIND"

Every problem is a :class:`~netspectra.config.ConfigError` whose lines name the configuration key
(``aggregator.types[1]: ...``), raised when the engine is built, never later at run time.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from netspectra.config import ConfigError
from netspectra.config.models import Config
from netspectra.engine.groups import TaskGroup
from netspectra.engine.kind import AggregatorKind
from netspectra.kinds import AGGREGATORS, KindError

log = logging.getLogger(__name__)

#: The entry-point group third-party aggregator types register in.
ENTRY_POINT_GROUP = AGGREGATORS.group


def available_aggregators() -> dict[str, str]:
    """Every known aggregator type -> where it comes from (``built-in`` or the plugin's entry point)."""
    return AGGREGATORS.available()


def aggregator_factory(name: str, *, key: str = "aggregator.types") -> AggregatorKind:
    """The aggregator kind ``name``; :class:`ConfigError` naming ``key`` if there is none, if a plugin
    takes a built-in's name, if several plugins take it, or if the plugin fails to load."""
    try:
        return AGGREGATORS.get(name)
    except KindError as exc:
        raise ConfigError([f"{key}: {exc}"]) from None


def build_groups(cfg: Config, types: Sequence[str] | None = None, *, writers: bool = True) -> list[TaskGroup]:
    """One :class:`TaskGroup` per aggregator type, in the order of ``types`` (default
    ``cfg.aggregator.types``).

    Every error of every type is collected and raised as one :class:`ConfigError`, each line naming
    its key: unknown types (``aggregator.types[i]``), bad tasks (``aggregator.<type>.tasks[i]``),
    writers without implementation (``aggregator.<type>.writers[i].type``), a factory that does not
    return a :class:`TaskGroup` of its type, and task names used by two groups. ``writers=False``:
    the groups have no writers (none is created).
    """
    names = list(cfg.aggregator.types if types is None else types)
    errors: list[str] = []
    groups: list[TaskGroup] = []
    for i, name in enumerate(names):
        key = f"aggregator.types[{i}]"
        try:
            kind = AGGREGATORS.get(name)
        except KindError as exc:
            errors.append(f"{key}: {exc}")
            continue
        try:
            group = kind.build_group(cfg, writers=writers)
        except ConfigError as exc:
            errors.extend(exc.errors)
            continue
        except Exception as exc:  # a plugin's factory failing: report it as its type's problem
            errors.append(f"aggregator.{name}: building the {name!r} task group failed: {exc!r}")
            continue
        if not isinstance(group, TaskGroup):
            errors.append(f"{key}: the factory of {name!r} returned {type(group).__name__}, not a TaskGroup")
            continue
        if group.name != name:
            errors.append(f"{key}: the factory of {name!r} returned a group named {group.name!r}")
            continue
        groups.append(group)
    owner: dict[str, str] = {}
    for group in groups:
        for task in group.tasks:
            if task.name in owner and owner[task.name] != group.name:
                errors.append(
                    f"aggregator.{group.name}.tasks: task name {task.name!r} is also a task of "
                    f"{owner[task.name]!r}; task names must be unique across groups"
                )
            owner.setdefault(task.name, group.name)
    if errors:
        raise ConfigError(errors, path=cfg.source)
    for group in groups:
        log.info(
            "aggregator %s: tasks %s, writers %s",
            group.name,
            ", ".join(group.task_names) or "(none)",
            ", ".join(w.name for w in group.writers) or "(none)",
        )
    return groups
