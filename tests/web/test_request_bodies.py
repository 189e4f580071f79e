"""Request bodies are defined once: the model a handler validates with is the requestBody schema served.

The operations and the models they take are a literal table written from docs/api.md;
the test checks the served OpenAPI document against it and against each model's own
JSON schema, and that a body the model refuses is a 400 problem naming the field.
"""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel
from starlette.testclient import TestClient

from bootstrap.app import create_app
from bootstrap.factory import types as factory_types
from bootstrap.runtime import Runtime
from bootstrap.services.profile_spec import ProfileBody, ProfileReplaceBody
from bootstrap.web import bodies, tpm

# (method, path) -> (model, body required): every POST/PUT/PATCH under /api/v1.
OPERATIONS: dict[tuple[str, str], tuple[type[BaseModel], bool]] = {
    ("post", "/api/v1/dm-servers"): (bodies.ServerBody, True),
    ("post", "/api/v1/dm-servers/{id}/certificate"): (bodies.CsrBody, True),
    ("post", "/api/v1/data-repositories"): (bodies.RepositoryBody, True),
    ("post", "/api/v1/data-repositories/{id}/certificate"): (bodies.CsrBody, True),
    ("post", "/api/v1/profiles"): (ProfileBody, True),
    ("put", "/api/v1/profiles/{name}"): (ProfileReplaceBody, True),
    ("post", "/api/v1/profiles/{name}/group-key"): (bodies.EmptyBody, False),
    ("post", "/api/v1/profiles/{name}/group-key/export"): (bodies.DeviceKeysBody, True),
    ("post", "/api/v1/devices"): (bodies.DeviceBody, True),
    ("patch", "/api/v1/devices/{dev_id}"): (bodies.DeviceUpdateBody, True),
    ("post", "/api/v1/devices/{dev_id}/revoke"): (bodies.RevokeBody, False),
    ("post", "/api/v1/devices/{dev_id}/readmit"): (bodies.EmptyBody, False),
    ("post", "/api/v1/devices/{dev_id}/bootstrap-complete"): (bodies.BootstrapCompleteBody, False),
    ("post", "/api/v1/certificates/{serial}/revoke"): (bodies.RevokeBody, False),
    ("post", "/api/v1/enrollment-tokens"): (bodies.EnrollmentTokenBody, True),
    ("post", "/api/v1/manufacturer-cas"): (bodies.MakerBody, True),
    ("patch", "/api/v1/manufacturer-cas/{name}"): (bodies.MakerUpdateBody, True),
    ("post", "/api/v1/enroll"): (bodies.EnrollBody, True),
    ("post", "/api/v1/factory/batches"): (factory_types.BatchBody, True),
    ("post", "/api/v1/factory/registrations"): (factory_types.RegistrationBody, True),
    ("post", "/api/v1/admins"): (bodies.AdminBody, True),
    ("patch", "/api/v1/admins/{username}"): (bodies.AdminUpdateBody, True),
    ("post", "/api/v1/tokens"): (bodies.ApiTokenBody, True),
    ("post", "/api/v1/enroll/tpm/challenge"): (tpm.TpmChallengeBody, True),
    ("post", "/api/v1/enroll/tpm"): (tpm.TpmEnrollBody, True),
    ("post", "/api/v1/profiles/{name}/tpm-cas"): (tpm.TpmCaBody, True),
    ("patch", "/api/v1/profiles/{name}/tpm-cas/{ca}"): (tpm.TpmCaUpdateBody, True),
}


