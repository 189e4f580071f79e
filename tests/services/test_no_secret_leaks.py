"""No private key, token or secret value in the database or the logs, after a full run on each backend.

A full run: init (root, issuing CA, the service's TLS certificate), secrets written
and read back, certificates issued, a refused request, two rotations (new key, new
key version), more certificates. Everything is logged at DEBUG (SQL with its
parameters included); then every table is read back as text - and the SQLite file
itself, byte by byte - and searched for every secret the run handled.

With Vault the service logs in with AppRole under exactly the policy
``dmboot secrets policy`` prints, so the run also proves that policy is enough.
"""

from __future__ import annotations

import base64
import dataclasses
import logging
import secrets
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import text

from bootstrap.runtime import Runtime
from bootstrap.secrets import KeyRef
from bootstrap.secrets.vault.config import CaKeyMode, VaultConfig
from bootstrap.secrets.vault.policy import policy_hcl
from bootstrap.secrets.vault.store import VaultSecretStore
from bootstrap.services.issuance import Requester
from bootstrap.settings import Secret, Settings
from pki.errors import PkiError
from tests.factories import make_csr
from tests.support.openbao import BaoDevServer

ADMIN = Requester("test:admin")


def _approle_settings(settings: Settings, bao: BaoDevServer, ca_keys: str, folder: Path) -> tuple[Settings, str]:
    """Settings that log in with an AppRole holding only the service policy; and its secret id."""
    prefix = f"t{secrets.token_hex(5)}"
    chosen = settings.with_ca_keys(ca_keys)
    mode: CaKeyMode = "kv" if ca_keys == "vault-kv" else "transit"
    policy = policy_hcl(VaultConfig(addr=bao.addr, token=Secret("-"), key_prefix=prefix, ca_key_mode=mode))
    role_id, secret_id = bao.make_approle(prefix, policy)
    secret_file = folder / "secret-id"
    secret_file.write_text(secret_id + "\n")
    vault = dataclasses.replace(chosen.vault, addr=bao.addr, auth="approle", role_id=role_id,
                                secret_id_file=secret_file, key_prefix=prefix)
    return dataclasses.replace(chosen, vault=vault), secret_id


def _full_run(runtime: Runtime) -> dict[str, str]:
    """Init has run; write secrets, issue, refuse, rotate twice, issue again. Returns the secrets written."""
    written = {"enrollment/group-7": secrets.token_urlsafe(24), "dm1/server-a": secrets.token_urlsafe(24)}
    for path, value in written.items():
        runtime.store.put(path, {"value": value}, cas=0)
        assert runtime.store.get(path)[0] == {"value": value}
    for i in range(3):
        runtime.issuance.issue_from_csr(make_csr(f"IMEI:35000000000000{i}"), "device", ADMIN)
    with pytest.raises(PkiError):
        runtime.issuance.issue_from_csr(make_csr(dns=["evil.example"]), "device", ADMIN)
    for new_key in (True, False):
        with runtime.database.session() as session:
            runtime.authorities.rotate(session, "test:admin", new_key=new_key)
        runtime.issuance.issue_from_csr(make_csr(f"IMEI:3500000000001{int(new_key)}"), "device", ADMIN)
    return written


def _database_text(runtime: Runtime) -> str:
    """Every row of every table, as the database renders it as text."""
    query = ("SELECT name FROM sqlite_master WHERE type = 'table'" if runtime.database.is_sqlite else
             "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()")
    chunks: list[str] = []
    with runtime.database.engine.connect() as conn:
        tables = [str(name) for (name,) in conn.execute(text(query))]
        assert {"authority", "certificate", "audit_event"} <= set(tables)
        for table in tables:
            rows = conn.execute(text(f'SELECT * FROM "{table}"'))  # noqa: S608 - names from the catalogue
            chunks += ["\t".join(str(v) for v in row) for row in rows]
    return "\n".join(chunks)


def _sqlite_bytes(runtime: Runtime) -> bytes:
    database = Path(runtime.database.engine.url.database or "")
    return b"".join(p.read_bytes() for p in database.parent.glob(database.name + "*"))


def _kv_ca_key_secrets(runtime: Runtime, bao: BaoDevServer) -> list[str]:
    """What would betray a CA key kept in KV (vault-kv mode), read with the root token.

    The private scalar in hex and base64, and the first two lines of the PKCS#8 body
    (they hold the scalar). Not the last line: it holds the public key, which the
    certificates carry too - and may carry base64-aligned alike.
    """
    store = runtime.store
    assert isinstance(store, VaultSecretStore)
    prefix = store.client.config.key_prefix
    with runtime.database.session() as session:
        refs = [KeyRef.from_uri(r.key_ref) for r in runtime.authorities.all_rows(session)]
    found = []
    for ref in refs:
        pem = bao.read(f"secret/data/{prefix}/keys/{ref.name}?version={ref.version}")["data"]["data"]["private_key"]
        key = serialization.load_pem_private_key(pem.encode(), password=None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        scalar = key.private_numbers().private_value.to_bytes(32, "big")
        found += [scalar.hex(), base64.b64encode(scalar).decode(), *pem.splitlines()[1:3]]
    return found


@pytest.mark.parametrize("ca_keys", [
    pytest.param("embedded", id="embedded"),
    pytest.param("vault-transit", id="vault-transit", marks=pytest.mark.vault),
    pytest.param("vault-kv", id="vault-kv", marks=pytest.mark.vault),
])
def test_no_secret_in_the_database_or_the_logs(
    request: pytest.FixtureRequest, settings: Settings, ca_keys: str, tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="sqlalchemy")  # SQLAlchemy pins its own loggers at WARNING
    forbidden: dict[str, str] = {"a PEM private key": "PRIVATE KEY"}
    if ca_keys == "embedded":
        assert settings.keystore_passphrase is not None
        forbidden["the keystore passphrase"] = settings.keystore_passphrase.reveal()
    else:
        bao: BaoDevServer = request.getfixturevalue("bao")
        settings, secret_id = _approle_settings(settings, bao, ca_keys, tmp_path)
        forbidden |= {"the AppRole secret id": secret_id, "the root token": bao.root_token}

    runtime, _ = Runtime.initialize(settings, actor="test:init")
    try:
        written = _full_run(runtime)
        forbidden |= {f"the secret at {path}": value for path, value in written.items()}
        forbidden["the TLS key password"] = runtime.server_key_password()
        if isinstance(runtime.store, VaultSecretStore):
            lease = runtime.store.client._lease  # the token the service logged in with
            assert lease is not None
            forbidden["the service's Vault token"] = lease.token.reveal()
            if ca_keys == "vault-kv":
                forbidden |= {f"CA key material {i}": v for i, v in enumerate(_kv_ca_key_secrets(runtime, bao))}
        database = _database_text(runtime)
        raw = _sqlite_bytes(runtime) if runtime.database.is_sqlite else b""
    finally:
        runtime.close()
    logs = caplog.text

    # The scan sees what it should: certificates are in the tables, the file and the SQL log.
    assert "BEGIN CERTIFICATE" in database and "ca.rotate" in database
    assert not runtime.database.is_sqlite or b"BEGIN CERTIFICATE" in raw
    assert "BEGIN CERTIFICATE" in logs and "rotated the issuing CA" in logs
    if ca_keys != "embedded":
        assert "logged in to Vault with AppRole" in logs
    leaks = [f"{what} in {where}" for what, needle in forbidden.items()
             for where, haystack in (("the database", database), ("the logs", logs))
             if needle in haystack]
    leaks += [f"{what} in the SQLite file" for what, needle in forbidden.items() if needle.encode() in raw]
    assert not leaks
