"""The `dmboot` command, run as a user runs it: a real process, a real data directory."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import Result
from typer.testing import CliRunner

from bootstrap.cli import app
from tests.conftest import postgres_schema
from tests.factories import make_csr

DMBOOT = [sys.executable, "-m", "bootstrap"]


def run(data_dir: Path, *args: str, database_url: str = "", check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "DMBOOT_DATA_DIR": str(data_dir),
        "DMBOOT_KEYSTORE_PASSPHRASE": "cli-test-pass",
        "DMBOOT_DATABASE_URL": database_url,
    }
    result = subprocess.run([*DMBOOT, *args], capture_output=True, text=True, env=env, check=False)
    if check and result.returncode != 0:
        raise AssertionError(f"dmboot {' '.join(args)} failed: {result.stderr}")
    return result


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def data_dir(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One initialized data directory per module and database (init takes seconds)."""
    path = tmp_path_factory.mktemp("cli") / "data"
    with contextlib.ExitStack() as stack:
        url = ""
        if request.param == "postgresql":
            url = stack.enter_context(postgres_schema(request.getfixturevalue("postgres_admin_url")))
        run(path, "init", database_url=url)
        path.joinpath(".url").write_text(url)
        yield path


def dm(data_dir: Path, *args: str, check: bool = True) -> Result:
    """Run a command in-process (the subprocess path is covered by init and the error tests)."""
    env = {
        "DMBOOT_DATA_DIR": str(data_dir),
        "DMBOOT_KEYSTORE_PASSPHRASE": "cli-test-pass",
        "DMBOOT_DATABASE_URL": data_dir.joinpath(".url").read_text(),
    }
    result = CliRunner().invoke(app, list(args), env=env)
    if check and result.exit_code != 0:
        raise AssertionError(f"dmboot {' '.join(args)} failed: {result.stderr}")
    return result


def test_init_twice_changes_nothing_and_says_so(data_dir: Path) -> None:
    before = sorted(p.name for p in data_dir.rglob("*"))
    second = run(data_dir, "init", database_url=data_dir.joinpath(".url").read_text())
    assert "nothing changed" in second.stdout
    assert sorted(p.name for p in data_dir.rglob("*")) == before
    report = json.loads(dm(data_dir, "init", "--json").stdout)
    assert report["changed"] is False and report["created"] == []


def test_ca_show(data_dir: Path) -> None:
    records = json.loads(dm(data_dir, "ca", "show", "--json").stdout)
    assert [(r["name"], r["kind"], r["active"]) for r in records] == [
        ("root", "root", False),
        ("issuing-1", "issuing", True),
    ]
    pem = dm(data_dir, "ca", "show", "--pem").stdout
    assert pem.count("BEGIN CERTIFICATE") == 2


@pytest.mark.parametrize(
    ("profile", "csr_kwargs"),
    [
        ("device", {"common_name": "IMEI:490154203237518"}),
        ("dm-server", {"common_name": "dm.example.net", "dns": ["dm.example.net"]}),
        ("data-repository", {"common_name": "repo.example.net", "dns": ["repo.example.net"]}),
    ],
)
def test_cert_issue_list_show(data_dir: Path, tmp_path: Path, profile: str, csr_kwargs: dict) -> None:
    csr = tmp_path / "req.pem"
    csr.write_bytes(make_csr(**csr_kwargs))
    out = tmp_path / "leaf.pem"
    issued = json.loads(
        dm(data_dir, "cert", "issue", "--csr", str(csr), "--cert-profile", profile, "--out", str(out), "--json").stdout
    )
    assert out.read_text().count("BEGIN CERTIFICATE") == 2  # leaf + issuing
    root = tmp_path / "root.pem"
    root.write_text(dm(data_dir, "ca", "show", "--pem").stdout)
    verify = subprocess.run(
        ["openssl", "verify", "-CAfile", str(root), "-untrusted", str(out), str(out)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert verify.returncode == 0, verify.stderr
    listed = json.loads(dm(data_dir, "cert", "list", "--json", "--profile", profile).stdout)
    assert listed[0]["serial"] == issued["serial"]  # newest first (init issued the service's own TLS cert)
    shown = json.loads(dm(data_dir, "cert", "show", issued["serial"], "--json").stdout)
    assert shown["fingerprint"] == issued["fingerprint"] and shown["status"] == "valid"
    assert dm(data_dir, "cert", "show", issued["serial"], "--pem").stdout.startswith("-----BEGIN CERTIFICATE")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["cert", "issue", "--csr", "/nonexistent.pem", "--cert-profile", "device"], "does not exist"),
        (["cert", "show", "abcdef"], "no certificate with serial abcdef"),
        (["cert", "issue", "--csr", "{garbage}", "--cert-profile", "device"], "not a PKCS#10"),
        (["cert", "issue", "--csr", "{csr}", "--cert-profile", "root"], "for CA certificates"),
        (["cert", "issue", "--csr", "{csr}", "--cert-profile", "gateway"], "unknown certificate profile"),
    ],
)
def test_errors_are_one_line_and_nonzero(data_dir: Path, tmp_path: Path, args: list[str], message: str) -> None:
    (tmp_path / "garbage").write_bytes(b"\x00\x01garbage")
    (tmp_path / "csr").write_bytes(make_csr())
    args = [a.format(garbage=tmp_path / "garbage", csr=tmp_path / "csr") for a in args]
    result = run(data_dir, *args, database_url=data_dir.joinpath(".url").read_text(), check=False)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.stderr
    assert "Traceback" not in result.stderr


def test_commands_before_init_say_to_run_init(tmp_path: Path) -> None:
    result = run(tmp_path / "absent", "cert", "list", check=False)
    assert result.returncode == 1
    assert result.stderr.strip().startswith(f"error: no data directory at {tmp_path / 'absent'};")


def test_help_everywhere() -> None:
    for args in ([], ["ca"], ["cert"], ["cert", "issue"], ["serve"], ["init"]):
        result = subprocess.run([*DMBOOT, *args, "--help"], capture_output=True, text=True, check=False)
        assert result.returncode == 0 and "Usage" in result.stdout, args
