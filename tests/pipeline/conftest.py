"""Fixtures for the issuance pipeline tests: a configured service (SQLite and PostgreSQL)."""

from __future__ import annotations

import pytest

from bootstrap.runtime import Runtime
from tests.enrollment.support import configure


@pytest.fixture
def configured(runtime: Runtime) -> Runtime:
    """The runtime with dm1, repo1 and the ``fleet`` profile (all methods, group key)."""
    configure(runtime)
    return runtime
