"""Revocation and lookups at fleet scale: 1,000,000 issued and 100,000 revoked certificates on PostgreSQL.

Two scratch PostgreSQL databases are bulk-loaded (one INSERT ... SELECT over
generate_series each; ``--rows`` issued, every tenth revoked, so ``--rows`` / 10 revoked):
the baseline with ``--rows`` / 100 and the full size. The same steps run on both, in
``--rounds`` interleaved rounds (baseline, full, baseline, ...), and each row reports the
median cost at both sizes and the ratio (1.0 = flat):

- ``issue (store path)``: ``IssuanceService.issue_from_csr`` - what every enrollment does
  in the database (parse, sign, insert the certificate, audit); in-process;
- ``ocsp nonce (live)``: ``OcspResponder.respond`` with a nonce for random bulk serials
  (status read + signature);
- ``ocsp no nonce, first``: the first nonce-less request per serial (status read, table
  read, signature, stored for every replica);
- ``ocsp no nonce, cached``: ``respond_cached`` - the pre-signed response from memory;
- ``cert list page (keyset)``: 100 certificates after a cursor in the middle of the table
  (``--after``); ``(offset)`` the same page by OFFSET, for contrast;
- ``revoke one``: ``RevocationService.revoke_certificate`` of a real certificate, with
  ``--rows`` / 10 already revoked (a row, an audit event, OCSP rows deleted);
- ``build full CRL``: read the CA's revoked rows, sign and DER-encode the complete CRL
  (what the background publisher does for it); ``build partition CRL``: the same for one
  partition (``--partitions``, 10 by default: 10,000 entries each at full size);
- ``OCSP GET over HTTPS`` vs ``/healthz``: ``dmboot serve`` (one worker, TLS) on the
  full-size database, ``wrk`` (Debian) with ``--connections``, the same pre-signed
  request each time; reported as responses/s and the ratio to ``/healthz`` on the same
  worker in the same run (interleaved runs, medians).

Bulk rows carry a real certificate's PEM (the same one), unique serials and fingerprints.

Run from the repo root (PostgreSQL at 127.0.0.1:5432, database test; about 10 minutes at 1M rows)::

    .venv/bin/python -m bench.scale
    .venv/bin/python -m bench.scale --rows 100000 --http-seconds 3
"""

from __future__ import annotations

import argparse
import base64
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp
from sqlalchemy import text

from bench.common import context_facts, make_device_csrs, print_context, report, scratch_postgres
from bench.enroll import DMBOOT, _stop, _wait_ready
from bootstrap.runtime import Runtime
from bootstrap.services.crl_publisher import _revoked
from bootstrap.services.issuance import Requester
from bootstrap.settings import Settings
from pki.ocsp import issuer_hashes
from pki.revocation import encode_crl
from tests.support.servers import free_port

REQUESTER = Requester("bench:scale")
CERT_ID_HASH = hashes.SHA1()  # noqa: S303 - the CertID hash openssl and RFC 5019 clients use

_BULK_CERTIFICATES = text("""
INSERT INTO certificate (serial_hex, authority_id, profile, subject, common_name, sans, device_id, key_type,
                         not_before, not_after, status, revoked_at, revocation_reason, fingerprint, pem,
                         requested_by, created_at)
SELECT '4' || lpad(to_hex(g), 39, '0'), :authority, 'device', 'CN=IMEI:' || g, 'IMEI:' || g, '[]', 'IMEI:' || g,
       'p256', now() - interval '1 day', now() + interval '364 days',
       CASE WHEN g % 10 = 0 THEN 'revoked' ELSE 'valid' END,
       CASE WHEN g % 10 = 0 THEN now() - interval '1 day' END,
       CASE WHEN g % 10 = 0 THEN 'keyCompromise' END,
       'sha256:' || lpad(to_hex(g), 64, '0'), :pem, 'bench:bulk', now() - interval '1 day'
FROM generate_series(1, :rows) AS g
""")
_BULK_REVOKED = text("""
INSERT INTO revoked_certificate (authority_id, serial_hex, scope, revoked_at, reason, not_after)
SELECT authority_id, serial_hex, :ca || '-p' || ((id / 10) % :partitions), revoked_at, revocation_reason, not_after
FROM certificate WHERE requested_by = 'bench:bulk' AND status = 'revoked' ORDER BY id
""")


