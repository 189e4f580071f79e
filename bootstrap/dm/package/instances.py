"""The MO instances of package 2: what a device gets from its :class:`~bootstrap.dm.content.BootstrapContent`.

Only the MOs the device declared, each validated against its DDF (DM-INT-004): our trust MO,
the DMAcc 1.2 account, and the profile's extra MOs.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from cryptography import x509

from bootstrap.dm.content import BootstrapContent
from bootstrap.dm.ddf import DdfRegistry, MoValidationError, node_name_error
from bootstrap.dm.mo import (
    DMACC_1_2,
    TRUST_1_0,
    TRUST_ROLES,
    MoInstance,
    ddf_url,
    trust_fingerprint,
    validate_instance,
)
from bootstrap.dm.package._json import PackageBuildError

__all__ = ["DEFAULT_PERM", "SECMODE_X509", "TRUST_MIID", "BootstrapServer", "account_instance", "account_miid",
           "bootstrap_instances", "trust_instance"]

#: Ours: the MIID of the trust MO instance we PUT (one per bootstrap service).
TRUST_MIID = "dmboot"


def account_miid(server_id: str) -> str:
    """Ours: the DMAcc MIID for a DM server - its SrvID when that is a valid node name.

    Otherwise ``acc-`` and 16 hex digits of its SHA-256. Bootstrapping again to the same
    server replaces the same instance.
    """
    if node_name_error(server_id) is None and len(server_id) <= 64:
        return server_id
    return "acc-" + hashlib.sha256(server_id.encode()).hexdigest()[:16]


#: Ours: Auth/Bootstrap/SecMode values (bin, one byte); the specification's value set is not known.
SECMODE_X509 = b"\x00"
#: Ours: Perm/<x>/MOID when the profile names no MOID (Perm is Required, OneOrMore).
DEFAULT_PERM = ("urn:oma:mo:oma-dm-devinfo:1.0",)


@dataclass(frozen=True)
class BootstrapServer:
    """The bootstrap server as DMAcc ``Auth/Bootstrap`` names it: its URI and TLS certificate (DER)."""

    uri: str
    certificate_der: bytes


def account_instance(content: BootstrapContent, *, ddf_base_url: str,
                     bootstrap: BootstrapServer | None = None) -> MoInstance:
    """The DMAcc 1.2 instance (DMAcc 1.2 table): SrvID, SrvURI, Name, Perm, Auth/Trsp, Auth/Bootstrap.

    ``Auth/Trsp/Data`` is the device's own certificate, DER; ``Auth/Trsp/Secret`` its private
    key (PKCS#8 DER) when the service generated it, else empty (ours: the device holds the
    key of Data). ``Auth/Bootstrap`` (when ``bootstrap`` is given) carries the bootstrap
    server's URI and certificate (ServerPubKey), SecMode X.509, and the client's bootstrap
    credential: ClientPubKey = the same certificate, ClientSecretKey = the same key (or empty).
    ``Auth/Noti`` is not sent: its Secret is Required and this service holds no package 0 secret.
    """
    account = content.account
    leaf = _leaf(content)
    secret = content.private_key_der or b""
    perm = account.permitted_moids or DEFAULT_PERM
    data: dict[str, Any] = {"SrvID": account.server_id, "SrvURI": account.server_uri,
                            "Name": account.name or account.server_id,
                            "Perm": {str(i): {"MOID": moid} for i, moid in enumerate(perm, 1)}}
    auth: dict[str, Any] = {"Trsp": {"Data": leaf, "Secret": secret}}
    if bootstrap is not None:
        auth["Bootstrap"] = {"ServerURI": bootstrap.uri, "SecMode": SECMODE_X509, "ClientPubKey": leaf,
                             "ServerPubKey": bootstrap.certificate_der, "ClientSecretKey": secret}
    data["Auth"] = auth
    return MoInstance.create(DMACC_1_2, data, ddf_url=ddf_url(DMACC_1_2, base_url=ddf_base_url),
                             miid=account_miid(account.server_id))


def trust_instance(content: BootstrapContent, *, ddf_base_url: str) -> MoInstance:
    """Our trust MO: the anchors by role, and the device's certificate chain with its expiry."""
    anchors: dict[str, Any] = {}
    for i, anchor in enumerate(content.trust_anchors, 1):
        if anchor.role not in TRUST_ROLES:
            raise PackageBuildError(f"trust anchor {anchor.name!r} has role {anchor.role!r}; "
                                    f"one of {', '.join(sorted(TRUST_ROLES))} is needed")
        node: dict[str, Any] = {"Role": anchor.role, "Cert": anchor.der, "Fingerprint": trust_fingerprint(anchor.der)}
        if anchor.name:
            node["Name"] = anchor.name
        anchors[str(i)] = node
    leaf = x509.load_der_x509_certificate(_leaf(content))
    data = {
        "Anchors": anchors,
        "Credential": {
            "Chain": {str(i): der for i, der in enumerate(content.certificate_chain, 1)},
            "NotAfter": leaf.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ"),
        },
    }
    return MoInstance.create(TRUST_1_0, data, ddf_url=ddf_url(TRUST_1_0, base_url=ddf_base_url), miid=TRUST_MIID)


