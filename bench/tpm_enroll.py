"""Server CPU per TPM enrollment (round 1 + round 2) over HTTPS, against the crypto ceiling.

``dmboot serve`` (bench/enroll.py's ``serve``: TLS, one worker, PostgreSQL or SQLite)
with a ``bench-tpm`` profile that allows ``tpm`` and trusts a swtpm maker's CA. One
swtpm device (tests/support/tpm.py) enrolls again and again: round 1, then
``tpm2_activatecredential`` in swtpm, then round 2 (its TPM2_Certify is made once: it
does not depend on the challenge). Re-enrollment is what the service does for a device
whose EK it knows already, so every round runs the whole exchange.

The device's TPM work is the wall-clock bottleneck (swtpm, subprocesses), so this row
reports what it can measure fairly: server CPU-seconds (server processes plus the
scratch database's PostgreSQL backends) per enrollment, the same for the crypto ceiling
(bench/common.py ``CeilingBench``, one P-256 certificate), and ``cpu_ratio`` = ceiling
CPU per certificate / server CPU per TPM enrollment, the figure bench/enroll.py reports
for the other channels.

Run from the repo root: ``.venv/bin/python -m bench.tpm_enroll [--enrollments N] [--database-url URL]``.
"""

from __future__ import annotations

import argparse
import base64
import json
import ssl
import tempfile
import urllib.request
import warnings
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.serialization import Encoding

from bench.ceiling import ceiling
from bench.common import scratch_postgres
from bench.cpu import CpuMeter, postgres_backend_pids
from bench.enroll import serve
from bootstrap.runtime import Runtime
from bootstrap.secrets.embedded import EmbeddedKeystoreWarning
from bootstrap.services.config import ProfileSpec
from bootstrap.store.models import DeviceRow
from pki.tpm import Credential
from tests.support.tpm import SoftTpm, TpmMaker
from tests.tpm.device import CHALLENGE, ENROLL, TpmDevice, b64, chain_der

PROFILE = "bench-tpm"
DEV = "IMEI:359999999999999"


def _post(base: str, context: ssl.SSLContext, path: str, body: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(base + path, data=json.dumps(body).encode(), method="POST",  # noqa: S310
                                     headers={"content-type": "application/json"})
    with urllib.request.urlopen(request, context=context, timeout=120) as response:  # noqa: S310
        answer: dict[str, Any] = json.loads(response.read())
        return answer


def run(enrollments: int, database_url: str, ceiling_seconds: float) -> dict[str, Any]:
    """Enroll one swtpm device ``enrollments`` times; return the row."""
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

            with serve(database_url, 1, prepare) as server:
                base = f"https://{server.authority}"
                context = ssl.create_default_context(cadata=server.root_pem)
                round1 = device.round1(chain=chain_der([maker.intermediate]))
                attest, signature = tpm.certify(device.key, device.ak)
                template = device.round2({"challenge": ""}, b"")
                template.update(certify_info=b64(attest), signature=b64(signature))
                server_cpu = CpuMeter([server.process.pid])
                database_cpu = CpuMeter(lambda: postgres_backend_pids(database_url), trees=False)
                server_cpu.start()
                database_cpu.start()
                for _ in range(enrollments):
                    answer = _post(base, context, CHALLENGE, round1)
                    credential = Credential(base64.b64decode(answer["credential_blob"]),
                                            base64.b64decode(answer["encrypted_secret"]))
                    secret = tpm.activate(device.ak, device.ek, credential.tpm2_tools_file())
                    _post(base, context, ENROLL, {**template, "challenge": answer["challenge"],
                                                  "secret": b64(secret)})
                cpu = server_cpu.read() + (database_cpu.read() if database_url.startswith("postgresql") else 0.0)
        finally:
            tpm.close()
    bare = ceiling(ceiling_seconds)
    per_enrollment = cpu / enrollments
    per_certificate = bare.cpu_seconds / bare.certificates
    return {"channel": "tpm (round 1 + round 2)", "enrollments": enrollments,
            "server_cpu_ms_per_enrollment": round(per_enrollment * 1000, 2),
            "ceiling_cpu_ms_per_certificate": round(per_certificate * 1000, 3),
            "cpu_ratio": round(per_certificate / per_enrollment, 4)}


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
