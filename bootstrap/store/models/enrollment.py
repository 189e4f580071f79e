"""Enrollment: DM servers, data repositories, profiles and their links, devices, tokens."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, UniqueConstraint
from sqlmodel import Field, SQLModel

from bootstrap.store.models.types import UtcDateTime, utcnow

__all__ = [
    "DataRepositoryRow",
    "DeviceRow",
    "DmServerRow",
    "EnrollmentProfileRow",
    "EnrollmentTokenRow",
    "ManufacturerCaRow",
    "ProfileDataRepositoryRow",
    "ProfileDmServerRow",
    "UsedNonceRow",
]


class DmServerRow(SQLModel, table=True):
    """A DM server devices are bootstrapped to (DMAcc SrvID / SrvURI)."""

    __tablename__ = "dm_server"

    id: int | None = Field(default=None, primary_key=True)
    #: DMAcc SrvID: the server's identifier as devices know it.
    server_id: str = Field(unique=True, index=True, max_length=128)
    name: str = Field(max_length=256)
    #: DMAcc SrvURI: where devices open DM sessions (https).
    url: str = Field(max_length=1024)
    #: PEM trust anchor for the server's TLS certificate; None means our own root CA.
    trust_anchor_pem: str | None = None
    created_at: datetime = Field(sa_type=UtcDateTime, default_factory=utcnow)
    updated_at: datetime = Field(sa_type=UtcDateTime, default_factory=utcnow)


class DataRepositoryRow(SQLModel, table=True):
    """A data repository devices fetch management data from (HGET, DM-HLF-003)."""

    __tablename__ = "data_repository"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(unique=True, index=True, max_length=128)
    url: str = Field(max_length=1024)
    #: PEM trust anchor for the repository's TLS certificate; None means our own root CA.
    trust_anchor_pem: str | None = None
    created_at: datetime = Field(sa_type=UtcDateTime, default_factory=utcnow)
    updated_at: datetime = Field(sa_type=UtcDateTime, default_factory=utcnow)


class EnrollmentProfileRow(SQLModel, table=True):
    """A group: one DM account template serving many devices (DM-ADM-001)."""

    __tablename__ = "enrollment_profile"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(unique=True, index=True, max_length=64)
    description: str = Field(default="", max_length=1024)
    # Its DM servers and data repositories: profile_dm_server, profile_data_repository.
    #: DMAcc 1.2 settings beyond SrvID/SrvURI: {"Name": .., "Perm": [MOID..], "Noti": {..}}.
    dmacc: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    #: pki certificate profile for the device certificate.
    certificate_profile: str = Field(default="device", max_length=32)
    key_types: list[str] = Field(default_factory=lambda: ["p256", "p384", "ed25519"], sa_type=JSON)
    #: Allowed attestation methods: token, group-key, idevid, current-cert.
    attestation: list[str] = Field(default_factory=lambda: ["token"], sa_type=JSON)
    #: Extra MO instances (DM 2.0 MO instance JSON) delivered when the device declares them.
    extra_mos: list[dict[str, Any]] = Field(default_factory=list, sa_type=JSON)
    #: "hget" (the specification's flow: HGET, CONT, END; DM-HLF-003) or "inline" (ours: PUT with
    #: data, DM-HLF-004, the OMADM-Session header and BootstrapComplete in package 3).
    delivery: str = Field(default="hget", max_length=16)
    #: Whether the service may generate the device's key when package 1 carries no CSR (DMAcc
    #: Auth/Trsp/Secret); a device that can make a key should never receive one.
    server_keygen: bool = False
    validity_days: int = 365
    #: SecretRef URI of the group key in the secret store (group-key attestation); never the key.
    group_key_ref: str | None = Field(default=None, max_length=256)
    #: What re-enrollment does to earlier certificates: "first-use" (revoked once the new one
    #: is first used, or after supersede_grace_seconds), "immediate", or "keep".
    supersede: str = Field(default="first-use", max_length=16)
    supersede_grace_seconds: int = 3600
    enabled: bool = True
    created_at: datetime = Field(sa_type=UtcDateTime, default_factory=utcnow)
    updated_at: datetime = Field(sa_type=UtcDateTime, default_factory=utcnow)


class ProfileDmServerRow(SQLModel, table=True):
    """A DM server of an enrollment profile, at its place in the profile's list.

    The server at position 0 is the account's (unless a subscriber chose another); the
    others follow it as trust anchors. A server a profile names cannot be deleted
    (RESTRICT); deleting the profile deletes its links (CASCADE).
    """

    __tablename__ = "profile_dm_server"
    __table_args__ = (UniqueConstraint("profile_id", "dm_server_id", name="uq_profile_dm_server"),)

    profile_id: int = Field(foreign_key="enrollment_profile.id", primary_key=True, ondelete="CASCADE")
    position: int = Field(primary_key=True)
    dm_server_id: int = Field(foreign_key="dm_server.id", index=True, ondelete="RESTRICT")


class ProfileDataRepositoryRow(SQLModel, table=True):
    """A data repository of an enrollment profile, at its place in the profile's list (as above)."""

    __tablename__ = "profile_data_repository"
    __table_args__ = (UniqueConstraint("profile_id", "data_repository_id", name="uq_profile_data_repository"),)

    profile_id: int = Field(foreign_key="enrollment_profile.id", primary_key=True, ondelete="CASCADE")
    position: int = Field(primary_key=True)
    data_repository_id: int = Field(foreign_key="data_repository.id", index=True, ondelete="RESTRICT")


