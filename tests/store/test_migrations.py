"""Migrations: the schema matches the models, and an upgrade keeps data."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text
from sqlmodel import SQLModel, select

from bootstrap.runtime import Runtime
from bootstrap.store import migrate
from bootstrap.store.db import Database
from bootstrap.store.models import AuthorityRow


def test_migrations_match_the_models(database_url: str) -> None:
    database = Database(database_url)
    migrate.upgrade(database)
    with database.engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), SQLModel.metadata)
    database.dispose()
    assert diff == [], f"models changed without a migration: {diff}"


def test_upgrade_again_keeps_data(runtime: Runtime) -> None:
    with runtime.database.session() as session:
        before = [r.fingerprint for r in session.exec(select(AuthorityRow))]
    migrate.upgrade(runtime.database)
    assert migrate.current_revision(runtime.database) == migrate.head_revision()
    with runtime.database.session() as session:
        assert [r.fingerprint for r in session.exec(select(AuthorityRow))] == before


def test_crl_0009_carries_existing_revocations_over(tmp_path: Path) -> None:
    """Certificates revoked before the upgrade land in revoked_certificate, scoped to their CA's CRL."""
    database = Database(f"sqlite:///{tmp_path / 'old.db'}")
    migrate.upgrade(database, "0008")
    now = datetime.now(UTC)
    with database.engine.begin() as connection:
        connection.execute(text(
            "INSERT INTO authority (name, kind, subject, serial_hex, fingerprint, not_before, not_after, key_ref, pem,"
            " active, created_at) VALUES ('issuing-1', 'issuing', 'CN=x', '1', 'f', :now, :later, 'k', 'p', 1, :now)"),
            {"now": now, "later": now + timedelta(days=1)})
        for serial, status in (("a1", "revoked"), ("a2", "valid")):
            connection.execute(text(
                "INSERT INTO certificate (serial_hex, authority_id, profile, subject, common_name, sans, key_type,"
                " not_before, not_after, status, revoked_at, revocation_reason, fingerprint, pem, requested_by,"
                " created_at) VALUES (:serial, 1, 'device', 'CN=x', 'x', '[]', 'p256', :now, :later, :status,"
                " :now, 'superseded', :serial, 'p', 'test', :now)"),
                {"serial": serial, "status": status, "now": now, "later": now + timedelta(days=1)})
    migrate.upgrade(database)
    with database.engine.connect() as connection:
        rows = connection.execute(text("SELECT serial_hex, scope, reason FROM revoked_certificate")).all()
    database.dispose()
    assert [tuple(r) for r in rows] == [("a1", "issuing-1", "superseded")]
