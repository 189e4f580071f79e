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

from sqlalchemy import Table, update
from sqlmodel import Session

from bootstrap.errors import InvalidRequest
from bootstrap.services.pipeline.deferred import defer_execute
from bootstrap.store.models import CertificateRow, EnrollmentProfileRow

__all__ = ["SUPERSEDE_MODES", "SWEEP_EVERY", "grace_of", "mark_first_use", "mark_superseded"]

SUPERSEDE_MODES = ("first-use", "immediate", "keep")
#: Seconds between two lazy sweeps of one process.
SWEEP_EVERY = 30.0
_CERTIFICATES: Table = CertificateRow.__table__  # type: ignore[attr-defined]


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
                    grace: timedelta, *, queued: Sequence[Mapping[str, Any]] = ()) -> int:
    """Mark ``dev_id``'s other valid ``certificate_profile`` certificates as superseded by ``new_serial``.

    ``queued``: certificate rows of this transaction not inserted yet (group commit);
    the device's among them are marked at the commit, once they are in the table.
    """
    table = _CERTIFICATES
    result = session.connection().execute(
        update(table)
        .where(table.c.device_id == dev_id, table.c.profile == certificate_profile, table.c.status == "valid",
               table.c.serial_hex != new_serial, table.c.superseded_by.is_(None))
        .values(superseded_by=new_serial, supersede_at=now + grace))
    earlier = [row["serial_hex"] for row in queued if row["device_id"] == dev_id
               and row["profile"] == certificate_profile and row["serial_hex"] != new_serial]
    if earlier:  # the device enrolled twice in one batch: the earlier one is superseded too
        defer_execute(session, update(table).where(table.c.serial_hex.in_(earlier), table.c.status == "valid",
                                                   table.c.superseded_by.is_(None))
                      .values(superseded_by=new_serial, supersede_at=now + grace))
    return int(result.rowcount) + len(earlier)


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
