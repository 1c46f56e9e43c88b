"""The one exception a capture reader raises for files it cannot read or that are damaged.

A damaged capture never produces a traceback for the user: readers turn every problem with the
file (missing, unreadable, unknown format, bad lengths, truncation, corrupt compression) into a
:class:`CaptureError` whose ``str()`` is one line naming the file, the byte offset and what was
expected against what was found. Readers raise it only after every record before the damage has
been handed out, so no data before the damage is lost.
"""

from __future__ import annotations

from os import PathLike


class CaptureError(Exception):
    """A capture file that cannot be read, or a damaged one.

    Attributes:
        path: the file, as given.
        offset: byte offset of the damaged structure (record header, block) in the *uncompressed*
            stream, or ``None`` where the problem is not at an offset (missing file, directory).
        expected: what a valid file has there, in words.
        found: what this file has there, in words.
        decompressed: ``True`` if the file is gzip-compressed, so ``offset`` counts decompressed bytes.

    ``str(err)`` is ``"<path>: byte offset <n>: expected <what>, found <what>"`` (``"decompressed
    byte offset"`` for gzip input; no offset part when ``offset`` is ``None``).
    """

    def __init__(
        self,
        path: str | PathLike[str],
        offset: int | None,
        expected: str,
        found: str,
        *,
        decompressed: bool = False,
    ) -> None:
        self.path = str(path)
        self.offset = offset
        self.expected = expected
        self.found = found
        self.decompressed = decompressed
        super().__init__(self._message())

    def _message(self) -> str:
        if self.offset is None:
            where = ""
        else:
            where = f"{'decompressed ' if self.decompressed else ''}byte offset {self.offset}: "
        return f"{self.path}: {where}expected {self.expected}, found {self.found}"

    def __str__(self) -> str:
        return self._message()

    def __reduce__(self):  # keeps the keyword-only flag across pickling (multiprocessing workers)
        return (_rebuild, (self.path, self.offset, self.expected, self.found, self.decompressed))


def _rebuild(path: str, offset: int | None, expected: str, found: str, decompressed: bool) -> CaptureError:
    return CaptureError(path, offset, expected, found, decompressed=decompressed)
