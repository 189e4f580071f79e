"""The admin API, the JSON enroll API and discovery, in-process over HTTP."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography import x509
from starlette.testclient import TestClient

from bootstrap.app import create_app
from bootstrap.auth import hmac_scheme
from bootstrap.runtime import Runtime
from bootstrap.store.models import CertificateRow
from pki.identity import device_uri
from tests.enrollment.support import ADMIN, EXTRA_MO, GROUP, count, last_event, make_maker
from tests.factories import make_csr

DEV = "IMEI:350000000000042"
JSON = {"content-type": "application/json"}


@pytest.fixture
def client(configured: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(runtime=configured)) as test_client:
        yield test_client


def _bearer(runtime: Runtime, role: str) -> dict[str, str]:
    return {"authorization": "Bearer " + runtime.tokens.create(f"{role}-client", [role], actor=ADMIN)}


@pytest.fixture
def admin(configured: Runtime) -> dict[str, str]:
    return _bearer(configured, "provisioning-admin")


def _problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["status"] == status and body["type"].startswith("urn:dmboot:problem:")
    return body


# -- admin API ---------------------------------------------------------------------------


def test_admin_api_needs_a_token_with_the_permission(client: TestClient, configured: Runtime) -> None:
    _problem(client.get("/api/v1/dm-servers"), 401)
    auditor = _bearer(configured, "auditor")
    assert client.get("/api/v1/dm-servers", headers=auditor).status_code == 200
    body = _problem(client.post("/api/v1/dm-servers", headers=auditor, json={"server_id": "x", "url": "https://x"}),
                    403)
    assert "config:write" in body["detail"]
    _problem(client.post("/api/v1/manufacturer-cas", headers=_bearer(configured, "provisioning-admin"),
                         json={"name": "acme", "pem": make_maker().pem}), 403)


def test_dm_servers_and_repositories_over_the_api(client: TestClient, admin: dict[str, str]) -> None:
    created = client.post("/api/v1/dm-servers", headers=admin,
                          json={"server_id": "dm2", "name": "Second", "url": "https://dm2.example.net/dm"})
    assert created.status_code == 201 and created.json()["trust_anchor"] == "root"
    assert [s["server_id"] for s in client.get("/api/v1/dm-servers", headers=admin).json()] == ["dm1", "dm2"]
    assert client.get("/api/v1/dm-servers/dm2", headers=admin).json()["name"] == "Second"
    issued = client.post("/api/v1/dm-servers/dm2/certificate", headers=admin,
                         json={"csr": make_csr("dm2.example.net").decode()})
    assert issued.status_code == 201
    leaf = x509.load_pem_x509_certificates(issued.json()["certificate_chain_pem"].encode())[0]
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["dm2.example.net"]
    assert client.delete("/api/v1/dm-servers/dm2", headers=admin).status_code == 204
    _problem(client.get("/api/v1/dm-servers/dm2", headers=admin), 404)
    _problem(client.delete("/api/v1/dm-servers/dm1", headers=admin), 409)
    repo = client.post("/api/v1/data-repositories", headers=admin, json={"name": "r2", "url": "https://r2.example"})
    assert repo.status_code == 201
    cert = client.post("/api/v1/data-repositories/r2/certificate", headers=admin, json={"csr": make_csr(None).decode()})
    assert cert.json()["profile"] == "data-repository"


def test_profiles_over_the_api(client: TestClient, admin: dict[str, str]) -> None:
    document = {"name": "line-b", "dm_servers": ["dm1"], "attestation": ["token", "idevid"],
                "dmacc": {"Name": "Line B"}, "extra_mos": [EXTRA_MO]}
    created = client.post("/api/v1/profiles", headers=admin, json=document)
    assert created.status_code == 201 and created.json()["attestation"] == ["token", "idevid"]
    replaced = client.put("/api/v1/profiles/line-b", headers=admin, json={**document, "validity_days": 90})
    assert replaced.json()["validity_days"] == 90
    _problem(client.put("/api/v1/profiles/line-b", headers=admin, json={**document, "name": "renamed"}), 409)
    assert client.get("/api/v1/profiles/line-b", headers=admin).json()["dmacc"] == {"Name": "Line B"}
    assert {p["name"] for p in client.get("/api/v1/profiles", headers=admin).json()} == {GROUP, "line-b"}
    group = client.post("/api/v1/profiles/line-b/group-key", headers=admin)
    assert group.status_code == 201 and group.json()["ref"].endswith("#1")
    keys = client.post("/api/v1/profiles/line-b/group-key/export", headers=admin, json={"dev_ids": ["A", "B"]})
    assert set(keys.json()["keys"]) == {"A", "B"}
    assert client.delete("/api/v1/profiles/line-b", headers=admin).status_code == 204


@pytest.mark.parametrize(("path", "document", "field"), [
    pytest.param("/api/v1/profiles", {"name": "x", "dm_servers": ["dm1"], "server_keygen": "yes"},
                 "server_keygen", id="server-keygen-not-boolean"),
    pytest.param("/api/v1/profiles", {"name": "x", "dm_servers": ["dm1"], "attestation": ["magic"]},
                 "attestation", id="unknown-method"),
    pytest.param("/api/v1/profiles", {"name": "x"}, "dm_servers", id="missing-servers"),
    pytest.param("/api/v1/dm-servers", {"server_id": "x", "url": "ftp://x"}, "url", id="server-url"),
    pytest.param("/api/v1/dm-servers", {"server_id": 7, "url": "https://x"}, "server_id", id="server-id-type"),
    pytest.param("/api/v1/devices", {"dev_id": "IMEI:1"}, "profile", id="device-without-profile"),
    pytest.param("/api/v1/enrollment-tokens", {"profile": GROUP, "ttl_seconds": 0}, "ttl_seconds",
                 id="token-ttl"),
])
def test_validation_errors_are_problems_naming_the_field(client: TestClient, admin: dict[str, str], path: str,
                                                         document: dict[str, Any], field: str) -> None:
    assert _problem(client.post(path, headers=admin, json=document), 400)["field"] == field


@pytest.mark.parametrize(("headers", "content", "status"), [
    pytest.param({"content-type": "text/plain"}, b"{}", 415, id="wrong-media-type"),
    pytest.param({}, b"{}", 415, id="no-media-type"),
    pytest.param(JSON, b"{not json", 400, id="malformed-json"),
    pytest.param(JSON, b"[]", 400, id="not-an-object"),
])
def test_admin_bodies_must_be_json_objects(client: TestClient, admin: dict[str, str], headers: dict[str, str],
                                           content: bytes, status: int) -> None:
    _problem(client.post("/api/v1/dm-servers", headers={**admin, **headers}, content=content), status)


def test_devices_tokens_and_manufacturers_over_the_api(client: TestClient, admin: dict[str, str],
                                                       configured: Runtime) -> None:
    assert client.post("/api/v1/devices", headers=admin, json={"dev_id": DEV, "profile": GROUP}).status_code == 201
    assert [d["dev_id"] for d in client.get("/api/v1/devices?q=3500", headers=admin).json()] == [DEV]
    blocked = client.patch(f"/api/v1/devices/{DEV}", headers=admin, json={"status": "blocked"})
    assert blocked.json()["status"] == "blocked"
    token = client.post("/api/v1/enrollment-tokens", headers=admin, json={"dev_id": DEV, "ttl_seconds": 600})
    assert token.status_code == 201 and token.json()["token"].startswith("dmt_")
    listed = client.get("/api/v1/enrollment-tokens", headers=admin).json()
    assert listed[0]["state"] == "unused" and "token" not in listed[0]
    _problem(client.get("/api/v1/devices?limit=ten", headers=admin), 400)
    security = _bearer(configured, "security-admin")
    maker = client.post("/api/v1/manufacturer-cas", headers=security, json={"name": "acme", "pem": make_maker().pem})
    assert maker.status_code == 201
    disabled = client.patch("/api/v1/manufacturer-cas/acme", headers=security, json={"enabled": False})
    assert disabled.json()["enabled"] is False
    assert client.get("/api/v1/manufacturer-cas", headers=security).json()[0]["name"] == "acme"


# -- JSON enroll -------------------------------------------------------------------------


def _enroll_body(dev_id: str = DEV, **extra: Any) -> dict[str, Any]:
    return {"dev_id": dev_id, "csr": make_csr(dev_id).decode(), **extra}


def _registered_token(runtime: Runtime, dev_id: str = DEV) -> str:
    runtime.devices.register(dev_id, GROUP, actor=ADMIN)
    return runtime.devices.create_token(dev_id=dev_id, actor=ADMIN)[1]


def test_enroll_with_a_token_returns_the_content_as_json(client: TestClient, configured: Runtime) -> None:
    body = _enroll_body(token=_registered_token(configured), mos=[{"MOID": EXTRA_MO["MOID"]}],
                        features={"tls13": True})
    response = client.post("/api/v1/enroll", json=body)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    document = response.json()
    assert document["account"]["server_id"] == "dm1" and document["status"] == "enrolled"
    leaf, issuing = x509.load_pem_x509_certificates(document["certificate_chain_pem"].encode())
    leaf.verify_directly_issued_by(issuing)
    assert device_uri(DEV) in leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value \
        .get_values_for_type(x509.UniformResourceIdentifier)
    roles = {(a["role"], a["name"]) for a in document["trust_anchors"]}
    assert roles == {("dm-server", "dm1"), ("data-repository", "repo1"), ("issuing-ca", "issuing-1")}
    root = next(a for a in document["trust_anchors"] if a["role"] == "dm-server")
    issuing.verify_directly_issued_by(x509.load_pem_x509_certificate(root["pem"].encode()))
    assert document["data_repository_urls"] == ["https://repo.example.net/data"]
    assert [m["MOID"] for m in document["extra_mos"]] == [EXTRA_MO["MOID"]]
    assert configured.devices.get(DEV).row.features == {"tls13": True}
    again = client.post("/api/v1/enroll", json=body)
    assert "used already" not in _problem(again, 401)["detail"]  # no oracle: the audit trail says why
    assert "used already" in json.loads(last_event(configured).detail)["reason"]


def test_enroll_with_dmboot_hmac_over_the_exact_body(client: TestClient, configured: Runtime) -> None:
    key = bytes.fromhex(configured.devices.export_device_keys(GROUP, [DEV], actor=ADMIN)[DEV])
    body = json.dumps(_enroll_body()).encode()
    header = hmac_scheme.authorization_header(key, GROUP, DEV, body)
    response = client.post("/api/v1/enroll", content=body, headers={**JSON, "authorization": header})
    assert response.status_code == 200, response.text
    replay = client.post("/api/v1/enroll", content=body, headers={**JSON, "authorization": header})
    assert "replayed" not in _problem(replay, 401)["detail"]
    assert "replayed" in json.loads(last_event(configured).detail)["reason"]
    other_body = json.dumps(_enroll_body()).encode()  # a new CSR under the old MAC
    fresh = hmac_scheme.authorization_header(key, GROUP, DEV, body)
    _problem(client.post("/api/v1/enroll", content=other_body, headers={**JSON, "authorization": fresh}), 401)


@pytest.mark.parametrize(("headers", "content", "status", "reason"), [
    pytest.param({"content-type": "application/x-www-form-urlencoded"}, b"dev_id=x", 415, "send the body as",
                 id="wrong-media-type"),
    pytest.param(JSON, b'{"dev_id": "IMEI:350000000000042", "csr": ', 400, "malformed JSON", id="malformed-json"),
    pytest.param(JSON, b'["IMEI:350000000000042"]', 400, "valid dictionary", id="array"),
    pytest.param(JSON, b'{"dev_id": "IMEI:350000000000042"}', 400, "csr: Field required", id="no-csr"),
    pytest.param(JSON, b'{"dev_id": "IMEI:350000000000042", "csr": "x", "colour": 1}', 400,
                 "colour: Extra inputs are not permitted", id="unknown-member"),
    pytest.param(JSON, json.dumps(_enroll_body()).encode(), 401, "no evidence", id="no-evidence"),
    pytest.param(JSON, json.dumps(_enroll_body(token="dmt_nope")).encode(), 401, "not registered",
                 id="unknown-devid"),
    pytest.param(JSON, json.dumps(_enroll_body(token="dmt_nope", mos="all")).encode(), 400, "mos: Input should be",
                 id="mos-not-a-list"),
])
def test_refused_enrollments_are_problems_with_an_audit_event(client: TestClient, configured: Runtime,
                                                              headers: dict[str, str], content: bytes, status: int,
                                                              reason: str) -> None:
    before = count(configured, CertificateRow)
    body = _problem(client.post("/api/v1/enroll", headers={**headers, "x-request-id": "bad-1"}, content=content),
                    status)
    # A refused device learns how to authenticate, not why it was refused (the audit event says).
    assert (reason in body["detail"]) is (status != 401)
    assert count(configured, CertificateRow) == before
    event = last_event(configured)
    assert (event.outcome, event.request_id) == ("failure", "bad-1")
    assert reason in json.loads(event.detail)["reason"]


def test_discovery_lists_endpoints_methods_and_mos(client: TestClient) -> None:
    document = client.get("/.well-known/dm-bootstrap").json()
    assert document["endpoints"]["dm_bootstrap"] == "https://dmboot.test/dm/bootstrap"
    assert document["endpoints"]["enroll"] == "https://dmboot.test/api/v1/enroll"
    assert document["endpoints"]["est"] == "https://dmboot.test/.well-known/est"
    assert document["endpoints"]["crls"] == ["https://dmboot.test/crl/root.crl", "https://dmboot.test/crl/issuing-1.crl"]
    assert document["attestation_methods"] == ["token", "group-key", "idevid", "current-cert", "tpm"]
    assert document["hmac_scheme"]["name"] == "DMBoot-HMAC"
    assert {m["MOID"] for m in document["supported_mos"]} >= {"urn:oma:mo:oma-dm-dmacc:1.2",
                                                              "urn:oma:mo:ext-dmboot-trust:1.0"}
    assert document["media_types"]["dm_initiation"] == "application/vnd.oma.dm.initiation+json"
