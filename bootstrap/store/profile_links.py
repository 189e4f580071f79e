"""An enrollment profile's DM servers and data repositories, in order (association tables).

The lists live in ``profile_dm_server`` and ``profile_data_repository``: one row per
member with its ``position`` (the first DM server is the account's). Foreign keys keep
them honest: a server or repository a profile names cannot be deleted, and deleting the
profile deletes its links. Core statements, built once: enrollment reads them every time.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Table, bindparam, delete, insert, select
from sqlmodel import Session

from bootstrap.store.models import (
    DataRepositoryRow,
    DmServerRow,
    EnrollmentProfileRow,
    ProfileDataRepositoryRow,
    ProfileDmServerRow,
)

__all__ = [
    "profiles_using_repository",
    "profiles_using_server",
    "repositories",
    "repository_ids",
    "server_ids",
    "servers",
    "set_repositories",
    "set_servers",
]

_SERVER_LINKS: Table = ProfileDmServerRow.__table__  # type: ignore[attr-defined]
_REPO_LINKS: Table = ProfileDataRepositoryRow.__table__  # type: ignore[attr-defined]
_SERVERS: Table = DmServerRow.__table__  # type: ignore[attr-defined]
_REPOS: Table = DataRepositoryRow.__table__  # type: ignore[attr-defined]
_PROFILES: Table = EnrollmentProfileRow.__table__  # type: ignore[attr-defined]

_SERVER_IDS = (select(_SERVER_LINKS.c.dm_server_id).where(_SERVER_LINKS.c.profile_id == bindparam("profile"))
               .order_by(_SERVER_LINKS.c.position))
_REPO_IDS = (select(_REPO_LINKS.c.data_repository_id).where(_REPO_LINKS.c.profile_id == bindparam("profile"))
             .order_by(_REPO_LINKS.c.position))
_SERVER_USERS = (select(_PROFILES.c.name).join(_SERVER_LINKS, _SERVER_LINKS.c.profile_id == _PROFILES.c.id)
                 .where(_SERVER_LINKS.c.dm_server_id == bindparam("member")).order_by(_PROFILES.c.name))
_REPO_USERS = (select(_PROFILES.c.name).join(_REPO_LINKS, _REPO_LINKS.c.profile_id == _PROFILES.c.id)
               .where(_REPO_LINKS.c.data_repository_id == bindparam("member")).order_by(_PROFILES.c.name))


def server_ids(session: Session, profile_id: int) -> list[int]:
    """The profile's DM server ids, the account's server first."""
    return [int(i) for i in session.connection().scalars(_SERVER_IDS, {"profile": profile_id})]


def repository_ids(session: Session, profile_id: int) -> list[int]:
    """The profile's data repository ids, in the order the admin gave them."""
    return [int(i) for i in session.connection().scalars(_REPO_IDS, {"profile": profile_id})]


def servers(session: Session, profile_id: int) -> list[DmServerRow]:
    """The profile's DM servers (ORM rows), the account's server first."""
    query = (select(DmServerRow).join(_SERVER_LINKS, _SERVER_LINKS.c.dm_server_id == _SERVERS.c.id)
             .where(_SERVER_LINKS.c.profile_id == profile_id).order_by(_SERVER_LINKS.c.position))
    return list(session.scalars(query))


def repositories(session: Session, profile_id: int) -> list[DataRepositoryRow]:
    """The profile's data repositories (ORM rows), in order."""
    query = (select(DataRepositoryRow).join(_REPO_LINKS, _REPO_LINKS.c.data_repository_id == _REPOS.c.id)
             .where(_REPO_LINKS.c.profile_id == profile_id).order_by(_REPO_LINKS.c.position))
    return list(session.scalars(query))


def set_servers(session: Session, profile_id: int, ids: Sequence[int]) -> None:
    """Replace the profile's DM servers by ``ids``, in that order (the first is the account's)."""
    _replace(session, _SERVER_LINKS, "dm_server_id", profile_id, ids)


def set_repositories(session: Session, profile_id: int, ids: Sequence[int]) -> None:
    """Replace the profile's data repositories by ``ids``, in that order."""
    _replace(session, _REPO_LINKS, "data_repository_id", profile_id, ids)


def profiles_using_server(session: Session, server_pk: int) -> list[str]:
    """Names of the profiles that name the DM server (by its row id), sorted."""
    return [str(n) for n in session.connection().scalars(_SERVER_USERS, {"member": server_pk})]


def profiles_using_repository(session: Session, repository_pk: int) -> list[str]:
    """Names of the profiles that name the data repository (by its row id), sorted."""
    return [str(n) for n in session.connection().scalars(_REPO_USERS, {"member": repository_pk})]


def _replace(session: Session, table: Table, column: str, profile_id: int, ids: Sequence[int]) -> None:
    if len(set(ids)) != len(ids):
        raise ValueError(f"{column}: a profile names each member once, not {list(ids)}")
    session.flush()  # the profile row (and any member row) exists before its links
    connection = session.connection()
    connection.execute(delete(table).where(table.c.profile_id == profile_id))
    if ids:
        connection.execute(insert(table), [{"profile_id": profile_id, "position": i, column: member}
                                           for i, member in enumerate(ids)])
