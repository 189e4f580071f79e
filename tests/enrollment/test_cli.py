"""The enrollment configuration commands of `dmboot`, in-process against an initialized data directory."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from bootstrap.cli import app
from bootstrap.runtime import Runtime
from bootstrap.settings import Secret, Settings
from tests.enrollment.support import EXTRA_MO, make_maker
from tests.factories import make_csr

PASSPHRASE = "enroll-cli-passphrase"


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("enroll-cli") / "data"
    runtime, _ = Runtime.initialize(Settings(data_dir=path, keystore_passphrase=Secret(PASSPHRASE)))
    runtime.close()
    return path


def dm(data_dir: Path, *args: str, ok: bool = True) -> Result:
    env = {"DMBOOT_DATA_DIR": str(data_dir), "DMBOOT_KEYSTORE_PASSPHRASE": PASSPHRASE, "DMBOOT_DATABASE_URL": ""}
    result = CliRunner().invoke(app, list(args), env=env)
    if ok and result.exit_code != 0:
        raise AssertionError(f"dmboot {' '.join(args)} failed: {result.stderr}{result.exception!r}")
    return result


def test_configure_a_fleet_from_the_cli(data_dir: Path, tmp_path: Path) -> None:
    dm(data_dir, "server", "add", "dm1", "--url", "https://dm.example.net/dm", "--name", "Fleet DM")
    dm(data_dir, "repo", "add", "repo1", "--url", "https://repo.example.net")
    assert json.loads(dm(data_dir, "server", "list", "--json").stdout)[0]["server_id"] == "dm1"
    assert "repo1" in dm(data_dir, "repo", "list").stdout
    (tmp_path / "mo.json").write_text(json.dumps(EXTRA_MO))
    dm(data_dir, "profile", "add", "fleet", "--server", "dm1", "--repo", "repo1", "--attestation", "token",
       "--attestation", "group-key", "--delivery", "inline", "--server-keygen", "--perm",
       "urn:oma:mo:oma-dm-devinfo:1.0", "--extra-mo", str(tmp_path / "mo.json"))
    shown = json.loads(dm(data_dir, "profile", "show", "fleet", "--json").stdout)
    assert shown["delivery"] == "inline" and shown["dmacc"] == {"Perm": ["urn:oma:mo:oma-dm-devinfo:1.0"]}
    assert shown["server_keygen"] is True
    assert "fleet" in dm(data_dir, "profile", "list").stdout
    (tmp_path / "spec.json").write_text(json.dumps({"dm_servers": ["dm1"], "attestation": ["idevid"]}))
    dm(data_dir, "profile", "add", "line-b", "--file", str(tmp_path / "spec.json"))

    dm(data_dir, "device", "add", "IMEI:1", "--profile", "fleet")
    assert json.loads(dm(data_dir, "device", "show", "IMEI:1", "--json").stdout)["status"] == "registered"
    dm(data_dir, "device", "block", "IMEI:1")
    assert "blocked" in dm(data_dir, "device", "list", "--status", "blocked").stdout
    dm(data_dir, "device", "unblock", "IMEI:1")

    created = dm(data_dir, "enroll-token", "create", "--dev-id", "IMEI:1")
    token = created.stdout.strip()
    assert token.startswith("dmt_") and "shown once" in created.stderr
    listed = dm(data_dir, "enroll-token", "list", "--json").stdout
    assert token not in listed and json.loads(listed)[0]["state"] == "unused"

    (tmp_path / "maker.pem").write_text(make_maker().pem)
    dm(data_dir, "maker-ca", "add", "acme", "--cert", str(tmp_path / "maker.pem"))
    assert json.loads(dm(data_dir, "maker-ca", "list", "--json").stdout)[0]["enabled"] is True
    dm(data_dir, "maker-ca", "disable", "acme")

    assert "groups/fleet" in dm(data_dir, "group-key", "create", "fleet").stdout
    keys = dm(data_dir, "group-key", "derive", "fleet", "IMEI:1", "IMEI:2").stdout.splitlines()
    assert [line.split()[0] for line in keys] == ["IMEI:1", "IMEI:2"] and len(keys[0].split()[1]) == 64

    (tmp_path / "dm.csr").write_bytes(make_csr("dm.example.net"))
    chain = dm(data_dir, "server", "cert", "dm1", "--csr", str(tmp_path / "dm.csr")).stdout
    assert chain.count("BEGIN CERTIFICATE") == 2


@pytest.mark.parametrize(("args", "message"), [
    pytest.param(["server", "add", "x", "--url", "http://x"], "https URL", id="server-plain-http"),
    pytest.param(["profile", "add", "p", "--server", "nope"], "no DM server 'nope'", id="profile-unknown-server"),
    pytest.param(["device", "show", "IMEI:none"], "no device", id="unknown-device"),
    pytest.param(["enroll-token", "create"], "name a profile, a DevID, or both", id="token-without-target"),
    pytest.param(["group-key", "derive", "nope", "IMEI:1"], "no enrollment profile", id="derive-unknown-profile"),
    pytest.param(["maker-ca", "add", "m", "--cert", "/nonexistent.pem"], "does not exist", id="missing-file"),
])
def test_errors_are_one_line(data_dir: Path, args: list[str], message: str) -> None:
    result = dm(data_dir, *args, ok=False)
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1 and message in result.stderr


@pytest.mark.parametrize("group", ["server", "repo", "profile", "device", "enroll-token", "maker-ca", "group-key"])
def test_help(group: str) -> None:
    result = CliRunner().invoke(app, [group, "--help"])
    assert result.exit_code == 0 and "Usage" in result.stdout
