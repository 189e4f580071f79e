"""Devices, one-time enrollment tokens and group keys: what admins and factories prepare.

Enrollment tokens have 192 random bits and are shown once; only their SHA-256
is stored. A profile's group key (256 random bits) lives in the secret store at
``groups/<profile>`` and never in the database, which keeps only a reference;
what leaves the service are device keys HMAC-SHA256(group key, DevID), one per
DevID, exported with an audit event (bootstrap/auth/hmac_scheme.py).
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from bootstrap.auth.device_passwords import derive_token, token_key
from bootstrap.auth.group_keys import group_key_path, read_group_key
from bootstrap.auth.hmac_scheme import derive_device_key
from bootstrap.auth.principals import hash_token
from bootstrap.errors import Conflict, InvalidRequest, NotFound, SecretConflict
from bootstrap.secrets.base import SecretStore
from bootstrap.services.audit import append_event
from bootstrap.services.config import _profile
from bootstrap.store.db import Database
from bootstrap.store.models import DeviceRow, DmServerRow, EnrollmentProfileRow, EnrollmentTokenRow, row_id, utcnow
from pki.identity import check_dev_id

__all__ = ["DEVICE_STATUSES", "ENROLLMENT_TOKEN_PREFIX", "DeviceService", "DeviceView", "TokenView"]

#: registered -> enrolled -> bootstrapped; blocked stops every enrollment.
DEVICE_STATUSES = ("registered", "enrolled", "delivered", "bootstrapped", "blocked")
ENROLLMENT_TOKEN_PREFIX = "dmt_"  # noqa: S105 - a prefix, not a secret
_FINGERPRINT = re.compile(r"^sha256:[0-9a-f]{64}\Z")
_DEFAULT_TOKEN_TTL = timedelta(days=7)
_MAX_EXPORT = 10_000


@dataclass(frozen=True)
class DeviceView:
    """A device with its profile and chosen DM server by name."""

    row: DeviceRow
    profile: str
    dm_server: str | None

    def to_json(self) -> dict[str, Any]:
        """The device as the API and ``--json`` show it."""
        row = self.row
        return {"dev_id": row.dev_id, "profile": self.profile, "status": row.status,
                "idevid_fingerprint": row.idevid_fingerprint, "dm_server": self.dm_server,
                "declared_mos": row.declared_mos, "features": row.features, "current_serial": row.current_serial,
                "bootstrapped_at": row.bootstrapped_at.isoformat() if row.bootstrapped_at else None,
                "created_at": row.created_at.isoformat(), "updated_at": row.updated_at.isoformat()}


@dataclass(frozen=True)
class TokenView:
    """An enrollment token without its secret."""

    row: EnrollmentTokenRow
    profile: str

    def state(self, now: datetime | None = None) -> str:
        """``unused``, ``used`` or ``expired``."""
        if self.row.used_at is not None:
            return "used"
        return "expired" if self.row.expires_at <= (now or utcnow()) else "unused"

    def to_json(self) -> dict[str, Any]:
        """The token's metadata (never the token)."""
        row = self.row
        return {"id": row.id, "profile": self.profile, "dev_id": row.dev_id, "state": self.state(),
                "expires_at": row.expires_at.isoformat(), "used_at": row.used_at.isoformat() if row.used_at else None,
                "used_by": row.used_by, "created_by": row.created_by, "created_at": row.created_at.isoformat()}


