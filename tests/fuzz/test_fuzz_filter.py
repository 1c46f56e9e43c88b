"""Fuzzing the console's filter language: whatever is typed, :func:`compile_filter` either refuses it with
a :class:`FilterError` whose position lies in the text, or compiles it into SQL whose words are the
compiler's own and the catalog's quoted column names (every value a bound parameter: ``bind`` uses each
exactly once); the canonical form is a fixed point and completion never fails.

Run length: ``NETSPECTRA_FUZZ_EXAMPLES`` (see fuzzlib).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from netspectra.storage.filter import MAX_CHARS, FilterError, compile_filter, complete, normalized
from netspectra.storage.schema import bind

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
from fuzzlib import fuzz_settings
from test_console_filter import FIELDS, SQL_WORDS, sql_words

pytestmark = pytest.mark.fuzz

_WORDS = st.sampled_from(
    [*FIELDS, "AND", "OR", "NOT", "IN", "LIKE", "(", ")", ",", "=", "!=", "<", ">=", "<<", "!<<", "tcp",
     "80", "443", "10.0.0.1", "10.0.0.0/8", "2001:db8::/32", "::1", "'x'", "'it\\'s'", '"q"', "AS15169",
     "--", "/*", ";", "'", "\\", "`", "%(flt_0)s", "ü", "\x00", "\n", "1e3", "-1"]
)  # fmt: skip


@fuzz_settings(300)
@given(st.lists(_WORDS, max_size=25).map(" ".join))
def test_fuzz_token_soup(text: str) -> None:
    check_compiles_safely(text)


@fuzz_settings(300)
@given(st.text(max_size=200))
def test_fuzz_any_text(text: str) -> None:
    check_compiles_safely(text)


def check_compiles_safely(text: str) -> None:
    try:
        c = compile_filter(text, FIELDS)
    except FilterError as exc:
        assert 0 <= exc.position <= max(len(text), MAX_CHARS)
        return
    assert sql_words(c.sql) <= SQL_WORDS, c.sql
    assert all(isinstance(v, int | str) for v in c.params.values())
    bind(c.sql, c.params)  # every placeholder has its value, every value its placeholder
    assert normalized(normalized(text, FIELDS), FIELDS) == normalized(text, FIELDS)
    complete(text, len(text), FIELDS)
