"""Build and store CRLs in the background, one replica at a time (RFC 5280 section 5).

Revoking writes a ``revoked_certificate`` row (:mod:`bootstrap.services.revocation`);
this publisher turns those rows into signed CRLs. A pass (:meth:`CrlPublisher.publish`)
looks at each of our CAs in its own transaction:

* PostgreSQL: ``pg_try_advisory_xact_lock`` on the CA - a replica that does not get
  it skips the CA (another one is publishing it); SQLite: the transaction's write lock
  (``BEGIN IMMEDIATE``) lets one process at a time in, and it re-reads what is due;
* what is due: a scope whose CRL is past half its lifetime, never published, or older
  than revocations in it (``revoked_certificate.id`` > the CRL's ``log_upto``);
* new revocations republish their partitions and the delta CRL at once; the complete
  CRL (the expensive one: 100,000 entries take about a second to sign and encode)
  at most every ``full_after`` (a minute in the background, at once on demand);
* every CRL of a CA draws its cRLNumber from the CA's one sequence (max + 1 under the
  lock; the unique (authority, number) constraint backs it).

The background thread (:meth:`start`) runs a pass every ``interval`` seconds and at
once when :meth:`wake` is called (after a revocation in this process); ``dmboot crl
publish`` runs one pass on demand.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cryptography import x509
from sqlalchemy import Table, func, text, update
from sqlalchemy import select as sa_select
from sqlmodel import Session, col, delete, select

from bootstrap.services.audit import append_event
from bootstrap.services.authorities import AuthorityDirectory
from bootstrap.services.crl import (
    DELTA,
    DELTA_VALIDITY,
    FULL,
    FULL_VALIDITY,
    PARTITION,
    crl_url,
    delta_crl_url,
    partition_scope,
)
from bootstrap.store.db import Database
from bootstrap.store.models import AuthorityRow, CrlRow, RevokedRow, row_id, utcnow
from pki.revocation import REASONS, encode_crl

__all__ = ["CrlPublisher", "PublishReport"]

log = logging.getLogger(__name__)

#: In the background, the complete CRL is rebuilt for new revocations at most this often.
FULL_AFTER = timedelta(minutes=1)
#: Revocations this close before the base CRL's thisUpdate are repeated in the delta
#: (a transaction that committed just after the base was read is never lost).
_OVERLAP = timedelta(minutes=5)
#: Rows of CRLs that expired longer ago than this are deleted.
_KEEP_EXPIRED = timedelta(days=1)
#: pg_try_advisory_xact_lock(class, object): the class for "publish this CA's CRLs" (object: schema and CA).
_LOCK_CLASS = 0x43524C
_CRLS: Table = CrlRow.__table__  # type: ignore[attr-defined]
_REVOKED: Table = RevokedRow.__table__  # type: ignore[attr-defined]
#: A CRL entry: serial, revocationDate, reason.
Entry = tuple[int, datetime, x509.ReasonFlags | None]


@dataclass(frozen=True)
class PublishReport:
    """What one pass published: the new CRL number per scope, and the CAs another replica had."""

    numbers: dict[str, int]
    skipped: tuple[str, ...] = ()


#: Called after each CA's CRLs are stored: (CA name, {scope: (number, entries, DER bytes)}).
Observer = Callable[[str, dict[str, tuple[int, int, int]]], None]


@dataclass
class _Head:
    number: int
    this_update: datetime
    next_update: datetime
    log_upto: int

    def due(self, now: datetime) -> bool:
        return now >= self.this_update + (self.next_update - self.this_update) / 2


class CrlPublisher:
    """Publishes the CRLs of our CAs when they are due."""

    def __init__(self, database: Database, authorities: AuthorityDirectory, public_url: str, *,
                 interval: float = 2.0, observer: Observer | None = None) -> None:
        self._db = database
        self._authorities = authorities
        self._public_url = public_url
        self._interval = interval
        #: A hook for metrics (CRL age, size, number); see bootstrap.metrics when present.
        self.observer = observer
        #: Called after every background pass (the runtime pre-signs revoked OCSP responses here).
        self.after_pass: Callable[[], object] | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- the background thread ------------------------------------------------------------

    def start(self) -> None:
        """Publish in a daemon thread every ``interval`` seconds (and when woken) until :meth:`stop`."""
        if self._thread is not None or self._interval <= 0:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="crl-publisher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None

    def wake(self) -> None:
        """Ask the background thread for a pass now (after a revocation)."""
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.publish()
                if self.after_pass is not None:
                    self.after_pass()
            except Exception:  # the thread must survive a database or signer outage
                log.warning("CRL publishing failed; retrying in %.0f s", self._interval, exc_info=True)
            self._wake.wait(self._interval)
            self._wake.clear()

    # -- one pass ---------------------------------------------------------------------------

    def publish(self, *, now: datetime | None = None, full_after: timedelta = FULL_AFTER, force: bool = False,
                actor: str = "system:crl") -> PublishReport:
        """Publish every CRL that is due; ``force`` republishes all of them.

        Raises:
            SignerError: a CA key could not sign (what was stored before stays served).
        """
        moment = (now or utcnow()).replace(microsecond=0)
        with self._db.reader() as connection:
            authorities = [(int(i), str(n)) for i, n in connection.execute(
                select(AuthorityRow.id, AuthorityRow.name).where(col(AuthorityRow.not_after) > moment)
                .order_by(col(AuthorityRow.id)))]
        numbers: dict[str, int] = {}
        skipped: list[str] = []
        for authority_id, name in authorities:
            with self._db.session() as session:
                if not self._lock(session, authority_id):
                    skipped.append(name)
                    continue
                row = session.exec(select(AuthorityRow).where(AuthorityRow.id == authority_id)).one()
                built = self._publish_ca(session, row, moment, full_after=full_after, force=force)
                if built:
                    append_event(session, actor=actor, action="crl.publish", outcome="success", target=name,
                                 detail={"numbers": {scope: n for scope, (n, _, _) in built.items()}})
            numbers.update({scope: n for scope, (n, _, _) in built.items()})
            if built and self.observer is not None:
                self.observer(name, built)
        return PublishReport(numbers, tuple(skipped))

    def _lock(self, session: Session, authority_id: int) -> bool:
        if self._db.is_sqlite:
            return True  # BEGIN IMMEDIATE: this transaction holds the database's write lock
        # Advisory locks are per database, not per schema: the key names the schema too, so services
        # that share a database in schemas of their own never wait for each other's publishers.
        query = text("SELECT pg_try_advisory_xact_lock(:class, hashtext(current_schema() || '/' || :object))")
        return bool(session.connection().execute(query, {"class": _LOCK_CLASS, "object": str(authority_id)}).scalar())

    def _publish_ca(self, session: Session, authority: AuthorityRow, now: datetime, *, full_after: timedelta,
                    force: bool) -> dict[str, tuple[int, int, int]]:
        authority_id = row_id(authority.id)
        heads = _heads(session, authority_id)
        newest = session.exec(select(func.max(RevokedRow.id)).where(RevokedRow.authority_id == authority_id)).one()
        high = int(newest or 0)
        changed = _changed_scopes(session, authority_id, min((h.log_upto for h in heads.values()), default=0))
        partitions = {scope for kind, scope in heads if kind == PARTITION}
        if authority.kind == "issuing" and self._authorities.crl_partitions:
            partitions |= {partition_scope(authority.name, n) for n in range(self._authorities.crl_partitions)}
        partitions |= {scope for scope in changed if scope != authority.name}
        full = heads.get((FULL, authority.name))
        full_due = force or full is None or full.due(now) or (
            full.log_upto < high and now - full.this_update >= full_after)
        delta = heads.get((DELTA, authority.name))
        delta_due = full_due or delta is None or delta.due(now) or delta.log_upto < high
        due_partitions = sorted(p for p in partitions if force or _due(heads.get((PARTITION, p)), changed.get(p), now))
        if not (full_due or delta_due or due_partitions):
            return {}
        ca = self._authorities.authority(session, authority)
        last = session.exec(select(func.max(CrlRow.number)).where(CrlRow.authority_id == authority_id)).one()
        number = int(last or 0)
        root = authority.kind == "root"
        built: dict[str, tuple[int, int, int]] = {}

        def store(kind: str, scope: str, entries: list[Entry], validity: timedelta, **extra: Any) -> None:
            nonlocal number
            number += 1
            der = encode_crl(ca.certificate, ca.signer, entries, number=number, this_update=now,
                             next_update=now + validity, only_ca_certs=root, **extra)
            session.exec(update(CrlRow).where(col(CrlRow.authority_id) == authority_id, col(CrlRow.kind) == kind,
                                              col(CrlRow.scope) == scope).values(der=None))
            session.add(CrlRow(authority_id=authority_id, number=number, kind=kind, scope=scope,
                               base_number=extra.get("delta_base"), this_update=now, next_update=now + validity,
                               entries=len(entries), der=der, log_upto=high))
            session.flush()
            built[scope if kind != DELTA else f"{scope}-delta"] = (number, len(entries), len(der))

        if full_due:
            store(FULL, authority.name, _revoked(session, authority_id, now), FULL_VALIDITY,
                  freshest=delta_crl_url(self._public_url, authority.name))
            full = _heads(session, authority_id)[(FULL, authority.name)]
        if delta_due and full is not None:
            base = _delta_base(session, authority_id, now) or (full.number, full.this_update)
            store(DELTA, authority.name, _revoked(session, authority_id, now, since=base[1] - _OVERLAP),
                  DELTA_VALIDITY, delta_base=base[0])
        for scope in due_partitions:
            store(PARTITION, scope, _revoked(session, authority_id, now, scope=scope), FULL_VALIDITY,
                  distribution_point=crl_url(self._public_url, scope))
        session.exec(delete(CrlRow).where(col(CrlRow.authority_id) == authority_id,
                                          col(CrlRow.next_update) < now - _KEEP_EXPIRED))
        log.info("published %d CRL(s) of %s up to number %d", len(built), authority.name, number)
        return built


def _due(head: _Head | None, changed_upto: int | None, now: datetime) -> bool:
    return head is None or head.due(now) or (changed_upto is not None and changed_upto > head.log_upto)


def _heads(session: Session, authority_id: int) -> dict[tuple[str, str], _Head]:
    """The newest stored CRL of each (kind, scope) of a CA."""
    crls = _CRLS.c
    query = sa_select(crls.kind, crls.scope, crls.number, crls.this_update, crls.next_update, crls.log_upto).where(
        crls.authority_id == authority_id, crls.der.is_not(None))
    heads: dict[tuple[str, str], _Head] = {}
    for kind, scope, number, this_update, next_update, log_upto in session.execute(query):
        known = heads.get((kind, scope))
        if known is None or number > known.number:
            heads[(kind, scope)] = _Head(number, this_update, next_update, log_upto)
    return heads


def _changed_scopes(session: Session, authority_id: int, since_id: int) -> dict[str, int]:
    """Scopes with revocations after ``since_id``, and the newest such revocation of each."""
    query = (select(RevokedRow.scope, func.max(RevokedRow.id))
             .where(RevokedRow.authority_id == authority_id, col(RevokedRow.id) > since_id)
             .group_by(col(RevokedRow.scope)))
    return {str(scope): int(upto or 0) for scope, upto in session.exec(query)}


def _revoked(session: Session, authority_id: int, now: datetime, *, since: datetime | None = None,
             scope: str | None = None) -> list[Entry]:
    """(serial, revocationDate, reason) of the revoked, unexpired certificates of a CA (RFC 5280 3.3)."""
    revoked = _REVOKED.c
    query = sa_select(revoked.serial_hex, revoked.revoked_at, revoked.reason).where(
        revoked.authority_id == authority_id, revoked.not_after > now)
    if since is not None:
        query = query.where(revoked.revoked_at >= since)
    if scope is not None:
        query = query.where(revoked.scope == scope)
    # Core rows, not ORM objects: 100,000 of them per complete CRL.
    return [(int(serial, 16), revoked_at, REASONS.get(reason))
            for serial, revoked_at, reason in session.connection().execute(query)]


def _delta_base(session: Session, authority_id: int, now: datetime) -> tuple[int, datetime] | None:
    """(number, thisUpdate) of the oldest full CRL that has not expired."""
    row = session.exec(
        select(CrlRow.number, CrlRow.this_update)
        .where(CrlRow.authority_id == authority_id, CrlRow.kind == FULL, col(CrlRow.next_update) > now)
        .order_by(col(CrlRow.number))
        .limit(1)
    ).first()
    return (int(row[0]), row[1]) if row else None


