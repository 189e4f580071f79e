"""The other parties of an end-to-end run: a DM server and a data repository (stdlib TLS servers).

Both require a client certificate chaining to our root CA and record what they saw,
so a test can assert that each side authenticated the other. The data repository
serves ``{its URL}/dmboot/{ref}`` as docs/dm2-exchange.md defines it: it fetches the
MO data from the bootstrap service's ``GET /dm/objects/{ref}`` and serves it only to
the device the service names in ``OMADM-DevID``. The DM server answers a DM 2.0
package 1 with END, and when it carries BootstrapComplete it reports that to the
bootstrap service (``POST /api/v1/devices/{dev_id}/bootstrap-complete``, a dm-server token).
"""

from __future__ import annotations

import json
import ssl
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from pki.encoding import private_key_pem
from pki.identity import dev_id_from_uri

__all__ = ["PeerServer", "Seen", "certified_dev_id", "server_csr"]

INITIATION = "application/vnd.oma.dm.initiation+json"


@dataclass
class Seen:
    """One request a peer served: the client's certificate (DER) and DevID, path and status."""

    client_der: bytes
    dev_id: str | None
    path: str
    status: int


def certified_dev_id(der: bytes) -> str | None:
    """The DevID in one of our device certificates (URI SAN urn:dmboot:devid:...)."""
    cert = x509.load_der_x509_certificate(der)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
    return next((d for u in san.get_values_for_type(x509.UniformResourceIdentifier)
                 if (d := dev_id_from_uri(u)) is not None), None)


def server_csr() -> tuple[ec.EllipticCurvePrivateKey, bytes]:
    """A key and a PEM CSR for 127.0.0.1 (the CA puts the host of the registered URL in the certificate)."""
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
           .sign(key, hashes.SHA256()))
    return key, csr.public_bytes(Encoding.PEM)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    context: ssl.SSLContext
    peer: PeerServer

    def get_request(self) -> tuple[Any, Any]:
        sock, addr = super().get_request()
        sock.settimeout(30)
        # The handshake fails here for a client without an acceptable certificate (an OSError: dropped).
        return self.context.wrap_socket(sock, server_side=True), addr


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's name
        pass

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        self._serve()

    def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        if self.headers.get("Content-Type", "").startswith(INITIATION):
            self._serve(lambda dev_id: self.server.peer.package1(body, self.headers.get("OMADM-DevID"), dev_id))
        else:
            self._serve()

    def _serve(self, answer: Any = None) -> None:
        der = self.connection.getpeercert(binary_form=True)
        dev_id = certified_dev_id(der) if der else None
        status, body, headers = answer(dev_id) if answer else self.server.peer.respond(self.path, dev_id)
        self.server.peer.seen.append(Seen(der or b"", dev_id, self.path, status))
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@dataclass
class PeerServer:
    """A DM server (``kind="dm"``) or data repository (``kind="repository"``) on 127.0.0.1.

    Create it (it binds a port), register its URL with the bootstrap service, get its
    certificate, then :meth:`start` it.
    """

    kind: str
    origin: str = ""  # repositories: the bootstrap service's base URL
    origin_trust: str = ""  # PEM the repository trusts for that origin
    #: DM servers: the bootstrap service's API token (role dm-server) for BootstrapComplete reports.
    api_token: str = ""
    seen: list[Seen] = field(default_factory=list)
    #: DM servers: the DevIDs whose BootstrapComplete was reported, with the API's status code.
    reported: list[tuple[str, int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.peer = self
        self.certificate_der = b""

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}/" + ("dm" if self.kind == "dm" else "data")

    def start(self, folder: Path, key: ec.EllipticCurvePrivateKey, chain_pem: str, client_ca_pem: str) -> None:
        """Serve with ``chain_pem`` (our CA's certificate for it), requiring client certs under ``client_ca_pem``."""
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "chain.pem").write_text(chain_pem)
        (folder / "key.pem").write_bytes(private_key_pem(key))
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(folder / "chain.pem", folder / "key.pem")
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(cadata=client_ca_pem)
        self._server.context = context
        self.certificate_der = x509.load_pem_x509_certificate(chain_pem.encode()).public_bytes(Encoding.DER)
        threading.Thread(target=self._server.serve_forever, name=f"e2e-{self.kind}", daemon=True).start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def respond(self, path: str, dev_id: str | None) -> tuple[int, bytes, dict[str, str]]:
        if self.kind == "dm":
            body = json.dumps({"server": "dm", "device": dev_id}).encode()
            return 200, body, {"Content-Type": "application/json"}
        prefix = "/data/dmboot/"
        if not path.startswith(prefix):
            return 404, b"", {}
        return self._fetch(path[len(prefix):], dev_id)

    def package1(self, body: bytes, header_dev_id: str | None, dev_id: str | None) -> tuple[int, bytes, dict[str, str]]:
        """A DM 2.0 package 1: on BootstrapComplete, report it to the bootstrap service; answer END."""
        if dev_id is None or header_dev_id != dev_id:
            return 403, b"", {}
        alerts = [a.get("AlertType") for a in json.loads(body).get("Alert", [])]
        if "urn:oma:at:dm:2.0:BootstrapComplete" in alerts:
            request = urllib.request.Request(  # noqa: S310 - https only
                f"{self.origin}/api/v1/devices/{dev_id}/bootstrap-complete",
                                             data=b"{}", method="POST",
                                             headers={"Authorization": f"Bearer {self.api_token}",
                                                      "Content-Type": "application/json"})
            context = ssl.create_default_context(cadata=self.origin_trust)
            try:
                with urllib.request.urlopen(request, context=context, timeout=30) as reply:  # noqa: S310 - https
                    self.reported.append((dev_id, reply.status))
            except urllib.error.HTTPError as exc:
                self.reported.append((dev_id, exc.code))
                return 500, b"", {}
        return 200, json.dumps({"CMD": [["END"]]}).encode(), {"Content-Type": "application/vnd.oma.dm.request+json"}

    def _fetch(self, ref: str, dev_id: str | None) -> tuple[int, bytes, dict[str, str]]:
        context = ssl.create_default_context(cadata=self.origin_trust)
        try:
            with urllib.request.urlopen(f"{self.origin}/dm/objects/{ref}", context=context, timeout=30) as reply:  # noqa: S310 - https only
                body, owner = reply.read(), reply.headers["OMADM-DevID"]
        except urllib.error.HTTPError as exc:
            return exc.code, b"", {}
        if owner != dev_id:  # the data is for one device: serve it to that device only
            return 403, b"", {}
        return 200, body, {"Content-Type": "application/json"}
