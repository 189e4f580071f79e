"""AppRole and token auth on a real OpenBao: the generated policy, a narrow one, renewal, re-login."""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from pathlib import Path

import pytest

from bootstrap.errors import SecretAccessDenied
from bootstrap.secrets.vault.store import Secret, VaultConfig, policy_hcl
from pki.errors import SignerError
from pki.keys import KeyType
from tests.secrets.conftest import MakeAppRole, MakeStore
from tests.support.openbao import BaoDevServer

NARROW_POLICY = """
path "secret/data/{prefix}/*" {{ capabilities = ["read"] }}
path "transit/sign/{prefix}-*" {{ capabilities = ["update"] }}
path "sys/capabilities-self" {{ capabilities = ["update"] }}
"""


def service_policy(bao: BaoDevServer, prefix: str, mode: str = "transit") -> str:
    return policy_hcl(VaultConfig(addr=bao.addr, token=Secret("unused"), key_prefix=prefix,
                                  ca_key_mode=mode))  # type: ignore[arg-type]


def test_policy_allows_everything_the_service_does(
    bao: BaoDevServer, prefix: str, make_approle: MakeAppRole, make_store: MakeStore
) -> None:
    store = make_store(make_approle(service_policy(bao, prefix)))
    ref = store.rotate_key(store.create_key("ca", KeyType.P256).name)
    assert ref.version == 2
    assert store.signer(ref).sign(b"tbs")
    store.put("devices/d1", {"token_hash": "x"}, cas=0)
    store.put("devices/d1", {"token_hash": "y"}, cas=1)
    assert store.get("devices/d1")[0] == {"token_hash": "y"}
    assert all(result.ok for result in store.check()), store.check()


def test_kv_mode_policy_allows_kv_keys(
    bao: BaoDevServer, prefix: str, make_approle: MakeAppRole, make_store: MakeStore
) -> None:
    config = replace(make_approle(service_policy(bao, prefix, "kv")), ca_key_mode="kv")
    store = make_store(config)
    ref = store.rotate_key(store.create_key("ca", KeyType.ED25519).name)
    assert store.signer(ref).sign(b"tbs")
    assert all(result.ok for result in store.check()), store.check()


def test_policy_keeps_transit_keys_unexportable(
    bao: BaoDevServer, prefix: str, make_approle: MakeAppRole, make_store: MakeStore
) -> None:
    store = make_store(make_approle(service_policy(bao, prefix)))
    store.create_key("ca", KeyType.P256)
    with pytest.raises(SecretAccessDenied):
        store.client.write(f"transit/keys/{prefix}-ca/config", {"exportable": True})
    with pytest.raises(SecretAccessDenied):
        store.client.write(f"transit/keys/{prefix}-other", {"type": "ecdsa-p256", "exportable": True})
    with pytest.raises(SecretAccessDenied):
        store.client.read("transit/keys/someone-elses-key")


def test_narrow_policy_is_denied_with_a_clear_message(
    store_admin: MakeStore, prefix: str, make_approle: MakeAppRole, make_store: MakeStore
) -> None:
    admin = store_admin()
    ca = admin.create_key("ca", KeyType.P256)
    admin.put("readable", {"v": "1"})
    narrow = make_store(make_approle(NARROW_POLICY.format(prefix=prefix)))
    assert narrow.get("readable")[0] == {"v": "1"}
    with pytest.raises(SecretAccessDenied) as denied:
        narrow.put("readable", {"v": "2"}, cas=1)
    message = str(denied.value)
    assert f"secret/data/{prefix}/secrets/readable" in message
    assert "create/update" in message
    assert "dmboot secrets policy" in message
    with pytest.raises(SecretAccessDenied, match=f"'read' on transit/keys/{prefix}-new"):
        narrow.create_key("new", KeyType.P256)
    with pytest.raises(SecretAccessDenied, match="'read' on transit/keys"):
        narrow.signer(ca)


def test_check_reports_each_missing_capability(
    prefix: str, make_approle: MakeAppRole, make_store: MakeStore
) -> None:
    results = {r.name: r for r in make_store(make_approle(NARROW_POLICY.format(prefix=prefix))).check()}
    assert results["reachable"].ok and results["unsealed"].ok
    assert not results["authenticated"].ok  # no lookup-self without the default policy
    kv_rule = results[f"policy secret/data/{prefix}/*"]
    assert not kv_rule.ok and "create" in kv_rule.detail and "update" in kv_rule.detail
    assert results[f"policy transit/sign/{prefix}-*"].ok
    failing = [r for r in results.values() if not r.ok]
    assert failing and all(r.hint for r in failing)


def test_check_without_capabilities_self_says_so(
    prefix: str, make_approle: MakeAppRole, make_store: MakeStore
) -> None:
    results = make_store(make_approle(f'path "secret/data/{prefix}/*" {{ capabilities = ["read"] }}')).check()
    capabilities = next(r for r in results if r.name == "capabilities")
    assert not capabilities.ok and "sys/capabilities-self" in capabilities.detail
    assert "dmboot secrets policy" in capabilities.hint