@dataclass
class Size:
    """One database: its runtime, what was loaded, and the figures measured on it."""

    rows: int
    runtime: Runtime
    env: dict[str, str]
    load_seconds: float
    figures: dict[str, float]
    rounds: dict[str, list[float]] = field(default_factory=dict)


@contextmanager
def loaded(database_url: str, rows: int, partitions: int) -> Iterator[Size]:
    """A scratch database with ``rows`` bulk certificates (every tenth revoked) and its runtime."""
    with ExitStack() as stack:
        url = stack.enter_context(scratch_postgres(database_url))
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="dmboot-bench-scale-")))
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("DMBOOT_")}
        env.update(DMBOOT_DATA_DIR=str(folder / "data"), DMBOOT_DATABASE_URL=url, DMBOOT_HOST="127.0.0.1",
                   DMBOOT_PORT=str(port), DMBOOT_PUBLIC_URL=f"https://127.0.0.1:{port}",
                   DMBOOT_SERVER_NAMES="127.0.0.1", DMBOOT_WORKERS="1", DMBOOT_LOG_LEVEL="warning",
                   DMBOOT_CRL_PARTITIONS=str(partitions), DMBOOT_CRL_PUBLISH_SECONDS="0")
        subprocess.run([DMBOOT, "init"], env=env, check=True, capture_output=True)
        runtime = Runtime(Settings.load(environ=env))
        stack.callback(runtime.close)
        with runtime.database.session() as session:
            authority = runtime.authorities.active_row(session)
        pem = runtime.issuance.issue_from_csr(make_device_csrs(1)[0], "device", REQUESTER).pem
        started = time.perf_counter()
        with runtime.database.engine.begin() as connection:
            connection.execute(_BULK_CERTIFICATES, {"authority": authority.id, "pem": pem, "rows": rows})
            connection.execute(_BULK_REVOKED, {"ca": authority.name, "partitions": partitions})
        with runtime.database.engine.connect() as connection:
            connection.execution_options(isolation_level="AUTOCOMMIT").execute(text("ANALYZE"))
        yield Size(rows, runtime, env, time.perf_counter() - started, {})


def _median_us(step: Callable[[int], object], count: int) -> float:
    """Median microseconds of ``count`` calls of ``step(i)`` after a short warm-up."""
    for i in range(min(20, count)):
        step(-1 - i)
    times = []
    for i in range(count):
        started = time.perf_counter()
        step(i)
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1e6


def _ocsp_request(issuer: x509.Certificate, serial: int, nonce: bytes | None = None) -> bytes:
    name_hash, key_hash = issuer_hashes(issuer, CERT_ID_HASH)
    builder = ocsp.OCSPRequestBuilder().add_certificate_by_hash(name_hash, key_hash, serial, CERT_ID_HASH)
    if nonce is not None:
        builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
    return builder.build().public_bytes(Encoding.DER)


