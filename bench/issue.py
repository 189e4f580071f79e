"""Certificates per second through the library and the library + store path, against the ceiling.

Rows (medians of ``--runs`` interleaved runs, each a warm-up then ``--seconds``):

- ``ceiling``: bare cryptography loop (bench/ceiling.py), one core;
- ``library``: ``pki.csr.parse_csr`` + ``CertificateAuthority.issue_for_csr`` + PEM, no database;
- ``store``: ``IssuanceService.issue_from_csr`` - parse and verify, key and profile policy,
  sign, insert the certificate row, append the audit event, commit - on the embedded
  default (SQLite file in a temp data dir, embedded keystore) or ``--database-url``
  (a scratch PostgreSQL database, dropped afterwards);
- ``store @N rows``: the store path again in a fresh database with N synthetic
  certificate rows already present (1x, 10x, 100x ``--growth-base``), one window each.

Single process, single thread: it uses one of the machine's cores. With PostgreSQL
the server backend runs beside it (on the other core); its CPU is read from
/proc/<pid>/stat and counted in the CPU-efficiency figures.

Run from the repo root: ``.venv/bin/python -m bench.issue [--database-url postgresql://127.0.0.1:5432/test]``.
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import io
import json
import pstats
import secrets
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Table, func, insert, select

from bench.ceiling import CeilingBench
from bench.common import (
    Sample,
    bench_runtime,
    context_facts,
    make_device_csrs,
    measure,
    print_context,
    report,
    summary_row,
)
from bench.cpu import CpuMeter, postgres_backend_pids
from bootstrap.runtime import Runtime
from bootstrap.services.issuance import Requester
from bootstrap.store.models import CertificateRow
from pki.csr import parse_csr
from pki.profiles import get_profile

PROFILE = "device"
CERTIFICATES: Table = CertificateRow.metadata.tables["certificate"]
REQUESTER = Requester("bench:issue")


def _library_step(runtime: Runtime, csrs: Sequence[bytes]) -> Callable[[int], object]:
    profile = get_profile(PROFILE)
    with runtime.database.session() as session:
        _, authority = runtime.authorities.active(session)

    def step(i: int) -> object:
        info = parse_csr(csrs[i % len(csrs)], profile.key_policy)
        return authority.issue_for_csr(info, profile).pem

    return step


def _store_step(runtime: Runtime, csrs: Sequence[bytes]) -> Callable[[int], object]:
    issuance = runtime.issuance

    def step(i: int) -> object:
        return issuance.issue_from_csr(csrs[i % len(csrs)], PROFILE, REQUESTER).pem

    return step


def _meter(runtime: Runtime) -> CpuMeter | None:
    """Our scratch PostgreSQL database's backends (local server only), else nothing to meter."""
    if runtime.database.is_sqlite:
        return None
    url = runtime.database.url
    return CpuMeter(lambda: postgres_backend_pids(url), trees=False)


def _row_count(runtime: Runtime) -> int:
    with runtime.database.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(CERTIFICATES)).scalar_one())


def prefill(runtime: Runtime, target: int, *, chunk: int = 5000) -> tuple[int, float]:
    """Bulk-insert synthetic certificate rows until the table holds ``target``; (added, seconds).

    Rows look like the real ones (same PEM size, random 159-bit serials, unique
    fingerprints, device ids), so index shapes and sizes are realistic.
    """
    have = _row_count(runtime)
    need = max(0, target - have)
    if not need:
        return 0, 0.0
    with runtime.database.session() as session:
        authority_id = runtime.authorities.active_row(session).id
    csr = make_device_csrs(1)[0]
    pem = runtime.issuance.issue_from_csr(csr, PROFILE, Requester("bench:prefill")).pem
    now = datetime.now(UTC)
    started = time.perf_counter()
    with runtime.database.engine.begin() as conn:
        for first in range(have, have + need, chunk):
            rows: list[dict[str, Any]] = []
            for n in range(first, min(first + chunk, have + need)):
                dev_id = f"IMEI:99{n:013d}"
                rows.append({
                    "serial_hex": format(secrets.randbits(159) | 1 << 158, "x"),
                    "authority_id": authority_id, "profile": PROFILE, "subject": f"CN={dev_id}",
                    "common_name": dev_id, "sans": json.dumps([f"uri:urn:dmboot:devid:{dev_id}"]),
                    "device_id": dev_id, "key_type": "p256", "not_before": now - timedelta(minutes=5),
                    "not_after": now + timedelta(days=365), "status": "valid",
                    "fingerprint": "sha256:" + hashlib.sha256(f"bench-{n}".encode()).hexdigest(),
                    "pem": pem, "requested_by": "bench:prefill", "request_id": None, "created_at": now,
                })
            conn.execute(insert(CERTIFICATES), rows)
    return need + 1, time.perf_counter() - started


def _row(name: str, samples: list[Sample], ceilings: list[Sample], *, db: bool, rows_before: int | None = None
         ) -> dict[str, Any]:
    extra = {"rows_before": rows_before} if rows_before is not None else {}
    return summary_row(name, samples, ceilings, unit="cert", db=db, **extra)


