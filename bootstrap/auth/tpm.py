"""TPM 2.0 attestation: the EK chain, the AK, the sealed challenge, and the round-2 verifier.

The exchange (docs/tpm.md) takes two round trips and keeps nothing in a process:

1. the device sends its EK certificate (+ intermediates), the EK's and the AK's
   TPM2B_PUBLIC and its CSR; the service checks the EK certificate chains to a TPM
   manufacturer CA registered for the device's enrollment profile, that the EK
   certificate certifies that EK, and that the AK is a restricted signing key that
   never leaves the TPM; it answers TPM2_MakeCredential(EK, Name(AK), secret) and a
   *challenge*: the secret and what round 1 showed, sealed (AES-256-GCM) with a key
   every replica shares (KV ``tpm/challenge-key``, created by the first replica that
   needs it, as the DM 2.0 session key is), expiring after :data:`CHALLENGE_TTL`;
2. the device activates the credential and returns the secret with TPM2_Certify of
   the CSR's key by the AK; :class:`TpmVerifier` opens the challenge, compares the
   secret in constant time, checks the AK's signature over the certify info, that
   the certified Name is the Name of the key's TPM2B_PUBLIC and that this key is the
   CSR's, and spends the challenge (a ``used_nonce`` row: any replica refuses it
   afterwards).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import re
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from bootstrap.auth.attestation import Attestation, Evidence
from bootstrap.errors import AuthenticationFailed, InvalidRequest, PermissionDenied
from bootstrap.secrets.base import SecretStore
from bootstrap.secrets.shared_keys import shared_key
from bootstrap.store.models import DeviceRow, EnrollmentProfileRow, UsedNonceRow
from bootstrap.store.models.tpm import TpmDeviceRow, TpmManufacturerCaRow
from pki.authority import fingerprint
from pki.csr import parse_csr
from pki.errors import PathError, PkiError
from pki.paths import validate_path
from pki.tpm import (
    ATTR_DECRYPT,
    ATTR_FIXED_PARENT,
    ATTR_FIXED_TPM,
    ATTR_RESTRICTED,
    ATTR_SENSITIVE_DATA_ORIGIN,
    ATTR_SIGN,
    TpmPublic,
    parse_attest,
    parse_public,
    verify_signature,
)

__all__ = ["CHALLENGE_KEY_PATH", "CHALLENGE_TTL", "Challenge", "ChallengeSealer", "TpmProof", "TpmVerifier",
           "check_ak", "check_ek", "device_public", "spki"]

CHALLENGE_KEY_PATH = "tpm/challenge-key"
#: Ours: how long a device has between round 1 and round 2.
CHALLENGE_TTL = timedelta(minutes=10)
_AAD = b"dmboot-tpm-challenge-v1"
_SHAPE = re.compile(r"t1\.[A-Za-z0-9_-]{40,1400}")
_NEVER_LEAVES = ATTR_FIXED_TPM | ATTR_FIXED_PARENT | ATTR_SENSITIVE_DATA_ORIGIN


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def spki(key: Any) -> bytes:
    """The DER SubjectPublicKeyInfo of a public key (to compare keys across encodings)."""
    return bytes(key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo))


@dataclass(frozen=True)
class Challenge:
    """What round 1 established, sealed into the challenge reference."""

    dev_id: str
    ek_fingerprint: str
    manufacturer_ca: str  # fingerprint of the registered CA the EK certificate chained to
    ak_name: str  # hex
    csr_digest: str  # SHA-256 hex of the CSR's DER
    secret: bytes = field(repr=False)
    jti: str
    expires_at: datetime


class ChallengeSealer:
    """Seals and opens challenge references with the key every replica shares."""

    def __init__(self, store: SecretStore | None = None, *, key: bytes | None = None,
                 ttl: timedelta = CHALLENGE_TTL) -> None:
        self._store, self._key, self.ttl = store, key, ttl
        self._lock = threading.Lock()

    def _cipher(self) -> AESGCM:
        if self._key is None:
            with self._lock:
                if self._key is None:
                    if self._store is None:
                        raise TypeError("ChallengeSealer needs a secret store or a key")
                    self._key = shared_key(self._store, CHALLENGE_KEY_PATH)
        return AESGCM(self._key)

    def seal(self, challenge: Challenge) -> str:
        """The reference: ``t1.`` base64url(nonce || AES-256-GCM(JSON claims))."""
        claims = {"dev": challenge.dev_id, "ek": challenge.ek_fingerprint, "ca": challenge.manufacturer_ca,
                  "ak": challenge.ak_name, "csr": challenge.csr_digest, "sec": _b64(challenge.secret),
                  "jti": challenge.jti, "exp": int(challenge.expires_at.timestamp())}
        nonce = os.urandom(12)
        sealed = self._cipher().encrypt(nonce, json.dumps(claims, sort_keys=True).encode(), _AAD)
        return "t1." + _b64(nonce + sealed)

    def open(self, reference: object, now: datetime) -> Challenge:
        """The challenge ``reference`` carries.

        Raises:
            AuthenticationFailed: malformed, not sealed by us, or expired.
        """
        if not isinstance(reference, str) or not _SHAPE.fullmatch(reference):
            raise AuthenticationFailed("the challenge is malformed; send back the one round 1 answered",
                                       field="challenge")
        try:
            raw = _unb64(reference[3:])
            claims = json.loads(self._cipher().decrypt(raw[:12], raw[12:], _AAD))
            challenge = Challenge(str(claims["dev"]), str(claims["ek"]), str(claims["ca"]), str(claims["ak"]),
                                  str(claims["csr"]), _unb64(str(claims["sec"])), str(claims["jti"]),
                                  datetime.fromtimestamp(int(claims["exp"]), UTC))
        except (InvalidTag, ValueError, KeyError, TypeError, binascii.Error):
            raise AuthenticationFailed("the challenge is not one of ours", field="challenge") from None
        if now >= challenge.expires_at:
            raise AuthenticationFailed(f"the challenge expired at {challenge.expires_at:%Y-%m-%dT%H:%M:%SZ}; start"
                                       " again with round 1", field="challenge")
        return challenge


def check_ek(session: Session, profile: EnrollmentProfileRow, certificate: x509.Certificate,
             intermediates: tuple[x509.Certificate, ...], ek: TpmPublic, now: datetime) -> TpmManufacturerCaRow:
    """The registered TPM manufacturer CA of ``profile`` the EK certificate chains to.

    Raises:
        AuthenticationFailed: no path to an enabled CA of the profile; the certificate is not
            valid now; it certifies another key than ``ek``; ``ek`` is not an endorsement key.
    """
    rows = list(session.exec(select(TpmManufacturerCaRow).where(
        TpmManufacturerCaRow.profile_id == profile.id, TpmManufacturerCaRow.enabled == True)))  # noqa: E712
    try:
        path = validate_path(certificate, intermediates, [x509.load_pem_x509_certificate(r.pem.encode())
                                                          for r in rows], now)
    except PathError as exc:
        raise AuthenticationFailed(f"the EK certificate is not issued by a TPM manufacturer CA registered for"
                                   f" profile {profile.name!r} ({exc.message})", field="ek_certificate") from None
    if not certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc:
        raise AuthenticationFailed("the EK certificate is expired or not yet valid", field="ek_certificate")
    if spki(certificate.public_key()) != spki(ek.public_key):
        raise AuthenticationFailed("the EK certificate certifies another key than ek_public", field="ek_public")
    if not ek.has(ATTR_RESTRICTED | ATTR_DECRYPT | ATTR_FIXED_TPM | ATTR_FIXED_PARENT) or ek.has(ATTR_SIGN):
        raise AuthenticationFailed("ek_public is not an endorsement key (restricted decryption, fixedTPM,"
                                   " fixedParent)", field="ek_public")
    return rows[path.anchor_index]


def check_ak(ak: TpmPublic) -> None:
    """An AK signs only what the TPM made (restricted) and never leaves it.

    Raises:
        AuthenticationFailed: naming the attribute that is missing.
    """
    for bit, name in ((ATTR_RESTRICTED, "restricted"), (ATTR_SIGN, "sign"), (ATTR_FIXED_TPM, "fixedTPM"),
                      (ATTR_FIXED_PARENT, "fixedParent"), (ATTR_SENSITIVE_DATA_ORIGIN, "sensitiveDataOrigin")):
        if not ak.has(bit):
            raise AuthenticationFailed(f"the AK is not {name}: it must be a restricted signing key that never"
                                       " leaves the TPM", field="ak_public")
    if ak.has(ATTR_DECRYPT):
        raise AuthenticationFailed("the AK must not be a decryption key", field="ak_public")


@dataclass(frozen=True)
class TpmProof:
    """Round 2's evidence (``Evidence.tpm``): the challenge answered, and the key certified."""

    challenge: str
    secret: bytes = field(repr=False)
    ak_public: bytes
    key_public: bytes
    certify_info: bytes
    signature: bytes
    csr: bytes


