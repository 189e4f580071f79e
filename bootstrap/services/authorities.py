"""The CA hierarchy of the service: create it once, rotate it, load the active issuing CA.

Certificates of our CAs live in the ``authority`` table with a reference to
their key in the secret store (``KeyRef`` URI: backend, key name, version). The
root signs only issuing CAs (and its CRL); devices and servers get certificates
from the active issuing CA.

Rotation (:meth:`AuthorityDirectory.rotate`) brings in ``issuing-<n+1>``, signed by
the root, with a new key or a new version of the current key; the old issuing CA
becomes inactive but keeps its row and key, so what it issued still verifies and
its CRL can still be signed. ``/ca/bundle.pem`` serves every issuing CA still
within its validity, so relying parties trust both during the overlap.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from sqlmodel import Session, select

from bootstrap.errors import NotInitialized, SecretConflict
from bootstrap.secrets.base import KeyRef, SecretStore
from bootstrap.services.audit import append_event
from bootstrap.store.models import AuthorityRow
from pki.authority import CertificateAuthority, create_issuing_ca, create_root, fingerprint
from pki.keys import KeyType
from pki.profiles import Names, Urls

__all__ = ["AuthorityDirectory", "CaInfo", "HierarchyInfo", "RotationInfo", "authority_urls"]

log = logging.getLogger(__name__)

ROOT_NAME = "root"
#: Seconds a process keeps using the active issuing CA it looked up (see active()).
ACTIVE_TTL = 5.0
ISSUING_PREFIX = "issuing-"


@dataclass(frozen=True)
class CaInfo:
    """A CA row as plain values: what a process may remember across sessions.

    Never an ORM row: a row cached from one request's session is detached (and
    expired) when that request rolls back, and then fails every later request.
    """

    id: int
    name: str
    kind: str
    pem: str
    fingerprint: str
    key_ref: str
    parent_id: int | None

    @classmethod
    def of(cls, row: AuthorityRow) -> CaInfo:
        if row.id is None:  # pragma: no cover - a flushed row always has one
            raise NotInitialized("authority row has no id")
        return cls(row.id, row.name, row.kind, row.pem, row.fingerprint, row.key_ref, row.parent_id)


@dataclass(frozen=True)
class HierarchyInfo:
    """What ``dmboot init`` created (or found)."""

    created: bool
    root: AuthorityRow
    issuing: AuthorityRow


@dataclass(frozen=True)
class RotationInfo:
    """What ``dmboot ca rotate`` did: the issuing CA retired and the one now active."""

    previous: AuthorityRow
    current: AuthorityRow
    new_key: bool


def authority_urls(public_url: str, issuer_name: str, crl_partitions: int = 0) -> Urls:
    """CRL, OCSP and CA-issuer URLs in certificates issued by ``issuer_name``.

    With ``crl_partitions`` each certificate names its CRL partition instead of the
    complete CRL (``/crl/<CA>-p<N>.crl``, see :meth:`pki.profiles.Urls.for_serial`).
    """
    base = public_url.rstrip("/")
    return Urls(
        crl=(f"{base}/crl/{issuer_name}.crl",),
        ocsp=(f"{base}/ocsp",),
        ca_issuers=(f"{base}/ca/{issuer_name}.der",),
        crl_partitions=crl_partitions,
    )


class AuthorityDirectory:
    """Finds our CAs and their signers; keeps signers for reuse (they hold no state but keys)."""

    def __init__(self, store: SecretStore, public_url: str, organization: str, *, crl_partitions: int = 0) -> None:
        self._store = store
        #: Only issuing CAs partition their CRLs; the root's CRL lists CA certificates only.
        self.crl_partitions = crl_partitions
        self._public_url = public_url
        self._organization = organization
        self._cache: dict[str, CertificateAuthority] = {}
        self._lock = threading.Lock()
        self._active: tuple[CaInfo, CertificateAuthority, float] | None = None
        self._root: CaInfo | None = None

    def ensure_hierarchy(self, session: Session, key_type: KeyType, actor: str) -> HierarchyInfo:
        """Create the root and the first issuing CA unless they exist."""
        root = session.exec(select(AuthorityRow).where(AuthorityRow.name == ROOT_NAME)).first()
        issuing = self._active_row(session)
        if root is not None and issuing is not None:
            return HierarchyInfo(False, root, issuing)
        root_ref = self._create_key(ROOT_NAME, key_type)
        root_signer = self._store.signer(root_ref)
        names = Names(f"{self._organization} Root CA", self._organization)
        root_cert = create_root(root_signer, names)
        root = self._add(session, ROOT_NAME, "root", None, root_cert, root_ref, active=False)
        first = f"{ISSUING_PREFIX}1"
        issuing = self._new_issuing(session, root, first, self._create_key(first, key_type))
        append_event(
            session,
            actor=actor,
            action="ca.init",
            outcome="success",
            target=issuing.name,
            detail={
                "root": root.fingerprint,
                "issuing": issuing.fingerprint,
                "key_type": key_type.value,
                "root_key": root.key_ref,
                "issuing_key": issuing.key_ref,
            },
        )
        return HierarchyInfo(True, root, issuing)

    def rotate(self, session: Session, actor: str, new_key: bool = True) -> RotationInfo:
        """Bring in the next issuing CA, signed by the root, and make it the active one.

        The previous issuing CA stays in the table (inactive) with its key, so the
        certificates it issued still verify and its CRL can still be signed.

        Args:
            session: The transaction to work in; the caller commits.
            actor: Who asks, for the audit trail (action ``ca.rotate``).
            new_key: True: a new key of the same type; False: a new version of the
                current issuing key (``SecretStore.rotate_key``; in Transit, the same
                key name with its next version).

        Raises:
            NotInitialized: there is no CA hierarchy yet.
            SecretStoreError: the secret store failed; nothing is changed.
        """
        root = self.root_row(session)
        previous = session.exec(
            select(AuthorityRow)
            .where(AuthorityRow.kind == "issuing", AuthorityRow.active == True)  # noqa: E712
            .with_for_update()
        ).first()
        if previous is None:
            raise NotInitialized("no active issuing CA; run `dmboot init`")
        old_ref = KeyRef.from_uri(previous.key_ref)
        name = self._next_issuing_name(session)
        ref = self._create_key(name, old_ref.key_type) if new_key else self._store.rotate_key(old_ref.name)
        previous.active = False
        session.add(previous)
        session.flush()
        current = self._new_issuing(session, root, name, ref)
        append_event(
            session,
            actor=actor,
            action="ca.rotate",
            outcome="success",
            target=current.name,
            detail={
                "previous": previous.name,
                "previous_fingerprint": previous.fingerprint,
                "fingerprint": current.fingerprint,
                "key": current.key_ref,
                "new_key": new_key,
            },
        )
        log.info("rotated the issuing CA: %s (%s) replaces %s", current.name, current.key_ref, previous.name)
        self.invalidate()
        return RotationInfo(previous, current, new_key)

    def _next_issuing_name(self, session: Session) -> str:
        numbers = [
            int(n.removeprefix(ISSUING_PREFIX))
            for n in session.exec(select(AuthorityRow.name))
            if n.startswith(ISSUING_PREFIX) and n.removeprefix(ISSUING_PREFIX).isdigit()
        ]
        return f"{ISSUING_PREFIX}{max(numbers, default=0) + 1}"

    def _create_key(self, authority_name: str, key_type: KeyType) -> KeyRef:
        """A new key ``ca-<authority name>``; if that name is taken, a suffixed one.

        A key no row refers to is left behind when a transaction fails after the key
        was made (Vault keys cannot be deleted by the service: the policy forbids it);
        it must not block the next attempt.
        """
        name = f"ca-{authority_name}"
        try:
            return self._store.create_key(name, key_type)
        except SecretConflict:
            fresh = f"{name}-{secrets.token_hex(4)}"
            log.warning("key %s exists already (left by a failed attempt?); using %s", name, fresh)
            return self._store.create_key(fresh, key_type)

    def _new_issuing(self, session: Session, root: AuthorityRow, name: str, ref: KeyRef) -> AuthorityRow:
        root_ca = self.authority(session, root)
        names = Names(f"{self._organization} Issuing CA {name.rsplit('-', 1)[-1]}", self._organization)
        cert = create_issuing_ca(root_ca, self._store.signer(ref).public_key, names)
        return self._add(session, name, "issuing", root.id, cert, ref, active=True)

    def _add(
        self,
        session: Session,
        name: str,
        kind: str,
        parent_id: int | None,
        cert: x509.Certificate,
        ref: KeyRef,
        *,
        active: bool,
    ) -> AuthorityRow:
        row = AuthorityRow(
            name=name,
            kind=kind,
            parent_id=parent_id,
            subject=cert.subject.rfc4514_string(),
            serial_hex=format(cert.serial_number, "x"),
            fingerprint=fingerprint(cert),
            not_before=cert.not_valid_before_utc,
            not_after=cert.not_valid_after_utc,
            key_ref=ref.to_uri(),
            pem=cert.public_bytes(Encoding.PEM).decode(),
            active=active,
        )
        session.add(row)
        session.flush()
        return row

    def _active_row(self, session: Session) -> AuthorityRow | None:
        query = select(AuthorityRow).where(AuthorityRow.kind == "issuing", AuthorityRow.active == True)  # noqa: E712
        return session.exec(query).first()

    def root_row(self, session: Session) -> AuthorityRow:
        """The root CA's row, read in ``session``."""
        row = session.exec(select(AuthorityRow).where(AuthorityRow.name == ROOT_NAME)).first()
        if row is None:
            raise NotInitialized("no CA hierarchy yet; run `dmboot init`")
        return row

    def root(self, session: Session) -> CaInfo:
        """The root CA as plain values (remembered once found: the root never changes)."""
        with self._lock:
            if self._root is not None:
                return self._root
        info = CaInfo.of(self.root_row(session))
        with self._lock:
            self._root = info
        return info

    def active_row(self, session: Session) -> AuthorityRow:
        row = self._active_row(session)
        if row is None:
            raise NotInitialized("no active issuing CA; run `dmboot init`")
        return row

    def all_rows(self, session: Session) -> list[AuthorityRow]:
        return list(session.exec(select(AuthorityRow).order_by(AuthorityRow.id)))  # type: ignore[arg-type]

    def bundle_rows(self, session: Session, now: datetime | None = None) -> list[AuthorityRow]:
        """Every issuing CA still within its validity (the active one first, then newest first), then the root.

        What relying parties should trust while certificates of a retired issuing
        CA are still in use.
        """
        at = now or datetime.now(UTC)
        rows = self.all_rows(session)
        issuing = [r for r in rows if r.kind == "issuing" and _valid_at(r, at)]
        issuing.sort(key=lambda r: (not r.active, -(r.id or 0)))
        return issuing + [self.root_row(session)]

    def active(self, session: Session) -> tuple[CaInfo, CertificateAuthority]:
        """The active issuing CA (plain values) and a ready CertificateAuthority.

        Remembered for ACTIVE_TTL seconds: every issuance asks, and the answer changes
        only on rotation. A rotation in this process is seen at once (invalidate());
        one made by another replica within ACTIVE_TTL.
        """
        now = time.monotonic()
        with self._lock:
            cached = self._active
        if cached is not None and cached[2] > now:
            return cached[0], cached[1]
        row = self.active_row(session)
        authority = self.authority(session, row)
        info = CaInfo.of(row)
        with self._lock:
            self._active = (info, authority, now + ACTIVE_TTL)
        return info, authority

    def invalidate(self) -> None:
        """Forget the remembered active CA (after a rotation)."""
        with self._lock:
            self._active = None

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
        partitions = self.crl_partitions if row.kind == "issuing" else 0
        authority = CertificateAuthority(cert, signer, chain=chain,
                                         urls=authority_urls(self._public_url, row.name, partitions))
        with self._lock:
            self._cache[key] = authority
        return authority


def _valid_at(row: AuthorityRow, at: datetime) -> bool:
    # From the certificate, not the columns: SQLite hands datetimes back without a zone.
    cert = x509.load_pem_x509_certificate(row.pem.encode())
    return cert.not_valid_before_utc <= at < cert.not_valid_after_utc
