"""Principals: API tokens, admins, console sessions, login throttling."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON
from sqlmodel import Field, SQLModel

from bootstrap.store.models.types import UtcDateTime, utcnow

__all__ = ["AdminRow", "ApiTokenRow", "ConsoleSessionRow", "LoginThrottleRow"]


class ApiTokenRow(SQLModel, table=True):
    """An API client's bearer token: only its SHA-256 is stored; scoped by roles; expiring."""

    __tablename__ = "api_token"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(unique=True, index=True, max_length=128)
    token_hash: str = Field(unique=True, index=True, max_length=64)
    roles: list[str] = Field(default_factory=list, sa_type=JSON)
    #: Factory lines: the enrollment profiles this principal may use (empty = none).
    allowed_profiles: list[str] = Field(default_factory=list, sa_type=JSON)
    #: Factory lines: how many devices it may still provision (None = no quota).
    device_quota: int | None = None
    expires_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    revoked: bool = False
    created_by: str = Field(max_length=128)
    created_at: datetime = Field(sa_type=UtcDateTime, default_factory=utcnow)
    last_used_at: datetime | None = Field(default=None, sa_type=UtcDateTime)


# -- admins and console sessions (issue 7) ------------------------------------------------


class AdminRow(SQLModel, table=True):
    """A human admin: a scrypt password hash, roles, and optionally TOTP and a client certificate.

    The TOTP secret lives in the secret store (KV ``admins/<username>/totp``), never here.
    """

    __tablename__ = "admin"

    id: int | None = Field(default=None, primary_key=True)
    username: str = Field(unique=True, index=True, max_length=64)
    #: ``scrypt$<log2 n>$<r>$<p>$<salt b64>$<hash b64>`` (bootstrap.auth.passwords).
    password_hash: str = Field(max_length=256)
    roles: list[str] = Field(default_factory=list, sa_type=JSON)
    totp_enabled: bool = False
    #: The last TOTP time step accepted: a code is never accepted twice.
    totp_last_step: int | None = None
    #: sha256:<hex> of the admin's client certificate, when one is bound.
    cert_fingerprint: str | None = Field(default=None, unique=True, max_length=80)
    disabled: bool = False
    created_by: str = Field(max_length=128)
    created_at: datetime = Field(sa_type=UtcDateTime, default_factory=utcnow)
    updated_at: datetime = Field(sa_type=UtcDateTime, default_factory=utcnow)
    last_login_at: datetime | None = Field(default=None, sa_type=UtcDateTime)


class ConsoleSessionRow(SQLModel, table=True):
    """A web console session, kept server-side (DM-SYS-001); the cookie holds a token, this its hash."""

    __tablename__ = "console_session"

    id: int | None = Field(default=None, primary_key=True)
    token_hash: str = Field(unique=True, index=True, max_length=64)
    #: admin | subscriber
    kind: str = Field(max_length=16)
    admin_id: int | None = Field(default=None, foreign_key="admin.id", index=True)
    #: Subscriber sessions: the device whose claim code opened the session.
    dev_id: str | None = Field(default=None, max_length=128)
    #: active | totp (password accepted, TOTP code still due)
    stage: str = Field(default="active", max_length=16)
    created_at: datetime = Field(sa_type=UtcDateTime, default_factory=utcnow)
    last_seen_at: datetime = Field(sa_type=UtcDateTime, default_factory=utcnow)
    expires_at: datetime = Field(sa_type=UtcDateTime, index=True)
    client: str | None = Field(default=None, max_length=64)


class LoginThrottleRow(SQLModel, table=True):
    """Failed attempts per login name (or claimed DevID): slows guessing on every replica."""

    __tablename__ = "login_throttle"

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(unique=True, index=True, max_length=200)
    failures: int = 0
    last_failure_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    locked_until: datetime | None = Field(default=None, sa_type=UtcDateTime)
