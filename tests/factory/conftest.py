"""Fixtures for the factory tests: a runtime with enrollment profiles, station tokens, output checks."""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterable
from pathlib import Path

import pytest
from asn1crypto import keys as asn1_keys
from asn1crypto import pem as asn1_pem
from cryptography import x509
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, load_der_private_key
from sqlalchemy import func
from sqlmodel import col, select

from bootstrap.runtime import Runtime
from bootstrap.services.config import ProfileSpec
from bootstrap.store.models import CertificateRow
from pki.keys import PrivateKey

DEVICE_FILES = ("cert.pem", "chain.pem", "key.pem", "bootstrap.json")


def add_profiles(runtime: Runtime) -> None:
    """A DM server and the profiles the tests use: ``line`` (tokens, group keys) and ``other``."""
    runtime.config.add_server("dm1", "DM One", "https://dm.example.net/dm", actor="test")
    runtime.config.add_profile(ProfileSpec(name="line", dm_servers=("dm1",), attestation=("token", "group-key"),
                                           dmacc={"Name": "Line DM"}), actor="test")
    runtime.config.add_profile(ProfileSpec(name="other", dm_servers=("dm1",)), actor="test")


@pytest.fixture
def line(runtime: Runtime) -> Runtime:
    """An initialized runtime (SQLite and PostgreSQL) with the ``line`` and ``other`` profiles."""
    add_profiles(runtime)
    return runtime


def certificates_per_device(runtime: Runtime, dev_ids: Iterable[str] | None = None) -> dict[str, int]:
    """Live (valid) certificate rows per DevID."""
    query = (select(CertificateRow.device_id, func.count())
             .where(CertificateRow.status == "valid", col(CertificateRow.device_id).is_not(None))
             .group_by(CertificateRow.device_id))
    if dev_ids is not None:
        query = query.where(col(CertificateRow.device_id).in_(list(dev_ids)))
    with runtime.database.session() as session:
        return {str(d): int(n) for d, n in session.exec(query)}


def certificate_count(runtime: Runtime) -> int:
    with runtime.database.session() as session:
        return int(session.exec(select(func.count()).select_from(CertificateRow)).one())


@functools.lru_cache(maxsize=16)
def _kek(password: bytes, salt: bytes, iterations: int) -> bytes:
    return hashlib.pbkdf2_hmac("sha256", password, salt, iterations, 32)


def decrypt_pkcs8(pem: bytes, password: bytes) -> PrivateKey:
    """Decrypt our PBES2 PKCS#8 with one PBKDF2 per salt (a batch shares its salt; cryptography derives per key)."""
    _, _, der = asn1_pem.unarmor(pem)
    info = asn1_keys.EncryptedPrivateKeyInfo.load(der)
    params = info["encryption_algorithm"]["parameters"]
    kdf = params["key_derivation_func"]["parameters"]
    assert params["encryption_scheme"]["algorithm"].native == "aes256_cbc"
    assert kdf["prf"]["algorithm"].native == "sha256"
    key = _kek(password, kdf["salt"].native, kdf["iteration_count"].native)
    decryptor = Cipher(algorithms.AES(key), modes.CBC(params["encryption_scheme"]["parameters"].native)).decryptor()
    padded = decryptor.update(info["encrypted_data"].native) + decryptor.finalize()
    unpadder = padding.PKCS7(128).unpadder()
    return load_der_private_key(unpadder.update(padded) + unpadder.finalize(), None)  # type: ignore[return-value]


def same_key(key: PrivateKey, cert: x509.Certificate) -> bool:
    spki = PublicFormat.SubjectPublicKeyInfo
    return key.public_key().public_bytes(Encoding.DER, spki) == cert.public_key().public_bytes(Encoding.DER, spki)


def assert_outputs_complete(out: Path, dev_ids: Iterable[str], password: bytes) -> dict[str, str]:
    """Every device directory has every file, every certificate parses and matches its key; serial by DevID."""
    from bootstrap.cli.factory_output import safe_name

    serials: dict[str, str] = {}
    for dev_id in dev_ids:
        folder = out / safe_name(dev_id)
        missing = [f for f in DEVICE_FILES if not (folder / f).is_file()]
        assert not missing, f"{dev_id}: missing {missing}"
        cert = x509.load_pem_x509_certificate((folder / "cert.pem").read_bytes())
        assert cert.subject.rfc4514_string() == f"CN={dev_id}"
        chain = x509.load_pem_x509_certificates((folder / "chain.pem").read_bytes())
        assert chain[0] == cert and len(chain) == 2
        cert.verify_directly_issued_by(chain[1])
        assert same_key(decrypt_pkcs8((folder / "key.pem").read_bytes(), password), cert), dev_id
        serials[dev_id] = format(cert.serial_number, "x")
    return serials
