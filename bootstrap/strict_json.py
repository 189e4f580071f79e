"""The one JSON reader of the service: I-JSON (RFC 7493) strictness for every document it reads.

HTTP bodies, DM 2.0 packages, MO instance data, factory NDJSON lines, profile and
MO files given to the CLI, console form fields: all go through :func:`loads`. It
refuses what two JSON parsers could read differently (RFC 7493 section 2):

- a member name twice in one object (which value wins differs between parsers);
- ``NaN``, ``Infinity``, ``-Infinity`` (not JSON, RFC 8259 section 6) and numbers
  that overflow an IEEE double (``1e400`` would become infinity);
- strings with a lone surrogate (``"\\ud800"``: not Unicode, and PostgreSQL refuses
  to store it);
- more nesting than Python's recursion allows.

Callers turn :class:`StrictJsonError` into their own error (400 problem, PackageError,
MoValidationError, a CLI message); its message says what was wrong and where.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

__all__ = ["StrictJsonError", "loads"]

#: A \\u escape of a UTF-16 surrogate: only then can a decoded string hold a lone one.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


class StrictJsonError(ValueError):
    """The text is not JSON, or is JSON this service refuses (duplicate names, NaN, lone surrogates)."""


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:  # two parsers could disagree on which one wins: refuse
            raise StrictJsonError(f"duplicate member {key!r}")
        obj[key] = value
    return obj


def _constant(name: str) -> Any:
    raise StrictJsonError(f"{name} is not valid JSON")


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise StrictJsonError(f"the number {text[:40]} is out of range")
    return value


def _check_strings(value: Any) -> None:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                raise StrictJsonError("a string holds a lone UTF-16 surrogate (not Unicode text)") from None
        elif isinstance(item, dict):
            stack.extend(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def loads(data: bytes | bytearray | str) -> Any:
    """Decode one JSON text strictly.

    Args:
        data: UTF-8 bytes (a BOM is refused, as RFC 8259 section 8.1 allows) or text.

    Raises:
        StrictJsonError: not JSON, or a duplicate member, NaN/Infinity, a lone surrogate, too deep.
    """
    try:
        text = data.decode("utf-8") if isinstance(data, bytes | bytearray) else data
        doc = json.loads(text, object_pairs_hook=_object, parse_constant=_constant, parse_float=_float)
    except StrictJsonError:
        raise
    except UnicodeDecodeError as exc:
        raise StrictJsonError(f"not UTF-8: {exc.reason} at byte {exc.start}") from None
    except RecursionError:
        raise StrictJsonError("nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, int digits limit
        raise StrictJsonError(str(exc)) from None
    if _SURROGATE_ESCAPE.search(text):
        _check_strings(doc)
    return doc
