"""The output directory of ``dmboot factory run``: device folders, the journal, bundles, reports.

Output layout (docs/factory.md)::

    DIR/
      .factory/run.json         profile, Idempotency-Key of the run, key format
      .factory/journal.ndjson   one line per completed device (its files are all written)
      key-password              the batch password server-generated keys are encrypted with (0600)
      <DevID-safe>/cert.pem     the device certificate
                   chain.pem    the certificate, then its issuing CA (TLS order; the root is not included)
                   key.pem      server-generated key: encrypted PKCS#8 (or key.p12: PKCS#12)
                   bootstrap.json   the bootstrap content (dmboot-bootstrap/1)
                   package2.json    with --package2: the DM 2.0 package 2 a device declaring DMAcc 1.2
                                    and our trust MO would get from the bootstrap endpoint

``<DevID-safe>`` is the DevID with every byte outside ``A-Z a-z 0-9 . _ -`` (and a leading
``.``) written as ``%XX``: ``IMEI:35...`` becomes ``IMEI%3A35...``.

Every file is written to a temporary name and renamed, so a crash never leaves half a file.
A device enters the journal only after all its files are written and synced; a rerun skips
journaled devices and sends the rest again - the service answers a device it issued for
already with the same certificate (and the same key while it keeps the copy), so no device
ever gets a second certificate.

Besides the device folders, a run leaves bundles, ``report.csv`` and ``SHA256SUMS``:
``--bundle pem`` adds ``bundle.pem`` to each device folder (its encrypted key, if generated,
then its certificate and issuing CA); ``--bundle p12`` adds ``bundle.p12`` (key, certificate
and CA under the batch password); ``dir`` (the default) writes the files alone.
``report.csv`` maps DevID -> serial -> SHA-256 fingerprint -> not-after for every completed
device; ``SHA256SUMS`` (``sha256sum -c`` format) covers every file of the run but itself.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import io
import json
import os
import secrets
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import (
    BestAvailableEncryption,
    Encoding,
    NoEncryption,
    PublicFormat,
    load_pem_private_key,
    pkcs12,
)

from bootstrap.dm.ddf import DdfRegistry
from bootstrap.errors import DmBootstrapError
from bootstrap.factory.content import content_from_json, device_content, package2
from bootstrap.factory.types import ItemOutcome

__all__ = [
    "BUNDLES",
    "DeviceWriter",
    "OutputDir",
    "bundle_files",
    "certificate_facts",
    "key_opens",
    "safe_name",
    "write_report_and_sums",
]

BUNDLES = ("dir", "pem", "p12")
REPORT_COLUMNS = ("dev_id", "serial", "fingerprint_sha256", "not_after")


def certificate_facts(cert_pem: str) -> dict[str, str]:
    """The report's columns of one certificate: serial (hex), SHA-256 fingerprint, not-after (UTC)."""
    cert = x509.load_pem_x509_certificate(cert_pem.encode())
    return {"serial": f"{cert.serial_number:x}", "fingerprint_sha256": cert.fingerprint(hashes.SHA256()).hex(),
            "not_after": cert.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ")}


def bundle_files(kind: str, chain_pem: str, key: bytes | None, password: bytes | None) -> dict[str, bytes]:
    """The extra file ``--bundle kind`` puts in a device folder (none for ``dir``)."""
    if kind == "pem":
        return {"bundle.pem": (key or b"") + chain_pem.encode()}
    if kind == "p12":
        certs = x509.load_pem_x509_certificates(chain_pem.encode())
        private = load_pem_private_key(key, password) if key is not None else None
        encryption = BestAvailableEncryption(password) if password else NoEncryption()
        return {"bundle.p12": pkcs12.serialize_key_and_certificates(
            None, private, certs[0], certs[1:] or None, encryption)}  # type: ignore[arg-type]
    return {}


def write_report_and_sums(root: Path, journal: Path, folder_of: Callable[[str], str]) -> tuple[Path, Path]:
    """Write ``report.csv`` from the journal and ``SHA256SUMS`` over the run's files; return both paths."""
    report = root / "report.csv"
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=REPORT_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for entry in _journal(journal):
        if "fingerprint_sha256" not in entry:  # journaled by an older version: read the certificate
            entry = {**entry, **certificate_facts((root / folder_of(entry["dev_id"]) / "cert.pem").read_text())}
        writer.writerow(entry)
    report.write_text(buffer.getvalue())
    sums = root / "SHA256SUMS"
    lines = [f"{_sha256(path)}  {path.relative_to(root).as_posix()}\n" for path in _run_files(root)]
    sums.write_text("".join(lines))
    return report, sums


def _journal(path: Path) -> Iterator[dict[str, Any]]:
    if not path.exists():
        return
    seen: set[str] = set()
    for line in path.read_bytes().splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue  # a torn last line, from a crash
        if entry.get("dev_id") not in seen:
            seen.add(entry["dev_id"])
            yield entry


def _run_files(root: Path) -> list[Path]:
    skip = {"SHA256SUMS", "key-password"}
    return sorted(p for p in root.rglob("*") if p.is_file() and p.name not in skip and not p.name.startswith(".")
                  and ".factory" not in p.relative_to(root).parts)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-")


STATE = ".factory"


def safe_name(dev_id: str) -> str:
    """A DevID as a directory name: reversible, no separators, never ``.`` or ``..``."""
    out = []
    for i, byte in enumerate(dev_id.encode()):
        keep = byte in _SAFE and not (i == 0 and byte == ord("."))
        out.append(chr(byte) if keep else f"%{byte:02X}")
    return "".join(out)


class OutputDir:
    """The run's directory: state, journal, password, and the per-device files."""

    def __init__(self, root: Path, profile: str, key_format: str) -> None:
        self.root = root
        self._unwritten_run: tuple[Path, dict[str, Any]] | None = None
        self.state = root / STATE
        self.state.mkdir(parents=True, exist_ok=True, mode=0o700)
        run_file = self.state / "run.json"
        if run_file.exists():
            run = json.loads(run_file.read_text())
            if run["profile"] != profile or run["key_format"] != key_format:
                raise DmBootstrapError(f"{root} holds a run of profile {run['profile']!r} with {run['key_format']}"
                                       " keys; resume it with the same options or use another --out")
        else:
            # Written with the first journaled device: a run the service refused binds nothing.
            run = {"profile": profile, "key_format": key_format, "idempotency_key": f"run-{uuid.uuid4()}",
                   "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
            self._unwritten_run = (run_file, run)
        self.idempotency_key: str = run["idempotency_key"]
        self.key_format = key_format
        self.journal_file = self.state / "journal.ndjson"

    def password(self, given: Path | None) -> str:
        """The batch password: from ``given``, else DIR/key-password, else a new one written there first."""
        if given is not None:
            return given.read_text().strip()
        stored = self.root / "key-password"
        if not stored.exists():
            _atomic_write(stored, (secrets.token_urlsafe(32) + "\n").encode(), mode=0o600)
            _fsync_dir(self.root)
        return stored.read_text().strip()

    def done(self) -> set[str]:
        """DevIDs the journal lists as complete (a torn last line, from a crash, is ignored)."""
        if not self.journal_file.exists():
            return set()
        done: set[str] = set()
        for line in self.journal_file.read_bytes().splitlines():
            try:
                done.add(json.loads(line)["dev_id"])
            except (ValueError, KeyError):
                continue
        return done

    def journal(self, entries: list[dict[str, Any]]) -> None:
        """Make the devices' files durable, then record the devices as complete."""
        if not entries:
            return
        if self._unwritten_run is not None:
            run_file, run = self._unwritten_run
            _atomic_write(run_file, json.dumps(run, indent=2).encode())
            self._unwritten_run = None
        os.sync()  # one flush per chunk: the files must be on disk before the journal says so
        with self.journal_file.open("ab") as handle:
            handle.write(b"".join(json.dumps(e, separators=(",", ":")).encode() + b"\n" for e in entries))
            handle.flush()
            os.fsync(handle.fileno())


class DeviceWriter:
    """Writes one device's files from its outcome (see the module docstring for the layout)."""

    def __init__(self, out: OutputDir, password: str | None, registry: DdfRegistry | None) -> None:
        self._out = out
        self._password = password.encode() if password else None
        self._registry = registry
        self.template: dict[str, Any] = {}
        self.ddf_base_url = ""
        self.chains: dict[str, str] = {}
        self.bundle = "dir"  # or pem / p12: one more file per device (factory_output)

    def write(self, outcome: ItemOutcome, keygen: bool) -> None:
        """Write the device's files.

        Raises:
            DmBootstrapError: a server-generated key is neither in the outcome nor on disk.
        """
        assert outcome.certificate_pem is not None and outcome.issuer is not None  # noqa: S101 - issued/existing
        folder = self._out.root / safe_name(outcome.dev_id)
        folder.mkdir(exist_ok=True)
        cert_pem = outcome.certificate_pem
        chain = self.chains[outcome.issuer]
        if keygen:
            self._key(folder, outcome, cert_pem)
        _atomic_write(folder / "cert.pem", cert_pem.encode())
        _atomic_write(folder / "chain.pem", (cert_pem + chain).encode())
        content = device_content(self.template, outcome.dev_id, [cert_pem, *_split_pems(chain)])
        _atomic_write(folder / "bootstrap.json", json.dumps(content, indent=1).encode())
        if self._registry is not None:
            _atomic_write(folder / "package2.json",
                          package2(content_from_json(content), self._registry, ddf_base_url=self.ddf_base_url))
        if self.bundle != "dir":
            key = (folder / "key.pem").read_bytes() if keygen else None
            for name, data in bundle_files(self.bundle, cert_pem + chain, key, self._password).items():
                _atomic_write(folder / name, data, mode=0o600)

    def _key(self, folder: Path, outcome: ItemOutcome, cert_pem: str) -> None:
        name = "key.p12" if self._out.key_format == "pkcs12" else "key.pem"
        path = folder / name
        if outcome.key is not None:
            if outcome.status == "existing" and not key_opens(outcome.key, path.suffix, cert_pem, self._password):
                raise DmBootstrapError(
                    f"{outcome.dev_id}: the service redelivered the key it generated in an earlier run, encrypted"
                    " under that run's password, not this one's; resume that run's --out, or pass its"
                    " key-password with --password-file")
            _atomic_write(path, outcome.key, mode=0o600)
            return
        if path.exists() and key_matches(path, cert_pem, self._password):
            return  # written by the run that crashed before journaling it
        raise DmBootstrapError(f"{outcome.dev_id}: the service no longer keeps its key ({outcome.key_note});"
                               f" the device has certificate {outcome.serial} without a key here - revoke it and"
                               " provision again")


@functools.lru_cache(maxsize=8)
def _split_pems(bundle: str) -> tuple[str, ...]:
    return tuple(c.public_bytes(Encoding.PEM).decode() for c in x509.load_pem_x509_certificates(bundle.encode()))


def key_matches(path: Path, cert_pem: str, password: bytes | None) -> bool:
    """Whether the encrypted key at ``path`` opens with ``password`` and belongs to ``cert_pem``."""
    try:
        return key_opens(path.read_bytes(), path.suffix, cert_pem, password)
    except OSError:
        return False


def key_opens(data: bytes, suffix: str, cert_pem: str, password: bytes | None) -> bool:
    """Whether ``data`` (a ``.pem`` or ``.p12`` key) opens with ``password`` and belongs to ``cert_pem``."""
    try:
        if suffix == ".p12":
            key, _, _ = pkcs12.load_key_and_certificates(data, password)
        else:
            key = load_pem_private_key(data, password)
        if key is None:
            return False
        cert = x509.load_pem_x509_certificate(cert_pem.encode())
        mine = key.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
        return mine == cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    except (ValueError, TypeError):
        return False


def _atomic_write(path: Path, data: bytes, *, mode: int = 0o644) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        _write_all(fd, data)
    finally:
        os.close(fd)
    os.replace(temporary, path)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
