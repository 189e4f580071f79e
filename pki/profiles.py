"""Certificate profiles: pure functions from names and keys to X.509 extensions.

Each profile states every extension it puts in a certificate and whether it is
critical (RFC 5280 section 4.2), the kinds of subjectAltName a requester may ask
for, and how long its certificates live. Profiles never see a CSR: the authority
hands them the identity it has already checked.

=================  ===========================  ============================  ==========
profile            key usage (critical)         extended key usage            SAN kinds
=================  ===========================  ============================  ==========
root               keyCertSign, cRLSign         -                             -
issuing-ca         keyCertSign, cRLSign         -                             -
device             digitalSignature (+keyEnc.)  clientAuth                    uri
dm-server          digitalSignature (+keyEnc.)  serverAuth                    dns, ip
data-repository    digitalSignature (+keyEnc.)  serverAuth                    dns, ip
ocsp-signer        digitalSignature             OCSPSigning (critical)        -
=================  ===========================  ============================  ==========

keyEncipherment is added for RSA subject keys only (TLS 1.2 RSA key transport).
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import cast

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPublicKeyTypes as IssuerPublicKey
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID, NameOID

from pki.errors import ProfileError
from pki.keys import KeyPolicy, PublicKey

__all__ = [
    "LEAF_PROFILES",
    "PROFILES",
    "CertificateProfile",
    "Extension",
    "Names",
    "Urls",
    "get_profile",
    "partition_url",
    "with_policies",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Extension = tuple[x509.ExtensionType, bool]


@dataclass(frozen=True)
class Urls:
    """Where relying parties find revocation data and the issuer (from settings)."""

    crl: tuple[str, ...] = ()
    ocsp: tuple[str, ...] = ()
    ca_issuers: tuple[str, ...] = ()
    #: Partitioned CRLs: > 0 makes each certificate's CRL distribution point name its
    #: partition, ``<crl url without .crl>-p<serial mod crl_partitions>.crl``.
    crl_partitions: int = 0

    def for_serial(self, serial: int) -> Urls:
        """The URLs a certificate with ``serial`` carries (its CRL partition, when partitioned)."""
        if self.crl_partitions <= 0:
            return self
        crl = tuple(partition_url(url, serial % self.crl_partitions) for url in self.crl)
        return dataclasses.replace(self, crl=crl, crl_partitions=0)


def partition_url(crl_url: str, partition: int) -> str:
    """The URL of CRL partition ``partition`` of the CRL published at ``crl_url``."""
    return f"{crl_url.removesuffix('.crl')}-p{partition}.crl"


@dataclass(frozen=True)
class Names:
    """The identity a certificate certifies, already checked by the caller."""

    common_name: str
    organization: str | None = None
    dns: tuple[str, ...] = ()
    ips: tuple[IPAddress, ...] = ()
    uris: tuple[str, ...] = ()

    def subject(self) -> x509.Name:
        attributes = [x509.NameAttribute(NameOID.COMMON_NAME, self.common_name)]
        if self.organization:
            attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, self.organization))
        return x509.Name(attributes)

    def general_names(self) -> list[x509.GeneralName]:
        names: list[x509.GeneralName] = [x509.DNSName(d) for d in self.dns]
        names += [x509.IPAddress(ip) for ip in self.ips]
        names += [x509.UniformResourceIdentifier(u) for u in self.uris]
        return names


ExtensionsFn = Callable[[PublicKey, PublicKey, Names, Urls], list[Extension]]


@dataclass(frozen=True)
class CertificateProfile:
    """A named certificate profile."""

    name: str
    description: str
    validity: timedelta
    extensions: ExtensionsFn
    is_ca: bool = False
    san_kinds: frozenset[str] = frozenset()
    key_policy: KeyPolicy = field(default_factory=KeyPolicy)
    #: Extended key usages a CSR may request (anything else is refused).
    eku: frozenset[x509.ObjectIdentifier] = frozenset()


def _key_ids(subject_key: PublicKey, issuer_key: PublicKey) -> list[Extension]:
    return [
        (x509.SubjectKeyIdentifier.from_public_key(subject_key), False),
        (x509.AuthorityKeyIdentifier.from_issuer_public_key(cast(IssuerPublicKey, issuer_key)), False),
    ]


def _locations(urls: Urls) -> list[Extension]:
    extensions: list[Extension] = []
    if urls.crl:
        points = [x509.DistributionPoint([x509.UniformResourceIdentifier(u)], None, None, None) for u in urls.crl]
        extensions.append((x509.CRLDistributionPoints(points), False))
    access = [
        x509.AccessDescription(AuthorityInformationAccessOID.OCSP, x509.UniformResourceIdentifier(u)) for u in urls.ocsp
    ] + [
        x509.AccessDescription(AuthorityInformationAccessOID.CA_ISSUERS, x509.UniformResourceIdentifier(u))
        for u in urls.ca_issuers
    ]
    if access:
        extensions.append((x509.AuthorityInformationAccess(access), False))
    return extensions


def _key_usage(*, cert_sign: bool = False, key_encipherment: bool = False) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not cert_sign,
        content_commitment=False,
        key_encipherment=key_encipherment,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def root_extensions(subject_key: PublicKey, issuer_key: PublicKey, names: Names, urls: Urls) -> list[Extension]:
    """Self-signed root: CA without a path length limit."""
    return [
        (x509.BasicConstraints(ca=True, path_length=None), True),
        (_key_usage(cert_sign=True), True),
        *_key_ids(subject_key, issuer_key),
    ]


def issuing_ca_extensions(subject_key: PublicKey, issuer_key: PublicKey, names: Names, urls: Urls) -> list[Extension]:
    """Issuing CA below the root: pathLen 0, so it can issue only end entities."""
    return [
        (x509.BasicConstraints(ca=True, path_length=0), True),
        (_key_usage(cert_sign=True), True),
        *_key_ids(subject_key, issuer_key),
        *_locations(urls),
    ]


def _leaf(eku: x509.ObjectIdentifier) -> ExtensionsFn:
    def extensions(subject_key: PublicKey, issuer_key: PublicKey, names: Names, urls: Urls) -> list[Extension]:
        is_rsa = isinstance(subject_key, rsa.RSAPublicKey)
        result: list[Extension] = [
            (x509.BasicConstraints(ca=False, path_length=None), True),
            (_key_usage(key_encipherment=is_rsa), True),
            (x509.ExtendedKeyUsage([eku]), False),
        ]
        general_names = names.general_names()
        if general_names:
            # RFC 5280 4.2.1.6: critical only when the subject is empty; ours never is.
            result.append((x509.SubjectAlternativeName(general_names), False))
        return result + _key_ids(subject_key, issuer_key) + _locations(urls)

    return extensions


def ocsp_signer_extensions(subject_key: PublicKey, issuer_key: PublicKey, names: Names, urls: Urls) -> list[Extension]:
    """Delegated OCSP responder (RFC 6960 4.2.2.2), exempt from revocation checks."""
    return [
        (x509.BasicConstraints(ca=False, path_length=None), True),
        (_key_usage(), True),
        (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.OCSP_SIGNING]), True),
        (x509.OCSPNoCheck(), False),
        *_key_ids(subject_key, issuer_key),
    ]


PROFILES: dict[str, CertificateProfile] = {
    p.name: p
    for p in (
        CertificateProfile("root", "self-signed root CA", timedelta(days=20 * 365), root_extensions, is_ca=True),
        CertificateProfile(
            "issuing-ca", "issuing CA (pathLen 0)", timedelta(days=10 * 365), issuing_ca_extensions, is_ca=True
        ),
        CertificateProfile(
            "device",
            "device client certificate (mTLS clientAuth)",
            timedelta(days=365),
            _leaf(ExtendedKeyUsageOID.CLIENT_AUTH),
            san_kinds=frozenset({"uri"}),
            eku=frozenset({ExtendedKeyUsageOID.CLIENT_AUTH}),
        ),
        CertificateProfile(
            "dm-server",
            "DM server (TLS serverAuth)",
            timedelta(days=397),
            _leaf(ExtendedKeyUsageOID.SERVER_AUTH),
            san_kinds=frozenset({"dns", "ip"}),
            eku=frozenset({ExtendedKeyUsageOID.SERVER_AUTH}),
        ),
        CertificateProfile(
            "data-repository",
            "data repository (TLS serverAuth)",
            timedelta(days=397),
            _leaf(ExtendedKeyUsageOID.SERVER_AUTH),
            san_kinds=frozenset({"dns", "ip"}),
            eku=frozenset({ExtendedKeyUsageOID.SERVER_AUTH}),
        ),
        CertificateProfile(
            "ocsp-signer",
            "delegated OCSP response signer",
            timedelta(days=30),
            ocsp_signer_extensions,
            eku=frozenset({ExtendedKeyUsageOID.OCSP_SIGNING}),
        ),
    )
}

#: Profiles a CSR may be issued under (CA profiles are created by the hierarchy code only).
LEAF_PROFILES = frozenset(name for name, p in PROFILES.items() if not p.is_ca)


def with_policies(profile: CertificateProfile, policies: tuple[str, ...]) -> CertificateProfile:
    """``profile`` whose certificates also carry certificatePolicies (non-critical) with ``policies``.

    The profile keeps its name: a policy says something more about the key (for example
    :data:`pki.tpm.TPM_RESIDENT_KEY_POLICY`), not another kind of certificate.
    """
    if not policies:
        return profile
    inner = profile.extensions
    statement = x509.CertificatePolicies([x509.PolicyInformation(x509.ObjectIdentifier(p), None) for p in policies])

    def extensions(subject_key: PublicKey, issuer_key: PublicKey, names: Names, urls: Urls) -> list[Extension]:
        return [*inner(subject_key, issuer_key, names, urls), (statement, False)]

    return dataclasses.replace(profile, extensions=extensions)


def get_profile(name: str) -> CertificateProfile:
    """Return the profile called ``name``, or raise ProfileError listing the known ones."""
    try:
        return PROFILES[name.replace("_", "-")]
    except KeyError:
        known = ", ".join(sorted(PROFILES))
        raise ProfileError(f"unknown certificate profile {name!r}; known: {known}", field="profile") from None
