"""The ``dmboot`` command: ``main.py`` holds the app and shared helpers; each command
group lives in its own module and registers itself there.

Importing this package is cheap: ``dmboot --version`` answers before the services,
the database layer and cryptography are imported; everything else loads ``main``.
"""

from __future__ import annotations

import sys
from typing import Any

__all__ = ["app", "main"]


def main() -> None:
    """Console entry point."""
    if sys.argv[1:] == ["--version"]:
        from bootstrap import __version__

        print(f"dmboot {__version__}")  # noqa: T201 - the whole command
        return
    from bootstrap.cli.main import main as run

    run()


def __getattr__(name: str) -> Any:
    if name == "app":
        from bootstrap.cli.main import app

        return app
    raise AttributeError(name)
