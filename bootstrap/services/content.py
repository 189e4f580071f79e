"""What an enrollment profile gives every device: the one place its rules live.

The enrollment service (one device at a time) and the factory (a template per
batch) both build bootstrap content from here, so the choice of DM server, the
order and origin of trust anchors and the filtering of extra MOs cannot drift apart.
"""

from __future__ import annotations

import functools
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from sqlalchemy import Table, bindparam, select
from sqlmodel import Session

from bootstrap.dm.content import BootstrapContent, DmAccount, ExtraMo, TrustAnchor
from bootstrap.errors import InvalidRequest
from bootstrap.services.authorities import CaInfo
from bootstrap.store.models import (
    AuthorityRow,
    DataRepositoryRow,
    DmServerRow,
    EnrollmentProfileRow,
    ProfileDataRepositoryRow,
    ProfileDmServerRow,
)

__all__ = ["ProfileContent", "pem_to_der", "profile_content"]

_SERVERS: Table = DmServerRow.__table__  # type: ignore[attr-defined]
_REPOS: Table = DataRepositoryRow.__table__  # type: ignore[attr-defined]
_SERVER_LINKS: Table = ProfileDmServerRow.__table__  # type: ignore[attr-defined]
_REPO_LINKS: Table = ProfileDataRepositoryRow.__table__  # type: ignore[attr-defined]
_SERVER_COLUMNS = (_SERVERS.c.id, _SERVERS.c.server_id, _SERVERS.c.name, _SERVERS.c.url, _SERVERS.c.trust_anchor_pem)
# Built once: they run on every enrollment. The profile's lists in their order (the first
# DM server is the account's), joined to the rows they name.
_PROFILE_SERVERS = (select(*_SERVER_COLUMNS).join(_SERVER_LINKS, _SERVER_LINKS.c.dm_server_id == _SERVERS.c.id)
                    .where(_SERVER_LINKS.c.profile_id == bindparam("profile")).order_by(_SERVER_LINKS.c.position))
_ONE_SERVER = select(*_SERVER_COLUMNS).where(_SERVERS.c.id == bindparam("id"))
_PROFILE_REPOS = (select(_REPOS.c.id, _REPOS.c.name, _REPOS.c.url, _REPOS.c.trust_anchor_pem)
                  .join(_REPO_LINKS, _REPO_LINKS.c.data_repository_id == _REPOS.c.id)
                  .where(_REPO_LINKS.c.profile_id == bindparam("profile")).order_by(_REPO_LINKS.c.position))


@functools.lru_cache(maxsize=256)
def pem_to_der(pem: str) -> bytes:
    """DER of a PEM certificate (remembered: the same few CA certificates, every enrollment)."""
    return x509.load_pem_x509_certificate(pem.encode()).public_bytes(Encoding.DER)


@dataclass(frozen=True)
class ProfileContent:
    """The per-profile part of a device's bootstrap content."""

    account: DmAccount
    trust_anchors: tuple[TrustAnchor, ...]
    data_repository_urls: tuple[str, ...]
    extra_mos: tuple[ExtraMo, ...]
    delivery: str

    def for_device(
        self,
        dev_id: str,
        certificate_chain: tuple[bytes, ...],
        *,
        declared: Collection[str] | None = None,
        chosen_packages: Collection[str] = (),
    ) -> BootstrapContent:
        """The content for one device.

        Only extra MOs the device declared are delivered (DM-HLF-001; None: no
        declaration, all of them). A subscriber's chosen packages (use case B.2,
        ClientURIs of the profile's extra MOs) narrow the set; no choice keeps it whole.
        """
        chosen = set(chosen_packages)
        extra = tuple(
            m for m in self.extra_mos
            if (declared is None or m.moid in declared) and (not chosen or str(m.instance.get("ClientURI")) in chosen)
        )
        return BootstrapContent(
            dev_id=dev_id, account=self.account, certificate_chain=certificate_chain,
            trust_anchors=self.trust_anchors, data_repository_urls=self.data_repository_urls,
            extra_mos=extra, delivery=self.delivery,
        )


def profile_content(
    session: Session,
    profile: EnrollmentProfileRow,
    *,
    root: AuthorityRow | CaInfo,
    issuing: AuthorityRow | CaInfo,
    chosen_server_id: int | None = None,
) -> ProfileContent:
    """The profile's account, trust anchors, repositories and extra MOs.

    The account is for ``chosen_server_id`` (a subscriber's choice, use case B.1) or
    the profile's first DM server. Trust anchors: every DM server (the chosen one
    first), every data repository, then our issuing CA; a server or repository with
    no anchor of its own is trusted through our root.

    Raises:
        InvalidRequest: the profile names no DM server.
    """
    # Core rows, not ORM objects: this runs on every enrollment and reads only columns.
    connection = session.connection()
    listed = list(connection.execute(_PROFILE_SERVERS, {"profile": profile.id}))
    if not listed:
        raise InvalidRequest(f"enrollment profile {profile.name!r} has no DM server", field="profile")
    servers = {s.id: s for s in listed}
    server_ids = [s.id for s in listed]
    if chosen_server_id is not None and chosen_server_id not in servers:
        servers.update((s.id, s) for s in connection.execute(_ONE_SERVER, {"id": chosen_server_id}))
        server_ids.insert(0, chosen_server_id)
    repos = list(connection.execute(_PROFILE_REPOS, {"profile": profile.id}))
    account_server = servers[chosen_server_id or server_ids[0]]
    root_der = pem_to_der(root.pem)

    def anchor(pem: str | None) -> bytes:
        return pem_to_der(pem) if pem else root_der

    anchors = [TrustAnchor("dm-server", servers[i].server_id, anchor(servers[i].trust_anchor_pem))
               for i in server_ids if i in servers]
    anchors += [TrustAnchor("data-repository", r.name, anchor(r.trust_anchor_pem)) for r in repos]
    anchors.append(TrustAnchor("issuing-ca", issuing.name, pem_to_der(issuing.pem)))
    dmacc = profile.dmacc
    account = DmAccount(
        server_id=account_server.server_id, server_uri=account_server.url,
        name=str(dmacc.get("Name", account_server.name)),
        permitted_moids=tuple(dmacc.get("Perm", ())), notification=dict(dmacc.get("Noti", {})),
    )
    return ProfileContent(
        account=account, trust_anchors=tuple(anchors), data_repository_urls=tuple(r.url for r in repos),
        extra_mos=tuple(ExtraMo(_moid(obj), obj) for obj in profile.extra_mos), delivery=profile.delivery,
    )


def _moid(obj: dict[str, Any]) -> str:
    """An MO instance's MOID: its ``MOID`` member (our earlier form), else the ClientURI's first part."""
    return str(obj.get("MOID") or str(obj.get("ClientURI", "")).partition("/")[0])
