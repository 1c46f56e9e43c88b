"""Aggregator types: the name in ``aggregator.types`` -> the factory that builds its :class:`TaskGroup`.

Built-in types are ``exact`` and ``sketch``. Third-party packages add types through the
``netspectra.aggregators`` entry-point group; the entry point's name is the type name and its object
is a factory ``(Config) -> TaskGroup``::

    # the plugin's pyproject.toml
    [project.entry-points."netspectra.aggregators"]
    flowlets = "netspectra_flowlets:build_group"

Nothing registers itself by being imported: the built-ins are listed here, plugins are found in the
installed distributions' metadata each time a registry function is called (a start-up cost of
milliseconds, and a plugin installed into a running interpreter is seen).

Every problem is a :class:`~netspectra.config.ConfigError` whose lines name the configuration key
(``aggregator.types[1]: ...``), raised when the engine is built, never later at run time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from importlib.metadata import EntryPoint, entry_points

from netspectra.config import ConfigError
from netspectra.config.models import Config
from netspectra.engine.groups import TaskGroup, build_exact_group, build_sketch_group

log = logging.getLogger(__name__)

#: The entry-point group third-party aggregator types register in.
ENTRY_POINT_GROUP = "netspectra.aggregators"

AggregatorFactory = Callable[[Config], TaskGroup]

#: The aggregator types NetSpectra ships.
BUILTIN_AGGREGATORS: dict[str, AggregatorFactory] = {
    "exact": build_exact_group,
    "sketch": build_sketch_group,
}


def _plugin_entry_points() -> dict[str, list[EntryPoint]]:
    found: dict[str, list[EntryPoint]] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        found.setdefault(ep.name, [])
        # the same distribution can be visible twice on sys.path (e.g. an editable and a site copy)
        if all(ep.value != other.value for other in found[ep.name]):
            found[ep.name].append(ep)
    return found


def _origin(ep: EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    where = f" from {dist.name} {dist.version}" if dist is not None else ""
    return f"{ep.value}{where}"


def available_aggregators() -> dict[str, str]:
    """Every known aggregator type -> where it comes from (``built-in`` or the plugin's entry point)."""
    out = {name: "built-in" for name in BUILTIN_AGGREGATORS}
    for name, eps in sorted(_plugin_entry_points().items()):
        if name not in out:
            out[name] = ", ".join(_origin(ep) for ep in eps)
    return out


def aggregator_factory(name: str, *, key: str = "aggregator.types") -> AggregatorFactory:
    """The factory of aggregator type ``name``; :class:`ConfigError` naming ``key`` if there is none.

    A plugin may not take a built-in name, and two plugins may not take the same name: both are
    errors (rather than one silently winning, which would change what a configuration means
    depending on what else is installed).
    """
    plugins = _plugin_entry_points()
    eps = plugins.get(name, [])
    if name in BUILTIN_AGGREGATORS:
        if eps:
            raise ConfigError(
                [
                    f"{key}: {name!r} is a built-in aggregator type but the plugin(s) "
                    f"{'; '.join(_origin(ep) for ep in eps)} also register it in the {ENTRY_POINT_GROUP!r} "
                    "entry-point group; uninstall or rename the plugin"
                ]
            )
        return BUILTIN_AGGREGATORS[name]
    if not eps:
        known = ", ".join(available_aggregators())
        raise ConfigError(
            [
                f"{key}: {name!r} is not an aggregator type; known types are {known} (plugins add types "
                f"through the {ENTRY_POINT_GROUP!r} entry-point group)"
            ]
        )
    if len(eps) > 1:
        raise ConfigError(
            [
                f"{key}: aggregator type {name!r} is registered by several plugins "
                f"({'; '.join(_origin(ep) for ep in eps)}); uninstall all but one"
            ]
        )
    try:
        factory = eps[0].load()
    except Exception as exc:  # an import error in a plugin is a start-up error, reported with its key
        raise ConfigError(
            [f"{key}: the plugin for aggregator type {name!r} ({_origin(eps[0])}) failed to load: {exc!r}"]
        ) from exc
    if not callable(factory):
        raise ConfigError(
            [
                f"{key}: the plugin for {name!r} ({_origin(eps[0])}) is not callable; "
                "it must be a factory (Config) -> TaskGroup"
            ]
        )
    return factory


def build_groups(cfg: Config, types: Sequence[str] | None = None) -> list[TaskGroup]:
    """One :class:`TaskGroup` per aggregator type, in the order of ``types`` (default
    ``cfg.aggregator.types``).

    Every error of every type is collected and raised as one :class:`ConfigError`, each line naming
    its key: unknown types (``aggregator.types[i]``), bad tasks (``aggregator.<type>.tasks[i]``),
    writers without implementation (``aggregator.<type>.writers[i].type``), a factory that does not
    return a :class:`TaskGroup` of its type, and task names used by two groups.
    """
    names = list(cfg.aggregator.types if types is None else types)
    errors: list[str] = []
    groups: list[TaskGroup] = []
    for i, name in enumerate(names):
        key = f"aggregator.types[{i}]"
        try:
            group = aggregator_factory(name, key=key)(cfg)
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
