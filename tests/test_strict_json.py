"""bootstrap.strict_json: what RFC 7493 (I-JSON) and RFC 8259 allow is read; what parsers disagree on is not."""

from __future__ import annotations

from typing import Any

import pytest

from bootstrap import strict_json
from bootstrap.strict_json import StrictJsonError

# Texts and what they hold, written by hand.
READ: list[tuple[bytes, Any]] = [
    (b'{"a": 1, "b": [true, null, 2.5, "x"]}', {"a": 1, "b": [True, None, 2.5, "x"]}),
    (b'{"a": {"a": 1}}', {"a": {"a": 1}}),  # the same name in two objects is fine
    (b'[1e308, -0.0, 12345678901234567890]', [1e308, -0.0, 12345678901234567890]),
    (b'"\\ud83d\\ude00"', "\U0001f600"),  # a surrogate pair is one character
    ('{"k": "\u00e9"}'.encode(), {"k": "\u00e9"}),
]
REFUSED: list[tuple[bytes, str]] = [
    (b'{"a": 1, "a": 2}', "duplicate member 'a'"),
    (b'{"x": {"reason": "a", "reason": "b"}}', "duplicate member 'reason'"),
    (b'[{"a": 1, "a": 1}]', "duplicate member 'a'"),
    (b'{"n": NaN}', "NaN"),
    (b'{"n": Infinity}', "Infinity"),
    (b'[-Infinity]', "-Infinity"),
    (b'[1e400]', "out of range"),
    (b'[-1e400]', "out of range"),
    (b'["\\ud800"]', "lone UTF-16 surrogate"),
    (b'{"\\udfff": 1}', "lone UTF-16 surrogate"),
    (b'\xef\xbb\xbf{}', "BOM"),
    (b'{"a": "\xff"}', "not UTF-8"),
    (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    (b'{"a": 1,}', "Expecting property name"),
    (b"", "Expecting value"),
]


@pytest.mark.parametrize(("text", "value"), READ, ids=[t[:20].decode(errors="replace") for t, _ in READ])
def test_plain_json_is_read(text: bytes, value: Any) -> None:
    assert strict_json.loads(text) == value
    assert strict_json.loads(text.decode()) == value


@pytest.mark.parametrize(("text", "reason"), REFUSED, ids=[r for _, r in REFUSED])
def test_what_parsers_disagree_on_is_refused(text: bytes, reason: str) -> None:
    with pytest.raises(StrictJsonError, match=reason):
        strict_json.loads(text)


def test_the_refusal_is_a_value_error() -> None:
    assert issubclass(StrictJsonError, ValueError)
