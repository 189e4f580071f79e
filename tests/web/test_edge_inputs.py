"""NUL characters and out-of-range integers: the same 400 on SQLite and PostgreSQL, never a 500.

The requests are a literal table (the reports that found PostgreSQL answering
500); each must be answered 400 problem+json on both databases.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from bootstrap.app import create_app
from bootstrap.runtime import Runtime
from tests.support.admins import CONSOLE, csrf_of, fast_admins

BIG = "9" * 20  # > 2**63 - 1: neither database can store it

AUTHENTICATED_GETS = [
    f"/api/v1/devices?limit={BIG}", f"/api/v1/devices?offset={BIG}", "/api/v1/devices?limit=-1",
    f"/api/v1/enrollment-tokens?limit={BIG}", f"/api/v1/enrollment-tokens?offset={BIG}",
    f"/api/v1/certificates?limit={BIG}", f"/api/v1/certificates?offset={BIG}",
    f"/api/v1/certificates?expiring_within_days={BIG}",
    f"/api/v1/audit?limit={BIG}", f"/api/v1/audit?before={BIG}", "/api/v1/audit?before=-5",
    "/api/v1/devices/a%00b", "/api/v1/devices?q=a%00b", "/api/v1/devices?profile=%00",
    "/api/v1/profiles/a%00b", "/api/v1/dm-servers/a%00b", "/api/v1/data-repositories/a%00b",
    "/api/v1/enrollment-tokens?dev_id=IMEI:1%00", "/api/v1/certificates?profile=a%00",
    "/api/v1/audit?actor=a%00", "/api/v1/audit?target=%00*", "/api/v1/admins/a%00b",
    "/api/v1/dm1/credentials/IMEI:1%00",
]
ANONYMOUS_GETS = ["/crl/issuing-1%00.crl", "/crl/a%00-delta.crl", "/dm/objects/a%00b", "/ca/root%00.pem",
                  "/ddf/urn:oma%00"]
JSON_BODIES: list[tuple[str, str, dict[str, Any]]] = [
    ("POST", "/api/v1/enrollment-tokens", {"ttl_seconds": 10**30}),
    ("POST", "/api/v1/enrollment-tokens", {"ttl_seconds": -1}),
    ("POST", "/api/v1/enrollment-tokens", {"dev_id": "IMEI:1\x00"}),
    ("POST", "/api/v1/devices", {"dev_id": "IMEI:1\x002", "profile": "p"}),
    ("POST", "/api/v1/dm-servers", {"server_id": "a\x00", "url": "https://x"}),
    ("POST", "/api/v1/enroll", {"dev_id": "IMEI:1\x00", "csr": "x", "token": "t"}),
]


@pytest.fixture
def client(runtime: Runtime) -> Iterator[TestClient]:
    fast_admins(runtime)
    with TestClient(create_app(runtime=runtime), base_url=CONSOLE) as test_client:
        yield test_client


@pytest.fixture
def admin(runtime: Runtime) -> dict[str, str]:
    token = runtime.tokens.create("edge", ["provisioning-admin", "auditor", "security-admin"], actor="test")
    return {"authorization": f"Bearer {token}"}


def _bad_request(response: Any) -> None:
    assert response.status_code == 400, (response.request.url, response.status_code, response.text)
    assert response.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize("path", AUTHENTICATED_GETS)
def test_authenticated_reads(client: TestClient, admin: dict[str, str], path: str) -> None:
    _bad_request(client.get(path, headers=admin))


@pytest.mark.parametrize("path", ANONYMOUS_GETS)
def test_anonymous_reads(client: TestClient, path: str) -> None:
    _bad_request(client.get(path))


@pytest.mark.parametrize(("method", "path", "body"), JSON_BODIES,
                         ids=[f"{m} {p} {sorted(b)}" for m, p, b in JSON_BODIES])
def test_json_bodies(client: TestClient, admin: dict[str, str], method: str, path: str, body: dict[str, Any]) -> None:
    _bad_request(client.request(method, path, json=body, headers=admin))


def test_console_login_with_a_nul_in_the_name(client: TestClient) -> None:
    page = client.get("/console/login")
    response = client.post("/console/login", data={"username": "adm\x00in", "password": "x" * 12,
                                                   "csrf": csrf_of(page.text), "next": "/console/"})
    _bad_request(response)


def test_console_audit_page_with_a_huge_cursor(client: TestClient, runtime: Runtime) -> None:
    from tests.support.admins import login, make_admin

    make_admin(runtime, "aud", "auditor")
    login(client, "aud")
    response = client.get(f"/console/audit?before={BIG}")
    assert response.status_code == 200 and "before" in response.text  # the page says what was wrong


def test_a_literal_backslash_u0000_text_is_not_a_nul(client: TestClient, admin: dict[str, str]) -> None:
    response = client.get("/api/v1/devices", params={"q": "\\u0000"}, headers=admin)
    assert response.status_code == 200
