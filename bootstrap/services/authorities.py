"""The CA hierarchy of the service: create it once, load the active issuing CA.

Certificates of our CAs live in the ``authority`` table with a reference to
their key in the secret store. The root signs only issuing CAs (and its CRL);
devices and servers get certificates from the active issuing CA.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from sqlmodel import Session, select

from bootstrap.errors import NotInitialized
from bootstrap.secrets.base import KeyRef, SecretStore
from bootstrap.services.audit import append_event
from bootstrap.store.models import AuthorityRow
from pki.authority import CertificateAuthority, create_issuing_ca, create_root, fingerprint
from pki.keys import KeyType
from pki.profiles import Names, Urls

__all__ = ["AuthorityDirectory", "HierarchyInfo", "authority_urls"]

ROOT_NAME = "root"


@dataclass(frozen=True)
class HierarchyInfo:
    """What ``dmboot init`` created (or found)."""

    created: bool
    root: AuthorityRow
    issuing: AuthorityRow


def authority_urls(public_url: str, issuer_name: str) -> Urls:
    """CRL, OCSP and CA-issuer URLs in certificates issued by ``issuer_name``."""
    base = public_url.rstrip("/")
    return Urls(
        crl=(f"{base}/crl/{issuer_name}.crl",),
        ocsp=(f"{base}/ocsp",),
        ca_issuers=(f"{base}/ca/{issuer_name}.der",),
    )


class AuthorityDirectory:
    """Finds our CAs and their signers; keeps signers for reuse (they hold no state but keys)."""

    def __init__(self, store: SecretStore, public_url: str, organization: str) -> None:
        self._store = store
        self._public_url = public_url
        self._organization = organization
        self._cache: dict[str, CertificateAuthority] = {}
        self._lock = threading.Lock()

    def ensure_hierarchy(self, session: Session, key_type: KeyType, actor: str) -> HierarchyInfo:
        """Create the root and the first issuing CA unless they exist."""
        root = session.exec(select(AuthorityRow).where(AuthorityRow.name == ROOT_NAME)).first()
        issuing = self._active_row(session)
        if root is not None and issuing is not None:
            return HierarchyInfo(False, root, issuing)
        root_ref = self._store.create_key(f"ca/{ROOT_NAME}", key_type)
        root_signer = self._store.signer(root_ref)
        names = Names(f"{self._organization} Root CA", self._organization)
        root_cert = create_root(root_signer, names)
        root = self._add(session, ROOT_NAME, "root", None, root_cert, root_ref, active=False)
        issuing = self._new_issuing(session, root, "issuing-1", key_type)
        append_event(session, actor=actor, action="ca.init", outcome="success", target=issuing.name,
                     detail={"root": root.fingerprint, "issuing": issuing.fingerprint, "key_type": key_type.value})
        return HierarchyInfo(True, root, issuing)

    def _new_issuing(self, session: Session, root: AuthorityRow, name: str, key_type: KeyType) -> AuthorityRow:
        ref = self._store.create_key(f"ca/{name}", key_type)
        root_ca = self.authority(session, root)
        names = Names(f"{self._organization} Issuing CA {name.rsplit('-', 1)[-1]}", self._organization)
        cert = create_issuing_ca(root_ca, self._store.signer(ref).public_key, names)
        return self._add(session, name, "issuing", root.id, cert, ref, active=True)

    def _add(self, session: Session, name: str, kind: str, parent_id: int | None,
             cert: x509.Certificate, ref: KeyRef, *, active: bool) -> AuthorityRow:
        row = AuthorityRow(
            name=name, kind=kind, parent_id=parent_id, subject=cert.subject.rfc4514_string(),
            serial_hex=format(cert.serial_number, "x"), fingerprint=fingerprint(cert),
            not_before=cert.not_valid_before_utc, not_after=cert.not_valid_after_utc,
            key_ref=ref.to_uri(), pem=cert.public_bytes(Encoding.PEM).decode(), active=active,
        )
        session.add(row)
        session.flush()
        return row

    def _active_row(self, session: Session) -> AuthorityRow | None:
        query = select(AuthorityRow).where(AuthorityRow.kind == "issuing", AuthorityRow.active == True)  # noqa: E712
        return session.exec(query).first()

    def root_row(self, session: Session) -> AuthorityRow:
        row = session.exec(select(AuthorityRow).where(AuthorityRow.name == ROOT_NAME)).first()
        if row is None:
            raise NotInitialized("no CA hierarchy yet; run `dmboot init`")
        return row

    def active_row(self, session: Session) -> AuthorityRow:
        row = self._active_row(session)
        if row is None:
            raise NotInitialized("no active issuing CA; run `dmboot init`")
        return row

    def all_rows(self, session: Session) -> list[AuthorityRow]:
        return list(session.exec(select(AuthorityRow).order_by(AuthorityRow.id)))  # type: ignore[arg-type]

    def active(self, session: Session) -> tuple[AuthorityRow, CertificateAuthority]:
        """The active issuing CA's row and a ready CertificateAuthority."""
        row = self.active_row(session)
        return row, self.authority(session, row)

    def authority(self, session: Session, row: AuthorityRow) -> CertificateAuthority:
        """A CertificateAuthority for ``row`` (cached: rows never change their key)."""
        key = row.fingerprint
        with self._lock:
            cached = self._cache.get(key)
        if cached is not None:
            return cached
        cert = x509.load_pem_x509_certificate(row.pem.encode())
        signer = self._store.signer(KeyRef.from_uri(row.key_ref))
        chain: list[x509.Certificate] = []
        if row.parent_id is not None:
            parent = session.get(AuthorityRow, row.parent_id)
            if parent is not None:
                chain.append(x509.load_pem_x509_certificate(parent.pem.encode()))
        authority = CertificateAuthority(cert, signer, chain=chain, urls=authority_urls(self._public_url, row.name))
        with self._lock:
            self._cache[key] = authority
        return authority
