"""Serve CRLs (RFC 5280 section 5) from the database; building them is the publisher's job.

What each of our CAs publishes (built by :mod:`bootstrap.services.crl_publisher`):

==========================  ===========  ==============================================
file                        kind         scope (issuingDistributionPoint)
==========================  ===========  ==============================================
``/crl/<CA>.crl``           full         complete: every revoked certificate of the CA,
                                         no IDP (the root's: onlyContainsCACerts)
``/crl/<CA>-delta.crl``     delta        changes since the oldest unexpired full CRL
``/crl/<CA>-p<N>.crl``      partition    the certificates whose CRL distribution point
                                         names partition N (IDP names that URL)
==========================  ===========  ==============================================

Serving never builds: a request reads the newest stored CRL of its scope (a head
query, then the DER only when this process has not read that number yet) and
answers 503 ``not-initialized`` when none was ever published. Every replica serves
the same bytes.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509
from sqlalchemy import Table, bindparam
from sqlalchemy import select as sa_select

from bootstrap.errors import NotFound, NotInitialized
from bootstrap.store.db import Database
from bootstrap.store.models import AuthorityRow, CrlRow

__all__ = [
    "DELTA",
    "FULL",
    "PARTITION",
    "CrlService",
    "PublishedCrl",
    "crl_url",
    "delta_crl_url",
    "partition_scope",
    "scope_of_certificate",
]

FULL = "full"
DELTA = "delta"
PARTITION = "partition"
#: nextUpdate - thisUpdate of a full CRL or a partition. Relying parties cache it until nextUpdate.
FULL_VALIDITY = timedelta(days=1)
#: Delta CRLs are short-lived: they carry the news between full CRLs.
DELTA_VALIDITY = timedelta(hours=1)
_PARTITION_NAME = re.compile(r"^(?P<ca>.+)-p(?P<n>\d{1,6})\Z")
_CRLS: Table = CrlRow.__table__  # type: ignore[attr-defined]
_AUTHORITIES: Table = AuthorityRow.__table__  # type: ignore[attr-defined]
_HEAD_QUERY = (
    sa_select(_CRLS.c.number, _CRLS.c.this_update, _CRLS.c.next_update)
    .where(_CRLS.c.authority_id == bindparam("authority"), _CRLS.c.kind == bindparam("kind"),
           _CRLS.c.scope == bindparam("scope"), _CRLS.c.der.is_not(None))
    .order_by(_CRLS.c.number.desc())
    .limit(1)
)
_DER_QUERY = sa_select(_CRLS.c.der).where(_CRLS.c.authority_id == bindparam("authority"),
                                          _CRLS.c.number == bindparam("number"))
_AUTHORITY_QUERY = sa_select(_AUTHORITIES.c.id).where(_AUTHORITIES.c.name == bindparam("name"))


def crl_url(public_url: str, scope: str) -> str:
    """Where the CRL of ``scope`` (a CA's name, or ``<CA>-p<N>``) is published."""
    return f"{public_url.rstrip('/')}/crl/{scope}.crl"


def delta_crl_url(public_url: str, issuer_name: str) -> str:
    """Where the delta CRL of ``issuer_name`` is published (freshestCRL, RFC 5280 5.2.6)."""
    return f"{public_url.rstrip('/')}/crl/{issuer_name}-delta.crl"


def partition_scope(issuer_name: str, partition: int) -> str:
    """The scope (and file stem) of partition ``partition`` of ``issuer_name``'s CRL."""
    return f"{issuer_name}-p{partition}"


def scope_of_certificate(certificate: x509.Certificate, issuer_name: str) -> str:
    """The CRL scope a certificate of ``issuer_name`` names in its CRL distribution point.

    ``<CA>-p<N>`` for a partitioned certificate; the CA's name for one that names the
    complete CRL or none (certificates issued before partitioning, CA certificates).
    """
    try:
        points = certificate.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    except x509.ExtensionNotFound:
        return issuer_name
    for point in points:
        for name in point.full_name or ():
            if isinstance(name, x509.UniformResourceIdentifier):
                stem = name.value.rsplit("/", 1)[-1].removesuffix(".crl")
                match = _PARTITION_NAME.match(stem)
                if match and match["ca"] == issuer_name:
                    return stem
    return issuer_name


@dataclass(frozen=True)
class PublishedCrl:
    """A CRL as served: DER and the facts HTTP caching needs."""

    issuer: str
    kind: str
    number: int
    this_update: datetime
    next_update: datetime
    der: bytes
    scope: str = ""

    @property
    def refresh_at(self) -> datetime:
        """When the publisher rebuilds it at the latest: half-way to nextUpdate."""
        return self.this_update + (self.next_update - self.this_update) / 2


class CrlService:
    """Serves the stored CRLs of our CAs."""

    def __init__(self, database: Database) -> None:
        self._db = database
        self._cache: dict[tuple[int, str, str], PublishedCrl] = {}
        self._authority_ids: dict[str, int] = {}
        self._lock = threading.Lock()

    def resolve(self, stem: str) -> tuple[str, str, str]:
        """(CA name, kind, scope) of a CRL file name without ``.crl``.

        Raises:
            NotFound: no CA of that name.
        """
        if stem.endswith("-delta"):
            issuer = stem.removesuffix("-delta")
            self._authority_id(issuer)
            return issuer, DELTA, issuer
        match = _PARTITION_NAME.match(stem)
        if match and self._known(match["ca"]):
            return match["ca"], PARTITION, partition_scope(match["ca"], int(match["n"]))
        self._authority_id(stem)
        return stem, FULL, stem

    def current(self, issuer_name: str, kind: str = FULL, scope: str | None = None) -> PublishedCrl:
        """The newest published CRL of ``issuer_name``: ``full``, ``delta`` or a ``partition`` ``scope``.

        Raises:
            NotFound: no CA of that name.
            NotInitialized: that CRL has not been published yet (the publisher is due to).
        """
        authority_id = self._authority_id(issuer_name)
        wanted = scope or issuer_name
        key = (authority_id, kind, wanted)
        with self._db.reader() as connection:
            head = connection.execute(_HEAD_QUERY, {"authority": authority_id, "kind": kind, "scope": wanted}).first()
            if head is None:
                raise NotInitialized(f"the CRL {wanted} ({kind}) has not been published yet; retry shortly")
            number, this_update, next_update = head
            with self._lock:
                cached = self._cache.get(key)
            if cached is not None and cached.number == number:
                return cached
            der = connection.execute(_DER_QUERY, {"authority": authority_id, "number": number}).scalar()
        if der is None:  # superseded between the two reads: read the newer one
            return self.current(issuer_name, kind, scope)
        published = PublishedCrl(issuer_name, kind, number, this_update, next_update, bytes(der), wanted)
        with self._lock:
            self._cache[key] = published
        return published

    def _known(self, issuer_name: str) -> bool:
        try:
            self._authority_id(issuer_name)
        except NotFound:
            return False
        return True

    def _authority_id(self, issuer_name: str) -> int:
        with self._lock:
            known = self._authority_ids.get(issuer_name)
        if known is not None:
            return known
        with self._db.reader() as connection:
            found = connection.execute(_AUTHORITY_QUERY, {"name": issuer_name}).scalar()
        if found is None:
            raise NotFound(f"no CA named {issuer_name!r}", field="issuer")
        with self._lock:  # CA rows never change their id: safe to keep
            self._authority_ids[issuer_name] = int(found)
        return int(found)
