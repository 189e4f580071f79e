"""``dmboot token``: API tokens for admin clients and factory stations."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

import typer

from bootstrap.cli.common import cli_actor, emit_json, handled, open_runtime

app = typer.Typer(help="API tokens (Bearer) for admin clients and factory stations.", no_args_is_help=True)


@app.command("create")
@handled
def token_create(
    name: Annotated[str, typer.Argument(help="A unique name for the client, e.g. line-3 or ci-bot.")],
    role: Annotated[
        list[str], typer.Option("--role", help="security-admin, provisioning-admin, factory-line, auditor.")
    ],
    ttl_days: Annotated[int | None, typer.Option("--ttl-days", help="Expire after this many days.")] = None,
    profile: Annotated[
        list[str] | None, typer.Option("--profile", help="Factory lines: allowed enrollment profile.")
    ] = None,
    quota: Annotated[int | None, typer.Option("--quota", help="Factory lines: device quota.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """Create an API token. It is printed once and never stored."""
    with open_runtime() as runtime:
        token = runtime.tokens.create(
            name,
            role,
            actor=cli_actor(),
            ttl=timedelta(days=ttl_days) if ttl_days else None,
            allowed_profiles=profile,
            device_quota=quota,
        )
    if as_json:
        emit_json({"name": name, "roles": role, "token": token})
    else:
        typer.echo(token)
        typer.echo(f"(token for {name}; shown once - store it now)", err=True)


@app.command("revoke")
@handled
def token_revoke(name: Annotated[str, typer.Argument(help="The token's name.")]) -> None:
    """Revoke an API token."""
    with open_runtime() as runtime:
        runtime.tokens.revoke(name, actor=cli_actor())
    typer.echo(f"revoked {name}")


@app.command("list")
@handled
def token_list(as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False) -> None:
    """List API tokens, newest first: name, roles, profiles, state (never the token itself)."""
    with open_runtime() as runtime:
        tokens = runtime.tokens.describe_all()
    if as_json:
        emit_json({"total": len(tokens), "tokens": tokens})
        return
    for t in tokens:
        state = "revoked" if t.get("revoked") else "active"
        roles = ",".join(_strings(t.get("roles"))) or "-"
        profiles = ",".join(_strings(t.get("allowed_profiles"))) or "-"
        typer.echo(f"{t['name']!s:24} {state:8} {roles:30} profiles={profiles} expires={t.get('expires_at') or '-'}")
    typer.echo(f"{len(tokens)} tokens")


def _strings(value: object) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else []
