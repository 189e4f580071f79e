"""Shared pieces of the dm-bootstrap benchmarks (see bench/README.md).

- device CSRs generated before anything is timed;
- timing: warm-up, then a fixed duration (or count), wall clock and CPU seconds;
- context facts, a scratch runtime (temp data dir, SQLite file or a scratch PostgreSQL
  database), and ``report``: an aligned table, then one JSON line, last.

The crypto ceiling (the baseline every benchmark divides by) is in ``bench/ceiling.py``,
the CPU accounting of other processes in ``bench/cpu.py``.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cryptography
from cryptography import x509
from cryptography.hazmat.backends.openssl.backend import backend as openssl_backend
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from bench.cpu import CpuMeter

if TYPE_CHECKING:
    from bootstrap.runtime import Runtime

__all__ = [
    "Sample",
    "bench_runtime",
    "context_facts",
    "database_kind",
    "make_device_csrs",
    "measure",
    "median",
    "print_context",
    "report",
    "scratch_postgres",
]
PUBLIC_URL = "https://localhost:8443"  # Settings' default; the URLs in issued certificates derive from it


# --------------------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    """One timed window: operations done, wall seconds, our CPU and other processes' CPU."""

    count: int
    wall: float
    cpu: float
    other_cpu: float = 0.0

    @property
    def rate(self) -> float:
        return self.count / self.wall if self.wall else 0.0

    @property
    def total_cpu(self) -> float:
        return self.cpu + self.other_cpu

    @property
    def per_cpu(self) -> float:
        return self.count / self.total_cpu if self.total_cpu else 0.0


def measure(
    step: Callable[[int], object],
    *,
    seconds: float | None = None,
    count: int | None = None,
    warmup: float = 0.5,
    meter: CpuMeter | None = None,
    start_index: int = 0,
) -> Sample:
    """Call ``step(i)`` for ``warmup`` seconds untimed, then for ``seconds`` (or ``count`` calls).

    Wall time is ``time.perf_counter``; CPU is ``time.process_time`` (this process, all
    threads) plus ``meter`` (other processes) if given.
    """
    if (seconds is None) == (count is None):
        raise ValueError("give seconds or count")
    i = start_index
    deadline = time.perf_counter() + warmup
    while time.perf_counter() < deadline:
        step(i)
        i += 1
    if meter is not None:
        meter.start()
    cpu0, wall0 = time.process_time(), time.perf_counter()
    done = 0
    if count is not None:
        for _ in range(count):
            step(i)
            i += 1
        done = count
    else:
        assert seconds is not None
        deadline = wall0 + seconds
        while True:
            step(i)
            i += 1
            done += 1
            if time.perf_counter() >= deadline:
                break
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    return Sample(done, wall, cpu, meter.read() if meter is not None else 0.0)


def median(values: Iterable[float]) -> float:
    return float(statistics.median(list(values)))


# --------------------------------------------------------------------------------------
# Requests
# --------------------------------------------------------------------------------------


def make_device_csrs(n: int, *, prefix: str = "IMEI:35") -> list[bytes]:
    """``n`` PEM PKCS#10 requests, each signed by its own new P-256 device key.

    Subject CN is a DevID (``IMEI:35`` + 13 digits); no SANs - the device profile
    derives the URI SAN from the CN.
    """
    width = max(1, 15 - len(prefix.split(":", 1)[-1]))
    csrs: list[bytes] = []
    for i in range(n):
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{prefix}{i:0{width}d}")])
        csr = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, hashes.SHA256())
        csrs.append(csr.public_bytes(Encoding.PEM))
    return csrs


# --------------------------------------------------------------------------------------
# Context and scratch environments
# --------------------------------------------------------------------------------------


def database_kind(url: str) -> str:
    """"sqlite file" / "postgresql @host" / ... for a database URL ("" is the SQLite default)."""
    if not url or url.startswith("sqlite"):
        return "sqlite file" if ":memory:" not in url else "sqlite memory"
    scheme = url.split("://", 1)[0].split("+", 1)[0]
    if scheme in ("postgresql", "postgres"):
        from sqlalchemy.engine import make_url

        return f"postgresql @{make_url(url).host or 'socket'}"
    return scheme


