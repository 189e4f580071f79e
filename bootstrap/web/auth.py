"""Authenticating HTTP callers: the Bearer token of an API client."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import HTTPConnection

from bootstrap.auth.principals import Principal, require
from bootstrap.errors import AuthenticationFailed
from bootstrap.runtime import Runtime

__all__ = ["authorize", "check", "principal_of"]


def principal_of(connection: HTTPConnection) -> Principal | None:
    """The caller named by ``Authorization: Bearer``, or None without that header."""
    header = connection.headers.get("authorization", "")
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthenticationFailed("use Authorization: Bearer <API token>")
    runtime: Runtime = connection.app.state.runtime
    principal = runtime.tokens.authenticate(token.strip())
    connection.scope.setdefault("state", {})["principal_kind"] = principal.kind  # for the access log
    return principal


def check(connection: HTTPConnection, permission: str) -> Principal:
    """The caller, if it holds ``permission`` (401 without credentials, 403 without the right).

    Blocking (the token is looked up in the database): call it from a threadpool, or :func:`authorize`.
    """
    return require(principal_of(connection), permission)


async def authorize(connection: HTTPConnection, permission: str) -> Principal:
    """:func:`check`, off the event loop (no database call runs on the event-loop thread)."""
    return await run_in_threadpool(check, connection, permission)
