"""Builders and assertion helpers for the pki tests.

Keys are generated at test time and cached for the whole session
(:func:`cached_key`): RSA-3072/4096 generation takes a second or more, and the
tests only need a handful of distinct keys per type.
"""

from __future__ import annotations

import functools
import ipaddress
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import AttributeOID, NameOID
from hypothesis import settings

from pki.authority import CertificateAuthority, IssuedCertificate, create_issuing_ca, create_root
from pki.encoding import private_key_pem
from pki.identity import device_uri
from pki.keys import KeyType, PrivateKey, PublicKey, generate_private_key
from pki.profiles import PROFILES, Names, Urls
from pki.signers import LocalSigner, Signer

__all__ = [
    "DEV_ID",
    "HYPOTHESIS",
    "KEY_TYPES",
    "LEAF_PROFILE_NAMES",
    "LOCALHOST",
    "URLS",
    "Hierarchy",
    "OpaqueSigner",
    "WrongKeySigner",
    "assert_extensions",
    "assert_is_ca",
    "assert_is_leaf",
    "assert_issued_by",
    "build_csr",
    "build_hierarchy",
    "cached_hierarchy",
    "cached_key",
    "csr_bytes",
    "names_for",
    "openssl",
    "openssl_verify",
    "write_key",
    "write_pem",
]

DEV_ID = "IMEI:490154203237518"
LOCALHOST = ipaddress.ip_address("127.0.0.1")
LEAF_PROFILE_NAMES = ("device", "dm-server", "data-repository", "ocsp-signer")
URLS = Urls(
    crl=("http://pki.dmboot.test/issuing.crl",),
    ocsp=("http://ocsp.dmboot.test/",),
    ca_issuers=("http://pki.dmboot.test/issuing.cer",),
)
#: Every key type, with readable ids, for ``pytest.mark.parametrize``.
KEY_TYPES = [pytest.param(k, id=k.value) for k in KeyType]
#: No deadline (tests carry no time limits) and no example database in the shared tree.
HYPOTHESIS = settings(deadline=None, database=None, max_examples=200)


# -- keys and names ---------------------------------------------------------------------------


@functools.cache
def cached_key(key_type: KeyType, slot: str = "subject") -> PrivateKey:
    """A key of ``key_type``, generated once per session for each ``slot``."""
    return generate_private_key(key_type)


def names_for(profile: str) -> Names:
    """Names a certificate of ``profile`` typically certifies."""
    if profile == "device":
        return Names(common_name=DEV_ID, uris=(device_uri(DEV_ID),))
    if profile in ("dm-server", "data-repository"):
        return Names(common_name="localhost", organization="dm-bootstrap tests", dns=("localhost",),
                     ips=(LOCALHOST,))
    return Names(common_name=f"dm-bootstrap {profile}")


# -- signers ----------------------------------------------------------------------------------


class OpaqueSigner:
    """A signer implementing only the :class:`~pki.signers.Signer` protocol, like a remote one.

    It is not a LocalSigner, so :mod:`pki.tbs` takes its generic to-be-signed path.
    """

    def __init__(self, private_key: PrivateKey) -> None:
        self._inner = LocalSigner(private_key)
        self.calls = 0

    @property
    def key_type(self) -> KeyType:
        return self._inner.key_type

    @property
    def public_key(self) -> PublicKey:
        return self._inner.public_key

    def sign(self, data: bytes) -> bytes:
        self.calls += 1
        return self._inner.sign(data)


class WrongKeySigner(OpaqueSigner):
    """Claims one key but signs with another of the same type (a remote key version mix-up)."""

    def __init__(self, claimed: PrivateKey, actual: PrivateKey) -> None:
        super().__init__(actual)
        self._claimed = claimed.public_key()

    @property
    def public_key(self) -> PublicKey:
        return self._claimed


# -- hierarchies ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Hierarchy:
    """A root CA and an issuing CA below it, both of one key type."""

    key_type: KeyType
    root: x509.Certificate
    root_ca: CertificateAuthority
    issuing: x509.Certificate
    ca: CertificateAuthority

    def issue(
        self,
        profile: str,
        *,
        key: PrivateKey | None = None,
        names: Names | None = None,
        validity: timedelta | None = None,
        now: datetime | None = None,
    ) -> IssuedCertificate:
        """Issue a ``profile`` certificate from the issuing CA (P-256 subject key unless ``key``)."""
        public_key = (key or cached_key(KeyType.P256)).public_key()
        return self.ca.issue(public_key, names or names_for(profile), PROFILES[profile],
                             validity=validity, now=now)

    def write(self, directory: Path) -> tuple[Path, Path]:
        """Write root.pem and issuing.pem into ``directory``."""
        root = write_pem(directory / "root.pem", self.root)
        return root, write_pem(directory / "issuing.pem", self.issuing)


