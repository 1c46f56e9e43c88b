"""A typer command group that builds a subcommand only when it is used (start-up time, issue 19).

Typer turns every registered function into a click command when the application starts: it imports the
function's module, evaluates its annotations and builds a parameter object per option — tens of
milliseconds for NetSpectra's two dozen commands, paid by ``netspectra --help`` and by every command
although each run uses one. :class:`LazyTyperGroup` knows its subcommands as ``"module:attribute"``
references (a command function or a ``typer.Typer`` sub-application) and builds one, with typer's own
machinery, the first time it is looked up. The group's help lists every subcommand from a *summary*
(name and help text read from the function's docstring or the sub-application's settings, no
parameters built); ``netspectra CMD ...`` and ``netspectra CMD --help`` get the fully built command.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Iterator, Mapping, MutableMapping
from typing import Any, ClassVar

import typer
from typer.core import TyperCommand, TyperGroup
from typer.main import get_group, solve_typer_info_defaults

from netspectra.cli.common import tidy_help


def _resolve(reference: str) -> Any:
    """The object named by ``"package.module:attribute"``."""
    module, _, attribute = reference.partition(":")
    return getattr(importlib.import_module(module), attribute)


def _take_as_given(params: list[Any]) -> None:
    """Options whose value click already gives in its final type — ``str`` text, an ``int`` counter, a
    ``bool`` flag not read from the environment (the group's ``--help`` too, unset when a subcommand is
    asked for help) — are taken as given instead of through a pydantic ``TypeAdapter``, which typer builds
    for every option it converts and which imports pydantic (~50 ms) before ``netspectra CMD --help`` can
    print anything. (Typer's own pass-through conversion: the value is returned when it has the annotated
    type, else the same "not a valid" error. A typer without it keeps its own conversion.)"""
    try:
        from typer._coercion import PassThroughRuntimeParam
    except ImportError:  # pragma: no cover - another typer
        return
    for param in params:
        desc = getattr(param, "type_descriptor", None)
        if desc is None or getattr(param, "_runtime_param", 0) is not None:
            continue
        info = desc.parameter_info
        plain = getattr(info, "parser", None) is None and getattr(info, "click_type", None) is None
        flag = (
            desc.annotation is bool
            and getattr(param, "is_flag", False)
            and not getattr(param, "envvar", None)
        )
        given = desc.annotation is str or flag or (desc.annotation is int and getattr(param, "count", False))
        if plain and given:
            param._runtime_param = PassThroughRuntimeParam(parameter_info=info, annotation=desc.annotation)


#: A value :func:`_quick` cannot convert with certainty: typer's own conversion decides.
_UNSURE = object()


def _quick(desc: Any, value: Any, param: Any, ctx: Any) -> Any:
    """``value`` converted as typer's pydantic ``TypeAdapter`` would, where that is certain without one: a
    ``Path`` (typer's own checks: exists, file or directory, readable, ...), a whole number written with
    at most 18 digits alone within the option's ``min``/``max``, a list of either, a ``bool`` that is one;
    else :data:`_UNSURE`."""
    from pathlib import Path

    info = desc.parameter_info
    annotation = desc.annotation
    if isinstance(value, list | tuple) and getattr(annotation, "__origin__", None) is list:
        (item,) = annotation.__args__
        out = [_quick(_Item(item, info), v, param, ctx) for v in value]
        return _UNSURE if any(v is _UNSURE for v in out) else out
    if annotation is int and not info.clamp:
        # at most 18 digits: int() refuses a number of more than 4,300 (sys.get_int_max_str_digits), where
        # typer answers "exceeded maximum size"; a number that long is never certain here
        digits = isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 18
        if digits and (value == "0" or value[0] != "0"):  # (a sign, spaces, "_", leading zeros: typer's)
            value = int(value)
        if type(value) is not int:
            return _UNSURE
        if (info.min is not None and value < info.min) or (info.max is not None and value > info.max):
            return _UNSURE  # typer's message for a value out of range
        return value
    if annotation is bool:
        return value if type(value) is bool else _UNSURE
    if annotation is Path and info.path_type is None and isinstance(value, str | Path) and str(value):
        from typer._param_types import coerce_cli_path

        return coerce_cli_path(Path(value), info, path_type=Path, param=param, ctx=ctx)
    return _UNSURE


class _Item:
    """The type descriptor of a list's items (for :func:`_quick`)."""

    def __init__(self, annotation: Any, parameter_info: Any) -> None:
        self.annotation = annotation
        self.parameter_info = parameter_info


class _QuickRuntimeParam:
    """typer's conversion of one parameter without building pydantic ``TypeAdapter`` objects for the values
    :func:`_quick` converts with certainty (a command's paths and whole numbers: ~5 ms of every command's
    start-up, the first adapter importing much of pydantic's schema machinery); any other value goes
    through typer's own conversion, built when first needed, so that errors read as typer writes them."""

    def __init__(self, desc: Any) -> None:
        self.desc = desc
        self.parameter_info = desc.parameter_info
        self.annotation = desc.annotation
        self._typer: Any = None

    def coerce(self, value: Any, param: Any, ctx: Any) -> Any:
        multi = param.multiple or param.nargs == -1
        if value is None:  # as typer's RuntimeParam.coerce
            return () if multi else None
        if not (multi and isinstance(value, str)):
            quick = _quick(self.desc, value, param, ctx)
            if quick is not _UNSURE:
                return quick
        if self._typer is None:
            from typer._coercion import build_runtime_param

            self._typer = build_runtime_param(self.desc)
        return self._typer.coerce(value, param=param, ctx=ctx)


def _convert_quickly(command: Any) -> None:
    """Give the parameters of ``command`` (and of its subcommands, for a group) :class:`_QuickRuntimeParam`
    where typer would build an adapter: paths, whole numbers and lists of them, flags, without a parser, a
    click type or a file annotation of their own."""
    from pathlib import Path

    try:
        from typer._param_types import coerce_cli_path  # noqa: F401 - the typer this was written for
    except ImportError:  # pragma: no cover - another typer
        return
    for param in getattr(command, "params", ()):
        desc = getattr(param, "type_descriptor", None)
        if desc is None or getattr(param, "_runtime_param", 0) is not None:
            continue
        if desc.file_annotation is not None:
            continue
        info = desc.parameter_info
        if getattr(info, "parser", None) is not None or getattr(info, "click_type", None) is not None:
            continue
        annotation = desc.annotation
        items = annotation.__args__ if getattr(annotation, "__origin__", None) is list else (annotation,)
        if (len(items) == 1 and items[0] in (int, Path)) or annotation is bool:
            param._runtime_param = _QuickRuntimeParam(desc)
    if not isinstance(command, LazyTyperGroup):  # (which does this itself)
        original = command.get_help_option

        def get_help_option(ctx: Any) -> Any:
            option = original(ctx)
            if option is not None:
                _take_as_given([option])
            return option

        command.get_help_option = get_help_option
    for sub in getattr(command, "commands", {}).values():
        _convert_quickly(sub)


class LazyCommands(MutableMapping[str, Any]):
    """The ``commands`` mapping of a :class:`LazyTyperGroup`: every name is a key from the start (listing,
    "did you mean" suggestions); a value is built on first access and kept."""

    def __init__(self, group: LazyTyperGroup, built: Mapping[str, Any]) -> None:
        self._group = group
        self._built: dict[str, Any] = dict(built)

    def __getitem__(self, name: str) -> Any:
        if name not in self._built:
            if name not in self._group.sources:
                raise KeyError(name)
            self._built[name] = self._group.build(name)
        return self._built[name]

    def __setitem__(self, name: str, command: Any) -> None:
        self._built[name] = command

    def __delitem__(self, name: str) -> None:
        del self._built[name]

    def __iter__(self) -> Iterator[str]:
        yield from self._group.sources
        yield from (name for name in self._built if name not in self._group.sources)

    def __len__(self) -> int:
        return len(set(self._group.sources) | set(self._built))

    def built(self) -> list[Any]:
        """The subcommands built so far (nothing is built by asking)."""
        return list(self._built.values())

    def is_built(self, name: str) -> bool:
        return name in self._built


class LazyTyperGroup(TyperGroup):
    """A :class:`typer.core.TyperGroup` whose subcommands are built on first use.

    Subclasses set :attr:`sources`, ``name -> "module:attribute"`` in the order ``--help`` lists them,
    where the attribute is a command function or a ``typer.Typer`` sub-application; pass the subclass as
    ``typer.Typer(cls=...)``. A built subcommand is the one typer would build for ``app.command(name)``
    (``app.add_typer(sub, name=name)``) under this group's markup mode, with
    :func:`~netspectra.cli.common.tidy_help` applied; so is the group itself."""

    sources: ClassVar[Mapping[str, str]] = {}

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        self.commands = LazyCommands(self, self.commands)
        self._summarising = 0
        tidy_help(self)
        _take_as_given(self.params)

    def _holder(self, name: str) -> typer.Typer:
        """A throwaway typer application holding subcommand ``name`` alone, registered as the group's
        own application would register it (``app.command(name)``, or ``app.add_typer(sub, name=name)``);
        nothing is built yet."""
        target = _resolve(self.sources[name])
        holder = typer.Typer(
            rich_markup_mode=self.rich_markup_mode,
            suggest_commands=self.suggest_commands,
            add_completion=False,
        )
        if isinstance(target, typer.Typer):
            holder.add_typer(target, name=name)
        else:
            holder.command(name)(target)
        return holder

    def build(self, name: str) -> Any:
        """Build subcommand ``name`` as typer would have at start-up."""
        command = tidy_help(get_group(self._holder(name)).commands[name])
        _convert_quickly(command)
        return command

    def summary(self, name: str) -> TyperCommand:
        """Subcommand ``name`` as the group's help lists it — name, help, hidden, deprecated, panel — with
        no parameters built (typer's own rules for the help text: the docstring of a command function;
        for a sub-application its settings, then its callback's docstring)."""
        holder = self._holder(name)
        if holder.registered_groups:
            info: Any = solve_typer_info_defaults(holder.registered_groups[0])
            help_text = info.help
        else:
            info = holder.registered_commands[0]
            help_text = inspect.getdoc(info.callback) if info.help is None else inspect.cleandoc(info.help)
        command = TyperCommand(
            name=name,
            help=help_text,
            short_help=info.short_help,
            hidden=info.hidden,
            deprecated=info.deprecated,
            rich_help_panel=info.rich_help_panel,
            rich_markup_mode=self.rich_markup_mode,
        )
        return tidy_help(command)

    def get_help_option(self, ctx: Any) -> Any:
        option = super().get_help_option(ctx)
        if option is not None:
            _take_as_given([option])
        return option

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        commands: LazyCommands = self.commands  # type: ignore[assignment]
        if self._summarising and cmd_name in self.sources and not commands.is_built(cmd_name):
            return self.summary(cmd_name)
        return self.commands.get(cmd_name)

    def list_commands(self, ctx: Any) -> list[str]:
        return list(self.commands)

    def format_help(self, ctx: Any, formatter: Any) -> None:
        # listing the subcommands needs their help texts only
        self._summarising += 1
        try:
            super().format_help(ctx, formatter)
        finally:
            self._summarising -= 1
