"""`dmboot admin` and `dmboot audit export` as an operator runs them; client-certificate logins."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from typer.testing import CliRunner

from bootstrap.auth import totp
from bootstrap.cli import app
from bootstrap.errors import AuthenticationFailed
from bootstrap.runtime import Runtime
from bootstrap.services.issuance import Requester
from tests.factories import make_csr
from tests.support.admins import PASSWORD, fast_admins, make_admin


def _env(runtime: Runtime) -> dict[str, str]:
    settings = runtime.settings
    assert settings.keystore_passphrase is not None
    return {"DMBOOT_DATA_DIR": str(settings.data_dir), "DMBOOT_DATABASE_URL": settings.database_url,
            "DMBOOT_KEYSTORE_PASSPHRASE": settings.keystore_passphrase.reveal()}


def _run(runtime: Runtime, *args: str, input: str | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args), env=_env(runtime), input=input)
    return result.exit_code, result.stdout, result.stderr


def test_admin_commands(runtime: Runtime, tmp_path: Path) -> None:
    password_file = tmp_path / "pw"
    password_file.write_text(PASSWORD + "\n")
    code, out, err = _run(runtime, "admin", "create", "alice", "--role", "security-admin",
                          "--password-file", str(password_file))
    assert code == 0 and "created admin alice with roles security-admin" in out, err
    code, out, _ = _run(runtime, "admin", "create", "bob", "--role", "auditor", input=f"{PASSWORD}\n{PASSWORD}\n")
    assert code == 0
    code, _, err = _run(runtime, "admin", "create", "carl", "--role", "auditor", input=f"{PASSWORD}\nother one!!!\n")
    assert code == 1 and "the passwords differ" in err
    assert _run(runtime, "admin", "grant", "bob", "provisioning-admin")[1].strip() == "bob: auditor, provisioning-admin"
    code, _, err = _run(runtime, "admin", "revoke-role", "alice", "security-admin")
    assert code == 1 and err.strip() == ("error: alice is the last security-admin; make another admin"
                                         " security-admin first")
    code, _, err = _run(runtime, "admin", "disable", "alice")
    assert code == 1 and "last security-admin" in err
    secret = json.loads(_run(runtime, "admin", "totp", "enable", "alice", "--json")[1])["secret"]
    listed = {a["username"]: a for a in json.loads(_run(runtime, "admin", "list", "--json")[1])}
    assert listed["alice"]["totp_enabled"] and listed["bob"]["roles"] == ["auditor", "provisioning-admin"]
    fast_admins(runtime)
    assert runtime.admins.login("alice", PASSWORD).needs_totp
    runtime.admins.verify_totp("alice", totp.totp(secret))
    assert _run(runtime, "admin", "disable", "bob")[0] == 0
    assert json.loads(_run(runtime, "admin", "list", "--json")[1])[1]["disabled"] is True


def test_audit_export_is_json_lines(runtime: Runtime) -> None:
    fast_admins(runtime)
    make_admin(runtime, "alice", "security-admin")
    code, out, _ = _run(runtime, "audit", "export", "--action", "admin.*")
    assert code == 0
    lines = [json.loads(line) for line in out.splitlines()]
    assert [e["action"] for e in lines] == ["admin.create"]
    assert set(lines[0]) == {"seq", "at", "actor", "action", "outcome", "target", "request_id", "detail",
                             "prev_hash", "hash"}
    everything = _run(runtime, "audit", "export")[1].splitlines()
    seqs = [json.loads(line)["seq"] for line in everything]
    assert seqs == sorted(seqs) and len(seqs) >= 2  # oldest first: init's events, then ours
    assert _run(runtime, "audit", "export", "--since", "2999-01-01")[1] == ""


def test_client_certificate_login(runtime: Runtime) -> None:
    admins = fast_admins(runtime)
    make_admin(runtime, "alice", "security-admin")
    issued = runtime.issuance.issue_from_csr(make_csr("alice.admin.example", dns=["alice.admin.example"]),
                                             "dm-server", Requester("test"))
    pem = issued.certificate.public_bytes(Encoding.PEM)
    with pytest.raises(AuthenticationFailed):
        admins.login_certificate(issued.certificate)  # not bound yet
    assert admins.bind_certificate("alice", pem, actor="cli:root") == issued.fingerprint
    assert admins.login_certificate(issued.certificate).admin.username == "alice"
    runtime.revocation.revoke_certificate(issued.serial_hex, "keyCompromise", Requester("test"))
    with pytest.raises(AuthenticationFailed):
        admins.login_certificate(issued.certificate)  # revoked by us
    other = x509.load_pem_x509_certificate(pem)
    assert admins.bind_certificate("alice", None, actor="cli:root") is None
    with pytest.raises(AuthenticationFailed):
        admins.login_certificate(other)
