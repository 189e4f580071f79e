"""Fixtures for the DM 1.x service tests: a configured service (SQLite and PostgreSQL)."""

from __future__ import annotations

import pytest

from bootstrap.runtime import Runtime
from tests.dm1_service.support import configure


@pytest.fixture
def configured(runtime: Runtime) -> Runtime:
    """The runtime with DM server ``dm.example`` and the ``legacy`` profile (token, group key)."""
    configure(runtime)
    return runtime
