"""PostgreSQL stopped and started under load: 503 + Retry-After meanwhile, nothing lost or doubled after.

A throwaway cluster of our own (the shared test database stays up for everyone
else) is stopped while enrollments and admin reads run, then started again.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlmodel import func, select
from starlette.testclient import TestClient

from bootstrap.app import create_app
from bootstrap.runtime import Runtime
from bootstrap.settings import Secret, Settings
from bootstrap.store.models import CertificateRow
from tests.enrollment.support import ADMIN, GROUP, configure
from tests.factories import make_csr
from tests.support.pgcluster import Cluster, throwaway_cluster

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

DEVICES = 24


@dataclass
class Outcomes:
    during: list[tuple[int, str, str]] = field(default_factory=list)  # (status, content-type, retry-after)
    enrolled: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    with throwaway_cluster() as running:
        yield running


@pytest.fixture
def service(cluster: Cluster, tmp_path: Path) -> Iterator[tuple[Runtime, TestClient]]:
    settings = Settings(data_dir=tmp_path / "data", database_url=cluster.url,
                        keystore_passphrase=Secret("test-" + secrets.token_hex(8)),
                        public_url="https://dmboot.test", server_names=("localhost",))
    runtime, _ = Runtime.initialize(settings, actor="test")
    configure(runtime)
    try:
        with TestClient(create_app(runtime=runtime)) as client:
            yield runtime, client
    finally:
        runtime.close()


def _issued_per_device(runtime: Runtime) -> dict[str, int]:
    with runtime.database.session() as session:
        rows = session.exec(select(CertificateRow.device_id, func.count()).group_by(CertificateRow.device_id)).all()
    return {str(dev): int(n) for dev, n in rows if dev}


def test_database_stopped_and_started_under_load(cluster: Cluster, service: tuple[Runtime, TestClient],
                                                 caplog: pytest.LogCaptureFixture) -> None:
    runtime, client = service
    tokens = {}
    for i in range(DEVICES):
        dev_id = f"IMEI:35000000000{i:04d}"
        runtime.devices.register(dev_id, GROUP, actor=ADMIN)
        tokens[dev_id] = runtime.devices.create_token(dev_id=dev_id, actor=ADMIN)[1]
    bearer = {"authorization": "Bearer " + runtime.tokens.create("auditor", ["auditor"], actor=ADMIN)}
    outcomes = Outcomes()
    stopped = threading.Event()

    def enroll(dev_id: str) -> None:
        body = {"dev_id": dev_id, "csr": make_csr(dev_id).decode(), "token": tokens[dev_id]}
        while True:  # a device retries after a 503, as Retry-After tells it to
            response = client.post("/api/v1/enroll", json=body)
            if response.status_code == 200:
                with outcomes.lock:
                    outcomes.enrolled.add(dev_id)
                return
            with outcomes.lock:
                outcomes.during.append((response.status_code, response.headers.get("content-type", ""),
                                        response.headers.get("retry-after", "")))
            if response.status_code != 503:
                return
            time.sleep(0.02)  # keep the load on through the outage

    def read_while_down() -> None:
        stopped.wait()
        for path in ("/api/v1/devices", "/api/v1/certificates", "/readyz", "/ca/root.pem"):
            response = client.get(path, headers=bearer if path.startswith("/api") else {})
            with outcomes.lock:
                outcomes.during.append((response.status_code, response.headers.get("content-type", ""),
                                        response.headers.get("retry-after", "")))
            assert str(cluster.port) not in response.text

    caplog.set_level(logging.WARNING)
    with ThreadPoolExecutor(9) as pool:
        futures = [pool.submit(read_while_down)]
        futures += [pool.submit(enroll, dev_id) for dev_id in list(tokens)[: DEVICES // 3]]
        cluster.stop()
        stopped.set()
        futures += [pool.submit(enroll, dev_id) for dev_id in list(tokens)[DEVICES // 3:]]
        while sum(1 for status, _, _ in outcomes.during if status == 503) < 40:
            time.sleep(0.05)  # the outage has been seen by enough requests
        cluster.start()
        for future in futures:
            future.result()

    refusals = outcomes.during
    assert refusals, "the outage was never seen"
    assert {status for status, _, _ in refusals} == {503}, refusals
    assert all(ctype == "application/problem+json" and int(retry) > 0 for _, ctype, retry in refusals)
    # Afterwards: every device enrolled once, none twice, none lost.
    assert outcomes.enrolled == set(tokens)
    assert _issued_per_device(runtime) == dict.fromkeys(tokens, 1)
    # One log line per failure class and interval, not a traceback per request.
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"
    outage_lines = [r for r in caplog.records if r.name == "dmboot.failures"]
    assert 1 <= len(outage_lines) <= 6, [r.getMessage() for r in outage_lines]
    assert len(outage_lines) < len(refusals)
