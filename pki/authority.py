"""The certificate authority: build the hierarchy, issue and renew certificates.

A :class:`CertificateAuthority` is an issuing certificate plus a
:class:`~pki.signers.Signer` for its key. It keeps no state between calls: the
caller records what it returns (the service does so before handing a
certificate to anyone).
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from pki.csr import CsrInfo, check_request
from pki.errors import IssuanceError, ProfileError
from pki.keys import PublicKey
from pki.profiles import PROFILES, CertificateProfile, Names, Urls
from pki.signers import LocalSigner, Signer
from pki.tbs import check_signature, sign_certificate

__all__ = [
    "BACKDATE",
    "CertificateAuthority",
    "IssuedCertificate",
    "create_issuing_ca",
    "create_root",
    "fingerprint",
    "random_serial",
]

#: notBefore is set this far in the past, for devices whose clocks run a little slow.
BACKDATE = timedelta(minutes=5)


def random_serial() -> int:
    """A positive serial with 159 random bits (RFC 5280 4.1.2.2 allows 20 octets).

    CA/B Forum asks for at least 64 bits of entropy; 159 bits make a collision
    negligible, and the database's unique constraint catches the impossible.
    """
    return secrets.randbits(159) | 1 << 158  # top bit set: always 20 octets, never 0


def fingerprint(certificate: x509.Certificate) -> str:
    """``sha256:<hex>`` of the DER certificate."""
    return "sha256:" + hashlib.sha256(certificate.public_bytes(Encoding.DER)).hexdigest()


@dataclass(frozen=True)
class IssuedCertificate:
    """A certificate and the chain up to (not including) the root."""

    certificate: x509.Certificate
    chain: tuple[x509.Certificate, ...]
    profile: str

    @property
    def serial_hex(self) -> str:
        return format(self.certificate.serial_number, "x")

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.certificate)

    @property
    def pem(self) -> str:
        return self.certificate.public_bytes(Encoding.PEM).decode()

    @property
    def chain_pem(self) -> str:
        """The certificate followed by its issuers, as TLS servers and clients send it."""
        return self.pem + "".join(c.public_bytes(Encoding.PEM).decode() for c in self.chain)


def _builder(
    subject: x509.Name,
    issuer: x509.Name,
    public_key: PublicKey,
    not_before: datetime,
    not_after: datetime,
    extensions: Sequence[tuple[x509.ExtensionType, bool]],
    serial: int | None = None,
) -> x509.CertificateBuilder:
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(serial or random_serial())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
    )
    for extension, critical in extensions:
        builder = builder.add_extension(extension, critical=critical)
    return builder


def _now(now: datetime | None) -> datetime:
    return (now or datetime.now(UTC)).replace(microsecond=0)


def create_root(
    signer: Signer, names: Names, *, validity: timedelta | None = None, now: datetime | None = None
) -> x509.Certificate:
    """Create a self-signed root certificate for ``signer``'s key."""
    profile = PROFILES["root"]
    start = _now(now)
    extensions = profile.extensions(signer.public_key, signer.public_key, names, Urls())
    subject = names.subject()
    builder = _builder(
        subject, subject, signer.public_key, start - BACKDATE, start + (validity or profile.validity), extensions
    )
    return sign_certificate(builder, signer)


def create_issuing_ca(
    root: CertificateAuthority,
    public_key: PublicKey,
    names: Names,
    *,
    validity: timedelta | None = None,
    now: datetime | None = None,
) -> x509.Certificate:
    """Have ``root`` certify ``public_key`` as an issuing CA (pathLen 0)."""
    return root.issue(public_key, names, PROFILES["issuing-ca"], validity=validity, now=now).certificate


class CertificateAuthority:
    """Issues certificates under one CA certificate with one signer."""

    def __init__(
        self,
        certificate: x509.Certificate,
        signer: Signer,
        *,
        chain: Sequence[x509.Certificate] = (),
        urls: Urls | None = None,
    ) -> None:
        if certificate.public_key() != signer.public_key:
            raise IssuanceError("the signer's key does not match the CA certificate")
        self.certificate = certificate
        self.signer = signer
        #: Issuers above this CA, nearest first, excluding the root.
        self.chain = tuple(chain)
        self.urls = urls or Urls()

    @property
    def not_after(self) -> datetime:
        return self.certificate.not_valid_after_utc

    def issue(
        self,
        public_key: PublicKey,
        names: Names,
        profile: CertificateProfile,
        *,
        validity: timedelta | None = None,
        now: datetime | None = None,
    ) -> IssuedCertificate:
        """Certify ``public_key`` for ``names`` under ``profile``.

        Validity is the profile's (or ``validity``), never past this CA's notAfter.

        Raises:
            IssuanceError: this CA has expired or is not yet valid.
            ProfileError: the profile is a root profile.
            SignerError: the signer failed.
        """
        if profile.name == "root":
            raise ProfileError("a root certificate is created with create_root(), not issued")
        start = _now(now)
        if start >= self.not_after:
            raise IssuanceError(f"the issuing CA expired on {self.not_after.isoformat()}")
        if start < self.certificate.not_valid_before_utc:
            # Without this, notAfter could fall before the clamped notBefore.
            raise IssuanceError(
                f"the issuing CA is not valid before {self.certificate.not_valid_before_utc.isoformat()}"
            )
        not_before = max(start - BACKDATE, self.certificate.not_valid_before_utc)
        not_after = min(start + (validity or profile.validity), self.not_after)
        # The serial comes first: a partitioned CRL distribution point is derived from it.
        serial = random_serial()
        extensions = profile.extensions(public_key, self.signer.public_key, names, self.urls.for_serial(serial))
        builder = _builder(names.subject(), self.certificate.subject, public_key, not_before, not_after, extensions,
                           serial)
        certificate = sign_certificate(builder, self.signer)
        if not isinstance(self.signer, LocalSigner):
            # A local key was matched to the CA certificate in __init__; a remote signer
            # could sign with another key (version) and must be checked every time.
            check_signature(certificate, self.certificate)
        chain = tuple(c for c in (self.certificate, *self.chain) if c.subject != c.issuer)
        return IssuedCertificate(certificate, chain, profile.name)

    def issue_for_csr(
        self,
        info: CsrInfo,
        profile: CertificateProfile,
        *,
        expected: Names | None = None,
        validity: timedelta | None = None,
        now: datetime | None = None,
    ) -> IssuedCertificate:
        """Check ``info`` against ``profile`` (and ``expected``) and issue for its key."""
        names = check_request(info, profile, expected)
        return self.issue(info.public_key, names, profile, validity=validity, now=now)
