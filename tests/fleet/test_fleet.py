"""The tested deployment: real nginx in front of two `dmboot serve` replicas on PostgreSQL and OpenBao (AppRole).

Shows what docs/operations.md promises: a replica killed (SIGKILL) under load loses no
acknowledged enrollment while the other keeps serving, the killed one rejoins when it is
started again, and a CA rotation made on one replica is served by the other once its
cache of the active CA expires (polled, never timed).
"""

from __future__ import annotations

import itertools
import json
import os
import ssl
import subprocess
import sys
import threading
import urllib.request
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from cryptography.x509.oid import NameOID
from sqlmodel import select

from bootstrap.runtime import Runtime
from bootstrap.services.issuance import Requester
from bootstrap.settings import Settings
from bootstrap.store.models import CertificateRow, DeviceRow
from pki.keys import KeyType, PrivateKey, generate_private_key
from tests.enrollment.support import ADMIN, GROUP, configure
from tests.factories import make_csr
from tests.fleet.topology import (
    DEPLOY,
    Nginx,
    Replica,
    drop_database,
    post_json,
    replica_env,
    setup_database,
)
from tests.support.metrics import scrape, value
from tests.support.openbao import BaoServer
from tests.support.peers import require_peer
from tests.support.servers import free_port, poll

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.vault]

#: Devices enrolled through nginx while one replica is killed, by this many clients at once.
LOAD = 40
CLIENTS = 4
ENROLL_200 = {"route": "/api/v1/enroll", "method": "POST", "status": "200"}


@dataclass
class Fleet:
    nginx: Nginx
    replicas: tuple[Replica, Replica]
    #: In-process, configured like replica 1: registers devices and reads the database.
    runtime: Runtime
    context: ssl.SSLContext
    workdir: Path

    _numbers = itertools.count(1)

    def device(self) -> tuple[str, str]:
        """A newly registered device and its one-time token."""
        dev_id = f"IMEI:35{next(self._numbers):013d}"
        self.runtime.devices.register(dev_id, GROUP, actor=ADMIN)
        return dev_id, self.runtime.devices.create_token(dev_id=dev_id, actor=ADMIN)[1]

    def enroll(self, base: str, device: tuple[str, str] | None = None) -> tuple[str, int, dict[str, Any]]:
        dev_id, token = device or self.device()
        status, body = post_json(f"{base}/api/v1/enroll",
                                 {"dev_id": dev_id, "csr": make_csr(dev_id).decode(), "token": token}, self.context)
        return dev_id, status, body


def _tls_files(runtime: Runtime, folder: Path) -> tuple[Path, Path]:
    """nginx's own certificate (localhost), issued by the service's CA, and its key."""
    key = generate_private_key(KeyType.P256)
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
           .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
           .sign(key, hashes.SHA256()))
    issued = runtime.issuance.issue_from_csr(csr.public_bytes(Encoding.PEM), "dm-server", Requester(ADMIN))
    cert, key_file = folder / "front-chain.pem", folder / "front-key.pem"
    cert.write_text(issued.chain_pem)
    key_file.write_bytes(_pem_key(key))
    return cert, key_file


def _pem_key(key: PrivateKey) -> bytes:
    return key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())


