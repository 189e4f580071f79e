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

from bootstrap.services.audit import insert_rows

__all__ = ["defer_execute", "defer_insert", "flush_deferred", "pending"]

_QUEUE = "dmboot.deferred.rows"
_MARKS = "dmboot.deferred.savepoints"
#: Rows per INSERT statement (the certificate table has 21 columns; PostgreSQL allows 65,535 parameters).
_ROWS_PER_INSERT = 500


def defer_insert(session: Session, table: Table, values: Mapping[str, Any]) -> None:
    """Insert ``values`` into ``table`` when ``session``'s transaction commits."""
    session.info.setdefault(_QUEUE, []).append((table, values))


def defer_execute(session: Session, statement: Executable) -> None:
    """Run ``statement`` at the commit, after the queued rows are inserted (in queue order)."""
    session.info.setdefault(_QUEUE, []).append((None, statement))


def pending(session: Session, table: Table) -> list[Mapping[str, Any]]:
    """The rows queued for ``table`` in this transaction, not yet inserted."""
    return [values for t, values in session.info.get(_QUEUE, ()) if t is table]


def flush_deferred(session: OrmSession) -> None:
    """Insert what is queued, then run the queued statements (``before_commit``)."""
    if session.in_nested_transaction():  # a SAVEPOINT's release: not yet
        return
    queued: list[tuple[Table | None, Any]] | None = session.info.pop(_QUEUE, None)
    session.info.pop(_MARKS, None)
    if not queued:
        return
    by_table: dict[Table, list[Mapping[str, Any]]] = {}
    for table, item in queued:
        if table is not None:
            by_table.setdefault(table, []).append(item)
    connection = session.connection()
    for table, rows in by_table.items():
        for start in range(0, len(rows), _ROWS_PER_INSERT):
            insert_rows(connection, table, rows[start:start + _ROWS_PER_INSERT])
    for table, item in queued:
        if table is None:
            connection.execute(item)


# insert=True: before the audit trail's before_commit listener, so the chain head is
# locked only for the audit statements themselves.
event.listen(OrmSession, "before_commit", flush_deferred, insert=True)


@event.listens_for(OrmSession, "after_transaction_create")
def _mark_savepoint(session: OrmSession, transaction: SessionTransaction) -> None:
    if transaction.nested:
        session.info.setdefault(_MARKS, {})[id(transaction)] = len(session.info.get(_QUEUE, ()))


@event.listens_for(OrmSession, "after_soft_rollback")
def _drop_queued(session: OrmSession, previous: SessionTransaction) -> None:
    if previous.nested:
        mark = session.info.get(_MARKS, {}).get(id(previous))
        queued = session.info.get(_QUEUE)
        if mark is not None and queued is not None:
            del queued[mark:]
    elif previous.parent is None:
        session.info.pop(_QUEUE, None)
        session.info.pop(_MARKS, None)


@event.listens_for(OrmSession, "after_transaction_end")
def _forget_savepoints(session: OrmSession, transaction: SessionTransaction) -> None:
    if transaction.parent is None:
        session.info.pop(_MARKS, None)
