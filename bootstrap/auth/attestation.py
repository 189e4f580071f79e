"""Device attestation: four verifiers behind one protocol.

A transport (DM 2.0 package 1, the JSON enroll API) extracts :class:`Evidence`;
the enrollment service hands it to the :class:`Verifier` for its method, inside
the enrollment's transaction, and gets back an :class:`Attestation` - who the
device is and which enrollment profile the evidence speaks for. Verifiers check
the evidence only; the enrollment service applies the device and profile rules
(unknown or blocked devices, allowed methods).

========================  ===============================================================
method                    what proves the DevID
========================  ===============================================================
``token``                 a one-time enrollment token, consumed by one conditional UPDATE
``group-key``             DMBoot-HMAC with HMAC-SHA256(group key, DevID) (hmac_scheme.py)
``idevid``                a manufacturer certificate over mTLS, on a path through the
                          intermediates the device presents to an enabled manufacturer
                          CA; DevID = registered fingerprint, else subject serialNumber
                          or CN
``current-cert``          our own valid, unrevoked device certificate for the DevID
========================  ===============================================================

Failures raise AuthenticationFailed (the evidence does not prove anything) or
PermissionDenied (it proves an identity that may not do this).
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from sqlalchemy import bindparam, update
from sqlalchemy import select as core_select
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from bootstrap.auth import device_passwords, hmac_scheme
from bootstrap.auth.group_keys import read_group_key
from bootstrap.auth.http_auth import DigestCredential, HttpCredential
from bootstrap.auth.principals import hash_token
from bootstrap.errors import AuthenticationFailed, NotFound, PermissionDenied
from bootstrap.secrets.base import SecretStore
from bootstrap.store.bulk import BulkUpdate
from bootstrap.store.models import (
    AuthorityRow,
    CertificateRow,
    DeviceRow,
    EnrollmentProfileRow,
    EnrollmentTokenRow,
    ManufacturerCaRow,
    UsedNonceRow,
)
from pki.authority import fingerprint
from pki.errors import PathError
from pki.identity import dev_id_from_uri
from pki.paths import issued_by, validate_path

__all__ = [
    "applicable_profile",
    "METHODS",
    "TOKEN_CLAIM",
    "prefetch_tokens",
    "Attestation",
    "CurrentCertificateVerifier",
    "Evidence",
    "GroupKeyVerifier",
    "IdevidVerifier",
    "TokenVerifier",
    "Verifier",
    "recorded_certificate",
    "verifiers",
]

log = logging.getLogger(__name__)

#: The attestation methods, as enrollment profiles and Evidence name them.
METHODS = ("token", "group-key", "idevid", "current-cert", "tpm")


@dataclass(frozen=True)
class Evidence:
    """What the transport extracted from a request."""

    method: str  # "token" | "group-key" | "idevid" | "current-cert"
    token: str | None = field(default=None, repr=False)
    authorization: str | None = field(default=None, repr=False)  # the raw DMBoot-HMAC header value
    client_certificate: x509.Certificate | None = None
    #: CA certificates the client presented with its certificate (untrusted; DMBoot-Client-Chain, docs/api.md).
    intermediates: tuple[x509.Certificate, ...] = ()
    body: bytes = field(default=b"", repr=False)  # the exact request body the HMAC covers
    #: HTTP Basic or Digest (bootstrap.auth.http_auth): the DevID and a password the verifier recomputes.
    http: HttpCredential | None = field(default=None, repr=False)
    tpm: Any = field(default=None, repr=False)  # method "tpm": a bootstrap.auth.tpm.TpmProof (docs/tpm.md)


@dataclass(frozen=True)
class Attestation:
    """Who the evidence proved: the DevID, and the profile the evidence is bound to (if any)."""

    method: str
    dev_id: str
    #: The profile a token or group key belongs to; None when the device's own profile applies.
    profile_id: int | None = None
    #: For the audit trail: identifiers and fingerprints, never secrets.
    detail: dict[str, Any] = field(default_factory=dict)
    #: Writes the evidence asks for (a token's claim), as (statement, parameters): the
    #: pipeline runs them when the request commits, never when it fails.
    writes: tuple[tuple[BulkUpdate, Mapping[str, Any]], ...] = ()


class Verifier(Protocol):
    """Checks one kind of evidence inside the enrollment's transaction."""

    method: str

    def verify(self, session: Session, dev_id: str, device: DeviceRow | None, evidence: Evidence,
               now: datetime) -> Attestation:
        """Return who ``evidence`` proves ``dev_id`` is, or raise.

        Raises:
            AuthenticationFailed: the evidence is missing, malformed, wrong, used or expired.
            PermissionDenied: the evidence is good but not for this device.
        """
        ...


