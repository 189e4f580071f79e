"""Database tables (sqlmodel). The database holds references and hashes, never secrets.

Changing a table means a new Alembic revision in ``bootstrap/store/migrations``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Index, LargeBinary, UniqueConstraint
from sqlmodel import Field, SQLModel

__all__ = [
    "AdminRow",
    "AuditEvent",
    "ApiTokenRow",
    "AuditHead",
    "AuthorityRow",
    "CertificateRow",
    "ConsoleSessionRow",
    "CrlRow",
    "DataRepositoryRow",
    "DeviceRow",
    "DmObjectRow",
    "DmServerRow",
    "EnrollmentProfileRow",
    "EnrollmentTokenRow",
    "FactoryBatchRow",
    "FactoryItemRow",
    "FactoryStationRow",
    "LoginThrottleRow",
    "ManufacturerCaRow",
    "OcspResponseRow",
    "OcspSignerRow",
    "RevokedRow",
    "UsedNonceRow",
    "utcnow",
]


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
    #: Re-enrollment: the serial of the certificate that superseded this one.
    superseded_by: str | None = Field(default=None, max_length=64)
    #: When a superseded certificate is revoked (reason ``superseded``) at the latest.
    supersede_at: datetime | None = Field(default=None, index=True)
    #: When the certificate was first seen attesting (its predecessors are then revoked).
    first_used_at: datetime | None = None


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


# -- enrollment: DM servers, data repositories, profiles, devices, tokens ------------------


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
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class DataRepositoryRow(SQLModel, table=True):
    """A data repository devices fetch management data from (HGET, DM-HLF-003)."""

    __tablename__ = "data_repository"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(unique=True, index=True, max_length=128)
    url: str = Field(max_length=1024)
    #: PEM trust anchor for the repository's TLS certificate; None means our own root CA.
    trust_anchor_pem: str | None = None
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class EnrollmentProfileRow(SQLModel, table=True):
    """A group: one DM account template serving many devices (DM-ADM-001)."""

    __tablename__ = "enrollment_profile"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(unique=True, index=True, max_length=64)
    description: str = Field(default="", max_length=1024)
    #: DmServerRow.id values; the first is the account's server.
    dm_server_ids: list[int] = Field(default_factory=list, sa_type=JSON)
    data_repository_ids: list[int] = Field(default_factory=list, sa_type=JSON)
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
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


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
    bootstrapped_at: datetime | None = None
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class EnrollmentTokenRow(SQLModel, table=True):
    """A one-time enrollment token (claim code). Only its SHA-256 is stored."""

    __tablename__ = "enrollment_token"

    id: int | None = Field(default=None, primary_key=True)
    token_hash: str = Field(unique=True, index=True, max_length=64)
    profile_id: int = Field(foreign_key="enrollment_profile.id", index=True)
    #: The device the token is for; None lets the first device that presents it claim it.
    dev_id: str | None = Field(default=None, max_length=128, index=True)
    expires_at: datetime = Field(index=True)
    used_at: datetime | None = None
    used_by: str | None = Field(default=None, max_length=128)
    created_by: str = Field(max_length=128)
    created_at: datetime = Field(default_factory=utcnow)


class ManufacturerCaRow(SQLModel, table=True):
    """A manufacturer CA whose device certificates (IDevID) an admin trusts."""

    __tablename__ = "manufacturer_ca"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(unique=True, index=True, max_length=128)
    fingerprint: str = Field(unique=True, max_length=80)
    pem: str
    enabled: bool = True
    created_at: datetime = Field(default_factory=utcnow)


class UsedNonceRow(SQLModel, table=True):
    """A nonce or signed timestamp already seen: a replayed request finds it here."""

    __tablename__ = "used_nonce"

    id: int | None = Field(default=None, primary_key=True)
    #: SHA-256 hex of (method, DevID, nonce).
    digest: str = Field(unique=True, index=True, max_length=64)
    expires_at: datetime = Field(index=True)


# -- principals -------------------------------------------------------------------------


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
    expires_at: datetime | None = None
    revoked: bool = False
    created_by: str = Field(max_length=128)
    created_at: datetime = Field(default_factory=utcnow)
    last_used_at: datetime | None = None


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
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    last_login_at: datetime | None = None


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
    created_at: datetime = Field(default_factory=utcnow)
    last_seen_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime = Field(index=True)
    client: str | None = Field(default=None, max_length=64)


class LoginThrottleRow(SQLModel, table=True):
    """Failed attempts per login name (or claimed DevID): slows guessing on every replica."""

    __tablename__ = "login_throttle"

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(unique=True, index=True, max_length=200)
    failures: int = 0
    last_failure_at: datetime | None = None
    locked_until: datetime | None = None


# -- revocation: CRLs and OCSP responder certificates ---------------------------------------


class CrlRow(SQLModel, table=True):
    """A CRL we published (RFC 5280): full or delta, one number sequence per issuing CA.

    The unique (authority, number) pair keeps cRLNumber monotonic across replicas. Only
    the latest full and delta CRL keep their DER; older rows keep the facts delta CRLs
    need (number, thisUpdate) until they expire.
    """

    __tablename__ = "crl"
    __table_args__ = (UniqueConstraint("authority_id", "number", name="uq_crl_authority_number"),
                      Index("ix_crl_scope", "authority_id", "kind", "scope", "number"))

    id: int | None = Field(default=None, primary_key=True)
    authority_id: int = Field(foreign_key="authority.id", index=True)
    number: int
    #: full | delta | partition
    kind: str = Field(max_length=16)
    #: What it covers, as its file is named: the CA's name (full, delta) or ``<CA>-p<N>``.
    scope: str = Field(default="", max_length=96)
    #: The highest ``revoked_certificate.id`` this CRL took into account.
    log_upto: int = 0
    #: Delta CRLs: the number of the full CRL they update (deltaCRLIndicator).
    base_number: int | None = None
    this_update: datetime
    next_update: datetime = Field(index=True)
    entries: int = 0
    der: bytes | None = Field(default=None, sa_type=LargeBinary)
    created_at: datetime = Field(default_factory=utcnow)


class RevokedRow(SQLModel, table=True):
    """A revoked certificate as CRLs list it, written with the revocation; the CRL builder's input.

    Rows only ever get added (in ``id`` order), so ``id`` doubles as a change feed: the
    CRL builder and every replica's OCSP cache read what is new since the last ``id`` they saw.
    """

    __tablename__ = "revoked_certificate"
    __table_args__ = (Index("ix_revoked_scope", "authority_id", "scope"),)

    id: int | None = Field(default=None, primary_key=True)
    authority_id: int = Field(foreign_key="authority.id")
    serial_hex: str = Field(unique=True, max_length=64)
    #: The CRL partition the certificate's CRL distribution point names (``<CA>-p<N>``),
    #: or the CA's name for a certificate that names the complete CRL.
    scope: str = Field(max_length=96)
    #: Indexed: every replica's OCSP cache reads the revocations of the last minutes.
    revoked_at: datetime = Field(index=True)
    reason: str = Field(max_length=32)
    #: The certificate's notAfter: expired certificates leave the CRLs (RFC 5280 3.3).
    not_after: datetime = Field(index=True)


class OcspResponseRow(SQLModel, table=True):
    """A signed OCSP response without nonce (RFC 5019), kept per serial and CertID hash.

    Every replica serves the same bytes until nextUpdate; a revocation deletes the row
    in its own transaction, so a "good" response never outlives the revocation.
    """

    __tablename__ = "ocsp_response"
    __table_args__ = (UniqueConstraint("authority_id", "serial_hex", "hash_algorithm", name="uq_ocsp_response"),)

    id: int | None = Field(default=None, primary_key=True)
    authority_id: int = Field(foreign_key="authority.id")
    serial_hex: str = Field(max_length=64)
    hash_algorithm: str = Field(max_length=16)
    #: good | revoked | unknown
    cert_status: str = Field(max_length=8)
    this_update: datetime
    next_update: datetime = Field(index=True)
    der: bytes = Field(sa_type=LargeBinary)


class OcspSignerRow(SQLModel, table=True):
    """A delegated OCSP responder certificate (RFC 6960 4.2.2.2) of one of our CAs.

    Its key lives in the secret store as ``ocsp/<issuer name>``; the row holds the reference.
    """

    __tablename__ = "ocsp_signer"

    id: int | None = Field(default=None, primary_key=True)
    authority_id: int = Field(foreign_key="authority.id", index=True)
    serial_hex: str = Field(unique=True, max_length=64)
    key_ref: str = Field(max_length=256)
    pem: str
    not_before: datetime
    not_after: datetime = Field(index=True)
    created_at: datetime = Field(default_factory=utcnow)


# -- factory provisioning lines (issue 6) ---------------------------------------------------


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
    created_at: datetime = Field(default_factory=utcnow)


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
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


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
    key_expires_at: datetime | None = None
    #: Manufacturer attributes as the station sent them (serial number, model, ...).
    attributes: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    created_at: datetime = Field(default_factory=utcnow)


# -- DM 2.0 HGET delivery (issue 4) --------------------------------------------------------


class DmObjectRow(SQLModel, table=True):
    """An MO instance published for HGET delivery (DM-HLF-003), until data repositories fetched it.

    Ours (docs/dm2-exchange.md): a repository serves ``{repository URL}/dmboot/{ref}`` from
    our ``GET /dm/objects/{ref}``. Not secret (certificates, URLs), addressed by an
    unguessable ``ref``, kept until ``expires_at`` or the device's BootstrapComplete.
    """

    __tablename__ = "dm_object"

    id: int | None = Field(default=None, primary_key=True)
    ref: str = Field(unique=True, index=True, max_length=64)
    dev_id: str = Field(max_length=128, index=True)
    client_uri: str = Field(max_length=512)
    cv: str = Field(max_length=128)
    #: The MO instance JSON array, as served.
    body: str
    expires_at: datetime = Field(index=True)
    created_at: datetime = Field(default_factory=utcnow)


import bootstrap.store.tpm_models  # noqa: E402,F401 - registers the TPM tables on SQLModel.metadata
