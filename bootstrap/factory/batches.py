"""Factory batches: device certificates in bulk that never double-issue.

A station opens a batch under its ``Idempotency-Key`` (``BatchService.open_batch``)
and submits devices in chunks (``BatchService.submit``); each chunk is:

1. a read: which devices of the chunk the factory issued for already (any batch,
   any process: ``factory_item`` is unique per (enrollment profile, DevID)), and
   which are registered elsewhere or blocked;
2. signing, outside any transaction (so replicas sign in parallel): the CSR is
   checked against the profile and the DevID, or a key is generated and encrypted
   for the station (bootstrap.factory.keys);
3. one write transaction: the station's quota is taken, then every certificate,
   factory item, device row and audit event of the chunk is inserted
   (bootstrap.factory.store). If another process recorded one of these
   devices first, the unique constraint fails the whole transaction; it rolls
   back and the chunk goes back to step 1, where those devices are now found.

A device found in step 1 gets back what it got the first time - the same serial
and certificate, and for a server-generated key the same encrypted key while the
redelivery copy is kept (``factory_key_retention_hours``) - never a second
certificate. A retry may name a different batch; the device decides.

Nothing is returned before it is committed; a chunk that fails leaves nothing.
"""

from __future__ import annotations

import base64
import functools
import logging
import secrets
from collections.abc import Sequence
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from bootstrap.errors import Conflict, DmBootstrapError, NotFound, PermissionDenied, QuotaExceeded
from bootstrap.factory.chunks import OpenBatch, Pending, as_existing, chunk_rows, device_error, error_of, failed, issued
from bootstrap.factory.content import profile_template
from bootstrap.factory.keys import new_salt
from bootstrap.factory.signer import BatchSigner, same_key
from bootstrap.factory.stations import Station
from bootstrap.factory.store import (
    ExistingDevice,
    ExistingItem,
    append_events,
    bump_batch,
    existing_devices,
    existing_items,
    insert_rows,
    take_quota,
)
from bootstrap.factory.types import BatchSpec, BatchSummary, ItemOutcome, ItemRequest
from bootstrap.secrets.base import SecretStore
from bootstrap.services.audit import append_event
from bootstrap.services.authorities import AuthorityDirectory, CaInfo
from bootstrap.store.db import Database
from bootstrap.store.models import AuthorityRow, EnrollmentProfileRow, FactoryBatchRow, row_id, utcnow
from pki.errors import PkiError
from pki.keys import KeyPolicy
from pki.profiles import get_profile

__all__ = ["CHUNK_SIZE", "BatchService", "QuotaExceeded"]

log = logging.getLogger(__name__)

#: Devices per write transaction (and per NDJSON flush): big enough to amortise the
#: commit and the audit head lock, small enough to keep a lost race cheap.
CHUNK_SIZE = 500
_ATTEMPTS = 5
_KEY_PATH = "factory/keys"


