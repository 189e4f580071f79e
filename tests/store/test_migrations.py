"""Migrations: the schema matches the models, and an upgrade keeps data."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
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
