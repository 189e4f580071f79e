"""``dmboot ca``: the certificate authorities."""

from __future__ import annotations

from typing import Annotated

import typer

from bootstrap.cli.common import emit_json, handled, open_runtime
from bootstrap.errors import DmBootstrapError

app = typer.Typer(help="The certificate authorities.", no_args_is_help=True)


@app.command("show")
@handled
def ca_show(
    pem: Annotated[bool, typer.Option("--pem", help="Print the PEM chain (issuing, then root).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """Show the CA hierarchy."""
    with open_runtime() as runtime, runtime.database.session() as session:
        rows = runtime.authorities.all_rows(session)
    if not rows:
        raise DmBootstrapError("no CA hierarchy yet; run `dmboot init`")
    if pem:
        active = [r for r in rows if r.active] + [r for r in rows if r.kind == "root"]
        typer.echo("".join(r.pem for r in active), nl=False)
        return
    records = [
        {
            "name": r.name,
            "kind": r.kind,
            "active": r.active,
            "subject": r.subject,
            "serial": r.serial_hex,
            "not_before": r.not_before.isoformat(),
            "not_after": r.not_after.isoformat(),
            "fingerprint": r.fingerprint,
            "key": r.key_ref.split("#")[0],
        }
        for r in rows
    ]
    if as_json:
        emit_json(records)
        return
    for r in records:
        flag = " (active)" if r["active"] else ""
        typer.echo(
            f"{r['name']:<10} {r['kind']:<8}{flag}\n  subject     {r['subject']}\n"
            f"  valid       {r['not_before']} .. {r['not_after']}\n  fingerprint {r['fingerprint']}\n"
            f"  key         {r['key']}"
        )
