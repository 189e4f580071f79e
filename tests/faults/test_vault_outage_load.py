"""OpenBao sealed and unsealed under enrollment load: 503 + Retry-After meanwhile, nothing lost or doubled after.

A production-mode OpenBao (Raft) holds the CA keys (Vault Transit); devices enroll
over the JSON API from several threads, retrying after each 503, while the vault is
sealed and then unsealed.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlmodel import func, select

from bootstrap.store.models import CertificateRow
from tests.enrollment.support import ADMIN, GROUP, configure
from tests.factories import make_csr
from tests.secrets.vault.test_outages import Service, live_vault, service, vault  # noqa: F401 - fixtures
from tests.support.openbao import BaoServer

pytestmark = [pytest.mark.slow, pytest.mark.vault]

DEVICES = 16


def test_vault_sealed_and_unsealed_under_load(service: Service, live_vault: BaoServer) -> None:  # noqa: F811
    runtime, client = service.runtime, service.client
    configure(runtime)
    tokens = {}
    for i in range(DEVICES):
        dev_id = f"IMEI:35100000000{i:04d}"
        runtime.devices.register(dev_id, GROUP, actor=ADMIN)
        tokens[dev_id] = runtime.devices.create_token(dev_id=dev_id, actor=ADMIN)[1]
    refusals: list[tuple[int, str, str]] = []
    enrolled: set[str] = set()
    lock = threading.Lock()

    def enroll(dev_id: str) -> None:
        body = {"dev_id": dev_id, "csr": make_csr(dev_id).decode(), "token": tokens[dev_id]}
        while True:
            response = client.post("/api/v1/enroll", json=body)
            if response.status_code == 200:
                with lock:
                    enrolled.add(dev_id)
                return
            with lock:
                refusals.append((response.status_code, response.headers.get("content-type", ""),
                                 response.headers.get("retry-after", "")))
            if response.status_code != 503:
                return
            time.sleep(0.05)

    with ThreadPoolExecutor(6) as pool:
        futures = [pool.submit(enroll, dev_id) for dev_id in list(tokens)[:4]]
        live_vault.seal()
        futures += [pool.submit(enroll, dev_id) for dev_id in list(tokens)[4:]]
        while sum(1 for status, _, _ in refusals if status == 503) < 20:
            time.sleep(0.05)
        live_vault.unseal()
        for future in futures:
            future.result()

    assert refusals and {status for status, _, _ in refusals} == {503}, refusals
    assert all(ctype == "application/problem+json" and int(retry) > 0 for _, ctype, retry in refusals)
    assert enrolled == set(tokens)  # none lost: every retried device got its certificate
    with runtime.database.session() as session:
        rows = session.exec(select(CertificateRow.device_id, func.count()).group_by(CertificateRow.device_id)).all()
    assert {str(d): int(n) for d, n in rows if d} == dict.fromkeys(tokens, 1)  # none twice
