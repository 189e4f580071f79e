"""A refused request must not poison what the process remembers (issue 12, item 5).

Before the fix, the active issuing CA's ORM row was cached from the refused
request's session; the rollback detached it and every enrollment for the next
seconds failed with a 500 (DetachedInstanceError).
"""

from __future__ import annotations

from collections import Counter

from starlette.testclient import TestClient

from bootstrap.app import create_app
from bootstrap.runtime import Runtime
from tests.enrollment.support import ADMIN, GROUP
from tests.factories import make_csr


def _token(runtime: Runtime, dev_id: str) -> str:
    runtime.devices.register(dev_id, GROUP, actor=ADMIN)
    return runtime.devices.create_token(dev_id=dev_id, actor=ADMIN)[1]


def test_a_refused_csr_then_ten_valid_enrollments_give_no_server_error(configured: Runtime) -> None:
    bad, good = "IMEI:350000000000100", [f"IMEI:3500000000002{i:02d}" for i in range(10)]
    tokens = {dev_id: _token(configured, dev_id) for dev_id in [bad, *good]}
    with TestClient(create_app(runtime=configured), raise_server_exceptions=False) as client:
        configured.authorities.invalidate()  # as when the remembered CA is older than its TTL
        refused = client.post("/api/v1/enroll", json={"dev_id": bad, "token": tokens[bad],
                                                      "csr": make_csr(bad, ca=True).decode()})
        assert refused.status_code == 400, refused.text
        statuses = Counter(
            client.post("/api/v1/enroll", json={"dev_id": d, "token": tokens[d], "csr": make_csr(d).decode()})
            .status_code for d in good)
    assert statuses == Counter({200: 10})
