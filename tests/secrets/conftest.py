"""Fixtures for the Vault backend: stores and AppRoles on the session's OpenBao dev server
(``bao`` and ``bao_binary`` live in tests/support/backends.py, shared with the service tests)."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bootstrap.secrets.vault.store import Secret, VaultConfig, VaultSecretStore
from tests.support.openbao import BaoDevServer

MakeStore = Callable[..., VaultSecretStore]
MakeAppRole = Callable[..., VaultConfig]


@pytest.fixture
def own_bao(bao_binary: Path, tmp_path: Path) -> Iterator[BaoDevServer]:
    """A dev server of the test's own, to stop, seal and restart."""
    workdir = tmp_path / "bao"
    workdir.mkdir()
    with BaoDevServer(bao_binary, workdir) as server:
        yield server


@pytest.fixture
def prefix() -> str:
    """A key prefix of the test's own, so tests sharing :func:`bao` never meet."""
    return f"t{secrets.token_hex(5)}"


@pytest.fixture
def make_store(bao: BaoDevServer, prefix: str) -> Iterator[MakeStore]:
    """Build stores (root token on the shared server unless ``config`` is given); closed after."""
    stores: list[VaultSecretStore] = []

    def make(config: VaultConfig | None = None, **overrides: Any) -> VaultSecretStore:
        if config is None:
            overrides.setdefault("token", Secret(bao.root_token))
            overrides.setdefault("addr", bao.addr)
            config = VaultConfig(key_prefix=prefix, **overrides)
        store = VaultSecretStore(config)
        stores.append(store)
        return store

    yield make
    for store in stores:
        store.close()


@pytest.fixture
def store(make_store: MakeStore) -> VaultSecretStore:
    """A transit-mode store with the root token on the shared server."""
    return make_store()


@pytest.fixture
def make_approle(bao: BaoDevServer, prefix: str, tmp_path: Path) -> MakeAppRole:
    """Make an AppRole whose tokens carry only ``policy``; return a VaultConfig that logs in with it."""

    def make(policy: str, **role: Any) -> VaultConfig:
        name = f"{prefix}-{secrets.token_hex(3)}"
        role_id, secret_id = bao.make_approle(name, policy, **role)
        secret_file = tmp_path / f"{name}.secret-id"
        secret_file.write_text(secret_id + "\n")
        return VaultConfig(addr=bao.addr, auth="approle", role_id=role_id, secret_id_file=secret_file,
                           key_prefix=prefix)

    return make
