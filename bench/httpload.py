"""A minimal HTTP/1.1 keep-alive load generator on asyncio, and what it measures.

A client library such as httpx would measure itself: requests here are serialised before
the timed part, each connection writes one and reads the answer (status line,
headers, ``Content-Length`` body), and takes the next job from one shared iterator
when it is free. A job may continue with a second request built from the first
answer's headers (DM 2.0 package 3 after package 2). The same client drives
dm-bootstrap and OpenBao, so their rows compare.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import ssl
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from bench.cpu import CpuMeter, descendants

__all__ = ["Job", "Outcome", "Load", "drive", "http_request", "latency_ms", "rss_mb"]


def http_request(method: str, host: str, path: str, headers: dict[str, str], body: bytes) -> bytes:
    """One serialised HTTP/1.1 request with ``Content-Length``."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", *(f"{k}: {v}" for k, v in headers.items()),
             f"Content-Length: {len(body)}", "", ""]
    return "\r\n".join(lines).encode("latin-1") + body


@dataclass
class Job:
    """One unit of work: a request, and optionally a follow-up built from the answer's headers."""

    request: bytes
    follow: Callable[[dict[bytes, bytes]], bytes] | None = None


@dataclass
class Outcome:
    """Completed jobs, failures by status, per-job latencies (s), and the first failure's body."""

    done: int = 0
    errors: dict[int, int] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    first_error: bytes = b""

    def fail(self, status: int, body: bytes) -> None:
        self.errors[status] = self.errors.get(status, 0) + 1
        self.first_error = self.first_error or body[:500]


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, dict[bytes, bytes], bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, *header_lines = head[:-4].split(b"\r\n")
    parts = status_line.split(b" ", 2)
    if len(parts) < 2:
        raise ConnectionError(f"not an HTTP response: {head[:200]!r}")
    status = int(parts[1])
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    if headers.get(b"transfer-encoding", b"").lower() == b"chunked":  # OpenBao answers chunked
        return status, headers, await _read_chunked(reader)
    length = int(headers.get(b"content-length", b"0"))
    body = await reader.readexactly(length) if length else b""
    return status, headers, body


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    chunks = []
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
        if size == 0:
            while await reader.readuntil(b"\r\n") != b"\r\n":  # trailers, then the empty line
                pass
            return b"".join(chunks)
        chunks.append(await reader.readexactly(size))
        await reader.readexactly(2)


async def _connection(host: str, port: int, context: ssl.SSLContext | None, jobs: Iterator[Job],
                      outcome: Outcome) -> None:
    reader, writer = await asyncio.open_connection(host, port, ssl=context)
    try:
        for job in jobs:
            started = time.perf_counter()
            writer.write(job.request)
            status, headers, body = await _read_response(reader)
            if status < 300 and job.follow is not None:
                writer.write(job.follow(headers))
                status, _, body = await _read_response(reader)
            if status < 300:
                outcome.done += 1
                outcome.latencies.append(time.perf_counter() - started)
            else:
                outcome.fail(status, body)
    finally:
        writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await writer.wait_closed()


async def _drive(host: str, port: int, context: ssl.SSLContext | None, jobs: Sequence[Job],
                 concurrency: int) -> Outcome:
    shared = iter(jobs)
    outcome = Outcome()
    await asyncio.gather(*(_connection(host, port, context, itertools.islice(shared, None), outcome)
                           for _ in range(concurrency)))
    return outcome


@dataclass
class Load:
    """One timed window: the outcome, wall and client CPU seconds, and the metered processes' CPU."""

    outcome: Outcome
    wall: float
    client_cpu: float
    server_cpu: float
    db_cpu: float


def drive(host: str, port: int, context: ssl.SSLContext | None, jobs: Sequence[Job], concurrency: int,
          server: CpuMeter, database: CpuMeter | None = None) -> Load:
    """Run ``jobs`` over ``concurrency`` keep-alive connections; meter the client and ``server``/``database``."""
    server.start()
    if database is not None:
        database.start()
    wall0, cpu0 = time.perf_counter(), time.process_time()
    outcome = asyncio.run(_drive(host, port, context, jobs, concurrency))
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    return Load(outcome, wall, cpu, server.read(), database.read() if database is not None else 0.0)


def latency_ms(latencies: Sequence[float]) -> tuple[float | None, float | None]:
    """(p50, p99) in milliseconds."""
    if not latencies:
        return None, None
    ordered = sorted(latencies)
    return statistics.median(ordered) * 1e3, ordered[max(0, int(len(ordered) * 0.99) - 1)] * 1e3


def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def rss_mb(pid: int, workers: int) -> float:
    """Largest resident set (MB) of the serving processes: ``pid`` itself with one worker,
    else its Python descendants (uvicorn's workers)."""
    pids = [pid] if workers <= 1 else [p for p in descendants(pid) if _is_python(p)] or [pid]
    sizes = []
    for p in pids:
        with contextlib.suppress(OSError):
            sizes.append(_rss_kib(p))
    return max(sizes, default=0) / 1024


def _is_python(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            argv = handle.read().split(b"\0")
    except OSError:
        return False
    # uvicorn's workers are multiprocessing spawns; skip its resource tracker.
    return b"python" in argv[0] and not any(b"resource_tracker" in a for a in argv)
