"""End-to-end DM 2.0 enrollments per second over HTTPS with PostgreSQL, against the crypto ceiling.

``dmboot serve`` runs as a subprocess (``--workers`` uvicorn workers, TLS, a scratch
PostgreSQL database, the embedded keystore). Before anything is timed, the bench
creates one enrollment profile (token attestation, inline delivery), registers
devices with one-time tokens (bulk insert: only the token hashes are stored, as the
service stores them), generates one P-256 key and CSR per device, and serialises
every HTTP/1.1 request. A minimal asyncio client then keeps ``--concurrency``
keep-alive TLS connections busy (httpx would measure itself: BENCHMARKING.md).

Rows (medians of ``--runs`` interleaved runs):

- ``ceiling``: bare cryptography loop (bench/common.py), one core, in this process;
- ``enroll (pkg 1->2)``: package 1 in, package 2 out - token claimed, CSR checked,
  certificate issued and recorded, audit event, MO instances built and validated
  against their DDFs, session reference signed;
- ``bootstrap (pkg 1->2, 3)``: the same, then package 3 with BootstrapComplete -> 204.

``per_s`` counts devices (a bootstrap is two requests). ``throughput_ratio`` =
per_s / ceiling per_s; ``cpu_ratio`` = devices per CPU-second of the server processes
plus the PostgreSQL backends of the scratch database / ceiling certificates per
CPU-second. ``client_cpu_us`` shows the load generator did not set the number.

Run from the repo root: ``.venv/bin/python -m bench.enroll [--database-url postgresql://127.0.0.1:5432/test]``.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import secrets
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from sqlmodel import select

from bench.common import (
    CeilingBench,
    CpuMeter,
    context_facts,
    make_device_csrs,
    median,
    postgres_backend_pids,
    print_context,
    report,
    scratch_postgres,
)
from bootstrap.auth.principals import hash_token
from bootstrap.dm.mo import DMACC_1_2, TRUST_1_0
from bootstrap.dm.package import (
    BOOTSTRAP_COMPLETE,
    INITIATION_MEDIA_TYPE,
    REQUEST_MEDIA_TYPE,
    RESPONSE_MEDIA_TYPE,
    Alert,
    DeclaredMo,
    Initiation,
    Response,
    Status,
)
from bootstrap.runtime import Runtime
from bootstrap.secrets.embedded import EmbeddedKeystoreWarning
from bootstrap.services.config import ProfileSpec
from bootstrap.settings import Settings
from bootstrap.store.models import DeviceRow, EnrollmentProfileRow, EnrollmentTokenRow, utcnow

PROFILE = "bench"
DMBOOT = str(Path(sys.executable).with_name("dmboot"))


# --------------------------------------------------------------------------------------
# Setup: server, profile, devices and tokens, requests
# --------------------------------------------------------------------------------------


@dataclass
class Server:
    url: str
    host: str
    port: int
    root_pem: str
    process: subprocess.Popen[bytes]
    runtime: Runtime
    database_url: str


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(stack: ExitStack, database_url: str, workers: int) -> Server:
    folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="dmboot-bench-enroll-")))
    port = _free_port()
    url = f"https://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("DMBOOT_")}
    env.update(DMBOOT_DATA_DIR=str(folder / "data"), DMBOOT_DATABASE_URL=database_url, DMBOOT_HOST="127.0.0.1",
               DMBOOT_PORT=str(port), DMBOOT_PUBLIC_URL=url, DMBOOT_SERVER_NAMES="127.0.0.1",
               DMBOOT_WORKERS=str(workers), DMBOOT_LOG_LEVEL="warning")
    subprocess.run([DMBOOT, "init"], env=env, check=True, capture_output=True)
    runtime = Runtime(Settings.load(environ=env))
    stack.callback(runtime.close)
    runtime.config.add_server("dm-bench", "Bench DM server", "https://dm.bench.example/dm", actor="bench")
    runtime.config.add_profile(ProfileSpec(name=PROFILE, dm_servers=("dm-bench",), attestation=("token",),
                                           dmacc={"Perm": [DMACC_1_2]}, delivery="inline"), actor="bench")
    with runtime.database.session() as session:
        root_pem = runtime.authorities.root_row(session).pem
    log = (folder / "serve.log").open("wb")
    stack.callback(log.close)
    process = subprocess.Popen([DMBOOT, "serve"], env=env, stdout=log, stderr=subprocess.STDOUT)
    stack.callback(_stop, process)
    _wait_ready(url, root_pem, process, folder / "serve.log")
    return Server(url, "127.0.0.1", port, root_pem, process, runtime, database_url)


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _wait_ready(url: str, root_pem: str, process: subprocess.Popen[bytes], log: Path) -> None:
    context = ssl.create_default_context(cadata=root_pem)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"dmboot serve exited:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/readyz", context=context, timeout=5) as reply:  # noqa: S310
                if reply.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    raise SystemExit("dmboot serve did not become ready")


def register_devices(runtime: Runtime, dev_ids: Sequence[str]) -> list[str]:
    """Devices of the bench profile, each with a one-time token; one bulk transaction."""
    tokens = ["dmt_" + secrets.token_urlsafe(24) for _ in dev_ids]
    expires = utcnow() + timedelta(days=1)
    with runtime.database.session() as session:
        profile = session.exec(select(EnrollmentProfileRow).where(EnrollmentProfileRow.name == PROFILE)).one()
        session.add_all(DeviceRow(dev_id=d, profile_id=profile.id or 0) for d in dev_ids)
        session.add_all(EnrollmentTokenRow(token_hash=hash_token(t), profile_id=profile.id or 0, dev_id=d,
                                           expires_at=expires, created_by="bench") for d, t in zip(dev_ids, tokens,
                                                                                                   strict=True))
    return tokens


def _dev_id(csr_pem: bytes) -> tuple[str, bytes]:
    csr = x509.load_pem_x509_csr(csr_pem)
    cn = str(csr.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value)
    return cn, csr.public_bytes(Encoding.DER)


def _http(method: str, host: str, path: str, headers: dict[str, str], body: bytes) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", *(f"{k}: {v}" for k, v in headers.items()),
             f"Content-Length: {len(body)}", "", ""]
    return "\r\n".join(lines).encode("latin-1") + body


@dataclass
class Job:
    """One device's pre-serialised package 1, and its DevID for package 3."""

    dev_id: str
    request: bytes


