"""Which nats-py releases the engine's and probe's copy-saving paths were written against.

:mod:`netspectra.transport.nats_receive` and :mod:`netspectra.transport.nats_send` reach into nats-py's
client (its parser's states, ``_process_msg``, the pending-write queue, the transport's stream reader and
writer). Those are not nats-py's public API and may change in any release, so both paths install only on
a nats-py whose release line is listed here, where their tests ran against it; any other release works
through nats-py's own code, as before, only without the saving.
"""

from __future__ import annotations

#: nats-py release lines (major.minor) the direct paths are tested with.
TESTED_RELEASES = ("2.16",)


def internals_known(version: str | None = None) -> bool:
    """Whether nats-py ``version`` (default: the installed one) is of a tested release line."""
    if version is None:
        try:
            from nats.aio.client import __version__ as version
        except ImportError:
            return False
    parts = str(version).split(".")
    return ".".join(parts[:2]) in TESTED_RELEASES