class TokenVerifier:
    """One-time enrollment tokens: a locking read decides, the claim is written at the commit.

    ``SELECT ... FROM enrollment_token WHERE token_hash IN (...) FOR UPDATE`` (the
    batch's tokens, or this one alone), then the rule in :func:`_token_refusal`: unused,
    unexpired, unbound or bound to this DevID. On PostgreSQL a racing transaction waits
    on the row lock, then reads the row as the winner committed it and finds ``used_at``
    set; on SQLite writers are serialized by ``BEGIN IMMEDIATE``. The claim itself (``used_at``, ``used_by``) is
    :attr:`Attestation.writes`: the pipeline runs it when the enrollment commits, with
    the claims of the other requests of its group commit in one statement, and never
    when the enrollment fails (a bad CSR does not burn the token).
    """

    method = "token"

    def __init__(self, store: SecretStore | None = None) -> None:
        self._store = store

    def verify(self, session: Session, dev_id: str, device: DeviceRow | None, evidence: Evidence,
               now: datetime) -> Attestation:
        token = evidence.token
        if not token and isinstance(evidence.http, DigestCredential) and self._store is not None:
            token = device_passwords.digest_token(session, self._store, dev_id, evidence.http, now)
        if not token:
            raise AuthenticationFailed("token attestation needs an enrollment token", field="token")
        digest = hash_token(token)
        prefetched: dict[str, Any] = session.info.get(_PREFETCHED, {})
        if digest not in prefetched:  # not read with its batch's others: read (and lock) it now
            prefetch_tokens(session, [digest])
        row = session.info[_PREFETCHED].pop(digest)
        refusal = _token_refusal(row, dev_id, now)
        if refusal is not None:
            raise refusal
        return Attestation(self.method, dev_id, profile_id=int(row.profile_id), detail={"token_id": row.id},
                           writes=((TOKEN_CLAIM, {"token_id": row.id, "used_at": now, "used_by": dev_id}),))


_TOKENS = EnrollmentTokenRow.__table__  # type: ignore[attr-defined]
_PREFETCHED = "dmboot.tokens.prefetched"  # session.info: token_hash -> its row (or None), read for a batch
_READ_TOKENS = (core_select(_TOKENS.c.id, _TOKENS.c.profile_id, _TOKENS.c.token_hash, _TOKENS.c.used_at,
                            _TOKENS.c.expires_at, _TOKENS.c.dev_id)
                .where(_TOKENS.c.token_hash.in_(bindparam("digests", expanding=True)))
                .order_by(_TOKENS.c.id).with_for_update())


def prefetch_tokens(session: Session, digests: list[str]) -> None:
    """Read and lock the tokens of ``digests`` in one statement, for the batch's verifications.

    Each is used once (:meth:`TokenVerifier.verify` takes it from the session); rows
    are locked in id order, as every batch locks them. The lock decides races: on
    PostgreSQL a transaction waiting on it reads the row as the winner committed it.
    """
    found = {row.token_hash: row for row in session.connection().execute(_READ_TOKENS, {"digests": digests})}
    session.info.setdefault(_PREFETCHED, {}).update({digest: found.get(digest) for digest in digests})


