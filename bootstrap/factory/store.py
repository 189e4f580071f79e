"""The factory's database work: set-based reads and writes for a chunk of devices.

A chunk of a batch is one transaction: the quota is taken, then every
certificate row, factory item, device row and audit event is inserted with one
``executemany`` each, and the audit chain's head is locked and moved once. The
unique (profile, DevID) constraint of ``factory_item`` is what makes a second
live certificate impossible when two processes race; the loser's transaction
rolls back whole and it reads the winner's items instead.

Core statements, not the ORM: the ORM's unit of work costs several times the SQL.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Table, and_, bindparam, insert, select, update
from sqlmodel import Session

from bootstrap.services.audit import AuditRecord, append_events
from bootstrap.services.pipeline.issue import certificate_row as pipeline_row
from bootstrap.store.models import (
    ApiTokenRow,
    AuthorityRow,
    CertificateRow,
    DeviceRow,
    FactoryBatchRow,
    FactoryItemRow,
    utcnow,
)

__all__ = ["AuditRecord", "ExistingDevice", "ExistingItem", "append_events", "bump_batch", "certificate_row",
           "device_row", "existing_devices", "existing_items", "insert_rows", "take_quota"]

_CERTS: Table = CertificateRow.__table__  # type: ignore[attr-defined]
_ITEMS: Table = FactoryItemRow.__table__  # type: ignore[attr-defined]
_BATCHES: Table = FactoryBatchRow.__table__  # type: ignore[attr-defined]
_DEVICES: Table = DeviceRow.__table__  # type: ignore[attr-defined]
_TOKENS: Table = ApiTokenRow.__table__  # type: ignore[attr-defined]
_AUTHORITIES: Table = AuthorityRow.__table__  # type: ignore[attr-defined]

_UPDATE_DEVICE = (update(_DEVICES).where(_DEVICES.c.dev_id == bindparam("b_dev_id"))
                  .values(status="enrolled", current_serial=bindparam("b_serial"), updated_at=bindparam("b_at")))


@dataclass(frozen=True)
class ExistingItem:
    """A device the factory issued for already, with its certificate."""

    dev_id: str
    mode: str
    serial_hex: str
    key_ref: str | None
    key_expires_at: datetime | None
    principal: str
    pem: str
    status: str
    issuer: str


@dataclass(frozen=True)
class ExistingDevice:
    """A device row's profile and status."""

    profile_id: int
    status: str


def existing_items(session: Session, profile: str, dev_ids: Iterable[str]) -> dict[str, ExistingItem]:
    """The factory items (with certificate and issuer) of ``dev_ids`` in ``profile``."""
    wanted = list(dev_ids)
    if not wanted:
        return {}
    query = (
        select(_ITEMS.c.dev_id, _ITEMS.c.mode, _ITEMS.c.serial_hex, _ITEMS.c.key_ref,
               _ITEMS.c.key_expires_at, _BATCHES.c.principal, _CERTS.c.pem, _CERTS.c.status, _AUTHORITIES.c.name)
        .join(_BATCHES, _BATCHES.c.id == _ITEMS.c.batch_id)
        .join(_CERTS, _CERTS.c.serial_hex == _ITEMS.c.serial_hex)
        .join(_AUTHORITIES, _AUTHORITIES.c.id == _CERTS.c.authority_id)
        .where(and_(_ITEMS.c.profile == profile, _ITEMS.c.dev_id.in_(wanted)))
    )
    return {row[0]: ExistingItem(*row) for row in session.execute(query)}


def existing_devices(session: Session, dev_ids: Iterable[str]) -> dict[str, ExistingDevice]:
    """Device rows of ``dev_ids`` (any profile)."""
    wanted = list(dev_ids)
    if not wanted:
        return {}
    query = select(_DEVICES.c.dev_id, _DEVICES.c.profile_id, _DEVICES.c.status).where(_DEVICES.c.dev_id.in_(wanted))
    return {row[0]: ExistingDevice(row[1], row[2]) for row in session.execute(query)}


