"""The factory station's HTTP client: NDJSON batches in full duplex, over HTTPS with mTLS or a token.

A batch request streams items up (chunked transfer encoding) while the outcomes stream
down; both directions run in one asyncio event loop, so a batch of any size never
deadlocks on full socket buffers (a client that sends the whole body before reading
would, once the response outgrows the buffers). Standard library only: the CLI
needs no HTTP package, and the client costs little CPU beside the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bootstrap.errors import DmBootstrapError

__all__ = ["FactoryApiError", "FactoryClient"]

_LINES_PER_WRITE = 64
_LIMIT = 4 * 1024 * 1024  # the longest line (an outcome with a PKCS#12 key is ~4 KiB)


class FactoryApiError(DmBootstrapError):
    """The service refused a request (its problem+json body is in ``problem``)."""

    def __init__(self, status: int, problem: dict[str, Any]) -> None:
        slug = str(problem.get("type", "")).rsplit(":", 1)[-1] or "error"
        super().__init__(f"HTTP {status} {slug}: {problem.get('detail') or problem.get('title') or ''}".strip(),
                         field=problem.get("field"))
        self.status = status
        self.problem = problem


@dataclass(frozen=True)
class _Response:
    status: int
    headers: dict[str, str]


class FactoryClient:
    """Talks to ``/api/v1/factory/*`` of a dm-bootstrap service."""

    def __init__(self, url: str, *, token: str | None = None, cacert: Path | None = None,
                 client_cert: Path | None = None, client_key: Path | None = None, timeout: float = 600.0) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise DmBootstrapError(f"--url must be an http(s) URL, not {url!r}", field="url")
        self._host = parts.hostname
        self._port = parts.port or (443 if parts.scheme == "https" else 80)
        self._base = parts.path.rstrip("/")
        self._token = token
        self._timeout = timeout
        self._ssl: ssl.SSLContext | None = None
        if parts.scheme == "https":
            self._ssl = ssl.create_default_context(cafile=str(cacert) if cacert else None)
            if client_cert is not None:
                self._ssl.load_cert_chain(str(client_cert), str(client_key) if client_key else None)

    def _headers(self, content_type: str, extra: dict[str, str]) -> dict[str, str]:
        headers = {"Host": f"{self._host}:{self._port}", "Content-Type": content_type,
                   "Accept": f"{content_type}, application/problem+json", "Connection": "close",
                   "User-Agent": "dmboot-factory"}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        headers.update(extra)
        return headers

    async def batch(self, idempotency_key: str, header: dict[str, Any],
                    items: Sequence[dict[str, Any]]) -> AsyncIterator[dict[str, Any]]:
        """POST an NDJSON batch; yield the response lines (batch, chain, item..., summary) as they come.

        Raises:
            FactoryApiError: the service refused the batch (401/403/404/409/...).
            OSError: the connection failed; the batch may be retried with the same key.
        """
        reader, writer = await self._connect()
        try:
            headers = self._headers("application/x-ndjson", {"Idempotency-Key": idempotency_key,
                                                              "Transfer-Encoding": "chunked"})
            writer.write(_head("POST", self._base + "/api/v1/factory/batches", headers))
            sender = asyncio.create_task(_send_chunked(writer, [header, *items]))
            try:
                response = await asyncio.wait_for(_read_head(reader), self._timeout)
                if response.status != 200:
                    raise FactoryApiError(response.status, await _problem(reader, response))
                async for line in _body_lines(reader, response, self._timeout):
                    yield json.loads(line)
                await sender
            finally:
                if not sender.done():
                    sender.cancel()
                with contextlib.suppress(asyncio.CancelledError, OSError):
                    await sender
        finally:
            writer.close()
            with contextlib.suppress(OSError, ssl.SSLError):
                await writer.wait_closed()

    async def post_json(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST a JSON document to ``/api/v1/factory/<path>``; the JSON answer.

        Raises:
            FactoryApiError: the service refused it.
        """
        reader, writer = await self._connect()
        try:
            data = json.dumps(body).encode()
            headers = self._headers("application/json", {"Content-Length": str(len(data))})
            writer.write(_head("POST", f"{self._base}/api/v1/factory/{path}", headers) + data)
            await writer.drain()
            response = await asyncio.wait_for(_read_head(reader), self._timeout)
            text = b"".join([line async for line in _body_lines(reader, response, self._timeout, split=False)])
            document: dict[str, Any] = json.loads(text or b"{}")
            if response.status != 200:
                raise FactoryApiError(response.status, document)
            return document
        finally:
            writer.close()
            with contextlib.suppress(OSError, ssl.SSLError):
                await writer.wait_closed()

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.wait_for(
            asyncio.open_connection(self._host, self._port, ssl=self._ssl,
                                    server_hostname=self._host if self._ssl else None, limit=_LIMIT),
            self._timeout)


def _head(method: str, path: str, headers: dict[str, str]) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", *(f"{k}: {v}" for k, v in headers.items()), "", ""]
    return "\r\n".join(lines).encode("latin-1")


async def _send_chunked(writer: asyncio.StreamWriter, documents: Sequence[dict[str, Any]]) -> None:
    for start in range(0, len(documents), _LINES_PER_WRITE):
        data = b"".join(json.dumps(d, separators=(",", ":")).encode() + b"\n"
                        for d in documents[start:start + _LINES_PER_WRITE])
        writer.write(b"%x\r\n%s\r\n" % (len(data), data))
        await writer.drain()
    writer.write(b"0\r\n\r\n")
    await writer.drain()


async def _read_head(reader: asyncio.StreamReader) -> _Response:
    status_line = (await reader.readline()).decode("latin-1")
    parts = status_line.split(" ", 2)
    if len(parts) < 2 or not parts[1].isdigit():
        raise OSError(f"not an HTTP response: {status_line[:80]!r}")
    headers: dict[str, str] = {}
    while True:
        line = (await reader.readline()).decode("latin-1").rstrip("\r\n")
        if not line:
            break
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return _Response(int(parts[1]), headers)


async def _body_lines(reader: asyncio.StreamReader, response: _Response, timeout: float, *,
                      split: bool = True) -> AsyncIterator[bytes]:
    """The body's lines (or, with ``split=False``, its pieces), undoing chunked encoding."""
    buffer = b""
    async for piece in _body_pieces(reader, response, timeout):
        if not split:
            yield piece
            continue
        buffer += piece
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            if line.strip():
                yield line
    if split and buffer.strip():
        yield buffer


async def _body_pieces(reader: asyncio.StreamReader, response: _Response, timeout: float) -> AsyncIterator[bytes]:
    if response.headers.get("transfer-encoding", "").lower() == "chunked":
        while True:
            size_line = await asyncio.wait_for(reader.readline(), timeout)
            size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                while (await reader.readline()).strip():  # trailers
                    pass
                return
            data = await asyncio.wait_for(reader.readexactly(size + 2), timeout)
            yield data[:-2]
    elif "content-length" in response.headers:
        yield await asyncio.wait_for(reader.readexactly(int(response.headers["content-length"])), timeout)
    else:
        yield await asyncio.wait_for(reader.read(), timeout)


async def _problem(reader: asyncio.StreamReader, response: _Response) -> dict[str, Any]:
    body = b"".join([p async for p in _body_pieces(reader, response, 30.0)])
    try:
        document = json.loads(body)
        return document if isinstance(document, dict) else {"detail": body.decode(errors="replace")[:500]}
    except ValueError:
        return {"detail": body.decode(errors="replace")[:500]}