def _token_refusal(row: Any, dev_id: str, now: datetime) -> AuthenticationFailed | PermissionDenied | None:
    """Why the token ``row`` (None: no such token) cannot be claimed by ``dev_id`` now, or None."""
    if row is None:
        return AuthenticationFailed("unknown enrollment token", field="token")
    if row.used_at is not None:
        return AuthenticationFailed(f"enrollment token {row.id} was used already", field="token")
    if row.expires_at <= now:
        return AuthenticationFailed(f"enrollment token {row.id} has expired", field="token")
    if row.dev_id not in (None, dev_id):
        return PermissionDenied(f"enrollment token {row.id} is bound to another DevID", field="token")
    return None


#: A token's claim: run at the commit of the enrollment that used it (:attr:`Attestation.writes`).
TOKEN_CLAIM = BulkUpdate(
    statement=update(_TOKENS).where(_TOKENS.c.id == bindparam("token_id"))
    .values(used_at=bindparam("used_at"), used_by=bindparam("used_by")),
    sql="UPDATE enrollment_token SET used_at = v.used_at, used_by = v.used_by FROM {rows}"
        " WHERE enrollment_token.id = v.token_id",
    parameters={"token_id": _TOKENS.c.id, "used_at": _TOKENS.c.used_at, "used_by": _TOKENS.c.used_by},
    key=("token_id",))



class GroupKeyVerifier:
    """DMBoot-HMAC over the request body with the group-derived device key (hmac_scheme.py)."""

    method = "group-key"

    def __init__(self, store: SecretStore) -> None:
        self._store = store

    def verify(self, session: Session, dev_id: str, device: DeviceRow | None, evidence: Evidence,
               now: datetime) -> Attestation:
        if evidence.http is not None:  # HTTP Basic or Digest with the device key as the password
            group = device_passwords.group_key_profile(session, self._store, dev_id, device, evidence.http, now)
            return Attestation(self.method, dev_id, profile_id=group.id,
                               detail={"group": group.name, "scheme": type(evidence.http).__name__[:-10].lower()})
        if not evidence.authorization:
            raise AuthenticationFailed(f"group-key attestation needs Authorization: {hmac_scheme.SCHEME}",
                                       field="authorization")
        auth = hmac_scheme.parse_authorization(evidence.authorization)
        if auth.dev_id != dev_id:
            raise AuthenticationFailed(f"the {hmac_scheme.SCHEME} devid does not match the DevID {dev_id!r}",
                                       field="authorization")
        if not evidence.body:
            raise AuthenticationFailed("the request body (with the CSR) must not be empty", field="body")
        skew = abs(now.timestamp() - auth.ts)
        if skew > hmac_scheme.MAX_SKEW_SECONDS:
            raise AuthenticationFailed(f"timestamp is {int(skew)} s from the server's clock;"
                                       f" at most {hmac_scheme.MAX_SKEW_SECONDS} s", field="authorization")
        profile = session.exec(select(EnrollmentProfileRow).where(EnrollmentProfileRow.name == auth.group)).first()
        if profile is None:
            raise AuthenticationFailed(f"no enrollment profile {auth.group!r}", field="authorization")
        key = hmac_scheme.derive_device_key(read_group_key(self._store, profile), dev_id)
        expected = hmac_scheme.compute_mac(key, auth.group, dev_id, auth.ts, auth.nonce, evidence.body)
        if not hmac.compare_digest(expected, auth.mac):
            raise AuthenticationFailed("the HMAC does not verify", field="authorization")
        digest = hmac_scheme.nonce_digest(dev_id, auth.nonce)
        expires = datetime.fromtimestamp(auth.ts, UTC) + timedelta(seconds=2 * hmac_scheme.MAX_SKEW_SECONDS)
        try:
            with session.begin_nested():
                session.add(UsedNonceRow(digest=digest, expires_at=expires))
        except IntegrityError:
            raise AuthenticationFailed("replayed request: this nonce was used already",
                                       field="authorization") from None
        return Attestation(self.method, dev_id, profile_id=profile.id,
                           detail={"group": profile.name, "nonce_digest": digest})


