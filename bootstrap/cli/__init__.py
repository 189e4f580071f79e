"""The ``dmboot`` command: ``main.py`` holds the app and shared helpers; each command
group lives in its own module and registers itself in ``_register()``."""

from __future__ import annotations

from bootstrap.cli.main import app, main

__all__ = ["app", "main"]
