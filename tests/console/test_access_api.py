"""The access-control API (/api/v1/admins, /tokens, /audit) and the OpenAPI document."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from bootstrap.app import create_app
from bootstrap.runtime import Runtime
from bootstrap.web.openapi import api_routes
from tests.support.admins import PASSWORD, make_admin


@pytest.fixture
def api(console_runtime: Runtime) -> Iterator[tuple[TestClient, dict[str, dict[str, str]]]]:
    headers = {role: {"Authorization": "Bearer " + console_runtime.tokens.create(
        f"t-{role}", [role], actor="test", allowed_profiles=["fleet"] if role == "factory-line" else None)}
               for role in ("security-admin", "provisioning-admin", "auditor", "factory-line")}
    with TestClient(create_app(runtime=console_runtime), base_url="https://testserver") as client:
        yield client, headers


def test_admins_api_follows_the_role_rules(api: tuple[TestClient, dict[str, dict[str, str]]],
                                           console_runtime: Runtime) -> None:
    client, as_ = api
    body = {"username": "carol", "password": PASSWORD, "roles": ["auditor"]}
    assert client.post("/api/v1/admins", json=body, headers=as_["provisioning-admin"]).status_code == 403
    created = client.post("/api/v1/admins", json=body, headers=as_["security-admin"])
    assert created.status_code == 201 and created.json()["roles"] == ["auditor"]
    assert "password" not in created.text
    assert client.get("/api/v1/admins", headers=as_["security-admin"]).json()[0]["username"] == "carol"
    assert client.get("/api/v1/admins", headers=as_["auditor"]).status_code == 403
    patch = client.patch("/api/v1/admins/carol", json={"roles": ["security-admin"]}, headers=as_["security-admin"])
    assert patch.status_code == 200 and patch.json()["roles"] == ["security-admin"]
    # carol is the only human security-admin now: she cannot be demoted or disabled.
    for change in ({"roles": ["auditor"]}, {"disabled": True}):
        refused = client.patch("/api/v1/admins/carol", json=change, headers=as_["security-admin"])
        assert refused.status_code == 409 and refused.json()["type"] == "urn:dmboot:problem:conflict"
    assert client.patch("/api/v1/admins/carol", json={"shoe": 1}, headers=as_["security-admin"]).status_code == 400
    assert client.get("/api/v1/admins/nobody", headers=as_["security-admin"]).status_code == 404


def test_tokens_api(api: tuple[TestClient, dict[str, dict[str, str]]]) -> None:
    client, as_ = api
    made = client.post("/api/v1/tokens", json={"name": "ci", "roles": ["auditor"], "ttl_days": 7},
                       headers=as_["security-admin"])
    assert made.status_code == 201 and made.json()["token"].startswith("dmb_")
    assert made.headers["cache-control"] == "no-store"
    listed = client.get("/api/v1/tokens", headers=as_["security-admin"]).json()
    assert "ci" in [t["name"] for t in listed] and made.json()["token"] not in str(listed)
    new = {"Authorization": "Bearer " + made.json()["token"]}
    assert client.get("/api/v1/audit", headers=new).status_code == 200
    assert client.post("/api/v1/tokens", json={"name": "x", "roles": ["security-admin"]},
                       headers=as_["provisioning-admin"]).status_code == 403
    assert client.delete("/api/v1/tokens/ci", headers=as_["security-admin"]).status_code == 204
    assert client.get("/api/v1/audit", headers=new).status_code == 401


@pytest.mark.parametrize(("member", "value"), [
    ("ttl_days", 10**9),  # past datetime's range: was a 500 (OverflowError)
    ("ttl_days", 0),
    ("device_quota", 2**31),  # past a 32-bit column
    ("device_quota", -1),
], ids=["ttl huge", "ttl zero", "quota huge", "quota negative"])
def test_token_numbers_out_of_range_are_400_naming_the_member(api: tuple[TestClient, dict[str, dict[str, str]]],
                                                              member: str, value: int) -> None:
    client, as_ = api
    reply = client.post("/api/v1/tokens", json={"name": "edge", "roles": ["auditor"], member: value},
                        headers=as_["security-admin"])
    assert reply.status_code == 400 and reply.json()["field"] == member
    assert "edge" not in [t["name"] for t in client.get("/api/v1/tokens", headers=as_["security-admin"]).json()]


def test_audit_api_filters(api: tuple[TestClient, dict[str, dict[str, str]]], console_runtime: Runtime) -> None:
    client, as_ = api
    make_admin(console_runtime, "pat", "provisioning-admin")
    for password in ("wrong password!", PASSWORD):
        try:
            console_runtime.admins.login("pat", password, request_id="rid-7")
        except Exception:  # noqa: BLE001, S110 - the failure is what we audit
            pass
    events = client.get("/api/v1/audit", params={"action": "admin.login"}, headers=as_["auditor"]).json()["events"]
    assert [e["outcome"] for e in events] == ["success", "failure"]  # newest first
    failures = client.get("/api/v1/audit", params={"action": "admin.*", "outcome": "failure", "target": "pat"},
                          headers=as_["auditor"]).json()["events"]
    assert len(failures) == 1 and failures[0]["detail"]["reason"] == "bad password"
    assert failures[0]["request_id"] == "rid-7"
    future = client.get("/api/v1/audit", params={"since": "2999-01-01"}, headers=as_["auditor"]).json()
    assert future["events"] == []
    paged = client.get("/api/v1/audit", params={"limit": "1"}, headers=as_["auditor"]).json()
    assert len(paged["events"]) == 1 and paged["next_before"] == paged["events"][0]["seq"]
    bad = client.get("/api/v1/audit", params={"outcome": "maybe"}, headers=as_["auditor"])
    assert bad.status_code == 400 and bad.json()["field"] == "outcome"
    assert client.get("/api/v1/audit", headers=as_["provisioning-admin"]).status_code == 403
    assert client.get("/api/v1/audit/verify", headers=as_["auditor"]).json()["ok"] is True


def test_openapi_describes_every_api_route(api: tuple[TestClient, dict[str, dict[str, str]]]) -> None:
    client, _ = api
    document = client.get("/api/v1/openapi.json").json()
    assert document["openapi"].startswith("3.1")
    described = {(path, method) for path, ops in document["paths"].items() for method in ops}
    routed = {(path, method.lower()) for path, route in api_routes(list(client.app.routes))  # type: ignore[attr-defined]
              for method in (route.methods or set()) - {"HEAD"}}
    assert routed and described == routed
    admins = document["paths"]["/api/v1/admins"]["post"]
    assert admins["x-permission"] == "roles:manage" and admins["security"] == [{"bearer": []}]
    assert "requestBody" in admins and "403" in admins["responses"]
    assert document["paths"]["/api/v1/audit"]["get"]["x-permission"] == "audit:read"
    assert {p["name"] for p in document["paths"]["/api/v1/audit"]["get"]["parameters"]} >= {
        "actor", "action", "outcome", "target", "since", "until"}
    assert "x-permission" in document["paths"]["/api/v1/profiles"]["post"]  # other modules' routes too
