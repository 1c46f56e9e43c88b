"""A disk cache of parsed configuration text, so that a configuration does not cost YAML time at every
start.

libyaml builds a node for every scalar of a configuration before the constructor turns them into Python
objects: a ``networks`` map of 2,000 entries (250 KB of YAML) costs ~0.07 s of every command's start-up,
more than validating it; and any configuration, however small, costs PyYAML's import (~10 ms). The
parsed data depend only on the text (after ``${VAR}`` expansion), so :func:`parse_yaml` keeps them on
disk and reuses them when the same text comes again, without importing PyYAML:

* **Keyed by content and rules.** The key is a hash of the text, the entries' :data:`FORMAT`, the
  loader's rules (``rules`` of :func:`parse_yaml`: a fingerprint of the loader's module and of the PyYAML
  it uses, :func:`netspectra.config.loader._yaml_rules`, so that another NetSpectra's loader sharing the
  directory never gets this one's data) and the Python version; a file edited or copied is a new key. An
  entry records its key: one copied, renamed or linked under another key's name is refused.
* **No variable values.** A text in which a ``${VAR}`` expands to a value (a variable set and not empty)
  is never cached (:func:`netspectra.config.loader.parse_config_text` decides): such values are often
  secrets (passwords, tokens) that must not be written to disk. Unset or empty variables expand to
  nothing, so a text whose variables are all unset is cached. Nor is a text that holds a secret
  literally: a non-empty value under a key that names one (``password``, ``token``, ``secret``,
  ``api_key``, ``credentials``, …: :func:`holds_secret`), so that a password written in a file is not
  copied into the cache. What else a file holds is stored in an entry readable by its owner only.
* **Only what parses.** Text that fails to parse (a syntax error, a key written twice) is never stored:
  such text is parsed again every time and fails as without a cache, naming file, line and column. A
  stored entry is data the YAML parser produced; validation runs on it as on freshly parsed data, so
  validation errors and warnings are the same too.
* **Plain data, exactly.** Entries are JSON (no pickles: the cache directory holds nothing that
  executes), written only when the data round-trip exactly — dictionaries with string keys in their
  order, lists, strings, integers, floats, booleans and ``None``, compared type by type. Anything else a
  YAML file can hold (timestamps, binary, sets, integer keys, NaN) is simply not cached.
* **Every size.** A small text's parse takes a millisecond, but PyYAML's import ten: reading an entry
  (~0.1 ms) pays for any text (:data:`MIN_BYTES` is 0).
* **Never fails a parse.** An entry that cannot be read, decoded or written is ignored (logged at debug
  level) and the text parsed as without a cache. Entries are written atomically (a temporary file renamed
  into place); the newest :data:`KEEP` are kept.

The directory: ``$NETSPECTRA_CONFIG_CACHE`` (``off``: no cache); else ``$XDG_CACHE_HOME/netspectra/config``
(``~/.cache/netspectra/config`` without ``XDG_CACHE_HOME``) — beside the enrichment's compiled tables.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from netspectra.user_cache import CONFIG_CACHE_ENV, config_cache_dir, open_private, prune, write_private

log = logging.getLogger(__name__)

#: Bump when the loader's rules (its resolvers, its constructor) or the entries' format change.
FORMAT = 2
#: Text shorter than this (characters) is parsed without the cache: none (a hit spares PyYAML's import).
MIN_BYTES = 0
#: Entries kept (the newest by use).
KEEP = 8
#: The environment variable naming the directory (``off``: no cache).
ENV = CONFIG_CACHE_ENV
_PREFIX = "parsed-"


def cache_dir() -> Path | None:
    """The cache directory (see the module docstring); None when off."""
    return config_cache_dir()


def _key(text: str, rules: str) -> str:
    h = hashlib.blake2b(digest_size=20)
    h.update(f"{FORMAT}|{rules}|{sys.version}|".encode())
    h.update(text.encode("utf-8", "surrogatepass"))
    return h.hexdigest()


def _same(a: Any, b: Any) -> bool:
    """``a`` and ``b`` are the same plain data, type by type (``True`` is not ``1``, a dict's keys in the
    same order)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(v, b[k]) for k, v in a.items())
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, str | int | float | bool) or a is None:
        return a == b  # (NaN != NaN: not cached)
    return False


def _read(path: Path, key: str) -> Any:
    """The data of the entry at ``path`` stored for ``key``; raises when there is none or it cannot be
    used."""
    with open_private(path) as f:
        entry = json.loads(f.read().decode("utf-8"))
    if not isinstance(entry, dict) or entry.get("format") != FORMAT or "data" not in entry:
        raise ValueError("not an entry of this format")
    if entry.get("key") != key:  # an entry copied, renamed or linked under another key's name
        raise ValueError("stored for another key")
    with contextlib.suppress(OSError):  # the newest by use survive the pruning
        os.utime(path)
    return entry["data"]


#: Parts of a key's name that say its value is a secret (compared in lower case, ``-`` read as ``_``).
SECRET_KEY_PARTS = (
    "password", "passwd", "secret", "token", "api_key", "apikey", "credential", "private_key", "webhook",
)  # fmt: skip
#: A URL with credentials in it (``nats://user:pass@host``): a secret wherever it is.
_URL_USERINFO = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^/?#\s]*@")


def holds_secret(data: Any) -> bool:
    """Whether ``data`` (parsed YAML) holds a non-empty value under a key whose name contains one of
    :data:`SECRET_KEY_PARTS` (webhook URLs are their own credential), or a URL with a user or password
    in it (``nats://user:pass@host``), at any depth: such data are not written to the cache."""
    stack = [data]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            for k, v in node.items():
                name = str(k).lower().replace("-", "_")
                if v not in (None, "", [], {}) and any(part in name for part in SECRET_KEY_PARTS):
                    return True
                if isinstance(v, dict | list | str):
                    stack.append(v)
        elif isinstance(node, list):
            stack.extend(x for x in node if isinstance(x, dict | list | str))
        elif isinstance(node, str) and "@" in node and _URL_USERINFO.search(node):
            return True
    return False


def _write(directory: Path, path: Path, key: str, data: Any) -> None:
    if holds_secret(data):
        log.debug("config cache: the text holds a secret; not cached")
        return
    blob = json.dumps({"format": FORMAT, "key": key, "data": data}, ensure_ascii=False, allow_nan=False)
    if not _same(data, json.loads(blob)["data"]):
        log.debug("config cache: data of types JSON does not keep exactly; not cached")
        return
    write_private(directory, path, blob.encode("utf-8"))
    prune(directory, f"{_PREFIX}*.json", KEEP)


def parse_yaml(text: str, parse: Callable[[str], Any], rules: str) -> Any:
    """``parse(text)`` (the loader's YAML parse of an expanded text no variable gave a value to), or the
    data it gave for the same text and the same ``rules`` (what identifies the parse's behaviour: the
    loader's fingerprint) before (see the module docstring). Exceptions of ``parse`` propagate
    unchanged."""
    directory = cache_dir() if len(text) >= MIN_BYTES else None
    if directory is None:
        return parse(text)
    key = _key(text, rules)
    path = directory / f"{_PREFIX}{key}.json"
    try:
        return _read(path, key)
    except FileNotFoundError:
        pass
    except (OSError, ValueError, UnicodeDecodeError) as exc:  # damaged or foreign: parse, then replace it
        log.debug("config cache: entry %s unusable (%s); parsing", path, exc)
    data = parse(text)
    try:
        _write(directory, path, key, data)
    except (OSError, ValueError, TypeError, RecursionError) as exc:
        log.debug("config cache: cannot store %s (%s)", path, exc)
    return data
