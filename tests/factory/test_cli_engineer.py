"""What a factory engineer tripped over: reruns into a new --out, refused runs, Ctrl-C, bundles, the report."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bootstrap.cli.factory_output import safe_name
from tests.factory.test_cli import PASSPHRASE, data_dir, dmboot, write_manifest

__all__ = ["data_dir"]  # the fixture, shared with test_cli


def _openssl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["openssl", *args], capture_output=True, text=True, check=False)


def _run(data_dir: Path, manifest: Path, out: Path, *extra: str) -> tuple[int, str]:
    result = dmboot(data_dir, "factory", "run", str(manifest), "--profile", "line", "--out", str(out),
                    "--keygen", "p256", *extra)
    return result.exit_code, result.output


def test_a_rerun_into_a_new_out_refuses_keys_under_the_old_password(data_dir: Path, tmp_path: Path) -> None:
    manifest, dev_ids = write_manifest(tmp_path, keygen=3)
    assert _run(data_dir, manifest, tmp_path / "first")[0] == 0
    code, output = _run(data_dir, manifest, tmp_path / "second")
    assert code == 1
    assert "encrypted under that run's password" in output and "--password-file" in output
    assert not any((tmp_path / "second" / safe_name(d) / "key.pem").exists() for d in dev_ids)
    # With the first run's password, the keys written open with openssl.
    code, output = _run(data_dir, manifest, tmp_path / "third", "--password-file",
                        str(tmp_path / "first" / "key-password"))
    assert code == 0, output
    key = tmp_path / "third" / safe_name(dev_ids[0]) / "key.pem"
    opened = _openssl("pkey", "-in", str(key), "-passin", f"file:{tmp_path / 'first' / 'key-password'}", "-noout")
    assert opened.returncode == 0, opened.stderr


def test_a_refused_run_binds_nothing_and_the_corrected_rerun_goes(data_dir: Path, tmp_path: Path) -> None:
    manifest, _ = write_manifest(tmp_path, keygen=2)
    out = tmp_path / "out"
    result = dmboot(data_dir, "factory", "run", str(manifest), "--profile", "flet", "--out", str(out),
                    "--keygen", "p256")
    assert result.exit_code == 1
    assert not (out / ".factory" / "run.json").exists()
    code, output = _run(data_dir, manifest, out)
    assert code == 0, output
    assert (out / ".factory" / "run.json").exists()


@pytest.mark.parametrize("bundle", ["pem", "p12"])
def test_bundles_open_with_openssl(data_dir: Path, tmp_path: Path, bundle: str) -> None:
    manifest, dev_ids = write_manifest(tmp_path, keygen=1, csrs=1)
    out = tmp_path / "out"
    code, output = _run(data_dir, manifest, out, "--bundle", bundle)
    assert code == 0, output
    password = f"file:{out / 'key-password'}"
    generated, with_csr = (out / safe_name(dev_ids[1]), out / safe_name(dev_ids[0]))
    if bundle == "pem":
        assert _openssl("pkey", "-in", str(generated / "bundle.pem"), "-passin", password, "-noout").returncode == 0
        assert (generated / "bundle.pem").read_text().count("BEGIN CERTIFICATE") == 2
        assert (with_csr / "bundle.pem").read_text().count("BEGIN CERTIFICATE") == 2
    else:
        shown = _openssl("pkcs12", "-in", str(generated / "bundle.p12"), "-passin", password, "-nodes")
        assert shown.returncode == 0, shown.stderr
        assert shown.stdout.count("BEGIN CERTIFICATE") == 2 and "BEGIN PRIVATE KEY" in shown.stdout
        key = _openssl("pkey", "-in", str(generated / "key.pem"), "-passin", password, "-pubout").stdout
        from_p12 = subprocess.run(["openssl", "pkey", "-pubout"], input=shown.stdout, capture_output=True,
                                  text=True, check=True).stdout
        assert key == from_p12


def test_bundle_with_pkcs12_keys_is_a_usage_error(data_dir: Path, tmp_path: Path) -> None:
    manifest, _ = write_manifest(tmp_path, keygen=1)
    code, output = _run(data_dir, manifest, tmp_path / "out", "--bundle", "p12", "--key-format", "pkcs12")
    assert code == 2 and "--bundle" in output


def test_report_csv_and_checksums_agree_with_openssl_and_sha256sum(data_dir: Path, tmp_path: Path) -> None:
    manifest, dev_ids = write_manifest(tmp_path, keygen=2, csrs=1)
    out = tmp_path / "out"
    assert _run(data_dir, manifest, out)[0] == 0
    with (out / "report.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert sorted(r["dev_id"] for r in rows) == sorted(dev_ids)
    for row in rows:
        cert = str(out / safe_name(row["dev_id"]) / "cert.pem")
        shown = _openssl("x509", "-in", cert, "-noout", "-serial", "-fingerprint", "-sha256", "-enddate").stdout
        facts = dict(line.split("=", 1) for line in shown.splitlines())
        assert int(facts["serial"], 16) == int(row["serial"], 16)
        assert facts["sha256 Fingerprint"].replace(":", "").lower() == row["fingerprint_sha256"]
        ended = time.strptime(facts["notAfter"], "%b %d %H:%M:%S %Y %Z")
        assert time.strftime("%Y-%m-%dT%H:%M:%SZ", ended) == row["not_after"]
    checked = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=out, capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "report.csv: OK" in checked.stdout and "key-password" not in checked.stdout
    assert checked.stdout.count("cert.pem: OK") == 3


@pytest.mark.slow
def test_ctrl_c_says_what_is_done_and_a_rerun_resumes(data_dir: Path, tmp_path: Path) -> None:
    manifest, dev_ids = write_manifest(tmp_path, keygen=4000)
    out = tmp_path / "out"
    env = {**os.environ, "DMBOOT_DATA_DIR": str(data_dir), "DMBOOT_KEYSTORE_PASSPHRASE": PASSPHRASE,
           "DMBOOT_DATABASE_URL": ""}
    args = [sys.executable, "-m", "bootstrap", "factory", "run", str(manifest), "--profile", "line", "--out",
            str(out), "--keygen", "p256", "--batch-size", "20"]
    process = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    journal = out / ".factory" / "journal.ndjson"
    while process.poll() is None and not (journal.exists() and journal.stat().st_size > 0):
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate()
    assert process.returncode == 130, stderr
    line = stderr.strip().splitlines()[-1]
    assert line.startswith("interrupted: ") and f"/{len(dev_ids)} devices complete in {out}" in line
    assert "rerun the same command to resume" in line
    resumed = subprocess.run([*args, "--json"], env=env, capture_output=True, text=True, check=False)
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["complete"] == len(dev_ids)


def test_factory_line_token_without_a_profile_is_refused(data_dir: Path) -> None:
    result = dmboot(data_dir, "token", "create", "line-x", "--role", "factory-line")
    assert result.exit_code == 1
    assert "needs at least one enrollment profile" in result.output


def test_every_command_that_takes_a_token_takes_token_file() -> None:
    from typer.main import get_command

    from bootstrap.cli import app

    def walk(command: object, path: str) -> list[str]:
        subs = getattr(command, "commands", {})
        missing = [path for opts in [getattr(command, "params", [])] if any("--token" in p.opts for p in opts)
                   and not any("--token-file" in p.opts for p in opts)]
        return missing + [m for name, sub in subs.items() for m in walk(sub, f"{path} {name}")]

    assert walk(get_command(app), "dmboot") == []
