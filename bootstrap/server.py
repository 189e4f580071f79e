"""Run the HTTPS service with uvicorn: our TLS certificate, optional client certificates."""

from __future__ import annotations

import logging
import os
import ssl
from collections.abc import Callable
from pathlib import Path

import uvicorn
from sqlmodel import select
from uvicorn.config import Config

from bootstrap import logs, monitoring
from bootstrap.secrets import open_secret_store
from bootstrap.settings import Settings
from bootstrap.store.db import Database
from bootstrap.store.models import AuthorityRow, ManufacturerCaRow
from bootstrap.web.tls import ClientCertHttpToolsProtocol, ssl_context_factory

__all__ = ["client_trust_pems", "run", "serve_ssl_context", "start_metrics"]

log = logging.getLogger(__name__)


def client_trust_pems() -> str:
    """PEMs of every CA whose client certificates may reach the app: ours and manufacturers'."""
    database = Database(Settings.load().database)
    try:
        with database.session() as session:
            ours = [row.pem for row in session.exec(select(AuthorityRow))]
            makers = [row.pem for row in session.exec(select(ManufacturerCaRow).where(ManufacturerCaRow.enabled))]
        return "".join(ours + makers)
    finally:
        database.dispose()


def serve_ssl_context(config: Config, default: Callable[[], ssl.SSLContext]) -> ssl.SSLContext:
    """uvicorn's ``ssl_context_factory``; module-level so worker processes can import it."""
    return ssl_context_factory(client_trust_pems)(config, default)


def start_metrics(settings: Settings) -> None:
    """Prepare multiprocess metrics for several workers and start the /metrics listener (if configured).

    A port that cannot be bound is logged, not fatal: metrics are not worth an outage.
    """
    if settings.workers > 1:
        given = os.environ.get(monitoring.MULTIPROC_ENV)
        directory = Path(given) if given else settings.data_dir.resolve() / "run" / f"metrics-{settings.port}"
        monitoring.prepare_multiprocess(directory)
    if not settings.metrics_port:
        return
    fleet = monitoring.FleetCollector(Database(settings.database), open_secret_store(settings))
    token = settings.metrics_token.reveal() if settings.metrics_token else None
    try:
        monitoring.start_metrics_server(settings.metrics_host, settings.metrics_port,
                                        monitoring.metrics_registry(fleet), token)
    except OSError as exc:
        log.error("metrics listener on %s:%d not started: %s", settings.metrics_host, settings.metrics_port, exc)
        return
    log.info("metrics at http://%s:%d/metrics%s", settings.metrics_host, settings.metrics_port,
             " (Bearer token required)" if token else "")


def run(settings: Settings, *, cert: str, key: str, key_password: str) -> None:
    """Serve until interrupted. Workers rebuild settings from the environment set here."""
    os.environ["DMBOOT_DATA_DIR"] = str(settings.data_dir.resolve())
    start_metrics(settings)
    uvicorn.run(
        "bootstrap.asgi:app",
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        http=ClientCertHttpToolsProtocol,
        ssl_certfile=cert,
        ssl_keyfile=key,
        ssl_keyfile_password=key_password,
        ssl_context_factory=serve_ssl_context,
        log_level=settings.log_level,
        log_config=logs.uvicorn_log_config(settings.log_format, settings.log_level),
        access_log=False,  # bootstrap.web.observe writes one line per request
        proxy_headers=False,
        server_header=False,
    )