def take_quota(session: Session, token_name: str, count: int) -> int | None:
    """Take ``count`` devices from the quota of API token ``token_name``, atomically.

    Returns the quota left, None when the token has no quota; -1 (and takes
    nothing) when fewer than ``count`` are left. The conditional UPDATE holds the
    row until commit, so concurrent chunks on any replica queue here.
    """
    if count <= 0:
        return _quota_left(session, token_name)
    result = session.execute(
        update(_TOKENS)
        .where(and_(_TOKENS.c.name == token_name, _TOKENS.c.device_quota.is_not(None),
                    _TOKENS.c.device_quota >= count))
        .values(device_quota=_TOKENS.c.device_quota - count)
    )
    if result.rowcount == 1:  # type: ignore[attr-defined]
        return _quota_left(session, token_name)
    left = _quota_left(session, token_name)
    return None if left is None else -1


def _quota_left(session: Session, token_name: str) -> int | None:
    value = session.execute(select(_TOKENS.c.device_quota).where(_TOKENS.c.name == token_name)).scalar()
    return None if value is None else int(value)


def insert_rows(session: Session, *, certificates: Sequence[dict[str, Any]], items: Sequence[dict[str, Any]],
                new_devices: Sequence[dict[str, Any]], updated_devices: Sequence[dict[str, Any]]) -> None:
    """Insert certificate rows, factory items and devices; move pre-registered devices to ``enrolled``.

    Raises:
        IntegrityError: another transaction recorded one of these devices (or, never in
            practice, a serial) first; the caller rolls back and reads theirs.
    """
    if certificates:
        session.execute(insert(_CERTS), list(certificates))
    if items:
        session.execute(insert(_ITEMS), list(items))
    if new_devices:
        session.execute(insert(_DEVICES), list(new_devices))
    if updated_devices:
        session.execute(_UPDATE_DEVICE, list(updated_devices))


def bump_batch(session: Session, batch_id: int, *, issued: int, existing: int, failed: int) -> None:
    """Add a chunk's counts to its batch."""
    session.execute(
        update(_BATCHES).where(_BATCHES.c.id == batch_id).values(
            issued=_BATCHES.c.issued + issued, existing=_BATCHES.c.existing + existing,
            failed=_BATCHES.c.failed + failed, updated_at=utcnow())
    )


def certificate_row(*, serial_hex: str, subject: str, authority_id: int, profile: str, dev_id: str, key_type: str,
                    not_before: datetime, not_after: datetime, fingerprint: str, pem: str, actor: str,
                    request_id: str | None, now: datetime, uri: str) -> dict[str, Any]:
    """A ``certificate`` row for a device certificate (CN=DevID, one URI SAN): the pipeline's row."""
    return pipeline_row(serial_hex=serial_hex, authority_id=authority_id, profile=profile, subject=subject,
                        common_name=dev_id, sans=_sans(uri), device_id=dev_id, key_type=key_type,
                        not_before=not_before, not_after=not_after, fingerprint=fingerprint, pem=pem, actor=actor,
                        request_id=request_id, now=now)


def _sans(uri: str) -> str:
    # The JSON list IssuanceService writes; a device URI is percent-encoded ASCII without
    # quotes or backslashes (pki.identity), so the literal equals json.dumps([...]).
    return '["uri:' + uri + '"]'


def device_row(*, dev_id: str, profile_id: int, serial_hex: str | None, now: datetime,
               status: str = "enrolled") -> dict[str, Any]:
    """A ``device`` row: provisioned by the factory (``enrolled``) or pre-registered (``registered``)."""
    return {"dev_id": dev_id, "profile_id": profile_id, "status": status, "idevid_fingerprint": None,
            "declared_mos": [], "features": {}, "chosen_dm_server_id": None, "pending_packages": [],
            "current_serial": serial_hex, "bootstrapped_at": None, "created_at": now, "updated_at": now}

