"""Tampering with the audit trail: `dmboot audit verify` fails and names the row (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from sqlalchemy import text
from sqlmodel import col, select
from typer.testing import CliRunner

from bootstrap.cli import app
from bootstrap.runtime import Runtime
from bootstrap.services.audit import append_event
from bootstrap.services.audit_verify import verify_chain
from bootstrap.store.models import AuditEvent

COLUMNS = ("seq", "at", "actor", "action", "outcome", "target", "request_id", "detail", "prev_hash", "hash")


def _fill(runtime: Runtime, count: int = 8) -> list[AuditEvent]:
    for i in range(count):
        with runtime.database.session() as session:
            append_event(session, actor=f"admin:user{i % 3}", action="test.event", outcome="success",
                         target=f"target-{i}", request_id=f"req-{i}", detail={"i": i})
    with runtime.database.session() as session:
        return list(session.exec(select(AuditEvent).order_by(col(AuditEvent.seq))))


def _sql(runtime: Runtime, statement: str, **params: object) -> None:
    with runtime.database.engine.begin() as connection:
        connection.execute(text(statement), params)


def _env(runtime: Runtime) -> dict[str, str]:
    settings = runtime.settings
    assert settings.keystore_passphrase is not None
    return {"DMBOOT_DATA_DIR": str(settings.data_dir), "DMBOOT_DATABASE_URL": settings.database_url,
            "DMBOOT_KEYSTORE_PASSPHRASE": settings.keystore_passphrase.reveal()}


def _cli_verify(runtime: Runtime) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["audit", "verify"], env=_env(runtime))
    return result.exit_code, result.stdout + result.stderr


def test_an_untouched_trail_verifies(runtime: Runtime) -> None:
    events = _fill(runtime)
    code, output = _cli_verify(runtime)
    assert code == 0, output
    assert f"head seq {events[-1].seq} {events[-1].hash}" in output
    report = json.loads(CliRunner().invoke(app, ["audit", "verify", "--json"], env=_env(runtime)).stdout)
    assert report["ok"] and report["checked"] == len(events)


def test_an_edited_row_is_named(runtime: Runtime) -> None:
    victim = _fill(runtime)[4]
    _sql(runtime, "UPDATE audit_event SET actor = 'admin:someone-else' WHERE id = :id", id=victim.id)
    code, output = _cli_verify(runtime)
    assert code == 1
    assert f"edited: event seq {victim.seq} (id {victim.id}) was edited" in output
    assert output.count("edited: event") == 1  # only that row: its successors still link to its stored hash
    assert "the audit trail is broken: 1 problem(s)" in output


@pytest.mark.parametrize("column", ["detail", "outcome", "at", "hash"])
def test_any_edited_column_is_found(runtime: Runtime, column: str) -> None:
    victim = _fill(runtime)[2]
    value = {"detail": '{"i":99}', "outcome": "failure", "hash": "f" * 64}.get(column)
    if column == "at":
        _sql(runtime, "UPDATE audit_event SET at = :at WHERE id = :id", at=victim.at.replace(year=2001), id=victim.id)
    else:
        _sql(runtime, f"UPDATE audit_event SET {column} = :v WHERE id = :id", v=value, id=victim.id)  # noqa: S608
    report = verify_chain(runtime.database)
    assert not report.ok
    assert any(p.seq == victim.seq and p.id == victim.id for p in report.problems), report.problems


def test_a_deleted_row_is_named(runtime: Runtime) -> None:
    events = _fill(runtime)
    victim, before, after = events[3], events[2], events[4]
    _sql(runtime, "DELETE FROM audit_event WHERE id = :id", id=victim.id)
    code, output = _cli_verify(runtime)
    assert code == 1
    assert (f"deleted: event seq {victim.seq} is missing (deleted): the chain jumps from seq {before.seq}"
            f" (id {before.id}) to seq {after.seq} (id {after.id})") in output


def test_deleted_newest_rows_are_named(runtime: Runtime) -> None:
    events = _fill(runtime)
    _sql(runtime, "DELETE FROM audit_event WHERE seq >= :seq", seq=events[-2].seq)
    code, output = _cli_verify(runtime)
    assert code == 1
    assert f"events seq {events[-2].seq}-{events[-1].seq} are missing (deleted)" in output


def test_swapped_rows_are_named(runtime: Runtime) -> None:
    """Two rows exchange places: every column but the id is swapped, so each row is still self-consistent."""
    events = _fill(runtime)
    first, second = events[2], events[5]
    assignments = ", ".join(f"{c} = :{c}" for c in COLUMNS)
    _sql(runtime, "UPDATE audit_event SET seq = -1 WHERE id = :id", id=first.id)
    _sql(runtime, f"UPDATE audit_event SET {assignments} WHERE id = :id",  # noqa: S608
         id=second.id, **{c: getattr(first, c) for c in COLUMNS})
    _sql(runtime, f"UPDATE audit_event SET {assignments} WHERE id = :id",  # noqa: S608
         id=first.id, **{c: getattr(second, c) for c in COLUMNS})
    report = verify_chain(runtime.database)
    assert {p.kind for p in report.problems} == {"reordered"}
    named = " ".join(p.message for p in report.problems)
    # Both moved rows are named: seq 3 now sits at id 6 and seq 6 at id 3.
    assert f"seq {first.seq} sits at id {second.id}" in named
    assert f"seq {second.seq}, at the lower id {first.id}" in named
    code, output = _cli_verify(runtime)
    assert code == 1 and "reordered:" in output


def test_swapped_sequence_numbers_are_named(runtime: Runtime) -> None:
    """Only the seq values exchanged: both rows' hashes no longer match their content."""
    events = _fill(runtime)
    first, second = events[1], events[2]
    _sql(runtime, "UPDATE audit_event SET seq = -1 WHERE id = :id", id=first.id)
    _sql(runtime, "UPDATE audit_event SET seq = :s WHERE id = :id", s=first.seq, id=second.id)
    _sql(runtime, "UPDATE audit_event SET seq = :s WHERE id = :id", s=second.seq, id=first.id)
    report = verify_chain(runtime.database)
    edited = {(p.seq, p.id) for p in report.problems if p.kind == "edited"}
    assert edited == {(first.seq, second.id), (second.seq, first.id)}


