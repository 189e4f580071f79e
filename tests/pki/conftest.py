"""Session fixtures for the pki tests: cached keys and CA hierarchies."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from pki.keys import KeyType
from tests.pki.helpers import Hierarchy, build_hierarchy, cached_hierarchy


@pytest.fixture(scope="session")
def hierarchies() -> Callable[[KeyType], Hierarchy]:
    """``hierarchies(key_type)``: the session's root + issuing CA of that key type."""
    return cached_hierarchy


@pytest.fixture(scope="session")
def hierarchy() -> Hierarchy:
    """The session's P-256 hierarchy."""
    return cached_hierarchy(KeyType.P256)


@pytest.fixture(scope="session")
def other_hierarchy() -> Hierarchy:
    """An unrelated P-256 hierarchy (other keys, other names): the wrong CA to trust."""
    return cached_hierarchy(KeyType.P256, "other")


@pytest.fixture(scope="session")
def old_hierarchy() -> Hierarchy:
    """A P-256 hierarchy created three years ago, still valid: leaves can be issued in the past."""
    return build_hierarchy(KeyType.P256, slot="old", now=datetime.now(UTC) - timedelta(days=3 * 365))