def device_public(data: bytes, what: str) -> TpmPublic:
    """A TPM2B_PUBLIC the device sent, as ``what``; a malformed one is the device's fault (400).

    Raises:
        InvalidRequest: not a TPM2B_PUBLIC this service reads, naming ``what``.
    """
    try:
        return parse_public(data, what=what)
    except PkiError as exc:
        raise InvalidRequest(exc.message, field=what) from None


class TpmVerifier:
    """Round 2 of TPM attestation, inside the enrollment's savepoint (see the module docstring)."""

    method = "tpm"

    def __init__(self, store: SecretStore | None = None, *, sealer: ChallengeSealer | None = None) -> None:
        self.sealer = sealer or ChallengeSealer(store)

    def verify(self, session: Session, dev_id: str, device: DeviceRow | None, evidence: Evidence,
               now: datetime) -> Attestation:
        proof = getattr(evidence, "tpm", None)
        if not isinstance(proof, TpmProof):
            raise AuthenticationFailed("tpm attestation needs the answer to a TPM challenge", field="challenge")
        challenge = self.sealer.open(proof.challenge, now)
        if challenge.dev_id != dev_id:
            raise PermissionDenied(f"the challenge was issued to another DevID than {dev_id!r}", field="challenge")
        if not hmac.compare_digest(challenge.secret, proof.secret):
            raise AuthenticationFailed("the activated secret is wrong: the credential was not activated by the TPM"
                                       " that holds this EK and AK", field="secret")
        ak = device_public(proof.ak_public, "ak_public")
        if not hmac.compare_digest(ak.name.hex(), challenge.ak_name):
            raise AuthenticationFailed("ak_public is not the AK of round 1", field="ak_public")
        key = device_public(proof.key_public, "key_public")
        try:
            attest = parse_attest(proof.certify_info)
            signed = verify_signature(ak, proof.certify_info, proof.signature)
        except PkiError as exc:
            raise InvalidRequest(exc.message, field=exc.field or "certify_info") from None
        if not signed:
            raise AuthenticationFailed("the AK's signature over certify_info does not verify", field="signature")
        if attest.name != key.name:
            raise AuthenticationFailed("the AK certified another key than key_public", field="certify_info")
        if not key.has(_NEVER_LEAVES | ATTR_SIGN) or key.has(ATTR_RESTRICTED):
            raise AuthenticationFailed("the key must be an unrestricted signing key made in the TPM that never"
                                       " leaves it (fixedTPM, fixedParent, sensitiveDataOrigin)", field="key_public")
        self._check_csr(proof, key, challenge)
        if device is None:
            raise AuthenticationFailed(f"DevID {dev_id!r} is not registered", field="dev_id")
        maker = self._maker(session, device, challenge)
        self._spend(session, challenge)
        _bind(session, device, challenge, now)
        return Attestation(self.method, dev_id, detail={"ek_fingerprint": challenge.ek_fingerprint,
                                                        "ak_name": challenge.ak_name, "manufacturer_ca": maker})

    @staticmethod
    def _check_csr(proof: TpmProof, key: TpmPublic, challenge: Challenge) -> None:
        try:
            info = parse_csr(proof.csr)
        except PkiError as exc:
            raise InvalidRequest(exc.message, field="csr") from None
        der = info.csr.public_bytes(Encoding.DER)
        if not hmac.compare_digest(hashlib.sha256(der).hexdigest(), challenge.csr_digest):
            raise AuthenticationFailed("the CSR is not the one of round 1", field="csr")
        if spki(info.public_key) != spki(key.public_key):
            raise AuthenticationFailed("key_public is not the CSR's key", field="key_public")

    @staticmethod
    def _maker(session: Session, device: DeviceRow, challenge: Challenge) -> str:
        row = session.exec(select(TpmManufacturerCaRow).where(
            TpmManufacturerCaRow.profile_id == device.profile_id,
            TpmManufacturerCaRow.fingerprint == challenge.manufacturer_ca)).first()
        if row is None or not row.enabled:
            raise AuthenticationFailed("the TPM manufacturer CA of round 1 is no longer trusted", field="challenge")
        return row.name

    @staticmethod
    def _spend(session: Session, challenge: Challenge) -> None:
        digest = hashlib.sha256(f"tpm-challenge:{challenge.jti}".encode()).hexdigest()
        try:
            with session.begin_nested():
                session.add(UsedNonceRow(digest=digest, expires_at=challenge.expires_at))
        except IntegrityError:
            raise AuthenticationFailed("replayed challenge: it was answered already; start again with round 1",
                                       field="challenge") from None


