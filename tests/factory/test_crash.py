"""Acceptance: SIGKILL the CLI mid-batch and rerun; two processes submit one batch at once.

Each test runs `dmboot factory run` as a real process. After the rerun every device
has exactly one live certificate (rows per DevID in the certificate table) and every
output directory is complete: all files, every certificate parses, chains to its
issuing CA and matches its key.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from sqlmodel import select

from bootstrap.runtime import Runtime
from bootstrap.services.issuance import Requester
from bootstrap.settings import Secret, Settings
from bootstrap.store.models import AuditEvent
from pki.keys import KeyType, generate_private_key
from tests.factories import make_csr
from tests.factory.conftest import add_profiles, assert_outputs_complete, certificates_per_device

PASSPHRASE = "factory-crash-test"
DMBOOT = [sys.executable, "-m", "bootstrap"]


def _settings(data_dir: Path, database_url: str = "") -> Settings:
    return Settings(data_dir=data_dir, database_url=database_url, keystore_passphrase=Secret(PASSPHRASE))


def _env(data_dir: Path, database_url: str = "") -> dict[str, str]:
    return {**os.environ, "DMBOOT_DATA_DIR": str(data_dir), "DMBOOT_KEYSTORE_PASSPHRASE": PASSPHRASE,
            "DMBOOT_DATABASE_URL": database_url}


def _init(data_dir: Path, database_url: str = "") -> None:
    runtime, _ = Runtime.initialize(_settings(data_dir, database_url), actor="test")
    add_profiles(runtime)
    runtime.close()


def _manifest(path: Path, count: int, prefix: str = "IMEI:35") -> list[str]:
    dev_ids = [f"{prefix}{i:013d}" for i in range(count)]
    path.write_text("dev_id\n" + "\n".join(dev_ids) + "\n")
    return dev_ids


def _journaled(out: Path) -> int:
    journal = out / ".factory" / "journal.ndjson"
    return journal.read_bytes().count(b"\n") if journal.exists() else 0


def _kill_when_journaled(process: subprocess.Popen[bytes], out: Path, at_least: int) -> int:
    """SIGKILL ``process`` once ``at_least`` devices are journaled; the count journaled then."""
    deadline = time.monotonic() + 600  # a wait for progress on a slow machine, not a test time limit
    while _journaled(out) < at_least:
        assert process.poll() is None, f"the run ended (exit {process.returncode}) before it could be killed"
        assert time.monotonic() < deadline, "the run made no progress"
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL
    return _journaled(out)


def _rerun(argv: list[str], env: dict[str, str]) -> dict[str, object]:
    result = subprocess.run([*argv, "--json"], env=env, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr + result.stdout
    report: dict[str, object] = json.loads(result.stdout)
    return report


def _check(data_dir: Path, out: Path, dev_ids: list[str], database_url: str = "") -> dict[str, str]:
    runtime = Runtime(_settings(data_dir, database_url))
    try:
        assert certificates_per_device(runtime, dev_ids) == {d: 1 for d in dev_ids}
    finally:
        runtime.close()
    return assert_outputs_complete(out, dev_ids, (out / "key-password").read_bytes().strip())


@pytest.mark.slow
def test_sigkill_in_the_middle_of_5000_devices_then_rerun(tmp_path: Path) -> None:
    data_dir, out = tmp_path / "data", tmp_path / "out"
    _init(data_dir)
    dev_ids = _manifest(tmp_path / "manifest.csv", 5000)
    argv = [*DMBOOT, "factory", "run", str(tmp_path / "manifest.csv"), "--profile", "line", "--out", str(out),
            "--keygen", "p256", "--batch-size", "250"]
    process = subprocess.Popen(argv, env=_env(data_dir), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    killed_at = _kill_when_journaled(process, out, 1500)
    assert killed_at < 5000
    report = _rerun(argv, _env(data_dir))
    assert report["skipped_from_journal"] == killed_at and report["complete"] == 5000 and report["failed"] == 0
    # Devices in flight at the kill were issued but not journaled: the rerun got them back, not anew.
    assert report["issued"] + report["existing"] == 5000 - killed_at  # type: ignore[operator]
    _check(data_dir, out, dev_ids)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Path, Path]]:
    """`dmboot serve` on a fresh data directory, with a factory station pinned to a client certificate."""
    data_dir = tmp_path / "data"
    _init(data_dir)
    runtime = Runtime(_settings(data_dir))
    key = generate_private_key(KeyType.P256)
    issued = runtime.issuance.issue_from_csr(make_csr("station-1", key=key), "device", Requester("test"))
    runtime.factory.stations.add("station-1", issued.pem, actor="test", allowed_profiles=["line"],
                                 device_quota=100_000)
    with runtime.database.session() as session:
        root = runtime.authorities.root_row(session).pem
    runtime.close()
    creds = tmp_path / "station"
    creds.mkdir()
    (creds / "cert.pem").write_text(issued.chain_pem)
    (creds / "key.pem").write_bytes(key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    (creds / "root.pem").write_text(root)
    with _server(data_dir, creds / "root.pem") as url:
        yield url, data_dir, creds


@contextmanager
def _server(data_dir: Path, root: Path) -> Iterator[str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    log = (data_dir.parent / "serve.log").open("wb")
    process = subprocess.Popen([*DMBOOT, "serve", "--port", str(port)], env=_env(data_dir), stdout=log,
                               stderr=subprocess.STDOUT)
    try:
        context = ssl.create_default_context(cafile=str(root))
        deadline = time.monotonic() + 60  # a cold start, not a test time limit
        while True:
            assert process.poll() is None, f"server exited with {process.returncode}"
            try:
                with urllib.request.urlopen(f"https://localhost:{port}/readyz", context=context,  # noqa: S310
                                            timeout=2):
                    break
            except OSError:
                assert time.monotonic() < deadline, "server did not become ready"
                time.sleep(0.2)
        yield f"https://localhost:{port}"
    finally:
        process.terminate()
        process.wait()
        log.close()


@pytest.mark.slow
def test_sigkill_against_a_server_over_https_with_a_station_certificate(served: tuple[str, Path, Path],
                                                                      tmp_path: Path) -> None:
    url, data_dir, creds = served
    out = tmp_path / "out"
    dev_ids = _manifest(tmp_path / "manifest.csv", 1200)
    argv = [*DMBOOT, "factory", "run", str(tmp_path / "manifest.csv"), "--profile", "line", "--out", str(out),
            "--keygen", "p256", "--batch-size", "100", "--jobs", "2", "--url", url, "--cacert",
            str(creds / "root.pem"), "--client-cert", str(creds / "cert.pem"), "--client-key", str(creds / "key.pem")]
    env = {**os.environ, "DMBOOT_DATA_DIR": str(tmp_path / "nowhere")}  # the station has no data directory
    process = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    killed_at = _kill_when_journaled(process, out, 300)
    report = _rerun(argv, env)
    assert report["complete"] == 1200 and report["failed"] == 0 and report["skipped_from_journal"] == killed_at
    _check(data_dir, out, dev_ids)
    runtime = Runtime(_settings(data_dir))
    try:
        with runtime.database.session() as session:
            actors = set(session.exec(select(AuditEvent.actor).where(AuditEvent.action == "cert.issue",
                                                                     AuditEvent.target != None)))  # noqa: E711
    finally:
        runtime.close()
    assert "station:station-1" in actors


@pytest.mark.slow
@pytest.mark.postgres
def test_two_processes_submitting_the_same_batch_get_one_set_of_certificates(postgres_url: str,
                                                                             tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    _init(data_dir, postgres_url)
    dev_ids = _manifest(tmp_path / "manifest.csv", 1000)
    (tmp_path / "password").write_text("the-same-batch-password-for-both-lines\n")
    runs = []
    for name in ("a", "b"):
        argv = [*DMBOOT, "factory", "run", str(tmp_path / "manifest.csv"), "--profile", "line", "--out",
                str(tmp_path / name), "--keygen", "p256", "--batch-size", "100", "--password-file",
                str(tmp_path / "password"), "--json"]
        runs.append(subprocess.Popen(argv, env=_env(data_dir, postgres_url), stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE))
    reports = []
    outputs = [process.communicate() for process in runs]  # wait for both before judging either
    for process, (stdout, stderr) in zip(runs, outputs, strict=True):
        assert process.returncode == 0, (stdout + stderr).decode()
        reports.append(json.loads(stdout))
    assert [r["complete"] for r in reports] == [1000, 1000]
    assert reports[0]["issued"] + reports[1]["issued"] == 1000  # each device was issued by exactly one of them
    runtime = Runtime(_settings(data_dir, postgres_url))
    try:
        assert certificates_per_device(runtime, dev_ids) == {d: 1 for d in dev_ids}
    finally:
        runtime.close()
    password = (tmp_path / "password").read_bytes().strip()
    (tmp_path / "a" / "key-password").write_bytes(password)
    (tmp_path / "b" / "key-password").write_bytes(password)
    assert assert_outputs_complete(tmp_path / "a", dev_ids, password) == assert_outputs_complete(
        tmp_path / "b", dev_ids, password)


@pytest.mark.slow
def test_a_token_station_streams_csrs_and_registers_over_https(served: tuple[str, Path, Path],
                                                              tmp_path: Path) -> None:
    url, data_dir, creds = served
    runtime = Runtime(_settings(data_dir))
    try:
        token = runtime.tokens.create("line-9", ["factory-line"], actor="test", allowed_profiles=["line"],
                                      device_quota=1000)
    finally:
        runtime.close()
    lines = ["dev_id,csr_path,model"]
    for i in range(300):
        dev_id = f"IMEI:37{i:013d}"
        (tmp_path / f"{i}.csr").write_bytes(make_csr(dev_id))
        lines.append(f"{dev_id},{i}.csr,X9")
    (tmp_path / "csrs.csv").write_text("\n".join(lines) + "\n")
    env = {**os.environ, "DMBOOT_FACTORY_TOKEN": token, "DMBOOT_DATA_DIR": str(tmp_path / "nowhere")}
    # 300 CSRs in one request: a body far over the 64 KiB limit other routes keep.
    argv = [*DMBOOT, "factory", "run", str(tmp_path / "csrs.csv"), "--profile", "line", "--out", str(tmp_path / "o"),
            "--batch-size", "300", "--url", url, "--cacert", str(creds / "root.pem")]
    report = _rerun(argv, env)
    assert (report["issued"], report["failed"]) == (300, 0)
    assert (tmp_path / "o" / "IMEI%3A370000000000299" / "chain.pem").read_text().count("BEGIN CERTIFICATE") == 2
    (tmp_path / "devices.csv").write_text("dev_id\nIMEI:380000000000001\nIMEI:380000000000002\n")
    registered = subprocess.run([*DMBOOT, "factory", "register", str(tmp_path / "devices.csv"), "--profile", "line",
                                 "--out", str(tmp_path / "tokens.json"), "--url", url, "--cacert",
                                 str(creds / "root.pem")], env=env, capture_output=True, text=True, check=False)
    assert registered.returncode == 0, registered.stderr
    devices = json.loads((tmp_path / "tokens.json").read_text())["devices"]
    assert [d["status"] for d in devices] == ["registered", "registered"]
    other = [*argv[:7], "other", "--out", str(tmp_path / "o2"), *argv[10:]]
    refused = subprocess.run(other, env=env, capture_output=True, text=True, check=False)
    assert refused.returncode == 1
    assert "HTTP 403 forbidden" in refused.stderr and "profile 'other'" in refused.stderr
