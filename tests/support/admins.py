"""Helpers for tests of admins, the console and the role matrix."""

from __future__ import annotations

import re

from starlette.testclient import TestClient

from bootstrap.auth.passwords import ScryptCost
from bootstrap.runtime import Runtime
from bootstrap.services.admins import AdminAccountService, AdminInfo

#: scrypt at 2**10: the real cost (2**17, ~0.6 s) would only make the tests slow.
FAST = ScryptCost(log2_n=10, r=8, p=1)
PASSWORD = "correct horse battery staple"
CONSOLE = "https://testserver"


def fast_admins(runtime: Runtime) -> AdminAccountService:
    """Give ``runtime`` an admin service with a cheap password hash; return it."""
    runtime.admins = AdminAccountService(runtime.database, runtime.store, issuer="test", cost=FAST)
    return runtime.admins


def make_admin(runtime: Runtime, name: str, *roles: str) -> AdminInfo:
    return runtime.admins.create(name, PASSWORD, list(roles), actor="cli:test")


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', html)
    assert match, "no CSRF field in the page"
    return match.group(1)


def login(client: TestClient, username: str, password: str = PASSWORD) -> None:
    """Log ``client`` in through the login form (no TOTP)."""
    page = client.get("/console/login")
    response = client.post("/console/login", data={"username": username, "password": password,
                                                   "csrf": csrf_of(page.text), "next": "/console/"},
                           follow_redirects=False)
    assert response.status_code == 303, response.text
    assert response.headers["location"] == "/console/"
