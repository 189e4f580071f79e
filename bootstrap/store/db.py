"""Engines and sessions for SQLite (the embedded default) and PostgreSQL.

SQLite runs in WAL mode with ``BEGIN IMMEDIATE`` for every transaction, so
concurrent writers queue on the busy timeout instead of failing half-way.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, event
from sqlalchemy.engine import make_url
from sqlmodel import Session, create_engine

from bootstrap.files import private_file

__all__ = ["Database", "normalize_url"]


def normalize_url(url: str) -> str:
    """Use psycopg 3 for ``postgresql://`` URLs (SQLAlchemy's default is psycopg2)."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


class Database:
    """One engine per process; short sessions per unit of work."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = normalize_url(url)
        self.is_sqlite = self.url.startswith("sqlite")
        self.engine = self._make_engine(echo)

    def _make_engine(self, echo: bool) -> Engine:
        if not self.is_sqlite:
            return create_engine(
                self.url, echo=echo, pool_pre_ping=False, pool_recycle=900, pool_size=10, max_overflow=20
            )
        database = make_url(self.url).database
        if database and database != ":memory:":
            # Created 0600 before SQLite opens it: SQLite gives its -wal and -shm files the
            # database file's mode, so the hashes and the audit trail stay private.
            private_file(Path(database))
            for companion in (Path(database + "-wal"), Path(database + "-shm")):
                if companion.exists():
                    companion.chmod(0o600)  # left by an older version with the umask's mode
        engine = create_engine(self.url, echo=echo, connect_args={"check_same_thread": False, "timeout": 30})
        event.listen(engine, "connect", _sqlite_connect)
        event.listen(engine, "begin", _sqlite_begin)
        return engine

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session whose transaction commits on success and rolls back on error."""
        with Session(self.engine, expire_on_commit=False) as session, session.begin():
            yield session

    def reader(self) -> Connection:
        """A pooled Core connection for one short read (use it as a context manager).

        PostgreSQL runs it in autocommit, saving the BEGIN/ROLLBACK round trips; SQLite
        opens a deferred transaction, so in WAL mode readers do not queue behind writers.
        """
        connection = self.engine.connect()
        if self.is_sqlite:
            return connection.execution_options(dmboot_read=True)
        return connection.execution_options(isolation_level="AUTOCOMMIT")

    def dispose(self) -> None:
        self.engine.dispose()


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # Let SQLAlchemy, not pysqlite, emit BEGIN (pysqlite's implicit BEGIN is DEFERRED).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    # 64 MiB page cache (default 2 MiB): certificate and audit indexes stay in memory.
    cursor.execute("PRAGMA cache_size=-65536")
    cursor.close()


def _sqlite_begin(connection: Any) -> None:
    # Writers take the write lock up front, so they queue on the busy timeout instead of
    # failing half-way when they upgrade a read lock; Database.reader() connections only read.
    read_only = connection.get_execution_options().get("dmboot_read", False)
    connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")
