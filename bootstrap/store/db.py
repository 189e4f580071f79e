"""Engines and sessions for SQLite (the embedded default) and PostgreSQL.

Two kinds of session, both made here and nowhere else:

- :meth:`Database.session`, a :class:`WriteSession`: the unit of work that writes.
  On SQLite its transaction opens with ``BEGIN IMMEDIATE``, so concurrent writers
  queue on the busy timeout instead of failing half-way. The audit trail's commit
  hook is registered on this class alone (``bootstrap.services.audit``).
- :meth:`Database.read_session`, a :class:`ReadSession`: for pages, lists and
  lookups. On SQLite it opens a deferred ``BEGIN``, which in WAL mode takes no
  write lock, so reads go on while a writer holds it; it refuses to flush changes.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, event
from sqlalchemy.engine import make_url
from sqlmodel import Session, create_engine

from bootstrap.files import private_file

__all__ = ["Database", "ReadSession", "WriteSession", "normalize_url"]


class WriteSession(Session):
    """A session that writes: made by :meth:`Database.session` (the audit hook listens on this class)."""


class ReadSession(Session):
    """A session that only reads: made by :meth:`Database.read_session`; flushing a change raises."""

    def flush(self, objects: Sequence[Any] | None = None) -> None:
        if self.new or self.dirty or self.deleted:
            raise RuntimeError("a read session does not write: use Database.session()")
        super().flush(objects)


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

    @property
    def engine(self) -> Engine:
        """The engine every session and connection of this database uses."""
        return self._engine

    @engine.setter
    def engine(self, engine: Engine) -> None:
        self._engine = engine
        # The same pool; the option makes _sqlite_begin open a deferred transaction.
        self._read_engine = engine.execution_options(dmboot_read=True)

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
        with WriteSession(self.engine, expire_on_commit=False) as session, session.begin():
            yield session

    @contextmanager
    def read_session(self) -> Iterator[ReadSession]:
        """A session for reads: no SQLite write lock (deferred ``BEGIN``), rolled back at the end.

        The rows it returns stay usable after it closes (nothing is expired).
        """
        with ReadSession(self._read_engine, expire_on_commit=False, autoflush=False) as session:
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
    # failing half-way when they upgrade a read lock; Database.reader() connections and
    # read sessions only read, and in WAL mode a deferred BEGIN takes no lock a writer waits for.
    read_only = connection.get_execution_options().get("dmboot_read", False)
    connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")
