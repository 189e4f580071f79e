"""The factory API: ``POST /api/v1/factory/batches`` and ``POST /api/v1/factory/registrations``.

Stations authenticate with ``Authorization: Bearer <API token>`` or with a client
certificate registered as a factory station (mutual TLS), and need
``factory:provision``. Handlers parse, authenticate, call the factory service, render;
docs/factory.md describes the wire format.

Batches come as ``application/json`` (``{"profile": .., "items": [..]}``, answered as one
JSON document) or as ``application/x-ndjson`` (the batch header on the first line, one
item per line), answered as NDJSON while the request is still arriving: the service
works chunk by chunk and nothing is held in memory beyond a chunk.
"""

from __future__ import annotations

import functools
import json
from collections.abc import AsyncIterator
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from bootstrap import strict_json
from bootstrap.auth.principals import Principal, require
from bootstrap.body import validate
from bootstrap.errors import AuthenticationFailed, DmBootstrapError, InvalidRequest, UnsupportedMediaType
from bootstrap.factory.chunks import error_of
from bootstrap.factory.service import CHUNK_SIZE, OpenBatch, Station
from bootstrap.factory.types import (
    BatchBody,
    BatchSpec,
    ItemOutcome,
    ItemRequest,
    RegistrationBody,
    RegistrationSpec,
)
from bootstrap.web.auth import check
from bootstrap.web.common import JSON, media_type, parse_json, read_model, request_id, runtime_of
from bootstrap.web.openapi import operation, request_body
from bootstrap.web.tls import client_certificate
from pki.errors import PkiError

__all__ = ["NDJSON", "PREFIX", "routes"]

NDJSON = "application/x-ndjson"
#: Where the factory routes live; their bodies may reach ``factory_max_body_bytes``.
PREFIX = "/api/v1/factory/"
_MAX_LINE = 64 * 1024



def _principal(request: Request) -> Principal:
    """The station: by Bearer token, else by its registered client certificate."""
    if request.headers.get("authorization"):
        return check(request, "factory:provision")
    runtime = runtime_of(request)
    settings = runtime.settings
    cert = client_certificate(request, trusted_proxies=settings.trusted_proxies, header=settings.client_cert_header)
    if cert is None:
        raise AuthenticationFailed("factory stations authenticate with Authorization: Bearer <API token> or with"
                                   " a client certificate registered as a factory station")
    return require(runtime.factory.stations.authenticate(cert), "factory:provision")


async def _station(request: Request) -> Station:
    principal = await run_in_threadpool(_principal, request)
    return Station.of(principal, request_id(request))


# -- batches --------------------------------------------------------------------------------


@operation(permission="factory:provision", tags=["factory"], parameters=[
    {"name": "Idempotency-Key", "in": "header", "required": True, "description": "the same on every retry",
     "schema": {"type": "string", "pattern": "^[!-~]([ -~]{0,126}[!-~])?$"}}])
@request_body(BatchBody)
async def create_batch(request: Request) -> Response:
    """Issue certificates for a batch of devices, or return what they got before."""
    station = await _station(request)
    key = request.headers.get("idempotency-key")
    kind = media_type(request)
    if kind == NDJSON:
        return await _ndjson_batch(request, station, key)
    if kind != JSON:
        raise UnsupportedMediaType(f"send a batch as {JSON} or {NDJSON}", field="content-type")
    document = validate(BatchBody, parse_json(kind, await request.body()))
    spec = BatchSpec.of(document, key)
    items = [ItemRequest.of(item) for item in document.items]
    service = runtime_of(request).factory.batches
    batch = await run_in_threadpool(service.open_batch, station, spec)
    await run_in_threadpool(service.check_quota, batch, items)
    outcomes: list[ItemOutcome] = []
    for start in range(0, len(items), CHUNK_SIZE):
        # The first chunk refuses the request as a whole (403); later ones fail their new devices.
        outcomes += await run_in_threadpool(functools.partial(service.submit, refuse_whole=not outcomes), batch,
                                            items[start:start + CHUNK_SIZE])
    summary = await run_in_threadpool(service.finish, batch)
    chains = {o.issuer: service.chain_pem(o.issuer) for o in outcomes if o.issuer}
    return JSONResponse({"batch": summary.to_json(), "chains": chains, "bootstrap": batch.template,
                         "ddf_base_url": runtime_of(request).settings.public_url,
                         "items": [o.to_json() for o in outcomes]})


