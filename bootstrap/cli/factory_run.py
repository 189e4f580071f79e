"""``dmboot factory run``: the engine - manifest, output directory, journal, local and remote drivers.

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
"""

from __future__ import annotations

import asyncio
import csv
import functools
import json
import multiprocessing
import os
import secrets
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, load_pem_private_key, pkcs12

from bootstrap.cli.factory_output import bundle_files, certificate_facts
from bootstrap.dm.ddf import DdfRegistry
from bootstrap.errors import DmBootstrapError, InvalidRequest
from bootstrap.factory.client import FactoryClient
from bootstrap.factory.content import content_from_json, device_content, package2
from bootstrap.factory.service import CHUNK_SIZE, Station
from bootstrap.factory.types import BatchSpec, ItemOutcome, ItemRequest
from bootstrap.runtime import Runtime
from bootstrap.settings import Settings
from pki.identity import check_dev_id

__all__ = ["DeviceWriter", "Manifest", "ManifestRow", "OutputDir", "RunOptions", "RunReport", "read_manifest",
           "key_opens", "run_local", "run_remote", "safe_name"]

_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-")
STATE = ".factory"


def safe_name(dev_id: str) -> str:
    """A DevID as a directory name: reversible, no separators, never ``.`` or ``..``."""
    out = []
    for i, byte in enumerate(dev_id.encode()):
        keep = byte in _SAFE and not (i == 0 and byte == ord("."))
        out.append(chr(byte) if keep else f"%{byte:02X}")
    return "".join(out)


@dataclass(frozen=True)
class ManifestRow:
    """One device of the manifest."""

    dev_id: str
    csr_path: Path | None = None
    attributes: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Manifest:
    rows: list[ManifestRow]


def read_manifest(path: Path) -> Manifest:
    """Read ``dev_id[,csr_path][,attributes...]``; a first row starting ``dev_id`` is a header naming columns.

    With a header, ``csr``/``csr_path`` names the CSR column and every other column is a
    manufacturer attribute of that name. CSR paths are relative to the manifest.

    Raises:
        InvalidRequest: a bad DevID, a repeated DevID, or an unreadable row (naming its line).
    """
    with path.open(newline="") as handle:
        rows = [r for r in csv.reader(handle) if r and any(c.strip() for c in r) and not r[0].startswith("#")]
    columns = ["dev_id", "csr_path"]
    if rows and rows[0][0].strip().lower() == "dev_id":
        columns = [c.strip().lower() for c in rows[0]]
        rows = rows[1:]
    seen: set[str] = set()
    result: list[ManifestRow] = []
    for number, row in enumerate(rows, 1):
        values = dict(zip(columns, (c.strip() for c in row), strict=False))
        dev_id = values.pop("dev_id", "")
        try:
            check_dev_id(dev_id)
        except ValueError as exc:
            raise InvalidRequest(f"{path}: device {number}: {exc}", field="manifest") from None
        if dev_id in seen:
            raise InvalidRequest(f"{path}: device {number}: DevID {dev_id!r} appears twice", field="manifest")
        seen.add(dev_id)
        csr = values.pop("csr_path", "") or values.pop("csr", "")
        attributes = {k: v for k, v in values.items() if k and v}
        result.append(ManifestRow(dev_id, (path.parent / csr) if csr else None, attributes))
    return Manifest(result)


@dataclass
class RunReport:
    """What a run did; ``--json`` prints it."""

    profile: str
    out: str
    total: int = 0
    skipped: int = 0
    issued: int = 0
    existing: int = 0
    failed: int = 0
    failures: list[dict[str, str]] = field(default_factory=list)
    elapsed_s: float = 0.0

    def to_json(self) -> dict[str, Any]:
        done = self.issued + self.existing
        return {"profile": self.profile, "out": self.out, "total": self.total, "skipped_from_journal": self.skipped,
                "issued": self.issued, "existing": self.existing, "failed": self.failed,
                "complete": self.skipped + done, "elapsed_s": round(self.elapsed_s, 3),
                "devices_per_s": round(done / self.elapsed_s, 1) if self.elapsed_s else None,
                "failures": self.failures[:100]}


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


