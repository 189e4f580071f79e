"""Server CPU per TPM enrollment (round 1 + round 2) over HTTPS, against the crypto ceiling.

``dmboot serve`` (bench/enroll.py's ``serve``: TLS, one worker, PostgreSQL or SQLite)
with a ``bench-tpm`` profile that allows ``tpm`` and trusts a swtpm maker's CA. One
swtpm device (tests/support/tpm.py) enrolls again and again over one keep-alive TLS
connection: round 1, then ``tpm2_activatecredential`` in swtpm, then round 2 (its
TPM2_Certify is made once: it does not depend on the challenge). Re-enrollment is what the service does for a device
whose EK it knows already, so every round runs the whole exchange.

The device's TPM work is the wall-clock bottleneck (swtpm, subprocesses), so this row
reports what it can measure fairly: server CPU-seconds (server processes plus the
scratch database's PostgreSQL backends) per enrollment, the same for the crypto ceiling
(bench/ceiling.py ``CeilingBench``, one P-256 certificate), and ``cpu_ratio`` = ceiling
CPU per certificate / server CPU per TPM enrollment, the figure bench/enroll.py reports
for the other channels.

bench/enroll.py's ``--channels ...,tpm`` reuses this device side (:func:`bench_tpm`) for a
``tpm`` row in its own format (one worker, one enrollment at a time).

Run from the repo root: ``.venv/bin/python -m bench.tpm_enroll [--enrollments N] [--database-url URL]``.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import ssl
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.serialization import Encoding

from bench.ceiling import CeilingBench, ceiling
from bench.common import scratch_postgres
from bench.cpu import CpuMeter, postgres_backend_pids
from bench.enroll import Measured, Server, row, serve
from bench.httpload import Load, Outcome, rss_mb
from bootstrap.runtime import Runtime
from bootstrap.secrets.embedded import EmbeddedKeystoreWarning
from bootstrap.services.config import ProfileSpec
from bootstrap.store.models import DeviceRow
from pki.tpm import Credential
from tests.support.tpm import SoftTpm, TpmMaker
from tests.tpm.device import CHALLENGE, ENROLL, TpmDevice, b64, chain_der

PROFILE = "bench-tpm"
DEV = "IMEI:359999999999999"


def _post(connection: http.client.HTTPSConnection, path: str, body: dict[str, Any]) -> dict[str, Any]:
    connection.request("POST", path, json.dumps(body).encode(), {"content-type": "application/json"})
    response = connection.getresponse()
    payload = response.read()
    if response.status != 200:
        raise SystemExit(f"{path}: HTTP {response.status}: {payload[:300]!r}")
    answer: dict[str, Any] = json.loads(payload)
    return answer


@contextmanager
def tpm_server(database_url: str, workers: int = 1) -> Iterator[tuple[Callable[[int], Load], Server]]:
    """A swtpm device and ``dmboot serve`` with the ``bench-tpm`` profile: yields (``enroll(n) -> Load``, server).

    ``enroll`` runs ``n`` whole enrollments one after another on one keep-alive TLS
    connection (as bench/enroll.py's client does) and meters the server processes and
    the database's backends (``Load.outcome.latencies``: round 1, the activation in
    swtpm and round 2, per enrollment).
    """
    with tempfile.TemporaryDirectory(prefix="dmboot-bench-tpm-") as scratch:
        folder = Path(scratch)
        maker = TpmMaker(folder / "maker")
        tpm = SoftTpm(folder / "tpm", maker)
        try:
            device = TpmDevice(tpm, DEV)

            def prepare(runtime: Runtime) -> None:
                runtime.config.add_profile(ProfileSpec(name=PROFILE, dm_servers=("dm-bench",), attestation=("tpm",),
                                                       delivery="inline"), actor="bench")
                runtime.tpm_trust.add(PROFILE, "swtpm", maker.root.public_bytes(Encoding.PEM).decode(), actor="bench")
                with runtime.database.session() as session:
                    profile_id = runtime.config.get_profile(PROFILE).row.id
                    session.add(DeviceRow(dev_id=DEV, profile_id=profile_id or 0))

            with serve(database_url, workers, prepare) as server:
                context = ssl.create_default_context(cadata=server.root_pem)
                connection = http.client.HTTPSConnection(server.host, server.port, context=context, timeout=120)
                round1 = device.round1(chain=chain_der([maker.intermediate]))
                attest, signature = tpm.certify(device.key, device.ak)
                template = device.round2({"challenge": ""}, b"")
                template.update(certify_info=b64(attest), signature=b64(signature))

                def enroll(enrollments: int) -> Load:
                    outcome = Outcome()
                    server_cpu = CpuMeter([server.process.pid])
                    database_cpu = CpuMeter(lambda: postgres_backend_pids(database_url), trees=False)
                    server_cpu.start()
                    database_cpu.start()
                    wall, client = time.perf_counter(), time.process_time()
                    for _ in range(enrollments):
                        began = time.perf_counter()
                        answer = _post(connection, CHALLENGE, round1)
                        credential = Credential(base64.b64decode(answer["credential_blob"]),
                                                base64.b64decode(answer["encrypted_secret"]))
                        secret = tpm.activate(device.ak, device.ek, credential.tpm2_tools_file())
                        _post(connection, ENROLL, {**template, "challenge": answer["challenge"],
                                                      "secret": b64(secret)})
                        outcome.done += 1
                        outcome.latencies.append(time.perf_counter() - began)
                    db = database_cpu.read() if database_url.startswith("postgresql") else 0.0
                    return Load(outcome, time.perf_counter() - wall, time.process_time() - client,
                                server_cpu.read(), db)

                try:
                    yield enroll, server
                finally:
                    connection.close()
        finally:
            tpm.close()


def run(enrollments: int, database_url: str, ceiling_seconds: float) -> dict[str, Any]:
    """Enroll one swtpm device ``enrollments`` times; return the row."""
    with tpm_server(database_url) as (enroll, _):
        load = enroll(enrollments)
    cpu = load.server_cpu + load.db_cpu
    bare = ceiling(ceiling_seconds)
    per_enrollment = cpu / enrollments
    per_certificate = bare.cpu_seconds / bare.certificates
    return {"channel": "tpm (round 1 + round 2)", "enrollments": enrollments,
            "server_cpu_ms_per_enrollment": round(per_enrollment * 1000, 2),
            "ceiling_cpu_ms_per_certificate": round(per_certificate * 1000, 3),
            "cpu_ratio": round(per_certificate / per_enrollment, 4)}


def bench_tpm(args: argparse.Namespace, ceiling_bench: CeilingBench) -> list[dict[str, Any]]:
    """bench/enroll.py's ``tpm`` row: one worker, c=1, a quarter of ``--devices`` enrollments (at most 40) per run."""
    enrollments = max(1, min(40, args.devices // 4))
    runs = []
    with scratch_postgres(args.database_url) as database_url, tpm_server(database_url) as (enroll, server):
        enroll(2)  # warm-up: the first handshake and the profile's caches
        for _ in range(args.runs):
            c0 = ceiling_bench.run(args.seconds)
            load = enroll(enrollments)
            runs.append(Measured(load, rss_mb(server.process.pid, 1), (c0.certs_per_second, c0.certs_per_cpu_second)))
    return [row("tpm (round 1 + round 2)", 1, 1, runs)]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--enrollments", type=int, default=50)
    parser.add_argument("--database-url", default="postgresql://127.0.0.1:5432/test",
                        help="a PostgreSQL server (a scratch database is made on it), or sqlite:///path")
    parser.add_argument("--ceiling-seconds", type=float, default=3.0)
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore", EmbeddedKeystoreWarning)  # the bench's scratch keystore
    if args.database_url.startswith("postgresql"):
        with scratch_postgres(args.database_url) as url:
            row = run(args.enrollments, url, args.ceiling_seconds)
    else:
        row = run(args.enrollments, args.database_url, args.ceiling_seconds)
    print(json.dumps(row, indent=2))


if __name__ == "__main__":
    main()