def _profile(step: Callable[[int], object], seconds: float, top: int) -> None:
    profiler = cProfile.Profile()
    deadline = time.perf_counter() + seconds
    i = 0
    profiler.enable()
    while time.perf_counter() < deadline:
        step(i)
        i += 1
    profiler.disable()
    for order in ("tottime", "cumulative"):
        out = io.StringIO()
        stats = pstats.Stats(profiler, stream=out).strip_dirs().sort_stats(order)
        stats.print_stats(top)
        print(f"# cProfile of the store path ({i} certificates), by {order}")
        print("\n".join(line for line in out.getvalue().splitlines() if line.strip()
                        and not line.lstrip().startswith(("Ordered by", "List reduced"))))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.issue", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="measured seconds per run and path (3)")
    parser.add_argument("--warmup", type=float, default=0.5, help="untimed seconds before each run (0.5)")
    parser.add_argument("--runs", type=int, default=3, help="interleaved runs; medians are reported (3)")
    parser.add_argument("--database-url", default="",
                        help="postgresql://host:port/db: use a scratch database created there; default SQLite file")
    parser.add_argument("--ca-key-type", default="p256", choices=["p256", "p384", "ed25519", "rsa2048"])
    parser.add_argument("--csrs", type=int, default=2000, help="distinct pre-generated device CSRs (2000)")
    parser.add_argument("--growth-base", type=int, default=1000,
                        help="1x rows for the growth measurement; 10x and 100x follow; 0 skips it (1000)")
    parser.add_argument("--growth-seconds", type=float, default=3.0, help="measured seconds per growth level (3)")
    parser.add_argument("--profile", type=float, default=0.0, metavar="SECONDS",
                        help="also cProfile the store path for SECONDS and print the top functions")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    csrs = make_device_csrs(args.csrs)
    ceiling = CeilingBench(args.ca_key_type, csrs)
    rows: list[dict[str, Any]] = []
    ceilings: list[Sample] = []
    library: list[Sample] = []
    store: list[Sample] = []
    growth: list[tuple[int, Sample, Sample]] = []  # rows before, store sample, paired ceiling
    is_pg = bool(args.database_url)

    with bench_runtime(args.database_url, args.ca_key_type) as runtime:
        print_context(context_facts(
            database_url=args.database_url, secret_backend=runtime.settings.secrets_backend,
            ca_key=args.ca_key_type, process="1 process, 1 thread (uses 1 core" + (" + the PG backend)" if is_pg
                                                                                    else ")"),
        ))
        lib_step, store_step = _library_step(runtime, csrs), _store_step(runtime, csrs)
        meter = _meter(runtime)
        for run in range(args.runs):  # interleaved, so drift on a shared machine hits all paths alike
            ceilings.append(ceiling.run(args.seconds, warmup=args.warmup).sample)
            library.append(measure(lib_step, seconds=args.seconds, warmup=args.warmup, start_index=run * 7919))
            store.append(measure(store_step, seconds=args.seconds, warmup=args.warmup, meter=meter,
                                 start_index=run * 7919))
        if args.profile:
            _profile(store_step, args.profile, 25)

    ceiling_row = _row("ceiling (cryptography)", ceilings, ceilings, db=is_pg)
    rows += [ceiling_row, _row("library (no store)", library, ceilings, db=is_pg),
             _row("store (issue_from_csr)", store, ceilings, db=is_pg)]

    if args.growth_base > 0:
        with bench_runtime(args.database_url, args.ca_key_type) as runtime:
            step, meter = _store_step(runtime, csrs), _meter(runtime)
            for factor in (1, 10, 100):
                prefill(runtime, args.growth_base * factor)
                before = _row_count(runtime)
                paired = ceiling.run(args.growth_seconds / 2, warmup=0.2).sample
                growth.append((before, measure(step, seconds=args.growth_seconds, warmup=0.2, meter=meter), paired))
        # One window per level, each paired with a short ceiling run just before it.
        for before, sample, paired in growth:
            rows.append(_row(f"store @{before:,} rows", [sample], [paired], db=is_pg, rows_before=before))

    summary: dict[str, Any] = {
        "bench": "issue",
        "database": "postgresql" if is_pg else "sqlite",
        "secret_backend": "embedded",
        "ca_key_type": args.ca_key_type,
        "runs": args.runs,
        "seconds": args.seconds,
        "ceiling_certs_per_s": round(ceiling_row["certs_per_s"], 1),
        "ceiling_certs_per_cpu_s": round(ceiling_row["certs_per_cpu_s"], 1),
    }
    for key, row in (("library", rows[1]), ("store", rows[2])):
        summary[f"{key}_certs_per_s"] = round(row["certs_per_s"], 1)
        summary[f"{key}_throughput_ratio"] = round(row["throughput_ratio"], 3)
        summary[f"{key}_cpu_ratio"] = round(row["cpu_ratio"], 3)
    if growth:
        base_cost = growth[0][1].total_cpu / growth[0][1].count
        summary["growth_rows"] = [before for before, _, _ in growth]
        summary["growth_certs_per_s"] = [round(s.rate, 1) for _, s, _ in growth]
        summary["growth_cpu_ratio"] = [round(s.per_cpu / c.per_cpu, 3) for _, s, c in growth]
        summary["growth_cpu_cost_x"] = [round((s.total_cpu / s.count) / base_cost, 2) for _, s, _ in growth]
    summary["elapsed_s"] = round(time.perf_counter() - started, 1)
    report(rows, summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
