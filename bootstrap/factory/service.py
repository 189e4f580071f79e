"""Factory provisioning lines: stations, batches that never double-issue, pre-registration.

One entry point for the web routes and the CLI; the work is in:

- :mod:`bootstrap.factory.batches` - batches of certificates (CSR or
  server-generated key), idempotent per (profile, DevID), chunked transactions;
- :mod:`bootstrap.factory.registration` - devices registered now, enrolling at
  first boot with a one-time token or a group-derived key;
- :mod:`bootstrap.factory.stations` - stations authenticated by client certificate;
- :mod:`~bootstrap.factory.chunks`, ``signer``, ``keys``, ``store``, ``content``, ``types``
  - the pieces.

The line integrator's guide is docs/factory.md.
"""

from __future__ import annotations

from datetime import timedelta

from bootstrap.factory.batches import CHUNK_SIZE, BatchService, QuotaExceeded
from bootstrap.factory.chunks import OpenBatch
from bootstrap.factory.registration import RegistrationService
from bootstrap.factory.stations import Station, StationService
from bootstrap.secrets.base import SecretStore
from bootstrap.services.authorities import AuthorityDirectory
from bootstrap.services.tokens import TokenService
from bootstrap.store.db import Database

__all__ = ["CHUNK_SIZE", "FactoryService", "OpenBatch", "QuotaExceeded", "Station"]


class FactoryService:
    """The factory's use cases: ``batches``, ``registrations`` and ``stations``."""

    def __init__(self, database: Database, store: SecretStore, authorities: AuthorityDirectory,
                 tokens: TokenService, *, key_retention: timedelta = timedelta(hours=24)) -> None:
        self.batches = BatchService(database, store, authorities, key_retention=key_retention)
        self.registrations = RegistrationService(database, store, self.batches)
        self.stations = StationService(database, tokens)
