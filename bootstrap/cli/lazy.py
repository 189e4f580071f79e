"""Command groups loaded when used: ``dmboot config show`` never imports the database layer.

Most command groups import the runtime (sqlalchemy, cryptography, starlette...) at
module level, which takes about a second. The root group below knows each group by
name, module and one-line help, imports a group's module only when the command line
names it, and lists the groups in ``dmboot --help`` from the table alone.
typer carries its own copy of click, hence ``Any`` and duck typing.
"""

from __future__ import annotations

import importlib
from difflib import get_close_matches
from pathlib import Path
from typing import Any, NamedTuple

import typer
import typer.core
import typer.main
from typer._click.exceptions import UsageError  # typer carries its own click

from bootstrap.cli.help_text import tidy

__all__ = ["GROUPS", "LazyGroup", "LazySpec"]


class LazySpec(NamedTuple):
    """Where a command group lives: ``module`` and its typer app ``attribute``, and its help line."""

    module: str
    attribute: str
    help: str


#: The command groups of ``dmboot``, in the order ``--help`` lists them.
GROUPS: dict[str, LazySpec] = {
    "admin": LazySpec("bootstrap.cli.admin", "app", "Human admins of the web console: roles, passwords, TOTP."),
    "audit": LazySpec("bootstrap.cli.audit", "app", "The audit trail: verify its hash chain, export it."),
    "ca": LazySpec("bootstrap.cli.ca", "app", "The certificate authorities."),
    "cert": LazySpec("bootstrap.cli.cert", "app", "Issue and inspect certificates."),
    "dm1": LazySpec("bootstrap.cli.dm1", "app", "DM 1.x (SyncML DM) bootstrap files and credentials."),
    "factory": LazySpec("bootstrap.cli.factory", "app",
                        "Factory lines: provision devices in batches, pre-register devices, stations."),
    "secrets": LazySpec("bootstrap.cli.secrets", "app",
                        "The secret store: check it, print the Vault policy it needs."),
    "token": LazySpec("bootstrap.cli.tokens", "app", "API tokens (Bearer) for admin clients and factory stations."),
    "config": LazySpec("bootstrap.cli.settings_show", "app",
                       "The service's own settings (dmboot.toml, DMBOOT_* variables, defaults)."),
    "server": LazySpec("bootstrap.cli.config", "server_app",
                       "DM servers devices are bootstrapped to (DMAcc SrvID, SrvURI)."),
    "repo": LazySpec("bootstrap.cli.config", "repo_app", "Data repositories devices fetch MO data from (HGET)."),
    "profile": LazySpec("bootstrap.cli.config", "profile_app",
                        "Enrollment profiles: one DM account template for a group of devices."),
    "device": LazySpec("bootstrap.cli.config", "device_app", "Devices, registered by DevID."),
    "enroll-token": LazySpec("bootstrap.cli.config", "token_app",
                             "One-time enrollment tokens (shown once, stored as SHA-256)."),
    "maker-ca": LazySpec("bootstrap.cli.config", "maker_app",
                         "Manufacturer CAs whose device certificates (IDevID) are trusted."),
    "tpm-ca": LazySpec("bootstrap.cli.tpm", "app",
                       "TPM manufacturer CAs (EK certificate roots and intermediates) per enrollment profile."),
    "group-key": LazySpec("bootstrap.cli.config", "group_app",
                          "Group keys for group-key attestation (kept in the secret store)."),
}


class _PlainValue:
    """typer's runtime conversion of a flag or a path, without pydantic for the common values.

    typer (0.2x) converts values through a pydantic TypeAdapter built on first use, and
    pydantic's import is most of a `config show`. A flag's bool or absent value and a path
    given as text are converted here; anything else goes to typer's own conversion.
    """

    def __init__(self, param: Any, kind: type) -> None:
        self._param, self._kind = param, kind

    def coerce(self, value: Any, *, param: Any = None, ctx: Any = None) -> Any:
        if value is None or (self._kind is bool and isinstance(value, bool)):
            return value
        if self._kind is Path and isinstance(value, str):
            return Path(value)
        from typer._coercion import build_runtime_param

        return build_runtime_param(self._param.type_descriptor).coerce(value, param=param, ctx=ctx)


def _light(command: Any) -> Any:
    """Give ``command``'s (and its subcommands') flag and path parameters :class:`_PlainValue`."""
    for param in command.params:
        _light_param(param)
    make_help = command.get_help_option

    def get_help_option(ctx: Any) -> Any:  # click makes --help on demand
        return _light_param(make_help(ctx))

    command.get_help_option = get_help_option
    for sub in getattr(command, "commands", {}).values():
        _light(sub)
    return command


def _light_param(param: Any) -> Any:
    annotation = getattr(getattr(param, "type_descriptor", None), "annotation", None)
    kind = bool if annotation is bool else Path if annotation in (Path, Path | None) else None
    if kind is not None and getattr(param, "_runtime_param", False) is None:
        param._runtime_param = _PlainValue(param, kind)
    return param


class LazyGroup(typer.core.TyperGroup):
    """The root ``dmboot`` group: its own commands at once, the groups of :data:`GROUPS` on demand."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._listing = False
        _light(self)

    def list_commands(self, ctx: Any) -> list[str]:
        return [*super().list_commands(ctx), *(name for name in GROUPS if name not in self.commands)]

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        found = super().get_command(ctx, cmd_name)
        if found is not None or cmd_name not in GROUPS:
            return found
        spec = GROUPS[cmd_name]
        if self._listing:  # `dmboot --help` needs a name and a line, not the module
            return typer.core.TyperGroup(name=cmd_name, help=spec.help)
        group = typer.main.get_group(getattr(importlib.import_module(spec.module), spec.attribute))
        group.name = cmd_name
        self.commands[cmd_name] = _light(tidy(group))
        return group

    def format_help(self, ctx: Any, formatter: Any) -> None:
        self._listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self._listing = False

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        try:
            return super().resolve_command(ctx, args)
        except UsageError as exc:
            matches = get_close_matches(args[0], list(GROUPS)) if args else []
            if matches and "Did you mean" not in exc.message:
                exc.message = f"{exc.message.rstrip('.')}. Did you mean {', '.join(map(repr, matches))}?"
            raise