@pytest.fixture(scope="module")
def document(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from bootstrap.settings import Secret, Settings

    folder = tmp_path_factory.mktemp("openapi")
    runtime, _ = Runtime.initialize(Settings(data_dir=folder / "data", keystore_passphrase=Secret("openapi-bodies")),
                                    actor="test")
    try:
        with TestClient(create_app(runtime=runtime)) as client:
            served: dict[str, Any] = client.get("/api/v1/openapi.json").json()
            return served
    finally:
        runtime.close()


def test_every_operation_with_a_body_has_a_request_body(document: dict[str, Any]) -> None:
    found = {(method, path) for path, item in document["paths"].items() for method in item
             if method in ("post", "put", "patch")}
    assert found == set(OPERATIONS)
    missing = [f"{m.upper()} {p}" for m, p in sorted(found) if "requestBody" not in document["paths"][p][m]]
    assert missing == []


@pytest.mark.parametrize(("method", "path"), sorted(OPERATIONS), ids=[f"{m} {p}" for m, p in sorted(OPERATIONS)])
def test_the_schema_is_the_models(document: dict[str, Any], method: str, path: str) -> None:
    model, required = OPERATIONS[(method, path)]
    body = document["paths"][path][method]["requestBody"]
    assert body["required"] is required
    assert body["content"]["application/json"]["schema"] == {"$ref": f"#/components/schemas/{model.__name__}"}
    served = document["components"]["schemas"][model.__name__]
    own = model.model_json_schema(ref_template="#/components/schemas/{model}")
    for name, definition in own.pop("$defs", {}).items():
        assert document["components"]["schemas"][name] == definition
    assert served == own
    assert served.get("additionalProperties") is False  # unknown members are refused, and the schema says so


# A body each model refuses, and the field the 400 must name (worked out from docs/api.md).
REFUSED = [
    pytest.param("POST", "/api/v1/dm-servers", {"server_id": "dm9", "url": "https://x", "port": 1}, "port",
                 id="unknown-member"),
    pytest.param("POST", "/api/v1/dm-servers", {"server_id": ["dm9"], "url": "https://x"}, "server_id",
                 id="server-id-list"),
    pytest.param("POST", "/api/v1/profiles", {"name": "p", "dm_servers": ["dm1"], "key_types": ["p256", 5]},
                 "key_types", id="key-type-number"),
    pytest.param("POST", "/api/v1/profiles", {"name": "p", "dm_servers": ["dm1"], "dmacc": {"SrvID": "x"}},
                 "dmacc.SrvID", id="dmacc-srvid"),
    pytest.param("POST", "/api/v1/profiles", {"name": "p", "dm_servers": ["dm1"], "validity_days": 3651},
                 "validity_days", id="validity-range"),
    pytest.param("PATCH", "/api/v1/devices/IMEI:1", {"status": "stolen"}, "status", id="device-status"),
    pytest.param("POST", "/api/v1/enrollment-tokens", {"profile": "p", "ttl_seconds": 1.5}, "ttl_seconds",
                 id="ttl-float"),
    pytest.param("POST", "/api/v1/enrollment-tokens", {"profile": "p", "ttl_seconds": True}, "ttl_seconds",
                 id="ttl-bool"),
    pytest.param("PATCH", "/api/v1/manufacturer-cas/m", {"enabled": "yes"}, "enabled", id="enabled-text"),
    pytest.param("POST", "/api/v1/certificates/01/revoke", {"reason": "certificateHold"}, "reason",
                 id="reason-hold"),
    pytest.param("POST", "/api/v1/devices/IMEI:1/readmit", {"now": True}, "now", id="readmit-member"),
    pytest.param("POST", "/api/v1/profiles/p/group-key/export", {"dev_ids": []}, "dev_ids", id="no-dev-ids"),
    pytest.param("POST", "/api/v1/tokens", {"name": "t", "roles": ["root"]}, "roles", id="unknown-role"),
    pytest.param("POST", "/api/v1/enroll", {"dev_id": "IMEI:1", "csr": 7}, "csr", id="enroll-csr-number"),
]


@pytest.mark.parametrize(("method", "path", "body", "field"), REFUSED)
def test_a_refused_body_is_a_400_naming_the_field(client: TestClient, admin: dict[str, str], method: str,
                                                  path: str, body: dict[str, Any], field: str) -> None:
    headers = {**admin, "idempotency-key": "k"}
    response = client.request(method, path, json=body, headers=headers)
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["type"] == "urn:dmboot:problem:invalid-request" and problem["field"] == field, problem


@pytest.mark.parametrize(("path", "body", "field", "where"), [
    ("batches", {"profile": "p", "items": [{"dev_id": "IMEI:1", "keygen": {}}, {"dev_id": "IMEI:2"}]}, "items",
     "items.1: "),
    ("batches", {"profile": "p", "items": [{"dev_id": "IMEI 1", "keygen": {}}]}, "items.0.dev_id",
     "items.0.dev_id: "),
    ("registrations", {"profile": "p", "devices": ["A", 5]}, "devices", "devices.1"),
], ids=["item-without-csr-or-keygen", "item-dev-id", "registration-device-number"])
def test_factory_bodies_name_the_member_and_the_item(client: TestClient, runtime: Runtime, path: str,
                                                     body: dict[str, Any], field: str, where: str) -> None:
    token = runtime.tokens.create("line", ["factory-line"], actor="test", allowed_profiles=["p"])
    response = client.post(f"/api/v1/factory/{path}", json=body,
                           headers={"authorization": f"Bearer {token}", "idempotency-key": "k"})
    assert response.status_code == 400, response.text
    assert response.json()["field"] == field and response.json()["detail"].startswith(where), response.json()


def test_replacing_a_profile_whose_name_no_profile_can_have_is_404(client: TestClient,
                                                                  admin: dict[str, str]) -> None:
    response = client.put("/api/v1/profiles/%3A", json={"dm_servers": ["dm1"]}, headers=admin)
    assert response.status_code == 404, response.text  # was a 500 (found by schemathesis)


@pytest.mark.parametrize(("body", "detail"), [
    ({"name": "p", "dm_servers": ["dm1"], "dmacc": {"Perm": ["not-a-moid"]}},
     "dmacc.Perm.0: must be a MOID such as urn:oma:mo:oma-dm-devinfo:1.0"),
    ({"name": "p q", "dm_servers": ["dm1"]},
     "name: must be a name of letters, digits, '.', '_' and '-' (at most 64, starting with a letter or digit)"),
    ({"name": "p", "dm_servers": ["dm 1"]},
     "dm_servers.0: must be printable ASCII without spaces, 1 to 128 characters"),
], ids=["moid", "name", "server-id"])
def test_a_pattern_mismatch_says_what_is_expected_not_the_regex(client: TestClient, admin: dict[str, str],
                                                                body: dict[str, Any], detail: str) -> None:
    response = client.post("/api/v1/profiles", json=body, headers=admin)
    assert response.status_code == 400, response.text
    assert response.json()["detail"] == detail
