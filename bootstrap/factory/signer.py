"""Signing for one factory batch: the CA, profile and policy are looked up once, not per device.

:class:`BatchSigner` turns a device's CSR (or a key made here) into a certificate
for ``CN=<DevID>, URI:urn:dmboot:devid:<DevID>`` under the enrollment profile's
certificate profile, key types and validity. It only signs: nothing is recorded
here, and a certificate nobody recorded is never handed out (the caller records
first, then returns).
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import NameOID

from bootstrap.services.pipeline.issue import sign
from pki.authority import CertificateAuthority
from pki.csr import MAX_CSR_BYTES, check_request, parse_csr
from pki.errors import CsrPolicyError, PkiError, ProfileError
from pki.identity import check_dev_id, device_uri
from pki.keys import KeyPolicy, KeyType, PrivateKey, PublicKey, generate_private_key
from pki.profiles import CertificateProfile, Names

__all__ = ["BatchSigner", "SignedItem", "same_key"]


def same_key(csr: str, certificate_pem: str) -> bool:
    """Whether a (retried) CSR carries the key ``certificate_pem`` certifies; False if it cannot be read."""
    try:
        raw = csr.encode()
        request = (x509.load_pem_x509_csr(raw) if raw.lstrip().startswith(b"-----BEGIN")
                   else x509.load_der_x509_csr(raw))
        mine = request.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
        cert = x509.load_pem_x509_certificate(certificate_pem.encode())
        return mine == cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    except (ValueError, TypeError):
        return False


@dataclass(frozen=True)
class SignedItem:
    """A certificate signed for one device, not yet recorded."""

    dev_id: str
    certificate: x509.Certificate
    der: bytes
    pem: str
    key_type: KeyType
    #: Only for server-generated keys; lives in memory until encrypted for the station.
    private_key: PrivateKey | None = field(default=None, repr=False)

    @property
    def serial_hex(self) -> str:
        return format(self.certificate.serial_number, "x")

    @property
    def fingerprint(self) -> str:
        return "sha256:" + hashlib.sha256(self.der).hexdigest()


class BatchSigner:
    """Issues device certificates for one batch from one CA under one profile."""

    def __init__(self, authority: CertificateAuthority, profile: CertificateProfile, key_policy: KeyPolicy,
                 validity: timedelta) -> None:
        if "uri" not in profile.san_kinds:
            raise ProfileError(f"certificate profile {profile.name} does not certify devices", field="profile")
        self.authority = authority
        self.profile = profile
        self.key_policy = key_policy
        self.validity = validity

    @staticmethod
    def names(dev_id: str) -> Names:
        """What a device certificate certifies: the DevID as CN and as a URI SAN."""
        return Names(common_name=dev_id, uris=(device_uri(dev_id),))

    def from_csr(self, dev_id: str, csr: bytes | str, *, now: datetime | None = None) -> SignedItem:
        """Check the device's request (signature, key type, names) and sign it.

        Raises:
            PkiError: the request is refused (CsrError, KeyPolicyError...).
        """
        names = self.names(_dev_id(dev_id))
        clean = self._clean_request(csr, dev_id)
        if clean is not None:
            return self._sign(dev_id, clean[0], clean[1], names, None, now)
        info = parse_csr(csr, self.key_policy)
        names = check_request(info, self.profile, names)
        return self._sign(dev_id, info.csr.public_key(), info.key_type, names, None, now)

    def _clean_request(self, csr: bytes | str, dev_id: str) -> tuple[PublicKey, KeyType] | None:
        """The key of a request in the common, clean shape - else None, and pki.csr decides.

        Clean: PEM, no attributes (so no extensionRequest: the names are CN=DevID or
        nothing), a valid signature, an allowed key. For these, parse_csr + check_request
        would accept and certify exactly ``names(dev_id)``; this reaches the same answer
        with one decode of the key instead of three. Anything else - including every
        request that will be refused - takes the full path, which words the refusal.
        """
        raw = csr.encode() if isinstance(csr, str) else csr
        if len(raw) > MAX_CSR_BYTES or not raw.lstrip().startswith(b"-----BEGIN"):
            return None
        try:
            request = x509.load_pem_x509_csr(raw)
            if len(request.attributes) or not request.is_signature_valid:
                return None
            public_key = request.public_key()
            common_names = request.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
            if common_names and common_names[0].value != dev_id:
                return None
            key_type = self.key_policy.check(public_key)
            self.profile.key_policy.check(public_key)
        except (ValueError, TypeError, UnsupportedAlgorithm, PkiError):
            return None
        return public_key, key_type

    def from_new_key(self, dev_id: str, key_type: KeyType, *, now: datetime | None = None) -> SignedItem:
        """Generate a key of ``key_type`` (within the profile's key types) and certify it."""
        names = self.names(_dev_id(dev_id))
        key = generate_private_key(key_type)
        public_key = key.public_key()
        checked = self.key_policy.check(public_key)
        self.profile.key_policy.check(public_key)
        return self._sign(dev_id, public_key, checked, names, key, now)

    def _sign(self, dev_id: str, public_key: PublicKey, key_type: KeyType, names: Names,
              private_key: PrivateKey | None, now: datetime | None) -> SignedItem:
        issued = sign(self.authority, public_key, names, self.profile, self.validity, now or datetime.now(UTC))
        cert = issued.certificate
        der = cert.public_bytes(Encoding.DER)
        return SignedItem(dev_id=dev_id, certificate=cert, der=der, pem=_pem(der), key_type=key_type,
                          private_key=private_key)


def _pem(der: bytes) -> str:
    """PEM of a DER certificate (RFC 7468: base64 in lines of 64)."""
    body = base64.b64encode(der).decode()
    lines = "\n".join(body[i:i + 64] for i in range(0, len(body), 64))
    return f"-----BEGIN CERTIFICATE-----\n{lines}\n-----END CERTIFICATE-----\n"


def _dev_id(dev_id: str) -> str:
    try:
        return check_dev_id(dev_id)
    except (TypeError, ValueError) as exc:
        raise CsrPolicyError(f"dev_id: {exc}", field="dev_id") from None
