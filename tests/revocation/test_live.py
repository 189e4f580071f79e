"""OCSP and CRLs end to end: the real server, ``openssl ocsp``/``crl``/``verify``, curl, a stdlib TLS server."""

from __future__ import annotations

import base64
import json
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from pathlib import Path
from urllib.parse import quote

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp

from tests.est.live import LiveServer, live_server, make_ca, make_leaf
from tests.revocation.helpers import CERT_ID_HASH, openssl


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with live_server(tmp_path_factory.mktemp("pkix-live")) as live:
        (live.files / "chain.pem").write_bytes(live.issuing_pem.read_bytes() + live.root_pem.read_bytes())
        yield live


@dataclass(frozen=True)
class Leaf:
    cert: Path
    key: Path
    serial: str
    chain: Path


def issue_device(server: LiveServer, folder: Path, dev_id: str) -> Leaf:
    """Key and CSR from ``openssl req``, certificate from ``dmboot cert issue`` (a separate process)."""
    key, csr = folder / f"{dev_id}.key", folder / f"{dev_id}.csr"
    openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", key,
            "-subj", f"/CN={dev_id}", "-out", csr)
    chain = folder / f"{dev_id}-chain.pem"
    issued = json.loads(server.dmboot("cert", "issue", "--csr", str(csr), "--cert-profile", "device",
                                      "--out", str(chain), "--json").stdout)
    cert = folder / f"{dev_id}.pem"
    cert.write_bytes(x509.load_pem_x509_certificates(chain.read_bytes())[0].public_bytes(Encoding.PEM))
    return Leaf(cert, key, issued["serial"], chain)


def openssl_ocsp(server: LiveServer, leaf: Path, *extra: str | Path, issuer: Path | None = None) -> str:
    result = openssl("ocsp", "-issuer", issuer or server.issuing_pem, "-cert", leaf, "-url", f"{server.url}/ocsp",
                     "-CAfile", server.root_pem, *extra, check=False)
    return result.stdout + result.stderr


def fetch_crl(server: LiveServer, folder: Path, name: str = "issuing-1") -> Path:
    result = server.curl(f"/crl/{name}.crl")
    assert result.status == 200 and result.headers["content-type"] == "application/pkix-crl", result.text
    der = folder / f"{name}.crl"
    der.write_bytes(result.body)
    pem = folder / f"{name}.crl.pem"
    openssl("crl", "-inform", "DER", "-in", der, "-out", pem)
    return pem


# -- OCSP ---------------------------------------------------------------------------------------


def test_openssl_ocsp_good_then_revoked(server: LiveServer, tmp_path: Path) -> None:
    leaf = issue_device(server, tmp_path, "IMEI:410000000000001")
    before = openssl_ocsp(server, leaf.cert)
    assert "Response verify OK" in before and f"{leaf.cert}: good" in before, before
    revoked = server.dmboot("cert", "revoke", leaf.serial, "--reason", "keyCompromise").stdout
    assert f"revoked {leaf.serial} (keyCompromise)" in revoked and "published CRL" in revoked
    after = openssl_ocsp(server, leaf.cert)
    assert "Response verify OK" in after and f"{leaf.cert}: revoked" in after, after
    assert "Reason: keyCompromise" in after
    again = server.dmboot("cert", "revoke", leaf.serial, "--reason", "keyCompromise", check=False)
    assert again.returncode == 1 and "was revoked on" in again.stderr


def test_ocsp_get_post_caching_and_nonce(server: LiveServer, tmp_path: Path) -> None:
    leaf = issue_device(server, tmp_path, "IMEI:410000000000002")
    cert = x509.load_pem_x509_certificate(leaf.cert.read_bytes())
    issuer = x509.load_pem_x509_certificate(server.issuing_pem.read_bytes())
    plain = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, CERT_ID_HASH).build().public_bytes(Encoding.DER)
    encoded = quote(base64.b64encode(plain).decode(), safe="")
    got = server.curl(f"/ocsp/{encoded}")
    assert got.status == 200 and got.headers["content-type"] == "application/ocsp-response"
    assert "max-age=" in got.headers["cache-control"] and "public" in got.headers["cache-control"]
    answer = ocsp.load_der_ocsp_response(got.body)
    assert answer.certificate_status is ocsp.OCSPCertStatus.GOOD
    # RFC 5019 6.2: Last-Modified is thisUpdate; Expires is nextUpdate. A pre-signed response is reused.
    assert parsedate_to_datetime(got.headers["last-modified"]) == answer.this_update_utc
    assert parsedate_to_datetime(got.headers["expires"]) == answer.next_update_utc
    again = server.curl(f"/ocsp/{encoded}")
    assert again.body == got.body and again.headers["last-modified"] == got.headers["last-modified"]
    nonced = (ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, CERT_ID_HASH)
              .add_extension(x509.OCSPNonce(b"z" * 32), critical=False).build().public_bytes(Encoding.DER))
    posted = server.curl("/ocsp", "-H", "Content-Type: application/ocsp-request", data=nonced)
    assert posted.headers["cache-control"] == "no-store"
    response = ocsp.load_der_ocsp_response(posted.body)
    assert response.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce == b"z" * 32


