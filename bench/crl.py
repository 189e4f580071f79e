"""CRL build time at 1,000, 10,000 and 100,000 revoked certificates, and how it grows.

Rows, per size N (``--sizes``):

- ``library build_crl``: ``pki.revocation.build_crl`` - N entries (reason code each), sign
  with a P-256 key, DER-encode; entries prepared before timing;
- ``service rebuild``: ``CrlPublisher.publish(force=True)`` on a database holding N revoked
  certificate rows: query them, build and sign the complete CRL, the delta and the 16
  partitions (N/16 entries each), store them, audit - what the background publisher does;
- ``revoke one``: ``RevocationService.revoke_certificate`` of one more certificate at N
  (a row and an audit event; the CRLs follow in the background);
- ``serve (cached)``: ``CrlService.current`` - what each GET /crl costs once built
  (a head query and the per-process cache), requests per second.

Single process, single thread. Synthetic rows (bulk-inserted, realistic PEM size) were
revoked a day ago, so delta CRLs stay small, as they would between full CRLs.

Run from the repo root: ``.venv/bin/python -m bench.crl [--database-url postgresql://127.0.0.1:5432/test]``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import secrets
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from sqlalchemy import Table, func, insert, select

from bench.common import (
    bench_runtime,
    context_facts,
    make_device_csrs,
    measure,
    median,
    print_context,
    report,
)
from bootstrap.runtime import Runtime
from bootstrap.services.issuance import Requester
from bootstrap.store.models import CertificateRow
from pki.revocation import RevokedEntry, build_crl

CERTIFICATES: Table = CertificateRow.metadata.tables["certificate"]
REVOKED: Table = CertificateRow.metadata.tables["revoked_certificate"]
REQUESTER = Requester("bench:crl")


def _revoked_count(runtime: Runtime) -> int:
    with runtime.database.engine.connect() as conn:
        query = select(func.count()).select_from(CERTIFICATES).where(CERTIFICATES.c.status == "revoked")
        return int(conn.execute(query).scalar_one())


def prefill_revoked(runtime: Runtime, target: int, *, chunk: int = 5000) -> float:
    """Bulk-insert synthetic revoked certificates until ``target`` are revoked; seconds taken."""
    need = max(0, target - _revoked_count(runtime))
    if not need:
        return 0.0
    with runtime.database.session() as session:
        authority_id = runtime.authorities.active_row(session).id
    pem = runtime.issuance.issue_from_csr(make_device_csrs(1)[0], "device", REQUESTER).pem
    now = datetime.now(UTC)
    reasons = ["keyCompromise", "superseded", "cessationOfOperation", "affiliationChanged"]
    started = time.perf_counter()
    with runtime.database.engine.begin() as conn:
        for first in range(0, need, chunk):
            rows: list[dict[str, Any]] = []
            for n in range(first, min(first + chunk, need)):
                dev_id = f"IMEI:98{secrets.randbits(40):013d}"
                rows.append({
                    "serial_hex": format(secrets.randbits(159) | 1 << 158, "x"), "authority_id": authority_id,
                    "profile": "device", "subject": f"CN={dev_id}", "common_name": dev_id,
                    "sans": json.dumps([f"uri:urn:dmboot:devid:{dev_id}"]), "device_id": dev_id, "key_type": "p256",
                    "not_before": now - timedelta(days=30), "not_after": now + timedelta(days=335),
                    "status": "revoked", "revoked_at": now - timedelta(days=1), "revocation_reason": reasons[n % 4],
                    "fingerprint": "sha256:" + hashlib.sha256(secrets.token_bytes(16)).hexdigest(),
                    "pem": pem, "requested_by": "bench:prefill", "request_id": None, "created_at": now,
                })
            conn.execute(insert(CERTIFICATES), rows)
            conn.execute(insert(REVOKED), [
                {"authority_id": authority_id, "serial_hex": r["serial_hex"], "scope": f"issuing-1-p{n % 16}",
                 "revoked_at": r["revoked_at"], "reason": r["revocation_reason"], "not_after": r["not_after"]}
                for n, r in enumerate(rows)])
    return time.perf_counter() - started


def _timed(work: Any) -> tuple[float, float, Any]:
    cpu0, wall0 = time.process_time(), time.perf_counter()
    result = work()
    return time.perf_counter() - wall0, time.process_time() - cpu0, result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.crl", description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,10000,100000", help="revoked certificates (1000,10000,100000)")
    parser.add_argument("--repeat", type=int, default=3, help="builds per size; medians are reported (3)")
    parser.add_argument("--serve-seconds", type=float, default=2.0, help="seconds of cached serving per size (2)")
    parser.add_argument("--database-url", default="", help="postgresql://...: a scratch database; default SQLite")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    started = time.perf_counter()
    rows: list[dict[str, Any]] = []
    summary: dict[str, Any] = {"bench": "crl", "database": "postgresql" if args.database_url else "sqlite",
                               "secret_backend": "embedded", "ca_key_type": "p256", "sizes": sizes}
    with bench_runtime(args.database_url) as runtime:
        print_context(context_facts(database_url=args.database_url, secret_backend=runtime.settings.secrets_backend,
                                    ca_key="p256", process="1 process, 1 thread", repeat=args.repeat))
        with runtime.database.session() as session:
            ca = runtime.authorities.authority(session, runtime.authorities.active_row(session))
        library: list[float] = []
        service: list[float] = []
        revoke: list[float] = []
        for size in sizes:
            now = datetime.now(UTC)
            entries = [RevokedEntry(secrets.randbits(159) | 1 << 158, now, x509.ReasonFlags.key_compromise)
                       for _ in range(size)]
            builds = [_timed(lambda e=entries, t=now: build_crl(ca.certificate, ca.signer, e, number=1, this_update=t,
                                                                next_update=t + timedelta(days=1)))
                      for _ in range(args.repeat)]
            der_bytes = len(builds[0][2].public_bytes(Encoding.DER))
            fill = prefill_revoked(runtime, size)
            rebuilds = [_timed(lambda: runtime.crl_publisher.publish(force=True, full_after=timedelta(0)))
                        for _ in range(args.repeat)]
            victims = [runtime.issuance.issue_from_csr(csr, "device", REQUESTER).serial_hex
                       for csr in make_device_csrs(args.repeat)]
            revokes = [_timed(lambda s=s: runtime.revocation.revoke_certificate(s, "keyCompromise", REQUESTER))
                       for s in victims]
            runtime.crls.current("issuing-1")
            served = measure(lambda i: runtime.crls.current("issuing-1"), seconds=args.serve_seconds, warmup=0.2)
            library.append(median(w for w, _, _ in builds))
            service.append(median(w for w, _, _ in rebuilds))
            revoke.append(median(w for w, _, _ in revokes))
            rows.append({"revoked": size, "crl_kib": der_bytes / 1024,
                         "library_build_s": library[-1], "library_cpu_s": median(c for _, c, _ in builds),
                         "service_rebuild_s": service[-1], "service_cpu_s": median(c for _, c, _ in rebuilds),
                         "revoke_one_s": revoke[-1], "us_per_entry": 1e6 * service[-1] / size,
                         "serve_per_s": served.rate, "prefill_s": fill})
    summary["crl_kib"] = [round(r["crl_kib"], 1) for r in rows]
    summary["library_build_s"] = [round(v, 4) for v in library]
    summary["service_rebuild_s"] = [round(v, 4) for v in service]
    summary["revoke_one_s"] = [round(v, 4) for v in revoke]
    summary["serve_per_s"] = [round(r["serve_per_s"], 1) for r in rows]
    summary["growth_x_per_10x"] = [round(service[i] / service[i - 1], 2) for i in range(1, len(service))]
    summary["library_growth_x_per_10x"] = [round(library[i] / library[i - 1], 2) for i in range(1, len(library))]
    summary["us_per_entry"] = [round(r["us_per_entry"], 2) for r in rows]
    summary["elapsed_s"] = round(time.perf_counter() - started, 1)
    report(rows, summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