def make_jobs(server: Server, count: int, prefix: str) -> list[Job]:
    csrs = make_device_csrs(count, prefix=prefix)
    pairs = [_dev_id(c) for c in csrs]
    tokens = register_devices(server.runtime, [d for d, _ in pairs])
    mos = (DeclaredMo(DMACC_1_2), DeclaredMo(TRUST_1_0))
    jobs = []
    for (dev_id, der), token in zip(pairs, tokens, strict=True):
        body = Initiation(dev_id=dev_id, mos=mos, csr=der).encode()
        headers = {"Content-Type": INITIATION_MEDIA_TYPE, "Accept": REQUEST_MEDIA_TYPE, "OMADM-DevID": dev_id,
                   "Authorization": f"DMBoot-Token {token}"}
        jobs.append(Job(dev_id, _http("POST", f"{server.host}:{server.port}", "/dm/bootstrap", headers, body)))
    return jobs


_PACKAGE3 = Response((Status(200, (DMACC_1_2,)), Status(200, (TRUST_1_0,))), (Alert(BOOTSTRAP_COMPLETE),)).encode()


def _package3(server: Server, dev_id: str, session: str) -> bytes:
    headers = {"Content-Type": RESPONSE_MEDIA_TYPE, "OMADM-DevID": dev_id, "OMADM-Session": session}
    return _http("POST", f"{server.host}:{server.port}", "/dm/bootstrap", headers, _PACKAGE3)


# --------------------------------------------------------------------------------------
# The client: asyncio, HTTP/1.1 keep-alive over TLS
# --------------------------------------------------------------------------------------


@dataclass
class Outcome:
    done: int = 0
    errors: dict[int, int] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, dict[bytes, bytes], bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, *header_lines = head[:-4].split(b"\r\n")
    status = int(status_line.split(b" ", 2)[1])
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get(b"content-length", b"0"))
    body = await reader.readexactly(length) if length else b""
    return status, headers, body


async def _connection(server: Server, context: ssl.SSLContext, jobs: itertools.islice[Job], full: bool,
                      outcome: Outcome) -> None:
    reader, writer = await asyncio.open_connection(server.host, server.port, ssl=context)
    try:
        for job in jobs:
            started = time.perf_counter()
            writer.write(job.request)
            status, headers, _ = await _read_response(reader)
            if status == 200 and full:
                writer.write(_package3(server, job.dev_id, headers[b"omadm-session"].decode()))
                status, _, _ = await _read_response(reader)
            if status in (200, 204):
                outcome.done += 1
                outcome.latencies.append(time.perf_counter() - started)
            else:
                outcome.errors[status] = outcome.errors.get(status, 0) + 1
    finally:
        writer.close()


async def _drive(server: Server, jobs: list[Job], concurrency: int, full: bool) -> Outcome:
    context = ssl.create_default_context(cadata=server.root_pem)
    shared = iter(jobs)
    outcome = Outcome()
    # One shared iterator: each connection takes the next job when it is free.
    await asyncio.gather(*(_connection(server, context, itertools.islice(shared, None), full, outcome)
                           for _ in range(concurrency)))
    return outcome


@dataclass
class Run:
    count: int
    wall: float
    client_cpu: float
    server_cpu: float
    db_cpu: float
    errors: dict[int, int]
    latencies: list[float]


