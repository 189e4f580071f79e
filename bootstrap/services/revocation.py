"""Revoke certificates (by serial, device or enrollment profile), block and re-admit devices.

A revocation is a conditional UPDATE of the certificate row, a ``revoked_certificate``
row naming the CRL partition the certificate points to, the deletion of its stored
OCSP responses and audit events - one short transaction, whatever the number of
certificates revoked before. When :class:`RevocationService` returns, OCSP answers
"revoked" (this replica at once, the others within their OCSP cache's sync interval);
the CRLs follow from the background publisher (:mod:`bootstrap.services.crl_publisher`),
which this service wakes.

Revoking a device (or every device of a profile) also sets its status to
``blocked``: a blocked device cannot enroll or re-enroll - by any method, EST
included - until an admin re-admits it (status back to ``registered``). Its
revoked certificates stay revoked.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from cryptography import x509
from sqlalchemy import delete, update
from sqlmodel import Session, col, select

from bootstrap.errors import Conflict, InvalidRequest, NotFound
from bootstrap.services.audit import append_event
from bootstrap.services.crl import scope_of_certificate
from bootstrap.services.issuance import Requester
from bootstrap.store.db import Database
from bootstrap.store.models import (
    AuthorityRow,
    CertificateRow,
    DeviceRow,
    EnrollmentProfileRow,
    OcspResponseRow,
    RevokedRow,
    utcnow,
)
from pki.revocation import parse_reason, reason_name

__all__ = ["RevocationOutcome", "RevocationService", "is_device_blocked", "normalize_serial"]

BLOCKED = "blocked"
#: The status a re-admitted device returns to.
READMITTED = "registered"
_MAX_EXPIRING_DAYS = 3650


def normalize_serial(serial: str) -> str:
    """A serial as stored: lower-case hex, no ``0x``, colons or leading zeros."""
    cleaned = serial.strip().lower().removeprefix("0x").replace(":", "").lstrip("0")
    if not cleaned or any(c not in "0123456789abcdef" for c in cleaned):
        raise InvalidRequest(f"serial {serial!r} is not a hexadecimal number", field="serial")
    return cleaned


def is_device_blocked(session: Session, dev_id: str) -> bool:
    """Whether ``dev_id`` is blocked (revoked and not re-admitted); enrollment must refuse it."""
    status = session.exec(select(DeviceRow.status).where(DeviceRow.dev_id == dev_id)).first()
    return status == BLOCKED


@dataclass(frozen=True)
class RevocationOutcome:
    """What a revocation did."""

    reason: str
    #: Serials revoked now.
    revoked: tuple[str, ...] = ()
    #: Serials that were revoked already (left as they were).
    already_revoked: tuple[str, ...] = ()
    #: Devices now blocked.
    blocked: tuple[str, ...] = ()
    #: CRLs published for it on demand (scope -> number); empty when the background publisher does it.
    crl_numbers: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, object]:
        return {"reason": self.reason, "revoked": list(self.revoked), "already_revoked": list(self.already_revoked),
                "blocked_devices": list(self.blocked), "crl_numbers": self.crl_numbers}


class RevocationService:
    """Revocation, device blocking and re-admission, and the expiry report."""

    def __init__(self, database: Database, *, on_revoked: Callable[[Sequence[str]], None] | None = None) -> None:
        self._db = database
        #: Called after each revocation commits with the serials revoked (OCSP cache, CRL publisher).
        self.on_revoked = on_revoked

    def revoke_certificate(self, serial: str, reason: str, requester: Requester, *,
                           now: datetime | None = None) -> RevocationOutcome:
        """Revoke one certificate.

        Raises:
            NotFound: no certificate with that serial.
            Conflict: it is revoked already.
            ProfileError: an unknown reason.
        """
        parse_reason(reason)
        wanted = normalize_serial(serial)
        with self._db.session() as session:
            row = session.exec(select(CertificateRow).where(CertificateRow.serial_hex == wanted)).first()
            if row is None:
                raise NotFound(f"no certificate with serial {serial}", field="serial")
            if row.status == "revoked":
                raise Conflict(f"certificate {wanted} was revoked on {_iso(row.revoked_at)}"
                               f" ({row.revocation_reason})", field="serial")
            outcome = self._revoke(session, [row], reason, requester, devices=(), now=now)
        return self._committed(outcome)

    def revoke_device(self, dev_id: str, reason: str, requester: Requester, *,
                      now: datetime | None = None) -> RevocationOutcome:
        """Revoke every live certificate of ``dev_id`` and block the device.

        Raises:
            NotFound: neither a device nor a certificate with that DevID.
        """
        parse_reason(reason)
        with self._db.session() as session:
            device = session.exec(select(DeviceRow).where(DeviceRow.dev_id == dev_id).with_for_update()).first()
            rows = _live(session, col(CertificateRow.device_id) == dev_id, now)
            if device is None and not rows and not _any_certificate(session, dev_id):
                raise NotFound(f"no device and no certificate with DevID {dev_id!r}", field="dev_id")
            outcome = self._revoke(session, rows, reason, requester, devices=[device] if device else [], now=now)
        return self._committed(outcome)

    def revoke_profile(self, profile: str, reason: str, requester: Requester, *,
                       now: datetime | None = None) -> RevocationOutcome:
        """Revoke the live certificates of every device of enrollment profile ``profile``; block them.

        Raises:
            NotFound: no enrollment profile of that name.
        """
        parse_reason(reason)
        with self._db.session() as session:
            group = session.exec(select(EnrollmentProfileRow).where(EnrollmentProfileRow.name == profile)).first()
            if group is None:
                raise NotFound(f"no enrollment profile {profile!r}", field="profile")
            devices = list(session.exec(
                select(DeviceRow).where(DeviceRow.profile_id == group.id).with_for_update()))
            dev_ids = [d.dev_id for d in devices]
            rows = _live(session, col(CertificateRow.device_id).in_(dev_ids), now) if dev_ids else []
            outcome = self._revoke(session, rows, reason, requester, devices=devices, now=now)
            append_event(session, actor=requester.actor, action="profile.revoke", outcome="success", target=profile,
                         request_id=requester.request_id,
                         detail={"reason": outcome.reason, "certificates": len(outcome.revoked),
                                 "devices": len(outcome.blocked)})
        return self._committed(outcome)

    def _committed(self, outcome: RevocationOutcome) -> RevocationOutcome:
        if outcome.revoked and self.on_revoked is not None:
            self.on_revoked(outcome.revoked)
        return outcome

    def _revoke(self, session: Session, rows: Sequence[CertificateRow], reason: str, requester: Requester, *,
                devices: Sequence[DeviceRow], now: datetime | None) -> RevocationOutcome:
        flag = parse_reason(reason)
        name = reason_name(flag)
        moment = (now or utcnow()).replace(microsecond=0)
        revoked: list[str] = []
        already: list[str] = []
        for row in rows:
            # Conditional UPDATE: a racing revocation of the same certificate changes it once.
            changed = session.exec(
                update(CertificateRow)
                .where(col(CertificateRow.id) == row.id, col(CertificateRow.status) == "valid")
                .values(status="revoked", revoked_at=moment, revocation_reason=name)
            ).rowcount
            (revoked if changed == 1 else already).append(row.serial_hex)
            if changed == 1:
                session.add(RevokedRow(authority_id=row.authority_id, serial_hex=row.serial_hex,
                                       scope=_scope(session, row), revoked_at=moment, reason=name,
                                       not_after=row.not_after))
                append_event(session, actor=requester.actor, action="cert.revoke", outcome="success",
                             target=row.serial_hex, request_id=requester.request_id,
                             detail={"reason": name, "device_id": row.device_id, "profile": row.profile})
        blocked: list[str] = []
        for device in devices:
            if device.status != BLOCKED:
                device.status, device.updated_at = BLOCKED, moment
                session.add(device)
                blocked.append(device.dev_id)
                append_event(session, actor=requester.actor, action="device.block", outcome="success",
                             target=device.dev_id, request_id=requester.request_id, detail={"reason": name})
        if revoked:
            # A stored "good" response must not outlive the revocation (RFC 5019 responses are reused).
            session.exec(delete(OcspResponseRow).where(col(OcspResponseRow.serial_hex).in_(revoked)))
        session.flush()
        return RevocationOutcome(name, tuple(revoked), tuple(already), tuple(blocked))

    def revoke_superseded(self, *, now: datetime | None = None) -> RevocationOutcome:
        """Revoke (reason ``superseded``) the certificates whose supersede grace is over.

        The sweep of bootstrap.services.pipeline.supersede: the pipeline runs it lazily;
        any replica may, and a conditional UPDATE revokes each certificate once.
        """
        moment = now or utcnow()
        with self._db.session() as session:
            rows = _live(session, col(CertificateRow.supersede_at) <= moment, moment)
            if not rows:
                return RevocationOutcome("superseded")
            outcome = self._revoke(session, rows, "superseded", Requester("system:supersede"), devices=(), now=moment)
        return self._committed(outcome)

    def readmit_device(self, dev_id: str, requester: Requester) -> None:
        """Let a blocked device enroll again (status ``registered``).

        Raises:
            NotFound: no such device.
            Conflict: the device is not blocked.
        """
        with self._db.session() as session:
            device = session.exec(select(DeviceRow).where(DeviceRow.dev_id == dev_id).with_for_update()).first()
            if device is None:
                raise NotFound(f"no device with DevID {dev_id!r}", field="dev_id")
            if device.status != BLOCKED:
                raise Conflict(f"device {dev_id} is {device.status}, not blocked", field="dev_id")
            device.status, device.updated_at = READMITTED, utcnow()
            session.add(device)
            append_event(session, actor=requester.actor, action="device.readmit", outcome="success",
                         target=dev_id, request_id=requester.request_id)

    def expiring(self, within_days: int, *, now: datetime | None = None, limit: int = 1000) -> list[CertificateRow]:
        """Valid certificates whose notAfter falls within ``within_days`` from now, soonest first.

        Raises:
            InvalidRequest: ``within_days`` outside 0..3650.
        """
        if not 0 <= within_days <= _MAX_EXPIRING_DAYS:
            raise InvalidRequest(f"days must be between 0 and {_MAX_EXPIRING_DAYS}", field="expiring_within_days")
        moment = now or utcnow()
        query = (
            select(CertificateRow)
            .where(CertificateRow.status == "valid", col(CertificateRow.not_after) > moment,
                   col(CertificateRow.not_after) <= moment + timedelta(days=within_days))
            .order_by(col(CertificateRow.not_after))
            .limit(max(1, min(limit, 10_000)))
        )
        with self._db.read_session() as session:
            return list(session.exec(query))


    def preview(self, *, dev_id: str | None = None, profile: str | None = None,
                now: datetime | None = None) -> tuple[list[str], list[str]]:
        """What revoking ``dev_id`` or ``profile`` would do, changing nothing: (serials, DevIDs to block).

        Raises:
            NotFound: no enrollment profile of that name.
        """
        with self._db.read_session() as session:
            if profile is not None:
                group = session.exec(select(EnrollmentProfileRow).where(EnrollmentProfileRow.name == profile)).first()
                if group is None:
                    raise NotFound(f"no enrollment profile {profile!r}", field="profile")
                dev_ids = list(session.exec(select(DeviceRow.dev_id).where(DeviceRow.profile_id == group.id)))
            else:
                dev_ids = list(session.exec(select(DeviceRow.dev_id).where(DeviceRow.dev_id == dev_id)))
            wanted = dev_ids if profile is not None else [str(dev_id)]
            query = select(CertificateRow.serial_hex).where(
                col(CertificateRow.device_id).in_(wanted), CertificateRow.status == "valid",
                col(CertificateRow.not_after) > (now or utcnow()))
            return list(session.exec(query)) if wanted else [], dev_ids


def _live(session: Session, condition: object, now: datetime | None) -> list[CertificateRow]:
    """Valid, unexpired certificates matching ``condition``, locked for the revocation."""
    query = select(CertificateRow).where(
        condition,  # type: ignore[arg-type]
        CertificateRow.status == "valid",
        col(CertificateRow.not_after) > (now or utcnow()),
    )
    return list(session.exec(query.with_for_update()))


def _scope(session: Session, row: CertificateRow) -> str:
    """The CRL scope ``row``'s certificate names in its CRL distribution point."""
    cache: dict[int, str] = session.info.setdefault("authority_names", {})
    issuer = cache.get(row.authority_id)
    if issuer is None:
        issuer = session.exec(select(AuthorityRow.name).where(AuthorityRow.id == row.authority_id)).one()
        cache[row.authority_id] = issuer
    return scope_of_certificate(x509.load_pem_x509_certificate(row.pem.encode()), issuer)


def _any_certificate(session: Session, dev_id: str) -> bool:
    query = select(CertificateRow.id).where(CertificateRow.device_id == dev_id).limit(1)
    return session.exec(query).first() is not None


def _iso(moment: datetime | None) -> str:
    return moment.isoformat() if moment else "?"
