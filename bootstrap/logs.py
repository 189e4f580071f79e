"""Structured logs: JSON or text lines, and one line per failure class instead of a traceback per request.

* :class:`JsonFormatter` writes one JSON object per record: ``ts``, ``level``,
  ``logger``, ``msg`` and every field passed in ``extra={...}`` (plus ``exc`` with the
  traceback when there is one). :class:`TextFormatter` writes the same as
  ``ts level logger msg key=value...``.
* :func:`configure` installs either on the root logger (``dmboot serve --log-format``);
  :func:`uvicorn_log_config` hands the same to uvicorn and its worker processes.
* :data:`failures` (a :class:`FailureLog`) is where request failures caused by a
  backend go: the first of each class in a window is logged (with its traceback if
  asked), the rest are counted and summarized in one line when the window closes.
  Every failure is also counted in ``dmboot_backend_errors_total``.

Nothing here formats a request's headers or body: callers pass identifiers only,
never a token, secret or Authorization value.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bootstrap import metrics

__all__ = ["FORMATS", "FailureLog", "JsonFormatter", "TextFormatter", "backend_of", "configure", "failures",
           "uvicorn_log_config"]

#: What ``--log-format`` accepts.
FORMATS = ("text", "json")

# Attributes every LogRecord has: anything else on a record came from ``extra=``.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message", "asctime", "taskName", "color_message"}  # color_message: uvicorn's ANSI copy of msg


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in record.__dict__.items() if k not in _STANDARD and not k.startswith("_")}


def _timestamp(record: logging.LogRecord) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z"


# One encoder for every line: json.dumps with options builds a new one per call.
_ENCODER = json.JSONEncoder(default=str, ensure_ascii=False, separators=(",", ":"))


class JsonFormatter(logging.Formatter):
    """One JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {"ts": _timestamp(record), "level": record.levelname.lower(), "logger": record.name,
                                "msg": record.getMessage()}
        line.update(_fields(record))
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return _ENCODER.encode(line)


class TextFormatter(logging.Formatter):
    """``ts level logger msg key=value ...``; a traceback follows on its own lines."""

    def format(self, record: logging.LogRecord) -> str:
        extra = " ".join(f"{k}={v}" for k, v in _fields(record).items())
        line = f"{_timestamp(record)} {record.levelname} {record.name} {record.getMessage()}"
        line = f"{line} {extra}" if extra else line
        if record.exc_info:
            line = f"{line}\n{self.formatException(record.exc_info)}"
        return line


def _formatter_class(log_format: str) -> type[logging.Formatter]:
    if log_format not in FORMATS:
        raise ValueError(f"log format must be one of {', '.join(FORMATS)}, not {log_format!r}")
    return JsonFormatter if log_format == "json" else TextFormatter


def configure(log_format: str, level: str = "info") -> None:
    """Send every log record to stderr as ``log_format`` (text or json) from ``level`` up."""
    handler = logging.StreamHandler()
    handler.setFormatter(_formatter_class(log_format)())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    logging.captureWarnings(True)  # warnings become log lines in the same format


def uvicorn_log_config(log_format: str, level: str = "info") -> dict[str, Any]:
    """A ``logging.config.dictConfig`` for uvicorn: its loggers and ours, in ``log_format``.

    uvicorn applies it in every worker process too. Its own access log is off: the
    request middleware writes one line per request (logger ``dmboot.access``).
    """
    formatter = _formatter_class(log_format)
    handler = {"class": "logging.StreamHandler", "formatter": "dmboot", "stream": "ext://sys.stderr"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"dmboot": {"()": f"{formatter.__module__}.{formatter.__qualname__}"}},
        "handlers": {"default": handler},
        "root": {"handlers": ["default"], "level": level.upper()},
        "loggers": {
            "uvicorn": {"handlers": [], "level": level.upper(), "propagate": True},
            "uvicorn.error": {"handlers": [], "level": level.upper(), "propagate": True},
            "uvicorn.access": {"handlers": [], "level": "WARNING", "propagate": True},
        },
    }


def backend_of(exc: BaseException) -> str:
    """Which backend an error comes from: database, secrets, signer, or app."""
    for cls in type(exc).__mro__:
        name, module = cls.__name__, cls.__module__
        if module.startswith(("sqlalchemy", "psycopg", "sqlite3")) or "Database" in name:
            return "database"
        if name.startswith(("SecretStore", "SecretAccess")):
            return "secrets"
        if name.startswith("Signer"):
            return "signer"
    return "app"


@dataclass
class _Window:
    ends: float
    backend: str
    count: int = 0  # failures after the first in this window, not logged yet


class FailureLog:
    """Logs the first failure of each class per ``interval`` seconds and counts the rest.

    During an outage every request fails the same way; this turns a traceback per
    request into one line when the class first appears and one summary line
    (``failure class X: N more in the last S s``) per window while it lasts. Windows
    whose time is up are summarized on the next :meth:`record` of any class, or by
    :meth:`flush`.
    """

    def __init__(self, logger: logging.Logger, interval: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._log = logger
        self.interval = interval
        self._clock = clock
        self._lock = threading.Lock()
        self._windows: dict[str, _Window] = {}

    def record(self, failure_class: str, exc: BaseException | None = None, *, with_traceback: bool = False,
               **fields: Any) -> None:
        """One failure of ``failure_class`` (``exc`` its cause); ``fields`` go into the first line."""
        backend = backend_of(exc) if exc is not None else "app"
        metrics.count_backend_error(backend, failure_class)
        now = self._clock()
        with self._lock:
            closed = self._close_windows(now)
            window = self._windows.get(failure_class)
            first = window is None
            if first:
                self._windows[failure_class] = _Window(now + self.interval, backend)
            else:
                window.count += 1  # type: ignore[union-attr]
        self._summarize(closed)
        if first:
            error = _one_line(exc) if exc is not None else None
            exc_info = (type(exc), exc, exc.__traceback__) if with_traceback and exc is not None else None
            self._log.error("failure class %s", failure_class, exc_info=exc_info,
                            extra={"failure_class": failure_class, "backend": backend, "count": 1,
                                   "error": error, **fields})

    def flush(self) -> None:
        """Summarize every open window now (at shutdown, or in tests)."""
        with self._lock:
            closed = list(self._windows.items())
            self._windows.clear()
        self._summarize(closed)

    def _close_windows(self, now: float) -> list[tuple[str, _Window]]:
        closed = [(k, w) for k, w in self._windows.items() if w.ends <= now]
        for key, _ in closed:
            del self._windows[key]
        return closed

    def _summarize(self, closed: list[tuple[str, _Window]]) -> None:
        for key, window in closed:
            if window.count:
                self._log.error("failure class %s: %d more in the last %.0f s", key, window.count, self.interval,
                                extra={"failure_class": key, "backend": window.backend, "count": window.count,
                                       "window_seconds": self.interval})


def _one_line(exc: BaseException) -> str:
    text = traceback.format_exception_only(type(exc), exc)[-1].strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


#: The process's failure log (logger ``dmboot.failures``).
failures = FailureLog(logging.getLogger("dmboot.failures"))