def run_jobs(server: Server, jobs: list[Job], concurrency: int, full: bool) -> Run:
    server_meter = CpuMeter([server.process.pid])
    db_meter = CpuMeter(lambda: postgres_backend_pids(server.database_url), trees=False)
    server_meter.start()
    db_meter.start()
    wall0, cpu0 = time.perf_counter(), time.process_time()
    outcome = asyncio.run(_drive(server, jobs, concurrency, full))
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    return Run(outcome.done, wall, cpu, server_meter.read(), db_meter.read(), outcome.errors, outcome.latencies)


# --------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------


def _row(name: str, runs: list[Run], ceilings: list[tuple[float, float]]) -> dict[str, Any]:
    rates = [r.count / r.wall for r in runs]
    per_cpu = [r.count / (r.server_cpu + r.db_cpu) for r in runs]
    latencies = sorted(x for r in runs for x in r.latencies)
    count = sum(r.count for r in runs)
    return {
        "row": name,
        "devices": count,
        "per_s": median(rates),
        "throughput_ratio": median(rate / c[0] for rate, c in zip(rates, ceilings, strict=True)),
        "cpu_ratio": median(p / c[1] for p, c in zip(per_cpu, ceilings, strict=True)),
        "server_cpu_us": median(r.server_cpu / r.count * 1e6 for r in runs),
        "db_cpu_us": median(r.db_cpu / r.count * 1e6 for r in runs),
        "client_cpu_us": median(r.client_cpu / r.count * 1e6 for r in runs),
        "client_cores": median(r.client_cpu / r.wall for r in runs),
        "p50_ms": statistics.median(latencies) * 1e3 if latencies else None,
        "p99_ms": latencies[int(len(latencies) * 0.99) - 1] * 1e3 if latencies else None,
        "errors": sum(sum(r.errors.values()) for r in runs),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.enroll", description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default="postgresql://127.0.0.1:5432/test",
                        help="PostgreSQL next to which a scratch database is made and dropped")
    parser.add_argument("--devices", type=int, default=1500, help="devices per run and row (1500)")
    parser.add_argument("--runs", type=int, default=3, help="interleaved runs; medians are reported (3)")
    parser.add_argument("--concurrency", type=int, default=16, help="keep-alive TLS connections (16)")
    parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes (1: one core)")
    parser.add_argument("--seconds", type=float, default=3.0, help="ceiling seconds per run (3)")
    parser.add_argument("--warmup", type=int, default=200, help="untimed enrollments first (200)")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore", EmbeddedKeystoreWarning)  # a bench on a scratch data dir

    with ExitStack() as stack:
        database_url = stack.enter_context(scratch_postgres(args.database_url))
        print_context(context_facts(database_url=database_url, secret_backend="embedded", tls=True,  # noqa: S106
                                    server_workers=args.workers, concurrency=args.concurrency,
                                    devices_per_run=args.devices, runs=args.runs))
        server = start_server(stack, database_url, args.workers)
        print(f"# preparing {args.warmup + 2 * args.runs * args.devices} devices, keys, CSRs and tokens",
              file=sys.stderr)
        warm = make_jobs(server, args.warmup, "IMEI:30")
        batches = {(mode, i): make_jobs(server, args.devices, f"IMEI:{31 + 2 * i + (mode == 'full')}")
                   for i in range(args.runs) for mode in ("enroll", "full")}
        ceiling = CeilingBench("p256")
        run_jobs(server, warm, args.concurrency, full=True)
        ceilings: list[tuple[float, float]] = []
        results: dict[str, list[Run]] = {"enroll": [], "full": []}
        for i in range(args.runs):
            c = ceiling.run(args.seconds)
            ceilings.append((c.certs_per_second, c.certs_per_cpu_second))
            for mode in ("enroll", "full"):
                results[mode].append(run_jobs(server, batches[(mode, i)], args.concurrency, full=mode == "full"))

    rows = [
        {"row": "ceiling (cryptography)", "devices": None, "per_s": median(c[0] for c in ceilings),
         "throughput_ratio": 1.0, "cpu_ratio": 1.0,
         "server_cpu_us": median(1e6 / c[1] for c in ceilings)},
        _row("enroll (pkg 1->2)", results["enroll"], ceilings),
        _row("bootstrap (pkg 1->2, 3)", results["full"], ceilings),
    ]
    report(rows, {
        "bench": "enroll", "database": "postgresql", "server_workers": args.workers,
        "concurrency": args.concurrency, "ceiling_per_s": rows[0]["per_s"],
        "enroll_per_s": rows[1]["per_s"], "enroll_throughput_ratio": rows[1]["throughput_ratio"],
        "enroll_cpu_ratio": rows[1]["cpu_ratio"], "bootstrap_per_s": rows[2]["per_s"],
        "bootstrap_throughput_ratio": rows[2]["throughput_ratio"], "bootstrap_cpu_ratio": rows[2]["cpu_ratio"],
        "client_cores": rows[1]["client_cores"], "errors": rows[1]["errors"] + rows[2]["errors"],
    })
    return 0


if __name__ == "__main__":
    sys.exit(main())
