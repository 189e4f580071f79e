"""Subscriber self-service (use cases B.1 and B.2): the owner of a device, proving it with
the claim code printed on it, chooses its management authority and the configuration
packages of its next bootstrap.

Claim semantics (ours): the claim code is the device's one-time enrollment token,
bound to its DevID (``enrollment_token.dev_id``). A subscriber presents DevID and
code; the code is checked against the stored hash and **not consumed** - the device
still needs it at bootstrap. It opens a subscriber session while the token has not
expired (used or not: the label stays proof of possession until then). Tokens not
bound to a DevID never open one. Wrong codes are throttled per DevID.

What the choices mean for the next bootstrap (the enrollment service honours them):

- ``device.chosen_dm_server_id``: one of the profile's DM servers; the DM account
  (SrvID/SrvURI) is built for it instead of the profile's first server;
- ``device.pending_packages``: ClientURIs of the profile's ``extra_mos`` (each extra
  MO instance is one package, named by its ClientURI); those instances are added to
  the next bootstrap, and the list is cleared when the device completes it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlmodel import Session, select

from bootstrap.auth.principals import hash_token
from bootstrap.auth.throttle import LoginThrottle
from bootstrap.errors import AuthenticationFailed, DmBootstrapError, InvalidRequest, NotFound, PermissionDenied
from bootstrap.services.audit import append_event
from bootstrap.store import profile_links
from bootstrap.store.db import Database
from bootstrap.store.models import DeviceRow, DmServerRow, EnrollmentProfileRow, EnrollmentTokenRow, row_id, utcnow
from pki.identity import check_dev_id

__all__ = ["Package", "ServerChoice", "SubscriberService", "SubscriberView"]


@dataclass(frozen=True)
class ServerChoice:
    """A DM server the subscriber may choose."""

    id: int
    server_id: str
    name: str
    url: str


@dataclass(frozen=True)
class Package:
    """A configuration package: one extra MO instance of the profile."""

    id: str  # its ClientURI
    moid: str
    summary: str


@dataclass(frozen=True)
class SubscriberView:
    """What the subscriber sees about their device."""

    dev_id: str
    profile: str
    status: str
    servers: tuple[ServerChoice, ...]
    chosen_server_id: int | None
    packages: tuple[Package, ...]
    pending: tuple[str, ...]

    @property
    def effective_server_id(self) -> int | None:
        """The server the next bootstrap uses: the choice, else the profile's first."""
        return self.chosen_server_id or (self.servers[0].id if self.servers else None)


def _summary(mo: dict[str, Any]) -> str:
    data = mo.get("MOData")
    keys = ", ".join(sorted(data)[:6]) if isinstance(data, dict) else ""
    return f"{mo.get('MOID', '?')}: {keys}" if keys else str(mo.get("MOID", "?"))


