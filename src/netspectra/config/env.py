"""Environment handling of the configuration: Go's ``os.ExpandEnv`` and ``.env`` loading.

The original reads ``./.env`` with ``godotenv.Load()`` (never overriding a variable that is already set)
and then runs Go's ``os.ExpandEnv`` over the whole text of ``config.yaml`` before parsing it. NetSpectra
does the same, so a configuration written for the original expands identically.

Go's rules, mirrored byte for byte by :func:`expand_env` (they differ from :func:`os.path.expandvars`,
which leaves unknown variables in place):

* ``${NAME}`` and ``$NAME`` are replaced by the variable's value; an **unset variable gives ""**.
* ``$NAME`` takes the longest run of ASCII letters, digits and ``_`` (so ``$HOME.x`` is ``$HOME`` + ``.x``).
* ``${NAME}`` takes everything up to the first ``}``, whatever it is (``${A B}`` looks up ``"A B"``).
* A special one-character name follows ``$`` or sits alone in braces: ``* # $ @ ! ? -`` and the digits
  ``0``–``9``; ``$1x`` is ``$1`` + ``x``, ``$$`` looks up the variable named ``$`` (Go does not give
  the process id: it is normally unset, hence ""). ``${12}`` is a normal name ``12``.
* ``${}`` is bad syntax and is removed; so is a ``${`` with no closing ``}`` (only the two characters
  ``${`` are removed, the rest of the text stays).
* A ``$`` followed by anything else (space, ``.``, ``/``, a non-ASCII character ...) is kept as is, and
  so is a lone ``$`` at the very end of the text.

Like the original, expansion runs over comments and quoted strings too, and a value containing ``$``
(a password, say) must be passed through a variable whose value is not expanded again.

A lookup may answer ``None`` for a name: the reference is then kept as written. The configuration loader
does so for an unset name of digits (``$1``, ``${2}``: no shell can export such a variable; in a
classifier rule it is a regular expression's group reference, which Go's expansion turned into "").
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

log = logging.getLogger(__name__)

#: One-character names Go treats as shell special variables (``isShellSpecialVar``).
_SPECIAL = frozenset("*#$@!?-0123456789")


def _is_alnum(c: str) -> bool:
    # Go's isAlphaNum is ASCII only: str.isalnum() would also accept e.g. "é" or "²".
    return c == "_" or "0" <= c <= "9" or "a" <= c <= "z" or "A" <= c <= "Z"


def _shell_name(s: str, start: int) -> tuple[str, int]:
    """Go's ``getShellName`` on ``s[start:]`` (non-empty): ``(name, characters consumed)``.

    ``("", 0)``: no name, the ``$`` is kept; ``("", w > 0)``: bad syntax, ``$`` and ``w`` characters
    are dropped.
    """
    n = len(s)
    if s[start] == "{":
        if start + 2 < n and s[start + 1] in _SPECIAL and s[start + 2] == "}":
            return s[start + 1], 3
        close = s.find("}", start + 1)
        if close == -1:
            return "", 1  # "${" without "}": Go eats the two characters
        if close == start + 1:
            return "", 2  # "${}": Go eats all three
        return s[start + 1 : close], close - start + 1
    if s[start] in _SPECIAL:
        return s[start], 1
    end = start
    while end < n and _is_alnum(s[end]):
        end += 1
    return s[start:end], end - start


def expand_env(text: str, lookup: Mapping[str, str] | Callable[[str], str | None] | None = None) -> str:
    """Return ``text`` with ``$NAME`` / ``${NAME}`` replaced exactly as Go's ``os.Expand`` does.

    ``lookup`` maps a name to its value: a mapping (missing names give ""), a function (``None``: keep
    the reference as written), or ``None`` for the process environment (``os.ExpandEnv``). See the
    module docstring for the rules.
    """
    if lookup is None:
        env = os.environ

        def get(name: str) -> str:
            return env.get(name, "")
    elif callable(lookup):
        get = lookup
    else:
        table = lookup

        def get(name: str) -> str:
            return table.get(name, "")

    if "$" not in text:
        return text
    out: list[str] = []
    i = 0  # start of the text not yet copied
    j = 0
    n = len(text)
    while True:
        j = text.find("$", j)  # from one "$" to the next (a 2,000-network map is 250 KB of text)
        # A "$" that is the last character is not a reference (Go checks j+1 < len(s)).
        if j < 0 or j + 1 >= n:
            break
        out.append(text[i:j])
        name, width = _shell_name(text, j + 1)
        if name:
            value = get(name)
            out.append(text[j : j + width + 1] if value is None else value)
        elif width == 0:
            out.append("$")
        # else: bad syntax, the "$" and `width` characters are dropped
        j += width
        i = j + 1
        j += 1
    out.append(text[i:])
    return "".join(out)


def load_env_files(paths: Iterable[Path]) -> list[Path]:
    """Load each existing ``.env`` file of ``paths`` into ``os.environ``, never overriding a set variable.

    Files are read in order, so an earlier file wins over a later one for a variable neither the
    environment nor an earlier file sets. A path that does not exist is skipped (as ``godotenv.Load``
    skips a missing ``./.env``); the same file given twice is read once. Returns the files read.
    """
    seen: set[Path] = set()
    loaded: list[Path] = []
    for p in paths:
        try:
            resolved = p.resolve()
        except OSError:
            continue
        if resolved in seen or not resolved.is_file():
            continue
        seen.add(resolved)
        # imported only when there is a file to read: most starts have none (python-dotenv compiles a
        # dozen regular expressions on import, ~2 ms of every command's start)
        from dotenv import load_dotenv

        # override=False is the contract: the environment (and an earlier .env) always wins.
        load_dotenv(resolved, override=False)
        loaded.append(resolved)
        log.debug("loaded environment variables from %s", resolved)
    return loaded
