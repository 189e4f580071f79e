"""The audit trail: hash-chained events and the chain's head."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel

from bootstrap.store.models.types import UtcDateTime, utcnow

__all__ = ["AuditEvent", "AuditHead"]


class AuditEvent(SQLModel, table=True):
    """One security event, hash-chained to the one before it."""

    __tablename__ = "audit_event"

    id: int | None = Field(default=None, primary_key=True)
    seq: int = Field(unique=True, index=True)
    at: datetime = Field(sa_type=UtcDateTime, default_factory=utcnow, index=True)
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
