"""Re-enrollment supersedes: a device's earlier certificates under a profile give way to the new one.

When a device enrolls again (with its current certificate, a new token, EST
``simplereenroll``...), its earlier valid certificates of the same certificate
profile are marked ``superseded_by`` the new serial. What happens next is the
enrollment profile's ``supersede`` setting:

- ``first-use`` (default): they are revoked (reason ``superseded``) once the new
  certificate is first seen attesting, or ``supersede_grace_seconds`` (default
  3600) after the re-enrollment, whichever comes first;
- ``immediate``: they are revoked at the next sweep;
- ``keep``: nothing is marked; they stay valid until they expire.

A superseded certificate no longer attests (it cannot enroll again) from the
moment it is marked, even while the grace lets it still work towards DM servers.
The revocation itself is a sweep (:meth:`RevocationService.revoke_superseded`):
run lazily by the pipeline at most every ``SWEEP_EVERY`` seconds per process.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Table, bindparam, update
from sqlmodel import Session

from bootstrap.errors import InvalidRequest
from bootstrap.services.pipeline.deferred import defer_execute, defer_update
from bootstrap.store.bulk import BulkUpdate
from bootstrap.store.models import CertificateRow, EnrollmentProfileRow

__all__ = ["SUPERSEDE_MODES", "SWEEP_EVERY", "grace_of", "mark_first_use", "mark_superseded"]

SUPERSEDE_MODES = ("first-use", "immediate", "keep")
#: Seconds between two lazy sweeps of one process.
SWEEP_EVERY = 30.0
_CERTIFICATES: Table = CertificateRow.__table__  # type: ignore[attr-defined]
_MARK = BulkUpdate(
    statement=update(_CERTIFICATES)
    .where(_CERTIFICATES.c.device_id == bindparam("dev"), _CERTIFICATES.c.profile == bindparam("cert_profile"),
           _CERTIFICATES.c.status == "valid", _CERTIFICATES.c.serial_hex != bindparam("new"),
           _CERTIFICATES.c.superseded_by.is_(None))
    .values(superseded_by=bindparam("new"), supersede_at=bindparam("until")),
    sql="UPDATE certificate SET superseded_by = v.new, supersede_at = v.until FROM {rows}"
        " WHERE certificate.device_id = v.dev AND certificate.profile = v.cert_profile"
        " AND certificate.status = 'valid' AND certificate.serial_hex != v.new"
        " AND certificate.superseded_by IS NULL",
    parameters={"dev": _CERTIFICATES.c.device_id, "cert_profile": _CERTIFICATES.c.profile,
                "new": _CERTIFICATES.c.serial_hex, "until": _CERTIFICATES.c.supersede_at},
    # A device re-enrolled twice in one batch: the first new certificate supersedes the earlier
    # ones (as one statement per row left it); the second supersedes the first (mark_superseded).
    key=("dev", "cert_profile"), keep="first")


def grace_of(profile: EnrollmentProfileRow) -> timedelta | None:
    """How long a superseded certificate of ``profile`` stays valid at most; None: kept.

    Raises:
        InvalidRequest: the profile's setting is not one of SUPERSEDE_MODES.
    """
    if profile.supersede not in SUPERSEDE_MODES:
        raise InvalidRequest(f"supersede must be one of {', '.join(SUPERSEDE_MODES)}", field="supersede")
    if profile.supersede == "keep":
        return None
    if profile.supersede == "immediate":
        return timedelta(0)
    return timedelta(seconds=max(0, profile.supersede_grace_seconds))


def mark_superseded(session: Session, dev_id: str, certificate_profile: str, new_serial: str, now: datetime,
                    grace: timedelta, *, queued: Sequence[Mapping[str, Any]] = ()) -> None:
    """Mark ``dev_id``'s other valid ``certificate_profile`` certificates as superseded by ``new_serial``.

    Run at the commit, with the batch's other marks in one executemany, before the
    batch's new certificates are inserted (pipeline/deferred.py). ``queued``:
    certificate rows of this transaction not inserted yet; the device's among them
    (it enrolled twice in one batch) are marked after the insert.
    """
    table = _CERTIFICATES
    defer_update(session, _MARK, {"dev": dev_id, "cert_profile": certificate_profile, "new": new_serial,
                                  "until": now + grace})
    earlier = [row["serial_hex"] for row in queued if row["device_id"] == dev_id
               and row["profile"] == certificate_profile and row["serial_hex"] != new_serial]
    if earlier:
        defer_execute(session, update(table).where(table.c.serial_hex.in_(earlier), table.c.status == "valid",
                                                   table.c.superseded_by.is_(None))
                      .values(superseded_by=new_serial, supersede_at=now + grace))


def mark_first_use(session: Session, serial_hex: str, now: datetime) -> None:
    """Certificate ``serial_hex`` was seen attesting: its predecessors are due now."""
    table = _CERTIFICATES
    first = session.connection().execute(
        update(table).where(table.c.serial_hex == serial_hex, table.c.first_used_at.is_(None))
        .values(first_used_at=now)).rowcount
    if first:
        session.connection().execute(
            update(table).where(table.c.superseded_by == serial_hex, table.c.status == "valid",
                                table.c.supersede_at > now)
            .values(supersede_at=now))
