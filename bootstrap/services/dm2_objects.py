"""MO data published for HGET: encrypted at rest under a capability that only package 2 holds.

Ours (docs/dm2-exchange.md, "Data repository"). Each MO instance a device fetches
with HGET is stored in ``dm_object`` as

- ``ref``  = lowercase hex SHA-256 of the capability (the database never holds the capability);
- ``body`` = base64(nonce 12 bytes | AES-256-GCM ciphertext of the MO instance JSON array),
  key = HKDF-SHA256(capability, info ``dmboot-hget-v1``), associated data = ``ref``.

The capability is 32 random bytes, base64url: it travels only in the HGET ServerURI of
package 2, over the TLS session the device opened. So a copy of the database - or of
its backups - reveals no MO data, in particular not a private key the service
generated (``Auth/Trsp/Secret``). An object is **single use** (read and deleted in
one statement: ``DELETE ... RETURNING``), expires after :data:`OBJECT_TTL`, and the
device's remaining objects are deleted when its package 3 arrives. Any replica
serves any object (DM-SYS-001).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import delete
from sqlmodel import Session

from bootstrap.errors import NotFound
from bootstrap.store.db import Database
from bootstrap.store.models import DmObjectRow, utcnow

__all__ = ["OBJECT_TTL", "ObjectStore", "Published"]

#: Ours: how long MO data published for HGET stays available (a device fetches it right away).
OBJECT_TTL = timedelta(minutes=15)
_INFO = b"dmboot-hget-v1"
_CAPABILITY = re.compile(r"[A-Za-z0-9_-]{43}")


@dataclass(frozen=True)
class Published:
    """An object as served: the device it is for and the MO instance JSON array."""

    dev_id: str
    body: bytes


def _ref(capability: str) -> str:
    return hashlib.sha256(capability.encode("ascii")).hexdigest()


def _cipher(capability: str) -> AESGCM:
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO).derive(capability.encode("ascii"))
    return AESGCM(key)


class ObjectStore:
    """Publishes and serves the encrypted, single-use HGET objects."""

    def __init__(self, database: Database, *, ttl: timedelta = OBJECT_TTL) -> None:
        self._db = database
        self._ttl = ttl

    def publish(self, session: Session, dev_id: str, client_uri: str, body: bytes, *,
                now: datetime | None = None) -> str:
        """Store ``body`` for ``dev_id`` in the caller's transaction; return its capability."""
        now = now or utcnow()
        capability = secrets.token_urlsafe(32)
        ref = _ref(capability)
        nonce = secrets.token_bytes(12)
        sealed = nonce + _cipher(capability).encrypt(nonce, body, ref.encode("ascii"))
        session.add(DmObjectRow(ref=ref, dev_id=dev_id, client_uri=client_uri[:512], cv="",
                                body=base64.b64encode(sealed).decode("ascii"), expires_at=now + self._ttl))
        return capability

    def purge_expired(self, session: Session, *, now: datetime | None = None) -> None:
        session.execute(delete(DmObjectRow).where(DmObjectRow.expires_at <= (now or utcnow())))  # type: ignore[arg-type]

    def take(self, capability: str, *, now: datetime | None = None) -> Published:
        """Read and delete the object of ``capability`` (single use).

        Raises:
            NotFound: Unknown, expired, already fetched, or not decryptable with this capability.
        """
        missing = NotFound("no MO data under that reference (unknown, expired, or already fetched)", field="ref")
        if not _CAPABILITY.fullmatch(capability):
            raise missing
        ref = _ref(capability)
        table = DmObjectRow.__table__  # type: ignore[attr-defined]
        with self._db.session() as session:
            row = session.connection().execute(
                delete(table).where(table.c.ref == ref).returning(table.c.dev_id, table.c.body, table.c.expires_at)
            ).first()
        if row is None or row.expires_at <= (now or utcnow()):
            raise missing
        try:
            sealed = base64.b64decode(row.body)
            body = _cipher(capability).decrypt(sealed[:12], sealed[12:], ref.encode("ascii"))
        except (InvalidTag, ValueError, binascii.Error):
            raise missing from None
        return Published(dev_id=row.dev_id, body=body)

    def forget(self, session: Session, dev_id: str) -> None:
        """Delete what is left for ``dev_id`` (its package 3 arrived)."""
        session.execute(delete(DmObjectRow).where(DmObjectRow.dev_id == dev_id))  # type: ignore[arg-type]


