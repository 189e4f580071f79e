"""Fixtures shared by the service tests: databases (SQLite and PostgreSQL), settings, runtime."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest

from bootstrap.runtime import Runtime
from bootstrap.settings import Secret, Settings
from tests.support.backends import (  # noqa: F401 - fixtures: secret stores on every backend, OpenBao
    any_backend_runtime,
    backend_settings,
    bao,
    bao_binary,
    secret_backend,
)
from tests.support.peers import missing_peer, require_peer

PG_ADMIN_URL = os.environ.get("DMBOOT_TEST_PG", "postgresql://127.0.0.1:5432/test")


def _postgres_reason() -> str | None:
    try:
        with psycopg.connect(PG_ADMIN_URL, connect_timeout=3):
            return None
    except psycopg.Error as exc:
        return f"PostgreSQL at {PG_ADMIN_URL} is not reachable: {str(exc).strip()}"


_PG_DOWN = _postgres_reason()


@pytest.fixture(scope="session")
def postgres_admin_url() -> str:
    if _PG_DOWN:
        missing_peer(_PG_DOWN)
    return PG_ADMIN_URL


@contextmanager
def postgres_schema(admin_url: str) -> Iterator[str]:
    """A database URL whose search_path is a fresh schema, dropped on exit."""
    schema = f"t_{secrets.token_hex(6)}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield f"{admin_url}?options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture
def postgres_url(postgres_admin_url: str) -> Iterator[str]:
    """A fresh schema of its own in the test database, dropped afterwards."""
    with postgres_schema(postgres_admin_url) as url:
        yield url


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each test using this runs twice: on an SQLite file and on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'dmboot.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        keystore_passphrase=Secret("test-" + secrets.token_hex(8)),
        public_url="https://dmboot.test",
        server_names=("localhost", "127.0.0.1"),
    )


@pytest.fixture
def runtime(settings: Settings) -> Iterator[Runtime]:
    """An initialized service: schema, CA hierarchy, TLS certificate."""
    rt, _ = Runtime.initialize(settings, actor="test")
    try:
        yield rt
    finally:
        rt.close()


def pytest_runtest_setup(item: pytest.Item) -> None:
    """``@pytest.mark.peers("wbxml2xml", ...)``: each named program must be there (tests/support/peers.py)."""
    for mark in item.iter_markers("peers"):
        for name in mark.args:
            require_peer(name)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test that needs OpenBao (``bao_binary`` in its fixtures, e.g. all of tests/secrets) is ``vault``."""
    for item in items:
        if "bao_binary" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.vault)
