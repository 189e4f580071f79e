"""Re-enrollment supersedes earlier certificates (issue 12, item 6; docs/architecture.md)."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from cryptography import x509
from sqlmodel import select
from typer.testing import CliRunner

from bootstrap.auth.attestation import Evidence
from bootstrap.cli.main import app
from bootstrap.errors import AuthenticationFailed
from bootstrap.runtime import Runtime
from bootstrap.store.models import CertificateRow, utcnow
from tests.enrollment.support import ADMIN, GROUP, device_csr, fleet_spec

DEV = "IMEI:350000000000301"


def _row(runtime: Runtime, serial: str) -> CertificateRow:
    with runtime.database.session() as session:
        return session.exec(select(CertificateRow).where(CertificateRow.serial_hex == serial)).one()


def _first(runtime: Runtime, profile: str = GROUP, dev_id: str = DEV) -> str:
    runtime.devices.register(dev_id, profile, actor=ADMIN)
    token = runtime.devices.create_token(dev_id=dev_id, actor=ADMIN)[1]
    return runtime.enrollment.enroll(dev_id, Evidence("token", token=token), device_csr(dev_id)).issued.serial_hex


def _renew(runtime: Runtime, serial: str, dev_id: str = DEV) -> str:
    cert = _row(runtime, serial)
    evidence = Evidence("current-cert", client_certificate=x509.load_pem_x509_certificate(cert.pem.encode()))
    return runtime.enrollment.enroll(dev_id, evidence, device_csr(dev_id)).issued.serial_hex


def test_renewal_supersedes_and_first_use_revokes(configured: Runtime) -> None:
    a = _first(configured)
    b = _renew(configured, a)
    old = _row(configured, a)
    assert (old.status, old.superseded_by) == ("valid", b)
    assert old.supersede_at is not None and timedelta(minutes=59) < old.supersede_at - utcnow() <= timedelta(hours=1)
    # The superseded certificate no longer attests; nothing is issued for it.
    with pytest.raises(AuthenticationFailed, match=f"superseded by {b}"):
        _renew(configured, a)
    assert configured.revocation.revoke_superseded().revoked == ()  # within the grace, still valid
    c = _renew(configured, b)  # the first use of b: a is due now
    assert configured.revocation.revoke_superseded().revoked == (a,)
    revoked = _row(configured, a)
    assert (revoked.status, revoked.revocation_reason) == ("revoked", "superseded")
    assert (_row(configured, b).status, _row(configured, b).superseded_by) == ("valid", c)
    # After the grace, b goes too.
    assert configured.revocation.revoke_superseded(now=utcnow() + timedelta(hours=2)).revoked == (b,)
    assert _row(configured, c).status == "valid"


def test_a_new_token_supersedes_too(configured: Runtime) -> None:
    a = _first(configured)
    token = configured.devices.create_token(dev_id=DEV, actor=ADMIN)[1]
    b = configured.enrollment.enroll(DEV, Evidence("token", token=token), device_csr(DEV)).issued.serial_hex
    assert _row(configured, a).superseded_by == b


@pytest.mark.parametrize(("mode", "revoked"), [("immediate", True), ("keep", False)])
def test_the_profile_decides(configured: Runtime, mode: str, revoked: bool) -> None:
    configured.config.add_profile(fleet_spec(name="p-" + mode, supersede=mode), actor=ADMIN)
    configured.devices.create_group_key("p-" + mode, actor=ADMIN)
    a = _first(configured, "p-" + mode)
    b = _renew(configured, a)
    assert _row(configured, a).superseded_by == (b if revoked else None)
    assert configured.revocation.revoke_superseded().revoked == ((a,) if revoked else ())


def test_cert_show_and_list_say_which_superseded_which(configured: Runtime) -> None:
    a = _first(configured)
    b = _renew(configured, a)
    settings = configured.settings
    passphrase = settings.keystore_passphrase
    env = {"DMBOOT_DATA_DIR": str(settings.data_dir), "DMBOOT_DATABASE_URL": settings.database,
           "DMBOOT_KEYSTORE_PASSPHRASE": passphrase.reveal() if passphrase else ""}

    def dmboot(*args: str) -> str:
        result = CliRunner().invoke(app, list(args), env=env)
        assert result.exit_code == 0, result.stderr
        return result.stdout

    shown = json.loads(dmboot("cert", "show", b, "--json"))
    assert shown["supersedes"] == [a] and shown["superseded_by"] is None
    assert json.loads(dmboot("cert", "show", a, "--json"))["superseded_by"] == b
    listed = dmboot("cert", "list")
    assert f"{a}" in listed and f"(superseded by {b})" in listed
