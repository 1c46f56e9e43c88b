"""Reading ``config.yaml``: ``.env`` -> Go ``os.ExpandEnv`` -> YAML -> validated :class:`Config`.

Order and rules, as the original's ``LoadConfig`` (with stricter, clearer errors):

1. ``.env`` in the current directory, then a ``.env`` next to the configuration file, are loaded into
   the environment **without overriding** variables that are already set (the original reads only
   ``./.env``; a missing file is fine).
2. ``$VAR`` / ``${VAR}`` are expanded over the whole text with Go's rules (unset -> "";
   see :mod:`netspectra.config.env`).
3. The text is parsed as YAML; a syntax error names the file, line and column. (Parsed data are kept
   in a disk cache keyed by the text: :mod:`netspectra.config.parsed_cache`; a text found there is not
   parsed, nor PyYAML imported; in the command line's process a configuration validated before is
   not validated again either: :mod:`netspectra.config.validated_cache`.) Only
   ``true`` / ``false`` are booleans (as in YAML 1.2 and the original's yaml.v3): ``yes``, ``no``,
   ``on``, ``off`` stay strings, so ``password: no`` is the password "no".
4. The result is validated by :class:`~netspectra.config.models.Config`; every problem becomes one
   line of a :class:`ConfigError`, each naming the key path, the bad value and the fix.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import hashlib
import importlib.resources
import logging
import os
import re
import sys
from collections.abc import Iterator
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from netspectra.config import validated_cache
from netspectra.config.env import expand_env, load_env_files
from netspectra.config.models import Config, unknown_key_warnings
from netspectra.config.parsed_cache import parse_yaml

log = logging.getLogger(__name__)

#: Where ``load_config(None)`` looks first, relative to the current directory (as the original does).
LOCAL_CONFIG = Path("configs") / "config.yaml"
#: Keys whose non-empty values :func:`effective_config_dict` masks: every secret of the schema (the
#: fields kept out of ``repr``) — ``nats.token`` and ``alerter.webhooks[].secret`` included.
SECRET_KEYS = frozenset({"password", "api_key", "tokens", "admin_tokens", "token", "secret"})
MASK = "***"
#: The user part of a URL (``nats://user:password@host``): credentials wherever the URL is.
_URL_USERINFO = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://)([^/?#\s@,]*)@")


class ConfigError(Exception):
    """The configuration cannot be used. ``str()`` lists every problem, one per line.

    ``errors`` holds the problems, ``warnings`` what else was noticed (e.g. keys of the original's
    outdated example that explain a missing key), ``path`` the file (``None`` for in-memory data).
    """

    def __init__(
        self, errors: list[str], *, path: str | None = None, warnings: list[str] | None = None
    ) -> None:
        self.errors = list(errors)
        self.warnings = list(warnings or [])
        self.path = path
        head = f"invalid configuration {path}:" if path else "invalid configuration:"
        lines = [head, *(f"  {e}" for e in self.errors), *(f"  warning: {w}" for w in self.warnings)]
        super().__init__("\n".join(lines))


def _packaged_config() -> Traversable:
    return importlib.resources.files("netspectra") / "data" / "config.yaml"


def default_config_path() -> Path:
    """``./configs/config.yaml`` if it exists, else the configuration shipped inside the package."""
    if LOCAL_CONFIG.is_file():
        return LOCAL_CONFIG
    # A wheel installs package data as plain files, so the Traversable is a filesystem path.
    return Path(str(_packaged_config()))


def _format_loc(loc: tuple[str | int, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("groups", "params"):
            pass  # containers the configuration does not write: aggregator.<kind>, a kind's own keys
        elif not part.startswith(("function-", "tagged-union")):  # pydantic's internal validator steps
            out += f".{part}" if out else part
    return out


#: The fix for pydantic's own error types (our validators put the fix into their message).
_FIXES: dict[str, str] = {
    "missing": "add this key",
    "int_parsing": "write a whole number",
    "int_type": "write a whole number",
    "int_from_float": "write a whole number",
    "float_parsing": "write a number, e.g. 1.08",
    "float_type": "write a number, e.g. 1.08",
    "bool_parsing": "write true or false",
    "bool_type": "write true or false",
    "string_type": "write a string",
    "tuple_type": "write a YAML list, e.g. [a, b]",
    "list_type": "write a YAML list, e.g. [a, b]",
    "model_type": "write a mapping (key: value lines) here",
    "model_attributes_type": "write a mapping (key: value lines) here",
    "dict_type": "write a mapping (key: value lines) here",
    "greater_than_equal": "use a larger value",
    "less_than_equal": "use a smaller value",
}


def _format_errors(exc: ValidationError) -> list[str]:
    lines: list[str] = []
    for err in exc.errors(include_url=False):
        path = _format_loc(tuple(err["loc"]))
        kind = err["type"]
        if kind == "value_error":
            # Our validators' messages already hold the value and the fix, and cross-checks their paths.
            msg = str(err["ctx"]["error"]) if "ctx" in err else err["msg"].removeprefix("Value error, ")
            for line in msg.splitlines():
                lines.append(f"{path}: {line}" if path else line)
            continue
        value = "" if kind == "missing" else f" (got {err['input']!r})"
        fix = _FIXES.get(kind)
        lines.append(
            f"{path or '(top level)'}: {err['msg'].rstrip('.')}{value}" + (f"; {fix}" if fix else "")
        )
    return lines


def parse_config_text(text: str, *, source: str = "<string>", expand: bool = True) -> Config:
    """Validate the YAML ``text`` (after Go env expansion if ``expand``); :class:`ConfigError` on failure.

    Does not read any ``.env``; :func:`load_config` does that before calling this.
    """
    # a text in which a variable has a value is never cached: values (passwords, tokens) stay off the disk
    valued: list[str] = []
    if expand:

        def lookup(name: str) -> str | None:
            value = os.environ.get(name, "")
            if value:
                valued.append(name)
            elif name.isdigit():
                # "$1", "${2}": no shell can export a variable so named; unset, it is a regular
                # expression's group reference (a classifier template, as Akvorado writes them), which
                # Go's expansion would turn into "" (the rule then set nothing, silently): kept as written
                return None
            return value

        text = expand_env(text, lookup)
    with _gc_paused():
        return _parse(text, source, cache=not valued)


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """The cyclic garbage collector off while a configuration is parsed and validated: that builds many
    objects and no garbage cycles, and each full collection it triggers walks them all (a map of 2,000
    networks: ~0.05 s of collections). Process-wide, as the collector is; never left off."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _load_yaml(text: str) -> Any:
    """The YAML parse of ``text`` (:mod:`netspectra.config.yaml_parse`, imported with PyYAML only now)."""
    from netspectra.config.yaml_parse import load_yaml

    return load_yaml(text)


