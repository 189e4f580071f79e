"""API tokens: created once and shown once, checked on every request, revoked; each change audited.

Only a token's SHA-256 is stored (:func:`bootstrap.auth.principals.hash_token`).
"""

from __future__ import annotations

import hmac
import secrets
from datetime import datetime, timedelta

from sqlmodel import select

from bootstrap.auth.permissions import ROLES
from bootstrap.auth.principals import TOKEN_PREFIX, Principal, hash_token
from bootstrap.errors import AuthenticationFailed, Conflict, InvalidRequest, NotFound
from bootstrap.services.audit import append_event
from bootstrap.store.db import Database
from bootstrap.store.models import ApiTokenRow, utcnow

__all__ = ["TokenService"]


class TokenService:
    """Creates, checks and revokes API tokens."""

    def __init__(self, database: Database) -> None:
        self._db = database

    def create(self, name: str, roles: list[str], *, actor: str, ttl: timedelta | None = None,
               allowed_profiles: list[str] | None = None, device_quota: int | None = None) -> str:
        """A new token for ``name`` with ``roles``; the token is returned once and never stored."""
        unknown = sorted(set(roles) - set(ROLES))
        if unknown or not roles:
            raise InvalidRequest(f"unknown or missing roles {unknown}; known: {', '.join(sorted(ROLES))}",
                                 field="roles")
        if "factory-line" in roles and not allowed_profiles:
            raise InvalidRequest("a factory-line token needs at least one enrollment profile (--profile): without"
                                 " one it can provision nothing", field="allowed_profiles")
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        with self._db.session() as session:
            if session.exec(select(ApiTokenRow).where(ApiTokenRow.name == name)).first():
                raise Conflict(f"an API token named {name!r} exists already", field="name")
            session.add(ApiTokenRow(name=name, token_hash=hash_token(token), roles=sorted(roles),
                                    allowed_profiles=allowed_profiles or [], device_quota=device_quota,
                                    expires_at=utcnow() + ttl if ttl else None, created_by=actor))
            append_event(session, actor=actor, action="token.create", outcome="success", target=name,
                         detail={"roles": sorted(roles), "expires_in_s": ttl.total_seconds() if ttl else None})
        return token

    def authenticate(self, token: str, *, now: datetime | None = None) -> Principal:
        """The principal a bearer token belongs to.

        Raises:
            AuthenticationFailed: unknown, revoked or expired token.
        """
        if not token.startswith(TOKEN_PREFIX):
            raise AuthenticationFailed("not an API token")
        digest = hash_token(token)
        with self._db.session() as session:
            row = session.exec(select(ApiTokenRow).where(ApiTokenRow.token_hash == digest)).first()
            if row is None or not hmac.compare_digest(row.token_hash, digest) or row.revoked:
                raise AuthenticationFailed("unknown or revoked API token")
            if row.expires_at is not None and row.expires_at <= (now or utcnow()):
                raise AuthenticationFailed("the API token has expired")
            return Principal.with_roles(row.name, "token", frozenset(row.roles),
                                        allowed_profiles=tuple(row.allowed_profiles), device_quota=row.device_quota)

    def describe_all(self) -> list[dict[str, object]]:
        """Every API token as JSON, newest first - never the token, not even its hash."""
        with self._db.read_session() as session:
            rows = session.exec(select(ApiTokenRow).order_by(ApiTokenRow.id.desc()))  # type: ignore[union-attr]
            return [{"name": r.name, "roles": r.roles, "allowed_profiles": r.allowed_profiles,
                     "device_quota": r.device_quota, "expires_at": r.expires_at.isoformat() if r.expires_at else None,
                     "revoked": r.revoked, "created_by": r.created_by, "created_at": r.created_at.isoformat(),
                     "last_used_at": r.last_used_at.isoformat() if r.last_used_at else None} for r in rows]

    def revoke(self, name: str, *, actor: str) -> None:
        with self._db.session() as session:
            row = session.exec(select(ApiTokenRow).where(ApiTokenRow.name == name)).first()
            if row is None:
                raise NotFound(f"no API token named {name!r}", field="name")
            row.revoked = True
            session.add(row)
            append_event(session, actor=actor, action="token.revoke", outcome="success", target=name)
