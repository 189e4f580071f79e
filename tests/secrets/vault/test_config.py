"""VaultConfig validation, secrets kept out of reprs and logs, and the generated policy."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from bootstrap.errors import ConfigurationError
from bootstrap.secrets.vault.store import Secret, VaultConfig, VaultSecretStore, config_from_settings, policy_hcl
from bootstrap.settings import VaultSettings
from pki.keys import KeyType
from tests.secrets.conftest import MakeAppRole, MakeStore
from tests.support.openbao import BaoDevServer

ADDR = "https://vault.test:8200"


def test_repr_hides_the_token() -> None:
    config = VaultConfig(addr=ADDR, token=Secret("hvs.very-secret"))
    assert "very-secret" not in repr(config)
    assert "very-secret" not in repr(VaultSecretStore(config))


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        pytest.param({"addr": "vault:8200"}, "addr", id="addr"),
        pytest.param({"auth": "ldap"}, "auth", id="auth"),
        pytest.param({"token": None}, "token", id="no-token"),
        pytest.param({"token": "bare-string"}, "Secret", id="unwrapped-token"),
        pytest.param({"auth": "approle", "role_id": "r"}, "secret_id_file", id="no-secret-id"),
        pytest.param({"ca_key_mode": "hsm"}, "ca_key_mode", id="mode"),
        pytest.param({"kv_mount": "/secret/"}, "kv_mount", id="kv-mount"),
        pytest.param({"transit_mount": ""}, "transit_mount", id="transit-mount"),
        pytest.param({"key_prefix": "a/b"}, "key_prefix", id="prefix"),
        pytest.param({"timeout": 0}, "timeout", id="timeout"),
    ],
)
def test_bad_settings_name_the_field(overrides: dict[str, Any], field: str) -> None:
    values: dict[str, Any] = {"addr": ADDR, "token": Secret("t"), **overrides}
    with pytest.raises((ValueError, TypeError), match=field):
        VaultConfig(**values)


def test_config_from_settings() -> None:
    settings = VaultSettings(addr=ADDR, auth="approle", role_id="role", secret_id_file=Path("/run/sid"),
                             namespace="team", key_prefix="dm", ca_key_mode="kv", timeout=3.0)
    config = config_from_settings(settings)
    assert (config.auth, config.role_id, config.namespace) == ("approle", "role", "team")
    assert config.ca_key_mode == "kv"
    assert config.verify is True


def test_config_from_bad_settings_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match=r"\[vault\] token"):
        config_from_settings(VaultSettings(addr=ADDR))


def test_ca_bundle_is_used_for_tls_verification(tmp_path: Path) -> None:
    bundle = tmp_path / "ca.pem"
    assert VaultConfig(addr=ADDR, token=Secret("t"), ca_bundle=bundle).verify == str(bundle)


def test_policy_is_least_privilege() -> None:
    hcl = policy_hcl(VaultConfig(addr=ADDR, token=Secret("t"), key_prefix="dm", kv_mount="kv",
                                 transit_mount="ca"))
    assert 'path "kv/data/dm/*" {\n  capabilities = ["create", "read", "update"]\n}' in hcl
    assert 'path "ca/keys/dm-*" {\n  capabilities = ["create", "read", "update"]' in hcl
    assert '    "exportable" = []' in hcl
    assert 'path "ca/sign/dm-*" {\n  capabilities = ["update"]\n}' in hcl
    assert 'path "auth/token/renew-self"' in hcl and 'path "auth/token/lookup-self"' in hcl
    for broad in ('"delete"', '"list"', '"sudo"', "/export/", "metadata", 'path "sys/mounts'):
        assert broad not in hcl


def test_kv_mode_policy_has_no_transit() -> None:
    hcl = policy_hcl(VaultConfig(addr=ADDR, token=Secret("t"), ca_key_mode="kv"))
    assert "transit" not in hcl
    assert 'path "secret/data/dmboot/*"' in hcl


def test_logs_hold_no_token_secret_id_or_secret(
    bao: BaoDevServer, prefix: str, make_approle: MakeAppRole, make_store: MakeStore,
    caplog: pytest.LogCaptureFixture,
) -> None:
    policy = policy_hcl(VaultConfig(addr=bao.addr, token=Secret("unused"), key_prefix=prefix))
    config = make_approle(policy)
    assert config.secret_id_file is not None
    secret_id = config.secret_id_file.read_text().strip()
    with caplog.at_level(logging.DEBUG):
        store = make_store(config)
        store.put("s", {"password": "hunter2-value"})
        store.get("s")
        store.signer(store.create_key("ca", KeyType.P256)).sign(b"x")
        token = store.client.lookup_self()["data"]["id"]
    assert "logged in to Vault" in caplog.text
    for secret in (secret_id, token, "hunter2-value"):
        assert secret not in caplog.text
