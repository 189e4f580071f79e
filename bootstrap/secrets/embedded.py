"""The embedded keystore: encrypted files in the data directory, for one machine.

Layout under ``<data dir>/keystore/`` (directories 0700, files 0600)::

    keys/<name>/v<N>.pem    signing keys, encrypted PKCS#8 PEM (PBES2)
    kv/<path>.json          secrets: every version AES-256-GCM encrypted
    salt                    scrypt salt
    .lock                   flock() target; check-and-set is atomic across processes

The passphrase is ``keystore_passphrase`` from settings (``DMBOOT_KEYSTORE_PASSPHRASE``)
or, when none is set, a random key file ``<data dir>/keystore.key`` (0600) made by
``dmboot init``. A key file beside the data protects against a stolen database,
not a stolen disk, so using one emits :class:`EmbeddedKeystoreWarning`.

The passphrase is stretched once per process with scrypt (n=2**15, r=8, p=1) into
a master key; HKDF derives from it the AES-GCM key for KV secrets and the
password of the PKCS#8 files. PKCS#8's own PBKDF2 runs only 2048 rounds, which
is fine over a 256-bit derived password and weak over a human passphrase.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import re
import secrets
import threading
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from bootstrap.errors import ConfigurationError, SecretConflict, SecretNotFound
from bootstrap.files import private_dir, private_file
from bootstrap.secrets.base import CheckResult, KeyRef, SecretRef
from pki.encoding import private_key_pem
from pki.keys import KeyType, PrivateKey, generate_private_key
from pki.signers import LocalSigner, Signer

__all__ = ["EmbeddedKeystore", "EmbeddedKeystoreWarning", "ensure_key_file"]

BACKEND = "embedded"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)*\Z")


class EmbeddedKeystoreWarning(UserWarning):
    """The embedded keystore's passphrase is a key file beside the data it protects."""


def ensure_key_file(path: Path) -> bool:
    """Create a random keystore key file (0600) unless it exists; True if created."""
    private_dir(path.parent)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as handle:
        handle.write(secrets.token_urlsafe(32) + "\n")
    return True


