"""Real mutual-TLS handshakes (stdlib ssl over 127.0.0.1) with certificates issued here.

The server requires a client certificate and trusts only the root; both sides send
leaf + issuing CA. The handshakes that must fail are asserted on the side that
detects the problem, and the other side must fail too.
"""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from pki.authority import IssuedCertificate
from pki.identity import device_uri
from pki.keys import KeyType, PrivateKey
from tests.pki.helpers import DEV_ID, Hierarchy, cached_key, write_key, write_pem

#: Socket timeout, so a broken handshake fails the test instead of hanging it.
TIMEOUT = 10.0

# X509_V_ERR_* codes reported in SSLCertVerificationError.verify_code.
CERT_HAS_EXPIRED = 10
UNABLE_TO_GET_ISSUER_CERT_LOCALLY = 20
INVALID_PURPOSE = 26


@dataclass
class Side:
    """What one end of the connection saw."""

    error: Exception | None = None
    received: bytes = b""
    peer: dict[str, Any] = field(default_factory=dict)
    version: str | None = None


def _context(
    purpose: ssl.Purpose, tmp_path: Path, name: str, trust: Hierarchy,
    issued: IssuedCertificate | None, key: PrivateKey | None,
) -> ssl.SSLContext:
    context = ssl.create_default_context(purpose, cafile=str(write_pem(tmp_path / f"{name}-trust.pem", trust.root)))
    context.verify_mode = ssl.CERT_REQUIRED
    context.verify_flags |= ssl.VERIFY_X509_STRICT
    if issued is not None and key is not None:
        chain = tmp_path / f"{name}-chain.pem"
        chain.write_text(issued.chain_pem)  # leaf + issuing CA
        context.load_cert_chain(chain, write_key(tmp_path / f"{name}-key.pem", key))
    return context


def server_context(
    tmp_path: Path, trust: Hierarchy, issued: IssuedCertificate, key: PrivateKey
) -> ssl.SSLContext:
    # Purpose.CLIENT_AUTH: a server-side context, so OpenSSL checks client certificates for sslclient.
    return _context(ssl.Purpose.CLIENT_AUTH, tmp_path, "server", trust, issued, key)


def client_context(
    tmp_path: Path, trust: Hierarchy, issued: IssuedCertificate | None, key: PrivateKey | None
) -> ssl.SSLContext:
    return _context(ssl.Purpose.SERVER_AUTH, tmp_path, "client", trust, issued, key)


def handshake(
    server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext, server_hostname: str = "localhost"
) -> tuple[Side, Side]:
    """Connect, exchange pong/ping, and report what (server, client) saw."""
    server, client = Side(), Side()
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(TIMEOUT)
        port = listener.getsockname()[1]

        def serve() -> None:
            try:
                conn, _ = listener.accept()
                with conn:
                    conn.settimeout(TIMEOUT)
                    with server_ctx.wrap_socket(conn, server_side=True) as tls:
                        server.peer = tls.getpeercert() or {}
                        server.version = tls.version()
                        tls.sendall(b"pong")
                        server.received = tls.recv(4)
            except Exception as exc:  # recorded and asserted by the test
                server.error = exc

        thread = threading.Thread(target=serve, name="tls-server", daemon=True)
        thread.start()
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as raw:
                with client_ctx.wrap_socket(raw, server_hostname=server_hostname) as tls:
                    client.peer = tls.getpeercert() or {}
                    client.version = tls.version()
                    # Under TLS 1.3 the server judges the client certificate after the client's
                    # handshake has returned: its verdict (an alert) arrives here. The client sends
                    # nothing before it, so a refusing server closes with no unread data (no RST
                    # that could discard the alert).
                    client.received = tls.recv(4)
                    tls.sendall(b"ping")
        except Exception as exc:
            client.error = exc
        thread.join(3 * TIMEOUT)
        assert not thread.is_alive(), "TLS server thread did not finish"
    return server, client


def _assert_ok(side: Side) -> None:
    assert side.error is None, repr(side.error)


def _assert_verify_failed(side: Side, code: int, message: str) -> None:
    assert isinstance(side.error, ssl.SSLCertVerificationError), repr(side.error)
    assert side.error.verify_code == code, side.error.verify_message
    assert message in side.error.verify_message


