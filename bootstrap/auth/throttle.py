"""Login throttling per name: failed attempts slow down the next ones, on every replica.

The count lives in the database (``login_throttle``), not in a process
(DM-SYS-001). Every attempt is counted *before* the password is checked
(:meth:`LoginThrottle.attempt`, one locked row update), so parallel guesses
cannot all slip in before the first failure is recorded: of any number of
concurrent attempts at most :data:`FREE_FAILURES` are evaluated before the name
is locked. Each attempt past that locks the name for twice as long as the one
before, from :data:`BASE_DELAY` up to :data:`MAX_DELAY`. A success clears the
count. Keys are
``admin:<username>`` for console logins (known or not, so probing names learns
nothing) and ``claim:<DevID>`` for subscriber claim codes.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from bootstrap.errors import TooManyAttempts
from bootstrap.store.db import Database
from bootstrap.store.models import LoginThrottleRow, utcnow

__all__ = ["BASE_DELAY", "FREE_FAILURES", "MAX_DELAY", "LoginThrottle"]

FREE_FAILURES = 5
BASE_DELAY = timedelta(seconds=30)
MAX_DELAY = timedelta(minutes=15)


class LoginThrottle:
    """Counts failures per key and refuses attempts while the key is locked."""

    def __init__(self, database: Database, *, free_failures: int = FREE_FAILURES,
                 base_delay: timedelta = BASE_DELAY, max_delay: timedelta = MAX_DELAY) -> None:
        self._db = database
        self._free = free_failures
        self._base = base_delay
        self._max = max_delay

    def check(self, key: str, *, now: datetime | None = None) -> None:
        """Raise if ``key`` is locked now.

        Raises:
            TooManyAttempts: with the seconds until the lock ends.
        """
        now = now or utcnow()
        with self._db.session() as session:
            row = session.exec(select(LoginThrottleRow).where(LoginThrottleRow.key == key)).first()
        if row is not None and row.locked_until is not None and row.locked_until > now:
            wait = math.ceil((row.locked_until - now).total_seconds())
            raise TooManyAttempts(f"too many failed attempts; try again in {wait} seconds", retry_after=wait)

    def attempt(self, key: str, *, now: datetime | None = None) -> None:
        """Count an attempt for ``key`` before it is evaluated; raise if ``key`` is locked.

        The attempt counts as a failure until :meth:`success` clears it, so the
        lock is in place before a slow password hash even starts.

        Raises:
            TooManyAttempts: with the seconds until the lock ends.
        """
        now = now or utcnow()
        for _ in range(2):  # a concurrent first attempt may insert the row first
            try:
                with self._db.session() as session:
                    self._count(session, key, now)
                return
            except IntegrityError:
                continue
        raise TooManyAttempts("too many concurrent attempts; try again", retry_after=1)

    def _count(self, session: Session, key: str, now: datetime) -> None:
        # FOR UPDATE on PostgreSQL; SQLite transactions are BEGIN IMMEDIATE, serialized anyway.
        row = session.exec(select(LoginThrottleRow).where(LoginThrottleRow.key == key).with_for_update()).first()
        if row is None:
            row = LoginThrottleRow(key=key)
        elif row.locked_until is not None and row.locked_until > now:
            wait = math.ceil((row.locked_until - now).total_seconds())
            raise TooManyAttempts(f"too many failed attempts; try again in {wait} seconds", retry_after=wait)
        row.failures += 1
        row.last_failure_at = now
        over = row.failures - self._free
        if over >= 0:  # this attempt is the last free one: lock before it is evaluated
            delay = min(self._base * (2 ** min(over, 20)), self._max)
            row.locked_until = now + delay
        session.add(row)

    def success(self, key: str) -> None:
        """Forget the failures of ``key``."""
        with self._db.session() as session:
            row = session.exec(select(LoginThrottleRow).where(LoginThrottleRow.key == key)).first()
            if row is not None:
                session.delete(row)
