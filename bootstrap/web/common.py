"""What every handler under bootstrap/web needs: the runtime, the request id, JSON bodies read once.

One content-type rule for JSON bodies: ``application/json`` (parameters such as
``charset`` ignored) or a 415 problem; the text is read by :func:`bootstrap.strict_json.loads`
(duplicate members, NaN/Infinity and lone surrogates are a 400); a body with a model
is validated by that pydantic model, and the first error becomes a 400 naming the
field (``items.3.dev_id``). The OpenAPI document takes each operation's
requestBody schema from the same model (bootstrap.web.openapi).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from bootstrap import strict_json
from bootstrap.body import validate
from bootstrap.errors import DmBootstrapError, InvalidRequest, UnsupportedMediaType
from bootstrap.runtime import Runtime

__all__ = ["JSON", "DeviceBody", "call", "media_type", "parse_json", "read_json", "read_model", "refusals_recorded",
           "request_id", "runtime_of", "validate"]

JSON = "application/json"
T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)


def runtime_of(request: Request) -> Runtime:
    """The service's runtime (set on the app by bootstrap.app.create_app)."""
    value: Runtime = request.app.state.runtime
    return value


def request_id(request: Request) -> str | None:
    """The request's X-Request-ID (set by the request-id middleware), if any."""
    value = request.scope.get("state", {}).get("request_id")
    return str(value) if value else None


async def call(func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a (blocking) service call off the event loop."""
    return await run_in_threadpool(func, *args, **kwargs)


def media_type(request: Request) -> str:
    """The request's Content-Type without parameters, lower-cased."""
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


def parse_json(content_type: str, body: bytes) -> Any:
    """Decode a JSON body, refusing other media types (415) and malformed or lenient JSON (400)."""
    if content_type != JSON:
        raise UnsupportedMediaType(f"send the body as {JSON}, not {content_type or 'no Content-Type'}",
                                   field="content-type")
    try:
        return strict_json.loads(body)
    except strict_json.StrictJsonError as exc:
        raise InvalidRequest(f"malformed JSON: {exc}", field="body") from None


async def read_json(request: Request) -> dict[str, Any]:
    """The request body as a JSON object."""
    document = parse_json(media_type(request), await request.body())
    if not isinstance(document, dict):
        raise InvalidRequest("the body must be a JSON object", field="body")
    return document


async def read_model(request: Request, model: type[M], *, optional: bool = False) -> M:
    """The JSON body validated by ``model``.

    Args:
        request: The request.
        model: The pydantic model of the body (also the operation's requestBody schema).
        optional: An empty body means ``{}`` (for operations whose members all have defaults).

    Raises:
        UnsupportedMediaType: not application/json.
        InvalidRequest: malformed JSON, or not what ``model`` says (naming the field).
    """
    body, kind = await request.body(), media_type(request)
    if optional and not body.strip() and kind in ("", JSON):  # another media type is a 415 even when empty
        return validate(model, {})
    return validate(model, parse_json(kind, body))


class DeviceBody:
    """A device's JSON request body being read: what :func:`refusals_recorded` yields."""

    def __init__(self, request: Request) -> None:
        self._request = request
        #: The decoded JSON, once it decoded: where a refusal finds the ``dev_id`` it names.
        self.document: Any = None

    def parse(self, model: type[M], body: bytes) -> M:
        """Decode ``body`` (application/json, strict) and validate it by ``model``."""
        self.document = parse_json(media_type(self._request), body)
        return validate(model, self.document)

    @property
    def dev_id(self) -> object:
        """The body's ``dev_id`` member as sent (any JSON value), or None."""
        return self.document.get("dev_id") if isinstance(self.document, dict) else None


@asynccontextmanager
async def refusals_recorded(request: Request, *, channel: str, method: str = "-") -> AsyncIterator[DeviceBody]:
    """Audit a device request refused before it reaches the enrollment service, then re-raise.

    Wraps the parse -> validate -> evidence steps of a device handler (JSON enrollment, DM 1.x
    bootstrap, both TPM rounds); the enrollment service records what it refuses itself.

    Args:
        request: The device's request.
        channel: The audit channel (``json``, ``dm1``).
        method: The enrollment method when the route fixes it (``tpm``), else ``-``.
    """
    device = DeviceBody(request)
    try:
        yield device
    except DmBootstrapError as exc:
        await run_in_threadpool(runtime_of(request).enrollment.record_refusal, device.dev_id, method, exc,
                                channel=channel, request_id=request_id(request))
        raise
