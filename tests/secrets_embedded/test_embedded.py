"""The embedded keystore: keys encrypted at rest, check-and-set, permissions."""

from __future__ import annotations

import stat
import warnings
from pathlib import Path

import pytest

from bootstrap.errors import ConfigurationError, SecretConflict, SecretNotFound
from bootstrap.secrets.base import KeyRef
from bootstrap.secrets.embedded import EmbeddedKeystore, EmbeddedKeystoreWarning, ensure_key_file
from pki.keys import KeyType
from pki.signers import Signer


@pytest.fixture
def store(tmp_path: Path) -> EmbeddedKeystore:
    return EmbeddedKeystore(tmp_path / "ks", passphrase="correct horse")


@pytest.mark.parametrize("key_type", [KeyType.P256, KeyType.ED25519], ids=lambda k: k.value)
def test_keys_are_encrypted_pkcs8_with_0600(store: EmbeddedKeystore, tmp_path: Path, key_type: KeyType) -> None:
    ref = store.create_key("ca/test", key_type)
    assert ref == KeyRef("embedded", "ca/test", 1, key_type)
    file = tmp_path / "ks" / "keys" / "ca" / "test" / "v1.pem"
    assert file.read_bytes().startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    assert stat.S_IMODE(file.stat().st_mode) == 0o600
    signer = store.signer(ref)
    assert isinstance(signer, Signer)
    assert signer.key_type is key_type


def test_create_twice_conflicts_and_rotation_adds_a_version(store: EmbeddedKeystore) -> None:
    first = store.create_key("ca/x", KeyType.P256)
    with pytest.raises(SecretConflict):
        store.create_key("ca/x", KeyType.P256)
    second = store.rotate_key("ca/x")
    assert second.version == 2
    assert store.signer(first).public_key != store.signer(second).public_key


def test_wrong_passphrase_is_a_clear_error(store: EmbeddedKeystore, tmp_path: Path) -> None:
    ref = store.create_key("ca/y", KeyType.P256)
    store.put("app/s", {"v": "1"})
    other = EmbeddedKeystore(tmp_path / "ks", passphrase="wrong")
    with pytest.raises(ConfigurationError, match="wrong keystore passphrase"):
        other.signer(ref)
    with pytest.raises(ConfigurationError, match="wrong passphrase"):
        other.get("app/s")


def test_kv_check_and_set(store: EmbeddedKeystore, tmp_path: Path) -> None:
    ref = store.put("groups/g1", {"key": "s3cr3t-value"}, cas=0)
    assert ref.version == 1
    with pytest.raises(SecretConflict, match="version 1, not 0"):
        store.put("groups/g1", {"key": "other"}, cas=0)
    store.put("groups/g1", {"key": "v2"}, cas=1)
    assert store.get("groups/g1")[0] == {"key": "v2"}
    assert store.get("groups/g1", version=1)[0] == {"key": "s3cr3t-value"}
    raw = (tmp_path / "ks" / "kv" / "groups" / "g1.json").read_bytes()
    assert b"s3cr3t-value" not in raw
    with pytest.raises(SecretNotFound):
        store.get("groups/none")


@pytest.mark.parametrize("name", ["../escape", "/abs", "a//b", ""], ids=["dotdot", "absolute", "empty-part", "empty"])
def test_path_traversal_is_refused(store: EmbeddedKeystore, name: str) -> None:
    with pytest.raises(ValueError, match="invalid key or secret name"):
        store.put(name, {"a": "b"})


def test_key_file_mode_warns_and_is_0600(tmp_path: Path) -> None:
    key_file = tmp_path / "keystore.key"
    assert ensure_key_file(key_file) is True
    assert ensure_key_file(key_file) is False
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        EmbeddedKeystore(tmp_path / "ks", key_file=key_file)
    assert any(issubclass(w.category, EmbeddedKeystoreWarning) for w in seen)


def test_missing_key_file_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="dmboot init"):
        EmbeddedKeystore(tmp_path / "ks", key_file=tmp_path / "absent.key")
