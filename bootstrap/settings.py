"""Settings: read once, from a TOML file and ``DMBOOT_*`` environment variables.

Precedence: environment, then the file, then defaults. The file is
``$DMBOOT_CONFIG`` if set, else ``<data dir>/dmboot.toml`` (written by
``dmboot init``). Every key of the file has an environment twin: the section and
key joined by ``_``, upper-cased, prefixed ``DMBOOT_`` (``[vault] addr`` ->
``DMBOOT_VAULT_ADDR``; top-level ``database_url`` -> ``DMBOOT_DATABASE_URL``).
See ``config/dmboot.example.toml`` for every key with its default.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bootstrap.errors import ConfigurationError
from pki.key_types import KeyType

__all__ = ["CA_KEY_CHOICES", "Secret", "Settings", "VaultSettings", "load_with_sources", "port_mismatch"]

#: Where CA keys live, as ``dmboot init --ca-keys`` names it.
CA_KEY_CHOICES = ("embedded", "vault-transit", "vault-kv")


class Secret:
    """A string that never shows itself in repr, str or logs."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True)
class VaultSettings:
    """How to reach Vault/OpenBao (``[vault]`` in the file)."""

    addr: str = "http://127.0.0.1:8200"
    auth: str = "token"  # token | approle
    token: Secret | None = None
    role_id: str | None = None
    secret_id_file: Path | None = None
    ca_bundle: Path | None = None
    namespace: str | None = None
    kv_mount: str = "secret"
    transit_mount: str = "transit"
    key_prefix: str = "dmboot"
    ca_key_mode: str = "transit"  # transit | kv
    timeout: float = 10.0


@dataclass(frozen=True)
class Settings:
    """Everything the service and the CLI read from configuration."""

    data_dir: Path = Path("data")
    database_url: str = ""
    host: str = "127.0.0.1"
    port: int = 8443
    #: Base URL relying parties use to reach us; CRL and OCSP URLs in certificates derive from it.
    public_url: str = "https://localhost:8443"
    #: DNS names and IP addresses in the service's own TLS certificate.
    server_names: tuple[str, ...] = ("localhost", "127.0.0.1")
    organization: str = "dm-bootstrap"
    ca_key_type: KeyType = KeyType.P256
    secrets_backend: str = "embedded"  # embedded | vault
    keystore_passphrase: Secret | None = None
    max_body_bytes: int = 64 * 1024
    log_level: str = "info"
    #: ``text`` or ``json`` (one JSON object per line), for every log line of ``dmboot serve``.
    log_format: str = "text"
    #: Prometheus ``/metrics`` listens here, apart from the service port; port 0 turns it off.
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 9464
    #: When set, /metrics answers only ``Authorization: Bearer <metrics_token>``.
    metrics_token: Secret | None = None
    workers: int = 1
    #: Reverse proxies whose forwarded client-certificate header is believed (IP addresses).
    trusted_proxies: tuple[str, ...] = ()
    #: The header such a proxy puts the URL-escaped PEM client certificate in.
    client_cert_header: str = "x-ssl-client-cert"
    #: Factory batches (NDJSON streams) may be this large; other requests stay at max_body_bytes.
    factory_max_body_bytes: int = 256 * 1024 * 1024
    #: How long a server-generated key stays available (encrypted for the station) for a retry.
    factory_key_retention_hours: int = 24
    #: CRL partitions per issuing CA: each new certificate's CRL distribution point names
    #: ``<CA>-p<serial mod crl_partitions>.crl`` (0: the CA's complete CRL). About
    #: certificates / crl_partitions per partition; raise it, never lower it, as the fleet grows.
    crl_partitions: int = 16
    #: Seconds between the background CRL publisher's looks for revocations and due CRLs
    #: (0: no background publisher in this process; ``dmboot crl publish`` does it).
    crl_publish_seconds: float = 2.0
    vault: VaultSettings = field(default_factory=VaultSettings)

    @property
    def database(self) -> str:
        """The database URL: the configured one, else an SQLite file in the data directory."""
        return self.database_url or f"sqlite:///{(self.data_dir / 'dmboot.db').resolve()}"

    @property
    def config_file(self) -> Path:
        return self.data_dir / "dmboot.toml"

    @property
    def ca_keys(self) -> str:
        """Where new CA keys go: ``embedded``, ``vault-transit`` or ``vault-kv``."""
        return "embedded" if self.secrets_backend == "embedded" else f"vault-{self.vault.ca_key_mode}"

    def with_ca_keys(self, choice: str) -> Settings:
        """A copy that keeps CA keys where ``choice`` (one of :data:`CA_KEY_CHOICES`) says.

        ``vault-transit`` and ``vault-kv`` imply ``secrets_backend = "vault"``.

        Raises:
            ConfigurationError: ``choice`` is not one of :data:`CA_KEY_CHOICES`.
        """
        if choice not in CA_KEY_CHOICES:
            raise ConfigurationError(f"--ca-keys must be one of {', '.join(CA_KEY_CHOICES)}, not {choice!r}",
                                     field="ca_keys")
        if choice == "embedded":
            return dataclasses.replace(self, secrets_backend="embedded")
        vault = dataclasses.replace(self.vault, ca_key_mode=choice.removeprefix("vault-"))
        return dataclasses.replace(self, secrets_backend="vault", vault=vault)

    @classmethod
    def load(cls, environ: Mapping[str, str] | None = None, config_file: Path | None = None) -> Settings:
        """Read settings from ``config_file`` (or the default place) and ``environ``.

        Raises:
            ConfigurationError: a value that cannot be used, naming the key.
        """
        return load_with_sources(environ, config_file)[0]

    def validate(self) -> None:
        if self.secrets_backend not in ("embedded", "vault"):
            raise ConfigurationError(
                f"secrets_backend must be 'embedded' or 'vault', not {self.secrets_backend!r}",
                field="secrets_backend",
            )
        if self.vault.auth not in ("token", "approle"):
            raise ConfigurationError("vault.auth must be 'token' or 'approle'", field="vault.auth")
        if self.vault.ca_key_mode not in ("transit", "kv"):
            raise ConfigurationError("vault.ca_key_mode must be 'transit' or 'kv'", field="vault.ca_key_mode")
        if not 0 <= self.crl_partitions <= 100_000:
            raise ConfigurationError("crl_partitions must be between 0 and 100000", field="crl_partitions")
        if self.crl_publish_seconds < 0:
            raise ConfigurationError("crl_publish_seconds must not be negative", field="crl_publish_seconds")
        if not 0 < self.port < 65536:
            raise ConfigurationError(f"port {self.port} is out of range", field="port")
        if self.log_format not in ("text", "json"):
            raise ConfigurationError("log_format must be 'text' or 'json'", field="log_format")
        if not 0 <= self.metrics_port < 65536:
            raise ConfigurationError(f"metrics_port {self.metrics_port} is out of range", field="metrics_port")
        if not self.public_url.startswith(("http://", "https://")):
            raise ConfigurationError("public_url must be an http(s) URL", field="public_url")