class _DuplexStreamingResponse(StreamingResponse):
    """A StreamingResponse that may read the request body while it streams.

    Starlette's own listens for ``http.disconnect`` with ``receive()`` under ASGI 2.3,
    which would take the body messages the generator reads. Here the generator is the
    only reader; a client that goes away ends ``request.stream()`` with ClientDisconnect.
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.stream_response(send)


async def _lines(request: Request) -> AsyncIterator[tuple[int, bytes]]:
    """Non-empty NDJSON lines of the body with their line numbers (1-based)."""
    buffer = b""
    number = 0
    async for part in request.stream():
        buffer += part
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            number += 1
            if line.strip():
                yield number, line
        if len(buffer) > _MAX_LINE:
            raise InvalidRequest(f"NDJSON line {number + 1} is longer than {_MAX_LINE} bytes", field="body")
    if buffer.strip():
        yield number + 1, buffer


def _json_line(number: int, line: bytes) -> Any:
    try:
        return strict_json.loads(line)
    except strict_json.StrictJsonError as exc:
        raise InvalidRequest(f"NDJSON line {number} is not JSON: {exc}", field="body") from None


async def _ndjson_batch(request: Request, station: Station, key: str | None) -> Response:
    lines = _lines(request)
    first = await anext(lines, None)
    if first is None:
        raise InvalidRequest("an NDJSON batch starts with its header line {\"profile\": ..}", field="body")
    spec = BatchSpec.from_json(_json_line(*first), key)
    service = runtime_of(request).factory.batches
    batch = await run_in_threadpool(service.open_batch, station, spec)
    # The first chunk is done before answering, so a refusal (over quota) is a plain 403.
    chunk, index = await _next_chunk(lines, 0)
    first_outcomes = await run_in_threadpool(service.submit, batch, chunk)
    return _DuplexStreamingResponse(_stream(request, batch, lines, chunk, first_outcomes, index),
                                    media_type=NDJSON)


async def _next_chunk(lines: AsyncIterator[tuple[int, bytes]], index: int) -> tuple[list[ItemRequest], int]:
    chunk: list[ItemRequest] = []
    async for number, line in lines:
        chunk.append(ItemRequest.from_json(_json_line(number, line), index))
        index += 1
        if len(chunk) >= CHUNK_SIZE:
            break
    return chunk, index


async def _stream(request: Request, batch: OpenBatch, lines: AsyncIterator[tuple[int, bytes]],
                  chunk: list[ItemRequest], outcomes: list[ItemOutcome], index: int) -> AsyncIterator[bytes]:
    service = runtime_of(request).factory.batches
    yield _dump({"type": "batch", "batch_id": batch.id, "idempotency_key": batch.spec.idempotency_key,
                 "profile": batch.spec.profile, "bootstrap": batch.template,
                 "ddf_base_url": runtime_of(request).settings.public_url})
    issuers: set[str] = set()
    error: str | None = None
    try:
        while chunk:
            for outcome in outcomes:
                if outcome.issuer and outcome.issuer not in issuers:
                    issuers.add(outcome.issuer)
                    yield _dump({"type": "chain", "issuer": outcome.issuer, "pem": service.chain_pem(outcome.issuer)})
            yield b"".join(_dump({"type": "item", **o.to_json()}) for o in outcomes)
            chunk, index = await _next_chunk(lines, index)
            if chunk:
                outcomes = await run_in_threadpool(functools.partial(service.submit, refuse_whole=False), batch,
                                                   chunk)
    except (DmBootstrapError, PkiError) as exc:
        slug, detail = error_of(exc)
        error = detail
        yield _dump({"type": "error", "error": {"type": f"urn:dmboot:problem:{slug}", "detail": detail}})
    summary = await run_in_threadpool(service.finish, batch, error=error)
    yield _dump({"type": "summary", **summary.to_json()})


def _dump(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode() + b"\n"


# -- pre-registration ------------------------------------------------------------------------


@request_body(RegistrationBody)
async def create_registrations(request: Request) -> Response:
    """Register devices for first-boot enrollment; per-device one-time tokens or group-derived keys."""
    station = await _station(request)
    document = await read_model(request, RegistrationBody)
    spec, dev_ids = RegistrationSpec.of(document), document.dev_ids
    service = runtime_of(request).factory.registrations
    outcomes = await run_in_threadpool(service.register, station, spec, dev_ids)
    return JSONResponse({"profile": spec.profile, "method": spec.method,
                         "devices": [o.to_json() for o in outcomes]},
                        headers={"Cache-Control": "no-store"})


def routes() -> list[Route]:
    return [
        Route(PREFIX + "batches", create_batch, methods=["POST"]),
        Route(PREFIX + "registrations", create_registrations, methods=["POST"]),
    ]
