"""Check certificates and CRLs with the openssl command, as a relying party would."""

from __future__ import annotations

import secrets
import subprocess
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

__all__ = ["openssl_crl_verify", "openssl_verify", "pem_of"]


def pem_of(certificates: Sequence[x509.Certificate]) -> bytes:
    """The certificates as one PEM bundle."""
    return b"".join(c.public_bytes(Encoding.PEM) for c in certificates)


def _write(folder: Path, stem: str, content: bytes) -> Path:
    path = folder / f"{stem}-{secrets.token_hex(3)}.pem"
    path.write_bytes(content)
    return path


def openssl_verify(folder: Path, leaf: x509.Certificate, *, trusted: bytes, untrusted: bytes = b"") -> str:
    """``openssl verify -CAfile trusted [-untrusted untrusted] leaf``; AssertionError unless it says OK."""
    argv = ["openssl", "verify", "-CAfile", str(_write(folder, "trusted", trusted))]
    if untrusted:
        argv += ["-untrusted", str(_write(folder, "untrusted", untrusted))]
    argv.append(str(_write(folder, "leaf", leaf.public_bytes(Encoding.PEM))))
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert result.returncode == 0 and ": OK" in result.stdout, result.stdout + result.stderr
    return result.stdout


def openssl_crl_verify(folder: Path, crl: x509.CertificateRevocationList, issuer: bytes) -> str:
    """``openssl crl -verify -CAfile issuer``; AssertionError unless it says ``verify OK``."""
    crl_file = _write(folder, "crl", crl.public_bytes(Encoding.PEM))
    argv = ["openssl", "crl", "-in", str(crl_file), "-noout", "-verify", "-CAfile", str(_write(folder, "ca", issuer))]
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    output = result.stdout + result.stderr
    assert result.returncode == 0 and "verify OK" in output, output
    return output
