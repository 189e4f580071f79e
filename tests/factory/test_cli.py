"""`dmboot factory` on the embedded default: the output layout, resuming, registrations, stations."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from typer.testing import CliRunner, Result

from bootstrap.cli import app
from bootstrap.cli.factory_output import safe_name
from bootstrap.dm.package import Put, parse_request
from bootstrap.runtime import Runtime
from bootstrap.settings import Secret, Settings
from pki.keys import KeyType, generate_private_key
from tests.factories import make_csr
from tests.factory.conftest import add_profiles, assert_outputs_complete, certificates_per_device

PASSPHRASE = "factory-cli-test"


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    """An initialized embedded install (SQLite, keystore) with the test profiles."""
    path = tmp_path / "data"
    runtime, _ = Runtime.initialize(Settings(data_dir=path, keystore_passphrase=Secret(PASSPHRASE)), actor="test")
    add_profiles(runtime)
    runtime.close()
    yield path


def dmboot(data_dir: Path, *args: str) -> Result:
    env = {"DMBOOT_DATA_DIR": str(data_dir), "DMBOOT_KEYSTORE_PASSPHRASE": PASSPHRASE, "DMBOOT_DATABASE_URL": ""}
    return CliRunner().invoke(app, list(args), env=env)


def runtime_of(data_dir: Path) -> Runtime:
    return Runtime(Settings(data_dir=data_dir, keystore_passphrase=Secret(PASSPHRASE)))


def write_manifest(folder: Path, keygen: int, csrs: int = 0) -> tuple[Path, list[str]]:
    """A manifest with a header: ``csrs`` devices with CSR files, then ``keygen`` without."""
    lines = ["dev_id,csr_path,model,line"]
    dev_ids = []
    for i in range(csrs):
        dev_id = f"IMEI:36{i:013d}"
        (folder / f"csr{i}.pem").write_bytes(make_csr(dev_id, key=generate_private_key(KeyType.P256)))
        lines.append(f"{dev_id},csr{i}.pem,X1,3")
        dev_ids.append(dev_id)
    for i in range(keygen):
        dev_id = f"IMEI:35{i:013d}"
        lines.append(f"{dev_id},,X2,3")
        dev_ids.append(dev_id)
    path = folder / "manifest.csv"
    path.write_text("\n".join(lines) + "\n")
    return path, dev_ids


def test_a_run_writes_the_documented_layout(data_dir: Path, tmp_path: Path) -> None:
    manifest, dev_ids = write_manifest(tmp_path, keygen=6, csrs=2)
    out = tmp_path / "out"
    result = dmboot(data_dir, "factory", "run", str(manifest), "--profile", "line", "--out", str(out),
                    "--keygen", "p256", "--package2", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert (report["total"], report["issued"], report["failed"], report["complete"]) == (8, 8, 0, 8)
    password = (out / "key-password").read_text().strip()
    assert stat.S_IMODE((out / "key-password").stat().st_mode) == 0o600
    assert_outputs_complete(out, dev_ids[2:], password.encode())
    csr_device = out / safe_name(dev_ids[0])
    assert sorted(p.name for p in csr_device.iterdir()) == ["bootstrap.json", "cert.pem", "chain.pem",
                                                             "package2.json"]
    content = json.loads((csr_device / "bootstrap.json").read_text())
    assert content["format"] == "dmboot-bootstrap/1" and content["dev_id"] == dev_ids[0]
    assert content["certificate_chain"][0] == (csr_device / "cert.pem").read_text()
    assert [a["role"] for a in content["trust_anchors"]] == ["dm-server", "issuing-ca"]
    commands = parse_request((csr_device / "package2.json").read_bytes())
    assert [c.instance.moid for c in commands if isinstance(c, Put)] == ["urn:oma:mo:ext-dmboot-trust:1.0",
                                                                         "urn:oma:mo:oma-dm-dmacc:1.2"]
    assert stat.S_IMODE((out / safe_name(dev_ids[2]) / "key.pem").stat().st_mode) == 0o600
    assert not list(out.rglob(".*.tmp"))  # no temporary file survives
    journal = [json.loads(line) for line in (out / ".factory" / "journal.ndjson").read_text().splitlines()]
    assert sorted(j["dev_id"] for j in journal) == sorted(dev_ids)


def test_a_rerun_resumes_and_a_lost_journal_changes_nothing(data_dir: Path, tmp_path: Path) -> None:
    manifest, dev_ids = write_manifest(tmp_path, keygen=5, csrs=1)
    out = tmp_path / "out"
    args = ("factory", "run", str(manifest), "--profile", "line", "--out", str(out), "--keygen", "p256", "--json")
    first = json.loads(dmboot(data_dir, *args).stdout)
    serials = assert_outputs_complete(out, dev_ids[1:], (out / "key-password").read_bytes().strip())
    again = json.loads(dmboot(data_dir, *args).stdout)
    assert (again["skipped_from_journal"], again["issued"], again["existing"]) == (6, 0, 0)
    (out / ".factory" / "journal.ndjson").unlink()  # a crash before anything was journaled
    lost = json.loads(dmboot(data_dir, *args).stdout)
    assert (first["issued"], lost["issued"], lost["existing"]) == (6, 0, 6)
    assert assert_outputs_complete(out, dev_ids[1:], (out / "key-password").read_bytes().strip()) == serials
    runtime = runtime_of(data_dir)
    try:
        assert certificates_per_device(runtime) == {d: 1 for d in dev_ids}
    finally:
        runtime.close()


def test_worker_processes_share_one_batch(data_dir: Path, tmp_path: Path) -> None:
    manifest, dev_ids = write_manifest(tmp_path, keygen=400)
    out = tmp_path / "out"
    result = dmboot(data_dir, "factory", "run", str(manifest), "--profile", "line", "--out", str(out), "--keygen",
                    "p256", "--jobs", "2", "--batch-size", "100", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["issued"] == 400
    assert_outputs_complete(out, dev_ids, (out / "key-password").read_bytes().strip())


def test_devids_become_safe_directory_names() -> None:
    assert safe_name("IMEI:350000000000001") == "IMEI%3A350000000000001"
    assert safe_name("../etc/passwd") == "%2E.%2Fetc%2Fpasswd"
    assert safe_name("a%b") == "a%25b"


@pytest.mark.parametrize(("rows", "message"), [
    ("IMEI:1\nIMEI:1\n", "appears twice"),
    ("has space\n", "printable ASCII"),
    ("IMEI:1\n", "no CSR in the manifest"),
], ids=["repeated", "bad-devid", "no-csr-no-keygen"])
def test_a_bad_manifest_is_refused_before_anything_is_issued(data_dir: Path, tmp_path: Path, rows: str,
                                                              message: str) -> None:
    (tmp_path / "m.csv").write_text(rows)
    result = dmboot(data_dir, "factory", "run", str(tmp_path / "m.csv"), "--profile", "line", "--out",
                    str(tmp_path / "out"))
    assert result.exit_code == 1 and message in result.output


def test_a_resume_with_other_options_is_refused(data_dir: Path, tmp_path: Path) -> None:
    manifest, _ = write_manifest(tmp_path, keygen=1)
    out = str(tmp_path / "out")
    assert dmboot(data_dir, "factory", "run", str(manifest), "--profile", "line", "--out", out, "--keygen",
                  "p256").exit_code == 0
    other = dmboot(data_dir, "factory", "run", str(manifest), "--profile", "other", "--out", out, "--keygen", "p256")
    assert other.exit_code == 1 and "resume it with the same options" in other.output


def test_register_writes_the_secrets_once(data_dir: Path, tmp_path: Path) -> None:
    manifest, dev_ids = write_manifest(tmp_path, keygen=3)
    secrets_file = tmp_path / "tokens.json"
    result = dmboot(data_dir, "factory", "register", str(manifest), "--profile", "line", "--out", str(secrets_file))
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE(secrets_file.stat().st_mode) == 0o600
    devices = json.loads(secrets_file.read_text())["devices"]
    assert [d["dev_id"] for d in devices] == dev_ids and all(d["token"].startswith("dmt_") for d in devices)
    again = dmboot(data_dir, "factory", "register", str(manifest), "--profile", "line", "--out", str(secrets_file))
    assert again.exit_code == 1 and "written once" in again.output


def test_station_add_list_remove(data_dir: Path, tmp_path: Path) -> None:
    runtime = runtime_of(data_dir)
    try:
        from bootstrap.services.issuance import Requester

        issued = runtime.issuance.issue_from_csr(make_csr("station-1"), "device", Requester("test"))
    finally:
        runtime.close()
    (tmp_path / "station.pem").write_text(issued.pem)
    added = dmboot(data_dir, "factory", "station", "add", "station-1", "--cert", str(tmp_path / "station.pem"),
                   "--profile", "line", "--quota", "100", "--json")
    assert added.exit_code == 0, added.output
    assert json.loads(added.stdout)["token"].startswith("dmb_")
    listed = json.loads(dmboot(data_dir, "factory", "station", "list", "--json").stdout)
    assert [(s["name"], s["fingerprint"]) for s in listed] == [("station-1", issued.fingerprint)]
    assert dmboot(data_dir, "factory", "station", "remove", "station-1").exit_code == 0
    assert json.loads(dmboot(data_dir, "factory", "station", "list", "--json").stdout) == []
    assert isinstance(x509.load_pem_x509_certificate(issued.pem.encode()), x509.Certificate)
    assert os.environ.get("DMBOOT_DATA_DIR") != str(data_dir)  # the runner did not leak its environment
