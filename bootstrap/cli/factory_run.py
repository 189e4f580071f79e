"""``dmboot factory run``: the engine - the manifest, the journaled run, local and remote drivers.

The output directory (its layout, atomic writes, the journal) is :mod:`bootstrap.cli.factory_output`.
"""

from __future__ import annotations

import asyncio
import csv
import functools
import multiprocessing
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from bootstrap.cli.factory_output import DeviceWriter, OutputDir, certificate_facts
from bootstrap.errors import DmBootstrapError, InvalidRequest
from bootstrap.factory.client import FactoryClient
from bootstrap.factory.service import CHUNK_SIZE, Station
from bootstrap.factory.types import BatchSpec, ItemOutcome, ItemRequest
from bootstrap.runtime import Runtime
from bootstrap.settings import Settings
from pki.identity import check_dev_id

__all__ = ["Manifest", "ManifestRow", "RunOptions", "RunReport", "read_manifest", "run_local", "run_remote"]


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
