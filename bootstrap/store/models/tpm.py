"""The TPM tables: TPM manufacturer CAs per enrollment profile, and the EK a device enrolled with.

Registered on SQLModel's metadata by :mod:`bootstrap.store.models`.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import UniqueConstraint
from sqlmodel import Field, SQLModel

from bootstrap.store.models.types import UtcDateTime, utcnow

__all__ = ["TpmDeviceRow", "TpmManufacturerCaRow"]


class TpmManufacturerCaRow(SQLModel, table=True):
    """A TPM manufacturer CA (EK certificate root or intermediate) trusted for one enrollment profile."""

    __tablename__ = "tpm_manufacturer_ca"
    __table_args__ = (UniqueConstraint("profile_id", "fingerprint"), UniqueConstraint("profile_id", "name"))

    id: int | None = Field(default=None, primary_key=True)
    profile_id: int = Field(foreign_key="enrollment_profile.id", index=True)
    name: str = Field(max_length=128)
    #: sha256:<hex> of the CA certificate.
    fingerprint: str = Field(max_length=80)
    pem: str
    enabled: bool = True
    created_at: datetime = Field(sa_type=UtcDateTime, default_factory=utcnow)


class TpmDeviceRow(SQLModel, table=True):
    """The TPM a device proved it holds: its EK certificate's fingerprint (one device per EK)."""

    __tablename__ = "tpm_device"

    id: int | None = Field(default=None, primary_key=True)
    device_id: int = Field(foreign_key="device.id", unique=True)
    #: sha256:<hex> of the EK certificate.
    ek_fingerprint: str = Field(max_length=80, unique=True)
    #: Hex Name of the AK that certified the key at the last enrollment.
    ak_name: str = Field(max_length=140)
    enrolled_at: datetime = Field(sa_type=UtcDateTime, default_factory=utcnow)
