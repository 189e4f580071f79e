"""Builders and assertion helpers for the enrollment tests."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID
from sqlmodel import func, select

from bootstrap.runtime import Runtime
from bootstrap.services.config import ProfileSpec
from bootstrap.store.models import AuditEvent, CertificateRow
from pki.keys import KeyType, PrivateKey, generate_private_key
from tests.factories import make_csr

ADMIN = "test:admin"
SERVER_URL = "https://dm.example.net:8443/dm"
REPO_URL = "https://repo.example.net/data"
GROUP = "fleet"
#: An extra MO the fleet profile delivers (our trust MO is built by the service, DMAcc too:
#: use a DMAcc 1.0 instance as "some other MO" the device may declare).
EXTRA_MO = {
    "DDF": "https://dmboot.test/ddf/urn:oma:mo:oma-dm-dmacc:1.0",
    "MOID": "urn:oma:mo:oma-dm-dmacc:1.0",
    "ClientURI": "urn:oma:mo:oma-dm-dmacc:1.0/legacy",
    "MOData": {"AppID": "w7", "ServerID": "legacy-dm", "AppAddr": {"a1": {"Addr": "https://legacy.example.net",
               "AddrType": "URI", "Port": {"p1": {"PortNbr": 443}}}},
               "AppAuth": {"x1": {"AAuthLevel": "SRVCRED", "AAuthType": "DIGEST"}}},
}


def fleet_spec(**changes: Any) -> ProfileSpec:
    values: dict[str, Any] = {
        "name": GROUP, "dm_servers": ("dm1",), "data_repositories": ("repo1",),
        "dmacc": {"Name": "Fleet DM", "Perm": ["urn:oma:mo:oma-dm-devinfo:1.0"]},
        "attestation": ("token", "group-key", "idevid", "current-cert"),
        "key_types": ("p256", "p384", "ed25519"), "validity_days": 30, "extra_mos": (EXTRA_MO,),
    }
    values.update(changes)
    return ProfileSpec(**values)


def configure(runtime: Runtime, **profile_changes: Any) -> None:
    """One DM server, one repository, the ``fleet`` profile (all methods) with a group key."""
    runtime.config.add_server("dm1", "Fleet DM", SERVER_URL, actor=ADMIN)
    runtime.config.add_repository("repo1", REPO_URL, actor=ADMIN)
    runtime.config.add_profile(fleet_spec(**profile_changes), actor=ADMIN)
    runtime.devices.create_group_key(GROUP, actor=ADMIN)


def device_csr(dev_id: str, key: PrivateKey | None = None, **kwargs: Any) -> bytes:
    return make_csr(dev_id, key=key, **kwargs)


def count(runtime: Runtime, model: type[Any]) -> int:
    with runtime.database.session() as session:
        return int(session.exec(select(func.count()).select_from(model)).one())


def certificates_for(runtime: Runtime, dev_id: str) -> int:
    with runtime.database.session() as session:
        query = select(func.count()).select_from(CertificateRow).where(CertificateRow.device_id == dev_id)
        return int(session.exec(query).one())


def last_event(runtime: Runtime, action: str = "device.enroll") -> AuditEvent:
    with runtime.database.session() as session:
        query = select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.seq.desc())  # type: ignore[attr-defined]
        event = session.exec(query).first()
    assert event is not None, f"no {action} event"
    return event


def assert_refusal_audited(runtime: Runtime, dev_id: str, reason_part: str) -> None:
    event = last_event(runtime)
    assert (event.outcome, event.target) == ("failure", dev_id)
    assert reason_part in json.loads(event.detail)["reason"]


@dataclass(frozen=True)
class Maker:
    """A manufacturer CA and its key, issuing IDevIDs."""

    cert: x509.Certificate
    key: PrivateKey

    @property
    def pem(self) -> str:
        return self.cert.public_bytes(Encoding.PEM).decode()

    def idevid(self, serial_number: str, *, key: PrivateKey | None = None, days: int = 3650,
               not_before: datetime | None = None) -> tuple[x509.Certificate, PrivateKey]:
        """An 802.1AR-style IDevID: subject serialNumber = DevID, no EKU."""
        leaf_key = key or generate_private_key(KeyType.P256)
        start = not_before or datetime.now(UTC) - timedelta(days=1)
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Acme Devices"),
                                     x509.NameAttribute(NameOID.SERIAL_NUMBER, serial_number)]))
            .issuer_name(self.cert.subject).public_key(leaf_key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(start)
            .not_valid_after(start + timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        return cert, leaf_key


def make_maker(name: str = "Acme Manufacturer CA") -> Maker:
    key = generate_private_key(KeyType.P256)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                     crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
        .sign(key, hashes.SHA256())
    )
    return Maker(cert, key)
