"""Fixtures of the web tests: a client of the whole app, and an admin's bearer token."""

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
    token = runtime.tokens.create("web-admin", ["provisioning-admin", "security-admin"], actor="test")
    return {"authorization": f"Bearer {token}"}
