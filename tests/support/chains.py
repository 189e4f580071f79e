"""Manufacturer CA hierarchies for IDevID path tests: roots, intermediates with chosen flaws, leaves."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["NOW", "Ca", "make_ca", "make_leaf", "make_leaf_and_key"]

NOW = datetime.now(UTC)


@dataclass
class Ca:
    """A CA certificate and its key."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey


def _usage(cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(digital_signature=not cert_sign, content_commitment=False, key_encipherment=False,
                         data_encipherment=False, key_agreement=False, key_cert_sign=cert_sign, crl_sign=cert_sign,
                         encipher_only=False, decipher_only=False)


def make_ca(name: str, issuer: Ca | None = None, *, ca: bool = True, path_length: int | None = None,
            cert_sign: bool = True, expired: bool = False) -> Ca:
    """A CA (self-signed without ``issuer``); ``ca``/``cert_sign``/``expired`` make flawed ones."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    end = NOW - timedelta(days=1) if expired else NOW + timedelta(days=30)
    builder = (x509.CertificateBuilder().subject_name(subject)
               .issuer_name(issuer.cert.subject if issuer else subject).public_key(key.public_key())
               .serial_number(x509.random_serial_number()).not_valid_before(NOW - timedelta(days=10))
               .not_valid_after(end)
               .add_extension(x509.BasicConstraints(ca=ca, path_length=path_length if ca else None), critical=True)
               .add_extension(_usage(cert_sign), critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False))
    if issuer is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()), critical=False)
    return Ca(builder.sign(issuer.key if issuer else key, hashes.SHA256()), key)


def make_leaf(issuer: Ca, name: str = "IMEI:490154203237518") -> x509.Certificate:
    """An 802.1AR-style IDevID: subject serialNumber = ``name``, clientAuth."""
    return make_leaf_and_key(issuer, name)[0]


def make_leaf_and_key(issuer: Ca, name: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """:func:`make_leaf`, with the leaf's private key."""
    key = ec.generate_private_key(ec.SECP256R1())
    return ((x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.SERIAL_NUMBER, name)]))
            .issuer_name(issuer.cert.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(NOW - timedelta(days=1)).not_valid_after(NOW + timedelta(days=20))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_usage(False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()), critical=False)
            .sign(issuer.key, hashes.SHA256())), key)
