"""Profile servers and repositories as association tables: the migration keeps every list in
order, and the foreign keys keep the domain's rules (a used server stays; a deleted profile
takes its links along)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from bootstrap.errors import Conflict
from bootstrap.runtime import Runtime
from bootstrap.services.config import ProfileSpec
from bootstrap.store import migrate, profile_links
from bootstrap.store.db import Database

ADMIN = "admin:test"
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)

_SERVERS = sa.table("dm_server", sa.column("id"), sa.column("server_id"), sa.column("name"), sa.column("url"),
                    sa.column("created_at", sa.DateTime(timezone=True)),
                    sa.column("updated_at", sa.DateTime(timezone=True)))
_REPOS = sa.table("data_repository", sa.column("id"), sa.column("name"), sa.column("url"),
                  sa.column("created_at", sa.DateTime(timezone=True)),
                  sa.column("updated_at", sa.DateTime(timezone=True)))
_PROFILE_COLUMNS = ("id", "name", "description", "certificate_profile", "delivery", "validity_days", "enabled",
                    "server_keygen", "supersede", "supersede_grace_seconds")
_PROFILES = sa.table("enrollment_profile", *(sa.column(c) for c in _PROFILE_COLUMNS),
                     *(sa.column(c, sa.JSON()) for c in ("dm_server_ids", "data_repository_ids", "dmacc", "key_types",
                                                          "attestation", "extra_mos")),
                     sa.column("created_at", sa.DateTime(timezone=True)),
                     sa.column("updated_at", sa.DateTime(timezone=True)))
_DEVICES = sa.table("device", sa.column("id"), sa.column("dev_id"), sa.column("profile_id"), sa.column("status"),
                    sa.column("chosen_dm_server_id"), sa.column("declared_mos", sa.JSON()),
                    sa.column("features", sa.JSON()), sa.column("pending_packages", sa.JSON()),
                    sa.column("created_at", sa.DateTime(timezone=True)),
                    sa.column("updated_at", sa.DateTime(timezone=True)))

#: profile id -> (name, dm_server_ids, data_repository_ids) as revision 0010 stored them.
OLD_PROFILES: dict[int, tuple[str, list[Any], list[Any]]] = {
    1: ("fleet", [3, 1], [2, 1]),
    2: ("lab", [2], []),
    3: ("legacy", [1, 9, 1], [7]),  # 9 and 7 name nothing any more; 1 is named twice
    4: ("spare", [1, 2, 3], [1, 2]),
}


def _profile(profile_id: int, name: str, servers: list[Any], repos: list[Any]) -> dict[str, Any]:
    return {"id": profile_id, "name": name, "description": "", "certificate_profile": "device", "delivery": "hget",
            "validity_days": 365, "enabled": True, "server_keygen": False, "supersede": "first-use",
            "supersede_grace_seconds": 3600, "dm_server_ids": servers, "data_repository_ids": repos,
            "dmacc": {}, "key_types": ["p256"], "attestation": ["token"], "extra_mos": [],
            "created_at": NOW, "updated_at": NOW}


@pytest.fixture
def old_database(database_url: str) -> Iterator[Database]:
    """A database at revision 0010 holding servers, repositories, profiles and a device."""
    database = Database(database_url)
    migrate.upgrade(database, "0010")
    with database.engine.begin() as connection:
        connection.execute(_SERVERS.insert(), [
            {"id": i, "server_id": f"dm{i}", "name": f"DM {i}", "url": f"https://dm{i}.example.net/",
             "created_at": NOW, "updated_at": NOW} for i in (1, 2, 3)])
        connection.execute(_REPOS.insert(), [
            {"id": i, "name": f"repo{i}", "url": f"https://repo{i}.example.net/", "created_at": NOW,
             "updated_at": NOW} for i in (1, 2)])
        connection.execute(_PROFILES.insert(), [_profile(i, *old) for i, old in OLD_PROFILES.items()])
        connection.execute(_DEVICES.insert(), [{
            "id": 1, "dev_id": "IMEI:490154203237518", "profile_id": 1, "status": "registered",
            "chosen_dm_server_id": 1, "declared_mos": [], "features": {}, "pending_packages": [],
            "created_at": NOW, "updated_at": NOW}])
    try:
        yield database
    finally:
        database.dispose()


def _links(database: Database, table: str, column: str) -> list[tuple[int, int, int]]:
    with database.engine.connect() as connection:
        query = f"SELECT profile_id, position, {column} FROM {table} ORDER BY profile_id, position"  # noqa: S608 - the test's own names
        rows = connection.execute(sa.text(query))
        return [(int(a), int(b), int(c)) for a, b, c in rows]


def _columns(database: Database, table: str) -> set[str]:
    with database.engine.connect() as connection:
        return {c["name"] for c in sa.inspect(connection).get_columns(table)}


def test_upgrade_keeps_every_relation_in_order(old_database: Database) -> None:
    migrate.upgrade(old_database)

    # Worked out by hand from OLD_PROFILES: positions count from 0; dangling ids and repeats are gone.
    assert _links(old_database, "profile_dm_server", "dm_server_id") == [
        (1, 0, 3), (1, 1, 1), (2, 0, 2), (3, 0, 1), (4, 0, 1), (4, 1, 2), (4, 2, 3)]
    assert _links(old_database, "profile_data_repository", "data_repository_id") == [
        (1, 0, 2), (1, 1, 1), (4, 0, 1), (4, 1, 2)]
    assert not {"dm_server_ids", "data_repository_ids"} & _columns(old_database, "enrollment_profile")
    with old_database.read_session() as session:
        assert profile_links.server_ids(session, 1) == [3, 1]
        assert [s.server_id for s in profile_links.servers(session, 1)] == ["dm3", "dm1"]
        assert [r.name for r in profile_links.repositories(session, 1)] == ["repo2", "repo1"]
        assert profile_links.profiles_using_server(session, 3) == ["fleet", "spare"]
        assert profile_links.profiles_using_repository(session, 2) == ["fleet", "spare"]


def test_downgrade_restores_the_json_lists(old_database: Database) -> None:
    migrate.upgrade(old_database)
    migrate.upgrade(old_database)  # again: nothing to do
    from alembic import command

    config = migrate.alembic_config(old_database.url)
    with old_database.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0010")
    assert migrate.current_revision(old_database) == "0010"
    profiles = sa.table("enrollment_profile", sa.column("id"), sa.column("dm_server_ids", sa.JSON()),
                        sa.column("data_repository_ids", sa.JSON()))
    with old_database.engine.connect() as connection:
        restored = {int(i): (list(s), list(r)) for i, s, r in connection.execute(
            sa.select(profiles.c.id, profiles.c.dm_server_ids, profiles.c.data_repository_ids))}
    assert restored == {1: ([3, 1], [2, 1]), 2: ([2], []), 3: ([1], []), 4: ([1, 2, 3], [1, 2])}
    migrate.upgrade(old_database)  # and up again, to the same links
    assert _links(old_database, "profile_dm_server", "dm_server_id")[:2] == [(1, 0, 3), (1, 1, 1)]


def test_the_database_refuses_to_delete_a_server_a_profile_names(old_database: Database) -> None:
    """The foreign key holds even for a writer that skips the service's check."""
    migrate.upgrade(old_database)
    with pytest.raises(IntegrityError), old_database.engine.begin() as connection:
        connection.execute(sa.text("DELETE FROM dm_server WHERE id = 2"))
    with pytest.raises(IntegrityError), old_database.engine.begin() as connection:
        connection.execute(sa.text("DELETE FROM data_repository WHERE id = 1"))
    with old_database.engine.begin() as connection:  # a profile takes its links along
        connection.execute(sa.text("DELETE FROM enrollment_profile WHERE id = 2"))
    assert [link for link in _links(old_database, "profile_dm_server", "dm_server_id") if link[0] == 2] == []
    with old_database.engine.begin() as connection:  # dm2 is nobody's any more
        connection.execute(sa.text("DELETE FROM profile_dm_server WHERE dm_server_id = 2"))
        connection.execute(sa.text("DELETE FROM dm_server WHERE id = 2"))


