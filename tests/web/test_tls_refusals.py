"""Refused TLS handshakes on a real ``dmboot serve``: the client gets an alert, the failure log names why.

Real handshakes from Python's ssl client and ``openssl s_client``: a client certificate
from a CA the service does not know, over TLS 1.3 and TLS 1.2, and a TLS 1.1 client.
What is expected comes from outside the code under test: the certificate's names and
SHA-256 are computed here from the certificate the test made, the alerts are the
ones RFC 8446 6.2 names (unknown_ca, protocol_version), as the peers report them.
"""

from __future__ import annotations

import hashlib
import re
import socket
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from bootstrap import metrics
from bootstrap.web.tls_refusals import HandshakeSeen, refusal_reason, report
from tests.est.live import LiveServer, live_server, make_ca, make_leaf, write_key
from tests.support.peers import require_peer
from tests.support.servers import poll

pytestmark = [pytest.mark.slow, pytest.mark.peers("openssl")]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with live_server(tmp_path_factory.mktemp("tls-refusals")) as running:
        yield running


@pytest.fixture(scope="module")
def stranger(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, bytes]:
    """A device certificate from a CA the service has never heard of: (cert file, key file, DER)."""
    folder = tmp_path_factory.mktemp("stranger")
    ca, ca_key = make_ca("Unknown Maker Root")
    leaf, key = make_leaf(ca, ca_key, "IMEI:356938035643809", serial_number="SN-42")
    cert_file = folder / "leaf.pem"
    cert_file.write_bytes(leaf.public_bytes(Encoding.PEM))
    return cert_file, write_key(folder / "leaf.key", key), leaf.public_bytes(Encoding.DER)


def _log_lines(server: LiveServer, needle: str) -> list[str]:
    assert server.log is not None
    return [line for line in server.log.read_text(errors="replace").splitlines() if needle in line]


def _await_line(server: LiveServer, needle: str) -> str:
    """The server's log line holding ``needle`` (it is written as the connection closes)."""
    lines = poll(lambda: _log_lines(server, needle), bool)
    assert len(lines) == 1, lines
    return lines[0]


def _python_client(server: LiveServer, cert: Path, key: Path, version: ssl.TLSVersion) -> tuple[int, str]:
    """Handshake and one request with a client certificate; (client port, what the client got)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(server.root_pem)
    context.load_cert_chain(cert, key)
    context.minimum_version = context.maximum_version = version
    port = int(server.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port)) as raw:
        local_port = int(raw.getsockname()[1])
        try:
            with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                # TLS 1.3: the server checks the client's certificate after the client's Finished,
                # so the refusal arrives on the first read.
                tls.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
                return local_port, tls.recv(1024).decode(errors="replace") or "EOF"
        except (ssl.SSLError, OSError) as exc:
            return local_port, f"{type(exc).__name__}: {exc}"


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2], ids=["tls13", "tls12"])
def test_an_unknown_issuer_gets_an_alert_and_a_log_line(server: LiveServer, stranger: tuple[Path, Path, bytes],
                                                        version: ssl.TLSVersion) -> None:
    cert, key, der = stranger
    port, got = _python_client(server, cert, key, version)

    assert "ALERT_UNKNOWN_CA" in got.upper().replace(" ", "_"), got  # the client is told why, not cut off
    line = _await_line(server, f"peer=127.0.0.1:{port} ")
    assert "TLS handshake refused" in line
    assert f"version={version.name.replace('_', '.')}" in line
    assert "reason=certificate verify failed: unable to get local issuer certificate" in line
    assert "client_subject=2.5.4.5=SN-42,CN=IMEI:356938035643809" in line or (
        "client_subject=serialNumber=SN-42,CN=IMEI:356938035643809" in line), line
    assert "client_issuer=CN=Unknown Maker Root" in line
    assert f"client_sha256={hashlib.sha256(der).hexdigest()}" in line


def test_openssl_s_client_sees_the_unknown_ca_alert(server: LiveServer, stranger: tuple[Path, Path, bytes]) -> None:
    cert, key, der = stranger
    host_port = server.url.removeprefix("https://")
    done = subprocess.run([require_peer("openssl"), "s_client", "-connect", host_port, "-CAfile", server.root_pem,
                           "-cert", cert, "-key", key, "-tls1_3", "-ign_eof"],
                          input=b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                          capture_output=True, check=False)
    said = (done.stdout + done.stderr).decode(errors="replace")
    assert re.search(r"alert unknown ca", said, re.IGNORECASE), said
    assert _log_lines(server, f"client_sha256={hashlib.sha256(der).hexdigest()}")


def test_a_tls11_client_gets_a_protocol_version_alert_and_a_log_line(server: LiveServer) -> None:
    host_port = server.url.removeprefix("https://")
    # SECLEVEL=0: Debian's OpenSSL client refuses TLS 1.1 itself otherwise.
    done = subprocess.run([require_peer("openssl"), "s_client", "-connect", host_port, "-tls1_1",
                           "-cipher", "DEFAULT@SECLEVEL=0"], input=b"", capture_output=True, check=False)
    said = (done.stdout + done.stderr).decode(errors="replace")
    assert done.returncode != 0
    assert re.search(r"alert protocol version", said, re.IGNORECASE), said
    line = _await_line(server, "version=TLSv1.1 ")
    assert "reason=unsupported protocol" in line and "client_subject" not in line


def test_report_counts_by_reason_and_version(caplog: pytest.LogCaptureFixture) -> None:
    counter = metrics.TLS_REFUSALS.labels("UNSUPPORTED_PROTOCOL", "TLSv1")
    before = counter._value.get()
    error = ssl.SSLError(1, "[SSL: UNSUPPORTED_PROTOCOL] unsupported protocol (_ssl.c:1006)")
    error.reason = "UNSUPPORTED_PROTOCOL"
    with caplog.at_level("WARNING", logger="dmboot.failures"):
        report(("::1", 4433), HandshakeSeen(offered="TLSv1"), error)
    assert counter._value.get() == before + 1
    (record,) = [r for r in caplog.records if r.name == "dmboot.failures"]
    assert record.getMessage() == "TLS handshake refused: peer=[::1]:4433 version=TLSv1 reason=unsupported protocol"
    assert refusal_reason(error) == "unsupported protocol"
