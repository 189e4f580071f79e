"""Pre-signed OCSP responses (RFC 5019): one per serial and CertID hash, shared by every replica.

Two layers under :class:`~bootstrap.services.ocsp.OcspResponder`:

* the ``ocsp_response`` table: a response signed once (on the first nonce-less request,
  or right after a revocation) is reused by every replica until half its validity is
  gone, then signed again. A revocation deletes the serial's rows in its own
  transaction; a "good" response is stored only if the serial is not revoked, and a
  stored one is believed only while the certificate's status still says so;
* a per-process memory cache over it, which answers without the database. It learns
  about revocations made by other replicas from ``revoked_certificate`` (indexed by
  ``revoked_at``) at most every ``sync_seconds``; the replica that revokes evicts at
  once. A reader that finds the sync due takes the slow path (a thread, the database).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Table, bindparam, delete, exists, insert, literal, select
from sqlalchemy.exc import IntegrityError

from bootstrap.store.db import Database
from bootstrap.store.models import OcspResponseRow, RevokedRow, utcnow

__all__ = ["CacheKey", "OcspCache", "StoredResponse"]

#: (authority id, serial hex, CertID hash name)
CacheKey = tuple[int, str, str]
#: How far back a sync looks for revocations: longer than any revoking transaction runs.
_SYNC_WINDOW = timedelta(minutes=2)
_RESPONSES: Table = OcspResponseRow.__table__  # type: ignore[attr-defined]
_REVOKED: Table = RevokedRow.__table__  # type: ignore[attr-defined]
_LOAD = select(_RESPONSES.c.der, _RESPONSES.c.cert_status, _RESPONSES.c.this_update, _RESPONSES.c.next_update).where(
    _RESPONSES.c.authority_id == bindparam("authority"), _RESPONSES.c.serial_hex == bindparam("serial"),
    _RESPONSES.c.hash_algorithm == bindparam("hash"))
_RECENT = select(_REVOKED.c.serial_hex, _REVOKED.c.id).where(_REVOKED.c.revoked_at >= bindparam("since"))


@dataclass(frozen=True)
class StoredResponse:
    """A signed nonce-less response and its validity."""

    der: bytes
    cert_status: str
    this_update: datetime
    next_update: datetime

    def fresh(self, now: datetime, reuse: timedelta) -> bool:
        return now < min(self.this_update + reuse, self.next_update)


class OcspCache:
    """Memory over the ``ocsp_response`` table, kept honest by the revocation feed."""

    def __init__(self, database: Database, *, reuse: timedelta, sync_seconds: float = 1.0,
                 limit: int = 100_000) -> None:
        self._db = database
        self.reuse = reuse
        self._sync_seconds = sync_seconds
        self._limit = limit
        self._memory: dict[CacheKey, StoredResponse] = {}
        self._by_serial: dict[str, list[CacheKey]] = {}
        self._seen: dict[str, int] = {}
        self._synced_at = -1e9
        self._synced_wall = utcnow() - _SYNC_WINDOW
        self._lock = threading.Lock()
        #: Hits and misses of the memory layer, for metrics.
        self.hits = 0
        self.misses = 0

    # -- memory -----------------------------------------------------------------------------

    def peek(self, key: CacheKey, now: datetime) -> StoredResponse | None:
        """A fresh response from memory, or None (a miss, or a sync is due): never blocks."""
        if time.monotonic() - self._synced_at >= self._sync_seconds:
            return None
        found = self._memory.get(key)
        if found is None or not found.fresh(now, self.reuse):
            return None
        self.hits += 1
        return found

    def evict(self, serials: Iterable[str]) -> None:
        """Forget what this process holds for ``serials`` (after they were revoked)."""
        with self._lock:
            for serial in serials:
                for key in self._by_serial.pop(serial, ()):
                    self._memory.pop(key, None)

    def _remember(self, key: CacheKey, response: StoredResponse) -> None:
        with self._lock:
            if len(self._memory) >= self._limit:  # drop the older half (dicts keep insertion order)
                for old in list(self._memory)[: self._limit // 2]:
                    del self._memory[old]
                self._by_serial.clear()
                for known in self._memory:
                    self._by_serial.setdefault(known[1], []).append(known)
            self._memory[key] = response
            self._by_serial.setdefault(key[1], []).append(key)

    # -- the revocation feed ----------------------------------------------------------------

    def sync(self) -> None:
        """Evict what other replicas revoked since the last sync (if one is due)."""
        if time.monotonic() - self._synced_at < self._sync_seconds:
            return
        started, wall = time.monotonic(), utcnow()
        with self._db.reader() as connection:
            rows = connection.execute(_RECENT, {"since": self._synced_wall - _SYNC_WINDOW}).all()
        fresh = [serial for serial, row_id in rows if self._seen.get(serial) != row_id]
        self.evict(fresh)
        with self._lock:
            self._seen = {serial: row_id for serial, row_id in rows}
            self._synced_at, self._synced_wall = started, wall

    # -- the table ------------------------------------------------------------------------

    def load(self, key: CacheKey, status: str, now: datetime) -> StoredResponse | None:
        """The stored response for ``key`` if it is fresh and still says ``status``."""
        self.misses += 1
        with self._db.reader() as connection:
            row = connection.execute(_LOAD, {"authority": key[0], "serial": key[1], "hash": key[2]}).first()
        if row is None:
            return None
        stored = StoredResponse(bytes(row[0]), row[1], row[2], row[3])
        if stored.cert_status != status or not stored.fresh(now, self.reuse):
            return None
        self._remember(key, stored)
        return stored

    def store(self, key: CacheKey, response: StoredResponse) -> None:
        """Keep ``response`` for every replica; a "good" one only while the serial is not revoked."""
        if response.cert_status == "unknown":
            # Not stored for every replica: anyone can ask about any serial, and the table
            # would grow with their guesses. Memory is bounded.
            self._remember(key, response)
            return
        row = {"authority_id": key[0], "serial_hex": key[1], "hash_algorithm": key[2],
               "cert_status": response.cert_status, "this_update": response.this_update,
               "next_update": response.next_update, "der": response.der}
        values: dict[str, Any] = {name: literal(value, _RESPONSES.c[name].type) for name, value in row.items()}
        guarded = select(*list(values.values()))
        if response.cert_status == "good":
            guarded = guarded.where(~exists().where(_REVOKED.c.serial_hex == key[1]))
        try:
            with self._db.session() as session:
                session.execute(delete(_RESPONSES).where(
                    _RESPONSES.c.authority_id == key[0], _RESPONSES.c.serial_hex == key[1],
                    _RESPONSES.c.hash_algorithm == key[2]))
                result = session.execute(insert(_RESPONSES).from_select(list(values), guarded))
                stored = int(getattr(result, "rowcount", 0))
        except IntegrityError:
            return  # another replica stored one for the same key at the same moment: it serves
        if stored:  # not when the serial was revoked meanwhile: this "good" is already stale
            self._remember(key, response)
