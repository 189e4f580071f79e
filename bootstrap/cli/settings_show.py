"""``dmboot config show``: the settings in effect and where each one came from."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated, Any

import typer

from bootstrap.cli.common import emit_json, handled, load_settings_with_sources
from bootstrap.settings import Secret, Settings, port_mismatch

__all__ = ["app"]

app = typer.Typer(help="The service's own settings (dmboot.toml, DMBOOT_* variables, defaults).",
                  no_args_is_help=True)


@app.command("show")
@handled
def config_show(as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False) -> None:
    """Print every setting in effect and its source: command line, environment, config file, default."""
    settings, sources = load_settings_with_sources()
    rows = _rows(settings, sources)
    if as_json:
        emit_json({"settings": {name: {"value": value, "source": source} for name, value, source in rows},
                   "warnings": [w for w in (port_mismatch(settings),) if w]})
        return
    width = max(len(name) for name, _, _ in rows)
    for name, value, source in rows:
        typer.echo(f"{name:<{width}}  {_text(value):40}  {source}")
    if (mismatch := port_mismatch(settings)) is not None:
        typer.secho(f"warning: {mismatch}", fg=typer.colors.YELLOW, err=True)


def _rows(settings: Settings, sources: dict[str, str]) -> list[tuple[str, Any, str]]:
    rows: list[tuple[str, Any, str]] = []
    for field in dataclasses.fields(settings):
        value = getattr(settings, field.name)
        if field.name == "vault":
            for inner in dataclasses.fields(value):
                name = f"vault.{inner.name}"
                rows.append((name, _plain(getattr(value, inner.name)), sources.get(name, "default")))
            continue
        rows.append((field.name, _plain(value), sources.get(field.name, "default")))
    return rows


def _plain(value: Any) -> Any:
    if isinstance(value, Secret):
        return "(set, hidden)"
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple):
        return list(value)
    return getattr(value, "value", value)  # enums: their config spelling


def _text(value: Any) -> str:
    if value is None:
        return "-"
    return ", ".join(map(str, value)) if isinstance(value, list) else str(value)
