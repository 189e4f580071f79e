"""Read-only views the web console needs and no other service offers: dashboard counts,
a device's certificates and audit history. Writes go through the owning services.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import func
from sqlmodel import Session, col, or_, select

from bootstrap.store.db import Database
from bootstrap.store.models import AuditEvent, CertificateRow, DeviceRow, EnrollmentProfileRow

__all__ = ["ENROLL_ACTIONS", "Dashboard", "count_certificates", "count_devices", "dashboard",
           "device_certificates", "device_history", "search_certificates"]

#: Audit actions that are a device enrolling (DM 2.0, JSON API and EST).
ENROLL_ACTIONS = ("device.enroll", "est.enroll", "est.reenroll")
EXPIRING_DAYS = 30


@dataclass(frozen=True)
class Dashboard:
    """What the console's first page shows."""

    since: datetime
    issued_today: int
    enrollments_today: int
    failures_today: int
    devices_by_status: dict[str, int]
    expiring: list[CertificateRow] = field(default_factory=list)
    expiring_count: int = 0
    recent_failures: list[AuditEvent] = field(default_factory=list)


def _count(session: Session, query: object) -> int:
    return int(session.exec(query).one())  # type: ignore[call-overload]


def dashboard(database: Database, *, now: datetime | None = None) -> Dashboard:
    """Counts since midnight UTC, devices by status, certificates expiring within 30 days."""
    now = now or datetime.now(UTC)
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    soon = now + timedelta(days=EXPIRING_DAYS)
    # OCSP responder certificates live 30 days and the responder renews its own when a third
    # of that is left (services/ocsp.py): they are always "within 30 days" and never an admin's job.
    expiring_where = (col(CertificateRow.status) == "valid", col(CertificateRow.not_after) > now,
                      col(CertificateRow.not_after) <= soon, col(CertificateRow.profile) != "ocsp-signer")
    with database.read_session() as session:
        issued = _count(session, select(func.count()).select_from(CertificateRow)
                        .where(col(CertificateRow.created_at) >= midnight))
        enrolled = _count(session, select(func.count()).select_from(AuditEvent).where(
            col(AuditEvent.at) >= midnight, col(AuditEvent.action).in_(ENROLL_ACTIONS),
            col(AuditEvent.outcome) == "success"))
        failures = _count(session, select(func.count()).select_from(AuditEvent).where(
            col(AuditEvent.at) >= midnight, col(AuditEvent.outcome) == "failure"))
        statuses = {str(s): int(n) for s, n in session.exec(
            select(DeviceRow.status, func.count()).group_by(col(DeviceRow.status)))}
        expiring_count = _count(session, select(func.count()).select_from(CertificateRow).where(*expiring_where))
        expiring = list(session.exec(select(CertificateRow).where(*expiring_where)
                                     .order_by(col(CertificateRow.not_after)).limit(10)))
        recent = list(session.exec(select(AuditEvent).where(col(AuditEvent.outcome) == "failure")
                                   .order_by(col(AuditEvent.seq).desc()).limit(10)))
    return Dashboard(since=midnight, issued_today=issued, enrollments_today=enrolled, failures_today=failures,
                     devices_by_status=statuses, expiring=expiring, expiring_count=expiring_count,
                     recent_failures=recent)


def device_certificates(database: Database, dev_id: str) -> list[CertificateRow]:
    """Every certificate issued to ``dev_id``, newest first."""
    with database.read_session() as session:
        return list(session.exec(select(CertificateRow).where(CertificateRow.device_id == dev_id)
                                 .order_by(col(CertificateRow.id).desc()).limit(200)))


def device_history(database: Database, dev_id: str, serials: list[str], *, limit: int = 100) -> list[AuditEvent]:
    """Audit events about ``dev_id`` or its certificates, newest first."""
    targets = [col(AuditEvent.target) == dev_id, col(AuditEvent.actor) == f"subscriber:{dev_id}"]
    if serials:
        targets.append(col(AuditEvent.target).in_(serials))
    with database.read_session() as session:
        return list(session.exec(select(AuditEvent).where(or_(*targets))
                                 .order_by(col(AuditEvent.seq).desc()).limit(limit)))


def count_certificates(database: Database, *, profile: str | None = None) -> int:
    """How many certificates (of certificate profile ``profile``) there are: the total beside a listing."""
    query = select(func.count()).select_from(CertificateRow)
    if profile:
        query = query.where(CertificateRow.profile == profile)
    with database.read_session() as session:
        return _count(session, query)


def count_devices(database: Database, *, q: str | None = None, status: str | None = None,
                  profile: str | None = None) -> int:
    """How many devices match what :meth:`DeviceService.search` filters by."""
    query = select(func.count()).select_from(DeviceRow)
    if q:
        query = query.where(col(DeviceRow.dev_id).contains(q, autoescape=True))
    if status:
        query = query.where(DeviceRow.status == status)
    if profile:
        query = query.join(EnrollmentProfileRow, col(EnrollmentProfileRow.id) == DeviceRow.profile_id).where(
            EnrollmentProfileRow.name == profile)
    with database.read_session() as session:
        return _count(session, query)


def search_certificates(database: Database, q: str = "", *, limit: int = 50,
                        offset: int = 0) -> tuple[list[CertificateRow], int]:
    """Certificates by serial (hex, any case, colons allowed), SHA-256 fingerprint or DevID, newest first.

    A serial or fingerprint matches exactly; a DevID matches as a substring. Empty ``q``:
    all certificates. Returns one page and the total that matched.
    """
    query = select(CertificateRow)
    counted = select(func.count()).select_from(CertificateRow)
    if q:
        bare = q.strip().lower().replace(":", "").removeprefix("sha256").removeprefix("0x")
        condition = or_(CertificateRow.serial_hex == bare.lstrip("0"),
                        col(CertificateRow.fingerprint).in_((bare, f"sha256:{bare}")),
                        col(CertificateRow.device_id).contains(q.strip(), autoescape=True))
        query, counted = query.where(condition), counted.where(condition)
    query = query.order_by(col(CertificateRow.id).desc()).offset(max(offset, 0)).limit(min(max(limit, 1), 500))
    with database.read_session() as session:
        return list(session.exec(query)), _count(session, counted)
