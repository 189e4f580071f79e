"""A DM 2.0 device for the end-to-end tests: speaks packages 1-3 over HTTPS, applies package 2.

From the bootstrap service the device knows only the trust anchor the factory gave
it (our root CA). Everything it uses afterwards - its certificate chain, the URLs and
the anchors of its DM server and data repository - comes out of package 2.

It builds and reads every package with plain :mod:`json`, as docs/dm-protocol.md and
docs/dm2-exchange.md describe them, never with the project's package codec:

- package 1: ``{"MOS": [{"MOID", "MIID": []}], "Features": {...}, "ext-dmboot": {"CSR": b64 DER, "Token"?}}``;
- package 2: ``{"CMD": [["PUT", ClientURI, [instance]] | ["HGET", ServerURI, ClientURI?] | ["CONT", URI] |
  ["END"]]}``, an MO instance being ``{"DDF"?, "ClientURI": "MOID//", "MOData": {root: data}}``;
- package 3: ``{"Status": [{"sc": 200, "URI": [location]}], "Alert": [{"AlertType", "SourceURI"}]}``.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding

from pki.encoding import private_key_pem
from tests.factories import make_csr

__all__ = ["DMACC_1_2", "INITIATION", "TRUST_1_0", "Delivered", "Device", "Provisioned", "commands_of", "moid_of"]

DMACC_1_2 = "urn:oma:mo:oma-dm-dmacc:1.2"
TRUST_1_0 = "urn:oma:mo:ext-dmboot-trust:1.0"  # ours
INITIATION = "application/vnd.oma.dm.initiation+json"
REQUEST = "application/vnd.oma.dm.request+json"
RESPONSE = "application/vnd.oma.dm.response+json"
BOOTSTRAP_COMPLETE = "urn:oma:at:dm:2.0:BootstrapComplete"
SESSION_HEADER = "OMADM-Session"  # ours: the signed reference that continues the session

#: Set to a file path to record every exchange as JSON lines (docs/dm2-exchange.md is built from one).
CAPTURE = os.environ.get("DMBOOT_E2E_CAPTURE")


def _pem(der: bytes) -> str:
    return x509.load_der_x509_certificate(der).public_bytes(Encoding.PEM).decode()


def moid_of(client_uri: str) -> str:
    """The MOID of a ClientURI (``MOID//``, ``MOID/MIID/...``): an MOID holds no '/'."""
    return client_uri.partition("/")[0]


def commands_of(body: bytes) -> list[list[Any]]:
    """Package 2's command arrays, checked for shape only."""
    doc = json.loads(body)
    assert isinstance(doc, dict) and isinstance(doc.get("CMD"), list), doc
    assert all(isinstance(c, list) and c and isinstance(c[0], str) for c in doc["CMD"]), doc
    return list(doc["CMD"])


@dataclass(frozen=True)
class Delivered:
    """One MO instance the device stored: where (``MOID/MIID``) and its data under the root node."""

    moid: str
    miid: str
    data: Mapping[str, Any]

    @classmethod
    def of(cls, instance: Mapping[str, Any]) -> Delivered:
        assert {"ClientURI", "MOData"} <= set(instance) <= {"DDF", "ClientURI", "CV", "MOData"}, sorted(instance)
        ((miid, data),) = instance["MOData"].items()  # keyed by the root node
        return cls(moid_of(instance["ClientURI"]), miid, data)

    @property
    def location(self) -> str:
        return f"{self.moid}/{self.miid}"


@dataclass
class Provisioned:
    """What the device holds after applying package 2."""

    instances: dict[str, Delivered]  # by location, MOID/MIID
    session: str
    hget_served_by: list[bytes] = field(default_factory=list)  # repository certificates seen

    def mo(self, moid: str) -> Delivered | None:
        return next((i for i in self.instances.values() if i.moid == moid), None)

    @property
    def account(self) -> Mapping[str, Any]:
        instance = self.mo(DMACC_1_2)
        assert instance is not None, "no DMAcc was delivered"
        return dict(instance.data)

    @property
    def trust(self) -> Mapping[str, Any]:
        instance = self.mo(TRUST_1_0)
        assert instance is not None, "no trust MO was delivered"
        return dict(instance.data)

    @property
    def chain(self) -> list[bytes]:
        nodes = self.trust["Credential"]["Chain"]
        return [base64.b64decode(nodes[k]) for k in sorted(nodes, key=int)]

    def anchors(self, role: str) -> list[bytes]:
        found = []
        for anchor in self.trust["Anchors"].values():
            der = base64.b64decode(anchor["Cert"])
            # Ours: the trust MO's Fingerprint is "sha256:" and the lower-case hex SHA-256 of the DER.
            assert anchor["Fingerprint"] == "sha256:" + hashlib.sha256(der).hexdigest()
            if anchor["Role"] == role:
                found.append(der)
        return found


@dataclass
class Device:
    """One device: its DevID, its operational key, and the factory's trust in the bootstrap service."""

    dev_id: str
    bootstrap_url: str
    bootstrap_trust_pem: str
    folder: Path
    idevid: tuple[Path, Path] | None = None  # manufacturer certificate and key files
    key: ec.EllipticCurvePrivateKey = field(default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))

    def __post_init__(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / "key.pem").write_bytes(private_key_pem(self.key))

    # -- talking to the bootstrap service ---------------------------------------------------

    def _client(self) -> httpx.Client:
        context = ssl.create_default_context(cadata=self.bootstrap_trust_pem)
        if self.idevid is not None:
            context.load_cert_chain(*self.idevid)
        return httpx.Client(verify=context, timeout=60)

    def initiation(self, *moids: str, token: str | None = None) -> bytes:
        """Package 1's body: the declared MOs, the features, our extension with the CSR (and a token)."""
        ext: dict[str, str] = {"CSR": base64.b64encode(make_csr(self.dev_id, key=self.key, encoding=Encoding.DER))
                               .decode()}
        if token is not None:
            ext["Token"] = token
        return json.dumps({"MOS": [{"MOID": m, "MIID": []} for m in moids],
                           "Features": {"tls": ["1.2", "1.3"], "hget": True}, "ext-dmboot": ext}).encode()

    def post(self, body: bytes, headers: Mapping[str, str], label: str) -> httpx.Response:
        with self._client() as client:
            reply = client.post(self.bootstrap_url, content=body, headers=dict(headers))
        _capture(label, self.bootstrap_url, dict(headers), body, reply)
        return reply

    def package1(self, *moids: str, authorization: str | None = None, body: bytes | None = None,
                 headers: Mapping[str, str] | None = None) -> httpx.Response:
        body = self.initiation(*moids) if body is None else body
        sent = {"Content-Type": INITIATION, "Accept": REQUEST,
                "OMADM-Accept": "application/json", "OMADM-DevID": self.dev_id}
        if authorization:
            sent["Authorization"] = authorization
        sent.update(headers or {})
        return self.post(body, {k: v for k, v in sent.items() if v}, "package 1")

    def package3(self, provisioned: Provisioned, *, session: str | None = None) -> httpx.Response:
        body = json.dumps({"Status": [{"sc": 200, "URI": [location]} for location in provisioned.instances],
                           "Alert": [{"AlertType": BOOTSTRAP_COMPLETE, "SourceURI": self.dev_id}]}).encode()
        headers = {"Content-Type": RESPONSE, "OMADM-DevID": self.dev_id,
                   SESSION_HEADER: provisioned.session if session is None else session}
        return self.post(body, headers, "package 3")

    # -- applying package 2 -----------------------------------------------------------------

    def apply(self, reply: httpx.Response) -> Provisioned:
        """Run package 2's commands in order; HGETs use only what earlier PUTs delivered."""
        assert reply.status_code == 200, reply.text
        assert reply.headers["content-type"] == REQUEST
        provisioned = Provisioned({}, reply.headers[SESSION_HEADER])
        commands = commands_of(reply.content)
        assert commands[-1] == ["END"], commands
        for name, *params in commands:
            if name == "PUT":  # ours, the inline flow: ["PUT", ClientURI, [one MO instance]]
                client_uri, (instance,) = params
                delivered = Delivered.of(instance)
                assert moid_of(client_uri) == delivered.moid
                provisioned.instances[delivered.location] = delivered
            elif name == "HGET":
                delivered, server_der = self._hget(provisioned, params[0])
                provisioned.instances[delivered.location] = delivered
                provisioned.hget_served_by.append(server_der)
            else:
                assert name == "END", f"unexpected command {name!r}"
        self._write_credentials(provisioned)
        return provisioned

    def _write_credentials(self, provisioned: Provisioned) -> None:
        if provisioned.mo(TRUST_1_0) is not None:
            (self.folder / "chain.pem").write_text("".join(_pem(d) for d in provisioned.chain))

    def tls_context(self, provisioned: Provisioned, role: str) -> ssl.SSLContext:
        """Mutual TLS from the delivered material only: own key, delivered chain, anchors of ``role``."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_verify_locations(cadata="".join(_pem(d) for d in provisioned.anchors(role)))
        context.load_cert_chain(self.folder / "chain.pem", self.folder / "key.pem")
        return context

    def _hget(self, provisioned: Provisioned, server_uri: str) -> tuple[Delivered, bytes]:
        self._write_credentials(provisioned)
        status, body, server_der = self.https_get(server_uri, self.tls_context(provisioned, "data-repository"))
        _record({"label": "HGET", "url": server_uri, "status": status, "response_body": body.decode()})
        assert status == 200, body
        (instance,) = json.loads(body)  # a JSON array of MO instances, here exactly one
        return Delivered.of(instance), server_der

    @staticmethod
    def https_get(url: str, context: ssl.SSLContext) -> tuple[int, bytes, bytes]:
        """GET ``url``; return the status, the body and the server's certificate (DER)."""
        parts = urlsplit(url)
        conn = http.client.HTTPSConnection(parts.hostname or "", parts.port, context=context, timeout=30)
        try:
            conn.connect()
            server_der = conn.sock.getpeercert(binary_form=True)
            conn.request("GET", parts.path)
            reply = conn.getresponse()
            return reply.status, reply.read(), server_der or b""
        finally:
            conn.close()


def _capture(label: str, url: str, headers: dict[str, str], body: bytes, reply: httpx.Response) -> None:
    _record({"label": label, "url": url, "request_headers": headers, "request_body": body.decode(),
             "status": reply.status_code, "response_headers": dict(reply.headers), "response_body": reply.text})


def _record(record: dict[str, Any]) -> None:
    if CAPTURE:
        with open(CAPTURE, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")
