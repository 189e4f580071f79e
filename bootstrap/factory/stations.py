"""Factory stations that authenticate with a client certificate (mutual TLS).

A station is an API-token principal (role ``factory-line``, allowed profiles, one
device quota) whose client certificate is pinned by its SHA-256 fingerprint in
``factory_station``. Over mTLS the station acts as its token's principal, so it
has one quota and one set of profiles however it authenticates; revoking the
token, or disabling the station row, locks the certificate out too.

The TLS layer checks the certificate chains to a CA the service trusts (ours or a
manufacturer CA); the pin is the authoritative check, made against the current
database on every request.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from sqlmodel import select

from bootstrap.auth.principals import Principal, require
from bootstrap.errors import AuthenticationFailed, Conflict, InvalidRequest, NotFound
from bootstrap.services.audit import append_event
from bootstrap.services.tokens import TokenService
from bootstrap.store.db import Database
from bootstrap.store.models import ApiTokenRow, FactoryStationRow, utcnow
from pki.authority import fingerprint

__all__ = ["Station", "StationService"]


@dataclass(frozen=True)
class Station:
    """Who runs a batch: its audit name, the profiles it may use, and whose quota it draws on."""

    #: How the audit trail names the caller (``token:line-3`` by Bearer, ``station:line-3`` by mTLS).
    actor: str
    #: Who owns the batches and devices: the same for both ways a station authenticates.
    owner: str
    #: None: any profile (the local operator of an embedded install).
    allowed_profiles: frozenset[str] | None
    #: The API token whose ``device_quota`` is drawn on; None: no quota.
    quota_token: str | None = None
    request_id: str | None = None

    @classmethod
    def of(cls, principal: Principal, request_id: str | None = None) -> Station:
        """The station an authenticated principal is (it must hold ``factory:provision``)."""
        require(principal, "factory:provision")
        if principal.kind in ("token", "station"):
            return cls(principal.actor, f"token:{principal.name}", frozenset(principal.allowed_profiles),
                       principal.name, request_id)
        return cls(principal.actor, principal.actor, frozenset(principal.allowed_profiles), None, request_id)

    @classmethod
    def local(cls, actor: str = "cli:factory") -> Station:
        """The operator of a single-machine install, running the CLI against the local data directory."""
        return cls(actor, actor, None)



class StationService:
    """Adds, lists and removes mTLS stations; maps a client certificate to its principal."""

    def __init__(self, database: Database, tokens: TokenService) -> None:
        self._db = database
        self._tokens = tokens

    def add(self, name: str, certificate_pem: str, *, actor: str, token_name: str | None = None,
            allowed_profiles: list[str] | None = None, device_quota: int | None = None) -> tuple[
            FactoryStationRow, str | None]:
        """Pin a station's client certificate to an API token; create the token unless named.

        Returns the station row and the new token (shown once), or None when an existing
        token was named.

        Raises:
            InvalidRequest: not one PEM certificate; NotFound: no such token.
            Conflict: the name or the certificate is taken.
        """
        try:
            cert = x509.load_pem_x509_certificate(certificate_pem.encode())
        except ValueError:
            raise InvalidRequest("the station certificate must be one PEM certificate", field="cert") from None
        token = None
        if token_name is None:
            token = self._tokens.create(name, ["factory-line"], actor=actor, allowed_profiles=allowed_profiles,
                                        device_quota=device_quota)
            token_name = name
        with self._db.session() as session:
            token_row = session.exec(select(ApiTokenRow).where(ApiTokenRow.name == token_name)).first()
            if token_row is None or token_row.id is None:
                raise NotFound(f"no API token named {token_name!r}", field="token")
            print_ = fingerprint(cert)
            taken = session.exec(select(FactoryStationRow).where(
                (FactoryStationRow.name == name) | (FactoryStationRow.cert_fingerprint == print_))).first()
            if taken is not None:
                raise Conflict(f"station {taken.name!r} has that name or certificate already", field="name")
            row = FactoryStationRow(name=name, token_id=token_row.id, cert_fingerprint=print_,
                                    subject=cert.subject.rfc4514_string(), created_by=actor)
            session.add(row)
            session.flush()
            append_event(session, actor=actor, action="factory.station.add", outcome="success", target=name,
                         detail={"token": token_name, "fingerprint": print_, "subject": row.subject})
        return row, token

    def list(self) -> list[tuple[FactoryStationRow, str]]:
        """Stations with the name of their token."""
        with self._db.read_session() as session:
            rows = session.exec(select(FactoryStationRow, ApiTokenRow).where(
                FactoryStationRow.token_id == ApiTokenRow.id).order_by(FactoryStationRow.name))
            return [(station, token.name) for station, token in rows]

    def remove(self, name: str, *, actor: str) -> None:
        """Unpin a station's certificate (its token stays; revoke it with ``dmboot token revoke``)."""
        with self._db.session() as session:
            row = session.exec(select(FactoryStationRow).where(FactoryStationRow.name == name)).first()
            if row is None:
                raise NotFound(f"no factory station {name!r}", field="name")
            session.delete(row)
            append_event(session, actor=actor, action="factory.station.remove", outcome="success", target=name,
                         detail={"fingerprint": row.cert_fingerprint})

    def authenticate(self, certificate: x509.Certificate, *, now: datetime | None = None) -> Principal:
        """The principal a station's client certificate stands for.

        Raises:
            AuthenticationFailed: an unknown, disabled or expired certificate, or a revoked
                or expired token behind it.
        """
        at = now or utcnow()
        if not certificate.not_valid_before_utc <= at < certificate.not_valid_after_utc:
            raise AuthenticationFailed("the station's client certificate is not valid now")
        print_ = fingerprint(certificate)
        with self._db.session() as session:
            found = session.exec(select(FactoryStationRow, ApiTokenRow).where(
                FactoryStationRow.cert_fingerprint == print_, FactoryStationRow.token_id == ApiTokenRow.id)).first()
            if found is None or not found[0].enabled:
                raise AuthenticationFailed(f"client certificate {print_} is not a registered factory station")
            station, token = found
            expires = token.expires_at
            if token.revoked or (expires is not None and expires <= at):
                raise AuthenticationFailed(f"the API token of station {station.name!r} is revoked or expired")
            return Principal.with_roles(token.name, "station", frozenset(token.roles),
                                        allowed_profiles=tuple(token.allowed_profiles),
                                        device_quota=token.device_quota)


