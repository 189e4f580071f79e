"""The audit trail: append-only, hash-chained security events.

Each event's hash is SHA-256 over the previous hash and the event's canonical
JSON (sorted keys, no whitespace); the head row is locked while an event is
appended, so concurrent replicas extend one chain instead of forking it.
Details never carry secrets: callers pass identifiers, fingerprints, reasons.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import Table, bindparam, insert, select, update
from sqlmodel import Session

from bootstrap.store.models import AuditEvent, AuditHead, utcnow

__all__ = ["GENESIS", "append_event", "event_hash"]

#: The hash the first event chains to.
GENESIS = "0" * 64
_HEAD: Table = AuditHead.__table__  # type: ignore[attr-defined]
_EVENTS: Table = AuditEvent.__table__  # type: ignore[attr-defined]
# Built once: constructing statements per call cost more than running them.
_LOCK_HEAD = select(_HEAD.c.seq, _HEAD.c.hash).where(_HEAD.c.id == 1).with_for_update()
_MOVE_HEAD = update(_HEAD).where(_HEAD.c.id == 1).values(seq=bindparam("seq"), hash=bindparam("hash"))
_INSERT_EVENT = insert(_EVENTS)


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


def append_event(
    session: Session,
    *,
    actor: str,
    action: str,
    outcome: str,
    target: str | None = None,
    request_id: str | None = None,
    detail: Mapping[str, Any] | None = None,
) -> AuditEvent:
    """Append an event in ``session``'s transaction (it commits with the caller's work).

    Core statements, not the ORM: this runs for every certificate issued, and the
    ORM's unit of work cost several times the SQL itself.
    """
    connection = session.connection()
    head = connection.execute(_LOCK_HEAD).first()
    if head is None:
        connection.execute(insert(_HEAD), {"id": 1, "seq": 0, "hash": GENESIS})
        prev_seq, prev_hash = 0, GENESIS
    else:
        prev_seq, prev_hash = int(head[0]), str(head[1])
    at = utcnow()
    detail_json = json.dumps(dict(detail or {}), sort_keys=True, separators=(",", ":"), default=str)
    seq = prev_seq + 1
    digest = event_hash(prev_hash, seq, at, actor, action, outcome, target, request_id, detail_json)
    values: dict[str, Any] = dict(seq=seq, at=at, actor=actor, action=action, outcome=outcome, target=target,
                  request_id=request_id, detail=detail_json, prev_hash=prev_hash, hash=digest)
    connection.execute(_MOVE_HEAD, {"seq": seq, "hash": digest})
    connection.execute(_INSERT_EVENT, values)
    return AuditEvent(**values)
