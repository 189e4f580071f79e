"""Check the audit trail's hash chain and name every row that breaks it.

The chain (bootstrap.services.audit) links each event to the one before by
``prev_hash`` and seals its content in ``hash``; ``seq`` counts 1, 2, 3... and
the row ids rise with it, because events are inserted while the chain head is
locked. Walking the events in ``seq`` order finds:

- an **edited** row: its stored hash is not the hash of its content;
- a **deleted** row: a gap in ``seq`` (the next row's ``prev_hash`` links to nothing
  we have); deleted newest rows show as a head that is ahead of the last row;
- **reordered** rows: ids that fall while ``seq`` rises (rows swapped in place
  keep their ids but change places in the chain), or a ``prev_hash`` that links to
  another row than the one before.

What it cannot find: someone who can write the database and recomputes every hash
after a change. Keep the head (``dmboot audit verify --json`` prints it) somewhere
else and compare (``--expect SEQ:HASH``); see docs/security.md.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from sqlmodel import col, select

from bootstrap.services.audit import event_hash
from bootstrap.store.db import Database
from bootstrap.store.models import AuditEvent, AuditHead

__all__ = ["ChainProblem", "VerifyReport", "verify_chain"]

GENESIS = "0" * 64
_BATCH = 1000
_MAX_PROBLEMS = 100


@dataclass(frozen=True)
class ChainProblem:
    """One row (or gap) that breaks the chain."""

    kind: str  # edited | deleted | reordered | relinked | head | anchor
    seq: int | None
    id: int | None
    message: str

    def as_json(self) -> dict[str, object]:
        return {"kind": self.kind, "seq": self.seq, "id": self.id, "message": self.message}


@dataclass
class VerifyReport:
    """What :func:`verify_chain` found."""

    checked: int = 0
    head_seq: int = 0
    head_hash: str = GENESIS
    problems: list[ChainProblem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_json(self) -> dict[str, object]:
        return {"ok": self.ok, "checked": self.checked, "head": {"seq": self.head_seq, "hash": self.head_hash},
                "problems": [p.as_json() for p in self.problems]}


def _events(database: Database) -> Iterator[AuditEvent]:
    """Every event in seq order, read in batches (the trail can be long)."""
    last = 0
    while True:
        with database.read_session() as session:
            batch = list(session.exec(select(AuditEvent).where(col(AuditEvent.seq) > last)
                                      .order_by(col(AuditEvent.seq)).limit(_BATCH)))
        yield from batch
        if len(batch) < _BATCH:
            return
        last = batch[-1].seq


def _content_hash(event: AuditEvent) -> str:
    return event_hash(event.prev_hash, event.seq, event.at, event.actor, event.action, event.outcome,
                      event.target, event.request_id, event.detail)


def verify_chain(database: Database, *, expect: tuple[int, str] | None = None) -> VerifyReport:
    """Walk the whole chain; every problem names the row (seq and id) and what is wrong with it.

    Args:
        database: The service's database.
        expect: ``(seq, hash)`` recorded elsewhere earlier; the event ``seq`` must still have that hash.
    """
    report = VerifyReport()
    problems = report.problems
    prev: AuditEvent | None = None
    prev_hash = GENESIS
    for event in _events(database):
        report.checked += 1
        expected_seq = prev.seq + 1 if prev else 1
        gap = event.seq > expected_seq
        if gap:
            missing = f"{expected_seq}" if event.seq == expected_seq + 1 else f"{expected_seq}-{event.seq - 1}"
            after = f"seq {prev.seq} (id {prev.id})" if prev else "the start of the trail"
            problems.append(ChainProblem("deleted", expected_seq, None,
                                         f"event seq {missing} is missing (deleted): the chain jumps from {after}"
                                         f" to seq {event.seq} (id {event.id})"))
        if _content_hash(event) != event.hash:
            problems.append(ChainProblem("edited", event.seq, event.id,
                                         f"event seq {event.seq} (id {event.id}) was edited: its content no longer"
                                         f" matches its hash (action {event.action!r}, actor {event.actor!r})"))
        if prev is not None and prev.id is not None and event.id is not None and event.id < prev.id:
            problems.append(ChainProblem("reordered", event.seq, event.id,
                                         f"events were reordered: seq {prev.seq} sits at id {prev.id} but the"
                                         f" next, seq {event.seq}, at the lower id {event.id}"))
        if event.prev_hash != prev_hash and not gap:
            problems.append(ChainProblem("relinked", event.seq, event.id,
                                         f"event seq {event.seq} (id {event.id}) does not link to the event before"
                                         f" it (seq {prev.seq if prev else 0}): prev_hash differs"))
        if expect is not None and event.seq == expect[0] and event.hash != expect[1]:
            problems.append(ChainProblem("anchor", event.seq, event.id,
                                         f"event seq {event.seq} (id {event.id}) has hash {event.hash}, not the"
                                         f" recorded {expect[1]}: the chain was rewritten"))
        prev, prev_hash = event, event.hash
        if len(problems) >= _MAX_PROBLEMS:
            problems.append(ChainProblem("truncated", None, None, f"stopped after {_MAX_PROBLEMS} problems"))
            return report
    _check_head(database, report, prev, expect)
    return report


def _check_head(database: Database, report: VerifyReport, last: AuditEvent | None,
                expect: tuple[int, str] | None) -> None:
    with database.read_session() as session:
        head = session.get(AuditHead, 1)
    head_seq, head_hash = (head.seq, head.hash) if head else (0, GENESIS)
    report.head_seq, report.head_hash = head_seq, head_hash
    last_seq = last.seq if last else 0
    if head_seq > last_seq:
        report.problems.append(ChainProblem("deleted", last_seq + 1, None,
                                            f"events seq {last_seq + 1}-{head_seq} are missing (deleted): the"
                                            f" chain head records seq {head_seq}, the newest row is seq {last_seq}"))
    elif last is not None and (head_seq < last_seq or head_hash != last.hash):
        report.problems.append(ChainProblem("head", last.seq, last.id,
                                            f"the chain head (seq {head_seq}) does not match the newest event,"
                                            f" seq {last.seq} (id {last.id})"))
    if expect is not None and expect[0] > last_seq:
        report.problems.append(ChainProblem("anchor", expect[0], None,
                                            f"the recorded event seq {expect[0]} no longer exists"))