def bound_ek(session: Session, device: DeviceRow) -> TpmDeviceRow | None:
    """The TPM binding of ``device``, if it enrolled with a TPM before."""
    return session.exec(select(TpmDeviceRow).where(TpmDeviceRow.device_id == device.id)).first()


def check_binding(session: Session, device: DeviceRow, ek_fingerprint: str) -> None:
    """A device keeps its TPM, and a TPM belongs to one device.

    Raises:
        PermissionDenied: the device enrolled with another EK, or the EK is another device's.
    """
    mine = bound_ek(session, device)
    if mine is not None and not hmac.compare_digest(mine.ek_fingerprint, ek_fingerprint):
        raise PermissionDenied(f"device {device.dev_id!r} enrolled with another TPM (EK {mine.ek_fingerprint})",
                               field="ek_certificate")
    other = session.exec(select(TpmDeviceRow).where(TpmDeviceRow.ek_fingerprint == ek_fingerprint)).first()
    if other is not None and other.device_id != device.id:
        raise PermissionDenied("this TPM's EK is bound to another device", field="ek_certificate")


def _bind(session: Session, device: DeviceRow, challenge: Challenge, now: datetime) -> None:
    check_binding(session, device, challenge.ek_fingerprint)
    row = bound_ek(session, device) or TpmDeviceRow(device_id=device.id or 0, ek_fingerprint=challenge.ek_fingerprint,
                                                     ak_name=challenge.ak_name)
    row.ak_name, row.enrolled_at = challenge.ak_name, now
    session.add(row)
    session.flush()


def ek_fingerprint(certificate: x509.Certificate) -> str:
    """``sha256:<hex>`` of the EK certificate, as the device's TPM binding keeps it."""
    return fingerprint(certificate)
