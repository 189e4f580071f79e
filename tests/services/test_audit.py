"""The audit trail is one hash chain, even under concurrent writers."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from sqlmodel import select

from bootstrap.runtime import Runtime
from bootstrap.services.audit import append_event, event_hash
from bootstrap.store.models import AuditEvent


def _chain_ok(events: list[AuditEvent]) -> bool:
    previous = "0" * 64
    for expected_seq, event in enumerate(events, start=1):
        digest = event_hash(previous, event.seq, event.at, event.actor, event.action, event.outcome,
                            event.target, event.request_id, event.detail)
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
