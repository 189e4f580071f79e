"""Enrollments per second over HTTPS with PostgreSQL, by channel, workers and concurrency, beside OpenBao.

``dmboot serve`` runs as a subprocess (uvicorn workers, TLS, a scratch PostgreSQL
database, the embedded keystore). Before anything is timed, the bench creates one
enrollment profile (token attestation, inline delivery), registers devices with
one-time tokens (bulk insert of the token hashes, as the service stores them),
generates one P-256 key and CSR per device and serialises every request. The raw
asyncio keep-alive client (bench/httpload.py) drives it; it talks HTTP only, so it
runs against whatever enrollment code the server has.

Rows, for each ``--workers`` and ``--concurrency`` (medians of ``--runs`` runs):

- ``dm2``: DM 2.0 package 1 in, package 2 out (``POST /dm/bootstrap``, DMBoot-Token);
- ``json``: ``POST /api/v1/enroll`` with the token in the body;
- ``est``: EST ``simpleenroll`` (RFC 7030) with HTTP Basic (DevID, token);
- ``dm2+3`` (``--channels`` ``dm2-full``): package 1->2, then package 3 -> 204;
- ``tpm`` (``--channels ...,tpm``): TPM 2.0 attestation, round 1 + swtpm + round 2, one
  worker, one at a time (bench/tpm_enroll.py; the swtpm device is the wall-clock bound);
- ``openbao``: ``pki/sign/<role>`` on ``bao server -dev -dev-tls`` (bench/openbao_pki.py);
- ``growth @N`` (``--rows``): ``dm2`` at the middle concurrency, one worker, after N
  certificate rows and N audit rows were bulk-loaded (bench/growth.py).

``per_s`` counts enrollments. ``cpu_ratio`` = enrollments per CPU-second of the
server processes plus the scratch database's PostgreSQL backends (OpenBao: of the
bao process) / ceiling certificates per CPU-second; ``throughput_ratio`` = per_s /
ceiling per_s. ``rss_mb``: the largest worker's resident set at the end of the row.
``client_cores`` shows the load generator did not set the number. ``--py-spy DIR``
records the server (``py-spy record --gil``) during the dm2 row at the middle
concurrency, one raw file per worker count (read with ``python -m bench.profile``).

Run from the repo root: ``.venv/bin/python -m bench.enroll`` (see bench/README.md).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import secrets
import signal
import ssl
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from sqlmodel import select

from bench.ceiling import CeilingBench
from bench.common import context_facts, make_device_csrs, median, print_context, report, scratch_postgres
from bench.cpu import CpuMeter, postgres_backend_pids
from bench.httpload import Job, Load, drive, http_request, latency_ms, rss_mb
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
from tests.support.servers import free_port, wait_ready

PROFILE = "bench"
DMBOOT = str(Path(sys.executable).with_name("dmboot"))
CHANNELS = ("dm2", "json", "est", "dm2-full", "tpm")

# -- the server ----------------------------------------------------------------------------


@dataclass
class Server:
    host: str
    port: int
    root_pem: str
    process: subprocess.Popen[bytes]
    runtime: Runtime
    database_url: str
    workers: int

    @property
    def authority(self) -> str:
        return f"{self.host}:{self.port}"


@contextmanager
def serve(database_url: str, workers: int, before_start: Callable[[Runtime], object] = lambda r: None,
          ) -> Iterator[Server]:
    """``dmboot init`` a scratch data dir on ``database_url``, add the bench profile, serve it."""
    with ExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="dmboot-bench-enroll-")))
        port = free_port()
        url = f"https://127.0.0.1:{port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("DMBOOT_")}
        env.update(DMBOOT_DATA_DIR=str(folder / "data"), DMBOOT_DATABASE_URL=database_url,
                   DMBOOT_HOST="127.0.0.1", DMBOOT_PORT=str(port), DMBOOT_PUBLIC_URL=url,
                   DMBOOT_SERVER_NAMES="127.0.0.1", DMBOOT_WORKERS=str(workers), DMBOOT_LOG_LEVEL="warning")
        subprocess.run([DMBOOT, "init"], env=env, check=True, capture_output=True)
        runtime = Runtime(Settings.load(environ=env))
        stack.callback(runtime.close)
        runtime.config.add_server("dm-bench", "Bench DM server", "https://dm.bench.example/dm", actor="bench")
        runtime.config.add_profile(ProfileSpec(name=PROFILE, dm_servers=("dm-bench",), attestation=("token",),
                                               dmacc={"Perm": [DMACC_1_2]}, delivery="inline"), actor="bench")
        with runtime.database.session() as session:
            root_pem = runtime.authorities.root_row(session).pem
        before_start(runtime)
        log_path = folder / "serve.log"
        log = stack.enter_context(log_path.open("wb"))
        process = subprocess.Popen([DMBOOT, "serve"], env=env, stdout=log, stderr=subprocess.STDOUT)
        stack.callback(_stop, process)
        wait_ready(f"{url}/readyz", ssl.create_default_context(cadata=root_pem), process, log_path)
        yield Server("127.0.0.1", port, root_pem, process, runtime, database_url, workers)


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


# -- devices and requests -----------------------------------------------------------------


def register_devices(runtime: Runtime, dev_ids: Sequence[str]) -> list[str]:
    """Devices of the bench profile, each with a one-time token; one bulk transaction."""
    tokens = ["dmt_" + secrets.token_urlsafe(24) for _ in dev_ids]
    expires = utcnow() + timedelta(days=1)
    with runtime.database.session() as session:
        profile = session.exec(select(EnrollmentProfileRow).where(EnrollmentProfileRow.name == PROFILE)).one()
        session.add_all(DeviceRow(dev_id=d, profile_id=profile.id or 0) for d in dev_ids)
        session.add_all(EnrollmentTokenRow(token_hash=hash_token(t), profile_id=profile.id or 0, dev_id=d,
                                           expires_at=expires, created_by="bench")
                        for d, t in zip(dev_ids, tokens, strict=True))
    # The tables' statistics, as autovacuum would have them within a minute of a bulk load: without,
    # the planner takes the freshly filled tables for empty ones (sequential scans per batch).
    with runtime.database.engine.connect() as connection:
        connection.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql(
            "ANALYZE device, enrollment_token, certificate, audit_event")
    return tokens


_PACKAGE3 = Response((Status(200, (DMACC_1_2,)), Status(200, (TRUST_1_0,))), (Alert(BOOTSTRAP_COMPLETE),)).encode()


def _request(server: Server, channel: str, dev_id: str, token: str, csr_pem: bytes) -> Job:
    der = x509.load_pem_x509_csr(csr_pem).public_bytes(Encoding.DER)
    if channel in ("dm2", "dm2-full"):
        body = Initiation(dev_id=dev_id, mos=(DeclaredMo(DMACC_1_2), DeclaredMo(TRUST_1_0)), csr=der).encode()
        headers = {"Content-Type": INITIATION_MEDIA_TYPE, "Accept": REQUEST_MEDIA_TYPE, "OMADM-DevID": dev_id,
                   "Authorization": f"DMBoot-Token {token}"}
        follow = None
        if channel == "dm2-full":
            def follow(answer: dict[bytes, bytes]) -> bytes:
                third = {"Content-Type": RESPONSE_MEDIA_TYPE, "OMADM-DevID": dev_id,
                         "OMADM-Session": answer[b"omadm-session"].decode()}
                return http_request("POST", server.authority, "/dm/bootstrap", third, _PACKAGE3)
        return Job(http_request("POST", server.authority, "/dm/bootstrap", headers, body), follow)
    if channel == "json":
        body = json.dumps({"dev_id": dev_id, "csr": csr_pem.decode(), "token": token}).encode()
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        return Job(http_request("POST", server.authority, "/api/v1/enroll", headers, body))
    if channel == "est":
        basic = base64.b64encode(f"{dev_id}:{token}".encode()).decode()
        headers = {"Content-Type": "application/pkcs10", "Authorization": f"Basic {basic}"}
        return Job(http_request("POST", server.authority, "/.well-known/est/simpleenroll", headers,
                                base64.b64encode(der)))
    raise SystemExit(f"unknown channel {channel!r}: use {', '.join(CHANNELS)}")


_batches = iter(range(1000, 10000))


def make_jobs(server: Server, channel: str, count: int) -> list[Job]:
    """``count`` new devices with tokens, keys and CSRs; their pre-serialised requests."""
    csrs = make_device_csrs(count, prefix=f"IMEI:{next(_batches)}")
    dev_ids = [str(x509.load_pem_x509_csr(c).subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value)
               for c in csrs]
    tokens = register_devices(server.runtime, dev_ids)
    return [_request(server, channel, d, t, c) for d, t, c in zip(dev_ids, tokens, csrs, strict=True)]


# -- measuring ------------------------------------------------------------------------------


@dataclass
class Measured:
    load: Load
    rss_mb: float | None
    ceiling: tuple[float, float]  # ceiling certs/s, certs per CPU-second, from the same run


def run_server_row(server: Server, jobs: list[Job], concurrency: int, ceiling: tuple[float, float]) -> Measured:
    context = ssl.create_default_context(cadata=server.root_pem)
    database = CpuMeter(lambda: postgres_backend_pids(server.database_url), trees=False)
    load = drive(server.host, server.port, context, jobs, concurrency, CpuMeter([server.process.pid]), database)
    if load.outcome.errors:
        print(f"# errors {load.outcome.errors}: {load.outcome.first_error[:300]!r}", file=sys.stderr)
    return Measured(load, rss_mb(server.process.pid, server.workers), ceiling)


def row(name: str, workers: int | None, concurrency: int, runs: list[Measured]) -> dict[str, Any]:
    loads = [m.load for m in runs]
    rates = [x.outcome.done / x.wall for x in loads]
    per_cpu = [x.outcome.done / (x.server_cpu + x.db_cpu) if x.server_cpu + x.db_cpu else 0.0 for x in loads]
    p50, p99 = latency_ms([t for x in loads for t in x.outcome.latencies])
    done = max(1, sum(x.outcome.done for x in loads))
    return {
        "row": name, "workers": workers, "c": concurrency, "n": sum(x.outcome.done for x in loads),
        "per_s": median(rates),
        "throughput_ratio": median(r / m.ceiling[0] for r, m in zip(rates, runs, strict=True)),
        "cpu_ratio": median(p / m.ceiling[1] for p, m in zip(per_cpu, runs, strict=True)),
        "server_cpu_us": sum(x.server_cpu for x in loads) / done * 1e6,
        "db_cpu_us": sum(x.db_cpu for x in loads) / done * 1e6,
        "client_cores": median(x.client_cpu / x.wall for x in loads),
        "p50_ms": p50, "p99_ms": p99,
        "rss_mb": max((m.rss_mb for m in runs if m.rss_mb is not None), default=None),
        "errors": sum(sum(x.outcome.errors.values()) for x in loads),
    }


@contextmanager
def py_spy(target: Path | None, pid: int) -> Iterator[None]:
    """``py-spy record --gil`` on ``pid`` and its workers while the block runs (nothing without a target)."""
    if target is None:
        yield
        return
    binary = Path(sys.executable).with_name("py-spy")
    process = subprocess.Popen([str(binary), "record", "--gil", "--subprocesses", "--nonblocking", "--rate", "200",
                                "--format", "raw", "-o", str(target), "--pid", str(pid)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)  # let it attach
    try:
        yield
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=60)


# -- main -------------------------------------------------------------------------------------


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def bench_server(args: argparse.Namespace, workers: int, channels: Sequence[str], ceiling: CeilingBench,
                 ) -> list[dict[str, Any]]:
    """Every (concurrency, channel) row of one server with ``workers`` workers."""
    concurrencies = _ints(args.concurrency)
    middle = concurrencies[len(concurrencies) // 2]
    results: dict[tuple[int, str], list[Measured]] = {}
    with ExitStack() as stack:
        database_url = stack.enter_context(scratch_postgres(args.database_url))
        server = stack.enter_context(serve(database_url, workers))
        print(f"# {workers} worker(s): preparing devices, keys, CSRs and tokens", file=sys.stderr)
        plan = {(i, c, ch): make_jobs(server, ch, args.devices if c > 1 else max(50, args.devices // 4))
                for i in range(args.runs) for c in concurrencies for ch in channels}
        run_server_row(server, make_jobs(server, "dm2", args.warmup), max(concurrencies), (1.0, 1.0))
        for i in range(args.runs):
            c0 = ceiling.run(args.seconds)
            reference = (c0.certs_per_second, c0.certs_per_cpu_second)
            for c in concurrencies:
                for ch in channels:
                    spy = args.py_spy / f"server-w{workers}.raw" if args.py_spy and (c, ch, i) == (middle, "dm2", 0) \
                        else None
                    with py_spy(spy, server.process.pid):
                        measured = run_server_row(server, plan[(i, c, ch)], c, reference)
                    results.setdefault((c, ch), []).append(measured)
    return [row(ch, workers, c, results[(c, ch)]) for c in concurrencies for ch in channels]


def bench_openbao(args: argparse.Namespace, ceiling: CeilingBench) -> list[dict[str, Any]]:
    """The OpenBao rows: ``pki/sign/device`` at each concurrency."""
    from bench.openbao_pki import openbao_pki, sign_jobs

    concurrencies = _ints(args.concurrency)
    results: dict[int, list[Measured]] = {}
    with openbao_pki() as bao:
        plan = {(i, c): sign_jobs(bao, make_device_csrs(args.devices, prefix=f"IMEI:{next(_batches)}"))
                for i in range(args.runs) for c in concurrencies}
        warm = sign_jobs(bao, make_device_csrs(args.warmup, prefix=f"IMEI:{next(_batches)}"))
        drive(bao.host, bao.port, bao.context, warm, max(concurrencies), CpuMeter([bao.pid]))
        for i in range(args.runs):
            c0 = ceiling.run(args.seconds)
            for c in concurrencies:
                load = drive(bao.host, bao.port, bao.context, plan[(i, c)], c, CpuMeter([bao.pid]))
                if load.outcome.errors:
                    print(f"# openbao errors {load.outcome.errors}: {load.outcome.first_error[:300]!r}",
                          file=sys.stderr)
                results.setdefault(c, []).append(Measured(load, rss_mb(bao.pid, 1),
                                                          (c0.certs_per_second, c0.certs_per_cpu_second)))
    return [row("openbao pki/sign", None, c, results[c]) for c in concurrencies]


def bench_growth(args: argparse.Namespace, ceiling: CeilingBench) -> list[dict[str, Any]]:
    """``dm2`` on one worker after N certificate and audit rows, for each N in ``--rows``."""
    from bench.growth import fill

    concurrency = _ints(args.concurrency)[len(_ints(args.concurrency)) // 2]
    rows = []
    for count in _ints(args.rows):
        with ExitStack() as stack:
            database_url = stack.enter_context(scratch_postgres(args.database_url))

            def load(runtime: Runtime, count: int = count) -> None:
                seconds = fill(runtime.database.engine, count)
                print(f"# loaded {count} certificate and audit rows in {seconds:.0f} s", file=sys.stderr)

            server = stack.enter_context(serve(database_url, 1, before_start=load))
            plan = [make_jobs(server, "dm2", args.devices) for _ in range(args.runs)]
            run_server_row(server, make_jobs(server, "dm2", args.warmup), concurrency, (1.0, 1.0))
            runs = []
            for jobs in plan:
                c0 = ceiling.run(args.seconds)
                runs.append(run_server_row(server, jobs, concurrency, (c0.certs_per_second, c0.certs_per_cpu_second)))
            rows.append(row(f"growth dm2 @{count:,} rows", 1, concurrency, runs))
    if rows:
        base = rows[0]["server_cpu_us"] + rows[0]["db_cpu_us"]
        for r in rows:
            r["growth_cost_x"] = (r["server_cpu_us"] + r["db_cpu_us"]) / base
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.enroll", description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default="postgresql://127.0.0.1:5432/test",
                        help="PostgreSQL next to which scratch databases are made and dropped")
    parser.add_argument("--workers", default="1,2", help="uvicorn worker counts, comma-separated (1,2)")
    parser.add_argument("--concurrency", default="1,16,64", help="keep-alive TLS connections (1,16,64)")
    parser.add_argument("--channels", default="dm2,json,est", help=f"of {','.join(CHANNELS)} (dm2,json,est)")
    parser.add_argument("--devices", type=int, default=600, help="enrollments per row and run; a quarter at c=1")
    parser.add_argument("--runs", type=int, default=1, help="runs; medians are reported (1)")
    parser.add_argument("--seconds", type=float, default=2.0, help="ceiling seconds per run (2)")
    parser.add_argument("--warmup", type=int, default=100, help="untimed enrollments per server (100)")
    parser.add_argument("--openbao", action=argparse.BooleanOptionalAction, default=True,
                        help="the OpenBao pki/sign rows (on)")
    parser.add_argument("--rows", default="", help="growth rows: certificate+audit rows preloaded, e.g. 10000,1000000")
    parser.add_argument("--py-spy", type=Path, default=None, help="a directory for py-spy raw profiles of the server")
    args = parser.parse_args(argv)
    channels = [c.strip() for c in args.channels.split(",") if c.strip()]
    warnings.simplefilter("ignore", EmbeddedKeystoreWarning)  # a bench on a scratch data dir
    if args.py_spy:
        args.py_spy.mkdir(parents=True, exist_ok=True)
    print_context(context_facts(database_url=args.database_url, secret_backend="embedded", tls=True,  # noqa: S106
                                workers=args.workers, concurrency=args.concurrency, devices_per_row=args.devices,
                                runs=args.runs))
    ceiling = CeilingBench("p256")
    c0 = ceiling.run(args.seconds)
    rows: list[dict[str, Any]] = [{"row": "ceiling (cryptography, 1 core)", "workers": None, "c": None,
                                   "n": None, "per_s": c0.certs_per_second,
                                   "throughput_ratio": 1.0, "cpu_ratio": 1.0,
                                   "server_cpu_us": 1e6 / c0.certs_per_cpu_second}]
    for workers in _ints(args.workers):
        rows += bench_server(args, workers, [c for c in channels if c != "tpm"], ceiling)
    if "tpm" in channels:
        from bench.tpm_enroll import bench_tpm
        rows += bench_tpm(args, ceiling)
    if args.openbao:
        rows += bench_openbao(args, ceiling)
    rows += bench_growth(args, ceiling)
    report(rows, _summary(rows))
    return 0


def _summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    def key(r: dict[str, Any]) -> str:
        name = str(r["row"]).split(" ")[0] if not str(r["row"]).startswith("growth") else str(r["row"])
        return f"{name}/w{r.get('workers') or 0}/c{r.get('c') or 0}".replace(" ", "_")

    summary: dict[str, Any] = {"bench": "enroll", "database": "postgresql", "ceiling_per_s": rows[0]["per_s"]}
    for r in rows[1:]:
        summary[key(r)] = {k: r[k] for k in ("per_s", "cpu_ratio", "p99_ms", "errors") if r.get(k) is not None}
        if "growth_cost_x" in r:
            summary[key(r)]["growth_cost_x"] = r["growth_cost_x"]
    return summary


if __name__ == "__main__":
    sys.exit(main())
