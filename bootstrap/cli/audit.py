"""``dmboot audit``: verify the audit trail's hash chain; export it as JSON lines."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import typer

from bootstrap.cli.common import emit_json, fail, handled, open_runtime
from bootstrap.errors import InvalidRequest

app = typer.Typer(help="The audit trail: verify its hash chain, export it.", no_args_is_help=True)


def _expect(value: str | None) -> tuple[int, str] | None:
    if not value:
        return None
    seq, _, digest = value.partition(":")
    if not seq.isdigit() or len(digest) != 64:
        raise InvalidRequest("--expect takes SEQ:HASH as printed by `dmboot audit verify --json`", field="expect")
    return int(seq), digest.lower()


@app.command("verify")
@handled
def audit_verify(
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    expect: Annotated[str | None, typer.Option("--expect", help="SEQ:HASH of an event recorded elsewhere"
                                               " earlier; it must still have that hash.")] = None,
) -> None:
    """Walk the chain; name every edited, deleted or reordered event. Exit 1 if any."""
    from bootstrap.services.audit_verify import verify_chain
    with open_runtime() as runtime:
        report = verify_chain(runtime.database, expect=_expect(expect))
    if as_json:
        emit_json(report.as_json())
    else:
        for problem in report.problems:
            typer.secho(f"{problem.kind}: {problem.message}", fg=typer.colors.RED, err=True)
        if report.ok:
            typer.echo(f"ok: {report.checked} events, head seq {report.head_seq} {report.head_hash}")
    if not report.ok:
        if not as_json:
            raise fail(f"the audit trail is broken: {len(report.problems)} problem(s)")
        raise typer.Exit(1)


@app.command("export")
@handled
def audit_export(
    since: Annotated[datetime | None, typer.Option("--since", help="Events at or after (ISO 8601, UTC).")] = None,
    until: Annotated[datetime | None, typer.Option("--until", help="Events before (ISO 8601, UTC).")] = None,
    action: Annotated[str | None, typer.Option("--action", help="Only this action (prefix with *).")] = None,
    actor: Annotated[str | None, typer.Option("--actor", help="Only this actor (prefix with *).")] = None,
) -> None:
    """Print events as JSON lines, oldest first (``> events.jsonl``)."""
    from bootstrap.services.audit_query import AuditFilter, export_events
    params = {"since": since.isoformat() if since else "", "until": until.isoformat() if until else "",
              "action": action or "", "actor": actor or ""}
    where = AuditFilter.parse(params)
    with open_runtime() as runtime:
        for line in export_events(runtime.database, where):
            typer.echo(line, nl=False)
