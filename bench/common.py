"""Shared pieces of the dm-bootstrap benchmarks (see bench/README.md).

- the crypto ceiling: the baseline every benchmark divides by, measured in the same run;
- device CSRs generated before anything is timed;
- timing: warm-up, then a fixed duration (or count), wall clock and CPU seconds;
- CPU accounting of other processes (servers, PostgreSQL) from ``/proc/<pid>/stat``;
- context facts, a scratch runtime (temp data dir, SQLite file or a scratch PostgreSQL
  database), and ``report``: an aligned table, then one JSON line, last.
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
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cryptography
from cryptography import x509
from cryptography.hazmat.backends.openssl.backend import backend as openssl_backend
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID, NameOID

if TYPE_CHECKING:
    from bootstrap.runtime import Runtime

__all__ = [
    "CLK_TCK",
    "CeilingBench",
    "CeilingResult",
    "CpuMeter",
    "Sample",
    "bench_runtime",
    "ceiling",
    "context_facts",
    "database_kind",
    "descendants",
    "local_postgres_pids",
    "postgres_backend_pids",
    "make_device_csrs",
    "measure",
    "median",
    "print_context",
    "proc_cpu_seconds",
    "report",
    "scratch_postgres",
    "tree_cpu_seconds",
]

CLK_TCK = os.sysconf("SC_CLK_TCK")
PUBLIC_URL = "https://localhost:8443"  # Settings' default; the URLs in issued certificates derive from it

# --------------------------------------------------------------------------------------
# CPU accounting
# --------------------------------------------------------------------------------------


def _stat(pid: int) -> list[str]:
    """Fields of /proc/<pid>/stat after ``comm``: index 0 is field 3 (state)."""
    with open(f"/proc/{pid}/stat", "rb") as handle:
        raw = handle.read().decode(errors="replace")
    return raw[raw.rindex(")") + 2:].split()


def proc_cpu_seconds(pid: int, *, children: bool = True) -> float:
    """utime+stime of ``pid`` (plus cutime+cstime, its reaped children, if ``children``)."""
    fields = _stat(pid)
    ticks = int(fields[11]) + int(fields[12])  # fields 14, 15: utime, stime
    if children:
        ticks += int(fields[13]) + int(fields[14])  # fields 16, 17: cutime, cstime
    return ticks / CLK_TCK


def _processes() -> dict[int, tuple[int, str]]:
    """pid -> (ppid, comm) of every live process."""
    table: dict[int, tuple[int, str]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as handle:
                raw = handle.read().decode(errors="replace")
        except OSError:
            continue  # exited meanwhile
        comm = raw[raw.index("(") + 1: raw.rindex(")")]
        table[int(entry.name)] = (int(raw[raw.rindex(")") + 2:].split()[1]), comm)
    return table


def descendants(pid: int) -> list[int]:
    """Live descendants of ``pid`` (children, grandchildren, ...)."""
    table = _processes()
    children: dict[int, list[int]] = {}
    for child, (parent, _) in table.items():
        children.setdefault(parent, []).append(child)
    found: list[int] = []
    todo = list(children.get(pid, ()))
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, ()))
    return found


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds of ``pid`` and all its descendants, live or reaped.

    A descendant that exits moves from "live" into its parent's cutime/cstime when
    reaped, so the sum stays continuous across worker restarts.
    """
    total = proc_cpu_seconds(pid)
    for child in descendants(pid):
        with contextlib.suppress(OSError):
            total += proc_cpu_seconds(child)
    return total


def local_postgres_pids() -> list[int]:
    """Postmaster pids on this machine (a ``postgres`` whose parent is not one)."""
    table = _processes()
    return sorted(
        pid for pid, (parent, comm) in table.items()
        if comm == "postgres" and table.get(parent, (0, ""))[1] != "postgres"
    )


class CpuMeter:
    """CPU seconds used by other processes (servers, PostgreSQL backends) over a window.

    ``pids`` is a list, or a function returning one that is called at ``start`` (for
    processes that exist only once the work has begun, like a pool's backends). With
    ``trees`` each pid counts with all its descendants; a pid that is gone by ``read``
    counts as if it stopped at ``start`` (its CPU in the window is lost, never negative).
    """

    def __init__(self, pids: Iterable[int] | Callable[[], Iterable[int]] = (), *, trees: bool = True) -> None:
        self._source = pids
        self._trees = trees
        self.pids: list[int] = []
        self._start: dict[int, float] = {}

    def _one(self, pid: int) -> float:
        return tree_cpu_seconds(pid) if self._trees else proc_cpu_seconds(pid)

    def start(self) -> None:
        self.pids = list(self._source() if callable(self._source) else self._source)
        self._start = {}
        for pid in self.pids:
            with contextlib.suppress(OSError):
                self._start[pid] = self._one(pid)

    def read(self) -> float:
        total = 0.0
        for pid, before in self._start.items():
            with contextlib.suppress(OSError):
                total += self._one(pid) - before
        return total


