"""The CA: authorities, issued certificates, CRLs, revocations, OCSP responses and signers."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, LargeBinary, UniqueConstraint
from sqlmodel import Field, SQLModel

from bootstrap.store.models.types import UtcDateTime, utcnow

__all__ = ["AuthorityRow", "CertificateRow", "CrlRow", "OcspResponseRow", "OcspSignerRow", "RevokedRow"]


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
    not_before: datetime = Field(sa_type=UtcDateTime)
    not_after: datetime = Field(sa_type=UtcDateTime)
    #: KeyRef.to_uri(): backend, key name, version, key type. Never the key.
    key_ref: str = Field(max_length=256)
    pem: str
    #: The issuing CA new certificates come from; older ones stay for verification and CRLs.
    active: bool = Field(default=False, index=True)
    created_at: datetime = Field(sa_type=UtcDateTime, default_factory=utcnow)


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
    not_before: datetime = Field(sa_type=UtcDateTime)
    not_after: datetime = Field(sa_type=UtcDateTime, index=True)
    status: str = Field(default="valid", max_length=16, index=True)  # valid | revoked
    revoked_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    revocation_reason: str | None = Field(default=None, max_length=32)
    fingerprint: str = Field(unique=True, max_length=80)
    pem: str
    requested_by: str = Field(max_length=128)
    request_id: str | None = Field(default=None, max_length=64)
    created_at: datetime = Field(sa_type=UtcDateTime, default_factory=utcnow, index=True)
    #: Re-enrollment: the serial of the certificate that superseded this one.
    superseded_by: str | None = Field(default=None, max_length=64)
    #: When a superseded certificate is revoked (reason ``superseded``) at the latest.
    supersede_at: datetime | None = Field(sa_type=UtcDateTime, default=None, index=True)
    #: When the certificate was first seen attesting (its predecessors are then revoked).
    first_used_at: datetime | None = Field(default=None, sa_type=UtcDateTime)

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
    this_update: datetime = Field(sa_type=UtcDateTime)
    next_update: datetime = Field(sa_type=UtcDateTime, index=True)
    entries: int = 0
    der: bytes | None = Field(default=None, sa_type=LargeBinary)
    created_at: datetime = Field(sa_type=UtcDateTime, default_factory=utcnow)


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
    revoked_at: datetime = Field(sa_type=UtcDateTime, index=True)
    reason: str = Field(max_length=32)
    #: The certificate's notAfter: expired certificates leave the CRLs (RFC 5280 3.3).
    not_after: datetime = Field(sa_type=UtcDateTime, index=True)


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
    this_update: datetime = Field(sa_type=UtcDateTime)
    next_update: datetime = Field(sa_type=UtcDateTime, index=True)
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
    not_before: datetime = Field(sa_type=UtcDateTime)
    not_after: datetime = Field(sa_type=UtcDateTime, index=True)
    created_at: datetime = Field(sa_type=UtcDateTime, default_factory=utcnow)
