"""The audit trail: append-only, hash-chained security events.

Each event's hash is SHA-256 over the previous hash and the event's canonical
JSON: the array [seq, at, actor, action, outcome, target, request_id, detail]
without whitespace, non-ASCII escaped, ``detail`` being the event's detail
object as JSON text with sorted keys (see :func:`event_hash` and
docs/architecture.md). A transaction's events are queued
(:func:`append_event`) and written when it commits, under one lock of the chain's
head row, so concurrent replicas extend one chain instead of forking it and the
lock is held only for the commit. Events of a transaction that rolls back are
dropped with it. Details never carry secrets: callers pass identifiers,
fingerprints, reasons.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Table, bindparam, event, insert, select, update
from sqlalchemy.orm import Session as OrmSession
from sqlalchemy.orm import SessionTransaction
from sqlmodel import Session

from bootstrap import metrics
from bootstrap.store.db import WriteSession
from bootstrap.store.models import AuditEvent, AuditHead, utcnow

__all__ = ["GENESIS", "AuditRecord", "append_event", "append_events", "drop_queued", "event_hash", "insert_rows",
           "mark_savepoint"]

log = logging.getLogger(__name__)

_QUEUE = "dmboot.audit.queue"
#: session.info: the events queued for this transaction's commit (a request of a group commit drops its own).
QUEUE_KEY = _QUEUE
_WRITTEN = "dmboot.audit.written"  # written in this transaction; counted by metrics once it commits
_MARKS = "dmboot.audit.savepoints"

#: The hash the first event chains to.
GENESIS = "0" * 64
_HEAD: Table = AuditHead.__table__  # type: ignore[attr-defined]
_EVENTS: Table = AuditEvent.__table__  # type: ignore[attr-defined]
# Built once: constructing statements per call cost more than running them.
_LOCK_HEAD = select(_HEAD.c.seq, _HEAD.c.hash).where(_HEAD.c.id == 1).with_for_update()
_MOVE_HEAD = update(_HEAD).where(_HEAD.c.id == 1).values(seq=bindparam("seq"), hash=bindparam("hash"))
_MOVED_HEAD = "UPDATE audit_head SET seq = %(head_seq)s, hash = %(head_hash)s WHERE id = 1"
#: Events per multi-row INSERT (10 parameters each; SQLite allows 32,766 per statement).
_ROWS_PER_INSERT = 256


def event_hash(
    prev_hash: str,
    seq: int,
    at: datetime,
    actor: str,
    action: str,
    outcome: str,
    target: str | None,
    request_id: str | None,
    detail: str,
) -> str:
    """The chain hash of one event (documented in docs/architecture.md)."""
    body = json.dumps(
        [seq, at.isoformat(), actor, action, outcome, target, request_id, detail],
        separators=(",", ":"),
        ensure_ascii=True,
    )
    return hashlib.sha256((prev_hash + body).encode()).hexdigest()


@dataclass(frozen=True)
class AuditRecord:
    """One event to append (see append_events)."""

    actor: str
    action: str
    outcome: str
    target: str | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)
    request_id: str | None = None


def append_event(
    session: Session,
    *,
    actor: str,
    action: str,
    outcome: str,
    target: str | None = None,
    request_id: str | None = None,
    detail: Mapping[str, Any] | None = None,
) -> None:
    """Add one event to ``session``'s transaction: it is chained and written when that
    transaction commits, and dropped if it rolls back.

    Queuing to the commit writes all of a transaction's events with one lock of the
    chain's head, held only for the commit itself (see :func:`_write_queued`).

    Raises:
        TypeError: ``session`` is not one of ``Database.session()``'s: only those carry
            the commit hook, and an event queued anywhere else would be lost.
    """
    if not isinstance(session, WriteSession):
        raise TypeError(f"audit events need a Database.session() session, not a {type(session).__name__}")
    session.info.setdefault(_QUEUE, []).append(AuditRecord(actor, action, outcome, target, detail or {}, request_id))


@event.listens_for(WriteSession, "before_commit")
def _write_queued(session: OrmSession) -> None:
    if session.in_nested_transaction():
        # before_commit fires for a SAVEPOINT's release too: writing there took the head
        # lock at the first request of a group commit and held it through the whole batch.
        return
    queued = session.info.pop(_QUEUE, None)
    if queued:
        append_events(session, queued)  # type: ignore[arg-type]


@event.listens_for(WriteSession, "after_commit")
def _count_written(session: OrmSession) -> None:
    written = session.info.pop(_WRITTEN, None)
    if written:
        try:
            metrics.audit_committed(written)
        except Exception:  # the transaction has committed: counting must never fail it
            log.exception("could not count committed audit events in the metrics")


@event.listens_for(WriteSession, "after_transaction_create")
def _mark_savepoint(session: OrmSession, transaction: SessionTransaction) -> None:
    mark_savepoint(session, transaction, _QUEUE, _MARKS)


@event.listens_for(WriteSession, "after_transaction_end")
def _forget_savepoints(session: OrmSession, transaction: SessionTransaction) -> None:
    if transaction.parent is None:  # a savepoint's mark is read after it ends (after_soft_rollback)
        session.info.pop(_MARKS, None)


@event.listens_for(WriteSession, "after_soft_rollback")
def _drop_queued(session: OrmSession, previous: SessionTransaction) -> None:
    drop_queued(session, previous, _QUEUE, _MARKS, _WRITTEN)


def mark_savepoint(session: OrmSession, transaction: SessionTransaction, queue: str, marks: str) -> None:
    """For a new savepoint, remember where its entries of ``session.info[queue]`` start.

    With :func:`drop_queued`, a list queued per transaction (audit events, deferred rows)
    follows savepoints: call both from the session's ``after_transaction_create`` and
    ``after_soft_rollback`` listeners.
    """
    if transaction.nested:
        session.info.setdefault(marks, {})[id(transaction)] = len(session.info.get(queue, ()))


def drop_queued(session: OrmSession, previous: SessionTransaction, queue: str, marks: str, *also: str) -> None:
    """After a rollback, drop what the rolled-back transaction queued in ``session.info[queue]``.

    A savepoint that rolls back drops only its own entries (group commit: one request of a
    batch fails alone); the whole transaction drops them all, with the ``also`` keys.
    """
    if previous.nested:
        mark = session.info.get(marks, {}).get(id(previous))
        queued = session.info.get(queue)
        if mark is not None and queued is not None:
            del queued[mark:]
    elif previous.parent is None:
        for key in (queue, marks, *also):
            session.info.pop(key, None)


_MULTIROW: dict[tuple[str, int, tuple[str, ...]], Any] = {}
_UNNEST: dict[tuple[str, tuple[str, ...], tuple[str, ...]], tuple[str, list[Any]]] = {}


def insert_rows(connection: Connection, table: Table, rows: Sequence[Mapping[str, Any]], *,
                cte: str | Sequence[str] | None = None, cte_params: Mapping[str, Any] | None = None) -> None:
    """One ``INSERT`` of ``rows`` (same keys each), with a statement that is built once.

    PostgreSQL: ``INSERT ... SELECT FROM unnest(<one array per column>)``, the same
    short text for any number of rows, so psycopg prepares it once and the server
    plans it once (a multi-row VALUES list was compiled by SQLAlchemy, split by
    psycopg and parsed by the server on every batch). SQLite: a multi-row VALUES
    statement of named bind parameters, built once per row count. ``cte`` (PostgreSQL
    only): the SQL of data-modifying statements (one, or several) to run in the same
    statement, as CTEs, with the (psycopg-style) parameters ``cte_params``.
    """
    columns = tuple(rows[0])
    if connection.dialect.name == "postgresql":
        _insert_unnest(connection, table, columns, rows, cte, cte_params)
        return
    if cte is not None:
        raise ValueError("a CTE is for PostgreSQL only")
    key = (table.name, len(rows), columns)
    statement = _MULTIROW.get(key)
    if statement is None:
        statement = insert(table).values(
            [{c: bindparam(f"{c}_{i}", type_=table.c[c].type) for c in columns} for i in range(len(rows))])
        if len(_MULTIROW) < 4096:
            _MULTIROW[key] = statement
    connection.execute(statement, {f"{c}_{i}": row[c] for i, row in enumerate(rows) for c in columns})


def _insert_unnest(connection: Connection, table: Table, columns: tuple[str, ...], rows: Sequence[Mapping[str, Any]],
                   cte: str | Sequence[str] | None, cte_params: Mapping[str, Any] | None) -> None:
    ctes = (cte,) if isinstance(cte, str) else tuple(cte or ())
    key = (table.name, columns, ctes)
    built = _UNNEST.get(key)
    if built is None:
        dialect = connection.dialect
        arrays = ", ".join(f"%(c_{c})s::{table.c[c].type.compile(dialect=dialect)}[]" for c in columns)
        prefix = ("WITH " + ", ".join(f"dmboot_before_{i} AS ({c})" for i, c in enumerate(ctes)) + " ") if ctes else ""
        # Names and types from our own table metadata, never from a request.
        sql = f"{prefix}INSERT INTO {table.name} ({', '.join(columns)}) SELECT * FROM unnest({arrays})"  # noqa: S608
        built = _UNNEST[key] = (sql, [table.c[c].type.bind_processor(dialect) for c in columns])
    sql, processors = built
    params: dict[str, Any] = {}
    for column, process in zip(columns, processors, strict=True):
        values = [row[column] for row in rows]
        params[f"c_{column}"] = [process(v) for v in values] if process is not None else values
    if cte_params:
        params.update(cte_params)
    connection.exec_driver_sql(sql, params)


def append_events(session: Session, records: Sequence[AuditRecord]) -> int:
    """Append ``records`` in order with one head lock and one insert.

    Core statements, not the ORM: this runs for every certificate issued, and the
    ORM's unit of work cost several times the SQL itself. Returns the last seq (0 for none).
    """
    if not records:
        return 0
    connection = session.connection()
    head = connection.execute(_LOCK_HEAD).first()
    if head is None:
        connection.execute(insert(_HEAD), {"id": 1, "seq": 0, "hash": GENESIS})
        seq, prev = 0, GENESIS
    else:
        seq, prev = int(head[0]), str(head[1])
    rows: list[dict[str, Any]] = []
    for record in records:
        seq += 1
        at = utcnow()
        detail = json.dumps(dict(record.detail), sort_keys=True, separators=(",", ":"), default=str)
        digest = event_hash(prev, seq, at, record.actor, record.action, record.outcome, record.target,
                            record.request_id, detail)
        rows.append({"seq": seq, "at": at, "actor": record.actor, "action": record.action,
                     "outcome": record.outcome, "target": record.target, "request_id": record.request_id,
                     "detail": detail, "prev_hash": prev, "hash": digest})
        prev = digest
    if connection.dialect.name == "postgresql":
        # One round trip while the head is locked: the head moves in a CTE of the multi-row
        # INSERT (an executemany was one statement per event in psycopg's pipeline).
        for start in range(0, len(rows), _ROWS_PER_INSERT):
            chunk = rows[start:start + _ROWS_PER_INSERT]
            if start == 0:
                insert_rows(connection, _EVENTS, chunk, cte=_MOVED_HEAD,
                            cte_params={"head_seq": seq, "head_hash": prev})
            else:
                insert_rows(connection, _EVENTS, chunk)
    else:
        connection.execute(_MOVE_HEAD, {"seq": seq, "hash": prev})
        for start in range(0, len(rows), _ROWS_PER_INSERT):
            insert_rows(connection, _EVENTS, rows[start:start + _ROWS_PER_INSERT])
    session.info.setdefault(_WRITTEN, []).extend(records)
    return seq