def postgres_backend_pids(url: str) -> list[int]:
    """Pids of the backends connected to ``url``'s database (other than the asking one).

    Meter these for a scratch database only we use: PostgreSQL on a shared machine
    serves others too, and its background writers serve everyone.
    """
    import psycopg
    from sqlalchemy.engine import make_url

    plain = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(plain, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchall()
    return [int(r[0]) for r in rows]


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
# The crypto ceiling
# --------------------------------------------------------------------------------------


def _ca_key(ca_key_type: str) -> tuple[CertificateIssuerPrivateKeyTypes, hashes.HashAlgorithm | None]:
    kind = ca_key_type.lower().replace("-", "")
    if kind == "p256":
        return ec.generate_private_key(ec.SECP256R1()), hashes.SHA256()
    if kind == "p384":
        return ec.generate_private_key(ec.SECP384R1()), hashes.SHA384()
    if kind == "ed25519":
        return ed25519.Ed25519PrivateKey.generate(), None
    if kind.startswith("rsa"):
        return rsa.generate_private_key(public_exponent=65537, key_size=int(kind[3:] or 2048)), hashes.SHA256()
    raise ValueError(f"unknown CA key type {ca_key_type!r}")


@dataclass(frozen=True)
class CeilingResult:
    """Certificates a bare ``cryptography`` loop issues on one core."""

    ca_key_type: str
    certificates: int
    wall_seconds: float
    cpu_seconds: float

    @property
    def certs_per_second(self) -> float:
        return self.certificates / self.wall_seconds

    @property
    def certs_per_cpu_second(self) -> float:
        return self.certificates / self.cpu_seconds if self.cpu_seconds else 0.0

    @property
    def sample(self) -> Sample:
        return Sample(self.certificates, self.wall_seconds, self.cpu_seconds)


@dataclass
class CeilingBench:
    """The ceiling's fixtures (CA key and certificate, CSRs), made once, measured many times.

    The loop does what the service must do per certificate and nothing else: parse the
    PEM request, verify its signature, check the key is P-256, build the device
    profile's leaf (pki/profiles.py ``_leaf`` + ``_key_ids`` + ``_locations``:
    BasicConstraints cA=FALSE (critical), KeyUsage digitalSignature (critical), EKU
    clientAuth, SAN URI ``urn:dmboot:devid:<CN>``, SKI, AKI, CRL distribution point,
    AIA OCSP + caIssuers), sign it with the CA key and PEM-encode it. What does not
    depend on the request (issuer name, AKI, CRL DP, AIA) is built once, as any
    careful implementation would.
    """

    ca_key_type: str = "p256"
    csrs: Sequence[bytes] = ()
    n_csrs: int = 1000
    ca_key: CertificateIssuerPrivateKeyTypes = field(init=False)
    _hash: hashes.HashAlgorithm | None = field(init=False)
    _issuer: x509.Name = field(init=False)
    _constant: list[tuple[x509.ExtensionType, bool]] = field(init=False)

    def __post_init__(self) -> None:
        if not self.csrs:
            self.csrs = make_device_csrs(self.n_csrs)
        self.ca_key, self._hash = _ca_key(self.ca_key_type)
        self._issuer = x509.Name([
            x509.NameAttribute(NameOID.COMMON_NAME, "bench Issuing CA 1"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "dm-bootstrap"),
        ])
        name = "issuing-1"
        self._constant = [
            (x509.AuthorityKeyIdentifier.from_issuer_public_key(self.ca_key.public_key()), False),
            (x509.CRLDistributionPoints([x509.DistributionPoint(
                [x509.UniformResourceIdentifier(f"{PUBLIC_URL}/crl/{name}.crl")], None, None, None)]), False),
            (x509.AuthorityInformationAccess([
                x509.AccessDescription(AuthorityInformationAccessOID.OCSP,
                                       x509.UniformResourceIdentifier(f"{PUBLIC_URL}/ocsp")),
                x509.AccessDescription(AuthorityInformationAccessOID.CA_ISSUERS,
                                       x509.UniformResourceIdentifier(f"{PUBLIC_URL}/ca/{name}.der")),
            ]), False),
        ]

    def issue_one(self, i: int) -> bytes:
        """One certificate from request ``i`` (cycling through the pool)."""
        csr = x509.load_pem_x509_csr(self.csrs[i % len(self.csrs)])
        if not csr.is_signature_valid:
            raise ValueError("CSR signature does not verify")
        public_key = csr.public_key()
        if not isinstance(public_key, ec.EllipticCurvePublicKey) or not isinstance(public_key.curve, ec.SECP256R1):
            raise ValueError("not a P-256 key")
        cn = str(csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)
        now = datetime.now(UTC).replace(microsecond=0)
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
            .issuer_name(self._issuer)
            .public_key(public_key)
            .serial_number(secrets.randbits(159) | 1 << 158)
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .add_extension(x509.SubjectAlternativeName(
                [x509.UniformResourceIdentifier("urn:dmboot:devid:" + cn)]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        )
        for extension, critical in self._constant:
            builder = builder.add_extension(extension, critical=critical)
        return builder.sign(self.ca_key, self._hash).public_bytes(Encoding.PEM)  # type: ignore[arg-type]

    def run(self, seconds: float, *, warmup: float = 0.5) -> CeilingResult:
        sample = measure(self.issue_one, seconds=seconds, warmup=warmup)
        return CeilingResult(self.ca_key_type, sample.count, sample.wall, sample.cpu)


def ceiling(seconds: float, ca_key_type: str = "p256", *, csrs: Sequence[bytes] = (),
            warmup: float = 0.5) -> CeilingResult:
    """The crypto ceiling: certificates/s and per CPU-second of a bare cryptography loop, one core.

    CSRs are generated (or passed in) before the timed part.
    """
    return CeilingBench(ca_key_type, csrs).run(seconds, warmup=warmup)


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
