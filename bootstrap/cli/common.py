"""Helpers every ``dmboot`` command group shares: settings, the runtime, errors, JSON."""

from __future__ import annotations

import functools
import getpass
import json
import os
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from bootstrap.errors import DmBootstrapError
from bootstrap.settings import Settings, load_with_sources
from pki.errors import PkiError

if TYPE_CHECKING:
    from bootstrap.runtime import Runtime
    from pki.authority import IssuedCertificate

__all__ = [
    "JsonOpt", "State", "cli_actor", "emit_issued", "emit_json", "fail", "handled", "keystore_warning_once",
    "load_settings", "load_settings_with_sources", "no_data_dir_message", "open_runtime", "print_record", "print_rows",
    "read_optional", "shown_of_total", "state",
]

F = TypeVar("F", bound=Callable[..., Any])


class State:
    """Global options, set by the root callback."""

    data_dir: Path | None = None
    config: Path | None = None
    quiet: bool = False


state = State()


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment and the config file, with CLI overrides."""
    return load_settings_with_sources(**overrides)[0]


def load_settings_with_sources(**overrides: Any) -> tuple[Settings, dict[str, str]]:
    """:func:`load_settings` and where each setting came from (``dmboot config show``)."""
    environ = dict(os.environ)
    if state.data_dir is not None:
        environ["DMBOOT_DATA_DIR"] = str(state.data_dir)
    settings, sources = load_with_sources(environ, state.config, overrides)
    if state.data_dir is not None:
        sources["data_dir"] = "command line"
    return settings, sources


def cli_actor() -> str:
    """The audit actor of a command: ``cli:<login user>`` (docs/audit.md)."""
    try:
        user = getpass.getuser()
    except (OSError, KeyError):  # no passwd entry, no LOGNAME: still an actor
        user = "unknown"
    return f"cli:{user}"


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print ``error: message`` on stderr; return the Exit to raise."""
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    return typer.Exit(code)


def handled(func: F) -> F:
    """Turn the project's errors into one line on stderr and exit 1."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (DmBootstrapError, PkiError) as exc:
            raise fail(exc.message) from None
        except OSError as exc:
            raise fail(f"{exc.strerror or exc}: {exc.filename}" if exc.filename else str(exc)) from None

    return wrapper  # type: ignore[return-value]


@contextmanager
def open_runtime(settings: Settings | None = None) -> Iterator[Runtime]:
    """The runtime of an initialized data directory."""
    # Imported here: commands that need no runtime (`config show`, `--help`) start without
    # the database layer and cryptography.
    from bootstrap.runtime import Runtime
    from bootstrap.secrets.embedded import EmbeddedKeystoreWarning

    settings = settings or load_settings()
    if not settings.data_dir.exists() and not settings.database_url:
        raise DmBootstrapError(no_data_dir_message(settings.data_dir))
    with warnings.catch_warnings():
        # The key-file warning is shown by `init` and `serve`; repeating it on every
        # read-only command would bury the output.
        warnings.simplefilter("ignore", EmbeddedKeystoreWarning)
        runtime = Runtime(settings)
    try:
        yield runtime
    finally:
        runtime.close()


@contextmanager
def keystore_warning_once(settings: Settings) -> Iterator[None]:
    """Show the embedded-keystore warning once per data directory (never with ``--quiet``)."""
    from bootstrap.secrets.embedded import EmbeddedKeystoreWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", EmbeddedKeystoreWarning)
        yield
    marker = settings.data_dir / ".keystore-warning-shown"
    for warning in caught:
        if not issubclass(warning.category, EmbeddedKeystoreWarning):
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
        elif not state.quiet and not marker.exists():
            typer.secho(f"warning: {warning.message} (shown once for this data directory)",
                        fg=typer.colors.YELLOW, err=True)
            if settings.data_dir.is_dir():
                marker.touch()


def no_data_dir_message(data_dir: Path) -> str:
    """Where we looked and both ways out: point at the existing directory, or create one."""
    where = data_dir.resolve()
    hint = (" (a relative path, read from the current directory)" if not data_dir.is_absolute() else "")
    return (f"no data directory at {where}{hint}; if it exists elsewhere pass --data-dir DIR or set "
            "DMBOOT_DATA_DIR, otherwise `dmboot init` creates a new one (with a new CA) here")


def shown_of_total(shown: int, total: int, what: str, *, next_page: str | None = None) -> None:
    """The total under a listing (on stderr, so pipes get the rows alone): no listing stops silently."""
    more = f"; next page: {next_page}" if next_page else "; --limit N shows more" if shown < total else ""
    typer.echo(f"{shown} of {total} {what}{more}", err=True)


def emit_json(data: Any) -> None:
    """Print ``data`` as indented JSON."""
    typer.echo(json.dumps(data, indent=2, default=str))


def emit_issued(issued: IssuedCertificate, out: Path | None, *, as_json: bool, label: str,
                facts: dict[str, Any]) -> None:
    """Hand over an issued certificate: its chain written to ``out`` if given, then reported.

    Args:
        issued: The certificate.
        out: Where to write the PEM chain; None prints it on stdout (unless ``as_json``).
        as_json: Report ``facts`` with ``out`` and ``pem`` (the chain when not written) as JSON.
        label: In the one line on stderr after writing ``out`` (the certificate profile).
        facts: The JSON members before ``out`` and ``pem``.
    """
    if out is not None:
        out.write_text(issued.chain_pem)
    if as_json:
        emit_json({**facts, "out": str(out) if out else None, "pem": None if out else issued.chain_pem})
    elif out is None:
        typer.echo(issued.chain_pem, nl=False)
    else:
        typer.echo(f"issued serial {issued.serial_hex} ({label}) -> {out}", err=True)


#: The ``--json`` option of a command that prints data.
JsonOpt = Annotated[bool, typer.Option("--json", help="Print as JSON.")]


def read_optional(path: Path | None, what: str) -> str | None:
    """The text of ``path`` (a PEM, a DDF...), None without one; a missing file is a one-line error."""
    if path is None:
        return None
    if not path.is_file():
        raise DmBootstrapError(f"{what} file {path} does not exist")
    return path.read_text()


def print_record(view: dict[str, Any], *, as_json: bool) -> None:
    """One record: as JSON, or one ``key  value`` line per member (lists and objects as JSON)."""
    if as_json:
        emit_json(view)
        return
    for key, value in view.items():
        typer.echo(f"{key:<20} {json.dumps(value) if isinstance(value, list | dict) else value}")


def print_rows(rows: list[dict[str, Any]], keys: tuple[str, ...], empty: str) -> None:
    """One line per row with the values of ``keys`` (``-`` for none), or ``empty`` when there are none."""
    if not rows:
        typer.echo(empty)
    for row in rows:
        typer.echo("  ".join(str(row.get(k) if row.get(k) is not None else "-") for k in keys))
