"""Fixtures that run service tests on every secret store: embedded, Vault Transit, Vault KV.

Imported into ``tests/conftest.py``. One OpenBao dev server (:func:`bao`) serves the
whole session; each test gets a key prefix of its own, so tests never meet in it.
"""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bootstrap.runtime import Runtime
from bootstrap.settings import Secret, Settings
from tests.support.openbao import BaoDevServer
from tests.support.peers import require_peer

__all__ = ["BACKENDS", "any_backend_runtime", "backend_settings", "bao", "bao_binary", "secret_backend",
           "vault_settings"]

#: Where CA keys live, as ``dmboot init --ca-keys`` names it.
BACKENDS = ("embedded", "vault-transit", "vault-kv")


@pytest.fixture(scope="session")
def bao_binary() -> Path:
    return require_peer("bao")


@pytest.fixture(scope="session")
def bao(bao_binary: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BaoDevServer]:
    """One OpenBao dev server for the session, with Transit and AppRole enabled.

    Tests must not stop, seal or restart it; they start a server of their own for that.
    """
    with BaoDevServer(bao_binary, tmp_path_factory.mktemp("bao")) as server:
        server.enable_approle()
        yield server


def vault_settings(settings: Settings, addr: str, token: str, ca_keys: str, **vault: Any) -> Settings:
    """``settings`` with CA keys in Vault at ``addr`` (``ca_keys``: vault-transit or vault-kv).

    A fresh key prefix keeps the test's keys and secrets apart from every other test's.
    """
    vault.setdefault("key_prefix", f"t{secrets.token_hex(5)}")
    vault.setdefault("timeout", 5.0)
    chosen = settings.with_ca_keys(ca_keys)
    return dataclasses.replace(chosen, vault=dataclasses.replace(chosen.vault, addr=addr, token=Secret(token),
                                                                 **vault))


@pytest.fixture(params=[pytest.param(b, id=b, marks=[pytest.mark.vault] if b != "embedded" else [])
                        for b in BACKENDS])
def secret_backend(request: pytest.FixtureRequest) -> str:
    """Each test using this runs once per backend."""
    return str(request.param)


@pytest.fixture
def backend_settings(request: pytest.FixtureRequest, settings: Settings, secret_backend: str) -> Settings:
    """The test's settings on ``secret_backend`` (Vault ones on the session's dev server, root token)."""
    if secret_backend == "embedded":
        return settings
    server: BaoDevServer = request.getfixturevalue("bao")
    return vault_settings(settings, server.addr, server.root_token, secret_backend)


@pytest.fixture
def any_backend_runtime(backend_settings: Settings) -> Iterator[Runtime]:
    """An initialized service (schema, CA hierarchy, TLS certificate) on each secret backend."""
    rt, _ = Runtime.initialize(backend_settings, actor="test")
    try:
        yield rt
    finally:
        rt.close()