def __getattr__(name: str) -> Any:
    if name == "_Yaml12BoolLoader":  # the loader class, where it lives since PyYAML is imported on use
        from netspectra.config.yaml_parse import Yaml12BoolLoader

        return Yaml12BoolLoader
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@functools.cache
def _yaml_rules() -> str | None:
    """A fingerprint of what :func:`_load_yaml` does beyond the text (the parsed-config cache's key), read
    without importing PyYAML (a cached configuration is then never parsed, nor PyYAML imported: ~10 ms):
    the content of :mod:`netspectra.config.yaml_parse` (its loader's rules) and the name, size and
    modification time of every file of the PyYAML package (its version, resolvers, constructors and
    parsers, and whether its libyaml extension is there). ``None`` where those files cannot be read (a
    PyYAML inside an archive): such texts are parsed without the cache."""
    from importlib.machinery import PathFinder

    try:
        ours = Path(__file__).with_name("yaml_parse.py").read_bytes()
        # sys.path's own finder: the import system's find_spec would execute a lazily loaded PyYAML
        # (netspectra.lazy.keep_unread_modules_out_of_numba) to read its spec
        spec = PathFinder.find_spec("yaml")
        where = list(spec.submodule_search_locations or ()) if spec is not None else []
        if len(where) != 1:
            return None
        with os.scandir(where[0]) as it:
            files = sorted(
                (e.name, e.stat().st_size, e.stat().st_mtime_ns)
                for e in it
                if e.is_file(follow_symlinks=False)
            )
    except (OSError, ImportError, ValueError):
        return None
    if not files:
        return None
    h = hashlib.sha256(ours)
    h.update(repr(files).encode())
    return h.hexdigest()[:20]


def _is_yaml_error(exc: BaseException) -> bool:
    """Whether ``exc`` is PyYAML's (imported by then if it is)."""
    yaml = sys.modules.get("yaml")
    return yaml is not None and isinstance(exc, yaml.YAMLError)


