"""Rows written once per transaction: a group commit's certificates in one multi-row INSERT.

A request of a batch queues its rows (:func:`defer_insert`); they are inserted when
the transaction commits, before the audit chain's head is locked, one statement per
table. A request whose savepoint rolls back drops its own rows, as the audit
trail drops its events. A unique violation (a serial collision, 1 in 2^159) then
fails the batch's commit, and the group committer runs each request again alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import Executable, Table, event
from sqlalchemy.orm import Session as OrmSession
from sqlalchemy.orm import SessionTransaction
from sqlmodel import Session

from bootstrap.services.audit import QUEUE_KEY, drop_queued, insert_rows, mark_savepoint
from bootstrap.store.bulk import BulkUpdate

__all__ = ["defer_execute", "defer_insert", "defer_update", "drop_since", "flush_deferred", "pending",
           "pending_updates", "queue_marks"]

_QUEUE = "dmboot.deferred.rows"
_MARKS = "dmboot.deferred.savepoints"
#: Rows per INSERT statement (the certificate table has 21 columns; PostgreSQL allows 65,535 parameters).
_ROWS_PER_INSERT = 500


def defer_insert(session: Session, table: Table, values: Mapping[str, Any]) -> None:
    """Insert ``values`` into ``table`` when ``session``'s transaction commits."""
    session.info.setdefault(_QUEUE, []).append(("insert", table, values))


def defer_update(session: Session, statement: BulkUpdate, params: Mapping[str, Any]) -> None:
    """Run ``statement`` with ``params`` at the commit, BEFORE the queued rows are inserted.

    The batch's calls of one statement go to the database as one statement (PostgreSQL)
    or one executemany (SQLite), in the order each statement was first queued.
    """
    session.info.setdefault(_QUEUE, []).append(("before", statement, params))


def defer_execute(session: Session, statement: Executable) -> None:
    """Run ``statement`` at the commit, after the queued rows are inserted (in queue order)."""
    session.info.setdefault(_QUEUE, []).append(("after", statement, None))


def pending(session: Session, table: Table) -> list[Mapping[str, Any]]:
    """The rows queued for ``table`` in this transaction, not yet inserted."""
    return [values for kind, t, values in session.info.get(_QUEUE, ()) if kind == "insert" and t is table]


def pending_updates(session: Session, statement: BulkUpdate) -> list[Mapping[str, Any]]:
    """The parameters queued for ``statement`` (:func:`defer_update`) in this transaction, not yet run."""
    return [params for kind, s, params in session.info.get(_QUEUE, ()) if kind == "before" and s is statement]


def queue_marks(session: Session) -> tuple[int, int]:
    """Where this transaction's queues (deferred rows, audit events) end now: see :func:`drop_since`."""
    return len(session.info.get(_QUEUE, ())), len(session.info.get(QUEUE_KEY, ()))


def drop_since(session: Session, marks: tuple[int, int]) -> None:
    """Drop what was queued after ``marks`` (:func:`queue_marks`): a request of a batch that failed."""
    for key, mark in zip((_QUEUE, QUEUE_KEY), marks, strict=True):
        queued = session.info.get(key)
        if queued is not None:
            del queued[mark:]


def flush_deferred(session: OrmSession) -> None:
    """Run the queued updates, insert the queued rows, then run the queued statements (``before_commit``)."""
    if session.in_nested_transaction():  # a SAVEPOINT's release: not yet
        return
    queued: list[tuple[str, Any, Any]] | None = session.info.pop(_QUEUE, None)
    session.info.pop(_MARKS, None)
    if not queued:
        return
    updates: dict[BulkUpdate, list[Mapping[str, Any]]] = {}
    by_table: dict[Table, list[Mapping[str, Any]]] = {}
    for kind, target, item in queued:
        if kind == "before":
            updates.setdefault(target, []).append(item)
        elif kind == "insert":
            by_table.setdefault(target, []).append(item)
    connection = session.connection()
    if connection.dialect.name == "postgresql" and updates and by_table:
        # One round trip: the updates as CTEs of the first INSERT. They see the rows as they were
        # before the statement, as when they ran first (a mark never meets this batch's rows).
        ctes: list[str] = []
        cte_params: dict[str, Any] = {}
        for index, (statement, params) in enumerate(updates.items()):
            sql, values = statement.postgresql(connection, params, prefix=f"u{index}")
            ctes.append(sql)
            cte_params.update(values)
        table, rows = next(iter(by_table.items()))
        insert_rows(connection, table, rows[:_ROWS_PER_INSERT], cte=ctes, cte_params=cte_params)
        by_table[table] = rows[_ROWS_PER_INSERT:]
    else:
        for statement, params in updates.items():
            statement.run(connection, params)
    for table, rows in by_table.items():
        for start in range(0, len(rows), _ROWS_PER_INSERT):
            insert_rows(connection, table, rows[start:start + _ROWS_PER_INSERT])
    for kind, target, _item in queued:
        if kind == "after":
            connection.execute(target)


# insert=True: before the audit trail's before_commit listener, so the chain head is
# locked only for the audit statements themselves.
event.listen(OrmSession, "before_commit", flush_deferred, insert=True)


@event.listens_for(OrmSession, "after_transaction_create")
def _mark_savepoint(session: OrmSession, transaction: SessionTransaction) -> None:
    mark_savepoint(session, transaction, _QUEUE, _MARKS)


@event.listens_for(OrmSession, "after_soft_rollback")
def _drop_queued(session: OrmSession, previous: SessionTransaction) -> None:
    drop_queued(session, previous, _QUEUE, _MARKS)


@event.listens_for(OrmSession, "after_transaction_end")
def _forget_savepoints(session: OrmSession, transaction: SessionTransaction) -> None:
    if transaction.parent is None:
        session.info.pop(_MARKS, None)
