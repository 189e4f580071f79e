"""Schema migrations (Alembic), run by `dmboot init`, `dmboot serve` and `dmboot db upgrade`."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from bootstrap.store.db import Database

__all__ = ["alembic_config", "current_revision", "head_revision", "upgrade"]

_MIGRATIONS = Path(__file__).with_name("migrations")


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(database: Database, revision: str = "heads") -> None:
    """Bring the schema to ``revision`` (all heads by default); existing data is kept.

    Features add their tables in revisions of their own; until a merge revision
    joins them, there may be several heads, and "heads" applies them all.
    """
    config = alembic_config(database.url)
    with database.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def current_revision(database: Database) -> str | None:
    """The applied revisions, sorted and comma-joined (None before the first upgrade)."""
    with database.engine.connect() as connection:
        heads = MigrationContext.configure(connection).get_current_heads()
    return ",".join(sorted(heads)) or None


def head_revision() -> str | None:
    """The revisions an up-to-date database has, in the form current_revision() uses."""
    return ",".join(sorted(ScriptDirectory.from_config(alembic_config("sqlite://")).get_heads())) or None
