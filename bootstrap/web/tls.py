"""TLS details for the app: the client certificate, under uvicorn or behind a proxy.

uvicorn does not fill the ASGI ``tls`` scope extension, so
:class:`ClientCertH11Protocol` does: after the handshake it reads the peer
certificate and the ``tls-unique`` channel binding (RFC 5929; TLS 1.2 only, used
by EST, RFC 7030 3.5) and adds them to every request's scope on that connection.

The server asks for a client certificate but does not require one
(CERT_OPTIONAL): devices enrolling with a token have none. OpenSSL still checks
a presented certificate against the trust store built by :func:`ssl_context_factory`
- our CAs plus the manufacturer CAs admins trust - and the app checks it again
against the current database state, which is authoritative.

Behind a TLS-terminating proxy, the proxy forwards the certificate in a header
(nginx: ``$ssl_client_escaped_cert``); it is believed only from ``trusted_proxies``.
"""

from __future__ import annotations

import logging
import ssl
import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

from cryptography import x509
from starlette.requests import HTTPConnection
from starlette.types import Receive, Scope, Send
from uvicorn.config import Config
from uvicorn.protocols.http.h11_impl import H11Protocol

__all__ = ["ClientCertH11Protocol", "TlsInfo", "client_certificate", "ssl_context_factory", "tls_info"]

log = logging.getLogger(__name__)

_TLS_VERSIONS = {"TLSv1.2": 0x0303, "TLSv1.3": 0x0304}
#: Seconds between reloads of the client-certificate trust store from the database.
TRUST_RELOAD_SECONDS = 30.0


class TlsInfo(dict[str, Any]):
    """The ASGI ``tls`` extension (client_cert_chain, tls_version) plus ``tls_unique``."""


class ClientCertH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, adding the ASGI ``tls`` extension to each request."""

    def connection_made(self, transport: Any) -> None:  # asyncio.Transport
        super().connection_made(transport)
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is None:
            return
        info = _connection_info(ssl_object)
        inner = self.app

        async def app_with_tls(scope: Scope, receive: Receive, send: Send) -> None:
            scope.setdefault("extensions", {})["tls"] = info
            await inner(scope, receive, send)

        self.app = app_with_tls


def _connection_info(ssl_object: ssl.SSLObject) -> TlsInfo:
    der = ssl_object.getpeercert(binary_form=True)
    chain = [ssl.DER_cert_to_PEM_cert(der)] if der else []
    try:
        unique = ssl_object.get_channel_binding("tls-unique")
    except (ValueError, ssl.SSLError):
        unique = None
    return TlsInfo(
        server_cert=None,
        client_cert_chain=chain,
        client_cert_name=None,
        client_cert_error=None,
        tls_version=_TLS_VERSIONS.get(ssl_object.version() or ""),
        cipher_suite=None,
        tls_unique=unique,
    )


def tls_info(connection: HTTPConnection) -> dict[str, Any] | None:
    """The ``tls`` extension of the request, if the connection was TLS to us."""
    extensions = connection.scope.get("extensions") or {}
    info = extensions.get("tls")
    return info if isinstance(info, dict) else None


def client_certificate(
    connection: HTTPConnection, *, trusted_proxies: tuple[str, ...] = (), header: str = "x-ssl-client-cert"
) -> x509.Certificate | None:
    """The client's certificate: from our own TLS, or from a trusted proxy's header.

    The certificate has passed OpenSSL's chain check when it came over our TLS; a
    proxy's header is taken as the proxy's word. Callers verify the chain against
    the trust anchors that apply to them in either case.
    """
    info = tls_info(connection)
    if info and info.get("client_cert_chain"):
        return x509.load_pem_x509_certificate(str(info["client_cert_chain"][0]).encode())
    peer = connection.client.host if connection.client else None
    forwarded = connection.headers.get(header)
    if forwarded and peer is not None and peer in trusted_proxies:
        try:
            return x509.load_pem_x509_certificate(unquote(forwarded).encode())
        except ValueError:
            log.warning("unparseable client certificate header from proxy %s", peer)
    return None


#: OpenSSL cipher string for TLS 1.2: ECDHE with AES-GCM or ChaCha20-Poly1305.
TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"


def ssl_context_factory(
    trust_pems: Callable[[], str],
) -> Callable[[Config, Callable[[], ssl.SSLContext]], ssl.SSLContext]:
    """A uvicorn ``ssl_context_factory`` asking for optional client certificates.

    ``trust_pems`` returns the PEM bundle of CAs whose client certificates the TLS
    layer accepts; it is called now and every TRUST_RELOAD_SECONDS, so a manufacturer
    CA an admin adds is accepted without a restart. (OpenSSL can add anchors to a live
    context but not remove them: removal is enforced by the app's own check.)
    """

    def factory(config: Config, default: Callable[[], ssl.SSLContext]) -> ssl.SSLContext:
        context = default()
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        # TLS 1.2: forward-secret AEAD suites only, no CBC (TLS 1.3 suites are AEAD already).
        context.set_ciphers(TLS12_CIPHERS)
        context.verify_mode = ssl.CERT_OPTIONAL
        _load_trust(context, trust_pems)
        _start_reloader(context, trust_pems)
        return context

    return factory


def _load_trust(context: ssl.SSLContext, trust_pems: Callable[[], str]) -> None:
    try:
        bundle = trust_pems()
        if bundle.strip():
            context.load_verify_locations(cadata=bundle)
    except Exception as exc:  # keep serving with the trust store we have
        log.warning("could not load client-certificate trust anchors: %s", exc)


def _start_reloader(context: ssl.SSLContext, trust_pems: Callable[[], str]) -> None:
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(TRUST_RELOAD_SECONDS):
            _load_trust(context, trust_pems)

    threading.Thread(target=loop, name="tls-trust-reload", daemon=True).start()