def test_ocsp_for_a_foreign_issuer_is_unauthorized(server: LiveServer, tmp_path: Path) -> None:
    ca, ca_key = make_ca("Foreign Issuing CA")
    leaf, _ = make_leaf(ca, ca_key, "IMEI:410000000000003")
    (tmp_path / "foreign-ca.pem").write_bytes(ca.public_bytes(Encoding.PEM))
    (tmp_path / "foreign.pem").write_bytes(leaf.public_bytes(Encoding.PEM))
    printed = openssl_ocsp(server, tmp_path / "foreign.pem", issuer=tmp_path / "foreign-ca.pem")
    assert "Responder Error: unauthorized (6)" in printed, printed


@pytest.mark.parametrize(("path", "args", "body"), [
    ("/ocsp", ("-H", "Content-Type: application/ocsp-request"), b"\x30\x03\x02\x01\x05"),
    ("/ocsp/bm90IGFuIE9DU1AgcmVxdWVzdA%3D%3D", (), None),
    ("/ocsp/%%%", (), None),
], ids=["post-garbage", "get-not-ocsp", "get-not-base64"])
def test_malformed_ocsp_requests(server: LiveServer, path: str, args: tuple[str, ...], body: bytes | None) -> None:
    result = server.curl(path, *args, data=body)
    assert result.status == 200 and result.headers["x-ocsp-response-status"] == "malformedRequest"
    assert ocsp.load_der_ocsp_response(result.body).response_status is ocsp.OCSPResponseStatus.MALFORMED_REQUEST


def test_ocsp_post_needs_its_content_type(server: LiveServer) -> None:
    result = server.curl("/ocsp", "-H", "Content-Type: text/plain", data=b"hello")
    assert result.status == 415 and "application/ocsp-request" in json.loads(result.body)["detail"]


# -- CRLs ---------------------------------------------------------------------------------------


def test_crl_verifies_lists_the_serial_and_openssl_verify_refuses(server: LiveServer, tmp_path: Path) -> None:
    good = issue_device(server, tmp_path, "IMEI:420000000000001")
    bad = issue_device(server, tmp_path, "IMEI:420000000000002")
    server.dmboot("cert", "revoke", bad.serial, "--reason", "superseded")
    crl = fetch_crl(server, tmp_path)
    checked = openssl("crl", "-in", crl, "-noout", "-text", "-verify", "-CAfile", server.files / "chain.pem")
    assert "verify OK" in checked.stdout + checked.stderr
    listed = checked.stdout.replace(":", "").upper()
    assert bad.serial.upper() in listed and good.serial.upper() not in listed
    # The complete CRL: no issuingDistributionPoint, so it applies to every certificate of the CA
    # (partitioned or not); partitions carry one (test_crl_chain.py).
    assert "Superseded" in checked.stdout and "Issuing Distribution Point" not in checked.stdout
    refused = openssl("verify", "-crl_check", "-CAfile", server.root_pem, "-untrusted", server.issuing_pem,
                      "-CRLfile", crl, bad.cert, check=False)
    assert refused.returncode != 0 and "certificate revoked" in refused.stdout + refused.stderr
    accepted = openssl("verify", "-crl_check", "-CAfile", server.root_pem, "-untrusted", server.issuing_pem,
                       "-CRLfile", crl, good.cert)
    assert ": OK" in accepted.stdout


def test_crl_http_caching_and_delta(server: LiveServer, tmp_path: Path) -> None:
    first = server.curl("/crl/issuing-1.crl")
    etag = first.headers["etag"]
    assert "max-age=" in first.headers["cache-control"] and first.headers["expires"]
    unchanged = server.curl("/crl/issuing-1.crl", "-H", f"If-None-Match: {etag}")
    assert unchanged.status == 304 and unchanged.body == b""
    delta = server.curl("/crl/issuing-1-delta.crl")
    assert delta.status == 200 and delta.headers["content-type"] == "application/pkix-crl"
    parsed = x509.load_der_x509_crl(delta.body)
    assert parsed.extensions.get_extension_for_class(x509.DeltaCRLIndicator).critical
    root = server.curl("/crl/root.crl")
    assert root.status == 200 and len(x509.load_der_x509_crl(root.body)) == 0
    missing = server.curl("/crl/nope.crl")
    assert missing.status == 404 and missing.headers["content-type"] == "application/problem+json"


