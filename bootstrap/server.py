"""Run the HTTPS service with uvicorn: our TLS certificate, optional client certificates."""

from __future__ import annotations

import os
import ssl
from collections.abc import Callable

import uvicorn
from sqlmodel import select
from uvicorn.config import Config

from bootstrap.settings import Settings
from bootstrap.store.db import Database
from bootstrap.store.models import AuthorityRow, ManufacturerCaRow
from bootstrap.web.tls import ClientCertHttpToolsProtocol, ssl_context_factory

__all__ = ["client_trust_pems", "run", "serve_ssl_context"]


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


def run(settings: Settings, *, cert: str, key: str, key_password: str) -> None:
    """Serve until interrupted. Workers rebuild settings from the environment set here."""
    os.environ["DMBOOT_DATA_DIR"] = str(settings.data_dir.resolve())
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
        proxy_headers=False,
        server_header=False,
    )
