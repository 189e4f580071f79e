"""create_app(settings): wiring only."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.middleware import Middleware

from bootstrap.runtime import Runtime
from bootstrap.settings import Settings
from bootstrap.web import access_api, api, console, dm, dm1, enroll, est, factory, lifecycle, openapi, pkix, status
from bootstrap.web.guards import NulGuardMiddleware
from bootstrap.web.middleware import BodyLimitMiddleware, RequestIdMiddleware
from bootstrap.web.problems import exception_handlers

__all__ = ["create_app"]


def create_app(settings: Settings | None = None, runtime: Runtime | None = None) -> Starlette:
    """The ASGI application. With no arguments, settings come from the environment."""
    settings = runtime.settings if runtime else (settings or Settings.load())

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        owned = runtime is None
        app.state.runtime = runtime or Runtime(settings)
        try:
            yield
        finally:
            if owned:
                app.state.runtime.close()

    app = Starlette(
        routes=[*status.routes(), *dm.routes(), *api.routes(), *enroll.routes(), *pkix.routes(), *est.routes(),
                *lifecycle.routes(), *access_api.routes(), *openapi.routes(), *console.routes(),
                *factory.routes(), *dm1.routes()],
        middleware=[
            Middleware(RequestIdMiddleware),
            Middleware(NulGuardMiddleware),
            Middleware(BodyLimitMiddleware, limit=settings.max_body_bytes,
                       overrides={factory.PREFIX: settings.factory_max_body_bytes}),
        ],
        exception_handlers=exception_handlers(),
        lifespan=lifespan,
    )
    if runtime is not None:
        app.state.runtime = runtime
    return app
