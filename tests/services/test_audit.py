"""The audit trail is one hash chain, even under concurrent writers.

The expected hashes come from the documented formula (docs/architecture.md, "The
audit trail"), not from :func:`bootstrap.services.audit.event_hash`: one event
worked by hand to a literal digest, and every stored event recomputed by
:func:`_documented_hash`, written here from the documentation.
"""

from __future__ import annotations

import hashlib
import json
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

from sqlmodel import select

from bootstrap.runtime import Runtime
from bootstrap.services.audit import append_event, event_hash
from bootstrap.store.models import AuditEvent

GENESIS = "0" * 64

#: One event by hand. The canonical JSON is the array [seq, at, actor, action, outcome, target, request_id,
#: detail]: no whitespace, non-ASCII escaped as \uXXXX, ``at`` in ISO 8601 with its UTC offset, ``detail``
#: the event's detail object as JSON text (sorted keys, no whitespace). The hash is SHA-256 of the previous
#: hash (64 lower-case hex digits) followed by that JSON; the digest was computed with sha256sum(1).
WORKED_CANONICAL = (
    '[1,"2026-01-02T03:04:05.000006+00:00","admin:jos\\u00e9","ca.init","success","root-1",null,'
    '"{\\"cn\\":\\"Root\\",\\"n\\":2}"]'
)
WORKED_HASH = "2ab105f337dd7fedaa69e5356f4ba7e827e6c4ef659211b90403787c7ab5489c"


def _documented_hash(previous: str, event: AuditEvent) -> str:
    at = event.at if event.at.tzinfo else event.at.replace(tzinfo=UTC)
    canonical = json.dumps([event.seq, at.isoformat(), event.actor, event.action, event.outcome, event.target,
                            event.request_id, event.detail], separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256((previous + canonical).encode("ascii")).hexdigest()


def test_the_worked_example() -> None:
    assert hashlib.sha256((GENESIS + WORKED_CANONICAL).encode("ascii")).hexdigest() == WORKED_HASH
    at = datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC)
    detail = json.dumps({"n": 2, "cn": "Root"}, sort_keys=True, separators=(",", ":"))
    assert event_hash(GENESIS, 1, at, "admin:jos\u00e9", "ca.init", "success", "root-1", None, detail) == WORKED_HASH


def test_stored_events_carry_the_documented_hash(runtime: Runtime) -> None:
    with runtime.database.session() as session:
        append_event(session, actor="admin:jos\u00e9", action="test.event", outcome="success", target="t-1",
                     detail={"z": 1, "a": [True, None]})
    with runtime.database.session() as session:
        events = list(session.exec(select(AuditEvent).order_by(AuditEvent.seq)))  # type: ignore[arg-type]
    assert events[-1].detail == '{"a":[true,null],"z":1}'
    assert _chain_ok(events)


def _chain_ok(events: list[AuditEvent]) -> bool:
    previous = GENESIS
    for expected_seq, event in enumerate(events, start=1):
        digest = _documented_hash(previous, event)
        if event.seq != expected_seq or event.prev_hash != previous or event.hash != digest:
            return False
        previous = event.hash
    return True


def test_concurrent_appends_form_one_chain(runtime: Runtime) -> None:
    def write(i: int) -> None:
        with runtime.database.session() as session:
            append_event(session, actor=f"worker-{i % 4}", action="test.event", outcome="success",
                         detail={"i": i})

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(write, range(40)))
    with runtime.database.session() as session:
        events = list(session.exec(select(AuditEvent).order_by(AuditEvent.seq)))  # type: ignore[arg-type]
    assert len(events) >= 40
    assert _chain_ok(events)


def test_an_edited_event_breaks_the_chain(runtime: Runtime) -> None:
    with runtime.database.session() as session:
        events = list(session.exec(select(AuditEvent).order_by(AuditEvent.seq)))  # type: ignore[arg-type]
    assert _chain_ok(events)
    events[0].actor = "someone-else"
    assert not _chain_ok(events)
