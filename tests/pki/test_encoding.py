"""PEM/DER, PKCS#7 certs-only and PKCS#12 encodings, read back by openssl and cryptography."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from asn1crypto import cms as asn1_cms
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, load_pem_private_key, pkcs12
from cryptography.x509.oid import NameOID

from pki.encoding import (
    certificates_to_pem,
    load_certificates,
    pkcs7_certificates,
    pkcs7_certs_only,
    pkcs12_bundle,
    private_key_pem,
)
from pki.errors import EncodingError
from pki.keys import KeyType
from tests.pki.helpers import KEY_TYPES, Hierarchy, cached_key, openssl, write_pem

PASSWORD = "correct horse battery staple"


def _chain(hierarchy: Hierarchy) -> list[x509.Certificate]:
    return [hierarchy.issue("dm-server").certificate, hierarchy.issuing, hierarchy.root]


def _der_sorted(certificates: list[x509.Certificate]) -> list[x509.Certificate]:
    # SignedData.certificates is a SET OF: asn1crypto writes it in DER order (sorted encodings),
    # so a round trip keeps the certificates but not their order.
    return sorted(certificates, key=lambda c: c.public_bytes(Encoding.DER))


def test_pkcs7_certs_only_lists_every_certificate_in_openssl(tmp_path: Path, hierarchy: Hierarchy) -> None:
    certificates = _chain(hierarchy)
    p7b = tmp_path / "certs.p7b"
    p7b.write_bytes(pkcs7_certs_only(certificates))

    result = openssl("pkcs7", "-inform", "DER", "-in", p7b, "-print_certs")

    assert result.returncode == 0, result.stderr
    listed = x509.load_pem_x509_certificates(result.stdout.encode())
    assert _der_sorted(listed) == _der_sorted(certificates)
    subjects = [line for line in result.stdout.splitlines() if line.startswith("subject=")]
    common_names = [c.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value for c in certificates]
    assert sorted(re.search(r"CN = ([^,]+)", line).group(1) for line in subjects) == sorted(common_names)  # type: ignore[union-attr]


def test_pkcs7_round_trip(hierarchy: Hierarchy) -> None:
    certificates = _chain(hierarchy)

    assert _der_sorted(pkcs7_certificates(pkcs7_certs_only(certificates))) == _der_sorted(certificates)
    assert pkcs7_certificates(pkcs7_certs_only([hierarchy.root])) == [hierarchy.root]


def test_pkcs7_made_by_openssl_is_read(tmp_path: Path, hierarchy: Hierarchy) -> None:
    certificates = _chain(hierarchy)
    bundle = write_pem(tmp_path / "chain.pem", *certificates)
    p7b = tmp_path / "openssl.p7b"

    made = openssl("crl2pkcs7", "-nocrl", "-certfile", bundle, "-outform", "DER", "-out", p7b)

    assert made.returncode == 0, made.stderr
    assert pkcs7_certificates(p7b.read_bytes()) == certificates


def test_pkcs7_with_other_content_is_an_encoding_error() -> None:
    data = asn1_cms.ContentInfo({"content_type": "data", "content": b"hello"}).dump()

    with pytest.raises(EncodingError, match="PKCS#7 content is not SignedData"):
        pkcs7_certificates(data)


@pytest.mark.parametrize("data", [b"", b"garbage", b"\x30\x03\x02\x01\x01", b"\x30\x80"],
                         ids=["empty", "text", "sequence", "indefinite"])
def test_pkcs7_garbage_is_an_encoding_error(data: bytes) -> None:
    with pytest.raises(EncodingError, match="not a PKCS#7 certs-only structure"):
        pkcs7_certificates(data)


@pytest.mark.parametrize("key_type", KEY_TYPES)
def test_pkcs12_bundle_opens_in_openssl_and_cryptography(
    tmp_path: Path, hierarchy: Hierarchy, key_type: KeyType
) -> None:
    key = cached_key(key_type)
    issued = hierarchy.issue("device", key=key)
    data = pkcs12_bundle("device IMEI:1", key, issued.certificate, issued.chain, PASSWORD.encode())
    p12 = tmp_path / "device.p12"
    p12.write_bytes(data)

    shown = openssl("pkcs12", "-info", "-nokeys", "-in", p12, "-passin", f"pass:{PASSWORD}")
    loaded = pkcs12.load_pkcs12(data, PASSWORD.encode())

    assert shown.returncode == 0, shown.stderr
    assert "friendlyName: device IMEI:1" in shown.stdout
    listed = x509.load_pem_x509_certificates(shown.stdout.encode())
    assert sorted(c.serial_number for c in listed) == sorted(
        [issued.certificate.serial_number, hierarchy.issuing.serial_number]
    )
    assert "PBES2" in shown.stderr and "AES-256-CBC" in shown.stderr  # no legacy algorithms
    assert loaded.key is not None and loaded.key.public_key() == key.public_key()
    assert loaded.cert is not None and loaded.cert.certificate == issued.certificate
    assert loaded.cert.friendly_name == b"device IMEI:1"
    assert [c.certificate for c in loaded.additional_certs] == [hierarchy.issuing]


def test_pkcs12_wrong_password_is_refused(tmp_path: Path, hierarchy: Hierarchy) -> None:
    key = cached_key(KeyType.P256)
    issued = hierarchy.issue("device", key=key)
    p12 = tmp_path / "device.p12"
    p12.write_bytes(pkcs12_bundle("device", key, issued.certificate, issued.chain, PASSWORD.encode()))

    shown = openssl("pkcs12", "-info", "-nokeys", "-in", p12, "-passin", "pass:wrong")

    assert shown.returncode != 0
    assert "mac verify error" in shown.stderr.lower()


def test_pkcs12_needs_a_password(hierarchy: Hierarchy) -> None:
    key = cached_key(KeyType.P256)
    issued = hierarchy.issue("device", key=key)

    with pytest.raises(ValueError, match="a PKCS#12 bundle needs a password"):
        pkcs12_bundle("device", key, issued.certificate, issued.chain, b"")


def test_load_certificates_reads_a_pem_bundle_and_der(hierarchy: Hierarchy) -> None:
    certificates = _chain(hierarchy)
    bundle = certificates_to_pem(certificates).encode()

    assert load_certificates(bundle) == certificates
    assert load_certificates(b"# leading text\n" + bundle) == certificates
    assert load_certificates(hierarchy.root.public_bytes(Encoding.DER)) == [hierarchy.root]


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"\x30\x03\x02\x01\x01", id="garbage-der"),
        pytest.param(b"-----BEGIN CERTIFICATE-----\nZ2FyYmFnZQ==\n-----END CERTIFICATE-----\n", id="pem-garbage"),
        pytest.param(b"-----BEGIN PRIVATE KEY-----\nZ2FyYmFnZQ==\n-----END PRIVATE KEY-----\n", id="pem-no-cert"),
    ],
)
def test_load_certificates_garbage_is_an_encoding_error(data: bytes) -> None:
    with pytest.raises(EncodingError, match="not a certificate"):
        load_certificates(data)


@pytest.mark.parametrize("key_type", KEY_TYPES)
def test_private_key_pem_round_trip(key_type: KeyType) -> None:
    key = cached_key(key_type)

    plain = private_key_pem(key)
    encrypted = private_key_pem(key, b"passphrase")

    assert plain.startswith(b"-----BEGIN PRIVATE KEY-----")
    assert encrypted.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    assert load_pem_private_key(plain, None).public_key() == key.public_key()
    assert load_pem_private_key(encrypted, b"passphrase").public_key() == key.public_key()
