"""The crypto ceiling: the bare cryptography loop every benchmark divides by, measured in the same run."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID, NameOID

from bench.common import PUBLIC_URL, Sample, make_device_csrs, measure

__all__ = ["CeilingBench", "CeilingResult", "ceiling"]


# --------------------------------------------------------------------------------------
# The crypto ceiling
# --------------------------------------------------------------------------------------


def _ca_key(ca_key_type: str) -> tuple[CertificateIssuerPrivateKeyTypes, hashes.HashAlgorithm | None]:
    kind = ca_key_type.lower().replace("-", "")
    if kind == "p256":
        return ec.generate_private_key(ec.SECP256R1()), hashes.SHA256()
    if kind == "p384":
        return ec.generate_private_key(ec.SECP384R1()), hashes.SHA384()
    if kind == "ed25519":
        return ed25519.Ed25519PrivateKey.generate(), None
    if kind.startswith("rsa"):
        return rsa.generate_private_key(public_exponent=65537, key_size=int(kind[3:] or 2048)), hashes.SHA256()
    raise ValueError(f"unknown CA key type {ca_key_type!r}")


@dataclass(frozen=True)
class CeilingResult:
    """Certificates a bare ``cryptography`` loop issues on one core."""

    ca_key_type: str
    certificates: int
    wall_seconds: float
    cpu_seconds: float

    @property
    def certs_per_second(self) -> float:
        return self.certificates / self.wall_seconds

    @property
    def certs_per_cpu_second(self) -> float:
        return self.certificates / self.cpu_seconds if self.cpu_seconds else 0.0

    @property
    def sample(self) -> Sample:
        return Sample(self.certificates, self.wall_seconds, self.cpu_seconds)


@dataclass
class CeilingBench:
    """The ceiling's fixtures (CA key and certificate, CSRs), made once, measured many times.

    The loop does what the service must do per certificate and nothing else: parse the
    PEM request, verify its signature, check the key is P-256, build the device
    profile's leaf (pki/profiles.py ``_leaf`` + ``_key_ids`` + ``_locations``:
    BasicConstraints cA=FALSE (critical), KeyUsage digitalSignature (critical), EKU
    clientAuth, SAN URI ``urn:dmboot:devid:<CN>``, SKI, AKI, CRL distribution point,
    AIA OCSP + caIssuers), sign it with the CA key and PEM-encode it. What does not
    depend on the request (issuer name, AKI, CRL DP, AIA) is built once, as any
    careful implementation would.
    """

    ca_key_type: str = "p256"
    csrs: Sequence[bytes] = ()
    n_csrs: int = 1000
    ca_key: CertificateIssuerPrivateKeyTypes = field(init=False)
    _hash: hashes.HashAlgorithm | None = field(init=False)
    _issuer: x509.Name = field(init=False)
    _constant: list[tuple[x509.ExtensionType, bool]] = field(init=False)

    def __post_init__(self) -> None:
        if not self.csrs:
            self.csrs = make_device_csrs(self.n_csrs)
        self.ca_key, self._hash = _ca_key(self.ca_key_type)
        self._issuer = x509.Name([
            x509.NameAttribute(NameOID.COMMON_NAME, "bench Issuing CA 1"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "dm-bootstrap"),
        ])
        name = "issuing-1"
        self._constant = [
            (x509.AuthorityKeyIdentifier.from_issuer_public_key(self.ca_key.public_key()), False),
            (x509.CRLDistributionPoints([x509.DistributionPoint(
                [x509.UniformResourceIdentifier(f"{PUBLIC_URL}/crl/{name}.crl")], None, None, None)]), False),
            (x509.AuthorityInformationAccess([
                x509.AccessDescription(AuthorityInformationAccessOID.OCSP,
                                       x509.UniformResourceIdentifier(f"{PUBLIC_URL}/ocsp")),
                x509.AccessDescription(AuthorityInformationAccessOID.CA_ISSUERS,
                                       x509.UniformResourceIdentifier(f"{PUBLIC_URL}/ca/{name}.der")),
            ]), False),
        ]

    def issue_one(self, i: int) -> bytes:
        """One certificate from request ``i`` (cycling through the pool)."""
        csr = x509.load_pem_x509_csr(self.csrs[i % len(self.csrs)])
        if not csr.is_signature_valid:
            raise ValueError("CSR signature does not verify")
        public_key = csr.public_key()
        if not isinstance(public_key, ec.EllipticCurvePublicKey) or not isinstance(public_key.curve, ec.SECP256R1):
            raise ValueError("not a P-256 key")
        cn = str(csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)
        now = datetime.now(UTC).replace(microsecond=0)
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
            .issuer_name(self._issuer)
            .public_key(public_key)
            .serial_number(secrets.randbits(159) | 1 << 158)
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .add_extension(x509.SubjectAlternativeName(
                [x509.UniformResourceIdentifier("urn:dmboot:devid:" + cn)]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        )
        for extension, critical in self._constant:
            builder = builder.add_extension(extension, critical=critical)
        return builder.sign(self.ca_key, self._hash).public_bytes(Encoding.PEM)  # type: ignore[arg-type]

    def run(self, seconds: float, *, warmup: float = 0.5) -> CeilingResult:
        sample = measure(self.issue_one, seconds=seconds, warmup=warmup)
        return CeilingResult(self.ca_key_type, sample.count, sample.wall, sample.cpu)


def ceiling(seconds: float, ca_key_type: str = "p256", *, csrs: Sequence[bytes] = (),
            warmup: float = 0.5) -> CeilingResult:
    """The crypto ceiling: certificates/s and per CPU-second of a bare cryptography loop, one core.

    CSRs are generated (or passed in) before the timed part.
    """
    return CeilingBench(ca_key_type, csrs).run(seconds, warmup=warmup)
