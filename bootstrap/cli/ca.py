"""``dmboot ca``: the certificate authorities."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Annotated

import typer

from bootstrap.cli.common import cli_actor, emit_json, handled, open_runtime
from bootstrap.errors import DmBootstrapError

if TYPE_CHECKING:
    from bootstrap.store.models import AuthorityRow

app = typer.Typer(help="The certificate authorities.", no_args_is_help=True)


@app.command("show")
@handled
def ca_show(
    pem: Annotated[bool, typer.Option("--pem", help="Print the PEM chain (issuing, then root).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """Show the CA hierarchy."""
    from bootstrap.secrets import KeyRef
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
            "key_version": KeyRef.from_uri(r.key_ref).version,
            "status": _status(r),
        }
        for r in rows
    ]
    if as_json:
        emit_json(records)
        return
    for r in records:
        flag = f" ({r['status']})" if r["kind"] == "issuing" else ""
        typer.echo(
            f"{r['name']:<10} {r['kind']:<8}{flag}\n  subject     {r['subject']}\n"
            f"  valid       {r['not_before']} .. {r['not_after']}\n  fingerprint {r['fingerprint']}\n"
            f"  key         {r['key']} v{r['key_version']}"
        )


def _status(row: AuthorityRow) -> str:
    # A retired issuing CA still verifies what it issued and signs its CRL; it issues nothing new.
    return "active" if row.active else "retired" if row.kind == "issuing" else "root"


@app.command("rotate")
@handled
def ca_rotate(
    new_key: Annotated[bool, typer.Option(
        "--new-key/--key-version",
        help="A new key for the new issuing CA (default), or a new version of the current issuing key.")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Bring in a new issuing CA signed by the root; the old one is retired but still verifies."""
    with open_runtime() as runtime:
        with runtime.database.session() as session:
            rotation = runtime.authorities.rotate(session, cli_actor(), new_key=new_key)
        runtime.crl_publisher.publish(actor=cli_actor())  # the new CA's CRLs, before anyone asks
    previous, current = rotation.previous, rotation.current
    if as_json:
        emit_json({"previous": previous.name, "current": current.name, "new_key": new_key,
                   "key": current.key_ref.split(";")[0], "fingerprint": current.fingerprint,
                   "not_after": current.not_after.isoformat()})
        return
    typer.echo(f"{current.name} is the active issuing CA; {previous.name} is retired (it still verifies).")
    typer.echo(f"  subject     {current.subject}\n  fingerprint {current.fingerprint}\n"
               f"  key         {current.key_ref.split(';')[0]}")
    typer.echo("Relying parties should fetch /ca/bundle.pem: it holds every issuing CA still valid.")


@app.command("publish-crls")
@handled
def ca_publish_crls(
    force: Annotated[bool, typer.Option("--force", help="Republish every CRL, due or not.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Publish the CRLs that are due now (`dmboot serve` does it in the background)."""
    with open_runtime() as runtime:
        report = runtime.crl_publisher.publish(full_after=timedelta(0), force=force, actor=cli_actor())
    if as_json:
        emit_json({"published": report.numbers, "skipped": list(report.skipped)})
        return
    for scope, number in sorted(report.numbers.items()):
        typer.echo(f"published CRL {number}: {scope}")
    for name in report.skipped:
        typer.echo(f"{name}: another replica is publishing its CRLs")
    if not report.numbers and not report.skipped:
        typer.echo("every CRL is up to date")
