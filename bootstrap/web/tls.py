"""TLS details for the app: the client certificate, under uvicorn or behind a proxy.

uvicorn does not fill the ASGI ``tls`` scope extension, so
:class:`ClientCertHttpToolsProtocol` (uvicorn's httptools - llhttp - protocol; it
costs less per request than the pure-Python h11 one) does: after the handshake it
reads the peer certificate and the ``tls-unique`` channel binding (RFC 5929; TLS
1.2 only, used by EST, RFC 7030 3.5) once, and puts them in every request's scope
on that connection.

The server asks for a client certificate but does not require one
(CERT_OPTIONAL): devices enrolling with a token have none. OpenSSL still checks
a presented certificate against the trust store built by :func:`ssl_context_factory`
- our CAs plus the manufacturer CAs admins trust - and the app checks it again
against the current database state, which is authoritative.

Behind a TLS-terminating proxy, the proxy forwards the certificate in a header
(nginx: ``$ssl_client_escaped_cert``); it is believed only from ``trusted_proxies``.

Python's ssl module (before 3.13) gives the app the peer's leaf only, and nginx
forwards only the leaf, so a client that presents intermediate CA certificates
(an 802.1AR IDevID under a manufacturer's intermediate) sends them again in the
``DMBoot-Client-Chain`` header (:func:`client_chain`): base64 DER certificates,
comma-separated. They are untrusted input: the attestation builds and checks the
path from the leaf through them to a registered CA (pki/paths.py).
"""

from __future__ import annotations

import base64
import binascii
import logging
import ssl
import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

from cryptography import x509
from starlette.requests import HTTPConnection
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from bootstrap.errors import AuthenticationFailed
from bootstrap.web import tls_refusals
from pki.paths import MAX_INTERMEDIATES

__all__ = ["CHAIN_HEADER", "ClientCertHttpToolsProtocol", "TlsInfo", "client_certificate", "client_chain",
           "ssl_context_factory", "tls_info"]

log = logging.getLogger(__name__)

_TLS_VERSIONS = {"TLSv1.2": 0x0303, "TLSv1.3": 0x0304}
#: The request header with the CA certificates a client presents beside its own (base64 DER, comma-separated).
CHAIN_HEADER = "dmboot-client-chain"
#: Seconds between reloads of the client-certificate trust store from the database.
TRUST_RELOAD_SECONDS = 30.0


class TlsInfo(dict[str, Any]):
    """The ASGI ``tls`` extension (client_cert_chain, tls_version) plus ``tls_unique``."""


class ClientCertHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, adding the ASGI ``tls`` extension to each request."""

    _tls: TlsInfo | None = None

    def connection_made(self, transport: Any) -> None:  # asyncio.Transport
        super().connection_made(transport)
        ssl_object = transport.get_extra_info("ssl_object")
        self._tls = _connection_info(ssl_object) if ssl_object is not None else None

    def on_message_begin(self) -> None:
        super().on_message_begin()  # makes this request's scope
        if self._tls is not None:
            self.scope["extensions"] = {"tls": self._tls}  # type: ignore[dict-item]  # ASGI types it loosely


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


def client_chain(connection: HTTPConnection) -> tuple[x509.Certificate, ...]:
    """The intermediate CA certificates the client presents in ``DMBoot-Client-Chain``.

    Untrusted: whoever uses them validates a path through them to its own anchors.

    Raises:
        AuthenticationFailed: the header is not base64 DER certificates, or names too many.
    """
    values = [v.strip() for header in connection.headers.getlist(CHAIN_HEADER) for v in header.split(",")]
    values = [v for v in values if v]
    if len(values) > MAX_INTERMEDIATES:
        raise AuthenticationFailed(f"{CHAIN_HEADER} holds {len(values)} certificates; at most {MAX_INTERMEDIATES}",
                                   field=CHAIN_HEADER)
    try:
        return tuple(x509.load_der_x509_certificate(base64.b64decode(v, validate=True)) for v in values)
    except (binascii.Error, ValueError):
        raise AuthenticationFailed(f"{CHAIN_HEADER} must be base64 DER certificates separated by commas",
                                   field=CHAIN_HEADER) from None


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
        tls_refusals.watch(context)  # refused handshakes: an alert, a log line, a count
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
