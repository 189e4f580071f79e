"""Publish CRLs (RFC 5280 section 5): a full and a delta CRL per CA, built rarely, served often.

Every CA of ours (the root and each issuing CA) has one cRLNumber sequence shared
by its full and delta CRLs (RFC 5280 5.2.4). A rebuild locks the CA's ``authority``
row, so concurrent replicas draw consecutive numbers; the unique (authority,
number) constraint backs the lock.

When CRLs are built:

* in the same transaction as a revocation (:meth:`CrlService.rebuild_in`): a
  revocation that returns has its CRL already published;
* when a request finds the latest CRL past half its lifetime (well before
  nextUpdate), or finds none; a replica that loses the race to rebuild serves
  the winner's.

Requests are served from the database row, through a per-process cache keyed by
the CRL number, so a replica never serves a CRL older than the newest row and never
re-reads an unchanged one. The delta CRL's base is the oldest full CRL that has not
expired: any relying party holding an unexpired full CRL can apply the delta.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography.hazmat.primitives.serialization import Encoding
from sqlalchemy import Table, bindparam, func, update
from sqlalchemy import select as sa_select
from sqlmodel import Session, col, delete, select

from bootstrap.errors import NotFound
from bootstrap.services.audit import append_event
from bootstrap.services.authorities import AuthorityDirectory, authority_urls
from bootstrap.store.db import Database
from bootstrap.store.models import AuthorityRow, CertificateRow, CrlRow, utcnow
from pki.revocation import REASONS, RevokedEntry, build_crl

__all__ = ["CrlService", "PublishedCrl", "delta_crl_url"]

log = logging.getLogger(__name__)

FULL = "full"
DELTA = "delta"
#: nextUpdate - thisUpdate of a full CRL. Relying parties cache it until nextUpdate.
FULL_VALIDITY = timedelta(days=1)
#: Delta CRLs are short-lived: they carry the news between full CRLs.
DELTA_VALIDITY = timedelta(hours=1)
#: Revocations this close before the base CRL's thisUpdate are repeated in the delta
#: (a transaction that committed just after the base was read is never lost).
_OVERLAP = timedelta(minutes=5)
#: Rows of CRLs that expired longer ago than this are deleted.
_KEEP_EXPIRED = timedelta(days=1)
_CRLS: Table = CrlRow.__table__  # type: ignore[attr-defined]
_HEAD_QUERY = (
    sa_select(_CRLS.c.number, _CRLS.c.this_update, _CRLS.c.next_update)
    .where(_CRLS.c.authority_id == bindparam("authority"), _CRLS.c.kind == bindparam("kind"), _CRLS.c.der.is_not(None))
    .order_by(_CRLS.c.number.desc())
    .limit(1)
)
_DER_QUERY = sa_select(_CRLS.c.der).where(_CRLS.c.authority_id == bindparam("authority"),
                                          _CRLS.c.number == bindparam("number"))


def delta_crl_url(public_url: str, issuer_name: str) -> str:
    """Where the delta CRL of ``issuer_name`` is published (freshestCRL, RFC 5280 5.2.6)."""
    return f"{public_url.rstrip('/')}/crl/{issuer_name}-delta.crl"


@dataclass(frozen=True)
class PublishedCrl:
    """A CRL as served: DER and the facts HTTP caching needs."""

    issuer: str
    kind: str
    number: int
    this_update: datetime
    next_update: datetime
    der: bytes

    @property
    def refresh_at(self) -> datetime:
        """When a request should trigger a rebuild: half-way to nextUpdate."""
        return self.this_update + (self.next_update - self.this_update) / 2


class CrlService:
    """Builds, stores and serves the CRLs of our CAs."""

    def __init__(self, database: Database, authorities: AuthorityDirectory, public_url: str) -> None:
        self._db = database
        self._authorities = authorities
        self._public_url = public_url
        self._cache: dict[tuple[str, str], PublishedCrl] = {}
        self._authority_ids: dict[str, int] = {}
        self._lock = threading.Lock()

    # -- serving ------------------------------------------------------------------------

    def current(self, issuer_name: str, kind: str = FULL, *, now: datetime | None = None) -> PublishedCrl:
        """The latest CRL of ``issuer_name`` (``full`` or ``delta``), rebuilt first if it is due.

        Raises:
            NotFound: no CA of that name.
            SignerError: a due rebuild failed and there is no CRL at all to serve.
        """
        moment = now or utcnow()
        latest = self._latest(issuer_name, kind)
        if latest is None or moment >= latest.refresh_at:
            try:
                self._rebuild_due(issuer_name, latest.number if latest else None, moment)
            except Exception:
                if latest is None or moment >= latest.next_update:
                    raise
                # Still valid: serve it and let the next request try again.
                log.warning("CRL rebuild for %s failed; serving CRL %d", issuer_name, latest.number, exc_info=True)
            latest = self._latest(issuer_name, kind)
            if latest is None:  # pragma: no cover - a rebuild always writes both kinds
                raise NotFound(f"no {kind} CRL for {issuer_name}")
        return latest

    def _latest(self, issuer_name: str, kind: str) -> PublishedCrl | None:
        # Core on a pooled connection, not an ORM session: this runs for every CRL request.
        authority_id = self._authority_id(issuer_name)
        key = (issuer_name, kind)
        with self._db.reader() as connection:
            head = connection.execute(_HEAD_QUERY, {"authority": authority_id, "kind": kind}).first()
            if head is None:
                return None
            number, this_update, next_update = head
            with self._lock:
                cached = self._cache.get(key)
            if cached is not None and cached.number == number:
                return cached
            der = connection.execute(_DER_QUERY, {"authority": authority_id, "number": number}).scalar()
        if der is None:  # superseded between the two reads: read the newer one
            return self._latest(issuer_name, kind)
        published = PublishedCrl(issuer_name, kind, number, this_update, next_update, bytes(der))
        with self._lock:
            self._cache[key] = published
        return published

    def _authority_id(self, issuer_name: str) -> int:
        with self._lock:
            known = self._authority_ids.get(issuer_name)
        if known is not None:
            return known
        with self._db.session() as session:
            authority_id = _id(_authority_named(session, issuer_name))
        with self._lock:  # CA rows never change their id: safe to keep
            self._authority_ids[issuer_name] = authority_id
        return authority_id

    def _rebuild_due(self, issuer_name: str, seen: int | None, now: datetime) -> None:
        with self._db.session() as session:
            authority = _lock_authority(session, issuer_name)
            newest = _newest_full(session, _id(authority))
            if newest is not None and newest.number != seen and now < _refresh_at(newest):
                return  # another replica rebuilt it meanwhile
            self._build(session, authority, now)

    # -- building -------------------------------------------------------------------------

    def rebuild_in(self, session: Session, authority_ids: set[int], *, actor: str,
                   request_id: str | None = None, now: datetime | None = None) -> dict[str, int]:
        """Rebuild the full and delta CRLs of ``authority_ids`` in ``session``'s transaction.

        Returns:
            The new full CRL's number per CA name.
        """
        moment = now or utcnow()
        numbers: dict[str, int] = {}
        for authority_id in sorted(authority_ids):  # one lock order for every caller
            row = session.exec(select(AuthorityRow).where(AuthorityRow.id == authority_id).with_for_update()).one()
            numbers[row.name] = self._build(session, row, moment)
        if numbers:
            append_event(session, actor=actor, action="crl.publish", outcome="success",
                         target=",".join(sorted(numbers)), request_id=request_id, detail={"numbers": numbers})
        return numbers

    def rebuild(self, issuer_name: str, *, actor: str, now: datetime | None = None) -> int:
        """Rebuild ``issuer_name``'s CRLs now; returns the new full CRL's number."""
        with self._db.session() as session:
            authority = _authority_named(session, issuer_name)
            return self.rebuild_in(session, {_id(authority)}, actor=actor, now=now)[issuer_name]

    def _build(self, session: Session, authority: AuthorityRow, now: datetime) -> int:
        """Sign a full and a delta CRL for ``authority`` (whose row the caller has locked)."""
        authority_id = _id(authority)
        ca = self._authorities.authority(session, authority)
        last = session.exec(select(func.max(CrlRow.number)).where(CrlRow.authority_id == authority_id)).one()
        number = int(last or 0) + 1
        this_update = now.replace(microsecond=0)
        full_url = authority_urls(self._public_url, authority.name).crl[0]
        entries = _revoked(session, authority_id, this_update, since=None)
        full = build_crl(ca.certificate, ca.signer, entries, number=number, this_update=this_update,
                         next_update=this_update + FULL_VALIDITY, distribution_point=full_url,
                         freshest=delta_crl_url(self._public_url, authority.name))
        base = _delta_base(session, authority_id, now) or (number, this_update)
        delta_entries = _revoked(session, authority_id, this_update, since=base[1] - _OVERLAP)
        delta = build_crl(ca.certificate, ca.signer, delta_entries, number=number + 1, this_update=this_update,
                          next_update=this_update + DELTA_VALIDITY, distribution_point=full_url,
                          delta_base=base[0])
        # Only the newest CRL of each kind keeps its DER; older rows keep the facts.
        session.exec(update(CrlRow).where(col(CrlRow.authority_id) == authority_id).values(der=None))
        session.exec(delete(CrlRow).where(col(CrlRow.authority_id) == authority_id,
                                          col(CrlRow.next_update) < now - _KEEP_EXPIRED))
        for kind, crl_number, crl, count, base_number in ((FULL, number, full, len(entries), None),
                                                          (DELTA, number + 1, delta, len(delta_entries), base[0])):
            session.add(CrlRow(authority_id=authority_id, number=crl_number, kind=kind, base_number=base_number,
                               this_update=this_update, next_update=crl.next_update_utc or this_update,
                               entries=count, der=crl.public_bytes(Encoding.DER)))
        session.flush()
        log.info("published CRL %d (%d entries) and delta %d for %s", number, len(entries), number + 1,
                 authority.name)
        return number



def _revoked(session: Session, authority_id: int, now: datetime, *, since: datetime | None) -> list[RevokedEntry]:
    """Revoked, unexpired certificates of ``authority_id`` (RFC 5280 3.3: expired ones may go)."""
    query = select(CertificateRow.serial_hex, CertificateRow.revoked_at, CertificateRow.revocation_reason).where(
        CertificateRow.authority_id == authority_id,
        CertificateRow.status == "revoked",
        col(CertificateRow.not_after) > now,
    )
    if since is not None:
        query = query.where(col(CertificateRow.revoked_at) >= since)
    return [
        RevokedEntry(int(serial, 16), revoked_at or now, REASONS.get(reason or "unspecified"))
        for serial, revoked_at, reason in session.exec(query)
    ]


def _delta_base(session: Session, authority_id: int, now: datetime) -> tuple[int, datetime] | None:
    """(number, thisUpdate) of the oldest full CRL that has not expired."""
    row = session.exec(
        select(CrlRow.number, CrlRow.this_update)
        .where(CrlRow.authority_id == authority_id, CrlRow.kind == FULL, col(CrlRow.next_update) > now)
        .order_by(col(CrlRow.number))
        .limit(1)
    ).first()
    return (int(row[0]), row[1]) if row else None


def _newest_full(session: Session, authority_id: int) -> CrlRow | None:
    query = (select(CrlRow).where(CrlRow.authority_id == authority_id, CrlRow.kind == FULL)
             .order_by(col(CrlRow.number).desc()).limit(1))
    return session.exec(query).first()


def _refresh_at(row: CrlRow) -> datetime:
    return row.this_update + (row.next_update - row.this_update) / 2


def _authority_named(session: Session, name: str) -> AuthorityRow:
    row = session.exec(select(AuthorityRow).where(AuthorityRow.name == name)).first()
    if row is None:
        raise NotFound(f"no CA named {name!r}", field="issuer")
    return row


def _lock_authority(session: Session, name: str) -> AuthorityRow:
    # FOR UPDATE on PostgreSQL; SQLite's BEGIN IMMEDIATE already serializes writers.
    row = session.exec(select(AuthorityRow).where(AuthorityRow.name == name).with_for_update()).first()
    if row is None:
        raise NotFound(f"no CA named {name!r}", field="issuer")
    return row


def _id(row: AuthorityRow) -> int:
    if row.id is None:  # pragma: no cover - rows from the database have ids
        raise RuntimeError("authority row has no id")
    return row.id
