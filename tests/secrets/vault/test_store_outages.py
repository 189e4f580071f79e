"""A real OpenBao sealed, stopped and restarted under a live store: unavailable, then working again."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bootstrap.errors import SecretStoreUnavailable
from bootstrap.secrets.vault.store import Secret, VaultConfig, VaultSecretStore
from pki.errors import SignerUnavailable
from pki.keys import KeyType
from tests.support.openbao import BaoDevServer


@pytest.fixture
def live_store(own_bao: BaoDevServer) -> Iterator[VaultSecretStore]:
    """A store on a server of its own, with the root token (which survives a dev restart)."""
    store = VaultSecretStore(VaultConfig(addr=own_bao.addr, token=Secret(own_bao.root_token), timeout=5))
    try:
        yield store
    finally:
        store.close()


def test_sealed_vault_is_unavailable_until_unsealed(
    own_bao: BaoDevServer, live_store: VaultSecretStore
) -> None:
    signer = live_store.signer(live_store.create_key("ca", KeyType.P256))
    live_store.put("kept", {"v": "1"})
    own_bao.seal()
    with pytest.raises(SecretStoreUnavailable, match="sealed") as sealed:
        live_store.get("kept")
    assert sealed.value.retry_after > 0
    with pytest.raises(SignerUnavailable) as signing:
        signer.sign(b"tbs")
    assert signing.value.retry_after > 0
    results = {r.name: r for r in live_store.check()}
    assert results["reachable"].ok and not results["unsealed"].ok and results["unsealed"].hint
    own_bao.unseal()
    assert live_store.get("kept")[0] == {"v": "1"}
    assert signer.sign(b"tbs")


def test_stopped_vault_is_unavailable(own_bao: BaoDevServer, live_store: VaultSecretStore) -> None:
    live_store.put("kept", {"v": "1"})
    signer = live_store.signer(live_store.create_key("ca", KeyType.ED25519))
    own_bao.stop()
    with pytest.raises(SecretStoreUnavailable, match="unreachable") as stopped:
        live_store.get("kept")
    assert stopped.value.retry_after > 0
    with pytest.raises(SignerUnavailable):
        signer.sign(b"tbs")
    [reachable] = live_store.check()
    assert (reachable.name, reachable.ok) == ("reachable", False)
    assert "start Vault" in reachable.hint


def test_restarted_vault_works_again_with_the_same_store(
    own_bao: BaoDevServer, live_store: VaultSecretStore
) -> None:
    live_store.put("before", {"v": "1"})
    own_bao.stop()
    with pytest.raises(SecretStoreUnavailable):
        live_store.get("before")
    own_bao.start()  # a dev server starts empty: write again, then read back
    live_store.put("after", {"v": "2"})
    assert live_store.get("after")[0] == {"v": "2"}
    ref = live_store.create_key("ca", KeyType.P256)
    assert live_store.signer(ref).sign(b"tbs")
    assert all(r.ok for r in live_store.check())


def test_restart_without_an_outage_in_between(own_bao: BaoDevServer, live_store: VaultSecretStore) -> None:
    # Pooled keep-alive connections to the old process must not break the first call.
    live_store.put("one", {"v": "1"})
    own_bao.restart()
    live_store.put("two", {"v": "2"})
    assert live_store.get("two")[0] == {"v": "2"}
