"""Every admin route x every role: allowed or 403 exactly as bootstrap/auth/permissions.py says.

The /api/v1 routes and the permission each one requires are written out below
(:data:`API_PERMISSIONS`), as the API documentation states them: the expectation
is not read from the handlers, so weakening a handler's check fails here. The
app's routes must be exactly the table's, so a route added later must be added
here with its permission. Console pages are checked against the permission they
declare, enumerated from the app.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.routing import BaseRoute, Mount, Route
from starlette.testclient import TestClient

from bootstrap.app import create_app
from bootstrap.auth.permissions import ROLES
from bootstrap.runtime import Runtime
from bootstrap.settings import Secret, Settings
from bootstrap.web.console.csrf import csrf_token
from bootstrap.web.console.security import SESSION_COOKIE
from bootstrap.web.openapi import PERMISSION_ATTR, api_routes
from tests.support.admins import fast_admins, make_admin

ROLE_NAMES = sorted(ROLES)

#: (method, path) -> the permission the route requires; None: public, or a device-facing route with its own
#: authentication (whoami answers any principal), where the admin roles change nothing.
API_PERMISSIONS: dict[tuple[str, str], str | None] = {
    ("GET", "/api/v1/whoami"): None,
    ("GET", "/api/v1/dm-servers"): "config:read",
    ("POST", "/api/v1/dm-servers"): "config:write",
    ("GET", "/api/v1/dm-servers/{id}"): "config:read",
    ("DELETE", "/api/v1/dm-servers/{id}"): "config:write",
    ("POST", "/api/v1/dm-servers/{id}/certificate"): "config:write",
    ("GET", "/api/v1/data-repositories"): "config:read",
    ("POST", "/api/v1/data-repositories"): "config:write",
    ("GET", "/api/v1/data-repositories/{id}"): "config:read",
    ("DELETE", "/api/v1/data-repositories/{id}"): "config:write",
    ("POST", "/api/v1/data-repositories/{id}/certificate"): "config:write",
    ("GET", "/api/v1/profiles"): "config:read",
    ("POST", "/api/v1/profiles"): "config:write",
    ("GET", "/api/v1/profiles/{name}"): "config:read",
    ("PUT", "/api/v1/profiles/{name}"): "config:write",
    ("DELETE", "/api/v1/profiles/{name}"): "config:write",
    ("POST", "/api/v1/profiles/{name}/group-key"): "config:write",
    # Device keys are credentials: exporting them is a write on devices, never a read.
    ("POST", "/api/v1/profiles/{name}/group-key/export"): "devices:write",
    ("GET", "/api/v1/devices"): "devices:read",
    ("POST", "/api/v1/devices"): "devices:write",
    ("GET", "/api/v1/devices/{dev_id}"): "devices:read",
    ("PATCH", "/api/v1/devices/{dev_id}"): "devices:write",
    ("GET", "/api/v1/enrollment-tokens"): "devices:read",
    ("POST", "/api/v1/enrollment-tokens"): "devices:write",
    ("GET", "/api/v1/manufacturer-cas"): "ca:read",
    ("POST", "/api/v1/manufacturer-cas"): "ca:manage",
    ("PATCH", "/api/v1/manufacturer-cas/{name}"): "ca:manage",
    ("POST", "/api/v1/enroll"): None,
    ("POST", "/api/v1/enroll/tpm/challenge"): None,
    ("POST", "/api/v1/enroll/tpm"): None,
    ("GET", "/api/v1/profiles/{name}/tpm-cas"): "ca:read",
    ("POST", "/api/v1/profiles/{name}/tpm-cas"): "ca:manage",
    ("PATCH", "/api/v1/profiles/{name}/tpm-cas/{ca}"): "ca:manage",
    ("GET", "/api/v1/certificates"): "certs:read",
    ("POST", "/api/v1/certificates/{serial}/revoke"): "certs:revoke",
    ("POST", "/api/v1/devices/{dev_id}/revoke"): "certs:revoke",
    ("POST", "/api/v1/devices/{dev_id}/readmit"): "devices:write",
    ("POST", "/api/v1/devices/{dev_id}/bootstrap-complete"): "devices:bootstrap-complete",
    ("GET", "/api/v1/admins"): "roles:manage",
    ("POST", "/api/v1/admins"): "roles:manage",
    ("GET", "/api/v1/admins/{username}"): "roles:manage",
    ("PATCH", "/api/v1/admins/{username}"): "roles:manage",
    ("GET", "/api/v1/tokens"): "roles:manage",
    ("POST", "/api/v1/tokens"): "roles:manage",
    ("DELETE", "/api/v1/tokens/{name}"): "roles:manage",
    ("GET", "/api/v1/audit"): "audit:read",
    ("GET", "/api/v1/audit/verify"): "audit:read",
    ("GET", "/api/v1/openapi.json"): None,
    ("GET", "/api/v1/reference"): None,
    ("POST", "/api/v1/factory/batches"): "factory:provision",
    ("POST", "/api/v1/factory/registrations"): "factory:provision",
    ("GET", "/api/v1/dm1/credentials/{dev_id}"): "dm1:credentials",
}
_PARAM = re.compile(r"\{[^}]+\}")


def _console_routes(routes: list[BaseRoute], prefix: str = "") -> Iterator[tuple[str, Route]]:
    for route in routes:
        if isinstance(route, Mount):
            yield from _console_routes(list(route.routes), prefix + route.path)
        elif isinstance(route, Route) and hasattr(route.endpoint, PERMISSION_ATTR) and (
                prefix + route.path_format).startswith("/console"):
            yield prefix + route.path_format, route


def _methods(route: Route) -> list[str]:
    return sorted((route.methods or {"GET"}) - {"HEAD"})


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Runtime, TestClient]]:
    root = tmp_path_factory.mktemp("matrix")
    settings = Settings(data_dir=root / "data", database_url=f"sqlite:///{root / 'matrix.db'}",
                        keystore_passphrase=Secret(secrets.token_hex(8)), public_url="https://dmboot.test")
    runtime, _ = Runtime.initialize(settings, actor="test")
    fast_admins(runtime)
    for role in ROLE_NAMES:
        make_admin(runtime, role.replace("-", ""), role)
    try:
        with TestClient(create_app(runtime=runtime), base_url="https://testserver") as client:
            yield runtime, client
    finally:
        runtime.close()


@pytest.fixture(scope="module")
def bearer(world: tuple[Runtime, TestClient]) -> dict[str, dict[str, str]]:
    runtime, _ = world
    return {role: {"Authorization": "Bearer " + runtime.tokens.create(
        f"matrix-{role}", [role], actor="test", allowed_profiles=["fleet"] if role == "factory-line" else None)}
            for role in ROLE_NAMES}


@pytest.fixture(scope="module")
def sessions(world: tuple[Runtime, TestClient]) -> dict[str, str]:
    runtime, _ = world
    return {role: runtime.sessions.start_admin(runtime.admins.get(role.replace("-", "")).id) for role in ROLE_NAMES}


def _served_api_routes() -> set[tuple[str, str]]:
    app = create_app(Settings(data_dir=Path("/nonexistent"), keystore_passphrase=Secret("x")))
    return {(method, path) for path, route in api_routes(list(app.routes)) for method in _methods(route)}


def _api_matrix() -> list[Any]:
    return [pytest.param(path, method, permission, id=f"{method} {path}")
            for (method, path), permission in API_PERMISSIONS.items()]


def _console_matrix() -> list[Any]:
    app = create_app(Settings(data_dir=Path("/nonexistent"), keystore_passphrase=Secret("x")))
    return [pytest.param(path, method, getattr(route.endpoint, PERMISSION_ATTR), id=f"{method} {path}")
            for path, route in _console_routes(list(app.routes)) for method in _methods(route)]


def _concrete(path: str) -> str:
    return _PARAM.sub("matrix-none", path)


def test_the_matrix_covers_the_app() -> None:
    assert _served_api_routes() == set(API_PERMISSIONS)
    console = _console_matrix()
    assert len(console) >= 20
    assert {case.values[1] for case in console} == {"GET", "POST"}


@pytest.mark.parametrize(("path", "method", "permission"), _api_matrix())
def test_api_route_by_role(world: tuple[Runtime, TestClient], bearer: dict[str, dict[str, str]], path: str,
                           method: str, permission: str | None) -> None:
    _, client = world
    url = _concrete(path)
    statuses = {}
    for role in ROLE_NAMES:
        response = client.request(method, url, json={}, headers=bearer[role])
        statuses[role] = response.status_code
        if permission is not None:
            allowed = permission in ROLES[role]
            if allowed:
                assert response.status_code not in (401, 403), (role, response.text)
            else:
                assert response.status_code == 403, (role, response.status_code, response.text)
                assert permission in response.json()["detail"]
    if permission is None:
        # Public or device-facing (own authentication): the admin roles change nothing.
        assert len(set(statuses.values())) == 1, statuses
        return
    anonymous = client.request(method, url, json={})
    assert anonymous.status_code == 401, anonymous.text


@pytest.mark.parametrize(("path", "method", "permission"), _console_matrix())
def test_console_page_by_role(world: tuple[Runtime, TestClient], sessions: dict[str, str], path: str, method: str,
                              permission: str) -> None:
    _, client = world
    url = _concrete(path)
    for role in ROLE_NAMES:
        token = sessions[role]
        client.cookies.set(SESSION_COOKIE, token)
        data = {"csrf": csrf_token(token)} if method == "POST" else None
        response = client.request(method, url, data=data, follow_redirects=False)
        if permission in ROLES[role]:
            assert response.status_code != 403, (role, response.text[:500])
        else:
            assert response.status_code == 403, (role, response.status_code)
    client.cookies.clear()
    assert client.request(method, url, follow_redirects=False).status_code == 303  # no session: to the login


def test_a_provisioning_admin_cannot_grant_roles(world: tuple[Runtime, TestClient], bearer: dict[str, dict[str, str]],
                                                 sessions: dict[str, str]) -> None:
    runtime, client = world
    as_pat = bearer["provisioning-admin"]
    assert client.patch("/api/v1/admins/auditor", json={"roles": ["security-admin"]}, headers=as_pat).status_code == 403
    assert client.post("/api/v1/tokens", json={"name": "x", "roles": ["auditor"]}, headers=as_pat).status_code == 403
    token = sessions["provisioning-admin"]
    client.cookies.set(SESSION_COOKIE, token)
    response = client.post("/console/admins/provisioningadmin/roles",
                           data={"csrf": csrf_token(token), "roles": ["security-admin"]})
    client.cookies.clear()
    assert response.status_code == 403
    assert runtime.admins.get("provisioningadmin").roles == ("provisioning-admin",)


def test_an_auditor_can_change_nothing(world: tuple[Runtime, TestClient], bearer: dict[str, dict[str, str]],
                                       sessions: dict[str, str]) -> None:
    _, client = world
    changing = [(p, m) for (m, p), permission in API_PERMISSIONS.items() if m != "GET" and permission is not None]
    assert changing
    for path, method in changing:
        status = client.request(method, _concrete(path), json={}, headers=bearer["auditor"]).status_code
        assert status == 403, (method, path, status)
    token = sessions["auditor"]
    client.cookies.set(SESSION_COOKIE, token)
    try:
        for path, route in _console_routes(list(client.app.routes)):  # type: ignore[attr-defined]
            if "POST" in (route.methods or set()):
                response = client.post(_concrete(path), data={"csrf": csrf_token(token)}, follow_redirects=False)
                assert response.status_code == 403, path
    finally:
        client.cookies.clear()
