"""``dmboot secrets``: check the secret store and print the Vault policy; ``--ca-keys`` helpers for init."""

from __future__ import annotations

import dataclasses
import warnings
from typing import Annotated

import typer

from bootstrap.cli.common import emit_json, handled, load_settings, state
from bootstrap.errors import ConfigurationError
from bootstrap.secrets import CheckResult, KeyRef, open_secret_store
from bootstrap.secrets.embedded import EmbeddedKeystoreWarning
from bootstrap.secrets.vault.config import VaultConfig, config_from_settings
from bootstrap.secrets.vault.policy import policy_hcl
from bootstrap.services.authorities import HierarchyInfo
from bootstrap.settings import CA_KEY_CHOICES, Secret, Settings

__all__ = ["app", "check_hierarchy_keys", "with_ca_keys"]

app = typer.Typer(help="The secret store: check it, print the Vault policy it needs.", no_args_is_help=True)


def with_ca_keys(settings: Settings, choice: str) -> Settings:
    """``settings`` with CA keys where ``choice`` says, unless an existing config file says otherwise.

    ``dmboot init`` writes the choice into a new config file; an existing one is never
    rewritten, so a different choice would be forgotten by the next command.

    Raises:
        ConfigurationError: ``choice`` is unknown, or the config file keeps CA keys elsewhere.
    """
    chosen = settings.with_ca_keys(choice)
    config = state.config or settings.config_file
    if config.exists() and settings.ca_keys != choice:
        raise ConfigurationError(
            f"{config} keeps CA keys in {settings.ca_keys}; `--ca-keys {choice}` would not be remembered: "
            "edit secrets_backend and [vault] ca_key_mode there, or remove the file",
            field="ca_keys",
        )
    return chosen


def check_hierarchy_keys(hierarchy: HierarchyInfo, choice: str) -> None:
    """Refuse quietly moving on when the existing hierarchy's keys live elsewhere than ``choice``.

    Raises:
        ConfigurationError: the active issuing CA's key is not in ``choice``.
    """
    backend = KeyRef.from_uri(hierarchy.issuing.key_ref).backend
    if backend != choice:
        raise ConfigurationError(
            f"the CA hierarchy exists already with keys in {backend}; `--ca-keys {choice}` does not move them",
            field="ca_keys",
        )


def _print_result(result: CheckResult, width: int) -> None:
    mark = typer.style("ok  ", fg=typer.colors.GREEN) if result.ok else typer.style("FAIL", fg=typer.colors.RED)
    typer.echo(f"{mark}  {result.name:<{width}}  {result.detail}".rstrip())
    if not result.ok and result.hint:
        typer.echo(f"      hint: {result.hint}")


@app.command("check")
@handled
def secrets_check(
    as_json: Annotated[bool, typer.Option("--json", help="Print the results as JSON.")] = False,
) -> None:
    """Check the secret store: reachable, unsealed, authenticated, mounts, policy. Exit 1 if any check fails."""
    settings = load_settings()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", EmbeddedKeystoreWarning)
        store = open_secret_store(settings)
    try:
        results = store.check()
    finally:
        close = getattr(store, "close", None)
        if callable(close):
            close()
    failed = [r for r in results if not r.ok]
    if as_json:
        emit_json({"backend": settings.secrets_backend, "ca_keys": settings.ca_keys, "ok": not failed,
                   "checks": [dataclasses.asdict(r) for r in results]})
    else:
        typer.echo(f"secret store: {settings.secrets_backend} (CA keys: {settings.ca_keys})")
        width = max((len(r.name) for r in results), default=0)
        for result in results:
            _print_result(result, width)
        summary = f"{len(failed)} of {len(results)} checks failed" if failed else f"all {len(results)} checks passed"
        typer.echo(summary, err=bool(failed))
    if failed:
        raise typer.Exit(1)


@app.command("policy")
@handled
def secrets_policy(
    ca_keys: Annotated[str | None, typer.Option(
        "--ca-keys", help="vault-transit or vault-kv (default: as configured).")] = None,
) -> None:
    """Print the Vault policy the service needs (load it with `bao policy write dmboot -`)."""
    settings = load_settings()
    if ca_keys is not None:
        if ca_keys not in CA_KEY_CHOICES[1:]:
            raise ConfigurationError(f"--ca-keys must be vault-transit or vault-kv, not {ca_keys!r}",
                                     field="ca_keys")
        settings = settings.with_ca_keys(ca_keys)
    typer.echo(policy_hcl(_policy_config(settings)), nl=False)


def _policy_config(settings: Settings) -> VaultConfig:
    # The policy depends on mounts, prefix and CA key mode only: no credentials are
    # needed to print it, so a placeholder token satisfies VaultConfig's validation.
    vault = dataclasses.replace(settings.vault, auth="token", token=Secret("unused"))
    return config_from_settings(vault)