def build_hierarchy(
    key_type: KeyType = KeyType.P256,
    *,
    slot: str = "main",
    now: datetime | None = None,
    urls: Urls | None = None,
    issuing_validity: timedelta | None = None,
    signer: Callable[[PrivateKey], Signer] = LocalSigner,
) -> Hierarchy:
    """A fresh root + issuing CA over the cached keys of ``slot``."""
    root_key, issuing_key = cached_key(key_type, f"{slot}-root"), cached_key(key_type, f"{slot}-issuing")
    root_signer, issuing_signer = signer(root_key), signer(issuing_key)
    root = create_root(root_signer, Names(f"dm-bootstrap test root {key_type.value} {slot}", "dm-bootstrap"),
                       now=now)
    root_ca = CertificateAuthority(root, root_signer, urls=urls)
    issuing = create_issuing_ca(
        root_ca, issuing_key.public_key(),
        Names(f"dm-bootstrap test issuing CA {key_type.value} {slot}", "dm-bootstrap"),
        validity=issuing_validity, now=now,
    )
    ca = CertificateAuthority(issuing, issuing_signer, urls=urls)
    return Hierarchy(key_type, root, root_ca, issuing, ca)


@functools.cache
def cached_hierarchy(key_type: KeyType, slot: str = "main") -> Hierarchy:
    """One hierarchy per key type and slot for the whole session."""
    return build_hierarchy(key_type, slot=slot)


# -- files and openssl ------------------------------------------------------------------------


def write_pem(path: Path, *certificates: x509.Certificate) -> Path:
    path.write_bytes(b"".join(c.public_bytes(Encoding.PEM) for c in certificates))
    return path


def write_key(path: Path, key: PrivateKey) -> Path:
    path.write_bytes(private_key_pem(key))
    return path


def openssl(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """Run openssl with a fixed argv; never raises on a non-zero exit."""
    return subprocess.run(
        ["openssl", *map(str, args)], capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False
    )


def openssl_verify(
    directory: Path, hierarchy: Hierarchy, leaf: x509.Certificate, *extra: str
) -> subprocess.CompletedProcess[str]:
    """``openssl verify -x509_strict -CAfile root.pem -untrusted issuing.pem [extra] leaf.pem``."""
    root, issuing = hierarchy.write(directory)
    leaf_pem = write_pem(directory / "leaf.pem", leaf)
    return openssl("verify", "-x509_strict", "-CAfile", root, "-untrusted", issuing, *extra, leaf_pem)


# -- assertions -------------------------------------------------------------------------------


Extension = tuple[x509.ExtensionType, bool]


def _extension_map(certificate: x509.Certificate) -> dict[x509.ObjectIdentifier, Extension]:
    return {e.oid: (e.value, e.critical) for e in certificate.extensions}


def assert_extensions(certificate: x509.Certificate, expected: Sequence[Extension]) -> None:
    """The certificate carries exactly ``expected``: same OIDs, values and criticality."""
    actual = _extension_map(certificate)
    wanted = {value.oid: (value, critical) for value, critical in expected}
    assert len(wanted) == len(expected), "duplicate extension in the expectation"
    assert len(actual) == len(certificate.extensions), "duplicate extension in the certificate"
    assert set(actual) == set(wanted), f"extensions differ: {sorted(o.dotted_string for o in actual)}"
    for oid, (value, critical) in wanted.items():
        assert actual[oid] == (value, critical), f"{oid.dotted_string}: {actual[oid]} != {(value, critical)}"


def assert_is_leaf(certificate: x509.Certificate) -> None:
    """An end-entity certificate: critical BasicConstraints cA=FALSE, no certificate signing."""
    constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical
    assert constraints.value == x509.BasicConstraints(ca=False, path_length=None)
    usage = certificate.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical
    assert usage.value.digital_signature
    assert not usage.value.key_cert_sign
    assert not usage.value.crl_sign
    assert certificate.subject != certificate.issuer


def assert_is_ca(certificate: x509.Certificate, path_len: int | None) -> None:
    """A CA certificate with ``path_len`` (None: unlimited) and only keyCertSign + cRLSign."""
    constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical
    assert constraints.value == x509.BasicConstraints(ca=True, path_length=path_len)
    usage = certificate.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical
    assert usage.value == x509.KeyUsage(
        digital_signature=False, content_commitment=False, key_encipherment=False, data_encipherment=False,
        key_agreement=False, key_cert_sign=True, crl_sign=True, encipher_only=False, decipher_only=False,
    )
    with_eku = [e for e in certificate.extensions if isinstance(e.value, x509.ExtendedKeyUsage)]
    assert not with_eku


def assert_issued_by(certificate: x509.Certificate, issuer: x509.Certificate) -> None:
    """Name chaining, AKI = the issuer's SKI, and a signature by the issuer's key."""
    assert certificate.issuer == issuer.subject
    ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    aki = certificate.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == ski.digest
    certificate.verify_directly_issued_by(issuer)


# -- CSRs -------------------------------------------------------------------------------------


def build_csr(
    key: PrivateKey | None = None,
    *,
    common_name: str | None = DEV_ID,
    extensions: Sequence[tuple[x509.ExtensionType, bool]] = (),
    san: Sequence[x509.GeneralName] = (),
    challenge_password: bytes | None = None,
) -> x509.CertificateSigningRequest:
    """A PKCS#10 request signed by ``key`` (the cached P-256 subject key unless given)."""
    key = key or cached_key(KeyType.P256)
    subject = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)] if common_name else []
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(subject))
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(san)), critical=False)
    for extension, critical in extensions:
        builder = builder.add_extension(extension, critical=critical)
    if challenge_password is not None:
        builder = builder.add_attribute(AttributeOID.CHALLENGE_PASSWORD, challenge_password)
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return builder.sign(key, algorithm)


def csr_bytes(csr: x509.CertificateSigningRequest, encoding: Encoding = Encoding.DER) -> bytes:
    return csr.public_bytes(encoding)