def test_check_on_a_good_root_store(make_store: MakeStore) -> None:
    results = make_store().check()
    names = [r.name for r in results]
    assert names[:3] == ["reachable", "unsealed", "authenticated"]
    assert "kv mount secret/" in names and "transit mount transit/" in names
    assert all(r.ok for r in results), results


def test_check_finds_a_missing_transit_mount(make_store: MakeStore) -> None:
    results = {r.name: r for r in make_store(transit_mount="no-such-transit").check()}
    assert not results["transit mount no-such-transit/"].ok
    assert "bao secrets enable" in results["transit mount no-such-transit/"].hint


def test_wrong_secret_id_is_denied(make_approle: MakeAppRole, make_store: MakeStore, tmp_path: Path) -> None:
    config = make_approle('path "x" { capabilities = ["read"] }')
    assert config.secret_id_file is not None
    config.secret_id_file.write_text("not-the-secret-id")
    with pytest.raises(SecretAccessDenied, match="auth/approle/login"):
        make_store(config).get("anything")


def test_missing_secret_id_file_is_denied(
    make_approle: MakeAppRole, make_store: MakeStore, tmp_path: Path
) -> None:
    config = replace(make_approle('path "x" { capabilities = ["read"] }'), secret_id_file=tmp_path / "nope")
    with pytest.raises(SecretAccessDenied, match="secret_id_file"):
        make_store(config).get("anything")


def test_revoked_approle_token_is_replaced_by_a_new_login(
    bao: BaoDevServer, prefix: str, make_approle: MakeAppRole, make_store: MakeStore,
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = make_store(make_approle(service_policy(bao, prefix)))
    store.put("before", {"v": "1"})
    accessor = store.client.lookup_self()["data"]["accessor"]
    bao.write("auth/token/revoke-accessor", {"accessor": accessor})
    with caplog.at_level(logging.INFO, logger="bootstrap.secrets.vault.client"):
        assert store.get("before")[0] == {"v": "1"}
    assert "logged in to Vault with AppRole" in caplog.text


def test_short_lived_token_is_renewed(
    bao: BaoDevServer, prefix: str, make_store: MakeStore, caplog: pytest.LogCaptureFixture
) -> None:
    bao.write(f"sys/policies/acl/{prefix}", {"policy": service_policy(bao, prefix)}, method="PUT")
    created = bao.write("auth/token/create", {"ttl": "4s", "explicit_max_ttl": "1h", "policies": [prefix],
                                              "no_default_policy": True})
    token = created["auth"]["client_token"]
    store = make_store(token=Secret(token))
    store.put("renewed", {"v": "1"})
    with caplog.at_level(logging.INFO, logger="bootstrap.secrets.vault.client"):
        for _ in range(2):  # 6 s in all, past the 4 s the token was created with
            time.sleep(3)
            assert store.get("renewed")[0] == {"v": "1"}
    assert caplog.text.count("renewed the Vault token") == 2
    assert token not in caplog.text
    looked_up = bao.write("auth/token/lookup-accessor", {"accessor": created["auth"]["accessor"]})
    assert looked_up["data"]["last_renewal_time"]


def test_approle_logs_in_again_near_the_max_ttl(
    bao: BaoDevServer, prefix: str, make_approle: MakeAppRole, make_store: MakeStore,
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = make_approle(service_policy(bao, prefix), token_ttl="6s", token_max_ttl="8s")
    store = make_store(config)
    with caplog.at_level(logging.INFO, logger="bootstrap.secrets.vault.client"):
        store.put("long-lived", {"v": "1"})  # login: 6 s
        time.sleep(4.2)
        store.get("long-lived")  # renewal, capped by the 8 s max TTL
        time.sleep(2.7)
        store.get("long-lived")  # the capped token is due: a fresh login
        time.sleep(1.5)  # the first token is dead by now
        assert store.get("long-lived")[0] == {"v": "1"}
    assert caplog.text.count("logged in to Vault with AppRole") == 2
    assert caplog.text.count("renewed the Vault token") == 1


def test_signer_maps_denial_to_signer_error(
    store_admin: MakeStore, bao: BaoDevServer, prefix: str
) -> None:
    admin = store_admin()
    signer = admin.signer(admin.create_key("ca", KeyType.P256))
    bao.write(f"sys/policies/acl/{prefix}-readonly",
              {"policy": f'path "transit/keys/{prefix}-*" {{ capabilities = ["read"] }}'}, method="PUT")
    token = bao.write("auth/token/create", {"policies": [f"{prefix}-readonly"]})["auth"]["client_token"]
    reader = store_admin(token=Secret(token))
    with pytest.raises(SignerError, match="refused to sign") as refused:
        reader.signer(admin.create_key("other", KeyType.P256)).sign(b"x")
    assert "dmboot secrets policy" in str(refused.value)
    assert signer.sign(b"x")


@pytest.fixture
def store_admin(make_store: MakeStore) -> MakeStore:
    """Root-token stores, to set the stage for a less privileged one."""
    return make_store
