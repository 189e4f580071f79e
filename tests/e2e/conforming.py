"""A DM 2.0 client written from the specification's facts alone: plain json, ssl, http.client, hashlib.

Nothing here imports the project: packages, commands, MO serialization and HTTP
authentication are implemented again from the specification facts in docs/dm-protocol.md
(OMA-TS-DM_Protocol-V2_0):

- package 1: POST ``application/vnd.oma.dm.initiation+json``, ``OMADM-DevID``, body
  ``{"MOS": [...], "Alert": [{"AlertType": ClientInitiatedMgmt}]}``;
- package 2: ``{"CMD": [[name, param...]...]}``, every command an array of strings, run in
  order; this client knows HGET, DELETE, CONT and END and refuses anything else (there is
  no PUT in DM 2.0); HGET without ClientURI: the client picks the place, assigns the MIID
  and reports it in the status ``URI``;
- package 3: POST ``application/vnd.oma.dm.response+json`` to the CONT ServerURI with one
  status per command; none after END; any 4xx/5xx aborts;
- HTTP Basic, HTTP Digest (RFC 7616, SHA-256, qop=auth) or an X.509 client certificate;
- afterwards a session with the DM server of the DMAcc it received, with BootstrapComplete
  in package 1, authenticated by the delivered Auth/Trsp credential.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import os
import re
import secrets
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

__all__ = ["ConformingDevice", "ProtocolRefused"]

INITIATION = "application/vnd.oma.dm.initiation+json"
REQUEST = "application/vnd.oma.dm.request+json"
RESPONSE = "application/vnd.oma.dm.response+json"
CLIENT_INITIATED = "urn:oma:at:dm:2.0:ClientInitiatedMgmt"
BOOTSTRAP_COMPLETE = "urn:oma:at:dm:2.0:BootstrapComplete"
DMACC = "urn:oma:mo:oma-dm-dmacc:1.2"
TRUST = "urn:oma:mo:ext-dmboot-trust:1.0"  # the service's own MO: DM server anchors (not in DMAcc 1.2)
KNOWN = {"HGET": (1, 2), "DELETE": (1, 1), "CONT": (1, 1), "END": (0, 0)}
_CAPTURE = os.environ.get("DMBOOT_E2E_CAPTURE")


class ProtocolRefused(Exception):
    """The device refused what the server sent (unknown command, bad package, HTTP error)."""


def _pem_cert(der: bytes) -> str:
    return ssl.DER_cert_to_PEM_cert(der)


def _pem_key(der: bytes) -> str:
    lines = [base64.b64encode(der).decode()[i:i + 64] for i in range(0, len(base64.b64encode(der)), 64)]
    return "-----BEGIN PRIVATE KEY-----\n" + "\n".join(lines) + "\n-----END PRIVATE KEY-----\n"


def _record(entry: dict[str, Any]) -> None:
    if _CAPTURE:
        with open(_CAPTURE, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(entry) + "\n")


@dataclass
class ConformingDevice:
    """One device: DevID, the factory's trust anchor for the bootstrap server, maybe an IDevID."""

    dev_id: str
    bootstrap_url: str
    factory_trust_pem: str
    folder: Path
    idevid: tuple[Path, Path] | None = None
    #: The management tree: MOID -> MIID -> node tree (what HGET stored).
    tree: dict[str, dict[str, Any]] = field(default_factory=dict)
    log: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)

    # -- HTTP --------------------------------------------------------------------------------

    def _bootstrap_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cadata=self.factory_trust_pem)
        if self.idevid is not None:
            context.load_cert_chain(*self.idevid)
        return context

    def use_bootstrap_credential(self) -> None:
        """From now on authenticate to the bootstrap server with DMAcc Auth/Bootstrap (DMAcc 1.2:
        "if present the client MUST use them"): ClientPubKey and ClientSecretKey; trust ServerPubKey."""
        boot = self.account()["Auth"]["Bootstrap"]
        (self.folder / "boot.pem").write_text(_pem_cert(base64.b64decode(boot["ClientPubKey"])))
        key_file = self.folder / "boot-key.pem"
        key_file.write_text(_pem_key(base64.b64decode(boot["ClientSecretKey"])))
        key_file.chmod(0o600)
        server = ssl.DER_cert_to_PEM_cert(base64.b64decode(boot["ServerPubKey"]))
        self.bootstrap_url = boot["ServerURI"]
        self.idevid = (self.folder / "boot.pem", key_file)
        self.factory_trust_pem = self.factory_trust_pem + server  # the factory anchor still verifies its chain

    @staticmethod
    def _request(method: str, url: str, context: ssl.SSLContext, body: bytes | None = None,
                 headers: dict[str, str] | None = None, label: str = "") -> tuple[int, dict[str, list[str]], bytes]:
        parts = urlsplit(url)
        conn = http.client.HTTPSConnection(parts.hostname or "", parts.port, context=context, timeout=60)
        try:
            conn.request(method, parts.path + (f"?{parts.query}" if parts.query else ""), body=body,
                         headers=headers or {})
            reply = conn.getresponse()
            received: dict[str, list[str]] = {}
            for name, value in reply.getheaders():
                received.setdefault(name.lower(), []).append(value)
            content = reply.read()
        finally:
            conn.close()
        _record({"label": label, "method": method, "url": url, "request_headers": headers or {},
                 "request_body": (body or b"").decode(), "status": reply.status,
                 "response_headers": {k: v if len(v) > 1 else v[0] for k, v in received.items()},
                 "response_body": content.decode(errors="replace")})
        return reply.status, received, content

    # -- the bootstrap ------------------------------------------------------------------------

    def bootstrap(self, *, auth: str, password: str | None = None, moids: tuple[str, ...] = (DMACC, TRUST)) -> None:
        """Package 1 with ``auth`` ("basic", "digest", "x509"), then package 2/3 until END."""
        body = json.dumps({"MOS": [{"MOID": m, "MIID": []} for m in moids],
                           "Alert": [{"AlertType": CLIENT_INITIATED}]}).encode()
        headers = {"Content-Type": INITIATION, "Accept": REQUEST, "OMADM-DevID": self.dev_id}
        if auth == "basic":
            headers["Authorization"] = "Basic " + base64.b64encode(f"{self.dev_id}:{password}".encode()).decode()
        status, received, content = self._request("POST", self.bootstrap_url, self._bootstrap_context(), body,
                                                  headers, "package 1")
        if auth == "digest":
            assert status == 401, content
            challenge = next(v for v in received["www-authenticate"] if v.startswith("Digest "))
            headers["Authorization"] = self._digest(challenge, password or "", urlsplit(self.bootstrap_url).path)
            status, received, content = self._request("POST", self.bootstrap_url, self._bootstrap_context(), body,
                                                      headers, "package 1 (Digest)")
        self._session(status, received, content)

    def _digest(self, challenge: str, password: str, uri: str) -> str:
        found = re.findall(r'(\w+)=(?:"([^"]*)"|([^,\s]*))', challenge[len("Digest "):])
        params = {name: quoted or bare for name, quoted, bare in found}
        assert params.get("algorithm") == "SHA-256" and "auth" in params.get("qop", "").split(",")

        def h(text: str) -> str:
            return hashlib.sha256(text.encode()).hexdigest()

        cnonce, nc = secrets.token_hex(8), "00000001"
        ha1, ha2 = h(f"{self.dev_id}:{params['realm']}:{password}"), h(f"POST:{uri}")
        response = h(f"{ha1}:{params['nonce']}:{nc}:{cnonce}:auth:{ha2}")
        return (f'Digest username="{self.dev_id}", realm="{params["realm"]}", nonce="{params["nonce"]}", '
                f'uri="{uri}", algorithm=SHA-256, qop=auth, nc={nc}, cnonce="{cnonce}", response="{response}"')

    def _session(self, status: int, received: dict[str, list[str]], content: bytes) -> None:
        target = self.bootstrap_url
        while True:
            if status >= 400:  # the client aborts on any 4xx/5xx and does not retry
                raise ProtocolRefused(f"HTTP {status}: {content[:200]!r}")
            if received.get("content-type", [""])[0].split(";")[0] != REQUEST:
                raise ProtocolRefused(f"package 2 is not {REQUEST}")
            commands = self._commands(content)
            statuses, ended, target = self._run(commands, target)
            if ended:
                return  # END: no package 3
            status, received, content = self._request(
                "POST", target, self._bootstrap_context(), json.dumps({"Status": statuses}).encode(),
                {"Content-Type": RESPONSE, "OMADM-DevID": self.dev_id}, "package 3")

    @staticmethod
    def _commands(content: bytes) -> list[list[str]]:
        doc = json.loads(content)
        if not isinstance(doc, dict) or not isinstance(doc.get("CMD"), list):
            raise ProtocolRefused("package 2 has no CMD array")
        for command in doc["CMD"]:
            if not isinstance(command, list) or not command or not all(isinstance(p, str) for p in command):
                raise ProtocolRefused(f"a command is an array of strings: {command!r}")
            low, high = KNOWN.get(command[0], (-1, -1))
            if not low <= len(command) - 1 <= high:
                raise ProtocolRefused(f"unknown command or wrong parameters: {command[0]!r}")
        return list(doc["CMD"])

    def _run(self, commands: list[list[str]], target: str) -> tuple[list[dict[str, Any]], bool, str]:
        statuses: list[dict[str, Any]] = []
        for name, *params in commands:
            self.log.append(name)
            if name == "END":
                return statuses, True, target
            if name == "CONT":
                target = params[0]
                statuses.append({"sc": 200})
            elif name == "DELETE":
                moid, _, rest = params[0].partition("/")
                found = self.tree.get(moid, {}).pop(rest.split("/")[0], None)
                statuses.append({"sc": 200 if found is not None else 404, "URI": [params[0]]})
            else:  # HGET
                statuses.append(self._hget(params[0]))
        return statuses, False, target

    def _hget(self, server_uri: str) -> dict[str, Any]:
        status, _, content = self._request("GET", server_uri, self._context_for(server_uri), label="HGET")
        if status != 200:
            return {"sc": status}
        locations = []
        for instance in json.loads(content):
            if not {"ClientURI", "MOData"} <= set(instance) <= {"DDF", "ClientURI", "CV", "MOData"}:
                raise ProtocolRefused(f"not an MO serialization: {sorted(instance)}")
            moid, _, rest = instance["ClientURI"].partition("/")
            if rest != "/":
                raise ProtocolRefused(f"this client only accepts instance roots (MOID//): {instance['ClientURI']}")
            ((root, data),) = instance["MOData"].items()
            instances = self.tree.setdefault(moid, {})
            miid = root if root not in instances else f"{root}-{len(instances)}"  # the client assigns the MIID
            instances[miid] = data
            locations.append(f"{moid}/{miid}")
        return {"sc": 200, "URI": locations}

    # -- using what was delivered ---------------------------------------------------------------

    def account(self) -> dict[str, Any]:
        (data,) = self.tree[DMACC].values()
        return dict(data)

    def _anchors(self, role: str) -> str:
        (trust,) = self.tree[TRUST].values()
        return "".join(_pem_cert(base64.b64decode(a["Cert"])) for a in trust["Anchors"].values() if a["Role"] == role)

    def _delivered_context(self, role: str) -> ssl.SSLContext:
        """Mutual TLS from the DMAcc's Auth/Trsp (certificate, key) and the anchors for ``role``."""
        trsp = self.account()["Auth"]["Trsp"]
        (trust,) = self.tree[TRUST].values()
        chain = [base64.b64decode(trsp["Data"])] + [base64.b64decode(c) for k, c in
                                                     sorted(trust["Credential"]["Chain"].items()) if k != "1"]
        (self.folder / "trsp.pem").write_text("".join(_pem_cert(d) for d in chain))
        key_file = self.folder / "trsp-key.pem"
        key_file.write_text(_pem_key(base64.b64decode(trsp["Secret"])))
        key_file.chmod(0o600)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_verify_locations(cadata=self._anchors(role))
        context.load_cert_chain(self.folder / "trsp.pem", key_file)
        return context

    def _context_for(self, url: str) -> ssl.SSLContext:
        if urlsplit(url).netloc == urlsplit(self.bootstrap_url).netloc:
            return self._bootstrap_context()  # the bootstrap server's own data endpoint
        return self._delivered_context("data-repository")  # a data repository: mutual TLS

    def dm_session(self) -> list[list[str]]:
        """Package 1 to the new DM server with BootstrapComplete; return its package 2 commands."""
        url = self.account()["SrvURI"]
        body = json.dumps({"MOS": [{"MOID": DMACC, "MIID": list(self.tree[DMACC])}],
                           "Alert": [{"AlertType": BOOTSTRAP_COMPLETE}]}).encode()
        status, _, content = self._request("POST", url, self._delivered_context("dm-server"), body, {
            "Content-Type": INITIATION, "Accept": REQUEST, "OMADM-DevID": self.dev_id}, "DM server package 1")
        if status != 200:
            raise ProtocolRefused(f"the DM server answered {status}")
        return self._commands(content)