@pytest.fixture(scope="module")
def fleet(postgres_admin_url: str, bao_binary: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    nginx_binary = require_peer("nginx")
    workdir = tmp_path_factory.mktemp("fleet")
    with ExitStack() as stack:
        role, database, database_url = setup_database(postgres_admin_url)
        stack.callback(drop_database, postgres_admin_url, role, database)
        (workdir / "bao").mkdir()
        bao = BaoServer(bao_binary, workdir / "bao")
        bao.start()
        stack.callback(bao.stop)
        etc = workdir / "etc"
        setup = {**os.environ, "BAO_ADDR": bao.addr, "BAO_TOKEN": bao.root_token, "BAO": str(bao_binary),
                 "DMBOOT": str(Path(sys.executable).parent / "dmboot")}
        for _ in range(2):  # the setup script is idempotent: a second run changes nothing that matters
            _run([str(DEPLOY / "openbao" / "setup-approle.sh"), str(etc)], setup)
        nginx_port = free_port()
        base = {"DMBOOT_DATABASE_URL": database_url, "DMBOOT_VAULT_ADDR": bao.addr,
                "DMBOOT_VAULT_ROLE_ID": (etc / "role-id").read_text().strip(),
                "DMBOOT_VAULT_SECRET_ID_FILE": str(etc / "secret-id"),
                "DMBOOT_PUBLIC_URL": f"https://localhost:{nginx_port}"}
        envs = [replica_env(index, base, workdir) for index in (1, 2)]
        _run([sys.executable, "-m", "bootstrap", "init", "--ca-keys", "vault-transit"], envs[0])
        runtime = Runtime(Settings.load(envs[0]))
        stack.callback(runtime.close)
        configure(runtime)
        root = workdir / "root.pem"
        with runtime.database.session() as session:
            root.write_text(runtime.authorities.root_row(session).pem)
        context = ssl.create_default_context(cafile=str(root))
        replicas = (Replica(1, envs[0], workdir, context), Replica(2, envs[1], workdir, context))
        for replica in replicas:
            stack.callback(replica.stop)
            replica.start()
        cert, key = _tls_files(runtime, workdir)
        (workdir / "nginx").mkdir()
        nginx = Nginx(nginx_binary, workdir / "nginx", nginx_port)
        stack.callback(nginx.stop)
        nginx.start({
            "DMBOOT_LISTEN": f"127.0.0.1:{nginx_port}", "DMBOOT_SERVER_NAME": "localhost",
            "DMBOOT_TLS_CERT": str(cert), "DMBOOT_TLS_KEY": str(key),
            "DMBOOT_REPLICA_1": f"127.0.0.1:{envs[0]['DMBOOT_PORT']}",
            "DMBOOT_REPLICA_2": f"127.0.0.1:{envs[1]['DMBOOT_PORT']}",
            "DMBOOT_UPSTREAM_CA": str(root), "DMBOOT_UPSTREAM_NAME": "localhost",
        }, context)
        yield Fleet(nginx, replicas, runtime, context, workdir)


def _run(argv: list[str], env: dict[str, str]) -> str:
    done = subprocess.run(argv, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, f"{argv} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def _leaf(body: dict[str, Any]) -> x509.Certificate:
    return x509.load_pem_x509_certificates(str(body["certificate_chain_pem"]).encode())[0]


def test_a_replica_killed_under_load_loses_no_acknowledged_enrollment(fleet: Fleet) -> None:
    one, two = fleet.replicas
    devices = [fleet.device() for _ in range(LOAD)]
    results: dict[str, tuple[int, dict[str, Any], bool]] = {}
    killed = threading.Event()
    lock = threading.Lock()

    def enroll(device: tuple[str, str]) -> None:
        after_kill = killed.is_set()  # set only once the replica is gone: requests started later must succeed
        dev_id, status, body = fleet.enroll(fleet.nginx.url, device)
        with lock:
            results[dev_id] = (status, body, after_kill)

    def acknowledged() -> int:
        with lock:
            return sum(1 for status, _, _ in results.values() if status == 200)

    with ThreadPoolExecutor(CLIENTS) as pool:
        futures = [pool.submit(enroll, device) for device in devices]
        poll(acknowledged, lambda n: n >= LOAD // 4, interval=0.02)
        one.kill()
        killed.set()
        for future in futures:
            future.result()

    statuses = Counter(status for status, _, _ in results.values())
    after = [status for status, _, after_kill in results.values() if after_kill]
    # Only requests in flight on the killed replica failed (nginx: 502), at most one per client.
    assert set(statuses) <= {200, 502} and statuses[502] <= CLIENTS, statuses
    assert after and set(after) == {200}, Counter(after)  # the other replica served everything sent after the kill
    assert value(scrape(two.metrics_url), "dmboot_http_requests_total", **ENROLL_200) >= len(after)
    # Every acknowledged enrollment is recorded: the device's certificate, as the device received it.
    with fleet.runtime.database.session() as session:
        for dev_id, (status, body, _) in results.items():
            if status != 200:
                continue
            row = session.exec(select(CertificateRow).where(CertificateRow.serial_hex == body["serial"])).one()
            assert (row.device_id, row.status) == (dev_id, "valid")
            assert x509.load_pem_x509_certificate(row.pem.encode()) == _leaf(body)
            device = session.exec(select(DeviceRow).where(DeviceRow.dev_id == dev_id)).one()
            assert device.current_serial == body["serial"]

    one.start()

    def enrollments_served_by_one() -> float:
        _, status, body = fleet.enroll(fleet.nginx.url)
        assert status == 200, body
        return value(scrape(one.metrics_url), "dmboot_http_requests_total", **ENROLL_200)

    # The restarted replica rejoins: nginx tries it again after fail_timeout and sends it enrollments.
    assert poll(enrollments_served_by_one, lambda n: n > 0, interval=0.5) > 0


def test_a_ca_rotation_on_one_replica_is_served_by_the_other(fleet: Fleet) -> None:
    one, two = fleet.replicas
    current = json.loads(_run([sys.executable, "-m", "bootstrap", "ca", "rotate", "--json"], one.env))["current"]
    with fleet.runtime.database.session() as session:
        row = next(r for r in fleet.runtime.authorities.all_rows(session) if r.name == current)
    issuing = x509.load_pem_x509_certificate(row.pem.encode())

    def issuer_seen_by_two() -> x509.Name:
        _, status, body = fleet.enroll(two.url)
        assert status == 200, body
        return _leaf(body).issuer

    # Replica 2 keeps the active CA for a few seconds (its cache time), then issues under the new one.
    assert poll(issuer_seen_by_two, lambda name: name == issuing.subject, interval=0.5) == issuing.subject
    _, status, body = fleet.enroll(fleet.nginx.url)
    assert status == 200
    _leaf(body).verify_directly_issued_by(issuing)


def test_nginx_forwards_the_client_certificate_and_never_the_clients_header(fleet: Fleet) -> None:
    key = generate_private_key(KeyType.P256)
    issued = fleet.runtime.issuance.issue_from_csr(make_csr("IMEI:350000000000555", key=key), "device",
                                                   Requester(ADMIN))
    (fleet.workdir / "device.pem").write_text(issued.chain_pem)
    (fleet.workdir / "device.key").write_bytes(_pem_key(key))
    with_cert = ssl.create_default_context(cafile=str(fleet.workdir / "root.pem"))
    with_cert.load_cert_chain(fleet.workdir / "device.pem", fleet.workdir / "device.key")
    seen = _whoami(fleet.nginx.url, with_cert, {})
    assert seen["client_certificate"]["fingerprint"] == issued.fingerprint
    forged = _whoami(fleet.nginx.url, fleet.context, {"X-SSL-Client-Cert": quote(issued.pem)})
    assert forged["client_certificate"] is None


def _whoami(base: str, context: ssl.SSLContext, headers: dict[str, str]) -> dict[str, Any]:
    request = urllib.request.Request(f"{base}/api/v1/whoami", headers=headers)  # noqa: S310 - local URL
    with urllib.request.urlopen(request, context=context, timeout=30) as response:  # noqa: S310
        return dict(json.loads(response.read()))


def test_replicas_log_json_and_export_metrics(fleet: Fleet) -> None:
    for replica in fleet.replicas:
        samples = scrape(replica.metrics_url)
        assert value(samples, "dmboot_backend_up", backend="database") == 1
        assert value(samples, "dmboot_backend_up", backend="secrets") == 1
        assert value(samples, "dmboot_audit_head_seq") > 0
        for log in replica.logs:
            lines = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]  # all JSON
            requests = [x for x in lines if x["logger"] == "dmboot.access"]
            assert requests, log
            # nginx's $request_id (32 hex digits) reaches the replica's log line.
            assert any(len(x["request_id"]) == 32 and x["route"] == "/api/v1/enroll" for x in requests)
