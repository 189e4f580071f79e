"""Wiring: settings -> database, secret store, services. Shared by the CLI and the app."""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import secrets
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding, load_pem_private_key
from sqlalchemy.engine import make_url

from bootstrap.auth.sessions import SessionService
from bootstrap.dm.ddf import DdfRegistry
from bootstrap.dm.session import SessionSigner
from bootstrap.factory.service import FactoryService
from bootstrap.files import private_dir
from bootstrap.secrets import SecretStore, open_secret_store
from bootstrap.secrets.embedded import ensure_key_file
from bootstrap.services.admins import AdminAccountService
from bootstrap.services.authorities import AuthorityDirectory, HierarchyInfo
from bootstrap.services.config import ConfigService
from bootstrap.services.crl import CrlService
from bootstrap.services.crl_publisher import CrlPublisher
from bootstrap.services.devices import DeviceService
from bootstrap.services.dm1 import Dm1Service
from bootstrap.services.dm2 import Dm2BootstrapService
from bootstrap.services.enrollment import EnrollmentService
from bootstrap.services.est import EstService
from bootstrap.services.issuance import IssuanceService, Requester
from bootstrap.services.ocsp import OcspResponder
from bootstrap.services.ocsp_renewal import ResponderRenewal
from bootstrap.services.revocation import RevocationService
from bootstrap.services.tokens import TokenService
from bootstrap.services.tpm import TpmChallengeService
from bootstrap.services.tpm_trust import TpmTrustService
from bootstrap.settings import Settings
from bootstrap.store import migrate
from bootstrap.store.db import Database
from pki.encoding import private_key_pem
from pki.keys import KeyType, generate_private_key
from pki.profiles import Names

