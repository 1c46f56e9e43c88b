"""Typer's rich help without rich's Markdown parser and traceback machinery at start-up (issue 19).

The commands' help is Markdown (``rich_markup_mode="markdown"``), and ``typer.rich_utils`` imports
``rich.markdown`` (markdown-it, and through ``rich.syntax`` pygments) and ``rich.traceback`` at module
level: about 40 ms of the ~50 ms it takes to load, paid by every ``--help`` for texts that are almost all
plain paragraphs with a few code spans.

:func:`install` (the command-line process only, :func:`netspectra.cli.main.main`) makes the next import of
``typer.rich_utils`` see :class:`ParagraphMarkdown` and :class:`LazyTraceback` in place of rich's classes.
:class:`ParagraphMarkdown` renders the subset it recognises — paragraphs of text with `code` spans,
plain ``**strong**`` words, ``\\<``/``\\>`` escapes and intra-word underscores — into exactly the
segments ``rich.markdown.Markdown`` gives for it (same styles, same paragraph breaks; tests compare every
help screen of the command line both ways), and hands any other text to the real
``rich.markdown.Markdown``, imported then.
:class:`LazyTraceback` imports ``rich.traceback`` when typer first asks for a traceback (pretty exceptions,
which NetSpectra turns off). Typer's layout code — panels, options, defaults — is used unchanged.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import re
import sys
import types
from collections.abc import Iterator, Sequence
from typing import Any

#: What :class:`ParagraphMarkdown` renders itself; anything else goes to rich's Markdown. Per line: no
#: leading or trailing blanks, no block syntax at the start (headings, quotes, lists, rules, tables, code
#: fences, HTML blocks); inside, none of the inline syntax but code spans, plain ``**strong**`` words,
#: ``\<``/``\>`` and underscores between letters or digits (CommonMark: never emphasis). The patterns are
#: compiled on first use (``re``'s own cache): every command imports this module, only help renders text.
_BLOCK_START = r"[#>*=|~`<]|[-+](\s|$)|-+\s*$|\d+[.)]|([-_*])(\s*\2){2,}\s*$"
_INLINE_OTHER = r"[*\[\]<>&~|]|\\(?![<>])|(?<![0-9A-Za-z])_|_(?![0-9A-Za-z])"
_CODE_SPAN = r"`([^`\s](?:[^`]*[^`\s])?)`"
#: ``**strong**`` that CommonMark reads as such for certain: opened at the start, after a blank or ``(``,
#: before a letter or digit; closed after a letter or digit, before the end, a blank or ``,.;:)``.
_STRONG = r"(?:(?<=^)|(?<=[\s(]))\*\*([0-9A-Za-z](?:[^*`]*[0-9A-Za-z])?)\*\*(?=$|[\s,.;:)])"


def paragraphs(markup: str) -> list[list[tuple[str, str]]] | None:
    """``markup`` as paragraphs of ``(text, kind)`` pieces — kind ``""`` text, ``"code"`` a code span,
    ``"strong"`` a ``**strong**`` word or phrase within one line — or None when it holds Markdown beyond
    the subset (the caller then renders it with rich's Markdown). The pieces are cut where markdown-it
    cuts its tokens — code spans, strong spans, line breaks (each a piece of one space) — so that each
    becomes the same segment of output as under rich's Markdown, escape codes included."""
    result = []
    for block in markup.split("\n\n"):
        lines = block.split("\n")
        if any(not line or line != line.strip() or re.match(_BLOCK_START, line) for line in lines):
            return None
        pieces: list[tuple[str, str]] = []
        pos = 0
        for m in re.finditer(_CODE_SPAN, block):
            pieces.extend(_text_pieces(block[pos : m.start()]))
            pieces.append((m.group(1).replace("\n", " "), "code"))
            pos = m.end()
        pieces.extend(_text_pieces(block[pos:]))
        for piece, kind in pieces:
            if kind != "code" and (
                "`" in piece or re.search(_INLINE_OTHER, piece.replace("\\<", "").replace("\\>", ""))
            ):
                return None
        result.append(
            [(p if kind == "code" else p.replace("\\<", "<").replace("\\>", ">"), kind) for p, kind in pieces]
        )
    return result


def _text_pieces(text: str) -> list[tuple[str, str]]:
    """Text between code spans: its lines, each soft line break a piece of one space, each line cut
    around its strong spans."""
    pieces: list[tuple[str, str]] = []
    for i, line in enumerate(text.split("\n")):
        if i:
            pieces.append((" ", ""))
        pos = 0
        for m in re.finditer(_STRONG, line):
            pieces.append((line[pos : m.start()], ""))
            pieces.append((m.group(1), "strong"))
            pos = m.end()
        pieces.append((line[pos:], ""))
    return pieces


class ParagraphMarkdown:
    """A drop-in for ``rich.markdown.Markdown(markup, style=...)`` as typer's help uses it (see the module
    docstring). Like rich's Markdown it has no ``__rich_measure__``: tables and columns size it alike."""

    def __init__(
        self, markup: str, code_theme: str = "monokai", justify: Any = None, style: Any = "none", **kw: Any
    ):
        self.markup = markup
        self.style = style
        self.justify = justify
        self._paragraphs = paragraphs(markup)
        self._full: Any = None
        if self._paragraphs is None:
            from rich.markdown import Markdown

            self._full = Markdown(markup, code_theme=code_theme, justify=justify, style=style, **kw)

    def __rich_console__(self, console: Any, options: Any) -> Iterator[Any]:
        if self._full is not None:
            yield from self._full.__rich_console__(console, options)
            return
        from rich.segment import Segment
        from rich.text import Text

        # rich's MarkdownContext: a stack of styles, each the one below plus the element's own
        paragraph = console.get_style(self.style, default="none") + console.get_style(
            "markdown.paragraph", default="none"
        )
        styles = {
            "": paragraph,
            "code": paragraph + console.get_style("markdown.code", default="none"),
            "strong": paragraph + console.get_style("markdown.strong", default="none"),
        }
        options = options.update(height=None)
        for i, pieces in enumerate(self._paragraphs or ()):
            text = Text(justify=self.justify or "left")
            for piece, kind in pieces:
                text.append(piece, styles[kind])
            if i:
                yield Segment.line()
            yield from console.render(text, options)


class LazyTraceback:
    """``rich.traceback.Traceback``, imported on first use."""

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        from rich.traceback import Traceback

        return Traceback(*args, **kwargs)

    @classmethod
    def from_exception(cls, *args: Any, **kwargs: Any) -> Any:
        from rich.traceback import Traceback

        return Traceback.from_exception(*args, **kwargs)


_STUBS = {"rich.markdown": {"Markdown": ParagraphMarkdown}, "rich.traceback": {"Traceback": LazyTraceback}}


class _StubbedLoader(importlib.abc.Loader):
    """Runs ``typer.rich_utils`` with the light classes in place of rich's, then takes them away again."""

    def __init__(self, loader: Any) -> None:
        self._loader = loader

    def create_module(self, spec: Any) -> Any:
        return self._loader.create_module(spec)

    def exec_module(self, module: types.ModuleType) -> None:
        placed = []
        for name, names in _STUBS.items():
            if name not in sys.modules:  # already loaded: typer gets the real class, at no cost
                stub = types.ModuleType(name, "netspectra.cli.help_markdown: stand-in while typer loads")
                stub.__dict__.update(names)
                sys.modules[name] = stub
                placed.append(name)
        try:
            self._loader.exec_module(module)
        except ImportError:  # a typer that imports more from these modules: load it the ordinary way
            for name in placed:
                sys.modules.pop(name, None)
            placed = []
            self._loader.exec_module(module)
        finally:
            for name in placed:
                sys.modules.pop(name, None)


class _LightRichUtils(importlib.abc.MetaPathFinder):
    def find_spec(self, name: str, path: Sequence[str] | None = None, target: Any = None) -> Any:
        if name != "typer.rich_utils":
            return None
        if self in sys.meta_path:  # one import to serve: leave the import system as it was
            sys.meta_path.remove(self)
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _StubbedLoader(spec.loader)
        return spec


def install() -> None:
    """Make the next import of ``typer.rich_utils`` use the light classes (no effect once it is loaded)."""
    if "typer.rich_utils" not in sys.modules and not any(
        isinstance(f, _LightRichUtils) for f in sys.meta_path
    ):
        sys.meta_path.insert(0, _LightRichUtils())
