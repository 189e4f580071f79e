"""OCSP responses per second through the responder service, against an OCSP signing ceiling.

Rows (medians of ``--runs`` interleaved runs, each a warm-up then ``--seconds``):

- ``ceiling (cryptography)``: a bare cryptography loop - load the DER request, build a
  response by hash for it (good, nonce echoed, responder ID by key hash, the responder
  certificate included) and sign it with a P-256 key: what one core can sign;
- ``library (pki.ocsp)``: ``parse_request`` + ``build_response`` with the delegated
  responder (no database);
- ``service, nonce``: ``OcspResponder.respond`` - parse, find the issuer, read the
  certificate's status from the database, sign a fresh response (every request carries
  a 32-octet nonce, so nothing can be reused);
- ``service, no nonce``: the same requests without nonces: the responder reuses a
  response signed in the last 5 minutes while the status in the database is unchanged
  (RFC 5019), so this is a status lookup per request.

Also printed: the issuance ceiling of bench/ceiling.py for context (certificates/s).
Single process, single thread (one of the two cores). Requests ask about a pool of
issued certificates, a tenth of them revoked.

Run from the repo root: ``.venv/bin/python -m bench.ocsp [--database-url postgresql://127.0.0.1:5432/test]``.
"""

from __future__ import annotations

import argparse
import secrets
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp

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
from pki.ocsp import CertStatus, build_response, parse_request
from pki.profiles import PROFILES, Names
from pki.signers import LocalSigner

REQUESTER = Requester("bench:ocsp")
CERT_ID_HASH = hashes.SHA1()  # noqa: S303 - the CertID hash openssl and RFC 5019 clients use


def _pool(runtime: Runtime, size: int) -> tuple[list[x509.Certificate], x509.Certificate]:
    """``size`` issued device certificates (a tenth revoked) and their issuer."""
    certificates = []
    for i, csr in enumerate(make_device_csrs(size, prefix="IMEI:36")):
        issued = runtime.issuance.issue_from_csr(csr, "device", REQUESTER)
        certificates.append(issued.certificate)
        if i % 10 == 0:
            runtime.revocation.revoke_certificate(issued.serial_hex, "keyCompromise", REQUESTER)
    return certificates, issued.chain[0]


def _requests(certificates: Sequence[x509.Certificate], issuer: x509.Certificate, *, nonce: bool) -> list[bytes]:
    out = []
    for cert in certificates:
        builder = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, CERT_ID_HASH)
        if nonce:
            builder = builder.add_extension(x509.OCSPNonce(secrets.token_bytes(32)), critical=False)
        out.append(builder.build().public_bytes(Encoding.DER))
    return out


class _Ceiling:
    """Sign OCSP responses with cryptography alone (the work no responder can avoid)."""

    def __init__(self, issuer: x509.Certificate, requests: Sequence[bytes]) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.responder = _responder_cert(issuer, self.key)
        self.requests = requests

    def step(self, i: int) -> object:
        request = ocsp.load_der_ocsp_request(self.requests[i % len(self.requests)])
        now = datetime.now(UTC).replace(microsecond=0)
        builder = (
            ocsp.OCSPResponseBuilder()
            .add_response_by_hash(request.issuer_name_hash, request.issuer_key_hash, request.serial_number,
                                  request.hash_algorithm, ocsp.OCSPCertStatus.GOOD, now, now + timedelta(hours=1),
                                  None, None)
            .responder_id(ocsp.OCSPResponderEncoding.HASH, self.responder)
            .certificates([self.responder])
        )
        for extension in request.extensions:
            builder = builder.add_extension(extension.value, critical=False)
        return builder.sign(self.key, hashes.SHA256()).public_bytes(Encoding.DER)


def _responder_cert(issuer: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> x509.Certificate:
    """A stand-in responder certificate (self-issued by ``key``; the ceiling only signs with it)."""
    now = datetime.now(UTC)
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "bench OCSP responder")])
    return (x509.CertificateBuilder().subject_name(name).issuer_name(issuer.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now).not_valid_after(now + timedelta(days=1))
            .sign(key, hashes.SHA256()))


