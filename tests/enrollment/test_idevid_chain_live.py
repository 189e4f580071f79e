"""IDevIDs presented as devices present them - leaf + intermediate - to a server that registered only the root.

A real ``dmboot serve`` (TLS, optional client certificates) and curl as the device:
curl sends leaf + intermediate in the TLS handshake (``--cert`` with both in one
file) and the intermediate again in ``DMBoot-Client-Chain`` (Python's ssl module
hands the app the leaf only). Refusals that OpenSSL itself makes in the handshake
(an intermediate that is not a CA) are shown as failed handshakes; refusals only the
app can make (a root disabled after start, a forwarded chain from a trusted proxy)
are 401 problem responses.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from bootstrap.dm.mo import DMACC_1_2
from bootstrap.dm.package import INITIATION_MEDIA_TYPE, REQUEST_MEDIA_TYPE, DeclaredMo, Initiation
from bootstrap.runtime import Runtime
from bootstrap.services.config import ProfileSpec
from pki.authority import fingerprint
from tests.est.live import CurlResult, LiveServer, disabling_manufacturer, live_server, write_key
from tests.support.chains import Ca, make_ca, make_leaf_and_key

pytestmark = pytest.mark.slow

DEVICES = {"chain": "IMEI:350000000000011", "dm2": "IMEI:350000000000012", "no-header": "IMEI:350000000000013",
           "retired": "IMEI:350000000000014", "not-ca": "IMEI:350000000000015", "stranger": "IMEI:350000000000016",
           "expired": "IMEI:350000000000017"}


def _pem(*certs: x509.Certificate) -> bytes:
    return b"".join(c.public_bytes(Encoding.PEM) for c in certs)


def _header(*intermediates: x509.Certificate) -> str:
    return "DMBoot-Client-Chain: " + ",".join(base64.b64encode(c.public_bytes(Encoding.DER)).decode()
                                              for c in intermediates)


def _device(files: Path, name: str, issuer: Ca, *chain: x509.Certificate) -> None:
    """``<name>.pem`` = leaf + ``chain`` (what curl presents), ``<name>.key``, ``<name>-leaf.pem``."""
    leaf, key = make_leaf_and_key(issuer, DEVICES[name])
    (files / f"{name}.pem").write_bytes(_pem(leaf, *chain))
    (files / f"{name}-leaf.pem").write_bytes(_pem(leaf))
    write_key(files / f"{name}.key", key)


def _prepare(server: LiveServer, runtime: Runtime) -> None:
    files = server.files
    runtime.config.add_server("dm-1", "DM one", "https://dm.example.net/dm", actor="test")
    runtime.config.add_profile(ProfileSpec("line-1", ("dm-1",), attestation=("idevid",),
                                           dmacc={"Perm": [DMACC_1_2]}), actor="test")
    root = make_ca("Maker Root CA")
    devices_ca = make_ca("Maker Devices CA 7", root, path_length=0)
    retired_root = make_ca("Retired Maker Root")
    retired_ca = make_ca("Retired Maker Devices CA", retired_root)
    not_ca = make_ca("Maker Devices CA 8", root, ca=False)
    stranger_root = make_ca("Stranger Root")
    stranger_ca = make_ca("Stranger Devices CA", stranger_root)
    expired_ca = make_ca("Maker Devices CA 9", root, expired=True)
    # Only roots are registered; "retired" is disabled once the server runs (disabling_manufacturer).
    runtime.config.add_manufacturer_ca("maker", _pem(root.cert).decode(), actor="test")
    runtime.config.add_manufacturer_ca("retired", _pem(retired_root.cert).decode(), actor="test")
    for name in ("chain", "dm2", "no-header"):
        _device(files, name, devices_ca, devices_ca.cert)
    _device(files, "retired", retired_ca, retired_ca.cert)
    _device(files, "not-ca", not_ca, not_ca.cert)
    _device(files, "stranger", stranger_ca, stranger_ca.cert)
    _device(files, "expired", expired_ca, expired_ca.cert)
    server.extra.update(devices_ca=devices_ca.cert, retired_ca=retired_ca.cert, not_ca=not_ca.cert,
                        stranger_ca=stranger_ca.cert, expired_ca=expired_ca.cert, root=root.cert)
    for dev_id in DEVICES.values():
        runtime.devices.register(dev_id, "line-1", actor="test")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with live_server(tmp_path_factory.mktemp("idevid-chain"), _prepare,
                     disabling_manufacturer("retired")) as live:
        yield live


def _csr(dev_id: str) -> x509.CertificateSigningRequest:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, dev_id)])
    return x509.CertificateSigningRequestBuilder().subject_name(subject).sign(ec.generate_private_key(ec.SECP256R1()),
                                                                              hashes.SHA256())


def _enroll(server: LiveServer, name: str, *args: str | Path) -> CurlResult:
    csr = _csr(DEVICES[name]).public_bytes(Encoding.PEM)
    body = json.dumps({"dev_id": DEVICES[name], "csr": csr.decode()}).encode()
    return server.curl("/api/v1/enroll", "-H", "Content-Type: application/json", *args, data=body)


def _mtls(server: LiveServer, name: str) -> tuple[str, Path, str, Path]:
    return ("--cert", server.files / f"{name}.pem", "--key", server.files / f"{name}.key")


def _cert(server: LiveServer, key: str) -> x509.Certificate:
    value = server.extra[key]
    assert isinstance(value, x509.Certificate)
    return value


def _refusal_reason(server: LiveServer, dev_id: str) -> str:
    """The reason of the device's latest refusal: the caller gets one generic 401, the audit trail the why."""
    events = [json.loads(line) for line in server.dmboot("audit", "export").stdout.splitlines()]
    refused = [e for e in events if e["target"] == dev_id and e["outcome"] == "failure"]
    assert refused, f"no refusal of {dev_id} in the audit trail"
    return str(refused[-1]["detail"]["reason"])