class IdevidVerifier:
    """A manufacturer certificate on a valid path to an enabled ManufacturerCaRow.

    The path runs from the leaf through the intermediates the device presented
    (``Evidence.intermediates``; untrusted, any order) to a registered manufacturer
    CA - a root, or an intermediate registered as a CA of its own - and is checked
    here, with :func:`pki.paths.validate_path`, against the current database:
    signatures, validity periods, cA/pathLen, keyCertSign. The DevID matches when the
    device was registered with this certificate's fingerprint; without one, when it
    equals the subject serialNumber (IEEE 802.1AR) or the CN.
    """

    method = "idevid"

    def verify(self, session: Session, dev_id: str, device: DeviceRow | None, evidence: Evidence,
               now: datetime) -> Attestation:
        cert = _client_certificate(evidence)
        query = select(ManufacturerCaRow).where(ManufacturerCaRow.enabled == True)  # noqa: E712
        makers = list(session.exec(query))
        try:
            path = validate_path(cert, evidence.intermediates,
                                 [x509.load_pem_x509_certificate(row.pem.encode()) for row in makers], now)
        except PathError as exc:
            raise AuthenticationFailed(f"the client certificate (issuer {cert.issuer.rfc4514_string()}) is not"
                                       f" issued by a trusted manufacturer CA ({exc})",
                                       field="client_certificate") from None
        maker = makers[path.anchor_index]
        _check_leaf(cert, now)
        print_ = fingerprint(cert)
        if device is not None and device.idevid_fingerprint:
            if not hmac.compare_digest(device.idevid_fingerprint, print_):
                raise PermissionDenied(f"the IDevID {print_} is not the one registered for {dev_id}",
                                       field="client_certificate")
        elif dev_id not in _subject_values(cert, NameOID.SERIAL_NUMBER, NameOID.COMMON_NAME):
            raise PermissionDenied(f"the IDevID subject names neither serialNumber nor CN {dev_id!r}",
                                   field="client_certificate")
        detail: dict[str, Any] = {"fingerprint": print_, "manufacturer_ca": maker.name}
        if len(path.certificates) > 1:
            detail["intermediates"] = [fingerprint(c) for c in path.certificates[1:]]
        return Attestation(self.method, dev_id, detail=detail)


class CurrentCertificateVerifier:
    """Our own device certificate (re-bootstrap, renewal): valid, unrevoked, for this DevID."""

    method = "current-cert"

    def verify(self, session: Session, dev_id: str, device: DeviceRow | None, evidence: Evidence,
               now: datetime) -> Attestation:
        cert = _client_certificate(evidence)
        authorities = [x509.load_pem_x509_certificate(row.pem.encode())
                       for row in session.exec(select(AuthorityRow).where(AuthorityRow.kind == "issuing"))]
        if not any(_issued_by(cert, ca, now) for ca in authorities):
            raise AuthenticationFailed("the client certificate is not issued by one of our issuing CAs",
                                       field="client_certificate")
        _check_leaf(cert, now)
        serial, row = recorded_certificate(session, cert, field="client_certificate")
        if row.profile != "device" or _certified_dev_id(cert) != dev_id:
            raise PermissionDenied(f"certificate {serial} is not a device certificate for {dev_id!r}",
                                   field="client_certificate")
        return Attestation(self.method, dev_id, detail={"serial": serial})


