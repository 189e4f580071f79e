"""Pre-registration: the factory registers devices now; they enroll at first boot.

Instead of a certificate, each device gets what it will prove itself with:

``token``
    a one-time enrollment token bound to the DevID (shown once; only its SHA-256 is
    stored, as the enrollment service expects). Registering a device again replaces its
    unused tokens with a new one - the one returned last is the one that works.
``group-key``
    its device key HMAC-SHA256(group key, DevID) from the profile's group key in the
    secret store (``groups/<profile>``). The key is derived, never stored; registering
    again returns the same key.

Devices are created ``registered`` in the profile; one chunk is one transaction with
the quota, the device rows, the tokens and their audit events.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import Table, delete, insert
from sqlmodel import Session, select

from bootstrap.auth.group_keys import read_group_key
from bootstrap.auth.hmac_scheme import derive_device_key
from bootstrap.auth.principals import hash_token
from bootstrap.errors import DmBootstrapError, InvalidRequest, NotFound, PermissionDenied
from bootstrap.factory.batches import BatchService, QuotaExceeded
from bootstrap.factory.stations import Station
from bootstrap.factory.store import (
    AuditRecord,
    ExistingDevice,
    append_events,
    device_row,
    existing_devices,
    take_quota,
)
from bootstrap.factory.types import ItemError, RegistrationOutcome, RegistrationSpec
from bootstrap.secrets.base import SecretStore
from bootstrap.services.devices import ENROLLMENT_TOKEN_PREFIX
from bootstrap.store.db import Database
from bootstrap.store.models import DeviceRow, EnrollmentProfileRow, EnrollmentTokenRow, utcnow

__all__ = ["RegistrationService"]

_DEVICES: Table = DeviceRow.__table__  # type: ignore[attr-defined]
_TOKENS: Table = EnrollmentTokenRow.__table__  # type: ignore[attr-defined]


class RegistrationService:
    """Registers devices for first-boot enrollment and hands out what to inject into them."""

    def __init__(self, database: Database, store: SecretStore, batches: BatchService) -> None:
        self._db = database
        self._store = store
        self._batches = batches

    def register(self, station: Station, spec: RegistrationSpec, dev_ids: Sequence[str], *,
                 now: datetime | None = None) -> list[RegistrationOutcome]:
        """Register ``dev_ids`` (checked DevIDs) in ``spec.profile``; per-device outcomes in order.

        Raises:
            PermissionDenied: the profile is not the station's, or disabled.
            QuotaExceeded: the quota does not cover the new devices; nothing was registered.
            InvalidRequest: the profile does not allow the method, or has no group key.
            NotFound: no such profile.
        """
        try:
            return self._register(station, spec, list(dict.fromkeys(dev_ids)), now or utcnow(), dev_ids)
        except (PermissionDenied, NotFound, InvalidRequest) as exc:
            self._batches.audit_refusal(station, "factory.register", spec.profile, exc)
            raise

    def _register(self, station: Station, spec: RegistrationSpec, unique: list[str], now: datetime,
                  dev_ids: Sequence[str]) -> list[RegistrationOutcome]:
        self._batches.check_profile(station, spec.profile)
        expires = now + timedelta(days=spec.token_ttl_days)
        with self._db.session() as session:
            query = select(EnrollmentProfileRow).where(EnrollmentProfileRow.name == spec.profile)
            profile = session.exec(query).first()
            if profile is None or profile.id is None:
                raise NotFound(f"no enrollment profile {spec.profile!r}", field="profile")
            if not profile.enabled:
                raise PermissionDenied(f"enrollment profile {spec.profile!r} is disabled", field="profile")
            if spec.method not in profile.attestation:
                raise InvalidRequest(f"enrollment profile {spec.profile!r} does not allow {spec.method} attestation"
                                     f" (allowed: {', '.join(profile.attestation)})", field="method")
            group_key = self._group_key(profile) if spec.method == "group-key" else None
            known = existing_devices(session, unique)
            new = [d for d in unique if d not in known]
            if station.quota_token is not None and new and take_quota(session, station.quota_token, len(new)) == -1:
                raise QuotaExceeded(f"{station.actor}'s device quota does not cover {len(new)} more devices;"
                                    " nothing was registered", field="quota")
            outcomes: dict[str, RegistrationOutcome] = {}
            events: list[AuditRecord] = []
            rows: list[dict[str, object]] = []
            tokens: list[tuple[str, str]] = []
            for dev_id in unique:
                device = known.get(dev_id)
                error = _why_not(dev_id, device, profile.id) if device else None
                if error is not None:
                    outcomes[dev_id] = RegistrationOutcome(dev_id, "failed", error=error)
                    continue
                if device is None:
                    rows.append(device_row(dev_id=dev_id, profile_id=profile.id, serial_hex=None, now=now,
                                           status="registered"))
                    events.append(AuditRecord(station.actor, "device.register", "success", dev_id,
                                              {"profile": spec.profile, "by": "factory"}, station.request_id))
                status = "existing" if device else "registered"
                if group_key is not None:
                    outcomes[dev_id] = RegistrationOutcome(dev_id, status,
                                                           device_key=derive_device_key(group_key, dev_id).hex())
                else:
                    token = ENROLLMENT_TOKEN_PREFIX + secrets.token_urlsafe(24)
                    tokens.append((dev_id, token))
                    events.append(AuditRecord(station.actor, "enrollment-token.create", "success", dev_id,
                                              {"expires_at": expires, "by": "factory"}, station.request_id))
                    outcomes[dev_id] = RegistrationOutcome(dev_id, status, token=token, expires_at=expires.isoformat())
            self._write(session, station, profile.id, rows, tokens, expires, now)
            done = [o for o in outcomes.values() if o.status != "failed"]
            events.append(AuditRecord(station.actor, "factory.register", "success", spec.profile, {
                "method": spec.method, "registered": len(rows), "existing": len(done) - len(rows),
                "failed": len(outcomes) - len(done)}, station.request_id))
            if group_key is not None and done:
                events.append(AuditRecord(station.actor, "group-key.export", "success", spec.profile, {
                    "count": len(done), "first": done[0].dev_id, "last": done[-1].dev_id}, station.request_id))
            append_events(session, events)
        return [outcomes[d] for d in dev_ids]

    def _group_key(self, profile: EnrollmentProfileRow) -> bytes:
        try:
            return read_group_key(self._store, profile)
        except DmBootstrapError as exc:
            raise InvalidRequest(f"{exc.message}; create one with `dmboot device group-key`", field="profile") from None

    @staticmethod
    def _write(session: Session, station: Station, profile_id: int, rows: list[dict[str, object]],
               tokens: list[tuple[str, str]], expires: datetime, now: datetime) -> None:
        if rows:
            session.execute(insert(_DEVICES), rows)
        if tokens:
            # A device registered again gets a new token; the unused ones before it stop working.
            session.execute(delete(_TOKENS).where(_TOKENS.c.dev_id.in_([d for d, _ in tokens]),
                                                  _TOKENS.c.used_at.is_(None)))
            session.execute(insert(_TOKENS), [
                {"token_hash": hash_token(token), "profile_id": profile_id, "dev_id": dev_id, "expires_at": expires,
                 "used_at": None, "used_by": None, "created_by": station.actor, "created_at": now}
                for dev_id, token in tokens])


def _why_not(dev_id: str, device: ExistingDevice, profile_id: int) -> ItemError | None:
    if device.profile_id != profile_id:
        return ItemError("conflict", f"device {dev_id!r} is registered in another enrollment profile")
    if device.status == "blocked":
        return ItemError("forbidden", f"device {dev_id!r} is blocked")
    if device.status != "registered":
        return ItemError("conflict", f"device {dev_id!r} is {device.status} already; it needs no registration")
    return None