class BatchService:
    """Batches of device certificates for factory stations, and their idempotent retries."""

    def __init__(self, database: Database, store: SecretStore, authorities: AuthorityDirectory, *,
                 key_retention: timedelta = timedelta(hours=24)) -> None:
        self._db = database
        self._store = store
        self._authorities = authorities
        self._key_retention = key_retention
        self._chains: dict[str, str] = {}

    # -- opening a batch ------------------------------------------------------------------

    def open_batch(self, station: Station, spec: BatchSpec) -> OpenBatch:
        """Check the station may use the profile; find or create the batch (the quota is taken per chunk).

        Raises:
            PermissionDenied: the profile is not one of the station's, or disabled.
            NotFound: no such enrollment profile.
            Conflict: the Idempotency-Key names a batch of another profile.
        """
        try:
            return self._open(station, spec)
        except (PermissionDenied, NotFound, Conflict) as exc:
            self.audit_refusal(station, "factory.batch", spec.profile, exc, key=spec.idempotency_key)
            raise

    def _open(self, station: Station, spec: BatchSpec) -> OpenBatch:
        self.check_profile(station, spec.profile)
        with self._db.session() as session:
            profile = self._profile(session, spec.profile)
            root = self._authorities.root(session)
            issuing, authority = self._authorities.active(session)
            template = profile_template(session, profile, root, issuing)
        row = self._batch_row(station, spec)
        signer = BatchSigner(authority, get_profile(profile.certificate_profile), KeyPolicy.of(profile.key_types),
                             timedelta(days=profile.validity_days))
        self._chains.setdefault(issuing.name, _chain_pem(issuing, authority.chain))
        return OpenBatch(id=row_id(row.id), spec=spec, station=station, profile_id=row_id(profile.id),
                         authority_id=row_id(issuing.id), issuer=issuing.name, signer=signer, template=template,
                         kdf_salt=row.kdf_salt, kdf_iterations=row.kdf_iterations,
                         summary=BatchSummary(row_id(row.id), spec.idempotency_key, spec.profile))

    @staticmethod
    def check_profile(station: Station, profile: str) -> None:
        """Raise PermissionDenied unless ``station`` may use enrollment profile ``profile``."""
        if station.allowed_profiles is not None and profile not in station.allowed_profiles:
            allowed = ", ".join(sorted(station.allowed_profiles)) or "none"
            raise PermissionDenied(f"{station.actor} may not provision devices of enrollment profile {profile!r}"
                                   f" (its profiles: {allowed}); nothing was issued", field="profile")

    @staticmethod
    def _profile(session: Session, name: str) -> EnrollmentProfileRow:
        row = session.exec(select(EnrollmentProfileRow).where(EnrollmentProfileRow.name == name)).first()
        if row is None:
            raise NotFound(f"no enrollment profile {name!r}", field="profile")
        if not row.enabled:
            raise PermissionDenied(f"enrollment profile {name!r} is disabled", field="profile")
        return row

    def _batch_row(self, station: Station, spec: BatchSpec) -> FactoryBatchRow:
        for _ in range(_ATTEMPTS):
            try:
                with self._db.session() as session:
                    row = session.exec(select(FactoryBatchRow).where(
                        FactoryBatchRow.principal == station.owner,
                        FactoryBatchRow.idempotency_key == spec.idempotency_key)).first()
                    if row is None:
                        row = FactoryBatchRow(principal=station.owner, idempotency_key=spec.idempotency_key,
                                              profile=spec.profile, kdf_salt=new_salt(),
                                              kdf_iterations=spec.kdf_iterations)
                        session.add(row)
                        session.flush()
                    elif row.profile != spec.profile:
                        raise Conflict(f"Idempotency-Key {spec.idempotency_key!r} names a batch of profile"
                                       f" {row.profile!r}; a retry must resend the same batch", field="profile")
                    return row
            except IntegrityError:  # another replica created it meanwhile: read theirs
                continue
        raise Conflict("could not create the batch; retry", field="Idempotency-Key")  # pragma: no cover

    # -- submitting devices ---------------------------------------------------------------

    def check_quota(self, batch: OpenBatch, items: Sequence[ItemRequest]) -> None:
        """Refuse (audited) a whole batch whose new devices exceed the station's quota left.

        Raises:
            QuotaExceeded: more new devices in ``items`` than the quota allows; nothing issued.
        """
        station = batch.station
        if station.quota_token is None:
            return
        dev_ids = list(dict.fromkeys(item.dev_id for item in items))
        known = 0
        with self._db.session() as session:
            for start in range(0, len(dev_ids), 1000):
                known += len(existing_items(session, batch.spec.profile, dev_ids[start:start + 1000]))
            left = take_quota(session, station.quota_token, 0)
        new = len(dev_ids) - known
        if left is not None and new > left:
            exc = QuotaExceeded(f"{station.actor} may provision {left} more devices but the batch has {new} new"
                                " ones; nothing was issued", field="quota")
            self.audit_refusal(station, "factory.batch", batch.spec.profile, exc, key=batch.spec.idempotency_key)
            raise exc

    def submit(self, batch: OpenBatch, items: Sequence[ItemRequest], *, refuse_whole: bool = True,
               now: datetime | None = None) -> list[ItemOutcome]:
        """Issue for ``items`` (one chunk; see CHUNK_SIZE), or return what they got before.

        Outcomes come back in the order of ``items``. A DevID repeated within ``items``
        gets the first one's result as ``existing``. When the quota does not cover the
        chunk's new devices, nothing of the chunk is issued: with ``refuse_whole`` that
        raises; without (a stream already answering), the new devices fail with
        ``quota-exceeded`` and the others keep their outcomes.

        Raises:
            QuotaExceeded: over quota, with ``refuse_whole``.
        """
        outcomes: dict[int, ItemOutcome] = {}
        first: dict[str, int] = {}
        pending: list[Pending] = []
        repeats: list[tuple[int, int]] = []
        for index, item in enumerate(items):
            if item.dev_id in first:
                repeats.append((index, first[item.dev_id]))
            else:
                first[item.dev_id] = index
                pending.append(Pending(index, item))
        for _ in range(_ATTEMPTS):
            if not pending:
                break
            try:
                pending = self._attempt(batch, pending, outcomes, now or utcnow())
            except QuotaExceeded as exc:
                self.audit_refusal(batch.station, "factory.batch", batch.spec.profile, exc,
                                   key=batch.spec.idempotency_key)
                if refuse_whole:
                    raise
                for pend in pending:
                    outcomes.setdefault(pend.index, failed(pend.item.dev_id, *error_of(exc)))
                pending = []
        for pend in pending:  # pragma: no cover - five lost races in a row
            outcomes[pend.index] = failed(pend.item.dev_id, "conflict", "the device is being provisioned by"
                                           " another request; retry")
        for index, original in repeats:
            done = outcomes[original]
            outcomes[index] = done if done.status == "failed" else as_existing(done)
        result = [outcomes[i] for i in range(len(items))]
        for outcome in result:
            batch.summary.add(outcome)
        return result

    def _attempt(self, batch: OpenBatch, pending: list[Pending], outcomes: dict[int, ItemOutcome],
                 now: datetime) -> list[Pending]:
        """One round of read, sign, write; returns the devices still undecided (a lost race)."""
        dev_ids = [p.item.dev_id for p in pending]
        with self._db.session() as session:
            found = existing_items(session, batch.spec.profile, dev_ids)
            devices = existing_devices(session, dev_ids)
        to_sign: list[Pending] = []
        failures: list[Pending] = []
        for pend in pending:
            dev_id = pend.item.dev_id
            if dev_id in found:
                outcomes[pend.index] = self._existing(batch, pend.item, found[dev_id], now)
                continue
            device = devices.get(dev_id)
            error = device_error(dev_id, device, batch.profile_id) if device is not None else None
            if error is not None:
                outcomes[pend.index] = error
                failures.append(pend)
                continue
            to_sign.append(pend)
        for pend in to_sign:
            outcome = self._sign(batch, pend, now)
            if outcome is not None:
                outcomes[pend.index] = outcome
                failures.append(pend)
        signed = [p for p in to_sign if p.signed is not None]
        key_ref = self._keep_keys(batch, signed)
        try:
            self._record(batch, signed, [outcomes[p.index] for p in failures], devices, key_ref, now)
        except IntegrityError:
            log.info("batch %s: another request recorded some of %d devices first; re-reading", batch.id,
                     len(signed))
            for pend in failures:  # they will be decided again in the next round
                outcomes.pop(pend.index, None)
            return [p for p in pending if p.index not in outcomes]
        for pend in signed:
            outcomes[pend.index] = issued(batch, pend)
        return []

    def _sign(self, batch: OpenBatch, pend: Pending, now: datetime) -> ItemOutcome | None:
        """Sign one device; a refusal is returned as its failed outcome."""
        item = pend.item
        try:
            if item.keygen is not None:
                encryptor = batch.encryptor()
                pend.signed = batch.signer.from_new_key(item.dev_id, item.keygen, now=now)
                key = pend.signed.private_key
                if key is None:  # pragma: no cover - from_new_key always sets it
                    raise RuntimeError("no key")
                pend.key_blob = encryptor.encrypt(key, pend.signed.certificate,
                                                  _chain_certs(self._chains[batch.issuer]), item.dev_id)
            else:
                pend.signed = batch.signer.from_csr(item.dev_id, item.csr or "", now=now)
        except (PkiError, DmBootstrapError) as exc:
            pend.signed = None
            return failed(item.dev_id, *error_of(exc))
        return None

    def _keep_keys(self, batch: OpenBatch, signed: list[Pending]) -> str | None:
        """Keep the chunk's encrypted keys in the secret store for redelivery; the reference to store."""
        blobs = {p.item.dev_id: p.key_blob for p in signed if p.key_blob is not None}
        if not blobs or self._key_retention <= timedelta(0):
            return None
        path = f"{_KEY_PATH}/{batch.id}/{secrets.token_hex(8)}"
        ref = self._store.put(path, {dev_id: base64.b64encode(blob).decode() for dev_id, blob in blobs.items()})
        return ref.to_uri()

    def _record(self, batch: OpenBatch, signed: list[Pending], failed: list[ItemOutcome],
                devices: dict[str, ExistingDevice], key_ref: str | None, now: datetime) -> None:
        station = batch.station
        expires = now + self._key_retention if key_ref else None
        rows = chunk_rows(batch, signed, failed, devices, key_ref, expires, now)
        with self._db.session() as session:
            if station.quota_token is not None and signed:
                left = take_quota(session, station.quota_token, len(signed))
                if left == -1:
                    raise QuotaExceeded(f"{station.actor}'s device quota does not cover {len(signed)} more devices;"
                                        " nothing of this chunk was issued", field="quota")
            insert_rows(session, certificates=rows.certificates, items=rows.items, new_devices=rows.new_devices,
                        updated_devices=rows.updated)
            append_events(session, rows.events)
            bump_batch(session, batch.id, issued=len(signed), existing=0, failed=len(failed))

    def _existing(self, batch: OpenBatch, item: ItemRequest, found: ExistingItem, now: datetime) -> ItemOutcome:
        """What a device the factory issued for already gets: the same result, or why not."""
        if found.principal != batch.station.owner:
            return failed(item.dev_id, "conflict", f"device {item.dev_id!r} was provisioned by another station"
                           f" ({found.principal}); nothing was issued")
        if found.status != "valid":
            return failed(item.dev_id, "revoked", f"device {item.dev_id!r}'s factory certificate {found.serial_hex}"
                           f" is {found.status}; re-provision it through enrollment, not the factory")
        if item.mode != found.mode:
            return failed(item.dev_id, "conflict", f"device {item.dev_id!r} was provisioned with mode"
                           f" {found.mode}, not {item.mode}; its certificate is {found.serial_hex}")
        if item.csr is not None and not same_key(item.csr, found.pem):
            return failed(item.dev_id, "conflict", f"device {item.dev_id!r} has certificate {found.serial_hex}"
                           " for another key; revoke it before provisioning a new key")
        self._chain_of(found.issuer)
        key, key_format, note = None, None, None
        if found.mode == "keygen":
            key, note = self._redeliver(found, now)
            key_format = batch.spec.key_format if key is not None else None
        return ItemOutcome(dev_id=item.dev_id, status="existing", serial=found.serial_hex, issuer=found.issuer,
                           certificate_pem=found.pem, key=key, key_format=key_format, key_note=note)

    def _redeliver(self, found: ExistingItem, now: datetime) -> tuple[bytes | None, str]:
        expires = found.key_expires_at
        if found.key_ref is None or expires is None or expires <= now:
            return None, "not-kept: the key was delivered with the first answer and is no longer kept"
        path, _, version = found.key_ref.split(":", 1)[1].rpartition("#")
        data, _ref = self._store.get(path, int(version))
        return base64.b64decode(data[found.dev_id]), "redelivered: the same key as the first answer"

    # -- chains and the end of a request --------------------------------------------------

    def chain_pem(self, issuer: str) -> str:
        """PEM of issuing CA ``issuer`` and its issuers below the root: what follows a device certificate."""
        return self._chain_of(issuer)

    def _chain_of(self, issuer: str) -> str:
        if issuer not in self._chains:
            with self._db.session() as session:
                row = session.exec(select(AuthorityRow).where(AuthorityRow.name == issuer)).first()
                if row is None:
                    raise NotFound(f"no CA named {issuer!r}")
                authority = self._authorities.authority(session, row)
            self._chains[issuer] = _chain_pem(row, authority.chain)
        return self._chains[issuer]

    def finish(self, batch: OpenBatch, *, error: str | None = None) -> BatchSummary:
        """Audit the request's counts (``factory.batch``) and return them."""
        summary = batch.summary
        with self._db.session() as session:
            append_event(session, actor=batch.station.actor, action="factory.batch",
                         outcome="failure" if error else "success", target=batch.spec.idempotency_key,
                         request_id=batch.station.request_id,
                         detail={**summary.to_json(), **({"error": error[:500]} if error else {})})
        return summary

    def audit_refusal(self, station: Station, action: str, profile: str, exc: DmBootstrapError, *,
                       key: str | None = None) -> None:
        try:
            with self._db.session() as session:
                append_event(session, actor=station.actor, action=action, outcome="failure", target=key,
                             request_id=station.request_id,
                             detail={"profile": profile, "error": type(exc).__name__, "reason": exc.message[:500]})
        except Exception:  # the refusal matters more than its audit line; the log keeps this
            log.exception("could not audit a refused factory call of %s", station.actor)


def _chain_pem(row: AuthorityRow | CaInfo, upper: Sequence[x509.Certificate]) -> str:
    return row.pem + "".join(c.public_bytes(Encoding.PEM).decode() for c in upper if c.subject != c.issuer)


@functools.lru_cache(maxsize=8)
def _chain_certs(pem: str) -> tuple[x509.Certificate, ...]:
    return tuple(x509.load_pem_x509_certificates(pem.encode()))