def measure_size(size: Size, args: argparse.Namespace, round_: int) -> None:
    """One round of every in-process step on ``size``; figures keep every round's median."""
    runtime, n = size.runtime, args.ops
    with runtime.database.session() as session:
        row = runtime.authorities.active_row(session)
        ca = runtime.authorities.authority(session, row)
    issuer = ca.certificate
    rng = random.Random(7 + round_)
    serials = [int("4" + format(rng.randrange(1, size.rows + 1), "x").rjust(39, "0"), 16) for _ in range(4 * n)]
    csrs = make_device_csrs(n + 20, prefix=f"IMEI:7{round_}")
    issued: list[str] = []
    results: dict[str, float] = {}
    results["issue (store path)"] = _median_us(
        lambda i: issued.append(runtime.issuance.issue_from_csr(csrs[i], "device", REQUESTER).serial_hex), n)
    results["ocsp nonce (live)"] = _median_us(
        lambda i: runtime.ocsp.respond(_ocsp_request(issuer, serials[i], os.urandom(16))), n)
    plain = [_ocsp_request(issuer, s) for s in serials[n:3 * n]]
    results["ocsp no nonce, first"] = _median_us(lambda i: runtime.ocsp.respond(plain[i]), n)
    results["ocsp no nonce, cached"] = _median_us(lambda i: runtime.ocsp.respond_cached(plain[i % n]), n)
    with runtime.database.engine.connect() as connection:
        middle = int(connection.execute(text("SELECT max(id) / 2 FROM certificate")).scalar_one())
    results["cert list page (keyset)"] = _median_us(
        lambda i: runtime.issuance.list(limit=100, after=middle - 1000 * round_ - i), 30)
    results["cert list page (offset)"] = _median_us(
        lambda i: runtime.issuance.list(limit=100, offset=size.rows // 2 + i), 5)
    results["revoke one"] = _median_us(
        lambda i: runtime.revocation.revoke_certificate(issued[i], "superseded", REQUESTER) if i >= 0 else None,
        min(n, len(issued)))
    now = datetime.now(UTC)
    results["build full CRL"], results["full CRL entries"] = _build(runtime, row.id or 0, now, None, ca)
    results["build partition CRL"], results["partition CRL entries"] = _build(
        runtime, row.id or 0, now, f"{row.name}-p1", ca)
    for name, value in results.items():
        size.rounds.setdefault(name, []).append(value)
        size.figures[name] = statistics.median(size.rounds[name])


def _build(runtime: Runtime, authority_id: int, now: datetime, scope: str | None,
           ca: Any) -> tuple[float, float]:
    """Microseconds to read the revoked rows and sign + encode one CRL (median of 3), and its entries."""
    times, entries = [], 0
    for number in range(3):
        started = time.perf_counter()
        with runtime.database.session() as session:
            revoked = _revoked(session, authority_id, now, scope=scope)
        encode_crl(ca.certificate, ca.signer, revoked, number=1000 + number, this_update=now,
                   next_update=now + timedelta(days=1))
        times.append(time.perf_counter() - started)
        entries = len(revoked)
    return statistics.median(times) * 1e6, float(entries)


# -- HTTPS: OCSP GET against /healthz on one worker ------------------------------------------------


def _wrk(url: str, seconds: float, connections: int) -> float:
    result = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", url],
                            capture_output=True, text=True, check=True)
    match = re.search(r"Requests/sec:\s*([\d.]+)", result.stdout)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", result.stdout)
    if match is None or errors is not None:
        raise SystemExit(f"wrk failed on {url}:\n{result.stdout}{result.stderr}")
    return float(match.group(1))


def measure_https(size: Size, args: argparse.Namespace) -> dict[str, float]:
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install wrk")
    runtime = size.runtime
    with ExitStack() as stack:
        log_path = Path(size.env["DMBOOT_DATA_DIR"]) / "serve.log"
        log = stack.enter_context(log_path.open("wb"))
        process = subprocess.Popen([DMBOOT, "serve"], env=size.env, stdout=log, stderr=subprocess.STDOUT)
        stack.callback(_stop, process)
        url = size.env["DMBOOT_PUBLIC_URL"]
        with runtime.database.session() as session:
            root_pem = runtime.authorities.root_row(session).pem
            issuer = x509.load_pem_x509_certificate(runtime.authorities.active_row(session).pem.encode())
        _wait_ready(url, root_pem, process, log_path)
        request = _ocsp_request(issuer, int("4" + "1".rjust(39, "0"), 16))
        path = "/ocsp/" + base64.b64encode(request).decode().replace("+", "%2B").replace("/", "%2F")
        ocsp_url, health_url = url + path, url + "/healthz"
        _wrk(ocsp_url, 1, args.connections)  # sign it once, warm both paths
        _wrk(health_url, 1, args.connections)
        ocsp_rates, health_rates = [], []
        for _ in range(args.http_runs):
            ocsp_rates.append(_wrk(ocsp_url, args.http_seconds, args.connections))
            health_rates.append(_wrk(health_url, args.http_seconds, args.connections))
        ratios = [o / h for o, h in zip(ocsp_rates, health_rates, strict=True)]
        return {"ocsp_get_per_s": statistics.median(ocsp_rates), "healthz_per_s": statistics.median(health_rates),
                "ocsp_to_healthz": statistics.median(ratios)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default="postgresql://127.0.0.1:5432/test")
    parser.add_argument("--rows", type=int, default=1_000_000, help="certificates at full size (a tenth revoked)")
    parser.add_argument("--baseline-rows", type=int, default=0, help="default: rows / 100")
    parser.add_argument("--partitions", type=int, default=10)
    parser.add_argument("--ops", type=int, default=100, help="timed calls per in-process row and round")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds per size; medians reported")
    parser.add_argument("--http-seconds", type=float, default=5.0)
    parser.add_argument("--http-runs", type=int, default=3)
    parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args(argv)
    base_rows = args.baseline_rows or max(1000, args.rows // 100)
    facts = context_facts(database_url=args.database_url, secret_backend="embedded")  # noqa: S106 - a backend name
    facts.update(rows=args.rows, baseline_rows=base_rows, partitions=args.partitions)
    print_context(facts)
    sizes: list[Size] = []
    https: dict[str, float] = {}
    with ExitStack() as stack:
        for rows in (base_rows, args.rows):
            size = stack.enter_context(loaded(args.database_url, rows, args.partitions))
            print(f"# loaded {rows:,} certificates ({rows // 10:,} revoked) in {size.load_seconds:.1f} s",
                  file=sys.stderr, flush=True)
            sizes.append(size)
        for round_ in range(args.rounds):  # interleaved: the machine's load drifts alike for both sizes
            for size in sizes:
                measure_size(size, args, round_)
        https = measure_https(sizes[-1], args)
    base, full = sizes
    table: list[dict[str, Any]] = []
    for name, at_base in base.figures.items():
        at_full = full.figures[name]
        entries = name.endswith("entries")
        table.append({"step": name, "unit": "entries" if entries else "us (median)",
                      f"at {base.rows:,}": at_base, f"at {full.rows:,}": at_full,
                      "ratio": None if entries else at_full / at_base})
    table.append({"step": "OCSP GET over HTTPS", "unit": "responses/s", f"at {full.rows:,}": https["ocsp_get_per_s"]})
    table.append({"step": "/healthz same worker", "unit": "responses/s", f"at {full.rows:,}": https["healthz_per_s"],
                  "ratio": None})
    table.append({"step": "OCSP GET / healthz", "unit": "ratio", "ratio": https["ocsp_to_healthz"]})
    summary = {
        "bench": "scale", "rows": full.rows, "baseline_rows": base.rows, "revoked": full.rows // 10,
        "partitions": args.partitions,
        "growth": {k: round(full.figures[k] / base.figures[k], 3) for k in base.figures if not k.endswith("entries")},
        "full_crl_build_s": round(full.figures["build full CRL"] / 1e6, 3),
        "full_crl_entries": int(full.figures["full CRL entries"]),
        "partition_crl_build_s": round(full.figures["build partition CRL"] / 1e6, 4),
        "partition_crl_entries": int(full.figures["partition CRL entries"]),
        "revoke_ms": round(full.figures["revoke one"] / 1e3, 2),
        "ocsp_get_per_s": round(https["ocsp_get_per_s"]), "healthz_per_s": round(https["healthz_per_s"]),
        "ocsp_to_healthz": round(https["ocsp_to_healthz"], 3), "connections": args.connections,
    }
    report(table, summary)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
