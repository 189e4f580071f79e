"""Deployment settings against a real OpenBao: TLS with ca_bundle, namespaces, concurrent logins."""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from bootstrap.errors import SecretStoreUnavailable
from bootstrap.secrets.vault.store import Secret, VaultConfig, policy_hcl
from pki.keys import KeyType
from tests.secrets.conftest import MakeAppRole, MakeStore
from tests.support.openbao import BaoDevServer


@pytest.fixture
def tls_bao(bao_binary: Path, tmp_path: Path) -> Iterator[BaoDevServer]:
    workdir = tmp_path / "bao-tls"
    workdir.mkdir()
    with BaoDevServer(bao_binary, workdir, tls=True) as server:
        yield server


def test_tls_with_the_ca_bundle(tls_bao: BaoDevServer, make_store: MakeStore) -> None:
    store = make_store(addr=tls_bao.addr, token=Secret(tls_bao.root_token), ca_bundle=tls_bao.ca_file)
    store.put("over-tls", {"v": "1"})
    assert store.signer(store.create_key("ca", KeyType.P256)).sign(b"tbs")


def test_tls_without_the_ca_bundle_fails_clearly(tls_bao: BaoDevServer, make_store: MakeStore) -> None:
    store = make_store(addr=tls_bao.addr, token=Secret(tls_bao.root_token))  # system CAs only
    with pytest.raises(SecretStoreUnavailable, match="ca_bundle"):
        store.get("anything")


def test_namespace_keeps_everything_inside_it(bao: BaoDevServer, prefix: str, make_store: MakeStore) -> None:
    namespace = f"ns{secrets.token_hex(3)}"
    bao.write(f"sys/namespaces/{namespace}", {})
    root = bao.root_client()
    mounts = {"secret": {"type": "kv", "options": {"version": "2"}}, "transit": {"type": "transit"}}
    for mount, body in mounts.items():
        root.adapter.request("POST", f"/v1/sys/mounts/{mount}", json=body,
                             headers={"X-Vault-Namespace": namespace})
    store = make_store(namespace=namespace)
    store.put("inside", {"v": "1"})
    store.create_key("ca", KeyType.P256)
    assert all(r.ok for r in store.check())
    nested = root.adapter.request("GET", f"/v1/{namespace}/secret/data/{prefix}/secrets/inside")
    assert nested["data"]["data"] == {"v": "1"}
    assert make_store().put("inside", {"v": "root namespace"}).version == 1  # not the same secret


def test_concurrent_first_calls_log_in_once(
    bao: BaoDevServer, prefix: str, make_approle: MakeAppRole, make_store: MakeStore,
    caplog: pytest.LogCaptureFixture,
) -> None:
    policy = policy_hcl(VaultConfig(addr=bao.addr, token=Secret("unused"), key_prefix=prefix))
    store = make_store(make_approle(policy))
    make_store().put("shared", {"v": "1"})
    results: list[dict[str, str]] = []
    errors: list[BaseException] = []

    def read() -> None:
        try:
            results.append(store.get("shared")[0])
        except BaseException as exc:  # collected and re-checked below
            errors.append(exc)

    threads = [threading.Thread(target=read) for _ in range(12)]
    with caplog.at_level(logging.INFO, logger="bootstrap.secrets.vault.client"):
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert not errors
    assert results == [{"v": "1"}] * 12
    assert caplog.text.count("logged in to Vault with AppRole") == 1
