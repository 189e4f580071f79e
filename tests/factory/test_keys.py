"""Server-generated keys leave encrypted: the formats read back with cryptography and with openssl."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import load_pem_private_key, pkcs12

from bootstrap.errors import InvalidRequest
from bootstrap.factory.keys import KeyEncryptor, check_password, new_salt
from bootstrap.factory.types import BatchSpec
from pki.keys import KeyType, generate_private_key
from tests.factory.conftest import decrypt_pkcs8, same_key

PASSWORD = b"a-long-random-batch-password-0123"


def _self_signed(key_type: KeyType = KeyType.P256) -> tuple[object, x509.Certificate]:
    from datetime import UTC, datetime, timedelta

    from cryptography.hazmat.primitives import hashes

    key = generate_private_key(key_type)
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "IMEI:350000000000001")])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(7).not_valid_before(now).not_valid_after(now + timedelta(days=1))
            .sign(key, None if key_type is KeyType.ED25519 else hashes.SHA256()))
    return key, cert


@pytest.mark.parametrize("key_type", [KeyType.P256, KeyType.P384, KeyType.ED25519], ids=lambda k: k.value)
def test_pkcs8_opens_with_cryptography_openssl_and_one_derivation(tmp_path: Path, key_type: KeyType) -> None:
    key, cert = _self_signed(key_type)
    encryptor = KeyEncryptor(PASSWORD, new_salt(), 10_000)
    pem = encryptor.pkcs8_pem(key)  # type: ignore[arg-type]
    assert pem.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----\n")
    assert same_key(load_pem_private_key(pem, PASSWORD), cert)  # type: ignore[arg-type]
    assert same_key(decrypt_pkcs8(pem, PASSWORD), cert)
    with pytest.raises(ValueError):
        load_pem_private_key(pem, b"wrong password, wrong password")
    (tmp_path / "key.pem").write_bytes(pem)
    out = subprocess.run(["openssl", "pkey", "-in", str(tmp_path / "key.pem"), "-passin", f"pass:{PASSWORD.decode()}",
                          "-pubout"], capture_output=True, check=True, text=True).stdout
    assert out.startswith("-----BEGIN PUBLIC KEY-----")
    parsed = subprocess.run(["openssl", "asn1parse", "-in", str(tmp_path / "key.pem")], capture_output=True,
                            check=True, text=True).stdout
    assert "PBES2" in parsed and "PBKDF2" in parsed and "hmacWithSHA256" in parsed and "aes-256-cbc" in parsed


def test_every_key_of_a_batch_has_its_own_iv_under_one_salt() -> None:
    key, _ = _self_signed()
    encryptor = KeyEncryptor(PASSWORD, new_salt(), 10_000)
    assert encryptor.pkcs8_pem(key) != encryptor.pkcs8_pem(key)  # type: ignore[arg-type]


def test_pkcs12_opens_with_cryptography_and_openssl(tmp_path: Path) -> None:
    key, cert = _self_signed()
    encryptor = KeyEncryptor(PASSWORD, new_salt(), 10_000, "pkcs12")
    data = encryptor.encrypt(key, cert, [], "IMEI:350000000000001")  # type: ignore[arg-type]
    loaded_key, loaded_cert, _ = pkcs12.load_key_and_certificates(data, PASSWORD)
    assert loaded_cert == cert and loaded_key is not None and same_key(loaded_key, cert)  # type: ignore[arg-type]
    (tmp_path / "key.p12").write_bytes(data)
    out = subprocess.run(["openssl", "pkcs12", "-in", str(tmp_path / "key.p12"), "-passin",
                          f"pass:{PASSWORD.decode()}", "-nokeys"], capture_output=True, check=True, text=True).stdout
    assert "BEGIN CERTIFICATE" in out


@pytest.mark.parametrize("password", [None, "", "short"], ids=["none", "empty", "short"])
def test_a_weak_or_missing_batch_password_is_refused(password: str | None) -> None:
    with pytest.raises(InvalidRequest, match="batch password of at least 16 characters"):
        check_password(password)


@pytest.mark.parametrize(("doc", "field"), [
    ({"profile": "p", "key_format": "pem"}, "key_format"),
    ({"profile": "p", "kdf_iterations": 10}, "kdf_iterations"),
    ({"profile": "p", "extra": 1}, "extra"),
    ({}, "profile"),
], ids=["format", "iterations", "unknown-member", "no-profile"])
def test_a_bad_batch_header_names_its_field(doc: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        BatchSpec.from_json(doc, "key")
    assert info.value.field == field
