"""Unauthenticated devices are told they were refused, never why; the audit trail keeps the reason.

A used token, an unknown DevID and a wrong token must be indistinguishable to the
caller on each device channel (one 401 body per channel), while the audit event
names the specific reason.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from starlette.testclient import TestClient

from bootstrap.app import create_app
from bootstrap.runtime import Runtime
from tests.enrollment.support import ADMIN, GROUP, last_event
from tests.factories import make_csr

REGISTERED = "IMEI:350000000000071"
UNKNOWN = "IMEI:350000000000072"


@pytest.fixture
def client(configured: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(runtime=configured)) as test_client:
        yield test_client


def _used_token(runtime: Runtime, client: TestClient) -> str:
    runtime.devices.register(REGISTERED, GROUP, actor=ADMIN)
    token = runtime.devices.create_token(dev_id=REGISTERED, actor=ADMIN)[1]
    first = client.post("/api/v1/enroll", json={"dev_id": REGISTERED, "csr": make_csr(REGISTERED).decode(),
                                                "token": token})
    assert first.status_code == 200, first.text
    return token


def _refusal(response: Any) -> tuple[int, str, str]:
    body = response.json()
    return response.status_code, body["type"], body["detail"]


def _cases(runtime: Runtime, client: TestClient) -> dict[str, tuple[str, str]]:
    used = _used_token(runtime, client)
    return {"used token": (REGISTERED, used), "unknown DevID": (UNKNOWN, "dmt_" + "x" * 40),
            "wrong token": (REGISTERED, "dmt_" + "y" * 40)}


def test_json_enroll_gives_one_answer_for_every_refusal(client: TestClient, configured: Runtime) -> None:
    answers, reasons = set(), []
    for dev_id, token in _cases(configured, client).values():
        response = client.post("/api/v1/enroll", json={"dev_id": dev_id, "csr": make_csr(dev_id).decode(),
                                                       "token": token})
        answers.add(_refusal(response))
        reasons.append(json.loads(last_event(configured).detail)["reason"])
    assert len(answers) == 1 and next(iter(answers))[0] == 401, answers
    detail = next(iter(answers))[2]
    assert "used already" not in detail and "not registered" not in detail and "IMEI" not in detail
    # The audit trail keeps the specific reasons, all different.
    assert len(set(reasons)) == 3 and any("used" in r for r in reasons), reasons


def test_est_gives_one_answer_for_every_refusal(client: TestClient, configured: Runtime) -> None:
    answers = set()
    for dev_id, token in _cases(configured, client).values():
        basic = base64.b64encode(f"{dev_id}:{token}".encode()).decode()
        response = client.post("/.well-known/est/simpleenroll", content=_est_body(make_csr(dev_id)),
                               headers={"authorization": f"Basic {basic}", "content-type": "application/pkcs10"})
        answers.add(_refusal(response))
    assert len(answers) == 1 and next(iter(answers))[0] == 401, answers


def _est_body(csr_pem: bytes) -> bytes:
    return base64.encodebytes(x509.load_pem_x509_csr(csr_pem).public_bytes(Encoding.DER))
