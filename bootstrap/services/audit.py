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

from sqlmodel import Session, select

from bootstrap.store.models import AuditEvent, AuditHead, utcnow

__all__ = ["append_event", "event_hash"]


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
    """Append an event in ``session``'s transaction (it commits with the caller's work)."""
    head = session.exec(select(AuditHead).where(AuditHead.id == 1).with_for_update()).first()
    if head is None:
        head = AuditHead(id=1)
        session.add(head)
    at = utcnow()
    detail_json = json.dumps(dict(detail or {}), sort_keys=True, separators=(",", ":"), default=str)
    seq = head.seq + 1
    digest = event_hash(head.hash, seq, at, actor, action, outcome, target, request_id, detail_json)
    event = AuditEvent(
        seq=seq,
        at=at,
        actor=actor,
        action=action,
        outcome=outcome,
        target=target,
        request_id=request_id,
        detail=detail_json,
        prev_hash=head.hash,
        hash=digest,
    )
    head.seq, head.hash = seq, digest
    session.add(event)
    session.add(head)
    return event
