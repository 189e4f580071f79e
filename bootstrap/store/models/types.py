"""Column types and helpers every table shares: UTC time, and the id a stored row has."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import DateTime, Dialect, Interval
from sqlalchemy.types import TypeDecorator, TypeEngine

__all__ = ["UtcDateTime", "row_id", "utcnow"]


def utcnow() -> datetime:
    """Now, as an aware UTC datetime (what every datetime column stores)."""
    return datetime.now(UTC)


def row_id(value: int | None) -> int:
    """The primary key of a row read from (or flushed to) the database.

    Raises:
        ValueError: the row has not been written yet, so it has no id.
    """
    if value is None:
        raise ValueError("the row has no id: it was not written to the database yet")
    return value


class UtcDateTime(TypeDecorator[datetime]):
    """A point in time, stored in UTC and read back as an aware UTC ``datetime``.

    PostgreSQL stores it as ``timestamp with time zone``; SQLite, which has no time
    zones, as the UTC wall-clock time. A naive ``datetime`` is refused on write:
    whether it meant UTC or local time cannot be known, and guessing shifts it by hours.
    """

    impl = DateTime
    cache_ok = True

    def __init__(self) -> None:
        super().__init__(timezone=True)

    def coerce_compared_value(self, op: Any, value: Any) -> TypeEngine[Any]:
        # ``column + timedelta`` is interval arithmetic, not a datetime to convert.
        return Interval() if isinstance(value, timedelta) else self

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"a datetime column takes a datetime, not {type(value).__name__}")
        if value.utcoffset() is None:
            raise ValueError(f"naive datetime {value.isoformat()} refused: give it a time zone (UTC)")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        # SQLite hands back the stored UTC wall-clock time without an offset.
        return value.replace(tzinfo=UTC) if value.utcoffset() is None else value.astimezone(UTC)
