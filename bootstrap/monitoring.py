"""The ``/metrics`` endpoint: a separate listener, the event metrics of every worker, fleet gauges from the database.

``dmboot serve`` starts :func:`start_metrics_server` in its main process on
``metrics_host:metrics_port`` (default 127.0.0.1:9464; 0 turns it off), apart from
the HTTPS port devices reach. With ``metrics_token`` set it answers only
``Authorization: Bearer <token>``.

What it serves:

* the event metrics of :mod:`bootstrap.metrics` - of this process, or of all worker
  processes through prometheus-client's multiprocess directory
  (``PROMETHEUS_MULTIPROC_DIR``, see :func:`prepare_multiprocess`);
* :class:`FleetCollector`'s gauges, read from the database (and a secret-store
  probe) when scraped and kept for ``ttl`` seconds, so frequent scrapes by several
  Prometheus servers cost one set of queries per ``ttl``.

Hook for the CRL work: :func:`crl_facts` is the one function that says which CRLs
exist; CRL partitions report themselves there with their ``partition`` label.
"""

from __future__ import annotations

import hmac
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import REGISTRY, CollectorRegistry, make_wsgi_app
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import ThreadingWSGIServer
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from sqlalchemy import Connection, func, select

from bootstrap.metrics import FLEET_GAUGES
from bootstrap.secrets import SecretStore
from bootstrap.store.db import Database
from bootstrap.store.models import AuditHead, AuthorityRow, CertificateRow, CrlRow, FactoryBatchRow, utcnow

__all__ = ["CrlFact", "FleetCollector", "crl_facts", "metrics_registry", "prepare_multiprocess",
           "start_metrics_server"]

log = logging.getLogger(__name__)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
#: Expiry horizons reported by dmboot_certificates_expiring, in days.
EXPIRY_DAYS = (7, 30)
#: A factory batch updated within this is "active".
_ACTIVE_BATCH = timedelta(minutes=5)


@dataclass(frozen=True)
class CrlFact:
    """The newest CRL of one (CA, kind, partition)."""

    ca: str
    kind: str  # full | delta
    partition: str  # "" while CRLs are not partitioned
    number: int
    this_update: datetime
    next_update: datetime
    entries: int
    size: int


def crl_facts(connection: Connection) -> list[CrlFact]:
    """The newest stored CRL of each CA, kind and scope (partitions are labelled by their file name)."""
    crl, ca = CrlRow.__table__, AuthorityRow.__table__  # type: ignore[attr-defined]
    rows = connection.execute(
        select(ca.c.name, crl.c.kind, crl.c.scope, crl.c.number, crl.c.this_update, crl.c.next_update,
               crl.c.entries, func.length(crl.c.der))
        .join(ca, ca.c.id == crl.c.authority_id).where(crl.c.der.is_not(None)))
    newest: dict[tuple[str, str, str], CrlFact] = {}
    for name, kind, scope, number, this_update, next_update, entries, size in rows:
        partition = scope if kind == "partition" else ""
        fact = CrlFact(name, kind, partition, int(number), this_update, next_update,
                       int(entries or 0), int(size or 0))
        key = (name, kind, partition)
        if key not in newest or newest[key].number < fact.number:
            newest[key] = fact
    return list(newest.values())


