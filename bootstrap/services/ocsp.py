"""The OCSP responder (RFC 6960): status of our certificates, signed by delegated responders.

Each of our CAs certifies its own OCSP responder key (profile ``ocsp-signer``,
RFC 6960 4.2.2.2). The key is kept in the secret store as ``ocsp/<CA name>``,
like CA keys (Vault Transit works: responses are then signed in Vault); the
responder certificate is recorded in the ``ocsp_signer`` table and in the
certificate inventory. It is renewed, with a new key version, when less than
a third of its life is left; any replica can do so, under the CA row's lock.

Requests without a nonce are answered with pre-signed responses (RFC 5019 2.1.1):
one per serial and CertID hash, stored for every replica and held in memory
(:mod:`bootstrap.services.ocsp_cache`); :meth:`OcspResponder.respond_cached` answers
from memory without the database or a thread. A revocation deletes the stored
responses in its transaction and evicts them here at once; other replicas evict
them within the cache's sync interval. A nonce makes every response fresh, signed
live after a status read.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp as x509_ocsp
from sqlalchemy import Table, bindparam
from sqlalchemy import select as sa_select
from sqlmodel import Session, col, select

from bootstrap import metrics
from bootstrap.errors import SecretConflict
from bootstrap.secrets.base import KeyRef, SecretStore
from bootstrap.services.audit import append_event
from bootstrap.services.authorities import AuthorityDirectory
from bootstrap.services.ocsp_cache import CacheKey, OcspCache, StoredResponse
from bootstrap.store.db import Database
from bootstrap.store.models import AuthorityRow, CertificateRow, OcspSignerRow, row_id, utcnow
from pki.authority import fingerprint
from pki.errors import SignerError, SignerUnavailable
from pki.ocsp import (
    CertStatus,
    OcspQuery,
    OcspRequestError,
    build_response,
    decode_get_request,
    issuer_hashes,
    parse_request,
    unsuccessful,
)
from pki.profiles import PROFILES, Names
from pki.revocation import REASONS
from pki.signers import Signer

__all__ = ["OcspAnswer", "OcspResponder", "REUSE_FOR", "RESPONSE_VALIDITY"]

log = logging.getLogger(__name__)

#: nextUpdate - thisUpdate: how long relying parties may cache a response.
RESPONSE_VALIDITY = timedelta(hours=1)
#: A pre-signed (nonce-less) response is served while younger than this, then signed again.
REUSE_FOR = RESPONSE_VALIDITY / 2
_PARSED_LIMIT = 100_000
#: Seconds between re-reads of our CAs when a request names an issuer we do not know.
RELOAD_ISSUERS = 30.0
_CERTIFICATES: Table = CertificateRow.__table__  # type: ignore[attr-defined]
_AUTHORITIES: Table = AuthorityRow.__table__  # type: ignore[attr-defined]
_STATUS_QUERY = sa_select(_CERTIFICATES.c.status, _CERTIFICATES.c.revoked_at, _CERTIFICATES.c.revocation_reason).where(
    _CERTIFICATES.c.serial_hex == bindparam("serial"), _CERTIFICATES.c.authority_id == bindparam("authority"))
_ISSUER_OF_QUERY = sa_select(_AUTHORITIES.c.id, _AUTHORITIES.c.name, _AUTHORITIES.c.kind, _AUTHORITIES.c.pem).where(
    _AUTHORITIES.c.id == sa_select(_CERTIFICATES.c.authority_id).where(
        _CERTIFICATES.c.serial_hex == bindparam("serial")).scalar_subquery())
#: CertID hash of pre-signed responses: SHA-1, what RFC 5019 clients (and openssl) send.
_PRESIGN_HASH = hashes.SHA1()  # noqa: S303 - a CertID hash, not a signature
_PRESIGN_QUEUE = 1000
_CHILD_CA_QUERY = sa_select(_AUTHORITIES.c.id).where(
    _AUTHORITIES.c.serial_hex == bindparam("serial"), _AUTHORITIES.c.parent_id == bindparam("authority"))


@dataclass(frozen=True)
class OcspAnswer:
    """A DER OCSPResponse and what HTTP needs to serve it."""

    der: bytes
    #: "successful", "malformedRequest", "unauthorized", "tryLater", "internalError".
    response_status: str
    #: good / revoked / unknown for successful responses.
    cert_status: CertStatus | None = None
    #: Until when caches may keep it (None: not cacheable - errors and nonced responses).
    cache_until: datetime | None = None
    #: thisUpdate of a response (HTTP Last-Modified, RFC 5019 6.2).
    this_update: datetime | None = None


@dataclass(frozen=True)
class _Responder:
    authority_id: int
    certificate: x509.Certificate
    signer: Signer

    @property
    def renew_at(self) -> datetime:
        cert = self.certificate
        return cert.not_valid_after_utc - (cert.not_valid_after_utc - cert.not_valid_before_utc) / 3


@dataclass(frozen=True)
class _Issuer:
    authority_id: int
    name: str
    is_root: bool


class OcspResponder:
    """Answers OCSP requests for certificates of our CAs."""

    def __init__(self, database: Database, authorities: AuthorityDirectory, store: SecretStore,
                 organization: str, *, sync_seconds: float = 1.0) -> None:
        self._db = database
        self._authorities = authorities
        self._store = store
        self._organization = organization
        self._lock = threading.Lock()
        #: (hash name, issuerNameHash, issuerKeyHash) -> issuer
        self._issuers: dict[tuple[str, bytes, bytes], _Issuer] = {}
        self._loaded_at: dict[str, float] = {}
        self._responders: dict[int, _Responder] = {}
        self.cache = OcspCache(database, reuse=REUSE_FOR, sync_seconds=sync_seconds)
        #: Requests seen (DER or GET encoding) -> their cache key: a repeated request is not parsed again.
        self._parsed: dict[bytes | str, CacheKey] = {}
        self._to_presign: deque[str] = deque(maxlen=_PRESIGN_QUEUE)

    def respond_cached(self, request: bytes | str, *, now: datetime | None = None) -> OcspAnswer | None:
        """The pre-signed answer to a nonce-less request, from memory; None: call :meth:`respond`.

        ``request`` is the DER request, or the url-encoded base64 of a GET (RFC 6960 A.1),
        which is then decoded only the first time it is seen. Never blocks (no database,
        no signing), so it can run on the event loop.
        """
        key = self._parsed.get(request)
        if key is None:
            key = self._cache_key(request)
            if key is None:
                return None
            if len(self._parsed) >= _PARSED_LIMIT:
                self._parsed.clear()
            self._parsed[request] = key
        stored = self.cache.peek(key, now or utcnow())
        return _cached_answer(stored) if stored is not None else None

    def _cache_key(self, request: bytes | str) -> CacheKey | None:
        try:
            query = parse_request(decode_get_request(request) if isinstance(request, str) else request)
        except Exception:  # respond() gives the proper error answer  # noqa: BLE001
            return None
        if query.nonce is not None:
            return None
        issuer = self._issuers.get((query.hash_algorithm.name, query.issuer_name_hash, query.issuer_key_hash))
        return _key(issuer, query) if issuer is not None else None

    def revoked(self, serials: Sequence[str]) -> None:
        """After a revocation committed: forget the serials' responses and queue their replacements.

        :meth:`presign_revoked` (the background publisher's thread, or ``dmboot cert revoke``)
        signs the "revoked" responses ahead of the first request.
        """
        self.cache.evict(serials)
        with self._lock:
            self._to_presign.extend(serials[:_PRESIGN_QUEUE])

    def presign_revoked(self, *, now: datetime | None = None) -> int:
        """Sign and store the queued revoked serials' responses (SHA-1 CertIDs); how many were signed."""
        moment = (now or utcnow()).replace(microsecond=0)
        done = 0
        while True:
            with self._lock:
                if not self._to_presign:
                    return done
                serial = self._to_presign.popleft()
            with self._db.reader() as connection:
                found = connection.execute(_ISSUER_OF_QUERY, {"serial": serial}).first()
            if found is None:
                continue
            authority_id, name, kind, pem = found
            name_hash, key_hash = issuer_hashes(x509.load_pem_x509_certificate(pem.encode()), _PRESIGN_HASH)
            issuer = _Issuer(int(authority_id), str(name), kind == "root")
            if issuer.authority_id not in self._responders and self._load(issuer, moment) is None:
                continue  # nobody asked this CA yet: its responder certificate is made on the first request
            self._answer(OcspQuery(int(serial, 16), name_hash, key_hash, _PRESIGN_HASH), issuer, moment)
            done += 1

    def respond(self, request_der: bytes, *, now: datetime | None = None) -> OcspAnswer:
        """Answer a DER OCSPRequest; never raises for bad input (RFC 6960 2.3 error statuses)."""
        answer = self._respond(request_der, now)
        status = answer.cert_status
        metrics.count_ocsp(status.name.lower() if status is not None else answer.response_status)
        return answer

    def _respond(self, request_der: bytes, now: datetime | None) -> OcspAnswer:
        moment = (now or utcnow()).replace(microsecond=0)
        try:
            query = parse_request(request_der)
        except OcspRequestError as exc:
            log.info("malformed OCSP request: %s", exc.message)
            return _error(x509_ocsp.OCSPResponseStatus.MALFORMED_REQUEST)
        issuer = self._issuer(query)
        if issuer is None:
            # RFC 6960 2.3: "unauthorized" - we are not a responder for this issuer.
            return _error(x509_ocsp.OCSPResponseStatus.UNAUTHORIZED)
        try:
            return self._answer(query, issuer, moment)
        except SignerUnavailable as exc:
            log.warning("OCSP signer unavailable: %s", exc)
            return _error(x509_ocsp.OCSPResponseStatus.TRY_LATER)
        except SignerError as exc:
            log.error("OCSP signing failed: %s", exc)
            return _error(x509_ocsp.OCSPResponseStatus.INTERNAL_ERROR)

    def _answer(self, query: OcspQuery, issuer: _Issuer, now: datetime) -> OcspAnswer:
        if query.nonce is None:
            self.cache.sync()
            stored = self.cache.peek(_key(issuer, query), now)
            if stored is not None:
                metrics.count_ocsp_cache(True)
                return _cached_answer(stored)
        status, revoked_at, reason = self._status(issuer, query.serial)
        if query.nonce is None:
            stored = self.cache.load(_key(issuer, query), status.value, now)
            metrics.count_ocsp_cache(stored is not None)
            if stored is not None:
                return _cached_answer(stored)
        responder = self._responder(issuer, now)
        next_update = now + RESPONSE_VALIDITY
        der = build_response(query, status, responder=responder.certificate, signer=responder.signer,
                             this_update=now, next_update=next_update, revoked_at=revoked_at,
                             reason=REASONS.get(reason) if reason else None)
        if query.nonce is not None:
            return OcspAnswer(der, "successful", status, None)
        stored = StoredResponse(der, status.value, now, next_update)
        self.cache.store(_key(issuer, query), stored)
        return _cached_answer(stored)

    # -- status -------------------------------------------------------------------------

    def _status(self, issuer: _Issuer, serial: int) -> tuple[CertStatus, datetime | None, str | None]:
        serial_hex = format(serial, "x")
        # SQLAlchemy Core on a pooled connection: this lookup runs for every request, and an ORM
        # session costs ten times its CPU (bench/ocsp.py).
        with self._db.reader() as connection:
            row = connection.execute(_STATUS_QUERY, {"serial": serial_hex, "authority": issuer.authority_id}).first()
            if row is None and issuer.is_root:
                # The root's subordinates are CA rows, not certificate rows; they are never revoked here.
                child = connection.execute(_CHILD_CA_QUERY, {"serial": serial_hex,
                                                             "authority": issuer.authority_id}).first()
                return (CertStatus.GOOD, None, None) if child is not None else (CertStatus.UNKNOWN, None, None)
        if row is None:
            # RFC 6960 2.2: "unknown" - not a certificate this issuer is known to have issued.
            return CertStatus.UNKNOWN, None, None
        status, revoked_at, reason = row
        if status == "revoked":
            return CertStatus.REVOKED, revoked_at, reason
        return CertStatus.GOOD, None, None

    # -- issuers --------------------------------------------------------------------------

    def _issuer(self, query: OcspQuery) -> _Issuer | None:
        key = (query.hash_algorithm.name, query.issuer_name_hash, query.issuer_key_hash)
        with self._lock:
            found = self._issuers.get(key)
            # A miss re-reads our CAs (one may have been created by another replica), at most
            # once per RELOAD_ISSUERS per hash: requests for foreign issuers cost no query.
            due = time.monotonic() - self._loaded_at.get(query.hash_algorithm.name, -RELOAD_ISSUERS) \
                >= RELOAD_ISSUERS
        if found is not None or not due:
            return found
        self._load_issuers(query.hash_algorithm)
        with self._lock:
            self._loaded_at[query.hash_algorithm.name] = time.monotonic()
            return self._issuers.get(key)

    def _load_issuers(self, algorithm: hashes.HashAlgorithm) -> None:
        """(Re)index our CAs under ``algorithm`` - a CA created by another replica appears here."""
        with self._db.session() as session:
            rows = list(session.exec(select(AuthorityRow)))
        index: dict[tuple[str, bytes, bytes], _Issuer] = {}
        for row in rows:
            cert = x509.load_pem_x509_certificate(row.pem.encode())
            name_hash, key_hash = issuer_hashes(cert, algorithm)
            index[(algorithm.name, name_hash, key_hash)] = _Issuer(row_id(row.id), row.name, row.kind == "root")
        with self._lock:
            self._issuers.update(index)

    # -- delegated responders -----------------------------------------------------------

    def _responder(self, issuer: _Issuer, now: datetime) -> _Responder:
        with self._lock:
            cached = self._responders.get(issuer.authority_id)
        if cached is not None and now < cached.renew_at:
            return cached
        responder = self._load_or_create(issuer, now)
        with self._lock:
            self._responders[issuer.authority_id] = responder
        return responder

    def _load_or_create(self, issuer: _Issuer, now: datetime) -> _Responder:
        found = self._load(issuer, now)
        if found is not None:
            return found
        with self._db.session() as session:
            # The CA row's lock makes one replica create the responder; the others then find it.
            authority = session.exec(
                select(AuthorityRow).where(AuthorityRow.id == issuer.authority_id).with_for_update()).one()
            found = self._load(issuer, now, session)
            if found is not None:
                return found
            return self._create(session, authority, now)

    def _load(self, issuer: _Issuer, now: datetime, session: Session | None = None) -> _Responder | None:
        query = (select(OcspSignerRow).where(OcspSignerRow.authority_id == issuer.authority_id)
                 .order_by(col(OcspSignerRow.not_after).desc()).limit(1))
        if session is None:
            with self._db.session() as own:
                row = own.exec(query).first()
        else:
            row = session.exec(query).first()
        if row is None:
            return None
        responder = _Responder(issuer.authority_id, x509.load_pem_x509_certificate(row.pem.encode()),
                               self._store.signer(KeyRef.from_uri(row.key_ref)))
        return responder if now < responder.renew_at else None

    def _create(self, session: Session, authority: AuthorityRow, now: datetime) -> _Responder:
        ca = self._authorities.authority(session, authority)
        ca_key_type = KeyRef.from_uri(authority.key_ref).key_type
        key_name = f"ocsp/{authority.name}"
        try:
            ref = self._store.create_key(key_name, ca_key_type)
        except SecretConflict:
            ref = self._store.rotate_key(key_name)  # a fresh key for every responder certificate
        signer = self._store.signer(ref)
        names = Names(f"{self._organization} OCSP Responder ({authority.name})", self._organization)
        issued = ca.issue(signer.public_key, names, PROFILES["ocsp-signer"], now=now)
        cert = issued.certificate
        session.add(CertificateRow(
            serial_hex=issued.serial_hex, authority_id=row_id(authority.id), profile=issued.profile,
            subject=cert.subject.rfc4514_string(), common_name=names.common_name, sans="[]", device_id=None,
            key_type=ref.key_type.value, not_before=cert.not_valid_before_utc, not_after=cert.not_valid_after_utc,
            fingerprint=fingerprint(cert), pem=issued.pem, requested_by="system:ocsp",
        ))
        session.add(OcspSignerRow(
            authority_id=row_id(authority.id), serial_hex=issued.serial_hex, key_ref=ref.to_uri(),
            pem=cert.public_bytes(Encoding.PEM).decode(), not_before=cert.not_valid_before_utc,
            not_after=cert.not_valid_after_utc,
        ))
        append_event(session, actor="system:ocsp", action="ocsp.responder.issue", outcome="success",
                     target=issued.serial_hex, detail={"issuer": authority.name, "key": ref.to_uri(),
                                                       "not_after": cert.not_valid_after_utc.isoformat()})
        session.flush()
        log.info("issued OCSP responder certificate %s for %s", issued.serial_hex, authority.name)
        return _Responder(row_id(authority.id), cert, signer)

    def current_responder(self, authority_id: int, *, now: datetime | None = None) -> x509.Certificate:
        """The CA's responder certificate, made or renewed now if it is due (the background renewal)."""
        return self._responder(_Issuer(authority_id, "", False), now or utcnow()).certificate


def _key(issuer: _Issuer, query: OcspQuery) -> CacheKey:
    return issuer.authority_id, format(query.serial, "x"), query.hash_algorithm.name


def _cached_answer(stored: StoredResponse) -> OcspAnswer:
    return OcspAnswer(stored.der, "successful", CertStatus(stored.cert_status), stored.next_update,
                      stored.this_update)


def _error(status: x509_ocsp.OCSPResponseStatus) -> OcspAnswer:
    names = {
        x509_ocsp.OCSPResponseStatus.MALFORMED_REQUEST: "malformedRequest",
        x509_ocsp.OCSPResponseStatus.INTERNAL_ERROR: "internalError",
        x509_ocsp.OCSPResponseStatus.TRY_LATER: "tryLater",
        x509_ocsp.OCSPResponseStatus.SIG_REQUIRED: "sigRequired",
        x509_ocsp.OCSPResponseStatus.UNAUTHORIZED: "unauthorized",
    }
    return OcspAnswer(unsuccessful(status), names.get(status, status.name))
