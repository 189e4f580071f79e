"""Failures that hit every request (a database or Vault outage) logged as one line per class with counts.

An outage fails every request; a traceback per request would bury the one line
an operator needs (an outage of ten seconds under load made megabytes of log).
:class:`FailureLog` logs the first failure of a class, then at most one line per
:data:`LOG_INTERVAL` seconds saying how many more there were.
"""

from __future__ import annotations

import logging
import threading
import time

__all__ = ["LOG_INTERVAL", "FailureLog", "failure_log"]

#: Seconds between two log lines of one failure class.
LOG_INTERVAL = 10.0


class FailureLog:
    """Logs the first failure of a class, then how many more there were, at most once per interval."""

    def __init__(self, logger: logging.Logger, interval: float = LOG_INTERVAL) -> None:
        self._log = logger
        self._interval = interval
        self._lock = threading.Lock()
        self._since: dict[str, tuple[float, int]] = {}  # class -> (time of the last line, failures since)

    def record(self, kind: str, exc: BaseException) -> None:
        """Count one failure of ``kind``; log a line if the last one for ``kind`` is old enough."""
        now = time.monotonic()
        with self._lock:
            last, count = self._since.get(kind, (-self._interval, 0))
            if now - last < self._interval:
                self._since[kind] = (last, count + 1)
                return
            self._since[kind] = (now, 0)
        first_line = (str(exc).strip().splitlines() or [""])[0][:300]
        self._log.warning("%s: %s: %s (%d more failures of this class since the last line)",
                          kind, type(exc).__name__, first_line, count)


#: The process's one failure log (every route shares it).
failure_log = FailureLog(logging.getLogger("bootstrap.failures"))