def test_leaf_and_intermediate_enroll_with_only_the_root_registered(server: LiveServer) -> None:
    result = _enroll(server, "chain", *_mtls(server, "chain"), "-H",
                     _header(_cert(server, "devices_ca")))
    assert result.status == 200, result.text
    issued = x509.load_pem_x509_certificate(json.loads(result.body)["certificate_chain_pem"].encode())
    assert issued.subject.rfc4514_string() == f"CN={DEVICES['chain']}"
    # The audit event names the registered root and the intermediate the path went through.
    events = [json.loads(line) for line in server.dmboot("audit", "export").stdout.splitlines()]
    [event] = [e for e in events if e["target"] == DEVICES["chain"] and e["outcome"] == "success"
               and "manufacturer_ca" in json.dumps(e["detail"])]
    assert "maker" in json.dumps(event["detail"])
    assert fingerprint(_cert(server, "devices_ca")) in json.dumps(event["detail"])


def test_dm2_package_1_with_leaf_and_intermediate(server: LiveServer) -> None:
    csr = _csr(DEVICES["dm2"]).public_bytes(Encoding.DER)
    body = Initiation(dev_id=DEVICES["dm2"], mos=(DeclaredMo(DMACC_1_2),), csr=csr).encode()
    result = server.curl("/dm/bootstrap", *_mtls(server, "dm2"), "-H", _header(_cert(server, "devices_ca")),
                         "-H", f"Content-Type: {INITIATION_MEDIA_TYPE}", "-H", f"Accept: {REQUEST_MEDIA_TYPE}",
                         "-H", f"OMADM-DevID: {DEVICES['dm2']}", data=body)
    assert result.status == 200, result.text
    assert result.headers["content-type"].startswith(REQUEST_MEDIA_TYPE)


def test_without_the_chain_header_the_app_cannot_see_the_intermediate(server: LiveServer) -> None:
    # The handshake succeeds (OpenSSL saw the intermediate); the app gets the leaf only.
    result = _enroll(server, "no-header", *_mtls(server, "no-header"))
    assert result.status == 401, result.text
    assert "not issued by a trusted manufacturer CA" in _refusal_reason(server, DEVICES["no-header"])


def test_a_chain_to_a_disabled_root_is_refused_with_401(server: LiveServer) -> None:
    result = _enroll(server, "retired", *_mtls(server, "retired"), "-H", _header(_cert(server, "retired_ca")))
    assert result.status == 401, result.text
    assert result.headers["content-type"] == "application/problem+json"


def test_an_intermediate_that_is_not_a_ca_fails_the_handshake(server: LiveServer) -> None:
    result = _enroll(server, "not-ca", *_mtls(server, "not-ca"), "-H", _header(_cert(server, "not_ca")))
    assert result.returncode != 0 and result.status == 0, result.stderr


@pytest.mark.parametrize(("name", "intermediate", "reason"), [
    ("stranger", "stranger_ca", "no trusted CA or presented intermediate is named CN=Stranger Root"),
    ("not-ca", "not_ca", "is not a CA (basicConstraints cA=FALSE)"),
    ("expired", "expired_ca", "is expired or not yet valid"),
], ids=["unregistered root", "intermediate not a CA", "expired intermediate"])
def test_forwarded_chains_that_do_not_validate_are_refused_with_401(server: LiveServer, name: str,
                                                                      intermediate: str, reason: str) -> None:
    # Behind a TLS-terminating proxy (trusted: 127.0.0.1) the leaf arrives in X-SSL-Client-Cert.
    leaf = quote((server.files / f"{name}-leaf.pem").read_text())
    result = _enroll(server, name, "-H", f"X-SSL-Client-Cert: {leaf}", "-H",
                     _header(_cert(server, intermediate)))
    assert result.status == 401, result.text
    assert reason in _refusal_reason(server, DEVICES[name])


def test_a_malformed_chain_header_is_a_401_problem(server: LiveServer) -> None:
    result = _enroll(server, "chain", *_mtls(server, "chain"), "-H", "DMBoot-Client-Chain: not base64!")
    assert result.status == 401, result.text
    assert json.loads(result.body)["field"] == "dmboot-client-chain"