def load_with_sources(
    environ: Mapping[str, str] | None = None, config_file: Path | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> tuple[Settings, dict[str, str]]:
    """Settings as :meth:`Settings.load` reads them, with CLI ``overrides`` and where each value came from.

    ``public_url`` set nowhere follows the port in effect (``https://localhost:<port>``), so
    ``serve --port`` keeps the URLs put in certificates and bootstrap packages on that port.

    Raises:
        ConfigurationError: a value that cannot be used, naming the key.
    """
    env = dict(os.environ if environ is None else environ)
    sources: dict[str, str] = {}
    data_dir = Path(env.get("DMBOOT_DATA_DIR", "data"))
    sources["data_dir"] = "environment DMBOOT_DATA_DIR" if "DMBOOT_DATA_DIR" in env else "default"
    path = config_file or Path(env.get("DMBOOT_CONFIG") or data_dir / "dmboot.toml")
    document = _read_toml(path)
    if "data_dir" in document and "DMBOOT_DATA_DIR" not in env:
        data_dir, sources["data_dir"] = Path(str(document["data_dir"])), f"config file {path}"
    top = _section(Settings, document, env, "DMBOOT_", skip={"vault", "data_dir"}, sources=sources, path=path)
    vault = _section(VaultSettings, document.get("vault", {}), env, "DMBOOT_VAULT_", skip=set(),
                     sources=sources, path=path, label="vault.")
    for name, value in (overrides or {}).items():
        if value is not None:
            top[name], sources[name] = value, "command line"
    if "public_url" not in top:
        top["public_url"] = f"https://localhost:{top.get('port', Settings.port)}"
        sources["public_url"] = "derived from port"
    settings = Settings(data_dir=data_dir, vault=VaultSettings(**vault), **top)
    settings.validate()
    return settings, sources


def port_mismatch(settings: Settings) -> str | None:
    """Why the public URL may not reach this listener, or ``None`` when it should.

    A public URL on another port than the listen port is right only behind a proxy
    that forwards it; with no ``trusted_proxies`` that is likely a mistake.
    """
    url = urlsplit(settings.public_url)
    public_port = url.port or (443 if url.scheme == "https" else 80)
    if public_port == settings.port or settings.trusted_proxies:
        return None
    return (f"listening on port {settings.port} but public_url {settings.public_url} names port {public_port} "
            "(no trusted_proxies): devices will be sent URLs on the other port; set public_url or --port")


def _read_toml(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        return tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigurationError(f"cannot read {path}: {exc}", field="config") from None


def _section(
    kind: type[Any], document: Mapping[str, Any], env: Mapping[str, str], prefix: str, skip: set[str],
    *, sources: dict[str, str], path: Path, label: str = "",
) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for f in fields(kind):
        if f.name in skip:
            continue
        variable = prefix + f.name.upper()
        raw = env.get(variable, document.get(f.name))
        if raw is not None:
            values[f.name] = _convert(f.name, str(f.type), raw)
            sources[label + f.name] = f"environment {variable}" if variable in env else f"config file {path}"
    return values


def _convert(name: str, kind: str, raw: Any) -> Any:
    try:
        if "Secret" in kind:
            return Secret(str(raw))
        if "KeyType" in kind:
            return KeyType.parse(str(raw))
        if "Path" in kind:
            return Path(str(raw))
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
        if "tuple" in kind:
            items = raw if isinstance(raw, list) else str(raw).split(",")
            return tuple(str(i).strip() for i in items if str(i).strip())
        return str(raw)
    except (ValueError, TypeError) as exc:
        raise ConfigurationError(f"setting {name}: {exc}", field=name) from None
