"""Builders for the DM 2.0 tests: a small certificate hierarchy and a BootstrapContent."""

from __future__ import annotations

import base64
import functools
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from bootstrap.dm.content import BootstrapContent, DmAccount, ExtraMo, TrustAnchor
from bootstrap.dm.package import DeclaredMo, Initiation
from tests.factories import make_csr

DEV_ID = "IMEI:490154203237518"
NOT_AFTER = datetime(2030, 1, 31, 12, 0, tzinfo=UTC)
#: An extra MO with a shipped DDF (profiles may not carry DMAcc 1.2 or the trust MO): a DM 1.x account.
EXTRA_MOID = "urn:oma:mo:oma-dm-dmacc:1.0"


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(subject: str, issuer: str, key: ec.EllipticCurvePrivateKey, signer: ec.EllipticCurvePrivateKey,
          *, ca: bool) -> bytes:
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(_name(issuer))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=1)).not_valid_after(NOT_AFTER)
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .sign(signer, hashes.SHA256()))
    return cert.public_bytes(Encoding.DER)


@functools.cache
def hierarchy() -> tuple[bytes, bytes, bytes]:
    """(root DER, issuing CA DER, device certificate DER)."""
    root_key, ca_key, dev_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    root = _cert("Test Root", "Test Root", root_key, root_key, ca=True)
    issuing = _cert("Test Issuing", "Test Root", ca_key, root_key, ca=True)
    device = _cert(DEV_ID, "Test Issuing", dev_key, ca_key, ca=False)
    return root, issuing, device


def content(**changes: Any) -> BootstrapContent:
    root, issuing, device = hierarchy()
    base = BootstrapContent(
        dev_id=DEV_ID,
        account=DmAccount(server_id="dm.example", server_uri="https://dm.example/dm", name="Example DM",
                          permitted_moids=("urn:oma:mo:oma-dm-devinfo:1.0",),
                          notification={"Type": "sha256", "Data": base64.b64encode(b"noti").decode()}),
        certificate_chain=(device, issuing),
        trust_anchors=(TrustAnchor("dm-server", "dm.example", root),
                       TrustAnchor("data-repository", "repo-1", root),
                       TrustAnchor("issuing-ca", "issuing-1", issuing)),
        data_repository_urls=("https://repo.example/data",),
    )
    return replace(base, **changes)


def extra_mo_json(server_id: str = "legacy.example") -> dict[str, Any]:
    """A DMAcc 1.0 instance as an enrollment profile holds it."""
    return {
        "DDF": "https://dmboot.test/ddf/urn:oma:mo:oma-dm-dmacc:1.0",
        "MOID": EXTRA_MOID, "ClientURI": f"{EXTRA_MOID}/legacy",
        "MOData": {"AppID": "w7", "ServerID": server_id,
                   "AppAddr": {"1": {"Addr": f"https://{server_id}/dm", "AddrType": "URI"}}},
    }


def extra_mo(server_id: str = "legacy.example") -> ExtraMo:
    return ExtraMo(EXTRA_MOID, extra_mo_json(server_id))


def initiation(*moids: str, dev_id: str = DEV_ID, **changes: Any) -> Initiation:
    mos = tuple(DeclaredMo(moid=m, ddf=None, miids=()) for m in moids)
    base = Initiation(dev_id=dev_id, mos=mos, csr=make_csr(dev_id, encoding=Encoding.DER))
    return replace(base, **changes)
