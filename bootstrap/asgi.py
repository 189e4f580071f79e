"""The ASGI application for uvicorn (``bootstrap.asgi:app``); settings from the environment."""

from __future__ import annotations

import logging

from bootstrap.app import create_app

logging.captureWarnings(True)  # in worker processes too, warnings are log lines (in the configured format)

app = create_app()