def test_a_rewritten_chain_is_caught_by_an_anchor(runtime: Runtime) -> None:
    events = _fill(runtime)
    anchor = f"{events[3].seq}:{events[3].hash}"
    # An attacker who recomputes every hash after an edit: the chain is self-consistent again...
    from bootstrap.services.audit import event_hash

    rows = events
    _sql(runtime, "UPDATE audit_event SET actor = 'admin:forged' WHERE id = :id", id=rows[2].id)
    rows[2].actor = "admin:forged"
    previous = rows[1].hash
    for row in rows[2:]:
        row.prev_hash = previous
        row.hash = event_hash(previous, row.seq, row.at, row.actor, row.action, row.outcome, row.target,
                              row.request_id, row.detail)
        _sql(runtime, "UPDATE audit_event SET prev_hash = :p, hash = :h WHERE id = :id", p=row.prev_hash,
             h=row.hash, id=row.id)
        previous = row.hash
    _sql(runtime, "UPDATE audit_head SET hash = :h", h=previous)
    assert verify_chain(runtime.database).ok
    # ...but not with the head recorded elsewhere earlier.
    result = CliRunner().invoke(app, ["audit", "verify", "--expect", anchor], env=_env(runtime))
    assert result.exit_code == 1 and f"event seq {events[3].seq}" in result.stderr and "rewritten" in result.stderr


def test_verify_as_a_real_process(runtime: Runtime) -> None:
    victim = _fill(runtime, 4)[1]
    _sql(runtime, "DELETE FROM audit_event WHERE id = :id", id=victim.id)
    result = subprocess.run([sys.executable, "-m", "bootstrap", "audit", "verify"], capture_output=True, text=True,
                            env={**os.environ, **_env(runtime)}, check=False)
    assert result.returncode == 1
    assert f"event seq {victim.seq} is missing (deleted)" in result.stderr
    assert "Traceback" not in result.stderr