__all__ = ["InitReport", "Runtime", "TlsFiles"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TlsFiles:
    """The service's own TLS certificate chain and encrypted key, issued by our CA."""

    cert: Path
    key: Path
    password_file: Path


@dataclass
class InitReport:
    """What `dmboot init` did; an empty ``created`` list means nothing changed."""

    data_dir: Path
    created: list[str] = field(default_factory=list)
    hierarchy: HierarchyInfo | None = None


class Runtime:
    """The service's parts for one process."""

    def __init__(self, settings: Settings, store: SecretStore | None = None) -> None:
        self.settings = settings
        self.database = Database(settings.database)
        self._owns_store = store is None
        self.store = store or open_secret_store(settings)
        self.authorities = AuthorityDirectory(self.store, settings.public_url, settings.organization,
                                              crl_partitions=settings.crl_partitions)
        self.issuance = IssuanceService(self.database, self.authorities)
        self.tokens = TokenService(self.database)
        self.admins = AdminAccountService(self.database, self.store, issuer=settings.organization)
        self.sessions = SessionService(self.database)
        self.ddfs = DdfRegistry.load()
        self.config = ConfigService(self.database, self.issuance, self.ddfs)
        self.devices = DeviceService(self.database, self.store)
        self.enrollment = EnrollmentService(self.database, self.store, self.authorities, self.issuance)
        self.dm2 = Dm2BootstrapService(self.enrollment, self.database, SessionSigner(self.store), self.ddfs,
                                       public_url=settings.public_url, store=self.store,
                                       server_certificate=self._server_certificate_der)
        self.tpm = TpmChallengeService(self.database, self.store)
        self.tpm_trust = TpmTrustService(self.database)
        self.dm1 = Dm1Service(self.database, self.store, self.issuance, self.ddfs, self.enrollment)
        self.crls = CrlService(self.database)
        self.crl_publisher = CrlPublisher(self.database, self.authorities, settings.public_url,
                                          interval=settings.crl_publish_seconds)
        self.ocsp = OcspResponder(self.database, self.authorities, self.store, settings.organization)
        self.revocation = RevocationService(self.database, on_revoked=self._revoked)
        self.ocsp_renewal = ResponderRenewal(self.database, self.ocsp)
        self.crl_publisher.after_pass = _after_publishing(weakref.ref(self))
        self.issuance.pipeline.sweeper = self.revocation.revoke_superseded
        self.est = EstService(self.database, self.store, self.authorities, self.issuance)
        self.factory = FactoryService(self.database, self.store, self.authorities, self.tokens,
                                      key_retention=timedelta(hours=settings.factory_key_retention_hours))

    @property
    def tls(self) -> TlsFiles:
        folder = self.settings.data_dir / "tls"
        return TlsFiles(folder / "server-chain.pem", folder / "server-key.pem", folder / "server-key.pass")

    def _revoked(self, serials: Sequence[str]) -> None:
        """After a revocation committed: OCSP forgets the serials, the CRL publisher gets going."""
        self.ocsp.revoked(serials)
        self.crl_publisher.wake()

    def close(self) -> None:
        """Stop the CRL publisher; release the database pool and, unless handed in, the secret store."""
        self.crl_publisher.stop()
        self.database.dispose()
        close_store = getattr(self.store, "close", None) if self._owns_store else None
        if callable(close_store):
            close_store()

    @classmethod
    def initialize(cls, settings: Settings, *, actor: str = "cli:init") -> tuple[Runtime, InitReport]:
        """Create what is missing - data dir, config, keystore key, schema, CAs, TLS cert.

        Running it again changes nothing and says so.
        """
        report = InitReport(settings.data_dir)
        if not settings.data_dir.exists():
            private_dir(settings.data_dir)
            report.created.append(f"data directory {settings.data_dir}")
        if not settings.config_file.exists() and "DMBOOT_CONFIG" not in os.environ:
            settings.config_file.write_text(_config_text(settings))
            report.created.append(f"config {settings.config_file}")
        if settings.secrets_backend == "embedded" and settings.keystore_passphrase is None:
            if ensure_key_file(settings.data_dir / "keystore.key"):
                report.created.append("keystore key file keystore.key (0600)")
        runtime = cls(settings)
        before = migrate.current_revision(runtime.database)
        migrate.upgrade(runtime.database)
        if before != migrate.head_revision():
            report.created.append(f"database schema {migrate.head_revision()} ({_safe_url(settings.database)})")
        with runtime.database.session() as session:
            report.hierarchy = runtime.authorities.ensure_hierarchy(session, settings.ca_key_type, actor)
        if report.hierarchy.created:
            report.created.append(
                f"CA hierarchy ({settings.ca_key_type.value}, keys {settings.ca_keys}): root and issuing-1"
            )
        published = runtime.crl_publisher.publish(actor=actor)
        if published.numbers:
            report.created.append(f"{len(published.numbers)} CRLs ({settings.crl_partitions} partitions per CA)")
        if runtime.ensure_tls(actor):
            report.created.append(f"TLS certificate for {', '.join(settings.server_names)}")
        return runtime, report

    def ensure_tls(self, actor: str) -> bool:
        """Issue the service's own dm-server certificate unless a valid one exists."""
        files = self.tls
        if files.cert.exists() and files.key.exists() and files.password_file.exists():
            return False
        private_dir(files.cert.parent)
        key = generate_private_key(KeyType.P256)
        password = secrets.token_urlsafe(24)
        dns = tuple(n for n in self.settings.server_names if not _is_ip(n))
        ips = tuple(ipaddress.ip_address(n) for n in self.settings.server_names if _is_ip(n))
        names = Names(common_name=(dns or self.settings.server_names)[0], dns=dns, ips=ips)
        csr = x509.CertificateSigningRequestBuilder().subject_name(names.subject()).sign(key, hashes.SHA256())
        issued = self.issuance.issue_from_csr(
            csr.public_bytes(Encoding.PEM), "dm-server", Requester(actor), expected=names
        )
        _write_0600(files.password_file, password.encode())
        _write_0600(files.key, private_key_pem(key, password.encode()))
        _write_0600(files.cert, issued.chain_pem.encode())
        return True

    def _server_certificate_der(self) -> bytes:
        """Our TLS certificate (DER; DMAcc Auth/Bootstrap/ServerPubKey); the root CA's before one exists."""
        try:
            stat = self.tls.cert.stat()
        except FileNotFoundError:
            stat = None
        if stat is not None:
            # Remembered while the file is unchanged: package 2 carries it on every enrollment.
            version = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
            cached = getattr(self, "_server_der", None)
            if cached is not None and cached[0] == version:
                return cached[1]  # type: ignore[no-any-return]
            der = x509.load_pem_x509_certificate(self.tls.cert.read_bytes()).public_bytes(Encoding.DER)
            self._server_der = (version, der)
            return der
        with self.database.session() as session:
            pem = self.authorities.root_row(session).pem
        return x509.load_pem_x509_certificate(pem.encode()).public_bytes(Encoding.DER)

    def server_key_password(self) -> str:
        return self.tls.password_file.read_text().strip()

    def check_tls_key(self) -> None:
        load_pem_private_key(self.tls.key.read_bytes(), self.server_key_password().encode())


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def _write_0600(path: Path, content: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(content)


def _safe_url(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


def _config_text(settings: Settings) -> str:
    return f"""# dm-bootstrap configuration, written by `dmboot init`.
# Every key can be overridden by an environment variable: DMBOOT_<KEY>, DMBOOT_VAULT_<KEY>.
# Secrets (keystore passphrase, Vault token) belong in the environment, not here.
# See config/dmboot.example.toml for all keys.

host = "{settings.host}"
port = {settings.port}
{_public_url_line(settings)}
server_names = {list(settings.server_names)!r}
organization = "{settings.organization}"
ca_key_type = "{settings.ca_key_type.value}"
secrets_backend = "{settings.secrets_backend}"
""".replace("'", '"') + _vault_config_text(settings)


def _public_url_line(settings: Settings) -> str:
    """``public_url`` pinned only when it is not the one that follows ``port``."""
    derived = f"https://localhost:{settings.port}"
    if settings.public_url == derived:
        return f'# public_url = "{derived}"   # unset: https://localhost:<port>, following port'
    return f'public_url = "{settings.public_url}"'


def _vault_config_text(settings: Settings) -> str:
    """The ``[vault]`` section (never the token: DMBOOT_VAULT_TOKEN, or AppRole files)."""
    if settings.secrets_backend != "vault":
        return ""
    vault = settings.vault
    values: dict[str, object | None] = {
        "addr": vault.addr, "auth": vault.auth, "ca_key_mode": vault.ca_key_mode, "kv_mount": vault.kv_mount,
        "transit_mount": vault.transit_mount, "key_prefix": vault.key_prefix, "role_id": vault.role_id,
        "secret_id_file": vault.secret_id_file, "ca_bundle": vault.ca_bundle, "namespace": vault.namespace,
    }
    lines = [
        "",
        f"# CA keys: `dmboot init --ca-keys {settings.ca_keys}`. The token comes from DMBOOT_VAULT_TOKEN;",
        "# for AppRole set auth, role_id and secret_id_file. See docs/vault.md.",
        "[vault]",
        # JSON string escapes are valid TOML basic strings.
        *(f"{key} = {json.dumps(str(value))}" for key, value in values.items() if value),
    ]
    return "\n".join(lines) + "\n"


def _after_publishing(runtime: weakref.ref[Runtime]) -> Callable[[], None]:
    """The CRL publisher's thread, after each pass: renew due OCSP responders, pre-sign revocations.

    A weak reference: the publisher holding its runtime would make a cycle that keeps a closed
    runtime (and its database pool) alive until the garbage collector finds it.
    """

    def after() -> None:
        found = runtime()
        if found is not None:
            found.ocsp_renewal.run()
            found.ocsp.presign_revoked()

    return after
