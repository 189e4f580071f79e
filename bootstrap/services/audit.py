"""The audit trail: append-only, hash-chained security events.

Each event's hash is SHA-256 over the previous hash and the event's canonical
JSON (sorted keys, no whitespace). A transaction's events are queued
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
from bootstrap.store.models import AuditEvent, AuditHead, utcnow

__all__ = ["GENESIS", "AuditRecord", "append_event", "append_events", "event_hash", "insert_rows"]

log = logging.getLogger(__name__)

_QUEUE = "dmboot.audit.queue"
_WRITTEN = "dmboot.audit.written"  # written in this transaction; counted by metrics once it commits
_MARKS = "dmboot.audit.savepoints"

#: The hash the first event chains to.
GENESIS = "0" * 64
_HEAD: Table = AuditHead.__table__  # type: ignore[attr-defined]
_EVENTS: Table = AuditEvent.__table__  # type: ignore[attr-defined]
# Built once: constructing statements per call cost more than running them.
_LOCK_HEAD = select(_HEAD.c.seq, _HEAD.c.hash).where(_HEAD.c.id == 1).with_for_update()
_MOVE_HEAD = update(_HEAD).where(_HEAD.c.id == 1).values(seq=bindparam("seq"), hash=bindparam("hash"))
_MOVED_HEAD = update(_HEAD).where(_HEAD.c.id == 1).values(
    seq=bindparam("head_seq"), hash=bindparam("head_hash")).cte("moved_head")
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
    """
    session.info.setdefault(_QUEUE, []).append(AuditRecord(actor, action, outcome, target, detail or {}, request_id))


@event.listens_for(OrmSession, "before_commit")
def _write_queued(session: OrmSession) -> None:
    if session.in_nested_transaction():
        # before_commit fires for a SAVEPOINT's release too: writing there took the head
        # lock at the first request of a group commit and held it through the whole batch.
        return
    queued = session.info.pop(_QUEUE, None)
    if queued:
        append_events(session, queued)  # type: ignore[arg-type]


@event.listens_for(OrmSession, "after_commit")
def _count_written(session: OrmSession) -> None:
    written = session.info.pop(_WRITTEN, None)
    if written:
        try:
            metrics.audit_committed(written)
        except Exception:  # the transaction has committed: counting must never fail it
            log.exception("could not count committed audit events in the metrics")


@event.listens_for(OrmSession, "after_transaction_create")
def _mark_savepoint(session: OrmSession, transaction: SessionTransaction) -> None:
    if transaction.nested:  # remember where the savepoint's events start
        session.info.setdefault(_MARKS, {})[id(transaction)] = len(session.info.get(_QUEUE, ()))


@event.listens_for(OrmSession, "after_transaction_end")
def _forget_savepoints(session: OrmSession, transaction: SessionTransaction) -> None:
    if transaction.parent is None:  # a savepoint's mark is read after it ends (after_soft_rollback)
        session.info.pop(_MARKS, None)


@event.listens_for(OrmSession, "after_soft_rollback")
def _drop_queued(session: OrmSession, previous: SessionTransaction) -> None:
    # A savepoint that rolls back drops only its own events (group commit: one
    # request of a batch fails alone); the whole transaction drops them all.
    if previous.nested:
        mark = session.info.get(_MARKS, {}).get(id(previous))
        queued = session.info.get(_QUEUE)
        if mark is not None and queued is not None:
            del queued[mark:]
    elif previous.parent is None:
        session.info.pop(_QUEUE, None)
        session.info.pop(_MARKS, None)
        session.info.pop(_WRITTEN, None)


_MULTIROW: dict[tuple[str, int, Any], Any] = {}


def insert_rows(connection: Connection, table: Table, rows: Sequence[Mapping[str, Any]], *,
                cte: Any = None, cte_params: Mapping[str, Any] | None = None) -> None:
    """One multi-row ``INSERT`` of ``rows`` (same keys each), its statement built once per row count.

    ``insert(table).values(rows)`` is compiled again for every call (its parameters are
    part of the statement); a statement of named bind parameters is compiled once per
    size and then only bound. ``cte``: a data-modifying CTE to run in the same statement,
    with its bind parameters ``cte_params``.
    """
    columns = tuple(rows[0])
    key = (table.name, len(rows), (columns, id(cte.element) if cte is not None else None))
    statement = _MULTIROW.get(key)
    if statement is None:
        statement = insert(table).values(
            [{c: bindparam(f"{c}_{i}", type_=table.c[c].type) for c in columns} for i in range(len(rows))])
        if cte is not None:
            statement = statement.add_cte(cte)
        if len(_MULTIROW) < 4096:
            _MULTIROW[key] = statement
    params = {f"{c}_{i}": row[c] for i, row in enumerate(rows) for c in columns}
    connection.execute(statement, {**params, **cte_params} if cte_params else params)


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