class FleetCollector(Collector):
    """Gauges read from the database and the secret store at scrape time, cached ``ttl`` seconds."""

    def __init__(self, database: Database, store: SecretStore | None = None, *, ttl: float = 15.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._db = database
        self._store = store
        self._ttl = ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._cached: tuple[float, list[GaugeMetricFamily]] | None = None

    def collect(self) -> Iterator[GaugeMetricFamily]:
        with self._lock:
            now = self._clock()
            if self._cached is None or now >= self._cached[0]:
                self._cached = (now + self._ttl, self._probe())
            families = self._cached[1]
        yield from families

    def _probe(self) -> list[GaugeMetricFamily]:
        up = _gauge("dmboot_backend_up", ["backend"])
        families = [up]
        try:
            with self._db.reader() as connection:
                families += self._database_gauges(connection, utcnow())
            up.add_metric(["database"], 1)
            failed = 0
        except Exception as exc:  # a scrape reports the outage, it does not fail
            log.warning("metrics probe of the database failed: %s", type(exc).__name__)
            up.add_metric(["database"], 0)
            failed = 1
        probe = _gauge("dmboot_metrics_probe_errors", [])
        probe.add_metric([], failed)
        families.append(probe)
        if self._store is not None:
            up.add_metric(["secrets"], 1 if self._store_ok() else 0)
        return families

    def _store_ok(self) -> bool:
        assert self._store is not None  # noqa: S101 - only called with a store
        try:
            return all(result.ok for result in self._store.check())
        except Exception:  # check() should report, not raise; count it as down if it does
            return False

    @staticmethod
    def _database_gauges(connection: Connection, now: datetime) -> list[GaugeMetricFamily]:
        head = _gauge("dmboot_audit_head_seq", [])
        seq = connection.execute(select(AuditHead.__table__.c.seq)).scalar()  # type: ignore[attr-defined]
        head.add_metric([], int(seq or 0))
        certs = CertificateRow.__table__  # type: ignore[attr-defined]
        expiring = _gauge("dmboot_certificates_expiring", ["days"])
        for days in EXPIRY_DAYS:
            count = connection.execute(
                select(func.count()).select_from(certs).where(
                    certs.c.status == "valid", certs.c.not_after > now,
                    certs.c.not_after <= now + timedelta(days=days))).scalar()
            expiring.add_metric([str(days)], int(count or 0))
        return [head, expiring, *_factory_gauges(connection, now), *_crl_gauges(crl_facts(connection), now)]


def _factory_gauges(connection: Connection, now: datetime) -> list[GaugeMetricFamily]:
    batch = FactoryBatchRow.__table__  # type: ignore[attr-defined]
    issued, existing, failed, total, last = connection.execute(select(
        func.coalesce(func.sum(batch.c.issued), 0), func.coalesce(func.sum(batch.c.existing), 0),
        func.coalesce(func.sum(batch.c.failed), 0), func.count(), func.max(batch.c.updated_at))).one()
    active = connection.execute(select(func.count()).select_from(batch).where(
        batch.c.updated_at > now - _ACTIVE_BATCH)).scalar()
    items = _gauge("dmboot_factory_batch_items", ["state"])
    for state, value in (("issued", issued), ("existing", existing), ("failed", failed)):
        items.add_metric([state], int(value))
    batches = _gauge("dmboot_factory_batches", ["activity"])
    batches.add_metric(["total"], int(total))
    batches.add_metric(["active"], int(active or 0))
    families = [items, batches]
    if last is not None:
        updated = _gauge("dmboot_factory_batch_last_update_timestamp_seconds", [])
        updated.add_metric([], last.timestamp())
        families.append(updated)
    return families


def _crl_gauges(facts: Iterable[CrlFact], now: datetime) -> list[GaugeMetricFamily]:
    labels = ["ca", "kind", "partition"]
    age, next_update, size, number, entries = (
        _gauge(name, labels) for name in ("dmboot_crl_age_seconds", "dmboot_crl_next_update_seconds",
                                          "dmboot_crl_size_bytes", "dmboot_crl_number", "dmboot_crl_entries"))
    for fact in facts:
        key = [fact.ca, fact.kind, fact.partition]
        age.add_metric(key, (now - fact.this_update).total_seconds())
        next_update.add_metric(key, (fact.next_update - now).total_seconds())
        size.add_metric(key, fact.size)
        number.add_metric(key, fact.number)
        entries.add_metric(key, fact.entries)
    return [age, next_update, size, number, entries]


def _gauge(name: str, labels: list[str]) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, FLEET_GAUGES[name], labels=labels)


class _ProcessMetrics(Collector):
    """The default registry's collectors (this process's event metrics, process and GC stats)."""

    def collect(self) -> Iterator[Any]:
        yield from REGISTRY.collect()


def metrics_registry(fleet: Collector | None = None) -> CollectorRegistry:
    """Event metrics (all workers' when multiprocess mode is on, else this process's) plus ``fleet``."""
    registry = CollectorRegistry()
    directory = os.environ.get(MULTIPROC_ENV)
    if directory:
        MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
    else:
        registry.register(_ProcessMetrics())
    if fleet is not None:
        registry.register(fleet)
    return registry


def prepare_multiprocess(directory: Path) -> None:
    """Empty ``directory`` (counters of a previous run must not add up) and point workers at it.

    Must run before any worker imports prometheus-client: the environment variable
    is read when it is imported.
    """
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True, mode=0o700)
    os.environ[MULTIPROC_ENV] = str(directory)


def start_metrics_server(host: str, port: int, registry: CollectorRegistry,
                         token: str | None = None) -> WSGIServer:
    """Serve ``registry`` at ``http://host:port/metrics`` in a daemon thread; Bearer ``token`` if given.

    Raises:
        OSError: the address cannot be bound.
    """
    exposition = make_wsgi_app(registry)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if token is not None:
            given = str(environ.get("HTTP_AUTHORIZATION", ""))
            if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
                start_response("401 Unauthorized", [("WWW-Authenticate", 'Bearer realm="metrics"'),
                                                    ("Content-Type", "text/plain")])
                return [b"metrics need Authorization: Bearer <metrics token>\n"]
        if environ.get("PATH_INFO") not in ("/metrics", "/"):
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"metrics are at /metrics\n"]
        return exposition(environ, start_response)  # type: ignore[no-any-return]

    server = make_server(host, port, app, ThreadingWSGIServer, handler_class=_QuietHandler)
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    return server


class _QuietHandler(WSGIRequestHandler):
    """No stderr line per scrape."""

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's signature
        pass