def _parse(text: str, source: str, *, cache: bool = True) -> Config:
    rules = _yaml_rules() if cache else None
    if rules is not None and validated_cache.active():  # the command line: validated once, then reused
        return validated_cache.validated(text, rules, source, lambda: _validate(text, source, rules))
    return _validate(text, source, rules)[0]


def _validate(text: str, source: str, rules: str | None) -> tuple[Config, Any]:
    """The configuration of ``text`` and the data parsed from it (parsed through the parsed-text cache
    when ``rules`` is not None); :class:`ConfigError` on failure."""
    try:
        data: Any = parse_yaml(text, _load_yaml, rules) if rules is not None else _load_yaml(text)
    except Exception as exc:
        if not _is_yaml_error(exc):
            raise
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark is not None else source
        problem = getattr(exc, "problem", None) or str(exc)
        context = getattr(exc, "context", None)
        detail = f"{context}, {problem}" if context else problem
        raise ConfigError([f"{where}: YAML syntax error: {detail}"], path=source) from None
    warnings: list[str] = []
    if data is None:
        data = {}
        warnings.append("the file is empty: every setting takes its default")
    if not isinstance(data, dict):
        raise ConfigError(
            [
                f"{source}: the top level is a {type(data).__name__}, not a mapping; write sections such as "
                "'aggregator:' and 'probe:'"
            ],
            path=source,
        )
    try:
        cfg = Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(
            _format_errors(exc), path=source, warnings=warnings + unknown_key_warnings(data)
        ) from None
    cfg._warnings = tuple(warnings) + cfg.warnings
    cfg._source = source
    return cfg, data


def load_config(path: Path | str | None = None, *, log_warnings: bool = True) -> Config:
    """Load, expand and validate a configuration file.

    ``path`` ``None`` -> :func:`default_config_path`. Reads ``./.env`` and ``<config dir>/.env`` first
    without overriding the environment. Raises :class:`ConfigError` (naming the path) for a missing or
    unreadable file, a YAML error (with line and column) or invalid values (every problem listed). With
    ``log_warnings`` each warning is also logged; they are always in :attr:`Config.warnings`.
    """
    p = Path(path) if path is not None else default_config_path()
    load_env_files([Path.cwd() / ".env", p.parent / ".env"])
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([f"configuration file not found: {p}"], path=str(p)) from None
    except IsADirectoryError:
        raise ConfigError([f"{p} is a directory; give the path of a YAML file"], path=str(p)) from None
    except UnicodeDecodeError as exc:
        raise ConfigError([f"{p}: not UTF-8 text (byte {exc.start})"], path=str(p)) from None
    except OSError as exc:
        raise ConfigError([f"cannot read {p}: {exc.strerror}"], path=str(p)) from None
    cfg = parse_config_text(text, source=str(p))
    if log_warnings:
        for w in cfg.warnings:
            log.warning("config %s: %s", p, w)
        cfg._warnings_logged = True
    return cfg


def _mask_userinfo(m: re.Match[str]) -> str:
    user, colon, _password = m.group(2).partition(":")
    return f"{m.group(1)}{user}:{MASK}@" if colon else f"{m.group(1)}{MASK}@"


def _mask(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: (MASK if k in SECRET_KEYS and node[k] else _mask(v)) for k, v in node.items()}
    if isinstance(node, list):
        return [_mask(v) for v in node]
    if isinstance(node, str) and "@" in node:
        # a password or token in a URL's user part (probe.nats_url may carry them: docs/live.md)
        return _URL_USERINFO.sub(_mask_userinfo, node)
    return node


def _mask_webhook_url(url: str) -> str:
    # incoming-webhook URLs carry their token in the path (as the notifier's own name shows them)
    parts = url.split("/")
    return "/".join(parts[:3]) + (f"/{MASK}" if len(parts) > 3 and any(parts[3:]) else "")


def effective_config_dict(cfg: Config) -> dict[str, Any]:
    """The configuration with every default applied, as plain JSON-able data.

    Keys use the correct spellings (``size_threshold``; ``from`` for smtp), durations Go's syntax
    (``"10m0s"``), and non-empty secrets are replaced by ``"***"``: every key of :data:`SECRET_KEYS`
    (``password``, ``token``, ``api_key``, a webhook's ``secret``, ...), the password or token in a URL's
    user part, and the path of a webhook URL (its token).
    """
    out = _mask(cfg.model_dump(mode="json", by_alias=True))
    for hook in out.get("alerter", {}).get("webhooks", []):
        if hook.get("url"):
            hook["url"] = _mask_webhook_url(hook["url"])
    return out