def recorded_certificate(session: Session, cert: x509.Certificate, *,
                         field: str = "client_certificate") -> tuple[str, CertificateRow]:
    """The row of ``cert``, one we issued and recorded, still valid (not revoked): (serial, row).

    Raises:
        AuthenticationFailed: not recorded by us (or another certificate under its serial), or revoked.
    """
    serial = format(cert.serial_number, "x")
    row = session.exec(select(CertificateRow).where(CertificateRow.serial_hex == serial)).first()
    if row is None or row.fingerprint != fingerprint(cert):
        raise AuthenticationFailed(f"certificate {serial} is not one we recorded", field=field)
    if row.status != "valid":
        raise AuthenticationFailed(f"certificate {serial} is {row.status}", field=field)
    return serial, row


def verifiers(store: SecretStore) -> dict[str, Verifier]:
    """One verifier per method."""
    return {v.method: v for v in (TokenVerifier(store), GroupKeyVerifier(store), IdevidVerifier(),
                                  CurrentCertificateVerifier())}


# -- certificate checks ------------------------------------------------------------------


def _client_certificate(evidence: Evidence) -> x509.Certificate:
    if evidence.client_certificate is None:
        raise AuthenticationFailed(f"{evidence.method} attestation needs a TLS client certificate",
                                   field="client_certificate")
    return evidence.client_certificate


def _issued_by(cert: x509.Certificate, ca: x509.Certificate, now: datetime) -> bool:
    """Whether ``ca`` signed ``cert`` and is a CA certificate valid now."""
    return issued_by(cert, ca, now)


def _check_leaf(cert: x509.Certificate, now: datetime) -> None:
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise AuthenticationFailed("the client certificate is expired or not yet valid", field="client_certificate")
    try:
        if cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca:
            raise AuthenticationFailed("the client certificate is a CA certificate", field="client_certificate")
    except x509.ExtensionNotFound:
        pass
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return
    if ExtendedKeyUsageOID.CLIENT_AUTH not in eku and ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE not in eku:
        raise AuthenticationFailed("the client certificate is not for TLS client authentication",
                                   field="client_certificate")


def _subject_values(cert: x509.Certificate, *oids: x509.ObjectIdentifier) -> set[str]:
    return {str(attr.value) for oid in oids for attr in cert.subject.get_attributes_for_oid(oid)}


def _certified_dev_id(cert: x509.Certificate) -> str | None:
    """The DevID of one of our device certificates: its device URI SAN, else its CN."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        for uri in san.get_values_for_type(x509.UniformResourceIdentifier):
            if (dev_id := dev_id_from_uri(uri)) is not None:
                return dev_id
    except x509.ExtensionNotFound:
        pass
    names = _subject_values(cert, NameOID.COMMON_NAME)
    return next(iter(names)) if len(names) == 1 else None


def applicable_profile(session: Session, device: DeviceRow | None, attestation: Attestation) -> EnrollmentProfileRow:
    """The enrollment profile that governs this attestation, if it allows it.

    A registered device's own profile, else the one the evidence names (group key,
    unbound token). Every transport (DM 2.0, JSON, EST, DM 1.x) applies this rule.

    Raises:
        PermissionDenied: the evidence is for another profile than the device's; the
            profile is disabled; or it does not allow this attestation method.
    """
    if device is not None and attestation.profile_id is not None and attestation.profile_id != device.profile_id:
        raise PermissionDenied(f"the {attestation.method} evidence is for another enrollment profile than"
                               f" device {device.dev_id!r}'s", field="profile")
    profile_id = device.profile_id if device is not None else attestation.profile_id
    profile = session.get(EnrollmentProfileRow, profile_id) if profile_id is not None else None
    if profile is None:  # pragma: no cover - foreign keys keep this from happening
        raise NotFound("the device's enrollment profile does not exist", field="profile")
    if not profile.enabled:
        raise PermissionDenied(f"enrollment profile {profile.name!r} is disabled", field="profile")
    if attestation.method not in profile.attestation:
        raise PermissionDenied(f"enrollment profile {profile.name!r} does not allow {attestation.method}"
                               f" attestation (allowed: {', '.join(profile.attestation)})", field="method")
    return profile
