"""``dmboot cert revoke | readmit | expiring`` in-process, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from starlette.testclient import TestClient
from typer.testing import CliRunner, Result

from bootstrap.app import create_app
from bootstrap.cli import app
from bootstrap.runtime import Runtime
from pki.authority import IssuedCertificate
from tests.revocation.conftest import ADMIN


def dm(runtime: Runtime, *args: str) -> Result:
    settings = runtime.settings
    assert settings.keystore_passphrase is not None
    env = {"DMBOOT_DATA_DIR": str(settings.data_dir), "DMBOOT_DATABASE_URL": settings.database_url,
           "DMBOOT_KEYSTORE_PASSPHRASE": settings.keystore_passphrase.reveal(),
           "DMBOOT_PUBLIC_URL": settings.public_url}
    return CliRunner().invoke(app, list(args), env=env)


def test_revoke_by_device_then_readmit(runtime: Runtime, fleet: str,
                                       device_cert: Callable[[str], IssuedCertificate]) -> None:
    dev_id = "IMEI:600000000000001"
    runtime.devices.register(dev_id, fleet, actor="test")
    issued = device_cert(dev_id)
    result = dm(runtime, "cert", "revoke", "--device", dev_id, "--reason", "key_compromise", "--json", "--yes")
    assert result.exit_code == 0, result.output
    outcome = json.loads(result.stdout)
    assert outcome["revoked"] == [issued.serial_hex] and outcome["blocked_devices"] == [dev_id]
    assert outcome["reason"] == "keyCompromise" and outcome["crl_numbers"]["issuing-1"] >= 1
    shown = json.loads(dm(runtime, "cert", "show", issued.serial_hex, "--json").stdout)
    assert shown["status"] == "revoked" and shown["revocation_reason"] == "keyCompromise"
    readmitted = dm(runtime, "cert", "readmit", dev_id)
    assert readmitted.exit_code == 0 and "may enroll again" in readmitted.stdout


def test_revoke_by_profile_prints_what_it_did(runtime: Runtime, fleet: str,
                                              device_cert: Callable[[str], IssuedCertificate]) -> None:
    runtime.devices.register("IMEI:600000000000002", fleet, actor="test")
    issued = device_cert("IMEI:600000000000002")
    result = dm(runtime, "cert", "revoke", "--profile", fleet, "--reason", "cessationOfOperation", "--yes")
    assert result.exit_code == 0, result.output
    assert f"revoked {issued.serial_hex} (cessationOfOperation)" in result.stdout
    assert "blocked device IMEI:600000000000002" in result.stdout and "published CRL" in result.stdout


@pytest.mark.parametrize(("args", "message"), [
    (["cert", "revoke"], "exactly one of SERIAL"),
    (["cert", "revoke", "abc", "--device", "IMEI:1"], "exactly one of SERIAL"),
    (["cert", "revoke", "abcdef"], "no certificate with serial abcdef"),
    (["cert", "revoke", "--profile", "nope"], "no enrollment profile"),
    (["cert", "revoke", "--device", "IMEI:1", "--reason", "certificateHold"], "unknown revocation reason"),
    (["cert", "readmit", "IMEI:1"], "no device"),
    (["cert", "expiring", "--days", "-3"], "days must be between"),
])
def test_errors_are_one_line(runtime: Runtime, args: list[str], message: str) -> None:
    result = dm(runtime, *args)
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.stderr


def test_expiring(runtime: Runtime, device_cert: Callable[[str], IssuedCertificate]) -> None:
    issued = device_cert("IMEI:600000000000003")
    listed = json.loads(dm(runtime, "cert", "expiring", "--days", "366", "--json").stdout)
    assert issued.serial_hex in [r["serial"] for r in listed]
    text = dm(runtime, "cert", "expiring", "--days", "366").stdout
    assert issued.serial_hex in text
    assert "no certificate expires within 5 days" in dm(runtime, "cert", "expiring", "--days", "5").stdout


def test_cert_list_pages_with_a_keyset_cursor(runtime: Runtime,
                                              device_cert: Callable[[str], IssuedCertificate]) -> None:
    serials = [device_cert(f"IMEI:61000000000000{n}").serial_hex for n in range(5)]
    first = dm(runtime, "cert", "list", "--profile", "device", "--limit", "2", "--json")
    assert first.exit_code == 0, first.output
    assert [c["serial"] for c in json.loads(first.stdout)] == serials[::-1][:2]  # newest first
    cursor = first.stderr.strip().rsplit(" ", 1)[-1]
    assert first.stderr.startswith("next page: --after ")
    second = dm(runtime, "cert", "list", "--profile", "device", "--limit", "2", "--after", cursor, "--json")
    assert [c["serial"] for c in json.loads(second.stdout)] == serials[::-1][2:4]
    bad = dm(runtime, "cert", "list", "--after", "-1")
    assert bad.exit_code != 0


def test_publish_crls_on_demand(runtime: Runtime, device_cert: Callable[[str], IssuedCertificate]) -> None:
    nothing = dm(runtime, "ca", "publish-crls")
    assert nothing.exit_code == 0 and "every CRL is up to date" in nothing.stdout
    issued = device_cert("IMEI:620000000000001")
    runtime.revocation.revoke_certificate(issued.serial_hex, "superseded", ADMIN)  # as the API does: no CRL yet
    published = json.loads(dm(runtime, "ca", "publish-crls", "--json").stdout)["published"]
    partition = f"issuing-1-p{issued.certificate.serial_number % 16}"
    assert {"issuing-1", "issuing-1-delta", partition} == set(published)
    everything = json.loads(dm(runtime, "ca", "publish-crls", "--force", "--json").stdout)["published"]
    assert {"root", "root-delta", "issuing-1", "issuing-1-delta", "issuing-1-p15"} <= set(everything)


def test_certificates_api_pages_with_next_after(runtime: Runtime,
                                                device_cert: Callable[[str], IssuedCertificate]) -> None:
    serials = [device_cert(f"IMEI:63000000000000{n}").serial_hex for n in range(3)]
    token = runtime.tokens.create("lister", ["auditor"], actor="test")
    with TestClient(create_app(runtime=runtime)) as client:
        headers = {"Authorization": f"Bearer {token}"}
        first = client.get("/api/v1/certificates?profile=device&limit=2", headers=headers).json()
        assert [c["serial"] for c in first["certificates"]] == serials[::-1][:2]
        second = client.get(f"/api/v1/certificates?profile=device&limit=2&after={first['next_after']}",
                            headers=headers).json()
        assert [c["serial"] for c in second["certificates"]] == serials[:1] and "next_after" not in second


def test_bulk_revocation_dry_run_changes_nothing_and_the_real_one_needs_yes(
        runtime: Runtime, fleet: str, device_cert: Callable[[str], IssuedCertificate]) -> None:
    dev_ids = ["IMEI:600000000000011", "IMEI:600000000000012"]
    for dev_id in dev_ids:
        runtime.devices.register(dev_id, fleet, actor="test")
    serials = sorted(device_cert(dev_id).serial_hex for dev_id in dev_ids)
    dry = dm(runtime, "cert", "revoke", "--profile", fleet, "--dry-run", "--json")
    assert dry.exit_code == 0, dry.output
    preview = json.loads(dry.stdout)
    assert preview["dry_run"] is True and sorted(preview["certificates"]) == serials
    assert set(dev_ids) <= set(preview["devices"])
    assert all(json.loads(dm(runtime, "cert", "show", s, "--json").stdout)["status"] == "valid" for s in serials)
    unconfirmed = dm(runtime, "cert", "revoke", "--profile", fleet)  # stdin is not a terminal: no prompt
    assert unconfirmed.exit_code == 1
    assert "certificates to revoke" in unconfirmed.stderr and "--yes" in unconfirmed.stderr
    assert all(json.loads(dm(runtime, "cert", "show", s, "--json").stdout)["status"] == "valid" for s in serials)
    done = dm(runtime, "cert", "revoke", "--profile", fleet, "--yes", "--json")
    assert sorted(json.loads(done.stdout)["revoked"]) == serials


def test_actor_is_cli_and_the_login_user(runtime: Runtime, fleet: str) -> None:
    import getpass

    dm(runtime, "device", "add", "IMEI:600000000000021", "--profile", fleet)
    exported = dm(runtime, "audit", "export", "--action", "device.*")
    actors = {json.loads(line)["actor"] for line in exported.stdout.splitlines()}
    assert f"cli:{getpass.getuser()}" in actors and "cli:admin" not in actors
