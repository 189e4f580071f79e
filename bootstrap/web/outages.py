"""Database driver errors at the edge: 503 ``not-ready`` for outages, 400 for values the database refuses.

The services let SQLAlchemy's errors through; this module maps them once, by
class, for every route:

- ``OperationalError``, ``InterfaceError`` and a pool ``TimeoutError``: the
  database is stopped, unreachable or out of connections. 503 ``not-ready``
  with ``Retry-After``. SQLite's "database is locked" is not an outage but
  contention (every writer queued on the busy timeout and lost): also 503, with a
  shorter Retry-After, counted as its own failure class.
- ``DataError``: a value the database cannot store (a NUL byte in text on
  PostgreSQL, an integer out of range). The edge checks should have refused it
  first; this is the net under them, a 400 and not a 500.

The driver's message names hosts and ports: it goes to the log, never to the
caller. An outage fails every request, so the log gets one line per failure
class when it starts and then one line with a count at most every
window (:data:`bootstrap.logs.failures`), not a traceback per request.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import exc as sa
from starlette.requests import Request
from starlette.responses import Response

from bootstrap.logs import failures
from bootstrap.web.common import request_id
from bootstrap.web.problems import problem

__all__ = ["handlers"]

#: Retry-After for an unreachable database and for a busy SQLite file.
_RETRY_UNAVAILABLE = 5
_RETRY_BUSY = 1


def _is_busy(exc: BaseException) -> bool:
    text = str(getattr(exc, "orig", exc)).lower()
    return "database is locked" in text or "database is busy" in text


async def _database_unavailable(request: Request, exc: Exception) -> Response:
    busy = _is_busy(exc)
    failures.record("database busy" if busy else "database unavailable", exc)
    retry = _RETRY_BUSY if busy else _RETRY_UNAVAILABLE
    detail = ("the database is busy; retry shortly" if busy
              else "the database is unavailable; retry later")
    return problem(503, "not-ready", "Not ready", detail, instance=request.url.path,
                   headers={"Retry-After": str(retry)}, request_id=request_id(request))


async def _database_refused_value(request: Request, exc: Exception) -> Response:
    failures.record("value refused by the database", exc)
    return problem(400, "invalid-request", "Invalid request",
                   "a value in the request cannot be stored (out of range, or a NUL character)",
                   instance=request.url.path, request_id=request_id(request))


def handlers() -> dict[Any, Any]:
    """Exception handlers for the database driver's errors, keyed by class."""
    return {
        sa.OperationalError: _database_unavailable,
        sa.InterfaceError: _database_unavailable,
        sa.TimeoutError: _database_unavailable,
        sa.DataError: _database_refused_value,
    }
