"""CA keys in Transit (and in KV) on a real OpenBao: create, rotate, sign, verify, openssl."""

from __future__ import annotations

import datetime as dt
import secrets
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.x509.oid import NameOID

from bootstrap.errors import SecretConflict, SecretNotFound, SecretStoreError
from bootstrap.secrets.base import KeyRef
from bootstrap.secrets.vault.store import VaultSecretStore, VaultTransitSigner
from pki.keys import KeyType, PublicKey, signature_hash
from pki.signers import LocalSigner, Signer
from pki.tbs import sign_certificate
from tests.secrets.conftest import MakeStore
from tests.support.openbao import BaoDevServer

ALL_TYPES = [pytest.param(t, id=t.value) for t in KeyType]


def assert_signature_verifies(
    public_key: PublicKey, signature: bytes, data: bytes, key_type: KeyType
) -> None:
    """Verify with cryptography, as a relying party would; raises InvalidSignature if not."""
    digest = signature_hash(key_type)
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        public_key.verify(signature, data)
    elif isinstance(public_key, ec.EllipticCurvePublicKey):
        assert digest is not None
        public_key.verify(signature, data, ec.ECDSA(digest))
    elif isinstance(public_key, rsa.RSAPublicKey):
        assert digest is not None
        public_key.verify(signature, data, padding.PKCS1v15(), digest)
    else:  # pragma: no cover
        raise AssertionError(f"unexpected key {public_key!r}")