def _spec(name: str, servers: Sequence[str], repos: Sequence[str] = ()) -> ProfileSpec:
    return ProfileSpec(name=name, dm_servers=tuple(servers), data_repositories=tuple(repos))


def test_profiles_keep_their_order_and_in_use_members_stay(runtime: Runtime) -> None:
    config = runtime.config
    for name in ("alpha", "beta", "gamma"):
        config.add_server(name, name.title(), f"https://{name}.example.net/", actor=ADMIN)
    for name in ("r1", "r2"):
        config.add_repository(name, f"https://{name}.example.net/", actor=ADMIN)
    view = config.add_profile(_spec("fleet", ["gamma", "alpha"], ["r2", "r1"]), actor=ADMIN)
    assert (view.dm_servers, view.data_repositories) == (("gamma", "alpha"), ("r2", "r1"))
    config.add_profile(_spec("lab", ["alpha"]), actor=ADMIN)

    with pytest.raises(Conflict, match=r"profiles: fleet, lab") as refused:
        config.delete_server("alpha", actor=ADMIN)
    assert refused.value.field == "server_id"
    with pytest.raises(Conflict, match="fleet"):
        config.delete_repository("r1", actor=ADMIN)

    view = config.update_profile(_spec("fleet", ["beta", "gamma", "alpha"], ["r1"]), actor=ADMIN)
    assert (view.dm_servers, view.data_repositories) == (("beta", "gamma", "alpha"), ("r1",))
    assert config.get_profile("fleet").dm_servers == ("beta", "gamma", "alpha")
    config.delete_repository("r2", actor=ADMIN)  # no profile names it any more

    config.delete_profile("lab", actor=ADMIN)
    config.delete_profile("fleet", actor=ADMIN)
    with runtime.database.read_session() as session:
        assert session.execute(sa.text("SELECT COUNT(*) FROM profile_dm_server")).scalar_one() == 0
    config.delete_server("alpha", actor=ADMIN)
    assert [s.server_id for s in config.list_servers()] == ["beta", "gamma"]
