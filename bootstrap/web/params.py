"""Integers from query strings and bodies, checked against a range before they reach a database.

PostgreSQL refuses integers over 2**63 - 1 and SQLite over 2**63 - 1 too, but
each in its own way (a DataError, an OverflowError): bounds checked here make
both answer the same 400 naming the parameter.
"""

from __future__ import annotations

import re

from starlette.requests import Request

from bootstrap.errors import InvalidRequest

__all__ = ["LIMIT_MAX", "OFFSET_MAX", "SEQ_MAX", "bounded_int", "int_param",
           "optional_int_param", "page_limit"]

_INTEGER = re.compile(r"^-?[0-9]{1,20}\Z")  # ASCII digits only: int() would also take "١٢" and "1_000"

#: Largest page a list endpoint returns.
LIMIT_MAX = 1000
#: Largest offset into a list (far beyond any real table; a signed 32-bit value).
OFFSET_MAX = 2**31 - 1
#: Largest sequence number or id a cursor may name (a signed 64-bit column).
SEQ_MAX = 2**63 - 1


def bounded_int(value: object, name: str, *, minimum: int, maximum: int) -> int:
    """``value`` as an int in ``[minimum, maximum]``.

    Raises:
        InvalidRequest: naming ``name`` and the range.
    """
    text = value.strip() if isinstance(value, str) else value
    if isinstance(text, bool) or not (isinstance(text, int) or (isinstance(text, str) and _INTEGER.match(text))):
        raise InvalidRequest(f"{name} must be an integer from {minimum} to {maximum}", field=name)
    number = int(text)
    if not minimum <= number <= maximum:
        raise InvalidRequest(f"{name} must be an integer from {minimum} to {maximum}", field=name)
    return number


def optional_int_param(request: Request, name: str, *, minimum: int = 0, maximum: int = OFFSET_MAX) -> int | None:
    """The query parameter ``name`` as an int in range, or None when it is absent or empty."""
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    return bounded_int(raw, name, minimum=minimum, maximum=maximum)


def int_param(request: Request, name: str, default: int, *, minimum: int = 0, maximum: int = OFFSET_MAX) -> int:
    """The query parameter ``name`` as an int in range, or ``default`` when it is absent or empty."""
    value = optional_int_param(request, name, minimum=minimum, maximum=maximum)
    return default if value is None else value


def page_limit(request: Request, default: int = 100) -> int:
    """The ``limit`` query parameter: 1 to :data:`LIMIT_MAX`."""
    return int_param(request, "limit", default, minimum=1, maximum=LIMIT_MAX)
