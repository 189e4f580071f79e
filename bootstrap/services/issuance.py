"""Issue certificates: check the request, sign, record, then return.

Invariant: a certificate is committed to the database (with its audit event)
before it is returned to anyone; when recording fails, the caller gets an error
and the certificate is never seen. A refused request leaves no certificate row,
only a failure event in the audit trail.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.x509.oid import NameOID
from sqlalchemy import Table, insert
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from bootstrap.errors import NotFound
from bootstrap.services.audit import append_event
from bootstrap.services.authorities import AuthorityDirectory
from bootstrap.store.db import Database
from bootstrap.store.models import CertificateRow, utcnow
from pki.authority import IssuedCertificate
from pki.csr import CsrInfo, parse_csr
from pki.errors import PkiError, ProfileError
from pki.identity import dev_id_from_uri
from pki.profiles import LEAF_PROFILES, Names, get_profile

__all__ = ["IssuanceService", "Requester"]

log = logging.getLogger(__name__)
_CERTIFICATES: Table = CertificateRow.__table__  # type: ignore[attr-defined]
_INSERT_CERTIFICATE = insert(_CERTIFICATES)
_SERIAL_RETRIES = 3


@dataclass(frozen=True)
class Requester:
    """Who asks, for the audit trail."""

    actor: str
    request_id: str | None = None


class IssuanceService:
    """Issues leaf certificates from the active issuing CA."""

    def __init__(self, database: Database, authorities: AuthorityDirectory) -> None:
        self._db = database
        self._authorities = authorities

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
        """Parse and check ``csr``, issue under ``profile_name``, record, return.

        Raises:
            PkiError: the request or profile is refused (a failure event is recorded).
            NotInitialized: there is no CA yet.
        """
        try:
            profile = get_profile(profile_name)
            if profile.name not in LEAF_PROFILES:
                raise ProfileError(
                    f"profile {profile.name} is for CA certificates; use one of {', '.join(sorted(LEAF_PROFILES))}",
                    field="profile",
                )
            info = parse_csr(csr, profile.key_policy)
        except PkiError as exc:
            self._refused(requester, profile_name, exc)
            raise
        return self._issue(info, profile.name, requester, expected, validity, now)

    def _issue(
        self,
        info: CsrInfo,
        profile_name: str,
        requester: Requester,
        expected: Names | None,
        validity: timedelta | None,
        now: datetime | None,
    ) -> IssuedCertificate:
        for attempt in range(_SERIAL_RETRIES):
            try:
                with self._db.session() as session:
                    issued = self.issue_in(session, info, profile_name, requester, expected=expected,
                                           validity=validity, now=now)
                return issued
            except PkiError as exc:
                self._refused(requester, profile_name, exc)
                raise
            except IntegrityError:
                # Only a serial or fingerprint collision can land here; draw again.
                log.warning("serial collision on attempt %d; retrying", attempt + 1)
        raise RuntimeError("could not record a unique serial")  # pragma: no cover

    def issue_in(self, session: Session, info: CsrInfo, profile_name: str, requester: Requester, *,
                 expected: Names | None = None, validity: timedelta | None = None,
                 now: datetime | None = None) -> IssuedCertificate:
        """Issue for an already parsed request inside the caller's transaction.

        The certificate row and its audit event commit or roll back with the
        caller's other work (the enrollment service consumes a one-time token in
        the same transaction). The caller audits refusals; an IntegrityError
        means a serial collision and the caller may retry the whole transaction.

        Raises:
            PkiError: the request or profile is refused.
            NotInitialized: there is no CA yet.
        """
        profile = get_profile(profile_name)
        if profile.name not in LEAF_PROFILES:
            raise ProfileError(f"profile {profile.name} is for CA certificates", field="profile")
        row, authority = self._authorities.active(session)
        issued = authority.issue_for_csr(info, profile, expected=expected, validity=validity, now=now)
        self._record(session, issued, _id(row.id), info, requester)
        return issued

    @staticmethod
    def _record(
        session: Session, issued: IssuedCertificate, authority_id: int, info: CsrInfo, requester: Requester
    ) -> None:
        cert = issued.certificate
        names = _san_strings(issued)
        device_id = next((d for d in (dev_id_from_uri(n[4:]) for n in names if n.startswith("uri:")) if d), None)
        subject, fingerprint = cert.subject.rfc4514_string(), issued.fingerprint
        # Core insert (see append_event): the hot path of every issuance.
        session.connection().execute(
            _INSERT_CERTIFICATE,
            dict(
                serial_hex=issued.serial_hex,
                authority_id=authority_id,
                profile=issued.profile,
                subject=subject,
                common_name=_common_name(issued),
                sans=json.dumps(names),
                device_id=device_id,
                key_type=info.key_type.value,
                not_before=cert.not_valid_before_utc,
                not_after=cert.not_valid_after_utc,
                status="valid",
                fingerprint=fingerprint,
                pem=issued.pem,
                requested_by=requester.actor,
                request_id=requester.request_id,
                created_at=utcnow(),
            ),
        )
        append_event(
            session,
            actor=requester.actor,
            action="cert.issue",
            outcome="success",
            target=issued.serial_hex,
            request_id=requester.request_id,
            detail={"profile": issued.profile, "subject": subject, "fingerprint": fingerprint},
        )

    def _refused(self, requester: Requester, profile_name: str, error: PkiError) -> None:
        with self._db.session() as session:
            append_event(
                session,
                actor=requester.actor,
                action="cert.issue",
                outcome="failure",
                request_id=requester.request_id,
                detail={"profile": profile_name, "error": type(error).__name__, "reason": error.message},
            )

    def get(self, serial_hex: str) -> CertificateRow:
        serial = serial_hex.lower().removeprefix("0x").replace(":", "").lstrip("0")
        with self._db.session() as session:
            row = session.exec(select(CertificateRow).where(CertificateRow.serial_hex == serial)).first()
        if row is None:
            raise NotFound(f"no certificate with serial {serial_hex}", field="serial")
        return row

    def list(self, *, limit: int = 100, offset: int = 0, profile: str | None = None,
             after: int | None = None) -> list[CertificateRow]:
        """Certificates, newest first. Page with ``after`` = the last row's id (keyset: as fast on page
        10,000 as on page 1); ``offset`` reads and skips rows."""
        query = select(CertificateRow).order_by(col(CertificateRow.id).desc()).offset(offset).limit(limit)
        if after is not None:
            query = query.where(col(CertificateRow.id) < after)
        if profile:
            query = query.where(CertificateRow.profile == profile)
        with self._db.session() as session:
            return list(session.exec(query))


def _common_name(issued: IssuedCertificate) -> str:
    values = issued.certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(values[0].value) if values else ""


def _san_strings(issued: IssuedCertificate) -> list[str]:
    try:
        san = issued.certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return (
        [f"dns:{n}" for n in san.get_values_for_type(x509.DNSName)]
        + [f"ip:{n}" for n in san.get_values_for_type(x509.IPAddress)]
        + [f"uri:{n}" for n in san.get_values_for_type(x509.UniformResourceIdentifier)]
    )


def _id(value: int | None) -> int:
    if value is None:  # a flushed row always has one
        raise RuntimeError("row has no id")
    return value
