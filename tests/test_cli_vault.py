"""`dmboot init --ca-keys`, `dmboot secrets check|policy` and `dmboot ca rotate`, on a real OpenBao.

Commands run in-process (CliRunner) against a real data directory; the outage
behaviour of a separate `dmboot` process is in tests/secrets/vault/test_outages.py.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from typer.testing import CliRunner, Result

from bootstrap.cli import app
from tests.factories import make_csr
from tests.support.openbao import BaoDevServer
from tests.support.openssl import openssl_verify

pytestmark = pytest.mark.vault


Env = dict[str, str | None]  # None unsets a variable the test runner may have


def dm(env: Env, *args: str, code: int = 0) -> Result:
    result = CliRunner().invoke(app, list(args), env=env)
    assert result.exit_code == code, f"dmboot {' '.join(args)}: {result.exit_code}\n{result.stdout}{result.stderr}"
    return result


def vault_env(bao: BaoDevServer, data_dir: Path, **extra: str) -> Env:
    return {"DMBOOT_DATA_DIR": str(data_dir), "DMBOOT_DATABASE_URL": None, "DMBOOT_CONFIG": None,
            "DMBOOT_VAULT_ADDR": bao.addr, "DMBOOT_VAULT_TOKEN": bao.root_token, "DMBOOT_KEYSTORE_PASSPHRASE": None,
            "DMBOOT_SECRETS_BACKEND": None, "DMBOOT_VAULT_CA_KEY_MODE": None, "DMBOOT_VAULT_KEY_PREFIX": None,
            **extra}


@pytest.fixture(scope="module")
def transit_dir(bao: BaoDevServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    """A data directory initialised with ``--ca-keys vault-transit``, and its key prefix."""
    data_dir = tmp_path_factory.mktemp("cli-vault") / "data"
    prefix = f"t{secrets.token_hex(5)}"
    dm(vault_env(bao, data_dir, DMBOOT_VAULT_KEY_PREFIX=prefix), "init", "--ca-keys", "vault-transit")
    yield data_dir, prefix


def _env(bao: BaoDevServer, data_dir: Path) -> Env:
    # Nothing about the backend or the prefix: the config file written by init remembers them.
    return vault_env(bao, data_dir)


def test_init_with_vault_transit_remembers_the_choice(
    bao: BaoDevServer, transit_dir: tuple[Path, str], tmp_path: Path
) -> None:
    data_dir, prefix = transit_dir
    config = (data_dir / "dmboot.toml").read_text()
    assert 'secrets_backend = "vault"' in config and 'ca_key_mode = "transit"' in config
    assert f'key_prefix = "{prefix}"' in config and bao.root_token not in config
    assert not (data_dir / "keystore").exists() and not (data_dir / "keystore.key").exists()

    env = _env(bao, data_dir)
    records = json.loads(dm(env, "ca", "show", "--json").stdout)
    assert {r["key"] for r in records} == {"vault-transit:ca-root", "vault-transit:ca-issuing-1"}
    for name in ("ca-root", "ca-issuing-1"):
        key = bao.read(f"transit/keys/{prefix}-{name}")["data"]
        assert (key["type"], key["exportable"], key["allow_plaintext_backup"]) == ("ecdsa-p256", False, False)

    csr = tmp_path / "req.pem"
    csr.write_bytes(make_csr("IMEI:490154203237518"))
    out = tmp_path / "chain.pem"
    dm(env, "cert", "issue", "--csr", str(csr), "--cert-profile", "device", "--out", str(out))
    leaf, issuing = x509.load_pem_x509_certificates(out.read_bytes())
    root = dm(env, "ca", "show", "--pem").stdout.encode()
    openssl_verify(tmp_path, leaf, trusted=root, untrusted=out.read_bytes())
    assert "nothing changed" in dm(env, "init", "--ca-keys", "vault-transit").stdout


def test_init_with_vault_kv(bao: BaoDevServer, tmp_path: Path) -> None:
    env = vault_env(bao, tmp_path / "data", DMBOOT_VAULT_KEY_PREFIX=f"t{secrets.token_hex(5)}")
    dm(env, "init", "--ca-keys", "vault-kv")
    assert 'ca_key_mode = "kv"' in (tmp_path / "data" / "dmboot.toml").read_text()
    assert {r["key"] for r in json.loads(dm(env, "ca", "show", "--json").stdout)} == {
        "vault-kv:ca-root", "vault-kv:ca-issuing-1"}


def test_init_refuses_a_choice_the_config_file_would_forget(bao: BaoDevServer, tmp_path: Path) -> None:
    env = vault_env(bao, tmp_path / "data", DMBOOT_KEYSTORE_PASSPHRASE="cli-test-pass")
    dm(env, "init", "--ca-keys", "embedded")
    result = dm(env, "init", "--ca-keys", "vault-transit", code=1)
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: ") and "keeps CA keys in embedded" in line
    assert "must be one of" in dm(env, "init", "--ca-keys", "hsm", code=1).stderr


def test_secrets_check_passes_with_the_service_policy(bao: BaoDevServer, transit_dir: tuple[Path, str]) -> None:
    env = _env(bao, transit_dir[0])
    out = dm(env, "secrets", "check").stdout
    lines = out.strip().splitlines()
    assert lines[0] == "secret store: vault (CA keys: vault-transit)"
    assert all(line.startswith("ok") for line in lines[1:-1]) and lines[-1].startswith("all ")
    report = json.loads(dm(env, "secrets", "check", "--json").stdout)
    names = [c["name"] for c in report["checks"]]
    assert report["ok"] is True and names[:3] == ["reachable", "unsealed", "authenticated"]
    assert "transit mount transit/" in names


def test_secrets_check_fails_with_hints(bao: BaoDevServer, transit_dir: tuple[Path, str]) -> None:
    data_dir, prefix = transit_dir
    narrow = f"{prefix}-narrow"
    # Enough to look itself up and run the checks, not enough to sign or keep secrets.
    rules = {"auth/token/lookup-self": "read", "sys/capabilities-self": "update", "sys/internal/ui/mounts/*": "read"}
    policy = "\n".join(f'path "{path}" {{ capabilities = ["{cap}"] }}' for path, cap in rules.items())
    bao.write(f"sys/policies/acl/{narrow}", {"policy": policy}, method="PUT")
    token = bao.write("auth/token/create", {"policies": [narrow], "no_default_policy": True})["auth"]["client_token"]
    env = _env(bao, data_dir) | {"DMBOOT_VAULT_TOKEN": token}
    result = dm(env, "secrets", "check", code=1)
    assert "FAIL" in result.stdout and "hint: run `dmboot secrets policy`" in result.stdout
    assert "checks failed" in result.stderr
    report = json.loads(dm(env, "secrets", "check", "--json", code=1).stdout)
    failed = {c["name"] for c in report["checks"] if not c["ok"]}
    assert report["ok"] is False
    assert {f"policy transit/sign/{prefix}-*", f"policy secret/data/{prefix}/*"} <= failed
    assert {"reachable", "unsealed", "authenticated"}.isdisjoint(failed)

    down = _env(bao, data_dir) | {"DMBOOT_VAULT_ADDR": "http://127.0.0.1:9", "DMBOOT_VAULT_TIMEOUT": "2"}
    result = dm(down, "secrets", "check", code=1)
    assert "FAIL  reachable" in result.stdout and "hint: start Vault" in result.stdout


def test_secrets_policy_is_what_vault_accepts(bao: BaoDevServer, transit_dir: tuple[Path, str]) -> None:
    data_dir, prefix = transit_dir
    env = _env(bao, data_dir) | {"DMBOOT_VAULT_TOKEN": None}  # printing the policy needs no credentials
    policy = dm(env, "secrets", "policy").stdout
    assert f'path "transit/sign/{prefix}-*"' in policy and f'path "secret/data/{prefix}/*"' in policy
    bao.write(f"sys/policies/acl/{prefix}-printed", {"policy": policy}, method="PUT")
    assert bao.read(f"sys/policies/acl/{prefix}-printed")["data"]["policy"] == policy
    kv_policy = dm(env, "secrets", "policy", "--ca-keys", "vault-kv").stdout
    assert "transit" not in kv_policy.split("\n", 2)[2]


def test_secrets_check_on_the_embedded_keystore(tmp_path: Path) -> None:
    env: Env = {"DMBOOT_DATA_DIR": str(tmp_path / "data"), "DMBOOT_KEYSTORE_PASSPHRASE": "cli-test-pass",
                "DMBOOT_DATABASE_URL": None, "DMBOOT_CONFIG": None, "DMBOOT_SECRETS_BACKEND": None}
    dm(env, "init")
    assert dm(env, "secrets", "check").stdout.startswith("secret store: embedded (CA keys: embedded)")


def test_ca_rotate_new_key_then_key_version(bao: BaoDevServer, transit_dir: tuple[Path, str]) -> None:
    env = _env(bao, transit_dir[0])
    first = json.loads(dm(env, "ca", "rotate", "--json").stdout)
    assert (first["previous"], first["current"], first["new_key"]) == ("issuing-1", "issuing-2", True)
    assert first["key"] == "vault-transit:ca-issuing-2#1"
    second = dm(env, "ca", "rotate", "--key-version").stdout
    assert second.startswith("issuing-3 is the active issuing CA; issuing-2 is retired")
    assert "vault-transit:ca-issuing-2#2" in second

    records = {r["name"]: r for r in json.loads(dm(env, "ca", "show", "--json").stdout)}
    assert {n: (r["status"], r["key"], r["key_version"]) for n, r in records.items()} == {
        "root": ("root", "vault-transit:ca-root", 1),
        "issuing-1": ("retired", "vault-transit:ca-issuing-1", 1),
        "issuing-2": ("retired", "vault-transit:ca-issuing-2", 1),
        "issuing-3": ("active", "vault-transit:ca-issuing-2", 2),
    }
    text = dm(env, "ca", "show").stdout
    assert "issuing-3  issuing  (active)" in text and "issuing-1  issuing  (retired)" in text
    assert "key         vault-transit:ca-issuing-2 v2" in text
