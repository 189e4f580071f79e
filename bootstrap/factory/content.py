"""The bootstrap content a factory writes beside each device's credentials.

Everything in a :class:`~bootstrap.dm.content.BootstrapContent` except the DevID
and the certificate chain is the same for every device of an enrollment
profile, so a batch builds it once (:func:`profile_template`) and each device's
content is the template plus its own chain (:func:`device_content`).

``bootstrap.json`` (format ``dmboot-bootstrap/1``) is the content as JSON, with
certificates in PEM::

    {"format": "dmboot-bootstrap/1", "dev_id": "IMEI:...", "delivery": "inline",
     "account": {"server_id": .., "server_uri": .., "name": .., "permitted_moids": [..],
                 "notification": {..}},
     "certificate_chain": ["-----BEGIN CERTIFICATE-----...", ...],   # device first
     "trust_anchors": [{"role": "dm-server", "name": .., "pem": ..}, ...],
     "data_repository_urls": [..], "extra_mos": [{"moid": .., "instance": {..}}]}

The private key is never part of it; a server-generated key travels encrypted in
its own file.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from sqlmodel import Session

from bootstrap.dm.content import BootstrapContent, DmAccount, ExtraMo, TrustAnchor
from bootstrap.dm.ddf import DdfRegistry
from bootstrap.dm.mo import DMACC_1_2, TRUST_1_0
from bootstrap.dm.package import End, Put, bootstrap_instances, encode_request
from bootstrap.services.authorities import CaInfo
from bootstrap.services.content import pem_to_der, profile_content
from bootstrap.store.models import AuthorityRow, EnrollmentProfileRow

__all__ = ["FORMAT", "content_from_json", "content_to_json", "device_content", "package2", "profile_template"]

FORMAT = "dmboot-bootstrap/1"


def profile_template(session: Session, profile: EnrollmentProfileRow, root: AuthorityRow | CaInfo,
                     issuing: AuthorityRow | CaInfo) -> dict[str, Any]:
    """The profile's bootstrap content without DevID and certificate chain, as JSON.

    Built by the same rules as the enrollment service's (:mod:`bootstrap.services.content`).

    Raises:
        InvalidRequest: the profile names no DM server.
    """
    parts = profile_content(session, profile, root=root, issuing=issuing)
    document = content_to_json(parts.for_device("", ()))
    del document["dev_id"], document["certificate_chain"]
    return {**document, "profile": profile.name}


def device_content(template: Mapping[str, Any], dev_id: str, chain_pem: list[str]) -> dict[str, Any]:
    """``bootstrap.json`` for one device: the template, its DevID and its chain (device first)."""
    return {"format": FORMAT, "dev_id": dev_id, **{k: v for k, v in template.items() if k != "format"},
            "certificate_chain": chain_pem}


def content_to_json(content: BootstrapContent) -> dict[str, Any]:
    """A :class:`BootstrapContent` as ``bootstrap.json`` (without any private key)."""
    account = content.account
    return {
        "format": FORMAT, "dev_id": content.dev_id, "delivery": content.delivery,
        "account": {"server_id": account.server_id, "server_uri": account.server_uri, "name": account.name,
                    "permitted_moids": list(account.permitted_moids), "notification": dict(account.notification)},
        "trust_anchors": [{"role": a.role, "name": a.name, "pem": _pem(a.der)} for a in content.trust_anchors],
        "data_repository_urls": list(content.data_repository_urls),
        "extra_mos": [{"moid": m.moid, "instance": m.instance} for m in content.extra_mos],
        "certificate_chain": [_pem(der) for der in content.certificate_chain],
    }


def content_from_json(doc: Mapping[str, Any]) -> BootstrapContent:
    """Read ``bootstrap.json`` back into a :class:`BootstrapContent`."""
    account = doc["account"]
    return BootstrapContent(
        dev_id=str(doc["dev_id"]),
        account=DmAccount(server_id=account["server_id"], server_uri=account["server_uri"],
                          name=account.get("name", ""), permitted_moids=tuple(account.get("permitted_moids", ())),
                          notification=dict(account.get("notification", {}))),
        certificate_chain=tuple(pem_to_der(pem) for pem in doc["certificate_chain"]),
        trust_anchors=tuple(
            TrustAnchor(a["role"], a["name"], pem_to_der(a["pem"])) for a in doc.get("trust_anchors", ())
        ),
        data_repository_urls=tuple(doc.get("data_repository_urls", ())),
        extra_mos=tuple(ExtraMo(m["moid"], m["instance"]) for m in doc.get("extra_mos", ())),
        delivery=str(doc.get("delivery", "inline")),
    )


def package2(content: BootstrapContent, registry: DdfRegistry, *, ddf_base_url: str) -> bytes:
    """The DM 2.0 package 2 the device would receive, for a device declaring every MO the content has."""
    declared = {TRUST_1_0, DMACC_1_2, *(m.moid for m in content.extra_mos)}
    instances = bootstrap_instances(content, declared, registry, ddf_base_url=ddf_base_url)
    return encode_request([*(Put(i) for i in instances), End()])


def _pem(der: bytes) -> str:
    return x509.load_der_x509_certificate(der).public_bytes(Encoding.PEM).decode()

