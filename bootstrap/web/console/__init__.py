"""The web console (server-rendered, no JavaScript) and the subscriber self-service pages."""

from __future__ import annotations

from bootstrap.web.console.routes import routes

__all__ = ["routes"]