def test_stdlib_tls_server_with_the_crl_refuses_the_revoked_device(server: LiveServer, tmp_path: Path) -> None:
    """A DM server built on Python's ssl, loaded with our CRL, refuses a revoked device's handshake."""
    good = issue_device(server, tmp_path, "IMEI:430000000000001")
    bad = issue_device(server, tmp_path, "IMEI:430000000000002")
    server.dmboot("cert", "revoke", "--device", "IMEI:430000000000002", "--reason", "keyCompromise", "--yes")
    crl = fetch_crl(server, tmp_path)
    # The DM server's own certificate, from our CA.
    key = tmp_path / "dm.key"
    openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", key,
            "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost", "-out", tmp_path / "dm.csr")
    server.dmboot("cert", "issue", "--csr", str(tmp_path / "dm.csr"), "--cert-profile", "dm-server",
                  "--out", str(tmp_path / "dm-chain.pem"))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "dm-chain.pem", key)
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(cafile=str(server.root_pem))
    context.load_verify_locations(cafile=str(crl))  # the CRL goes into the same X509_STORE
    context.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF
    assert _handshake(context, server.root_pem, good) == "ok"
    outcome = _handshake(context, server.root_pem, bad)
    assert "certificate revoked" in outcome, outcome


def _handshake(server_context: ssl.SSLContext, root: Path, leaf: Leaf) -> str:
    """One TLS handshake of ``leaf`` (as client, with its chain) against ``server_context``; the server's verdict."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    verdict: list[str] = []

    def serve() -> None:
        connection, _ = listener.accept()
        try:
            with server_context.wrap_socket(connection, server_side=True) as tls:
                tls.sendall(b"hello")
                verdict.append("ok")
        except (ssl.SSLError, OSError) as exc:
            verdict.append(str(exc))
        finally:
            listener.close()

    thread = threading.Thread(target=serve)
    thread.start()
    client = ssl.create_default_context(cafile=str(root))
    client.load_cert_chain(leaf.chain, leaf.key)
    try:
        with socket.create_connection(("127.0.0.1", port)) as raw, \
                client.wrap_socket(raw, server_hostname="localhost") as tls:
            tls.recv(5)
    except (ssl.SSLError, OSError):
        pass  # the server's alert; its own verdict is what counts
    thread.join()
    return verdict[0]


def test_two_certids_in_one_request_are_malformed_not_a_500(server: LiveServer, tmp_path: Path) -> None:
    first = issue_device(server, tmp_path, "IMEI:410000000000011")
    second = issue_device(server, tmp_path, "IMEI:410000000000012")
    printed = openssl_ocsp(server, first.cert, "-cert", second.cert)
    # RFC 5019 2.1.1: one certificate per request; openssl reports the error status it got.
    assert "Responder Error: malformedrequest (1)" in printed.lower() or \
        "responder error: malformedrequest" in printed.lower(), printed


def _get_path_for(server: LiveServer, leaf: Leaf) -> str:
    """The URL-encoded base64 OCSP GET request for ``leaf``, without a nonce."""
    cert = x509.load_pem_x509_certificate(leaf.cert.read_bytes())
    issuer = x509.load_pem_x509_certificate(server.issuing_pem.read_bytes())
    plain = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, CERT_ID_HASH).build().public_bytes(Encoding.DER)
    return quote(base64.b64encode(plain).decode(), safe="")


def test_reused_ocsp_response_is_last_modified_at_its_this_update(server: LiveServer, tmp_path: Path) -> None:
    encoded = _get_path_for(server, issue_device(server, tmp_path, "IMEI:410000000000013"))
    server.curl(f"/ocsp/{encoded}")
    time.sleep(1.1)  # a second later, the reused response still says when it was produced
    again = server.curl(f"/ocsp/{encoded}")
    this_update = ocsp.load_der_ocsp_response(again.body).this_update_utc
    assert parsedate_to_datetime(again.headers["last-modified"]) == this_update
    next_update = ocsp.load_der_ocsp_response(again.body).next_update_utc
    assert parsedate_to_datetime(again.headers["expires"]) == next_update
    assert again.headers["etag"]
