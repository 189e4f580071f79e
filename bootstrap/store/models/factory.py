"""Factory provisioning lines: stations, batches, the devices a batch issued for."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, UniqueConstraint
from sqlmodel import Field, SQLModel

from bootstrap.store.models.types import UtcDateTime, utcnow

__all__ = ["FactoryBatchRow", "FactoryItemRow", "FactoryStationRow"]


class FactoryStationRow(SQLModel, table=True):
    """A factory station's client certificate, pinned by fingerprint to an API-token principal.

    The station acts as the linked ``api_token`` row: its roles, allowed profiles and its
    one device quota, whether it authenticates by Bearer token or by mutual TLS.
    """

    __tablename__ = "factory_station"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(unique=True, index=True, max_length=128)
    token_id: int = Field(foreign_key="api_token.id", index=True)
    #: sha256:<hex> of the station's client certificate (DER).
    cert_fingerprint: str = Field(unique=True, index=True, max_length=80)
    subject: str = Field(max_length=512)
    enabled: bool = True
    created_by: str = Field(max_length=128)
    created_at: datetime = Field(sa_type=UtcDateTime, default_factory=utcnow)


class FactoryBatchRow(SQLModel, table=True):
    """One factory batch, named by the station's Idempotency-Key; items may arrive in many requests."""

    __tablename__ = "factory_batch"
    __table_args__ = (UniqueConstraint("principal", "idempotency_key", name="uq_factory_batch_key"),)

    id: int | None = Field(default=None, primary_key=True)
    principal: str = Field(max_length=128, index=True)
    idempotency_key: str = Field(max_length=128)
    profile: str = Field(max_length=64, index=True)
    #: Server-generated keys: the PBKDF2 salt (hex) of the batch's key encryption; not secret.
    kdf_salt: str = Field(max_length=64)
    kdf_iterations: int
    issued: int = 0
    existing: int = 0
    failed: int = 0
    created_at: datetime = Field(sa_type=UtcDateTime, default_factory=utcnow)
    updated_at: datetime = Field(sa_type=UtcDateTime, default_factory=utcnow)


class FactoryItemRow(SQLModel, table=True):
    """A device a factory batch issued for: at most one per (profile, DevID), written with its certificate.

    For a server-generated key only a reference to the station-encrypted copy kept for
    redelivery (until ``key_expires_at``) is stored; never the key.
    """

    __tablename__ = "factory_item"
    __table_args__ = (UniqueConstraint("profile", "dev_id", name="uq_factory_item_device"),)

    # Only the (profile, DevID) index: every read goes through it, and each further
    # index would cost every insert of a 10,000-device batch.
    id: int | None = Field(default=None, primary_key=True)
    batch_id: int = Field(foreign_key="factory_batch.id")
    profile: str = Field(max_length=64)
    dev_id: str = Field(max_length=128)
    #: csr | keygen
    mode: str = Field(max_length=8)
    #: The certificate (certificate.serial_hex is unique).
    serial_hex: str = Field(max_length=64)
    #: keygen: SecretRef URI of the secret-store entry holding the station-encrypted key.
    key_ref: str | None = Field(default=None, max_length=256)
    key_expires_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    #: Manufacturer attributes as the station sent them (serial number, model, ...).
    attributes: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    created_at: datetime = Field(sa_type=UtcDateTime, default_factory=utcnow)
