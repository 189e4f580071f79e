"""SIGKILL of `dmboot serve` under load: what a client got a 200 for is durable (issue 12, item 2).

Group commit answers a request only after the transaction holding it committed;
a kill in the middle of a batch loses the batch, never an answered enrollment,
and the audit chain stays whole.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import ssl
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlmodel import select

from bootstrap.runtime import Runtime
from bootstrap.services.audit_verify import verify_chain
from bootstrap.settings import Secret, Settings
from bootstrap.store.models import AuditEvent, CertificateRow
from tests.conftest import postgres_schema
from tests.enrollment.support import ADMIN, GROUP, configure
from tests.factories import make_csr
from tests.support.servers import free_port, wait_ready

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

PASSPHRASE = "sigkill-test-passphrase"
DEVICES = 240
KILL_AFTER = 40  # answered enrollments before the kill


def _post(url: str, body: bytes, context: ssl.SSLContext) -> tuple[int, dict[str, object]]:
    request = urllib.request.Request(url, data=body, method="POST",  # noqa: S310
                                     headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, context=context, timeout=60) as response:  # noqa: S310
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, {}
    except (OSError, http.client.HTTPException):  # the server died under this request (maybe mid-body): no answer
        return 0, {}


def test_every_answered_enrollment_survives_a_sigkill(postgres_admin_url: str, tmp_path: Path) -> None:
    with postgres_schema(postgres_admin_url) as database_url:
        data_dir = tmp_path / "data"
        settings = Settings(data_dir=data_dir, database_url=database_url, keystore_passphrase=Secret(PASSPHRASE))
        runtime, _ = Runtime.initialize(settings)
        try:
            configure(runtime)
            tokens = {}
            for i in range(DEVICES):
                dev_id = f"IMEI:35000000001{i:04d}"
                runtime.devices.register(dev_id, GROUP, actor=ADMIN)
                tokens[dev_id] = runtime.devices.create_token(dev_id=dev_id, actor=ADMIN)[1]
            with runtime.database.session() as session:
                root_pem = tmp_path / "root.pem"
                root_pem.write_text(runtime.authorities.root_row(session).pem)
        finally:
            runtime.close()
        bodies = {d: json.dumps({"dev_id": d, "token": t, "csr": make_csr(d).decode()}).encode()
                  for d, t in tokens.items()}
        env = {**os.environ, "DMBOOT_DATA_DIR": str(data_dir), "DMBOOT_DATABASE_URL": database_url,
               "DMBOOT_KEYSTORE_PASSPHRASE": PASSPHRASE}
        port = free_port()
        log = tmp_path / "serve.log"
        with log.open("wb") as out:
            process = subprocess.Popen([sys.executable, "-m", "bootstrap", "serve", "--port", str(port)], env=env,
                                       stdout=out, stderr=subprocess.STDOUT)
        context = ssl.create_default_context(cafile=str(root_pem))
        url = f"https://localhost:{port}"
        try:
            wait_ready(f"{url}/healthz", context, process, log)
            answered: dict[str, str] = {}
            lock = threading.Lock()

            def enroll(dev_id: str) -> None:
                status, body = _post(f"{url}/api/v1/enroll", bodies[dev_id], context)
                if status == 200:
                    with lock:
                        answered[dev_id] = str(body["serial"])
                        if len(answered) == KILL_AFTER:
                            os.kill(process.pid, signal.SIGKILL)

            with ThreadPoolExecutor(max_workers=32) as pool:
                list(pool.map(enroll, list(bodies)))
        finally:
            if process.poll() is None:
                process.kill()
            process.wait(30)
        assert process.returncode == -signal.SIGKILL
        assert KILL_AFTER <= len(answered) < DEVICES  # killed under load, mid-way
        runtime = Runtime(settings)
        try:
            with runtime.database.session() as session:
                recorded = {r.device_id: r.serial_hex for r in session.exec(select(CertificateRow).where(
                    CertificateRow.device_id.in_(list(answered))))}  # type: ignore[union-attr]
                audited = set(session.exec(select(AuditEvent.target).where(
                    AuditEvent.action == "device.enroll", AuditEvent.outcome == "success")))
            report = verify_chain(runtime.database)
        finally:
            runtime.close()
        assert recorded == answered
        assert set(answered) <= audited
        assert report.ok, report.problems
