"""HTTP semantics the admin API promises: 405 with every allowed method, 415 for the wrong body type,
device actions routed as actions, and at least one role in every role list a request gives."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.testclient import TestClient


# Path -> the methods its routes serve (read from the route table in bootstrap/web by hand).
@pytest.mark.parametrize(("method", "path", "allow"), [
    ("PUT", "/api/v1/dm-servers", {"GET", "HEAD", "POST"}),
    ("DELETE", "/api/v1/enroll", {"POST"}),
    ("GET", "/api/v1/factory/batches", {"POST"}),
    ("PATCH", "/api/v1/profiles/p", {"GET", "HEAD", "PUT", "DELETE"}),
    ("GET", "/api/v1/certificates/01/revoke", {"POST"}),
    ("GET", "/api/v1/factory/registrations", {"POST"}),
    ("PUT", "/api/v1/tokens", {"GET", "HEAD", "POST"}),
    ("GET", "/dm/bootstrap", {"POST"}),
    ("GET", "/dm1/bootstrap", {"POST"}),
    ("GET", "/api/v1/devices/IMEI:1/readmit", {"POST"}),
    ("DELETE", "/api/v1/devices/IMEI:1/revoke", {"POST"}),
])
def test_405_lists_every_allowed_method(client: TestClient, method: str, path: str, allow: set[str]) -> None:
    response = client.request(method, path)
    assert response.status_code == 405, response.text
    assert {m.strip() for m in response.headers["allow"].split(",")} == allow
    assert response.headers["content-type"] == "application/problem+json"


def test_patch_on_a_device_action_is_405_not_a_device(client: TestClient, admin: dict[str, str]) -> None:
    response = client.patch("/api/v1/devices/IMEI:1/readmit", json={"status": "registered"}, headers=admin)
    assert response.status_code == 405 and response.headers["allow"] == "POST"


@pytest.mark.parametrize("body", [b'{"reason": "keyCompromise"}', b""], ids=["reason", "empty"])
def test_revoke_refuses_text_plain(client: TestClient, admin: dict[str, str], body: bytes) -> None:
    for path in ("/api/v1/certificates/01/revoke", "/api/v1/devices/IMEI:1/revoke"):
        response = client.post(path, content=body, headers={**admin, "content-type": "text/plain"})
        assert response.status_code == 415, response.text
        assert response.headers["content-type"] == "application/problem+json"


def test_revoke_without_a_body_means_unspecified(client: TestClient, admin: dict[str, str]) -> None:
    response = client.post("/api/v1/certificates/01/revoke", headers=admin)
    assert response.status_code == 404, response.text  # read as {}: no such certificate


def _body_schema(document: dict[str, Any], path: str, method: str) -> dict[str, Any]:
    schema = document["paths"][path][method]["requestBody"]["content"]["application/json"]["schema"]
    while "$ref" in schema:
        schema = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    return dict(schema)


def _roles(schema: dict[str, Any]) -> dict[str, Any]:
    roles = schema["properties"]["roles"]
    return next((r for r in roles.get("anyOf", [roles]) if r.get("type") == "array"), roles)


@pytest.mark.parametrize(("method", "path"), [("post", "/api/v1/admins"), ("post", "/api/v1/tokens"),
                                              ("patch", "/api/v1/admins/{username}")])
def test_the_schema_refuses_an_empty_role_list(client: TestClient, method: str, path: str) -> None:
    document = client.get("/api/v1/openapi.json").json()
    assert _roles(_body_schema(document, path, method))["minItems"] == 1, path


@pytest.mark.parametrize(("method", "path", "body"), [
    ("POST", "/api/v1/admins", {"username": "someone", "password": "a long password 1", "roles": []}),
    ("POST", "/api/v1/tokens", {"name": "t1", "roles": []}),
    ("PATCH", "/api/v1/admins/someone", {"roles": []}),
])
def test_the_code_refuses_an_empty_role_list(client: TestClient, admin: dict[str, str], method: str, path: str,
                                             body: dict[str, Any]) -> None:
    response = client.request(method, path, json=body, headers=admin)
    assert response.status_code == 400 and response.json()["field"] == "roles", response.text
