"""Issue certificates: check the request, sign, record, then return.

Invariant: a certificate is committed to the database (with its audit event)
before it is returned to anyone; when recording fails, the caller gets an error
and the certificate is never seen. A refused request leaves no certificate row,
only a failure event in the audit trail.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlmodel import col, select

from bootstrap.errors import NotFound
from bootstrap.services.authorities import AuthorityDirectory
from bootstrap.services.pipeline import GroupCommitter, Issued, Pipeline, admin_options, leaf_profile
from bootstrap.services.pipeline.refusals import audit_refusal
from bootstrap.store.db import Database
from bootstrap.store.models import CertificateRow
from pki.authority import IssuedCertificate
from pki.csr import parse_csr
from pki.errors import PkiError
from pki.profiles import Names

__all__ = ["IssuanceService", "Requester"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Requester:
    """Who asks, for the audit trail."""

    actor: str
    request_id: str | None = None


class IssuanceService:
    """Issues leaf certificates from the active issuing CA, through the issuance pipeline."""

    def __init__(self, database: Database, authorities: AuthorityDirectory, pipeline: Pipeline | None = None) -> None:
        self._db = database
        self._authorities = authorities
        self.pipeline = pipeline or Pipeline(GroupCommitter(database), authorities)

    def issue_from_csr(
        self,
        csr: bytes | str,
        profile_name: str,
        requester: Requester,
        *,
        expected: Names | None = None,
        validity: timedelta | None = None,
        now: datetime | None = None,
    ) -> IssuedCertificate:
        """Parse and check ``csr``, issue under ``profile_name``, record, return (an admin's request).

        Raises:
            PkiError: the request or profile is refused (a failure event is recorded).
            NotInitialized: there is no CA yet.
        """
        try:
            profile = leaf_profile(profile_name)
            info = parse_csr(csr, profile.key_policy)
            options = admin_options(requester.actor, profile.name, names=expected, validity=validity)
            done: Issued[None] = self.pipeline.issue(lambda _session, _now: options, info,
                                                     request_id=requester.request_id, now=now)
        except PkiError as exc:
            self._refused(requester, profile_name, exc)
            raise
        if done.certificate is None:  # pragma: no cover - a CSR was given
            raise NotFound("nothing was issued")
        return done.certificate

    def _refused(self, requester: Requester, profile_name: str, error: PkiError) -> None:
        audit_refusal(self._db, error, actor=requester.actor, action="cert.issue", request_id=requester.request_id,
                      detail={"profile": profile_name})

    def get(self, serial_hex: str) -> CertificateRow:
        serial = serial_hex.lower().removeprefix("0x").replace(":", "").lstrip("0")
        with self._db.read_session() as session:
            row = session.exec(select(CertificateRow).where(CertificateRow.serial_hex == serial)).first()
        if row is None:
            raise NotFound(f"no certificate with serial {serial_hex}", field="serial")
        return row

    def superseded_by(self, serial_hex: str) -> list[str]:
        """The serials certificate ``serial_hex`` superseded (re-enrollment), oldest first."""
        query = select(CertificateRow.serial_hex).where(CertificateRow.superseded_by == serial_hex) \
            .order_by(col(CertificateRow.id))
        with self._db.read_session() as session:
            return list(session.exec(query))

    def list(self, *, limit: int = 100, offset: int = 0, profile: str | None = None,
             after: int | None = None) -> list[CertificateRow]:
        """Certificates, newest first. Page with ``after`` = the last row's id (keyset: as fast on page
        10,000 as on page 1); ``offset`` reads and skips rows."""
        query = select(CertificateRow).order_by(col(CertificateRow.id).desc()).offset(offset).limit(limit)
        if after is not None:
            query = query.where(col(CertificateRow.id) < after)
        if profile:
            query = query.where(CertificateRow.profile == profile)
        with self._db.read_session() as session:
            return list(session.exec(query))
