"""Fixtures for the console tests: a runtime with cheap password hashing and an HTTPS test client."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from bootstrap.app import create_app
from bootstrap.runtime import Runtime
from tests.support.admins import CONSOLE, fast_admins


@pytest.fixture
def console_runtime(runtime: Runtime) -> Runtime:
    fast_admins(runtime)
    return runtime


@pytest.fixture
def client(console_runtime: Runtime) -> Iterator[TestClient]:
    # https: the console's cookies are Secure and the test client honours that.
    with TestClient(create_app(runtime=console_runtime), base_url=CONSOLE) as test_client:
        yield test_client
