"""The factory HTTP API in process: authentication, 403s with clear bodies, JSON and NDJSON, registrations."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography import x509
from sqlmodel import select
from starlette.testclient import TestClient

from bootstrap.app import create_app
from bootstrap.auth.attestation import Evidence
from bootstrap.errors import AuthenticationFailed
from bootstrap.runtime import Runtime
from bootstrap.services.issuance import Requester
from bootstrap.store.models import ApiTokenRow, AuditEvent
from pki.keys import KeyType, generate_private_key
from tests.factories import make_csr
from tests.factory.conftest import certificate_count, certificates_per_device

PASSWORD = "web-test-password-0123456789"
BATCHES = "/api/v1/factory/batches"


@pytest.fixture
def client(line: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(runtime=line)) as test_client:
        yield test_client


def _token(runtime: Runtime, *, quota: int | None = None, profiles: tuple[str, ...] = ("line",),
           roles: tuple[str, ...] = ("factory-line",), name: str = "line-1") -> dict[str, str]:
    token = runtime.tokens.create(name, list(roles), actor="test", allowed_profiles=list(profiles),
                                  device_quota=quota)
    return {"Authorization": f"Bearer {token}"}


def _items(count: int, prefix: str = "IMEI:35") -> list[dict[str, Any]]:
    return [{"dev_id": f"{prefix}{i:013d}", "csr": make_csr(f"{prefix}{i:013d}").decode()} for i in range(count)]


def _ndjson(header: dict[str, Any], items: list[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(doc).encode() + b"\n" for doc in [header, *items])


def _lines(body: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in body.splitlines()]


def test_a_station_outside_its_profiles_gets_403_and_nothing_is_issued(line: Runtime, client: TestClient) -> None:
    before = certificate_count(line)
    headers = {**_token(line), "Idempotency-Key": "b1"}
    response = client.post(BATCHES, json={"profile": "other", "items": _items(2)}, headers=headers)
    assert response.status_code == 403
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["type"] == "urn:dmboot:problem:forbidden" and problem["field"] == "profile"
    assert problem["detail"] == ("token:line-1 may not provision devices of enrollment profile 'other'"
                                 " (its profiles: line); nothing was issued")
    assert certificate_count(line) == before


@pytest.mark.parametrize("kind", ["json", "ndjson"])
def test_a_station_over_its_quota_gets_403_and_nothing_is_issued(line: Runtime, client: TestClient,
                                                                   kind: str) -> None:
    before = certificate_count(line)
    headers = {**_token(line, quota=2), "Idempotency-Key": "b1"}
    items = _items(3)
    if kind == "json":
        response = client.post(BATCHES, json={"profile": "line", "items": items}, headers=headers)
    else:
        response = client.post(BATCHES, content=_ndjson({"profile": "line"}, items),
                               headers={**headers, "Content-Type": "application/x-ndjson"})
    assert response.status_code == 403
    problem = response.json()
    assert problem["type"] == "urn:dmboot:problem:quota-exceeded" and problem["field"] == "quota"
    assert "nothing" in problem["detail"] and "token:line-1" in problem["detail"]
    assert certificate_count(line) == before
    with line.database.session() as session:
        assert session.exec(select(ApiTokenRow.device_quota).where(ApiTokenRow.name == "line-1")).one() == 2
        refusal = session.exec(select(AuditEvent).where(AuditEvent.action == "factory.batch")).all()
    assert [e.outcome for e in refusal] == ["failure"]


@pytest.mark.parametrize(("headers", "status"), [
    ({}, 401),
    ({"Authorization": "Bearer dmb_not-a-token"}, 401),
], ids=["no-credentials", "unknown-token"])
def test_a_caller_without_credentials_is_refused(client: TestClient, headers: dict[str, str], status: int) -> None:
    response = client.post(BATCHES, json={"profile": "line", "items": _items(1)},
                           headers={**headers, "Idempotency-Key": "k"})
    assert response.status_code == status


def test_a_token_without_the_factory_role_gets_403(line: Runtime, client: TestClient) -> None:
    headers = {**_token(line, roles=("auditor",)), "Idempotency-Key": "k"}
    response = client.post(BATCHES, json={"profile": "line", "items": _items(1)}, headers=headers)
    assert response.status_code == 403 and "factory:provision" in response.json()["detail"]


def test_a_batch_needs_an_idempotency_key(line: Runtime, client: TestClient) -> None:
    response = client.post(BATCHES, json={"profile": "line", "items": _items(1)}, headers=_token(line))
    assert response.status_code == 400 and response.json()["field"] == "Idempotency-Key"


def test_an_idempotent_retry_returns_the_same_serials(line: Runtime, client: TestClient) -> None:
    headers = {**_token(line), "Idempotency-Key": "batch-7"}
    items = _items(3)
    body = {"profile": "line", "items": items}
    first = client.post(BATCHES, json=body, headers=headers).json()
    again = client.post(BATCHES, json=body, headers=headers).json()
    assert [i["status"] for i in first["items"]] == ["issued"] * 3
    assert [i["status"] for i in again["items"]] == ["existing"] * 3
    assert [i["serial"] for i in again["items"]] == [i["serial"] for i in first["items"]]
    assert first["batch"]["issued"] == 3 and again["batch"]["existing"] == 3
    issuer = first["items"][0]["issuer"]
    assert first["chains"][issuer].count("BEGIN CERTIFICATE") == 1
    assert first["bootstrap"]["account"] == {"server_id": "dm1", "server_uri": "https://dm.example.net/dm",
                                             "name": "Line DM", "permitted_moids": [], "notification": {}}
    assert certificates_per_device(line) == {i["dev_id"]: 1 for i in items}


def test_an_ndjson_batch_streams_and_retries_give_the_same_keys(line: Runtime, client: TestClient) -> None:
    headers = {**_token(line), "Idempotency-Key": "stream-1", "Content-Type": "application/x-ndjson"}
    items = _items(2) + [{"dev_id": f"KEY:{i}", "keygen": {"key_type": "p256"}} for i in range(300)]
    body = _ndjson({"profile": "line", "password": PASSWORD}, items)
    first = client.post(BATCHES, content=body, headers=headers)
    assert first.status_code == 200 and first.headers["content-type"].startswith("application/x-ndjson")
    lines = _lines(first.text)
    assert [d["type"] for d in lines[:2]] == ["batch", "chain"] and lines[-1]["type"] == "summary"
    outcomes = [d for d in lines if d["type"] == "item"]
    assert [o["dev_id"] for o in outcomes] == [i["dev_id"] for i in items]
    assert lines[-1]["issued"] == 302 and lines[-1]["failed"] == 0
    assert all(o["key"]["format"] == "pkcs8" for o in outcomes[2:])
    again = [d for d in _lines(client.post(BATCHES, content=body, headers=headers).text) if d["type"] == "item"]
    assert [(o["status"], o["serial"], o.get("key")) for o in again] == [
        ("existing", o["serial"], o.get("key")) for o in outcomes]


def test_a_bad_item_in_a_stream_fails_alone(line: Runtime, client: TestClient) -> None:
    headers = {**_token(line), "Idempotency-Key": "s", "Content-Type": "application/x-ndjson"}
    items = [{"dev_id": "IMEI:350000000000009", "csr": make_csr("IMEI:359999999999999").decode()}, *_items(1)]
    lines = _lines(client.post(BATCHES, content=_ndjson({"profile": "line"}, items), headers=headers).text)
    outcomes = [d for d in lines if d["type"] == "item"]
    assert outcomes[0]["status"] == "failed" and outcomes[0]["error"]["type"] == "urn:dmboot:problem:csr-policy"
    assert outcomes[1]["status"] == "issued"


def test_keygen_without_a_batch_password_fails_the_items(line: Runtime, client: TestClient) -> None:
    headers = {**_token(line), "Idempotency-Key": "nopw"}
    body = {"profile": "line", "items": [{"dev_id": "KEY:1", "keygen": {"key_type": "p256"}}]}
    item = client.post(BATCHES, json=body, headers=headers).json()["items"][0]
    assert item["status"] == "failed" and item["error"]["type"] == "urn:dmboot:problem:invalid-request"
    assert certificate_count(line) == 1  # the service's own TLS certificate only


def test_registration_returns_tokens_that_enroll_once(line: Runtime, client: TestClient) -> None:
    headers = _token(line, quota=10)
    body = {"profile": "line", "method": "token",
            "devices": ["IMEI:350000000000001", {"dev_id": "IMEI:350000000000002"}]}
    response = client.post("/api/v1/factory/registrations", json=body, headers=headers)
    assert response.status_code == 200 and response.headers["cache-control"] == "no-store"
    devices = response.json()["devices"]
    assert [d["status"] for d in devices] == ["registered", "registered"]
    token = devices[0]["token"]
    key = generate_private_key(KeyType.P256)
    outcome = line.enrollment.enroll("IMEI:350000000000001", Evidence("token", token=token),
                                     make_csr("IMEI:350000000000001", key=key))
    assert outcome.issued.certificate.subject.rfc4514_string() == "CN=IMEI:350000000000001"
    with pytest.raises(AuthenticationFailed):
        line.enrollment.enroll("IMEI:350000000000001", Evidence("token", token=token),
                               make_csr("IMEI:350000000000001", key=key))
    again = client.post("/api/v1/factory/registrations", json=body, headers=headers).json()["devices"]
    assert again[0]["status"] == "failed" and "enrolled already" in again[0]["error"]["detail"]
    assert again[1]["status"] == "existing" and again[1]["token"] != devices[1]["token"]


def test_registration_with_group_keys_returns_the_derived_key(line: Runtime, client: TestClient) -> None:
    line.devices.create_group_key("line", actor="test")
    expected = line.devices.export_device_keys("line", ["IMEI:350000000000003"], actor="test")
    body = {"profile": "line", "method": "group-key", "devices": ["IMEI:350000000000003"]}
    headers = _token(line)
    first = client.post("/api/v1/factory/registrations", json=body, headers=headers).json()["devices"][0]
    again = client.post("/api/v1/factory/registrations", json=body, headers=headers).json()["devices"][0]
    assert first["device_key"] == again["device_key"] == expected["IMEI:350000000000003"]
    assert (first["status"], again["status"]) == ("registered", "existing")


def test_registration_outside_the_stations_profiles_is_403(line: Runtime, client: TestClient) -> None:
    body = {"profile": "other", "method": "token", "devices": ["IMEI:350000000000001"]}
    response = client.post("/api/v1/factory/registrations", json=body, headers=_token(line))
    assert response.status_code == 403 and "profile 'other'" in response.json()["detail"]


def test_a_station_certificate_maps_to_its_tokens_principal(line: Runtime) -> None:
    key = generate_private_key(KeyType.P256)
    issued = line.issuance.issue_from_csr(make_csr("station-7", key=key), "device", Requester("test"))
    row, token = line.factory.stations.add("station-7", issued.pem, actor="test", allowed_profiles=["line"],
                                            device_quota=50)
    assert token is not None and row.cert_fingerprint == issued.fingerprint
    principal = line.factory.stations.authenticate(issued.certificate)
    assert (principal.actor, principal.allowed_profiles, principal.device_quota) == ("station:station-7",
                                                                                     ("line",), 50)
    assert principal.can("factory:provision")
    stranger = line.issuance.issue_from_csr(make_csr("station-8"), "device", Requester("test")).certificate
    with pytest.raises(AuthenticationFailed, match="not a registered factory station"):
        line.factory.stations.authenticate(stranger)
    line.tokens.revoke("station-7", actor="test")
    with pytest.raises(AuthenticationFailed, match="revoked"):
        line.factory.stations.authenticate(issued.certificate)
    assert isinstance(issued.certificate, x509.Certificate)


def test_a_stream_that_runs_out_of_quota_fails_only_its_new_devices(line: Runtime, client: TestClient) -> None:
    headers = {**_token(line, quota=550), "Idempotency-Key": "dry", "Content-Type": "application/x-ndjson"}
    items = [{"dev_id": f"KEY:{i}", "keygen": {"key_type": "p256"}} for i in range(600)]
    items += [items[0], items[1]]  # already issued by the first chunk when the second is done
    lines = _lines(client.post(BATCHES, content=_ndjson({"profile": "line", "password": PASSWORD}, items),
                               headers=headers).text)
    outcomes = [d for d in lines if d["type"] == "item"]
    assert [o["status"] for o in outcomes[:500]] == ["issued"] * 500
    assert {o["error"]["type"] for o in outcomes[500:600]} == {"urn:dmboot:problem:quota-exceeded"}
    assert [o["status"] for o in outcomes[600:]] == ["existing", "existing"]
    assert lines[-1] == {"type": "summary", "batch_id": lines[0]["batch_id"], "idempotency_key": "dry",
                         "profile": "line", "issued": 500, "existing": 2, "failed": 100, "total": 602}
    assert len(certificates_per_device(line)) == 500
