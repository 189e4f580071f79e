"""Refused TLS handshakes on the service's listener: a TLS alert to the client, a log line, a count.

A client certificate from an issuer the listener does not trust, a TLS 1.0/1.1
client or one with no suite in common is refused by OpenSSL inside the handshake,
before the app sees a request. Two things made such refusals silent:

* asyncio (``asyncio.sslproto.SSLProtocol._do_handshake``) handles a failed
  ``do_handshake()`` by closing the socket at once: the alert OpenSSL wrote into the
  outgoing memory BIO is never sent, so the client sees the connection drop with no
  reason. :func:`watch` wraps ``SSLProtocol._on_handshake_complete`` so that, for a
  watched context, the pending bytes (the alert) are written before asyncio closes
  the transport.
* Python's ssl module never hands an unverified certificate to the application. The
  handshake messages themselves are visible through ``SSLContext._msg_callback``
  (CPython, private but present since 3.8; it sees the decrypted Certificate message
  in TLS 1.3 too), so the client's certificate and the TLS version it offered are
  taken from there.

Each refusal is one line on the failure log (logger ``dmboot.failures``, failure class
``tls-handshake``) with the peer address, the TLS version the client offered, the
reason as OpenSSL gives it (``certificate verify failed: unable to get local issuer
certificate``) and, when the client sent a certificate, its subject, issuer and
SHA-256 fingerprint; and one count in ``dmboot_tls_refusals_total``. One line per
refused connection, like the access log's one line per request. The line carries no
secret: a certificate is public.

Only contexts passed to :func:`watch` are affected; with an event loop other than
asyncio's (uvloop) the log line and the alert are not produced, the refusal itself is
unchanged.
"""

from __future__ import annotations

import asyncio.sslproto
import hashlib
import logging
import re
import ssl
import weakref
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509

__all__ = ["HandshakeSeen", "refusal_reason", "report", "watch"]

log = logging.getLogger("dmboot.failures")

_HANDSHAKE = 22
_ALERT = 21
_CLIENT_HELLO = 1
_CERTIFICATE = 11
_SUPPORTED_VERSIONS = 43
_VERSIONS = {0x0300: "SSLv3", 0x0301: "TLSv1", 0x0302: "TLSv1.1", 0x0303: "TLSv1.2", 0x0304: "TLSv1.3"}
_ATTRIBUTE = "_dmboot_handshake"
_WATCHED: weakref.WeakSet[ssl.SSLContext] = weakref.WeakSet()
_PATCHED = False


@dataclass
class HandshakeSeen:
    """What the handshake messages told about the client before the handshake ended."""

    offered: str | None = None  # the highest TLS version in the ClientHello
    certificate: bytes | None = None  # DER of the first certificate the client sent
    alerts: list[int] = field(default_factory=list)  # alert descriptions we sent


def watch(context: ssl.SSLContext) -> None:
    """Log, count and answer with an alert every refused handshake on ``context`` (a server context)."""
    global _PATCHED
    _WATCHED.add(context)
    context._msg_callback = _on_message  # type: ignore[attr-defined]  # CPython's private hook, 3.8+
    if not _PATCHED:
        _wrap_asyncio()
        _PATCHED = True


def refusal_reason(exc: BaseException) -> str:
    """OpenSSL's reason without the ``[SSL: CODE]`` prefix and the ``(_ssl.c:N)`` suffix."""
    verify = getattr(exc, "verify_message", None)
    if verify:
        return f"certificate verify failed: {verify}"
    text = exc.args[1] if len(exc.args) > 1 and isinstance(exc.args[1], str) else str(exc)
    text = re.sub(r"^\[SSL(?:: [A-Z0-9_]+)?\]\s*", "", text)
    return re.sub(r"\s*\(_ssl\.c:\d+\)$", "", text)


def _on_message(conn: Any, direction: str, version: Any, content_type: Any, msg_type: Any, data: bytes) -> None:
    # Called by OpenSSL for every record and handshake message: return fast, never raise.
    try:
        if content_type == _HANDSHAKE and direction == "read":
            if msg_type == _CLIENT_HELLO:
                _seen(conn).offered = _offered_version(data)
            elif msg_type == _CERTIFICATE:
                _seen(conn).certificate = _first_certificate(data, tls13=conn.version() == "TLSv1.3"
                                                             or _seen(conn).offered == "TLSv1.3")
        elif content_type == _ALERT and direction == "write" and len(data) >= 2:
            _seen(conn).alerts.append(data[1])
    except Exception:  # noqa: S110 - a malformed message is OpenSSL's to refuse; observing must not break it
        pass


def _seen(conn: Any) -> HandshakeSeen:
    seen = getattr(conn, _ATTRIBUTE, None)
    if seen is None:
        seen = HandshakeSeen()
        setattr(conn, _ATTRIBUTE, seen)
    return seen


