"""The admin API of TPM manufacturer CAs; a disabled CA no longer admits EK certificates."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from cryptography.hazmat.primitives.serialization import Encoding
from starlette.testclient import TestClient

from bootstrap.app import create_app
from bootstrap.runtime import Runtime
from tests.enrollment.support import ADMIN, GROUP, configure
from tests.support.tpm import SoftTpm, TpmMaker
from tests.tpm.device import CHALLENGE, TpmDevice, chain_der

DEV = "IMEI:350000000000018"


@pytest.fixture
def client(runtime: Runtime) -> Iterator[TestClient]:
    configure(runtime, attestation=("tpm",))
    runtime.devices.register(DEV, GROUP, actor=ADMIN)
    with TestClient(create_app(runtime=runtime)) as test_client:
        yield test_client


def test_register_list_and_disable_a_tpm_maker(client: TestClient, runtime: Runtime, tpm_maker: TpmMaker,
                                               tpm_device: SoftTpm) -> None:
    admin = {"authorization": "Bearer " + runtime.tokens.create("admin", ["security-admin"], actor=ADMIN)}
    reader = {"authorization": "Bearer " + runtime.tokens.create("auditor", ["auditor"], actor=ADMIN)}
    base = f"/api/v1/profiles/{GROUP}/tpm-cas"
    pem = tpm_maker.root.public_bytes(Encoding.PEM).decode()
    assert client.post(base, json={"name": "swtpm", "pem": pem}, headers=reader).status_code == 403
    created = client.post(base, json={"name": "swtpm", "pem": pem}, headers=admin)
    assert created.status_code == 201, created.text
    assert created.json()["subject"] == "CN=swtpm-localca-rootca"
    again = client.post(base, json={"name": "other", "pem": pem}, headers=admin)
    assert again.status_code == 409 and again.headers["content-type"] == "application/problem+json"
    assert [r["name"] for r in client.get(base, headers=admin).json()] == ["swtpm"]

    device = TpmDevice(tpm_device, DEV)
    body = device.round1(chain=chain_der([tpm_maker.intermediate]))
    assert client.post(CHALLENGE, json=body).status_code == 200
    disabled = client.patch(f"{base}/swtpm", json={"enabled": False}, headers=admin)
    assert disabled.status_code == 200 and disabled.json()["enabled"] is False
    assert client.post(CHALLENGE, json=body).status_code == 401
    missing = client.get("/api/v1/profiles/nope/tpm-cas", headers=admin)
    assert missing.status_code == 404 and missing.headers["content-type"] == "application/problem+json"


def test_discovery_names_the_tpm_exchange(client: TestClient) -> None:
    document = client.get("/.well-known/dm-bootstrap").json()
    assert "tpm" in document["attestation_methods"]
    assert document["tpm"]["challenge"].endswith(CHALLENGE) and document["tpm"]["enroll"].endswith("/enroll/tpm")
    assert document["tpm"]["resident_key_policy"] == "2.25.99537145608391590891256349739235960163.1"