def _library_step(runtime: Runtime, issuer: x509.Certificate, requests: Sequence[bytes]) -> Callable[[int], object]:
    key = ec.generate_private_key(ec.SECP256R1())
    with runtime.database.session() as session:
        ca = runtime.authorities.authority(session, runtime.authorities.active_row(session))
    responder = ca.issue(key.public_key(), Names("bench OCSP responder"), PROFILES["ocsp-signer"]).certificate
    signer = LocalSigner(key)

    def step(i: int) -> object:
        query = parse_request(requests[i % len(requests)])
        now = datetime.now(UTC)
        return build_response(query, CertStatus.GOOD, responder=responder, signer=signer, this_update=now,
                              next_update=now + timedelta(hours=1))

    return step


def _service_step(runtime: Runtime, requests: Sequence[bytes]) -> Callable[[int], object]:
    def step(i: int) -> object:
        answer = runtime.ocsp.respond(requests[i % len(requests)])
        if answer.response_status != "successful":
            raise AssertionError(answer.response_status)
        return answer.der

    return step


def _meter(runtime: Runtime) -> CpuMeter | None:
    if runtime.database.is_sqlite:
        return None
    url = runtime.database.url
    return CpuMeter(lambda: postgres_backend_pids(url), trees=False)


def _row(name: str, samples: list[Sample], ceilings: list[Sample], *, db: bool) -> dict[str, Any]:
    return summary_row(name, samples, ceilings, unit="resp", db=db)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ocsp", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="measured seconds per run and path (3)")
    parser.add_argument("--warmup", type=float, default=0.5, help="untimed seconds before each run (0.5)")
    parser.add_argument("--runs", type=int, default=3, help="interleaved runs; medians are reported (3)")
    parser.add_argument("--pool", type=int, default=500, help="distinct certificates asked about (500)")
    parser.add_argument("--database-url", default="",
                        help="postgresql://host:port/db: a scratch database there; default SQLite file")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    is_pg = bool(args.database_url)
    with bench_runtime(args.database_url) as runtime:
        print_context(context_facts(database_url=args.database_url, secret_backend=runtime.settings.secrets_backend,
                                    ca_key="p256", responder_key="p256", pool=args.pool,
                                    process="1 process, 1 thread"))
        certificates, issuer = _pool(runtime, args.pool)
        nonced, plain = _requests(certificates, issuer, nonce=True), _requests(certificates, issuer, nonce=False)
        ceiling = _Ceiling(issuer, nonced)
        library = _library_step(runtime, issuer, nonced)
        service_nonce, service_plain = _service_step(runtime, nonced), _service_step(runtime, plain)
        meter = _meter(runtime)
        samples: dict[str, list[Sample]] = {"ceiling": [], "library": [], "nonce": [], "plain": []}
        for run in range(args.runs):
            offset = run * 7919
            samples["ceiling"].append(measure(ceiling.step, seconds=args.seconds, warmup=args.warmup,
                                              start_index=offset))
            samples["library"].append(measure(library, seconds=args.seconds, warmup=args.warmup, start_index=offset))
            samples["nonce"].append(measure(service_nonce, seconds=args.seconds, warmup=args.warmup, meter=meter,
                                            start_index=offset))
            samples["plain"].append(measure(service_plain, seconds=args.seconds, warmup=args.warmup, meter=meter,
                                            start_index=offset))
        issuance = CeilingBench("p256", make_device_csrs(300)).run(args.seconds, warmup=args.warmup)
    ceilings = samples["ceiling"]
    rows = [
        _row("ceiling (cryptography)", ceilings, ceilings, db=is_pg),
        _row("library (pki.ocsp)", samples["library"], ceilings, db=is_pg),
        _row("service, nonce", samples["nonce"], ceilings, db=is_pg),
        _row("service, no nonce", samples["plain"], ceilings, db=is_pg),
    ]
    summary: dict[str, Any] = {
        "bench": "ocsp", "database": "postgresql" if is_pg else "sqlite", "secret_backend": "embedded",
        "runs": args.runs, "seconds": args.seconds, "pool": args.pool,
        "ceiling_per_s": round(rows[0]["resps_per_s"], 1),
        "issuance_ceiling_certs_per_s": round(issuance.certs_per_second, 1),
    }
    for key, row in (("library", rows[1]), ("service_nonce", rows[2]), ("service_no_nonce", rows[3])):
        summary[f"{key}_per_s"] = round(row["resps_per_s"], 1)
        summary[f"{key}_throughput_ratio"] = round(row["throughput_ratio"], 3)
        summary[f"{key}_cpu_ratio"] = round(row["cpu_ratio"], 3)
    summary["elapsed_s"] = round(time.perf_counter() - started, 1)
    report(rows, summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
