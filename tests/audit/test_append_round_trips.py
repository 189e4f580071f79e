"""The audit append holds the chain's head lock for as few round trips as it can (perf, issue 12)."""

from __future__ import annotations

from sqlalchemy import event

from bootstrap.runtime import Runtime
from bootstrap.services.audit import append_event
from bootstrap.services.audit_verify import verify_chain


def test_a_transaction_s_events_are_written_in_one_statement_after_the_head_lock(runtime: Runtime) -> None:
    seen: list[str] = []

    def record(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        seen.append(" ".join(statement.split()).upper())

    engine = runtime.database.engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        with runtime.database.session() as session:
            for index in range(5):
                append_event(session, actor="test", action="test.append", outcome="success", target=str(index))
            seen.clear()  # from here: what the commit writes
    finally:
        event.remove(engine, "before_cursor_execute", record)
    lock = next(i for i, s in enumerate(seen) if s.startswith("SELECT") and "FROM AUDIT_HEAD" in s)
    after_lock = [s for s in seen[lock + 1:] if not s.startswith(("COMMIT", "RELEASE"))]
    expected = 1 if runtime.database.engine.dialect.name == "postgresql" else 2  # SQLite: UPDATE, INSERT
    assert len(after_lock) == expected, after_lock
    assert all("AUDIT_EVENT" in s or "AUDIT_HEAD" in s for s in after_lock)
    report = verify_chain(runtime.database)
    assert report.ok, report.problems
    assert report.checked >= 5
