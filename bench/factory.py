"""Factory batches: devices per second for a 10,000-device batch, against the crypto ceiling.

Rows (medians of ``--runs`` interleaved runs; every run provisions ``--devices`` new
devices in one batch, chunk by chunk as the API and the CLI do):

- ``ceiling (cryptography)``: the bare loop of bench/ceiling.py (parse and verify a P-256
  CSR, build and sign the device leaf, PEM), one core - the baseline of both ratios;
- ``factory, device CSRs``: ``BatchService.submit`` with device-made CSRs: CSR checks,
  signing, and per chunk of 250 one transaction with the certificate rows, factory items,
  device rows, one audit event per certificate and the quota;
- ``ceiling, keygen``: the bare loop for server-side keys (generate P-256, sign, encrypt
  the key as PKCS#8 with a pre-derived key) - shown to say what keygen costs by itself;
- ``factory, server keys``: the same batch with ``keygen p256``: the key generated,
  certified, encrypted for the station (PBES2 PKCS#8), and the chunk's encrypted keys
  kept in the secret store for redelivery;
- ``cli local (files)``, with ``--cli``: ``dmboot factory run`` in process on the same data
  directory, writing every device's files and the journal (server keys).

Embedded default: SQLite file in a temp data dir, embedded keystore; one process, one
thread (one of the machine's cores). Both ratios divide by the ``ceiling`` row.

Run from the repo root: ``.venv/bin/python -m bench.factory [--devices 10000] [--runs 3] [--cli]``.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import functools
import io
import pstats
import secrets
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from bench.ceiling import CeilingBench
from bench.common import Sample, bench_runtime, context_facts, make_device_csrs, median, print_context, report
from bootstrap.factory.keys import KeyEncryptor, new_salt
from bootstrap.factory.service import CHUNK_SIZE, Station
from bootstrap.factory.types import BatchSpec, ItemRequest
from bootstrap.runtime import Runtime
from bootstrap.services.config import ProfileSpec
from pki.keys import KeyType

PASSWORD = "bench-factory-password-" + secrets.token_hex(8)


def _setup(runtime: Runtime) -> None:
    runtime.config.add_server("dm1", "DM One", "https://dm.example.net/dm", actor="bench")
    runtime.config.add_profile(ProfileSpec(name="line", dm_servers=("dm1",)), actor="bench")


def _timed(work: Callable[[], int]) -> Sample:
    cpu0, wall0 = time.process_time(), time.perf_counter()
    count = work()
    return Sample(count, time.perf_counter() - wall0, time.process_time() - cpu0)


def _batch(runtime: Runtime, items: list[ItemRequest], key: str) -> int:
    service = runtime.factory.batches
    batch = service.open_batch(Station.local("bench:factory"), BatchSpec("line", key, password=PASSWORD))
    done = 0
    for start in range(0, len(items), CHUNK_SIZE):
        outcomes = service.submit(batch, items[start:start + CHUNK_SIZE])
        done += sum(o.status == "issued" for o in outcomes)
    service.finish(batch)
    assert done == len(items), f"only {done} of {len(items)} issued"
    return done


class KeygenCeiling:
    """The bare loop for server-side keys: generate, certify (as the ceiling does), encrypt the key."""

    def __init__(self, bench: CeilingBench) -> None:
        self._bench = bench
        self._encryptor = KeyEncryptor(PASSWORD.encode(), new_salt())
        self._encryptor.pkcs8_pem(ec.generate_private_key(ec.SECP256R1()))  # derive the batch key untimed

    def run(self, count: int) -> Sample:
        bench = self._bench
        constant = bench._constant  # noqa: SLF001 - the same constant extensions as the ceiling
        issuer = bench._issuer  # noqa: SLF001

        def loop() -> int:
            for i in range(count):
                key = ec.generate_private_key(ec.SECP256R1())
                public_key = key.public_key()
                cn = f"KEY:{i}"
                now = datetime.now(UTC).replace(microsecond=0)
                builder = (
                    x509.CertificateBuilder()
                    .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
                    .issuer_name(issuer).public_key(public_key)
                    .serial_number(secrets.randbits(159) | 1 << 158)
                    .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=365))
                    .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                    .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False),
                                   critical=True)
                    .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
                    .add_extension(x509.SubjectAlternativeName(
                        [x509.UniformResourceIdentifier("urn:dmboot:devid:" + cn)]), critical=False)
                    .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
                )
                for extension, critical in constant:
                    builder = builder.add_extension(extension, critical=critical)
                builder.sign(bench.ca_key, bench._hash).public_bytes(Encoding.PEM)  # type: ignore[arg-type]  # noqa: SLF001
                self._encryptor.pkcs8_pem(key)
            return count

        return _timed(loop)


def _cli_run(runtime: Runtime, count: int, prefix: str, out_root: str | None) -> Sample:
    from typer.testing import CliRunner

    from bootstrap.cli import app

    with tempfile.TemporaryDirectory(prefix="dmboot-bench-out-", dir=out_root) as tmp:
        manifest = Path(tmp) / "manifest.csv"
        manifest.write_text("dev_id\n" + "".join(f"{prefix}{i}\n" for i in range(count)))
        env = {"DMBOOT_DATA_DIR": str(runtime.settings.data_dir), "DMBOOT_KEYSTORE_PASSPHRASE": "bench",
               "DMBOOT_DATABASE_URL": runtime.settings.database_url}
        args = ["factory", "run", str(manifest), "--profile", "line", "--out", str(Path(tmp) / "out"),
                "--keygen", "p256", "--batch-size", "500", "--json"]
        sample = _timed(lambda: _invoke(CliRunner(), app, args, env, count))
    return sample


def _invoke(runner: Any, app: Any, args: list[str], env: dict[str, str], count: int) -> int:
    result = runner.invoke(app, args, env=env)
    assert result.exit_code == 0, result.output
    return count


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.factory", description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=10_000, help="devices per batch (10000)")
    parser.add_argument("--runs", type=int, default=3, help="interleaved runs; medians are reported (3)")
    parser.add_argument("--ceiling-seconds", type=float, default=3.0, help="seconds per ceiling window (3)")
    parser.add_argument("--cli", action="store_true", help="also time `dmboot factory run` (local, files)")
    parser.add_argument("--cli-out", default=None, metavar="DIR",
                        help="where the CLI row writes its files (default: the temp dir; /dev/shm for tmpfs)")
    parser.add_argument("--profile", action="store_true", help="print a cProfile of one CSR batch")
    args = parser.parse_args(argv)
    n, runs = args.devices, args.runs
    started = time.perf_counter()
    print(f"# generating {runs} x {n} device CSRs (untimed) ...", file=sys.stderr)
    csr_sets = [make_device_csrs(n, prefix=f"IMEI:{30 + r}") for r in range(runs)]
    ceiling = CeilingBench(csrs=csr_sets[0][:2000])
    keygen_ceiling = KeygenCeiling(ceiling)
    samples: dict[str, list[Sample]] = {k: [] for k in ("ceiling", "csr", "keygen_ceiling", "keygen", "cli")}
    with contextlib.ExitStack() as stack:
        runtime = stack.enter_context(bench_runtime())
        _setup(runtime)
        facts = context_facts(database_url="", secret_backend="embedded", devices=n, runs=runs,  # noqa: S106
                              chunk=CHUNK_SIZE,
                              process="1 process, 1 thread (uses 1 core)")
        print_context(facts)
        _batch(runtime, [ItemRequest(f"WARM:{i}", keygen=KeyType.P256) for i in range(300)], "warm-up")
        for r in range(runs):
            samples["ceiling"].append(ceiling.run(args.ceiling_seconds, warmup=0.3).sample)
            items = [ItemRequest(f"IMEI:{30 + r}{i:013d}", csr=c.decode()) for i, c in enumerate(csr_sets[r])]
            samples["csr"].append(_timed(functools.partial(_batch, runtime, items, f"csr-{r}")))
            samples["keygen_ceiling"].append(keygen_ceiling.run(min(n, 3000)))
            keys = [ItemRequest(f"KEY:{r}:{i}", keygen=KeyType.P256) for i in range(n)]
            samples["keygen"].append(_timed(functools.partial(_batch, runtime, keys, f"keygen-{r}")))
            if args.cli and r == 0:
                samples["cli"].append(_cli_run(runtime, n, f"CLI:{r}:", args.cli_out))
        if args.profile:
            _profile(runtime, make_device_csrs(min(n, 3000), prefix="IMEI:99"))
    _report(samples, facts, n, runs, time.perf_counter() - started)
    return 0


def _profile(runtime: Runtime, csrs: list[bytes]) -> None:
    items = [ItemRequest(f"IMEI:99{i:013d}", csr=c.decode()) for i, c in enumerate(csrs)]
    profiler = cProfile.Profile()
    profiler.runcall(_batch, runtime, items, "profiled")
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(25)
    print(text.getvalue(), file=sys.stderr)


def _report(samples: dict[str, list[Sample]], facts: dict[str, object], n: int, runs: int, elapsed: float) -> None:
    ceiling_rate = median(s.rate for s in samples["ceiling"])
    ceiling_cpu = median(s.per_cpu for s in samples["ceiling"])

    def row(name: str, key: str, ratio_runs: bool = True) -> dict[str, Any]:
        got = samples[key]
        rate = median(s.rate for s in got)
        per_cpu = median(s.per_cpu for s in got)
        # Per-run ratios against the ceiling measured just before, then the median (runs interleave).
        ceilings = samples["ceiling"]
        throughput = median(s.rate / c.rate for s, c in zip(got, ceilings, strict=False)) if ratio_runs \
            else rate / ceiling_rate
        return {"path": name, "devices": got[0].count, "devices_per_s": rate, "us_per_device": 1e6 / rate,
                "cpu_us_per_device": 1e6 / per_cpu, "throughput_ratio": throughput, "cpu_ratio": per_cpu / ceiling_cpu}

    rows = [row("ceiling (cryptography)", "ceiling"), row("factory, device CSRs", "csr"),
            row("ceiling, keygen + PKCS#8", "keygen_ceiling"), row("factory, server keys", "keygen")]
    if samples["cli"]:
        rows.append(row("cli local (files, keys)", "cli", ratio_runs=False))
    report(rows, {
        "bench": "factory", "database": "sqlite", "secret_backend": "embedded", "devices": n, "runs": runs,
        "ceiling_certs_per_s": round(ceiling_rate, 1),
        "csr_devices_per_s": round(rows[1]["devices_per_s"], 1),
        "csr_throughput_ratio": round(rows[1]["throughput_ratio"], 3), "csr_cpu_ratio": round(rows[1]["cpu_ratio"], 3),
        "keygen_devices_per_s": round(rows[3]["devices_per_s"], 1),
        "keygen_throughput_ratio": round(rows[3]["throughput_ratio"], 3),
        "keygen_cpu_ratio": round(rows[3]["cpu_ratio"], 3),
        "keygen_vs_keygen_ceiling": round(rows[3]["devices_per_s"] / rows[2]["devices_per_s"], 3),
        **({"cli_devices_per_s": round(rows[4]["devices_per_s"], 1),
            "cli_throughput_ratio": round(rows[4]["throughput_ratio"], 3)} if samples["cli"] else {}),
        "loadavg": facts.get("loadavg"), "elapsed_s": round(elapsed, 1),
    })


if __name__ == "__main__":
    sys.exit(main())
