"""Atomic files and directories: a reader sees the old content or the whole new one, never a part.

Every file NetSpectra writes for someone else to read (results, snapshots, persisted packets,
generated traces) goes through here:

* :class:`AtomicFile` — write into a temporary file in the same directory, then :meth:`~AtomicFile.commit`:
  flush, fsync, give it the mode an ordinary new file gets (or keep the replaced file's), rename it over
  the final path, fsync the directory so the rename survives a crash. :meth:`~AtomicFile.abort` (or an
  exception inside :func:`atomic_file`) removes the temporary file; the final path is untouched.
* :func:`atomic_dir` — a directory of several files that appears all at once (a temporary sibling,
  fsynced, renamed into place; an existing one is swapped out and removed).

Temporary names start with a dot (``.<name>.<random>.tmp``) so that directory listings and globbing
readers skip them.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import BinaryIO

_UMASK: int | None = None


def umask() -> int:
    """The process's umask (read once: reading it means setting it)."""
    global _UMASK
    if _UMASK is None:
        current = os.umask(0o022)
        os.umask(current)
        _UMASK = current
    return _UMASK


def why_not_written(exc: BaseException) -> str:
    """Why a file was not written, for a message that already names the file: an ``OSError``'s type and
    ``strerror`` only (``IsADirectoryError: Is a directory``), without the paths it carries — for the
    writers here those are the temporary file, gone by the time anyone reads the message, and a reader
    looked for it; anything else as ``Type: message``."""
    if isinstance(exc, OSError) and exc.strerror:
        return f"{type(exc).__name__}: {exc.strerror}"
    return f"{type(exc).__name__}: {exc}"


def fsync_dir(directory: Path) -> None:
    """Make renames in ``directory`` durable; a no-op where a directory cannot be opened or fsynced."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class AtomicFile:
    """A file that appears at ``path`` only on :meth:`commit` (see the module docstring).

    ``fh`` is the open binary handle of the temporary file. ``buffering`` as for :func:`open` (0 for
    large sequential writes of whole buffers).
    """

    def __init__(self, path: str | os.PathLike[str], *, buffering: int = -1) -> None:
        self.path = Path(path)
        self.directory = self.path.parent if str(self.path.parent) else Path(".")
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.directory)
        self.tmp = Path(tmp)
        self.fh: BinaryIO = os.fdopen(fd, "wb", buffering=buffering)
        self._done = False

    def __repr__(self) -> str:
        return f"AtomicFile({str(self.path)!r})"

    def commit(self) -> Path:
        """Make the written content the file at ``path``; returns ``path``."""
        if self._done:
            raise RuntimeError(f"{self!r} is already committed or aborted")
        self._done = True
        try:
            self.fh.flush()
            os.fsync(self.fh.fileno())
            self.fh.close()
            # mkstemp makes the file 0600: give it the mode an ordinary new file would get (or the old one's)
            try:
                mode = self.path.stat().st_mode & 0o7777
            except FileNotFoundError:
                mode = 0o666 & ~umask()
            os.chmod(self.tmp, mode)
            os.replace(self.tmp, self.path)
        except BaseException:
            self._remove()
            raise
        fsync_dir(self.directory)
        return self.path

    def abort(self) -> None:
        """Drop what was written; the file at ``path`` (if any) is untouched. Idempotent."""
        if self._done:
            return
        self._done = True
        self._remove()

    def _remove(self) -> None:
        with contextlib.suppress(OSError):
            self.fh.close()
        with contextlib.suppress(FileNotFoundError):
            self.tmp.unlink()


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike[str], *, buffering: int = -1) -> Iterator[BinaryIO]:
    """``with atomic_file(p) as fh: fh.write(...)``: committed when the block ends, aborted if it raises."""
    f = AtomicFile(path, buffering=buffering)
    try:
        yield f.fh
    except BaseException:
        f.abort()
        raise
    f.commit()


def atomic_dir(final: Path, files: Mapping[str, bytes]) -> None:
    """Create directory ``final`` holding ``files`` (name -> content) so that readers see all of them or
    none: they go into a temporary sibling directory (fsynced), which is then renamed to ``final``. If
    ``final`` exists (the same snapshot written again), it is swapped out and removed afterwards."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    old: Path | None = None
    try:
        for name, data in files.items():
            fd = os.open(tmp / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
        os.chmod(tmp, 0o777 & ~umask())  # mkdtemp makes 0700; give the mode of an ordinary directory
        fsync_dir(tmp)
        if final.exists():
            old = final.with_name(f".{final.name}.{os.getpid()}.old")
            os.rename(final, old)
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    fsync_dir(final.parent)