class DeviceService:
    """Registers devices, issues enrollment tokens, keeps group keys."""

    def __init__(self, database: Database, store: SecretStore) -> None:
        self._db = database
        self._store = store

    # -- devices --------------------------------------------------------------------------

    def register(self, dev_id: str, profile: str, *, idevid_fingerprint: str | None = None,
                 dm_server: str | None = None, actor: str) -> DeviceView:
        """Register one device ahead of its enrollment.

        Raises:
            InvalidRequest: a bad DevID or fingerprint; NotFound: unknown profile or server.
            Conflict: the DevID is registered already.
        """
        dev_id = _dev_id(dev_id)
        if idevid_fingerprint is not None:
            idevid_fingerprint = idevid_fingerprint.lower()
            if not _FINGERPRINT.match(idevid_fingerprint):
                raise InvalidRequest("idevid_fingerprint must be sha256:<64 hex digits> of the DER certificate",
                                     field="idevid_fingerprint")
        with self._db.session() as session:
            profile_row = _profile(session, profile)
            row = DeviceRow(dev_id=dev_id, profile_id=row_id(profile_row.id), idevid_fingerprint=idevid_fingerprint,
                            chosen_dm_server_id=_server_id(session, dm_server))
            session.add(row)
            try:
                session.flush()
            except IntegrityError:
                raise Conflict(f"device {dev_id!r} is registered already", field="dev_id") from None
            append_event(session, actor=actor, action="device.register", outcome="success", target=dev_id,
                         detail={"profile": profile, "idevid_fingerprint": idevid_fingerprint})
            return _device_view(session, row)

    def get(self, dev_id: str) -> DeviceView:
        """One device, with what it declared (MOs, features; DM-HLF-008)."""
        with self._db.read_session() as session:
            return _device_view(session, _device(session, dev_id))

    def search(self, *, q: str | None = None, status: str | None = None, profile: str | None = None,
               limit: int = 100, offset: int = 0) -> list[DeviceView]:
        """Devices whose DevID contains ``q``, optionally of one status or profile, by DevID."""
        query = (select(DeviceRow).order_by(col(DeviceRow.dev_id))
                 .offset(max(offset, 0)).limit(min(max(limit, 1), 1000)))
        if q:
            query = query.where(col(DeviceRow.dev_id).contains(q, autoescape=True))
        if status:
            if status not in DEVICE_STATUSES:
                raise InvalidRequest(f"status must be one of {', '.join(DEVICE_STATUSES)}", field="status")
            query = query.where(DeviceRow.status == status)
        with self._db.read_session() as session:
            if profile:
                query = query.where(DeviceRow.profile_id == _profile(session, profile).id)
            return [_device_view(session, row) for row in session.exec(query)]

    def update(self, dev_id: str, *, status: str | None = None, dm_server: str | None = None,
               idevid_fingerprint: str | None = None, actor: str) -> DeviceView:
        """Block (``status="blocked"``) or re-admit (``"registered"``) a device, or choose its DM server."""
        with self._db.session() as session:
            row = _device(session, dev_id)
            changes: dict[str, Any] = {}
            if status is not None:
                if status not in ("blocked", "registered"):
                    raise InvalidRequest("status can be set to 'blocked' or 'registered' (re-admit)", field="status")
                row.status = changes["status"] = status
            if dm_server is not None:
                row.chosen_dm_server_id = _server_id(session, dm_server)
                changes["dm_server"] = dm_server
            if idevid_fingerprint is not None:
                if not _FINGERPRINT.match(idevid_fingerprint.lower()):
                    raise InvalidRequest("idevid_fingerprint must be sha256:<64 hex digits>",
                                         field="idevid_fingerprint")
                row.idevid_fingerprint = changes["idevid_fingerprint"] = idevid_fingerprint.lower()
            row.updated_at = utcnow()
            session.add(row)
            append_event(session, actor=actor, action="device.update", outcome="success", target=dev_id,
                         detail=changes)
            return _device_view(session, row)

    # -- enrollment tokens ----------------------------------------------------------------

    def create_token(self, *, profile: str | None = None, dev_id: str | None = None,
                     ttl: timedelta = _DEFAULT_TOKEN_TTL, actor: str) -> tuple[TokenView, str]:
        """A one-time enrollment token; the token is returned once and only its hash is kept.

        Bound to ``dev_id`` (a registered device; its profile is the token's), or to
        ``profile`` for any registered device of that profile.

        Raises:
            InvalidRequest: neither profile nor DevID, or a bad lifetime.
            NotFound: unknown profile or device.
        """
        if ttl <= timedelta(0) or ttl > timedelta(days=366):
            raise InvalidRequest("a token lives more than 0 seconds and at most 366 days", field="ttl")
        if profile is None and dev_id is None:
            raise InvalidRequest("name a profile, a DevID, or both", field="profile")
        key = token_key(self._store)
        with self._db.session() as session:
            device = _device(session, dev_id) if dev_id is not None else None
            profile_row = _profile(session, profile) if profile is not None else None
            if device is not None and profile_row is not None and device.profile_id != profile_row.id:
                raise InvalidRequest(f"device {dev_id!r} is not in profile {profile!r}", field="profile")
            profile_id = profile_row.id if profile_row is not None else device.profile_id  # type: ignore[union-attr]
            # Derivable from its id (bootstrap.auth.device_passwords), so HTTP Digest can recompute it;
            # the row is written with a random placeholder hash first, to learn the id.
            row = EnrollmentTokenRow(token_hash=hash_token(secrets.token_urlsafe(24)), profile_id=row_id(profile_id),
                                     dev_id=dev_id, expires_at=utcnow() + ttl, created_by=actor)
            session.add(row)
            session.flush()
            token = derive_token(key, row_id(row.id))
            row.token_hash = hash_token(token)
            session.add(row)
            session.flush()
            append_event(session, actor=actor, action="enrollment-token.create", outcome="success",
                         target=dev_id or profile, detail={"token_id": row.id, "expires_at": row.expires_at})
            name = profile_row.name if profile_row is not None else _profile_name(session, row.profile_id)
        return TokenView(row, name), token

    def list_tokens(self, *, profile: str | None = None, dev_id: str | None = None, limit: int = 100,
                    offset: int = 0) -> list[TokenView]:
        """Tokens, newest first, without secrets."""
        query = (select(EnrollmentTokenRow).order_by(col(EnrollmentTokenRow.id).desc())
                 .offset(max(offset, 0)).limit(min(max(limit, 1), 1000)))
        if dev_id:
            query = query.where(EnrollmentTokenRow.dev_id == dev_id)
        with self._db.read_session() as session:
            if profile:
                query = query.where(EnrollmentTokenRow.profile_id == _profile(session, profile).id)
            names = {p.id: p.name for p in session.exec(select(EnrollmentProfileRow))}
            return [TokenView(row, names.get(row.profile_id, "?")) for row in session.exec(query)]

    # -- group keys -----------------------------------------------------------------------

    def create_group_key(self, profile: str, *, actor: str) -> str:
        """Create the profile's 256-bit group key in the secret store; return its reference.

        Raises:
            Conflict: the profile has a group key already (device keys in the field derive from it).
        """
        with self._db.session() as session:
            row = _profile(session, profile)
            if row.group_key_ref:
                raise Conflict(f"profile {profile!r} has a group key already ({row.group_key_ref})",
                               field="profile")
            try:
                ref = self._store.put(group_key_path(profile), {"key": secrets.token_bytes(32).hex()}, cas=0)
            except SecretConflict:
                raise Conflict(f"the secret store holds a group key for {profile!r} already; remove it or"
                               " choose another profile name", field="profile") from None
            row.group_key_ref = ref.to_uri()
            row.updated_at = utcnow()
            session.add(row)
            append_event(session, actor=actor, action="group-key.create", outcome="success", target=profile,
                         detail={"ref": row.group_key_ref})
            return row.group_key_ref

    def export_device_keys(self, profile: str, dev_ids: list[str], *, actor: str) -> dict[str, str]:
        """Device keys (hex HMAC-SHA256(group key, DevID)) for the factory to inject; audited.

        Raises:
            InvalidRequest: a bad DevID or too many; AuthenticationFailed: no group key yet.
        """
        if not dev_ids or len(dev_ids) > _MAX_EXPORT:
            raise InvalidRequest(f"export 1 to {_MAX_EXPORT} DevIDs at a time", field="dev_ids")
        checked = [_dev_id(d) for d in dict.fromkeys(dev_ids)]
        with self._db.session() as session:
            row = _profile(session, profile)
            if not row.group_key_ref:
                raise InvalidRequest(f"profile {profile!r} has no group key; create one first", field="profile")
            group_key = read_group_key(self._store, row)
            keys = {d: derive_device_key(group_key, d).hex() for d in checked}
            append_event(session, actor=actor, action="group-key.export", outcome="success", target=profile,
                         detail={"count": len(keys), "first": checked[0], "last": checked[-1]})
        return keys


def _dev_id(dev_id: object) -> str:
    try:
        return check_dev_id(dev_id)  # type: ignore[arg-type]
    except (TypeError, ValueError) as exc:
        raise InvalidRequest(str(exc), field="dev_id") from None


def _device(session: Session, dev_id: str | None) -> DeviceRow:
    row = session.exec(select(DeviceRow).where(DeviceRow.dev_id == dev_id)).first()
    if row is None:
        raise NotFound(f"no device {dev_id!r}", field="dev_id")
    return row


def _profile_name(session: Session, profile_id: int) -> str:
    row = session.get(EnrollmentProfileRow, profile_id)
    return row.name if row is not None else "?"


def _server_id(session: Session, server_id: str | None) -> int | None:
    if server_id is None:
        return None
    row = session.exec(select(DmServerRow).where(DmServerRow.server_id == server_id)).first()
    if row is None:
        raise NotFound(f"no DM server {server_id!r}", field="dm_server")
    return row.id


def _device_view(session: Session, row: DeviceRow) -> DeviceView:
    server = session.get(DmServerRow, row.chosen_dm_server_id) if row.chosen_dm_server_id else None
    return DeviceView(row, _profile_name(session, row.profile_id), server.server_id if server else None)


