"""The ASGI application for uvicorn (``bootstrap.asgi:app``); settings from the environment."""

from __future__ import annotations

from bootstrap.app import create_app

app = create_app()
