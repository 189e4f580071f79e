"""Encodings of certificates and keys: PEM/DER, PKCS#7 certs-only, PKCS#12.

PKCS#7 "certs-only" (RFC 2315 / RFC 5652 SignedData with no signers) is what
EST's ``/cacerts`` and ``/simpleenroll`` return (RFC 7030 4.1.3). It is written
with cryptography's ``pkcs7.serialize_certificates`` (DER: the SET OF certificates
sorted). It is read with asn1crypto: cryptography's ``load_der_pkcs7_certificates``
warns, and says it may one day refuse, on the unsorted SET that ``openssl crl2pkcs7``
and other BER writers produce, and it keeps no order for the caller.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import cast

from asn1crypto import cms as asn1_cms
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import Encoding, pkcs7, pkcs12

from pki.errors import EncodingError
from pki.keys import PrivateKey

__all__ = [
    "certificates_to_pem",
    "load_certificates",
    "pkcs7_certs_only",
    "pkcs7_certificates",
    "pkcs12_bundle",
    "private_key_pem",
]


def certificates_to_pem(certificates: Iterable[x509.Certificate]) -> str:
    """Concatenated PEM of ``certificates``."""
    return "".join(c.public_bytes(Encoding.PEM).decode() for c in certificates)


def load_certificates(data: bytes) -> list[x509.Certificate]:
    """Load one or more certificates from PEM (a bundle) or DER.

    Raises:
        EncodingError: nothing that parses as a certificate.
    """
    try:
        if b"-----BEGIN" in data:
            return x509.load_pem_x509_certificates(data)
        return [x509.load_der_x509_certificate(data)]
    except ValueError as exc:
        raise EncodingError(f"not a certificate: {exc}") from None


def pkcs7_certs_only(certificates: Sequence[x509.Certificate]) -> bytes:
    """DER PKCS#7 SignedData holding ``certificates`` (at least one) and no signature."""
    if not certificates:
        raise ValueError("a PKCS#7 certs-only structure needs at least one certificate")
    return pkcs7.serialize_certificates(list(certificates), Encoding.DER)


def pkcs7_certificates(der: bytes) -> list[x509.Certificate]:
    """The certificates in a DER (or BER) PKCS#7 certs-only structure, in the order it lists them.

    Raises:
        EncodingError: not a PKCS#7 SignedData.
    """
    try:
        info = asn1_cms.ContentInfo.load(der)
        if info["content_type"].native != "signed_data":
            raise EncodingError("PKCS#7 content is not SignedData")
        return [x509.load_der_x509_certificate(choice.chosen.dump()) for choice in info["content"]["certificates"]]
    except (ValueError, TypeError, KeyError) as exc:
        raise EncodingError(f"not a PKCS#7 certs-only structure: {exc}") from None


def private_key_pem(key: PrivateKey, passphrase: bytes | None = None) -> bytes:
    """PKCS#8 PEM of ``key``, encrypted with ``passphrase`` when one is given."""
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase) if passphrase else serialization.NoEncryption()
    )
    return key.private_bytes(Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)


def pkcs12_bundle(
    name: str,
    key: PrivateKey,
    certificate: x509.Certificate,
    chain: Sequence[x509.Certificate],
    password: bytes,
) -> bytes:
    """A PKCS#12 file with ``key``, ``certificate`` and ``chain``, encrypted with ``password``
    (AES-256 and PBKDF2, cryptography's best available)."""
    if not password:
        raise ValueError("a PKCS#12 bundle needs a password")
    return pkcs12.serialize_key_and_certificates(
        name.encode(),
        cast(pkcs12.PKCS12PrivateKeyTypes, key),
        certificate,
        list(chain),
        serialization.BestAvailableEncryption(password),
    )
