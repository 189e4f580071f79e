"""What a factory run leaves besides the device folders: bundles, ``report.csv``, ``SHA256SUMS``.

``--bundle pem`` adds ``bundle.pem`` to each device folder (its encrypted key, if generated,
then its certificate and issuing CA); ``--bundle p12`` adds ``bundle.p12`` (key, certificate
and CA under the batch password); ``dir`` (the default) writes the files alone.
``report.csv`` maps DevID -> serial -> SHA-256 fingerprint -> not-after for every completed
device; ``SHA256SUMS`` (``sha256sum -c`` format) covers every file of the run but itself.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import (
    BestAvailableEncryption,
    NoEncryption,
    load_pem_private_key,
    pkcs12,
)

__all__ = ["BUNDLES", "bundle_files", "certificate_facts", "write_report_and_sums"]

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
