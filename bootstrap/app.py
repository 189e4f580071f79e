"""create_app(settings): wiring only."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.middleware import Middleware

from bootstrap.runtime import Runtime
from bootstrap.settings import Settings
from bootstrap.web import (
    access_api,
    api,
    api_reference,
    console,
    dm1,
    dm2,
    enroll,
    est,
    factory,
    lifecycle,
    openapi,
    outages,
    pkix,
    status,
    tpm,
)
from bootstrap.web.guards import NulGuardMiddleware
from bootstrap.web.middleware import BodyLimitMiddleware
from bootstrap.web.observe import ObserveMiddleware
from bootstrap.web.problems import exception_handlers

__all__ = ["create_app"]


def create_app(settings: Settings | None = None, runtime: Runtime | None = None) -> Starlette:
    """The ASGI application. With no arguments, settings come from the environment."""
    settings = runtime.settings if runtime else (settings or Settings.load())

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        owned = runtime is None
        app.state.runtime = runtime or Runtime(settings)
        if owned:  # a served process publishes CRLs in the background (one replica at a time)
            app.state.runtime.crl_publisher.start()
        try:
            yield
        finally:
            if owned:
                app.state.runtime.close()

    app = Starlette(
        # Relying parties' routes (OCSP, CRLs) first: Starlette tries routes in order, on every request.
        routes=[*status.routes(), *pkix.routes(), *dm2.routes(), *api.routes(), *enroll.routes(), *est.routes(),
                *lifecycle.routes(), *access_api.routes(), *openapi.routes(), *api_reference.routes(),
                *console.routes(),
                *factory.routes(), *dm1.routes(), *tpm.routes()],
        middleware=[
            Middleware(ObserveMiddleware),
            Middleware(NulGuardMiddleware),
            Middleware(BodyLimitMiddleware, limit=settings.max_body_bytes,
                       overrides={factory.PREFIX: settings.factory_max_body_bytes}),
        ],
        exception_handlers={**outages.handlers(), **exception_handlers()},
        lifespan=lifespan,
    )
    if runtime is not None:
        app.state.runtime = runtime
    return app