def chunks(rows: list[ManifestRow], size: int) -> Iterator[list[ManifestRow]]:
    for start in range(0, len(rows), size):
        yield rows[start:start + size]


def item_json(row: ManifestRow, keygen: str | None) -> dict[str, Any]:
    """A manifest row as a batch item (CSR read from its file, else server-side keygen)."""
    doc: dict[str, Any] = {"dev_id": row.dev_id}
    if row.csr_path is not None:
        doc["csr"] = row.csr_path.read_text()
    elif keygen is not None:
        doc["keygen"] = {"key_type": keygen}
    else:
        raise InvalidRequest(f"device {row.dev_id} has no CSR in the manifest; pass --keygen p256 to have the"
                             " service generate its key", field="manifest")
    if row.attributes:
        doc["attributes"] = row.attributes
    return doc


def tally(report: RunReport, outcome: ItemOutcome, write: Callable[[], None]) -> dict[str, Any] | None:
    """Count an outcome and write its files; the journal entry for a completed device."""
    if outcome.status in ("issued", "existing"):
        try:
            write()
        except DmBootstrapError as exc:
            report.failed += 1
            report.failures.append({"dev_id": outcome.dev_id, "error": exc.message})
            return None
        if outcome.status == "issued":
            report.issued += 1
        else:
            report.existing += 1
        assert outcome.certificate_pem is not None  # noqa: S101 - issued/existing
        return {"dev_id": outcome.dev_id, "status": outcome.status, **certificate_facts(outcome.certificate_pem)}
    report.failed += 1
    error = outcome.error
    report.failures.append({"dev_id": outcome.dev_id, "error": f"{error.type}: {error.detail}" if error else "?"})
    return None


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


# -- drivers --------------------------------------------------------------------------------


@dataclass
class RunOptions:
    """What the command line asked for."""

    profile: str
    keygen: str | None
    key_format: str
    password: str | None = field(default=None, repr=False)
    batch_size: int = 500
    jobs: int = 1


class Progress(Protocol):
    def advance(self, count: int) -> None: ...


def _header(options: RunOptions) -> dict[str, Any]:
    header: dict[str, Any] = {"profile": options.profile, "key_format": options.key_format}
    if options.password is not None:
        header["password"] = options.password
    return header


def run_local(runtime: Runtime, rows: list[ManifestRow], out: OutputDir, writer: DeviceWriter, report: RunReport,
              options: RunOptions, progress: Progress) -> None:
    """Provision ``rows`` in this process (or ``options.jobs`` worker processes) on the local data directory."""
    service = runtime.factory.batches
    spec = BatchSpec.from_json(_header(options), out.idempotency_key)
    batch = service.open_batch(Station.local(), spec)
    writer.template, writer.ddf_base_url = batch.template, runtime.settings.public_url
    work = [[item_json(r, options.keygen) for r in chunk] for chunk in chunks(rows, options.batch_size)]
    try:
        if options.jobs <= 1:
            for items in work:
                outcomes = [o for start in range(0, len(items), CHUNK_SIZE)
                            for o in service.submit(batch, _items(items[start:start + CHUNK_SIZE]))]
                _handle(outcomes, items, service.chain_pem, out, writer, report, progress)
        else:
            # spawn, not fork: a child must not inherit the parent's database connections.
            with ProcessPoolExecutor(options.jobs, mp_context=multiprocessing.get_context("spawn"),
                                     initializer=_init_worker, initargs=(runtime.settings,)) as pool:
                futures = {pool.submit(_worker_chunk, out.idempotency_key, _header(options), items): items
                           for items in work}
                for future in as_completed(futures):
                    outcomes = [ItemOutcome.from_json(d) for d in future.result()]
                    _handle(outcomes, futures[future], service.chain_pem, out, writer, report, progress)
    finally:
        service.finish(batch)


