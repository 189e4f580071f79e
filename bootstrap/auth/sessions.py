"""Web console sessions, kept server-side so any replica can serve any request (DM-SYS-001).

The cookie carries a random 256-bit token; the ``console_session`` table keeps
only its SHA-256. A session ends when it has been idle for ``idle`` or has
lived for ``absolute``, at logout, or when its admin is disabled or changes
password. Logging in (and passing the TOTP step) always issues a new token, so
a token planted before login is worthless (session fixation).

Two kinds: ``admin`` sessions (stage ``totp`` until the second factor is given,
then ``active``) and ``subscriber`` sessions, opened by a device's claim code and
limited to that device.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlmodel import col, delete, select

from bootstrap.store.db import Database
from bootstrap.store.models import ConsoleSessionRow, utcnow

__all__ = ["ADMIN_ABSOLUTE", "ADMIN_IDLE", "SUBSCRIBER_ABSOLUTE", "SessionInfo", "SessionService"]

ADMIN_IDLE = timedelta(minutes=15)
ADMIN_ABSOLUTE = timedelta(hours=8)
SUBSCRIBER_ABSOLUTE = timedelta(minutes=30)
#: last_seen_at is written at most this often, so reading pages does not write on every request.
_TOUCH_EVERY = timedelta(seconds=30)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class SessionInfo:
    """A live session."""

    id: int
    kind: str
    stage: str
    admin_id: int | None
    dev_id: str | None
    created_at: datetime
    expires_at: datetime


class SessionService:
    """Starts, finds, promotes and ends console sessions."""

    def __init__(self, database: Database, *, idle: timedelta = ADMIN_IDLE, absolute: timedelta = ADMIN_ABSOLUTE,
                 subscriber_absolute: timedelta = SUBSCRIBER_ABSOLUTE) -> None:
        self._db = database
        self.idle = idle
        self.absolute = absolute
        self.subscriber_absolute = subscriber_absolute

    def start_admin(self, admin_id: int, *, stage: str = "active", client: str | None = None,
                    now: datetime | None = None) -> str:
        """A new admin session; returns the token for the cookie (never stored)."""
        return self._start("admin", admin_id=admin_id, dev_id=None, stage=stage, client=client,
                           lifetime=self.absolute, now=now)

    def start_subscriber(self, dev_id: str, *, client: str | None = None, now: datetime | None = None) -> str:
        """A new subscriber session for ``dev_id``; returns the token for the cookie."""
        return self._start("subscriber", admin_id=None, dev_id=dev_id, stage="active", client=client,
                           lifetime=self.subscriber_absolute, now=now)

    def _start(self, kind: str, *, admin_id: int | None, dev_id: str | None, stage: str, client: str | None,
               lifetime: timedelta, now: datetime | None) -> str:
        now = now or utcnow()
        token = secrets.token_urlsafe(32)
        with self._db.session() as session:
            session.add(ConsoleSessionRow(token_hash=_digest(token), kind=kind, admin_id=admin_id, dev_id=dev_id,
                                          stage=stage, created_at=now, last_seen_at=now,
                                          expires_at=now + lifetime, client=(client or "")[:64] or None))
        return token

    def lookup(self, token: str, *, now: datetime | None = None) -> SessionInfo | None:
        """The live session of ``token``, or None (unknown, idle too long, or past its lifetime)."""
        if not token:
            return None
        now = now or utcnow()
        with self._db.session() as session:
            row = session.exec(select(ConsoleSessionRow).where(ConsoleSessionRow.token_hash == _digest(token))).first()
            if row is None:
                return None
            if row.expires_at <= now or row.last_seen_at + self.idle <= now:
                session.delete(row)
                return None
            if now - row.last_seen_at >= _TOUCH_EVERY:
                row.last_seen_at = now
                session.add(row)
            return SessionInfo(id=row.id or 0, kind=row.kind, stage=row.stage, admin_id=row.admin_id,
                               dev_id=row.dev_id, created_at=row.created_at,
                               expires_at=row.expires_at)

    def promote(self, token: str, *, now: datetime | None = None) -> str:
        """After the TOTP step: end ``token``'s session and start an active one for the same admin.

        Raises:
            KeyError: no live session for ``token``.
        """
        info = self.lookup(token, now=now)
        if info is None or info.admin_id is None:
            raise KeyError("no live session")
        self.end(token)
        return self.start_admin(info.admin_id, stage="active", now=now)

    def end(self, token: str) -> None:
        """End the session of ``token`` (logout); unknown tokens are ignored."""
        with self._db.session() as session:
            session.exec(delete(ConsoleSessionRow).where(col(ConsoleSessionRow.token_hash) == _digest(token)))

    def purge_expired(self, *, now: datetime | None = None) -> int:
        """Delete sessions past their lifetime; returns how many."""
        now = now or utcnow()
        with self._db.session() as session:
            result = session.exec(delete(ConsoleSessionRow).where(
                (col(ConsoleSessionRow.expires_at) <= now) | (col(ConsoleSessionRow.last_seen_at) <= now - self.idle)))
            return int(result.rowcount or 0)
