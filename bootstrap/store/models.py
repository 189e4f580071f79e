"""Database tables (sqlmodel). The database holds references and hashes, never secrets.

Changing a table means a new Alembic revision in ``bootstrap/store/migrations``.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlmodel import Field, SQLModel

__all__ = ["AuditEvent", "AuditHead", "AuthorityRow", "CertificateRow", "utcnow"]


def utcnow() -> datetime:
    return datetime.now(UTC)


class AuthorityRow(SQLModel, table=True):
    """A CA certificate of ours: the root or an issuing CA, with a reference to its key."""

    __tablename__ = "authority"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(index=True, unique=True, max_length=64)
    kind: str = Field(max_length=16)  # root | issuing
    parent_id: int | None = Field(default=None, foreign_key="authority.id")
    subject: str = Field(max_length=512)
    serial_hex: str = Field(max_length=64)
    fingerprint: str = Field(unique=True, max_length=80)
    not_before: datetime
    not_after: datetime
    #: KeyRef.to_uri(): backend, key name, version, key type. Never the key.
    key_ref: str = Field(max_length=256)
    pem: str
    #: The issuing CA new certificates come from; older ones stay for verification and CRLs.
    active: bool = Field(default=False, index=True)
    created_at: datetime = Field(default_factory=utcnow)


class CertificateRow(SQLModel, table=True):
    """A certificate we issued. Recorded before it is returned to anyone."""

    __tablename__ = "certificate"

    id: int | None = Field(default=None, primary_key=True)
    serial_hex: str = Field(unique=True, index=True, max_length=64)
    authority_id: int = Field(foreign_key="authority.id", index=True)
    profile: str = Field(max_length=32, index=True)
    subject: str = Field(max_length=512)
    common_name: str = Field(max_length=256, index=True)
    #: JSON list of "dns:..", "ip:..", "uri:.." strings.
    sans: str = Field(default="[]")
    device_id: str | None = Field(default=None, max_length=128, index=True)
    key_type: str = Field(max_length=16)
    not_before: datetime
    not_after: datetime = Field(index=True)
    status: str = Field(default="valid", max_length=16, index=True)  # valid | revoked
    revoked_at: datetime | None = None
    revocation_reason: str | None = Field(default=None, max_length=32)
    fingerprint: str = Field(unique=True, max_length=80)
    pem: str
    requested_by: str = Field(max_length=128)
    request_id: str | None = Field(default=None, max_length=64)
    created_at: datetime = Field(default_factory=utcnow, index=True)


class AuditEvent(SQLModel, table=True):
    """One security event, hash-chained to the one before it."""

    __tablename__ = "audit_event"

    id: int | None = Field(default=None, primary_key=True)
    seq: int = Field(unique=True, index=True)
    at: datetime = Field(default_factory=utcnow, index=True)
    actor: str = Field(max_length=128, index=True)
    action: str = Field(max_length=64, index=True)
    outcome: str = Field(max_length=16)  # success | failure
    target: str | None = Field(default=None, max_length=256, index=True)
    request_id: str | None = Field(default=None, max_length=64)
    #: JSON object with details; never secrets.
    detail: str = Field(default="{}")
    prev_hash: str = Field(max_length=64)
    hash: str = Field(max_length=64)


class AuditHead(SQLModel, table=True):
    """The chain's head: one row, locked while an event is appended, so chains never fork."""

    __tablename__ = "audit_head"

    id: int = Field(default=1, primary_key=True)
    seq: int = 0
    hash: str = Field(default="0" * 64, max_length=64)
