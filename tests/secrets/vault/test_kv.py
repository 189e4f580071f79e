"""KV v2 secrets on a real OpenBao: versions, check-and-set between replicas, missing paths."""

from __future__ import annotations

import pytest

from bootstrap.errors import SecretConflict, SecretNotFound
from bootstrap.secrets.base import SecretRef, SecretStore
from bootstrap.secrets.vault.store import VaultSecretStore
from tests.secrets.conftest import MakeStore
from tests.support.openbao import BaoDevServer


def test_store_implements_the_protocol(store: VaultSecretStore) -> None:
    assert isinstance(store, SecretStore)
    assert store.backend == "vault-transit"


def test_put_then_get_returns_data_and_version(store: VaultSecretStore) -> None:
    ref = store.put("devices/IMEI:3569/token", {"hash": "abc", "state": "new"})
    assert ref == SecretRef("vault-kv", "devices/IMEI:3569/token", 1)
    data, got = store.get("devices/IMEI:3569/token")
    assert data == {"hash": "abc", "state": "new"}
    assert got == ref


def test_secrets_live_under_the_prefix(store: VaultSecretStore, bao: BaoDevServer, prefix: str) -> None:
    store.put("a/b", {"k": "v"})
    raw = bao.read(f"secret/data/{prefix}/secrets/a/b")
    assert raw["data"]["data"] == {"k": "v"}


def test_get_an_older_version(store: VaultSecretStore) -> None:
    store.put("rotating", {"v": "one"})
    store.put("rotating", {"v": "two"}, cas=1)
    assert store.get("rotating") == ({"v": "two"}, SecretRef("vault-kv", "rotating", 2))
    assert store.get("rotating", 1) == ({"v": "one"}, SecretRef("vault-kv", "rotating", 1))


def test_check_and_set_lets_one_of_two_replicas_win(make_store: MakeStore) -> None:
    replica_a, replica_b = make_store(), make_store()
    replica_a.put("counter", {"n": "0"}, cas=0)
    _, seen_by_a = replica_a.get("counter")
    _, seen_by_b = replica_b.get("counter")
    replica_a.put("counter", {"n": "a"}, cas=seen_by_a.version)
    with pytest.raises(SecretConflict, match="check-and-set"):
        replica_b.put("counter", {"n": "b"}, cas=seen_by_b.version)
    assert replica_b.get("counter")[0] == {"n": "a"}


def test_cas_zero_refuses_to_overwrite(store: VaultSecretStore) -> None:
    store.put("once", {"v": "1"}, cas=0)
    with pytest.raises(SecretConflict):
        store.put("once", {"v": "2"}, cas=0)


def test_unconditional_put_overwrites(store: VaultSecretStore) -> None:
    store.put("free", {"v": "1"})
    assert store.put("free", {"v": "2"}).version == 2


@pytest.mark.parametrize(("path", "version"), [("missing", None), ("present", 7)], ids=["path", "version"])
def test_missing_secret_is_not_found(store: VaultSecretStore, path: str, version: int | None) -> None:
    store.put("present", {"v": "1"})
    with pytest.raises(SecretNotFound):
        store.get(path, version)


def test_deleted_version_is_not_found(store: VaultSecretStore, bao: BaoDevServer, prefix: str) -> None:
    store.put("gone", {"v": "1"})
    bao.write(f"secret/delete/{prefix}/secrets/gone", {"versions": [1]})
    with pytest.raises(SecretNotFound):
        store.get("gone")


@pytest.mark.parametrize("path", ["", "a//b", "../x", "a/./b", "/abs", "sp ace", "a/b/"])
def test_bad_paths_are_refused(store: VaultSecretStore, path: str) -> None:
    with pytest.raises(ValueError, match="path"):
        store.put(path, {"v": "1"})


def test_values_must_be_strings(store: VaultSecretStore) -> None:
    with pytest.raises(TypeError, match="data"):
        store.put("typed", {"n": 1})  # type: ignore[dict-item]
