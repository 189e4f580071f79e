"""The CRL publisher's PostgreSQL lock is per schema and CA: one database, several services.

Advisory locks belong to the whole database. Two services (or a service and its
tests) that keep their tables in schemas of their own share one database; one's
publisher must not make the other skip its CRLs ("another replica is publishing").
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from bootstrap.runtime import Runtime
from bootstrap.settings import Secret, Settings
from tests.conftest import postgres_schema

pytestmark = pytest.mark.postgres


def _runtime(folder: Path, url: str) -> Runtime:
    settings = Settings(data_dir=folder / "data", database_url=url,
                        keystore_passphrase=Secret("lock-" + secrets.token_hex(8)), public_url="https://dmboot.test",
                        server_names=("localhost",))
    runtime, _ = Runtime.initialize(settings, actor="test")
    return runtime


@pytest.fixture
def two_services(tmp_path: Path, postgres_admin_url: str) -> Iterator[tuple[Runtime, Runtime]]:
    with postgres_schema(postgres_admin_url) as url_a, postgres_schema(postgres_admin_url) as url_b:
        a, b = _runtime(tmp_path / "a", url_a), _runtime(tmp_path / "b", url_b)
        try:
            yield a, b
        finally:
            a.close()
            b.close()


def test_a_publisher_in_another_schema_does_not_block(two_services: tuple[Runtime, Runtime]) -> None:
    a, b = two_services
    with a.database.session() as session:
        authority_id = a.authorities.active_row(session).id
        assert authority_id is not None
        assert a.crl_publisher._lock(session, authority_id)  # held until this transaction ends
        report = b.crl_publisher.publish(force=True)
    assert report.skipped == ()
    assert report.numbers  # b published its CRLs while a held its own lock


def test_a_second_publisher_of_the_same_schema_skips(two_services: tuple[Runtime, Runtime]) -> None:
    a, _ = two_services
    replica = Runtime(a.settings)  # another replica of service a: same database schema and secret store
    try:
        with a.database.session() as session:
            authority_id = a.authorities.active_row(session).id
            assert authority_id is not None
            assert a.crl_publisher._lock(session, authority_id)
            report = replica.crl_publisher.publish(force=True)
        assert report.skipped != ()
    finally:
        replica.close()