def _leaf(content: BootstrapContent) -> bytes:
    if not content.certificate_chain:
        raise PackageBuildError(f"no certificate chain for {content.dev_id}")
    return content.certificate_chain[0]


def bootstrap_instances(content: BootstrapContent, declared: Collection[str], registry: DdfRegistry, *,
                        ddf_base_url: str, bootstrap: BootstrapServer | None = None) -> tuple[MoInstance, ...]:
    """The MO instances for package 2, in the order they are to be applied.

    Only MOs whose MOID the device declared in its MOS list are included (DM-HLF-001):
    the trust MO first (it lets the device authenticate what follows), then the DMAcc
    account, then the profile's extra MOs. Each is validated against its DDF (DM-INT-004).

    Raises:
        PackageBuildError: An instance does not match its DDF, or no DDF is registered for it.
    """
    wanted: list[MoInstance] = []
    if TRUST_1_0 in declared:
        wanted.append(trust_instance(content, ddf_base_url=ddf_base_url))
    if DMACC_1_2 in declared:
        wanted.append(account_instance(content, ddf_base_url=ddf_base_url, bootstrap=bootstrap))
    for instance in wanted:  # these carry the device's own certificate: checked per device
        _validated(instance, registry)
    extras = [_checked_extra(extra.moid, json.dumps(extra.instance, sort_keys=True, default=str), registry)
              for extra in content.extra_mos if extra.moid in declared]
    return (*wanted, *extras)


def _validated(instance: MoInstance, registry: DdfRegistry) -> MoInstance:
    try:
        validate_instance(instance, registry)
    except MoValidationError as exc:
        raise PackageBuildError(f"{instance.client_uri} does not match its DDF: {exc}") from None
    return instance


@functools.lru_cache(maxsize=256)
def _checked_extra(moid: str, canonical: str, registry: DdfRegistry) -> MoInstance:
    """A profile's extra MO, built and validated against its DDF once per profile version.

    Keyed by the instance's canonical JSON (what a profile version fixes), so an edited
    profile is checked again; a refusal is not remembered. The value is a frozen MoInstance.
    """
    return _validated(_extra(moid, json.loads(canonical)), registry)


def _extra(moid: str, obj: Mapping[str, Any]) -> MoInstance:
    try:
        instance = MoInstance.from_json(dict(obj))
    except MoValidationError as exc:
        raise PackageBuildError(f"the profile's extra MO {moid} is not MO instance JSON: {exc}") from None
    if instance.moid != moid:
        raise PackageBuildError(f"the profile's extra MO is declared as {moid} but names {instance.moid}")
    return instance  # the CV is the client's to assign (MO serialization): none from us
