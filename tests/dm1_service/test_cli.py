"""``dmboot dm1 write-packages`` and ``dmboot dm1 rotate``, in process, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from bootstrap.cli import app
from bootstrap.runtime import Runtime
from bootstrap.settings import Settings
from tests.dm1_service.support import (
    ADMIN,
    DEV,
    IMSI,
    PROFILE,
    canonical,
    content_type_params,
    hmac_sha1_hex,
    mac_key,
    syncml_target,
    wbxml2xml,
)

OTHER = "IMEI:356938035643809"


def dmboot(settings: Settings, *args: str) -> Result:
    assert settings.keystore_passphrase is not None
    env = {"DMBOOT_DATA_DIR": str(settings.data_dir), "DMBOOT_DATABASE_URL": settings.database_url or "",
           "DMBOOT_KEYSTORE_PASSPHRASE": settings.keystore_passphrase.reveal()}
    return CliRunner().invoke(app, list(args), env=env)


@pytest.fixture
def manifest(configured: Runtime, tmp_path: Path) -> Path:
    for dev in (DEV, OTHER):
        configured.devices.register(dev, PROFILE, actor=ADMIN)
    path = tmp_path / "manifest.csv"
    path.write_text(f"dev_id,imsi,pin\n{DEV},{IMSI},24681357\n{OTHER},{IMSI},\n")
    return path


def test_write_packages_writes_every_form_per_device(configured: Runtime, manifest: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = dmboot(configured.settings, "dm1", "write-packages", str(manifest), "--out", str(out),
                    "--sec", "USERPIN_NETWORKID", "--json")
    assert result.exit_code == 0, result.output
    assert [w["dev_id"] for w in json.loads(result.stdout)["written"]] == [DEV, OTHER]
    folder = out / "IMEI%3A490154203237518"
    names = {"dm1-bootstrap.wbxml", "dm1-bootstrap.xml", "dm1-dmacc.tnds.xml", "dm1-cp.wbxml", "dm1-bootstrap.json"}
    assert {p.name for p in folder.iterdir()} == names
    assert all(stat.S_IMODE((folder / n).stat().st_mode) == 0o600 for n in names)
    meta = json.loads((folder / "dm1-bootstrap.json").read_text())
    wbxml = (folder / "dm1-bootstrap.wbxml").read_bytes()
    media, params = content_type_params(meta["wbxml_content_type"])
    assert meta["pin"] == "24681357"  # the manifest's PIN
    assert params == {"SEC": "USERPIN_NETWORKID", "MAC": hmac_sha1_hex(mac_key("USERPIN_NETWORKID", "24681357"),
                                                                      wbxml)}
    assert canonical(wbxml2xml(wbxml)) == canonical((folder / "dm1-bootstrap.xml").read_bytes())
    assert syncml_target(wbxml) == "IMEI:490154203237518"
    other = json.loads((out / "IMEI%3A356938035643809" / "dm1-bootstrap.json").read_text())
    assert len(other["pin"]) == 8  # generated, kept with the device's credentials, written for its label
    assert configured.devices.get(DEV).row.status == "registered"


def test_write_packages_reports_devices_it_cannot_write(configured: Runtime, manifest: Path, tmp_path: Path) -> None:
    manifest.write_text(manifest.read_text() + "IMEI:000000000000001,,\n")
    result = dmboot(configured.settings, "dm1", "write-packages", str(manifest), "--out", str(tmp_path / "o"),
                    "--sec", "NETWORKID")
    assert result.exit_code == 1
    assert "IMEI:000000000000001: device 'IMEI:000000000000001' is not registered" in result.stderr
    assert (tmp_path / "o" / "IMEI%3A490154203237518" / "dm1-bootstrap.wbxml").exists()


def test_rotate(configured: Runtime, manifest: Path, tmp_path: Path) -> None:
    assert dmboot(configured.settings, "dm1", "write-packages", str(manifest), "--out", str(tmp_path)).exit_code == 0
    result = dmboot(configured.settings, "dm1", "rotate", DEV)
    assert result.exit_code == 0, result.output
    assert "dm1/IMEI_3A490154203237518#2" in result.stdout
    missing = dmboot(configured.settings, "dm1", "rotate", "IMEI:000000000000001")
    assert missing.exit_code == 1 and "no device" in missing.stderr