class DeviceRow(SQLModel, table=True):
    """A device known by its DevID: registered ahead, or created at group enrollment."""

    __tablename__ = "device"

    id: int | None = Field(default=None, primary_key=True)
    dev_id: str = Field(unique=True, index=True, max_length=128)
    profile_id: int = Field(foreign_key="enrollment_profile.id", index=True)
    #: registered | enrolled | delivered | bootstrapped | blocked
    status: str = Field(default="registered", max_length=16, index=True)
    #: sha256:<hex> of the manufacturer certificate (IDevID), when registered with one.
    idevid_fingerprint: str | None = Field(default=None, max_length=80)
    #: What the device declared in package 1 (DM-HLF-001/008).
    declared_mos: list[dict[str, Any]] = Field(default_factory=list, sa_type=JSON)
    features: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    #: Subscriber's choice of DM server (use case B.1), overriding the profile's first.
    chosen_dm_server_id: int | None = Field(default=None, foreign_key="dm_server.id")
    #: Extra configuration packages chosen for the next bootstrap (use case B.2).
    pending_packages: list[str] = Field(default_factory=list, sa_type=JSON)
    current_serial: str | None = Field(default=None, max_length=64)
    bootstrapped_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    created_at: datetime = Field(sa_type=UtcDateTime, default_factory=utcnow)
    updated_at: datetime = Field(sa_type=UtcDateTime, default_factory=utcnow)


class EnrollmentTokenRow(SQLModel, table=True):
    """A one-time enrollment token (claim code). Only its SHA-256 is stored."""

    __tablename__ = "enrollment_token"

    id: int | None = Field(default=None, primary_key=True)
    token_hash: str = Field(unique=True, index=True, max_length=64)
    profile_id: int = Field(foreign_key="enrollment_profile.id", index=True)
    #: The device the token is for; None lets the first device that presents it claim it.
    dev_id: str | None = Field(default=None, max_length=128, index=True)
    expires_at: datetime = Field(sa_type=UtcDateTime, index=True)
    used_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    used_by: str | None = Field(default=None, max_length=128)
    created_by: str = Field(max_length=128)
    created_at: datetime = Field(sa_type=UtcDateTime, default_factory=utcnow)


class ManufacturerCaRow(SQLModel, table=True):
    """A manufacturer CA whose device certificates (IDevID) an admin trusts."""

    __tablename__ = "manufacturer_ca"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(unique=True, index=True, max_length=128)
    fingerprint: str = Field(unique=True, max_length=80)
    pem: str
    enabled: bool = True
    created_at: datetime = Field(sa_type=UtcDateTime, default_factory=utcnow)


class UsedNonceRow(SQLModel, table=True):
    """A nonce or signed timestamp already seen: a replayed request finds it here."""

    __tablename__ = "used_nonce"

    id: int | None = Field(default=None, primary_key=True)
    #: SHA-256 hex of (method, DevID, nonce).
    digest: str = Field(unique=True, index=True, max_length=64)
    expires_at: datetime = Field(sa_type=UtcDateTime, index=True)
