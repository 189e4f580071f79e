"""Read the audit trail: filtered pages for the API and console, JSON lines for export."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import col, select

from bootstrap.errors import InvalidRequest
from bootstrap.store.db import Database
from bootstrap.store.models import AuditEvent

__all__ = ["AuditFilter", "event_json", "export_events", "search_events"]

_OUTCOMES = ("success", "failure")
_MAX_LIMIT = 1000


@dataclass(frozen=True)
class AuditFilter:
    """Which events: each set field must match (actor and action also match as prefixes with ``*``)."""

    actor: str | None = None
    action: str | None = None
    outcome: str | None = None
    target: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def __post_init__(self) -> None:
        if self.outcome is not None and self.outcome not in _OUTCOMES:
            raise InvalidRequest(f"outcome must be one of {', '.join(_OUTCOMES)}", field="outcome")

    @classmethod
    def parse(cls, params: dict[str, str]) -> AuditFilter:
        """From query parameters; times are ISO 8601 (``2026-01-31`` or ``2026-01-31T12:00:00Z``).

        Raises:
            InvalidRequest: naming the parameter.
        """
        values: dict[str, Any] = {k: (params.get(k) or None) for k in ("actor", "action", "outcome", "target")}
        for key in ("since", "until"):
            raw = params.get(key)
            if raw:
                try:
                    values[key] = datetime.fromisoformat(raw.replace("Z", "+00:00"))
                except ValueError:
                    raise InvalidRequest(f"{key} must be an ISO 8601 date or time, not {raw!r}", field=key) from None
                if values[key].tzinfo is None:
                    values[key] = values[key].replace(tzinfo=UTC)
        return cls(**values)

    def clauses(self) -> list[ColumnElement[bool]]:
        found: list[ColumnElement[bool]] = []
        for name in ("actor", "action", "target"):
            value: str | None = getattr(self, name)
            if value:
                column = col(getattr(AuditEvent, name))
                found.append(column.startswith(value[:-1], autoescape=True) if value.endswith("*")
                             else column == value)
        if self.outcome:
            found.append(col(AuditEvent.outcome) == self.outcome)
        if self.since:
            found.append(col(AuditEvent.at) >= self.since)
        if self.until:
            found.append(col(AuditEvent.at) < self.until)
        return found


def event_json(event: AuditEvent) -> dict[str, Any]:
    """One event as JSON, its detail decoded."""
    try:
        detail = json.loads(event.detail)
    except ValueError:
        detail = event.detail
    return {"seq": event.seq, "at": event.at.isoformat(), "actor": event.actor, "action": event.action,
            "outcome": event.outcome, "target": event.target, "request_id": event.request_id, "detail": detail,
            "prev_hash": event.prev_hash, "hash": event.hash}


def search_events(database: Database, where: AuditFilter, *, limit: int = 100,
                  before_seq: int | None = None) -> list[AuditEvent]:
    """Matching events, newest first; page with ``before_seq`` = the last seq of the previous page."""
    query = select(AuditEvent).where(*where.clauses()).order_by(col(AuditEvent.seq).desc())
    if before_seq is not None:
        query = query.where(col(AuditEvent.seq) < before_seq)
    with database.read_session() as session:
        return list(session.exec(query.limit(min(max(limit, 1), _MAX_LIMIT))))


def export_events(database: Database, where: AuditFilter, *, batch: int = 1000) -> Iterator[str]:
    """Matching events, oldest first, as JSON lines (each with its newline)."""
    last = 0
    while True:
        query = (select(AuditEvent).where(*where.clauses(), col(AuditEvent.seq) > last)
                 .order_by(col(AuditEvent.seq)).limit(batch))
        with database.read_session() as session:
            rows = list(session.exec(query))
        for row in rows:
            yield json.dumps(event_json(row), sort_keys=True, separators=(",", ":")) + "\n"
        if len(rows) < batch:
            return
        last = rows[-1].seq
