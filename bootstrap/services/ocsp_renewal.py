"""Renew OCSP responder certificates in the background, before anyone needs the new one.

A responder certificate (profile ``ocsp-signer``, 30 days) is due for renewal when a
third of its life is left (:mod:`bootstrap.services.ocsp`). Without this, the first
OCSP request after that point paid for a new key and certificate, and a CA nobody
asked for a while kept a responder certificate that looked about to expire. The CRL
publisher's background thread calls :meth:`ResponderRenewal.run` after each pass; at
most once a minute it looks for due responders and renews them, each under its CA
row's lock (so one replica renews, the others find the new certificate).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime

from sqlmodel import select

from bootstrap.errors import DmBootstrapError
from bootstrap.services.ocsp import OcspResponder
from bootstrap.store.db import Database
from bootstrap.store.models import OcspSignerRow, utcnow
from pki.errors import PkiError

__all__ = ["CHECK_EVERY", "ResponderRenewal", "renewal_point"]

log = logging.getLogger(__name__)

#: Seconds between two looks for due responders (a look is one small query).
CHECK_EVERY = 60.0


def renewal_point(not_before: datetime, not_after: datetime) -> datetime:
    """When a responder certificate valid from ``not_before`` to ``not_after`` is renewed."""
    return _aware(not_after) - (_aware(not_after) - _aware(not_before)) / 3


class ResponderRenewal:
    """Finds responder certificates past their renewal point and has the responder renew them."""

    def __init__(self, database: Database, responder: OcspResponder, *, check_every: float = CHECK_EVERY,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self._db = database
        self._responder = responder
        self._check_every = check_every
        self._clock = clock
        self._next_check = 0.0

    def latest(self) -> dict[int, tuple[datetime, datetime]]:
        """Each CA's (authority id's) newest responder certificate: (notBefore, notAfter)."""
        latest: dict[int, tuple[datetime, datetime]] = {}
        with self._db.session() as session:
            for authority_id, not_before, not_after in session.exec(
                    select(OcspSignerRow.authority_id, OcspSignerRow.not_before, OcspSignerRow.not_after)):
                if authority_id not in latest or _aware(not_after) > latest[authority_id][1]:
                    latest[authority_id] = (_aware(not_before), _aware(not_after))
        return latest

    def due(self, now: datetime) -> list[int]:
        """The CAs (authority ids) whose newest responder certificate is past its renewal point."""
        return sorted(a for a, (start, end) in self.latest().items() if renewal_point(start, end) <= _aware(now))

    def run(self, *, now: datetime | None = None) -> list[int]:
        """Renew what is due (at most every ``check_every`` seconds unless ``now`` is given); the CAs renewed."""
        if now is None:
            if time.monotonic() < self._next_check:
                return []
            self._next_check = time.monotonic() + self._check_every
        moment = now or self._clock()
        renewed = []
        for authority_id in self.due(moment):
            try:
                self._responder.current_responder(authority_id, now=moment)
            except (DmBootstrapError, PkiError) as exc:  # e.g. an expired CA: the others still renew
                log.warning("cannot renew the OCSP responder certificate of CA %s: %s", authority_id, exc)
                continue
            renewed.append(authority_id)
        return renewed


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)