def self_signed_ca(signer: Signer) -> x509.Certificate:
    """A self-signed CA certificate whose signature comes from ``signer`` (via pki.tbs)."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"Vault test CA {signer.key_type.value}")])
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(signer.public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                          data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                          encipher_only=False, decipher_only=False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(signer.public_key), critical=False)
    )
    return sign_certificate(builder, signer)


def openssl_verify(certificate: x509.Certificate, tmp_path: Path) -> str:
    pem = tmp_path / "ca.pem"
    pem.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    result = subprocess.run(["openssl", "verify", "-CAfile", str(pem), str(pem)],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.mark.parametrize("key_type", ALL_TYPES)
def test_transit_key_signs_and_the_signature_verifies(store: VaultSecretStore, key_type: KeyType) -> None:
    ref = store.create_key("ca", key_type)
    assert ref == KeyRef("vault-transit", "ca", 1, key_type)
    signer = store.signer(ref)
    assert isinstance(signer, VaultTransitSigner)
    assert signer.key_type is key_type
    data = secrets.token_bytes(3000)
    assert_signature_verifies(signer.public_key, signer.sign(data), data, key_type)


@pytest.mark.parametrize("key_type", ALL_TYPES)
def test_certificate_signed_in_transit_passes_openssl_verify(
    store: VaultSecretStore, key_type: KeyType, tmp_path: Path
) -> None:
    signer = store.signer(store.create_key("root", key_type))
    certificate = self_signed_ca(signer)
    assert "OK" in openssl_verify(certificate, tmp_path)
    assert certificate.public_key() == signer.public_key


def test_transit_key_is_not_exportable(store: VaultSecretStore, bao: BaoDevServer, prefix: str) -> None:
    store.create_key("sealed-in", KeyType.P256)
    info = bao.read(f"transit/keys/{prefix}-sealed-in")["data"]
    assert info["exportable"] is False
    assert info["allow_plaintext_backup"] is False


def test_rotation_adds_a_version_and_pinned_signers_keep_theirs(store: VaultSecretStore) -> None:
    v1 = store.create_key("issuing", KeyType.P384)
    v2 = store.rotate_key("issuing")
    assert (v2.version, v2.key_type) == (2, KeyType.P384)
    old, new = store.signer(v1), store.signer(v2)
    assert old.public_key != new.public_key
    data = b"tbs bytes"
    assert_signature_verifies(old.public_key, old.sign(data), data, KeyType.P384)
    assert_signature_verifies(new.public_key, new.sign(data), data, KeyType.P384)


def test_signers_are_cached_per_reference(store: VaultSecretStore) -> None:
    ref = store.create_key("cached", KeyType.ED25519)
    assert store.signer(ref) is store.signer(ref)


def test_creating_an_existing_key_conflicts(store: VaultSecretStore) -> None:
    store.create_key("twice", KeyType.P256)
    with pytest.raises(SecretConflict, match="twice"):
        store.create_key("twice", KeyType.P256)


@pytest.mark.parametrize(
    "ref",
    [KeyRef("vault-transit", "never-made", 1, KeyType.P256),
     KeyRef("vault-transit", "made", 9, KeyType.P256)],
    ids=["no-key", "no-version"],
)
def test_signer_for_a_missing_key_or_version_is_not_found(store: VaultSecretStore, ref: KeyRef) -> None:
    store.create_key("made", KeyType.P256)
    with pytest.raises(SecretNotFound):
        store.signer(ref)


def test_rotating_a_missing_key_is_not_found(store: VaultSecretStore) -> None:
    with pytest.raises(SecretNotFound):
        store.rotate_key("never-made")


def test_reference_of_the_wrong_type_is_refused(store: VaultSecretStore) -> None:
    store.create_key("typed", KeyType.P256)
    with pytest.raises(SecretStoreError, match="p384"):
        store.signer(KeyRef("vault-transit", "typed", 1, KeyType.P384))


@pytest.mark.parametrize("name", ["", "a/b", "../x", "-lead", "sp ace"])
def test_bad_key_names_are_refused(store: VaultSecretStore, name: str) -> None:
    with pytest.raises(ValueError, match="key name"):
        store.create_key(name, KeyType.P256)


# -- ca_key_mode = "kv" ------------------------------------------------------------------


@pytest.mark.parametrize("key_type", [KeyType.P256, KeyType.ED25519, KeyType.RSA2048], ids=lambda t: t.value)
def test_kv_mode_keeps_the_key_in_kv_and_signs_locally(
    make_store: MakeStore, key_type: KeyType, tmp_path: Path
) -> None:
    store = make_store(ca_key_mode="kv")
    assert store.backend == "vault-kv"
    ref = store.create_key("ca", key_type)
    assert ref == KeyRef("vault-kv", "ca", 1, key_type)
    signer = store.signer(ref)
    assert isinstance(signer, LocalSigner)
    assert signer is store.signer(ref)
    assert "OK" in openssl_verify(self_signed_ca(signer), tmp_path)


def test_kv_mode_key_is_pkcs8_under_the_prefix(make_store: MakeStore, bao: BaoDevServer, prefix: str) -> None:
    make_store(ca_key_mode="kv").create_key("ca", KeyType.P256)
    record = bao.read(f"secret/data/{prefix}/keys/ca")["data"]["data"]
    assert record["key_type"] == "p256"
    assert record["private_key"].startswith("-----BEGIN PRIVATE KEY-----")


def test_kv_mode_rotation_and_conflict(make_store: MakeStore) -> None:
    store = make_store(ca_key_mode="kv")
    v1 = store.create_key("ca", KeyType.P256)
    with pytest.raises(SecretConflict):
        store.create_key("ca", KeyType.P256)
    v2 = store.rotate_key("ca")
    assert (v2.backend, v2.version) == ("vault-kv", 2)
    assert store.signer(v1).public_key != store.signer(v2).public_key


def test_a_kv_mode_store_still_signs_with_transit_references(make_store: MakeStore) -> None:
    ref = make_store().create_key("legacy", KeyType.P256)
    signer = make_store(ca_key_mode="kv").signer(ref)
    assert isinstance(signer, VaultTransitSigner)
    assert_signature_verifies(signer.public_key, signer.sign(b"x"), b"x", KeyType.P256)


def test_foreign_reference_is_refused(store: VaultSecretStore) -> None:
    with pytest.raises(ValueError, match="not a Vault key"):
        store.signer(KeyRef("embedded", "ca", 1, KeyType.P256))
