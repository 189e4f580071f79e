"""HTTP semantics the admin API promises: 405 with every allowed method, 415 for the wrong body type,
device actions routed as actions, and at least one role in every role list a request gives."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from bootstrap.app import create_app
from bootstrap.runtime import Runtime


@pytest.fixture
def client(runtime: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(runtime=runtime)) as test_client:
        yield test_client


@pytest.fixture
def admin(runtime: Runtime) -> dict[str, str]:
    token = runtime.tokens.create("http", ["provisioning-admin", "security-admin"], actor="test")
    return {"authorization": f"Bearer {token}"}


# Path -> the methods its routes serve (read from the route table in bootstrap/web by hand).
@pytest.mark.parametrize(("method", "path", "allow"), [
    ("PUT", "/api/v1/dm-servers", {"GET", "HEAD", "POST"}),
    ("DELETE", "/api/v1/enroll", {"POST"}),
    ("GET", "/api/v1/factory/batches", {"POST"}),
    ("PATCH", "/api/v1/profiles/p", {"GET", "HEAD", "PUT", "DELETE"}),
])
def test_405_lists_every_allowed_method(client: TestClient, method: str, path: str, allow: set[str]) -> None:
    response = client.request(method, path)
    assert response.status_code == 405, response.text
    assert {m.strip() for m in response.headers["allow"].split(",")} == allow
    assert response.headers["content-type"] == "application/problem+json"


def test_patch_on_a_device_action_is_405_not_a_device(client: TestClient, admin: dict[str, str]) -> None:
    response = client.patch("/api/v1/devices/IMEI:1/readmit", json={"status": "registered"}, headers=admin)
    assert response.status_code == 405 and response.headers["allow"] == "POST"


def test_revoke_refuses_text_plain(client: TestClient, admin: dict[str, str]) -> None:
    response = client.post("/api/v1/certificates/01/revoke", content=b'{"reason": "keyCompromise"}',
                           headers={**admin, "content-type": "text/plain"})
    assert response.status_code == 415, response.text


def test_the_schema_refuses_an_empty_role_list(client: TestClient) -> None:
    document = client.get("/api/v1/openapi.json").json()
    for path in ("/api/v1/admins", "/api/v1/tokens"):
        schema = document["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]
        assert schema["properties"]["roles"]["minItems"] == 1, path
