"""Helpers every ``dmboot`` command group shares: settings, the runtime, errors, JSON."""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import typer

from bootstrap.errors import DmBootstrapError
from bootstrap.runtime import Runtime
from bootstrap.secrets.embedded import EmbeddedKeystoreWarning
from bootstrap.settings import Settings
from pki.errors import PkiError

__all__ = ["State", "emit_json", "fail", "handled", "open_runtime", "load_settings", "state"]

F = TypeVar("F", bound=Callable[..., Any])


class State:
    """Global options, set by the root callback."""

    data_dir: Path | None = None
    config: Path | None = None


state = State()


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment and the config file, with CLI overrides."""
    environ = dict(os.environ)
    if state.data_dir is not None:
        environ["DMBOOT_DATA_DIR"] = str(state.data_dir)
    settings = Settings.load(environ, state.config)
    return dataclasses.replace(settings, **{k: v for k, v in overrides.items() if v is not None})


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
    settings = settings or load_settings()
    if not settings.data_dir.exists() and not settings.database_url:
        raise DmBootstrapError(f"no data directory at {settings.data_dir}; run `dmboot init` first")
    with warnings.catch_warnings():
        # The key-file warning is shown by `init` and `serve`; repeating it on every
        # read-only command would bury the output.
        warnings.simplefilter("ignore", EmbeddedKeystoreWarning)
        runtime = Runtime(settings)
    try:
        yield runtime
    finally:
        runtime.close()


def emit_json(data: Any) -> None:
    """Print ``data`` as indented JSON."""
    typer.echo(json.dumps(data, indent=2, default=str))