def _offered_version(hello: bytes) -> str | None:
    """The highest version a ClientHello offers: supported_versions if present, else legacy_version."""
    legacy = int.from_bytes(hello[4:6], "big")
    at = 4 + 2 + 32
    at += 1 + hello[at]  # session id
    at += 2 + int.from_bytes(hello[at:at + 2], "big")  # cipher suites
    at += 1 + hello[at]  # compression methods
    end = min(len(hello), at + 2 + int.from_bytes(hello[at:at + 2], "big"))
    at += 2
    best = legacy
    while at + 4 <= end:
        kind, size = int.from_bytes(hello[at:at + 2], "big"), int.from_bytes(hello[at + 2:at + 4], "big")
        if kind == _SUPPORTED_VERSIONS:
            listed = hello[at + 5:at + 5 + hello[at + 4]]
            versions = [int.from_bytes(listed[i:i + 2], "big") for i in range(0, len(listed) - 1, 2)]
            best = max((v for v in versions if v in _VERSIONS), default=legacy)
        at += 4 + size
    return _VERSIONS.get(best, f"0x{best:04x}")


def _first_certificate(message: bytes, *, tls13: bool) -> bytes | None:
    """DER of the first entry of a Certificate handshake message (RFC 5246 7.4.2, RFC 8446 4.4.2)."""
    at = 4  # type and length
    if tls13:
        at += 1 + message[at]  # certificate_request_context
    total = int.from_bytes(message[at:at + 3], "big")
    if total == 0:
        return None
    size = int.from_bytes(message[at + 3:at + 6], "big")
    der = message[at + 6:at + 6 + size]
    return der if len(der) == size else None


def _wrap_asyncio() -> None:
    original = asyncio.sslproto.SSLProtocol._on_handshake_complete

    def on_handshake_complete(self: Any, handshake_exc: BaseException | None) -> None:
        if handshake_exc is not None:
            try:
                _refused(self, handshake_exc)
            except Exception:  # the refusal goes on as asyncio does it; only our report failed
                log.exception("could not report a refused TLS handshake")
        original(self, handshake_exc)

    asyncio.sslproto.SSLProtocol._on_handshake_complete = on_handshake_complete  # type: ignore[method-assign]


def _refused(protocol: Any, exc: BaseException) -> None:
    sslobj = getattr(protocol, "_sslobj", None)
    if sslobj is None or not getattr(protocol, "_server_side", False) or sslobj.context not in _WATCHED:
        return
    transport = getattr(protocol, "_transport", None)
    pending = protocol._outgoing.read()
    if pending and transport is not None and not transport.is_closing():
        transport.write(pending)  # the alert OpenSSL wrote; asyncio would drop it with the socket
    seen: HandshakeSeen = getattr(sslobj, _ATTRIBUTE, None) or HandshakeSeen()
    peer = transport.get_extra_info("peername") if transport is not None else None
    report(peer, seen, exc)


def report(peer: Any, seen: HandshakeSeen, exc: BaseException) -> None:
    """Log and count one refused handshake."""
    # Imported here, not at the top: bootstrap.web.tls (and so this module) is imported by the server's
    # supervisor process too, which must not create multiprocess metric files of its own.
    from bootstrap import metrics

    reason = refusal_reason(exc)
    code = str(getattr(exc, "reason", None) or type(exc).__name__)
    fields: dict[str, Any] = {"failure_class": "tls-handshake", "peer": _address(peer), "tls_version": seen.offered,
                              "reason": reason, "ssl_reason": code, "alerts_sent": seen.alerts}
    if seen.certificate is not None:
        fields |= _certificate_fields(seen.certificate)
    metrics.count_tls_refusal(code, seen.offered or "unknown")
    described = ", ".join(f"{k}={fields[k]}" for k in ("client_subject", "client_issuer", "client_sha256")
                          if k in fields)
    log.warning("TLS handshake refused: peer=%s version=%s reason=%s%s", fields["peer"], seen.offered, reason,
                f" ({described})" if described else "", extra=fields)


def _certificate_fields(der: bytes) -> dict[str, str]:
    fields = {"client_sha256": hashlib.sha256(der).hexdigest()}
    try:
        certificate = x509.load_der_x509_certificate(der)
        fields |= {"client_subject": certificate.subject.rfc4514_string(),
                   "client_issuer": certificate.issuer.rfc4514_string()}
    except ValueError:
        fields["client_subject"] = "(unparseable certificate)"
    return fields


def _address(peer: Any) -> str | None:
    if isinstance(peer, tuple) and len(peer) >= 2:
        host, port = peer[0], peer[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return None if peer is None else str(peer)
