"""Helpers for the revocation and EST tests: a small CA hierarchy, an opaque signer, openssl."""

from __future__ import annotations

import functools
import subprocess
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp

from bootstrap.runtime import Runtime
from pki.authority import CertificateAuthority, IssuedCertificate, create_issuing_ca, create_root
from pki.keys import KeyType, PrivateKey, PublicKey, generate_private_key
from pki.profiles import PROFILES, Names, Urls
from pki.signers import LocalSigner

__all__ = ["CERT_ID_HASH", "Hierarchy", "OpaqueSigner", "hierarchy_of", "openssl", "pem", "write"]

#: The CertID hash openssl and most clients use (RFC 6960 4.1.1; RFC 5019 mandates SHA-1).
CERT_ID_HASH = hashes.SHA1()  # noqa: S303 - a CertID hash, not a signature


class OpaqueSigner:
    """A Signer that is not a LocalSigner: takes the external-signer (TBS) path, like Vault Transit."""

    def __init__(self, key: PrivateKey) -> None:
        self._inner = LocalSigner(key)

    @property
    def key_type(self) -> KeyType:
        return self._inner.key_type

    @property
    def public_key(self) -> PublicKey:
        return self._inner.public_key

    def sign(self, data: bytes) -> bytes:
        return self._inner.sign(data)


@dataclass(frozen=True)
class Hierarchy:
    """Root, issuing CA and a delegated OCSP responder, with their keys."""

    root: x509.Certificate
    issuing: CertificateAuthority
    responder: IssuedCertificate
    responder_key: PrivateKey

    def leaf(self, cn: str = "IMEI:490154203237518") -> tuple[IssuedCertificate, PrivateKey]:
        key = generate_private_key(KeyType.P256)
        issued = self.issuing.issue(key.public_key(), Names(cn, uris=(f"urn:dmboot:devid:{cn}",)),
                                    PROFILES["device"])
        return issued, key


@functools.cache
def hierarchy_of(key_type: KeyType, name: str = "Test") -> Hierarchy:
    """A hierarchy per key type and name, built once per session."""
    root_key, issuing_key = generate_private_key(key_type), generate_private_key(key_type)
    root_signer = LocalSigner(root_key)
    root_cert = create_root(root_signer, Names(f"{name} Root CA", "dm-bootstrap tests"))
    root = CertificateAuthority(root_cert, root_signer)
    issuing_cert = create_issuing_ca(root, issuing_key.public_key(), Names(f"{name} Issuing CA", "dm-bootstrap tests"))
    urls = Urls(crl=("http://pki.dmboot.test/crl/issuing.crl",), ocsp=("http://pki.dmboot.test/ocsp",))
    issuing = CertificateAuthority(issuing_cert, LocalSigner(issuing_key), chain=[root_cert], urls=urls)
    responder_key = generate_private_key(key_type)
    responder = issuing.issue(responder_key.public_key(), Names(f"{name} OCSP Responder"), PROFILES["ocsp-signer"])
    return Hierarchy(root_cert, issuing, responder, responder_key)


def pem(*certificates: x509.Certificate) -> bytes:
    return b"".join(c.public_bytes(Encoding.PEM) for c in certificates)


def write(folder: Path, name: str, content: bytes) -> Path:
    path = folder / name
    path.write_bytes(content)
    return path


def openssl(*args: str | Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run ``openssl args...``; with ``check``, fail the test on a non-zero exit."""
    result = subprocess.run(["openssl", *map(str, args)], capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        raise AssertionError(f"openssl {' '.join(map(str, args))} failed:\n{result.stdout}\n{result.stderr}")
    return result


def ocsp_answer(runtime: Runtime, issued: IssuedCertificate, *, nonce: bytes | None = None,
                issuer: x509.Certificate | None = None) -> ocsp.OCSPResponse:
    """Ask the service's OCSP responder about ``issued`` (SHA-1 CertID, an optional nonce)."""
    builder = ocsp.OCSPRequestBuilder().add_certificate(issued.certificate, issuer or issued.chain[0], CERT_ID_HASH)
    if nonce is not None:
        builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
    answer = runtime.ocsp.respond(builder.build().public_bytes(Encoding.DER))
    return ocsp.load_der_ocsp_response(answer.der)