class EmbeddedKeystore:
    """SecretStore over encrypted files (see the module docstring)."""

    def __init__(self, root: Path, passphrase: str | None = None, key_file: Path | None = None) -> None:
        self._root = root
        self._passphrase = self._passphrase_from(passphrase, key_file).encode()
        self._signers: dict[KeyRef, Signer] = {}
        self._master: bytes | None = None
        self._guard = threading.RLock()

    @staticmethod
    def _passphrase_from(passphrase: str | None, key_file: Path | None) -> str:
        if passphrase:
            return passphrase
        if key_file is None:
            raise ConfigurationError("the embedded keystore needs a passphrase or a key file")
        try:
            value = key_file.read_text().strip()
        except FileNotFoundError:
            raise ConfigurationError(
                f"keystore key file {key_file} is missing; run `dmboot init` or set DMBOOT_KEYSTORE_PASSPHRASE"
            ) from None
        warnings.warn(
            "embedded keystore protected by a key file beside the data; set "
            "DMBOOT_KEYSTORE_PASSPHRASE or use the Vault backend in production",
            EmbeddedKeystoreWarning,
            stacklevel=3,
        )
        return value

    @property
    def backend(self) -> str:
        return BACKEND

    # -- signing keys --------------------------------------------------------------------

    def create_key(self, name: str, key_type: KeyType) -> KeyRef:
        with self._locked():
            if self._versions(name):
                raise SecretConflict(f"key {name!r} exists already")
            return self._write_key(name, 1, generate_private_key(key_type), key_type)

    def rotate_key(self, name: str) -> KeyRef:
        with self._locked():
            versions = self._versions(name)
            if not versions:
                raise SecretNotFound(f"no key named {name!r}")
            current = self._load_key(name, versions[-1])
            key_type = LocalSigner(current).key_type
            return self._write_key(name, versions[-1] + 1, generate_private_key(key_type), key_type)

    def signer(self, ref: KeyRef) -> Signer:
        with self._guard:
            if ref not in self._signers:
                self._signers[ref] = LocalSigner(self._load_key(ref.name, ref.version))
            return self._signers[ref]

    def _key_path(self, name: str, version: int) -> Path:
        return self._root / "keys" / _check_name(name) / f"v{version}.pem"

    def _versions(self, name: str) -> list[int]:
        folder = self._root / "keys" / _check_name(name)
        found = (int(p.stem[1:]) for p in folder.glob("v*.pem")) if folder.is_dir() else iter(())
        return sorted(found)

    def _write_key(self, name: str, version: int, key: PrivateKey, key_type: KeyType) -> KeyRef:
        _write_private(self._key_path(name, version), private_key_pem(key, self._subkey(b"pkcs8")))
        return KeyRef(BACKEND, name, version, key_type)

    def _load_key(self, name: str, version: int) -> PrivateKey:
        path = self._key_path(name, version)
        try:
            key = serialization.load_pem_private_key(path.read_bytes(), self._subkey(b"pkcs8"))
        except FileNotFoundError:
            raise SecretNotFound(f"no key {name!r} version {version}") from None
        except ValueError:
            raise ConfigurationError(f"cannot decrypt {path}: wrong keystore passphrase?") from None
        return key  # type: ignore[return-value]

    # -- secrets (KV) ----------------------------------------------------------------

    def put(self, path: str, data: Mapping[str, str], *, cas: int | None = None) -> SecretRef:
        file = self._kv_path(path)
        with self._locked():
            document = self._read_kv(file)
            current = int(document.get("current", 0))
            if cas is not None and cas != current:
                raise SecretConflict(f"secret {path!r} is at version {current}, not {cas}")
            version = current + 1
            document.setdefault("versions", {})[str(version)] = self._seal(json.dumps(dict(data)), path)
            document["current"] = version
            _write_private(file, json.dumps(document).encode())
        return SecretRef(BACKEND, path, version)

    def get(self, path: str, version: int | None = None) -> tuple[dict[str, str], SecretRef]:
        document = self._read_kv(self._kv_path(path))
        wanted = version or int(document.get("current", 0))
        sealed = document.get("versions", {}).get(str(wanted))
        if sealed is None:
            raise SecretNotFound(f"no secret at {path!r}" + (f" version {version}" if version else ""))
        data: dict[str, str] = json.loads(self._open(sealed, path))
        return data, SecretRef(BACKEND, path, wanted)

    def _kv_path(self, path: str) -> Path:
        return self._root / "kv" / f"{_check_name(path)}.json"

    @staticmethod
    def _read_kv(file: Path) -> dict[str, Any]:
        try:
            result: dict[str, Any] = json.loads(file.read_text())
            return result
        except FileNotFoundError:
            return {}

    def _subkey(self, purpose: bytes) -> bytes:
        """A 256-bit key for ``purpose``, derived from the stretched passphrase."""
        with self._guard:
            if self._master is None:
                salt_file = self._root / "salt"
                if not salt_file.exists():
                    _write_private(salt_file, secrets.token_bytes(16))
                kdf = Scrypt(salt=salt_file.read_bytes(), length=32, n=2**15, r=8, p=1)
                self._master = kdf.derive(self._passphrase)
        derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"dmboot-keystore/" + purpose)
        return base64.b64encode(derived.derive(self._master))

    def _cipher(self) -> AESGCM:
        return AESGCM(base64.b64decode(self._subkey(b"kv")))

    def _seal(self, plaintext: str, path: str) -> str:
        nonce = secrets.token_bytes(12)
        # The path is bound as associated data: a ciphertext moved to another path won't open.
        sealed = self._cipher().encrypt(nonce, plaintext.encode(), path.encode())
        return base64.b64encode(nonce + sealed).decode()

    def _open(self, sealed: str, path: str) -> str:
        raw = base64.b64decode(sealed)
        try:
            return self._cipher().decrypt(raw[:12], raw[12:], path.encode()).decode()
        except Exception:  # cryptography's InvalidTag: wrong passphrase or tampering
            raise ConfigurationError(f"secret {path!r} cannot be decrypted: wrong passphrase?") from None

    # -- health ------------------------------------------------------------------

    def check(self) -> list[CheckResult]:
        writable = os.access(self._root, os.W_OK) if self._root.exists() else False
        return [
            CheckResult("keystore directory", writable, str(self._root), "run `dmboot init`"),
            CheckResult("backend", True, "embedded (single machine)"),
        ]

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        private_dir(self._root)
        with self._guard, open(private_file(self._root / ".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)


def _check_name(name: str) -> str:
    if not _NAME.match(name) or ".." in name:
        raise ValueError(f"invalid key or secret name {name!r}")
    return name


def _write_private(path: Path, content: bytes) -> None:
    """Write ``content`` to ``path`` atomically with mode 0600."""
    private_dir(path.parent)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(content)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
