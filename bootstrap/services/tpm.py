"""TPM 2.0 attestation, round 1: check the EK and the AK, answer a credential and a sealed challenge.

Round 2 is an ordinary enrollment with :class:`~bootstrap.auth.tpm.TpmProof` evidence
(method ``tpm``): :meth:`EnrollmentService.enroll` hands it to the pipeline, whose
device authorizer runs :class:`~bootstrap.auth.tpm.TpmVerifier`. Round 1 writes
nothing but the audit event of a refusal; what it established travels in the
challenge, so any replica finishes what another began. See docs/tpm.md.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from sqlmodel import Session, select

from bootstrap.auth.attestation import Attestation, applicable_profile
from bootstrap.auth.tpm import (
    Challenge,
    ChallengeSealer,
    check_ak,
    check_binding,
    check_ek,
    device_public,
    ek_fingerprint,
)
from bootstrap.errors import AuthenticationFailed, InvalidRequest, PermissionDenied
from bootstrap.secrets.base import SecretStore
from bootstrap.services.pipeline.authorizers import device_actor, valid_dev_id
from bootstrap.services.pipeline.refusals import audit_refusal
from bootstrap.store.db import Database
from bootstrap.store.models import DeviceRow, utcnow
from pki.csr import parse_csr
from pki.errors import PkiError
from pki.tpm import make_credential

__all__ = ["TpmChallengeService", "TpmCredential", "TpmStart"]


@dataclass(frozen=True)
class TpmStart:
    """Round 1's request, decoded (base64 and PEM undone by the channel)."""

    dev_id: str
    ek_certificate: bytes  # DER or PEM
    ek_chain: tuple[bytes, ...]
    ek_public: bytes  # TPM2B_PUBLIC
    ak_public: bytes  # TPM2B_PUBLIC
    csr: bytes


@dataclass(frozen=True)
class TpmCredential:
    """Round 1's answer: what TPM2_ActivateCredential takes, and the challenge to send back."""

    credential_blob: bytes
    encrypted_secret: bytes
    challenge: str
    expires_at: datetime


def _certificate(data: bytes, what: str) -> x509.Certificate:
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            return x509.load_pem_x509_certificate(data)
        return x509.load_der_x509_certificate(data)
    except ValueError:
        raise InvalidRequest(f"{what} is not an X.509 certificate (DER or PEM)", field=what) from None


class TpmChallengeService:
    """Round 1 of TPM attestation (stateless: nothing is written but refusals)."""

    def __init__(self, database: Database, store: SecretStore, *, sealer: ChallengeSealer | None = None) -> None:
        self._db = database
        self.sealer = sealer or ChallengeSealer(store)

    def start(self, request: TpmStart, *, request_id: str | None = None, now: datetime | None = None) -> TpmCredential:
        """Check ``request`` and answer MakeCredential(EK, Name(AK), a fresh secret) with a sealed challenge.

        Raises:
            InvalidRequest: malformed structures, certificates or CSR.
            AuthenticationFailed: unknown DevID, EK not from a registered TPM maker, AK attributes.
            PermissionDenied: blocked device, profile without ``tpm``, EK bound to another device.
        """
        try:
            return self._start(request, now or utcnow())
        except Exception as exc:
            name = request.dev_id if isinstance(request.dev_id, str) else repr(request.dev_id)
            audit_refusal(self._db, exc, actor=device_actor(name[:100]), action="device.enroll", target=name[:128],
                          request_id=request_id, detail={"method": "tpm", "channel": "json", "round": 1})
            raise

    def _start(self, request: TpmStart, now: datetime) -> TpmCredential:
        dev_id = valid_dev_id(request.dev_id)
        certificate = _certificate(request.ek_certificate, "ek_certificate")
        chain = tuple(_certificate(c, "ek_chain") for c in request.ek_chain)
        ek, ak = device_public(request.ek_public, "ek_public"), device_public(request.ak_public, "ak_public")
        try:
            csr = parse_csr(request.csr)
        except PkiError as exc:
            raise InvalidRequest(exc.message, field="csr") from None
        with self._db.session() as session:
            device = self._device(session, dev_id)
            profile = applicable_profile(session, device, Attestation("tpm", dev_id))
            maker = check_ek(session, profile, certificate, chain, ek, now).fingerprint
            check_ak(ak)
            print_ = ek_fingerprint(certificate)
            check_binding(session, device, print_)
        secret = secrets.token_bytes(hashlib.new(ek.name_alg).digest_size)
        try:
            credential = make_credential(ek, ak.name, secret)
        except PkiError as exc:
            raise InvalidRequest(exc.message, field="ek_public") from None
        expires = now + self.sealer.ttl
        challenge = Challenge(dev_id, print_, maker, ak.name.hex(),
                              hashlib.sha256(csr.csr.public_bytes(Encoding.DER)).hexdigest(), secret,
                              secrets.token_hex(16), expires)
        return TpmCredential(credential.credential_blob, credential.encrypted_secret, self.sealer.seal(challenge),
                             expires)

    @staticmethod
    def _device(session: Session, dev_id: str) -> DeviceRow:
        device = session.exec(select(DeviceRow).where(DeviceRow.dev_id == dev_id)).first()
        if device is None:
            raise AuthenticationFailed(f"DevID {dev_id!r} is not registered", field="dev_id")
        if device.status == "blocked":
            raise PermissionDenied(f"device {dev_id!r} is blocked (revoked); an admin must re-admit it",
                                   field="dev_id")
        return device
