"""Help that reads as help: ``--json``, not ``--json <bool>``; ``--role ROLE``, not ``<list[str]>``; no reST.

typer labels every option with its Python type; the walk below gives each command's
options click-style metavars (flags none) and turns reST literals into plain backquotes.
typer carries its own copy of click, hence ``Any`` and duck typing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["tidy"]


def tidy(command: Any) -> Any:
    """Tidy ``command`` and every subcommand's help in place; return it."""
    if command.help:
        command.help = command.help.replace("``", "`")
    if command.short_help:
        command.short_help = command.short_help.replace("``", "`")
    for param in command.params:
        _metavar(param)
        if getattr(param, "help", None):
            param.help = param.help.replace("``", "`")
    command.get_help_option = _flagged(command.get_help_option)
    for sub in getattr(command, "commands", {}).values():
        tidy(sub)
    return command


def _metavar(param: Any) -> None:
    # typer carries its own copy of click: tell arguments and options apart by duck type.
    if param.param_type_name == "argument":
        param.display_type_rich = lambda ctx: None  # its name says it all
    if getattr(param, "is_flag", False):
        param.metavar = ""
    elif param.metavar is None and param.name:
        name = param.name.upper().removeprefix("AS_")
        param.metavar = f"{name}..." if param.nargs != 1 else name


def _flagged(get: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """click makes the --help option on demand: tidy it as it is made."""

    def get_help_option(ctx: Any) -> Any:
        option = get(ctx)
        if option is not None:
            option.metavar = ""
        return option

    return get_help_option
