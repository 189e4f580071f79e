"""The store's sessions and column types: UTC in and out, the audit hook on the store's own
write sessions only, and read sessions that do not wait for SQLite's write lock."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa
import sqlmodel
from sqlalchemy import event
from sqlalchemy.exc import StatementError
from sqlmodel import SQLModel, select

from bootstrap.services import audit
from bootstrap.store import migrate
from bootstrap.store.db import Database, ReadSession, WriteSession
from bootstrap.store.models import AuditEvent, DmServerRow, UsedNonceRow, UtcDateTime


@pytest.fixture
def database(database_url: str) -> Iterator[Database]:
    db = Database(database_url)
    migrate.upgrade(db)
    try:
        yield db
    finally:
        db.dispose()


# -- UtcDateTime ----------------------------------------------------------------------------


def test_every_datetime_column_is_utc_aware() -> None:
    datetime_columns = [(t.name, c.name, c.type) for t in SQLModel.metadata.sorted_tables for c in t.columns
                        if isinstance(c.type, sa.DateTime) or isinstance(getattr(c.type, "impl", None), sa.DateTime)]
    assert len(datetime_columns) == 54  # counted by hand in bootstrap/store/models (52, and the two of models/tpm.py)
    assert [(t, c) for t, c, kind in datetime_columns if not isinstance(kind, UtcDateTime)] == []


def test_datetimes_are_stored_in_utc_and_read_back_aware(database: Database) -> None:
    # 14:30 at UTC+02:00 is 12:30 UTC: the same instant, read back in UTC.
    cest = timezone(timedelta(hours=2))
    with database.session() as session:
        session.add(UsedNonceRow(digest="a" * 64, expires_at=datetime(2026, 6, 1, 14, 30, tzinfo=cest)))
    with database.read_session() as session:
        row = session.exec(select(UsedNonceRow)).one()
        core = session.connection().execute(sa.select(sa.func.max(UsedNonceRow.__table__.c.expires_at))).scalar_one()  # type: ignore[attr-defined]
    assert row.expires_at == datetime(2026, 6, 1, 12, 30, tzinfo=UTC)
    assert row.expires_at.utcoffset() == timedelta(0)
    assert core == datetime(2026, 6, 1, 12, 30, tzinfo=UTC) and core.tzinfo is not None
    with database.engine.connect() as connection:  # what SQLite keeps: the UTC wall-clock time
        stored = connection.execute(sa.text("SELECT expires_at FROM used_nonce")).scalar_one()
    if database.is_sqlite:
        assert stored == "2026-06-01 12:30:00.000000"


def test_a_naive_datetime_is_refused_on_write(database: Database) -> None:
    refused = pytest.raises(StatementError, match="naive datetime 2026-06-01T12:30:00 refused")
    with refused, database.session() as session:
        session.add(UsedNonceRow(digest="b" * 64, expires_at=datetime(2026, 6, 1, 12, 30)))  # noqa: DTZ001
    with database.read_session() as session:
        assert session.exec(select(UsedNonceRow)).all() == []


# -- the audit hook ---------------------------------------------------------------------------


@pytest.mark.parametrize("session_class", [sqlmodel.Session, sa.orm.Session, ReadSession],
                         ids=["sqlmodel.Session", "sqlalchemy.orm.Session", "ReadSession"])
def test_the_audit_hook_is_not_on_other_sessions(session_class: type[sa.orm.Session]) -> None:
    assert not event.contains(session_class, "before_commit", audit._write_queued)
    assert not event.contains(session_class, "after_soft_rollback", audit._drop_queued)
    assert event.contains(WriteSession, "before_commit", audit._write_queued)


def test_only_the_store_s_write_sessions_append_audit_events(database: Database) -> None:
    with database.session() as session:
        audit.append_event(session, actor="admin:test", action="test.write", outcome="success")
    with sqlmodel.Session(database.engine) as outside, pytest.raises(TypeError, match="Database.session"):
        audit.append_event(outside, actor="admin:test", action="test.outside", outcome="success")
    with database.read_session() as reading, pytest.raises(TypeError, match="Database.session"):
        audit.append_event(reading, actor="admin:test", action="test.read", outcome="success")
    with database.read_session() as session:
        assert [e.action for e in session.exec(select(AuditEvent))] == ["test.write"]


# -- read sessions ----------------------------------------------------------------------------


def test_a_read_session_proceeds_while_another_connection_holds_the_write_lock(tmp_path: Path) -> None:
    path = tmp_path / "locked.db"
    database = Database(f"sqlite:///{path}")
    migrate.upgrade(database)
    with database.session() as session:
        session.add(DmServerRow(server_id="dm1", name="DM 1", url="https://dm1.example.net/"))
    writer = sqlite3.connect(path, isolation_level=None)
    try:
        writer.execute("BEGIN IMMEDIATE")
        writer.execute("INSERT INTO dm_server (server_id, name, url, created_at, updated_at)"
                       " VALUES ('dm2', 'DM 2', 'https://dm2.example.net/', '2026-12-01', '2026-12-01')")
        # The lock is held: another writer is refused at once (no busy wait, timeout 0).
        other = sqlite3.connect(path, isolation_level=None, timeout=0)
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            other.execute("BEGIN IMMEDIATE")
        other.close()
        with database.read_session() as session:  # BEGIN IMMEDIATE would queue here
            seen = [s.server_id for s in session.exec(select(DmServerRow))]
        assert seen == ["dm1"]  # the committed state; the writer's row is not visible yet
        writer.execute("COMMIT")
    finally:
        writer.close()
        database.dispose()


def test_a_write_session_takes_the_write_lock_up_front(tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path / 'w.db'}")
    migrate.upgrade(database)
    statements: list[str] = []
    event.listen(database.engine, "before_cursor_execute",
                 lambda _c, _cur, statement, *_a: statements.append(statement))
    with database.read_session() as session:
        session.exec(select(DmServerRow)).all()
    with database.session() as session:
        session.exec(select(DmServerRow)).all()
    database.dispose()
    begins = [s for s in statements if s.startswith("BEGIN")]
    assert begins == ["BEGIN", "BEGIN IMMEDIATE"]


def test_a_read_session_refuses_to_write(database: Database) -> None:
    with pytest.raises(RuntimeError, match="read session"), database.read_session() as session:
        session.add(DmServerRow(server_id="dm9", name="x", url="https://dm9.example.net/"))
        session.flush()
