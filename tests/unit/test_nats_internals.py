"""The copy-saving NATS paths install only on the nats-py release lines they were tested with."""

from __future__ import annotations

import pytest

from netspectra.transport import nats_internals
from netspectra.transport.nats_internals import internals_known


def test_release_lines() -> None:
    assert internals_known("2.16.0") and internals_known("2.16.3") and internals_known("2.16")
    assert not internals_known("2.17.0")
    assert not internals_known("3.0.0")
    assert not internals_known("2.1.6")  # not a prefix match: 2.1 is not 2.16


def test_the_installed_nats_py_is_a_tested_one() -> None:
    """The environment the tests run in (pyproject's nats-py) must be one the direct paths know: else
    their tests would silently test nats-py's own paths only. A new nats-py release line needs the
    parser and send tests run against it, then its line added to TESTED_RELEASES."""
    from nats.aio.client import __version__

    assert internals_known(), f"nats-py {__version__} is not in {nats_internals.TESTED_RELEASES}"


def test_untested_release_leaves_the_client_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    from netspectra.transport.nats_receive import install_direct_payloads
    from netspectra.transport.nats_send import install_direct_writes

    monkeypatch.setattr(nats_internals, "TESTED_RELEASES", ())

    class Client:  # never looked at: the release check comes first
        def __getattr__(self, name: str) -> None:
            raise AssertionError(f"read {name}")

    assert install_direct_payloads(Client()) is False
    assert install_direct_writes(Client()) is False