def _assert_failed_too(side: Side) -> None:
    """The side that did not detect the problem still fails: alert or handshake error."""
    assert isinstance(side.error, ssl.SSLError | ConnectionError), repr(side.error)
    assert side.received != b"pong" and side.received != b"ping"


# -- the handshake that must succeed ------------------------------------------------------------


@pytest.mark.parametrize("server_hostname", ["localhost", "127.0.0.1"])
@pytest.mark.parametrize("tls_version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3], ids=["tls12", "tls13"])
@pytest.mark.parametrize(
    ("ca_key_type", "leaf_key_type"),
    [
        pytest.param(KeyType.P256, KeyType.P256, id="p256"),
        pytest.param(KeyType.P384, KeyType.P384, id="p384"),
        pytest.param(KeyType.ED25519, KeyType.ED25519, id="ed25519"),
        pytest.param(KeyType.RSA2048, KeyType.RSA2048, id="rsa2048"),
        pytest.param(KeyType.RSA4096, KeyType.P256, id="rsa4096-ca-p256-leaves"),
    ],
)
def test_mutual_tls_succeeds(
    tmp_path: Path, hierarchies: Callable[[KeyType], Hierarchy], ca_key_type: KeyType, leaf_key_type: KeyType,
    tls_version: ssl.TLSVersion, server_hostname: str,
) -> None:
    hierarchy = hierarchies(ca_key_type)
    server_key, device_key = cached_key(leaf_key_type, "tls-server"), cached_key(leaf_key_type, "tls-device")
    server_cert = hierarchy.issue("dm-server", key=server_key)
    device_cert = hierarchy.issue("device", key=device_key)
    server_ctx = server_context(tmp_path, hierarchy, server_cert, server_key)
    client_ctx = client_context(tmp_path, hierarchy, device_cert, device_key)
    client_ctx.minimum_version = client_ctx.maximum_version = tls_version

    server, client = handshake(server_ctx, client_ctx, server_hostname)

    _assert_ok(server)
    _assert_ok(client)
    assert (server.received, client.received) == (b"ping", b"pong")
    assert server.version == client.version == {ssl.TLSVersion.TLSv1_2: "TLSv1.2", ssl.TLSVersion.TLSv1_3: "TLSv1.3"}[
        tls_version
    ]
    assert server.peer["subject"] == ((("commonName", DEV_ID),),)
    assert server.peer["subjectAltName"] == (("URI", device_uri(DEV_ID)),)
    assert ("DNS", "localhost") in client.peer["subjectAltName"]
    assert ("IP Address", "127.0.0.1") in client.peer["subjectAltName"]


# -- handshakes that must fail ------------------------------------------------------------------


def test_client_trusting_another_ca_refuses_the_server(
    tmp_path: Path, hierarchy: Hierarchy, other_hierarchy: Hierarchy
) -> None:
    key = cached_key(KeyType.P256)
    server_ctx = server_context(tmp_path, hierarchy, hierarchy.issue("dm-server", key=key), key)
    client_ctx = client_context(tmp_path, other_hierarchy, hierarchy.issue("device", key=key), key)

    server, client = handshake(server_ctx, client_ctx)

    _assert_verify_failed(client, UNABLE_TO_GET_ISSUER_CERT_LOCALLY, "unable to get local issuer certificate")
    _assert_failed_too(server)
    assert "unknown ca" in str(server.error)


def test_server_trusting_another_ca_refuses_the_client(
    tmp_path: Path, hierarchy: Hierarchy, other_hierarchy: Hierarchy
) -> None:
    key = cached_key(KeyType.P256)
    server_ctx = server_context(tmp_path, other_hierarchy, other_hierarchy.issue("dm-server", key=key), key)
    client_ctx = client_context(tmp_path, other_hierarchy, hierarchy.issue("device", key=key), key)

    server, client = handshake(server_ctx, client_ctx)

    _assert_verify_failed(server, UNABLE_TO_GET_ISSUER_CERT_LOCALLY, "unable to get local issuer certificate")
    _assert_failed_too(client)
    assert "unknown ca" in str(client.error)


def test_expired_server_certificate_is_refused(tmp_path: Path, old_hierarchy: Hierarchy) -> None:
    key = cached_key(KeyType.P256)
    expired = old_hierarchy.issue("dm-server", key=key, now=datetime.now(UTC) - timedelta(days=2 * 365))
    assert expired.certificate.not_valid_after_utc < datetime.now(UTC)
    server_ctx = server_context(tmp_path, old_hierarchy, expired, key)
    client_ctx = client_context(tmp_path, old_hierarchy, old_hierarchy.issue("device", key=key), key)

    server, client = handshake(server_ctx, client_ctx)

    _assert_verify_failed(client, CERT_HAS_EXPIRED, "certificate has expired")
    _assert_failed_too(server)
    assert "certificate expired" in str(server.error)


def test_expired_client_certificate_is_refused(tmp_path: Path, old_hierarchy: Hierarchy) -> None:
    key = cached_key(KeyType.P256)
    expired = old_hierarchy.issue("device", key=key, now=datetime.now(UTC) - timedelta(days=2 * 365))
    assert expired.certificate.not_valid_after_utc < datetime.now(UTC)
    server_ctx = server_context(tmp_path, old_hierarchy, old_hierarchy.issue("dm-server", key=key), key)
    client_ctx = client_context(tmp_path, old_hierarchy, expired, key)

    server, client = handshake(server_ctx, client_ctx)

    _assert_verify_failed(server, CERT_HAS_EXPIRED, "certificate has expired")
    _assert_failed_too(client)
    assert "certificate expired" in str(client.error)


def test_server_certificate_used_as_client_certificate_is_refused(tmp_path: Path, hierarchy: Hierarchy) -> None:
    key = cached_key(KeyType.P256)
    server_cert = hierarchy.issue("dm-server", key=key)  # serverAuth only
    server_ctx = server_context(tmp_path, hierarchy, server_cert, key)
    client_ctx = client_context(tmp_path, hierarchy, server_cert, key)

    server, client = handshake(server_ctx, client_ctx)

    # OpenSSL 3 words X509_V_ERR_INVALID_PURPOSE "unsuitable", 1.1 "unsupported certificate purpose".
    _assert_verify_failed(server, INVALID_PURPOSE, "certificate purpose")
    _assert_failed_too(client)
    assert "unsupported certificate" in str(client.error)


def test_device_certificate_used_as_server_certificate_is_refused(tmp_path: Path, hierarchy: Hierarchy) -> None:
    key = cached_key(KeyType.P256)
    device_cert = hierarchy.issue("device", key=key)  # clientAuth only
    server_ctx = server_context(tmp_path, hierarchy, device_cert, key)
    client_ctx = client_context(tmp_path, hierarchy, device_cert, key)

    server, client = handshake(server_ctx, client_ctx)

    _assert_verify_failed(client, INVALID_PURPOSE, "certificate purpose")
    _assert_failed_too(server)
    assert "unsupported certificate" in str(server.error)


def test_client_without_a_certificate_is_refused(tmp_path: Path, hierarchy: Hierarchy) -> None:
    key = cached_key(KeyType.P256)
    server_ctx = server_context(tmp_path, hierarchy, hierarchy.issue("dm-server", key=key), key)
    client_ctx = client_context(tmp_path, hierarchy, None, None)

    server, client = handshake(server_ctx, client_ctx)

    assert isinstance(server.error, ssl.SSLError), repr(server.error)
    assert "peer did not return a certificate" in str(server.error)
    _assert_failed_too(client)
    assert "certificate required" in str(client.error)


def test_server_name_outside_the_san_is_refused(tmp_path: Path, hierarchy: Hierarchy) -> None:
    key = cached_key(KeyType.P256)
    server_ctx = server_context(tmp_path, hierarchy, hierarchy.issue("dm-server", key=key), key)
    client_ctx = client_context(tmp_path, hierarchy, hierarchy.issue("device", key=key), key)

    server, client = handshake(server_ctx, client_ctx, server_hostname="dm.elsewhere.test")

    assert isinstance(client.error, ssl.SSLCertVerificationError), repr(client.error)
    assert "Hostname mismatch" in client.error.verify_message
    _assert_failed_too(server)