def _items(docs: list[dict[str, Any]]) -> list[ItemRequest]:
    return [ItemRequest.from_json(d, i) for i, d in enumerate(docs)]


def _handle(outcomes: list[ItemOutcome], items: list[dict[str, Any]], chain_pem: Callable[[str], str],
            out: OutputDir, writer: DeviceWriter, report: RunReport, progress: Progress) -> None:
    keygen = {d["dev_id"] for d in items if "keygen" in d}
    entries = []
    for outcome in outcomes:
        if outcome.issuer and outcome.issuer not in writer.chains:
            writer.chains[outcome.issuer] = chain_pem(outcome.issuer)
        entry = tally(report, outcome, functools.partial(writer.write, outcome, outcome.dev_id in keygen))
        if entry is not None:
            entries.append(entry)
    out.journal(entries)
    progress.advance(len(outcomes))


_WORKER: dict[str, Any] = {}


def _init_worker(settings: Settings) -> None:
    import warnings

    from bootstrap.secrets.embedded import EmbeddedKeystoreWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", EmbeddedKeystoreWarning)
        _WORKER["runtime"] = Runtime(settings)


def _worker_chunk(key: str, header: dict[str, Any], items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    runtime: Runtime = _WORKER["runtime"]
    service = runtime.factory.batches
    batch = _WORKER.get(key)
    if batch is None:
        batch = _WORKER[key] = service.open_batch(Station.local(), BatchSpec.from_json(header, key))
    return [o.to_json() for start in range(0, len(items), CHUNK_SIZE)
            for o in service.submit(batch, _items(items[start:start + CHUNK_SIZE]))]


async def run_remote(client: FactoryClient, rows: list[ManifestRow], out: OutputDir, writer: DeviceWriter,
                     report: RunReport, options: RunOptions, progress: Progress) -> None:
    """Provision ``rows`` through the service's API, ``options.jobs`` requests at a time."""
    work = list(chunks(rows, options.batch_size))

    async def worker() -> None:
        while work:
            chunk = work.pop(0)
            await _remote_chunk(client, [item_json(r, options.keygen) for r in chunk], out, writer, report, options,
                                progress)

    await asyncio.gather(*(worker() for _ in range(max(1, options.jobs))))


async def _remote_chunk(client: FactoryClient, items: list[dict[str, Any]], out: OutputDir, writer: DeviceWriter,
                        report: RunReport, options: RunOptions, progress: Progress) -> None:
    handled: set[str] = set()
    keygen = {d["dev_id"] for d in items if "keygen" in d}
    for attempt in range(_RETRIES + 1):
        entries: list[dict[str, Any]] = []
        try:
            todo = [d for d in items if d["dev_id"] not in handled]
            async for line in client.batch(out.idempotency_key, _header(options), todo):
                kind = line.get("type")
                if kind == "batch":
                    writer.template, writer.ddf_base_url = line["bootstrap"], line.get("ddf_base_url", "")
                elif kind == "chain":
                    writer.chains[line["issuer"]] = line["pem"]
                elif kind == "item":
                    outcome = ItemOutcome.from_json(line)
                    handled.add(outcome.dev_id)
                    entry = tally(report, outcome, functools.partial(writer.write, outcome, outcome.dev_id in keygen))
                    if entry is not None:
                        entries.append(entry)
                    progress.advance(1)
                elif kind == "error":
                    raise DmBootstrapError(f"the service stopped the batch: {line['error']['detail']}")
            out.journal(entries)
            return
        except (TimeoutError, OSError, asyncio.IncompleteReadError) as exc:
            out.journal(entries)
            if attempt == _RETRIES:
                raise DmBootstrapError(f"the service is unreachable ({exc or type(exc).__name__}); rerun the same"
                                       " command to resume") from None
            await asyncio.sleep(2 ** attempt)


_RETRIES = 3
