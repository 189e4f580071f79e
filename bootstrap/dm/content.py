"""What a device receives at bootstrap, independent of the wire format.

The enrollment service fills a :class:`BootstrapContent`; format builders turn
it into a DM 2.0 package 2 (``bootstrap.dm.package``), a plain JSON document
(``POST /api/v1/enroll``), or a DM 1.x SyncML message (DMAcc 1.0). Certificates
are DER bytes, in TLS order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["BootstrapContent", "DmAccount", "ExtraMo", "TrustAnchor"]


@dataclass(frozen=True)
class TrustAnchor:
    """A certificate the device must trust for a role (trust MO ``Anchors/<x>``)."""

    role: str  # "dm-server" | "data-repository" | "issuing-ca" (bootstrap.dm.mo.TRUST_ROLES)
    name: str  # the DM server's SrvID, the repository's name, or the CA's name
    der: bytes


@dataclass(frozen=True)
class DmAccount:
    """The DM account (DMAcc 1.2 for DM 2.0; mapped to DMAcc 1.0 for DM 1.x)."""

    server_id: str  # SrvID
    server_uri: str  # SrvURI
    name: str = ""
    #: MOIDs the server may manage (Perm/<x>/MOID).
    permitted_moids: tuple[str, ...] = ()
    #: Notification settings (Auth/Noti): {"Type": .., "Data": ..}; secrets never included.
    notification: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ExtraMo:
    """An additional MO instance from the enrollment profile (DM 2.0 MO instance JSON)."""

    moid: str
    instance: dict[str, Any]


@dataclass(frozen=True)
class BootstrapContent:
    """Everything one device gets at bootstrap."""

    dev_id: str
    account: DmAccount
    #: The device certificate first, then the issuing CA (root excluded), DER.
    certificate_chain: tuple[bytes, ...]
    #: Anchors for DM servers, data repositories and our issuing CA.
    trust_anchors: tuple[TrustAnchor, ...] = ()
    #: URLs of the data repositories (for HGET delivery, DM-HLF-003).
    data_repository_urls: tuple[str, ...] = ()
    extra_mos: tuple[ExtraMo, ...] = ()
    #: "inline" (PUT with data) or "hget" (device fetches MO data from a data repository).
    delivery: str = "inline"
    #: The device's private key, PKCS#8 DER - only when the server generated it (factory).
    private_key_der: bytes | None = field(default=None, repr=False)
