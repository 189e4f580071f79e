"""Secret stores: the protocol, the embedded keystore and the Vault backend."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bootstrap.secrets.base import CheckResult, KeyRef, SecretRef, SecretStore

if TYPE_CHECKING:
    from bootstrap.settings import Settings

__all__ = ["CheckResult", "KeyRef", "SecretRef", "SecretStore", "open_secret_store"]


def open_secret_store(settings: Settings) -> SecretStore:
    """The secret store ``settings.secrets_backend`` names."""
    if settings.secrets_backend == "vault":
        from bootstrap.secrets.vault.store import VaultSecretStore, config_from_settings

        return VaultSecretStore(config_from_settings(settings.vault))
    from bootstrap.secrets.embedded import EmbeddedKeystore

    passphrase = settings.keystore_passphrase.reveal() if settings.keystore_passphrase else None
    return EmbeddedKeystore(settings.data_dir / "keystore", passphrase, settings.data_dir / "keystore.key")