class SubscriberService:
    """Claims devices by claim code and records the subscriber's choices."""

    def __init__(self, database: Database) -> None:
        self._db = database
        self.throttle = LoginThrottle(database)

    def claim(self, dev_id: str, code: str, *, request_id: str | None = None) -> str:
        """Check ``code`` for ``dev_id`` without consuming it; returns the DevID.

        Creates the device row (in the token's profile) if the device was not registered.

        Raises:
            TooManyAttempts: too many wrong codes for this DevID.
            AuthenticationFailed: wrong, expired or unbound code (one message for all).
        """
        try:
            dev_id = check_dev_id(dev_id.strip())
        except (TypeError, ValueError) as exc:
            raise InvalidRequest(str(exc), field="dev_id") from None
        key = f"claim:{dev_id}"
        self.throttle.attempt(key)
        with self._db.session() as session:
            token = session.exec(select(EnrollmentTokenRow).where(
                EnrollmentTokenRow.token_hash == hash_token(code.strip()))).first()
            ok = (token is not None and token.dev_id == dev_id and token.expires_at > utcnow())
            if ok and token is not None:
                device = self._device(session, dev_id, token.profile_id)
                ok = device.status != "blocked"
            if ok:
                append_event(session, actor=f"subscriber:{dev_id}", action="subscriber.claim", outcome="success",
                             target=dev_id, request_id=request_id)
        if not ok:
            with self._db.session() as session:
                append_event(session, actor=f"subscriber:{dev_id}", action="subscriber.claim", outcome="failure",
                             target=dev_id, request_id=request_id)
            raise AuthenticationFailed("this DevID and claim code do not match a device that can be claimed")
        self.throttle.success(key)
        return dev_id

    @staticmethod
    def _device(session: Session, dev_id: str, profile_id: int) -> DeviceRow:
        device = session.exec(select(DeviceRow).where(DeviceRow.dev_id == dev_id)).first()
        if device is None:
            device = DeviceRow(dev_id=dev_id, profile_id=profile_id)
            session.add(device)
            session.flush()
            append_event(session, actor=f"subscriber:{dev_id}", action="device.register", outcome="success",
                         target=dev_id, detail={"via": "subscriber claim"})
        return device

    def view(self, dev_id: str) -> SubscriberView:
        """The device, the servers it may be managed by, and the packages on offer."""
        with self._db.session() as session:
            device, profile = self._load(session, dev_id)
            servers = tuple(ServerChoice(row_id(s.id), s.server_id, s.name, s.url)
                            for s in profile_links.servers(session, row_id(profile.id)))
            packages = tuple(Package(str(m.get("ClientURI")), str(m.get("MOID", "")), _summary(m))
                             for m in profile.extra_mos)
            return SubscriberView(dev_id, profile.name, device.status, servers, device.chosen_dm_server_id,
                                  packages, tuple(device.pending_packages))

    def choose_server(self, dev_id: str, server_id: str, *, request_id: str | None = None) -> None:
        """Record the management authority (a DM server of the device's profile, by SrvID)."""
        self._change(dev_id, "subscriber.server.choose", {"server_id": server_id}, request_id,
                     lambda session, device, profile: self._set_server(session, device, profile, server_id))

    @staticmethod
    def _set_server(session: Session, device: DeviceRow, profile: EnrollmentProfileRow, server_id: str) -> None:
        row = session.exec(select(DmServerRow).where(DmServerRow.server_id == server_id)).first()
        if row is None or row.id not in profile_links.server_ids(session, row_id(profile.id)):
            raise InvalidRequest(f"{server_id!r} is not a DM server this device can use", field="server_id")
        device.chosen_dm_server_id = row.id

    def set_packages(self, dev_id: str, package_ids: list[str], *, request_id: str | None = None) -> None:
        """Choose the configuration packages (ClientURIs of the profile's extra MOs) for the next bootstrap."""

        def apply(session: Session, device: DeviceRow, profile: EnrollmentProfileRow) -> None:
            offered = [str(m.get("ClientURI")) for m in profile.extra_mos]
            unknown = sorted(set(package_ids) - set(offered))
            if unknown:
                raise InvalidRequest(f"not offered for this device: {', '.join(unknown)}", field="packages")
            device.pending_packages = [p for p in offered if p in set(package_ids)]

        self._change(dev_id, "subscriber.packages.set", {"packages": sorted(set(package_ids))}, request_id, apply)

    def _change(self, dev_id: str, action: str, detail: dict[str, Any], request_id: str | None,
                apply: Any) -> None:
        try:
            with self._db.session() as session:
                device, profile = self._load(session, dev_id, lock=True)
                if device.status == "blocked":
                    raise PermissionDenied("this device is blocked; contact its provider")
                apply(session, device, profile)
                device.updated_at = utcnow()
                session.add(device)
                append_event(session, actor=f"subscriber:{dev_id}", action=action, outcome="success",
                             target=dev_id, request_id=request_id, detail=detail)
        except DmBootstrapError as exc:
            with self._db.session() as session:
                append_event(session, actor=f"subscriber:{dev_id}", action=action, outcome="failure",
                             target=dev_id, request_id=request_id, detail={**detail, "reason": exc.message})
            raise

    @staticmethod
    def _load(session: Session, dev_id: str, *, lock: bool = False) -> tuple[DeviceRow, EnrollmentProfileRow]:
        query = select(DeviceRow).where(DeviceRow.dev_id == dev_id)
        device = session.exec(query.with_for_update() if lock else query).first()
        if device is None:
            raise NotFound(f"no device {dev_id!r}", field="dev_id")
        profile = session.get(EnrollmentProfileRow, device.profile_id)
        if profile is None:
            raise NotFound("the device's profile is gone", field="profile")
        return device, profile