def context_facts(*, database_url: str | None = None, secret_backend: str | None = None,
                  **extra: object) -> dict[str, object]:
    """What the reader needs to judge the numbers: machine, versions, database, secrets."""
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    facts: dict[str, object] = {
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)),
        "cpu": model,
        "loadavg": os.getloadavg()[0],
        "python": platform.python_version(),
        "cryptography": cryptography.__version__,
        "openssl": openssl_backend.openssl_version_text(),
    }
    if database_url is not None:
        facts["database"] = database_kind(database_url)
    if secret_backend is not None:
        facts["secret_backend"] = secret_backend
    facts.update(extra)
    return facts


def print_context(facts: dict[str, object]) -> None:
    print("# " + "  ".join(f"{k}={v}" for k, v in facts.items()))


@contextlib.contextmanager
def scratch_postgres(url: str) -> Iterator[str]:
    """Create ``dmboot_bench_<random>`` next to ``url``'s database, yield its URL, drop it."""
    import psycopg
    from psycopg import sql
    from sqlalchemy.engine import make_url

    base = make_url(url)
    name = f"dmboot_bench_{secrets.token_hex(4)}"
    admin_url = base.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@contextlib.contextmanager
def bench_runtime(database_url: str = "", ca_key_type: str = "p256") -> Iterator[Runtime]:
    """An initialised Runtime in a temp data dir (embedded keystore), removed afterwards.

    ``database_url`` "" is the embedded default (SQLite file in the data dir); a
    ``postgresql://`` URL gets a scratch database that is dropped at the end.
    """
    from bootstrap.runtime import Runtime
    from bootstrap.settings import Secret, Settings
    from pki.keys import KeyType

    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="dmboot-bench-")))
        url = stack.enter_context(scratch_postgres(database_url)) if database_url else ""
        settings = Settings(data_dir=tmp / "data", database_url=url, keystore_passphrase=Secret("bench"),
                            ca_key_type=KeyType.parse(ca_key_type))
        runtime, _ = Runtime.initialize(settings, actor="bench:init")
        stack.callback(runtime.close)
        yield runtime


# --------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------


def _cell(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return "-" if value is None else str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        magnitude = abs(value)
        if magnitude >= 1000:
            return f"{value:,.0f}"
        if magnitude >= 10:
            return f"{value:.1f}"
        return f"{value:.3f}"
    return str(value)


def report(rows: list[dict[str, Any]], summary: dict[str, Any]) -> None:
    """Print ``rows`` as an aligned table, then ``summary`` as one JSON line (always last)."""
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    numeric = [all(isinstance(r.get(c), int | float) or r.get(c) is None for r in rows) for c in columns]
    widths = [max([len(c)] + [len(line[i]) for line in cells]) for i, c in enumerate(columns)]

    def fmt(values: Sequence[str]) -> str:
        return "  ".join(v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric, strict=True))

    print(fmt(columns).rstrip())
    print("  ".join("-" * w for w in widths))
    for line in cells:
        print(fmt(line).rstrip())
    sys.stdout.flush()
    print(json.dumps(summary, separators=(",", ":"), default=str), flush=True)


def summary_row(name: str, samples: list[Sample], ceilings: list[Sample], *, unit: str, db: bool,
                **extra: Any) -> dict[str, Any]:
    """One table row: medians of ``samples``, and ratios paired with the ceiling of the same run.

    ``unit`` names what was counted (``cert``, ``resp``): columns are ``<unit>s``,
    ``<unit>s_per_s``, ``us_per_<unit>``, ``cpu_us_per_<unit>``, ``db_cpu_us_per_<unit>``
    (with ``db``), ``<unit>s_per_cpu_s``, ``throughput_ratio`` and ``cpu_ratio``.
    """
    row: dict[str, Any] = {"path": name, **extra}
    row |= {
        f"{unit}s": sum(s.count for s in samples),
        f"{unit}s_per_s": median(s.rate for s in samples),
        f"us_per_{unit}": median(1e6 * s.wall / s.count for s in samples),
        f"cpu_us_per_{unit}": median(1e6 * s.cpu / s.count for s in samples),
    }
    if db:
        row[f"db_cpu_us_per_{unit}"] = median(1e6 * s.other_cpu / s.count for s in samples)
    row[f"{unit}s_per_cpu_s"] = median(s.per_cpu for s in samples)
    pairs = list(zip(samples, ceilings, strict=True))
    row["throughput_ratio"] = median(s.rate / c.rate for s, c in pairs)
    row["cpu_ratio"] = median(s.per_cpu / c.per_cpu for s, c in pairs)
    return row
