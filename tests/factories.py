"""Test data builders: keys and CSRs, generated at test time."""

from __future__ import annotations

from collections.abc import Sequence

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from pki.keys import KeyType, PrivateKey, generate_private_key


def make_csr(
    common_name: str | None = "IMEI:490154203237518",
    *,
    key: PrivateKey | None = None,
    dns: Sequence[str] = (),
    uris: Sequence[str] = (),
    ca: bool | None = None,
    encoding: Encoding = Encoding.PEM,
) -> bytes:
    """A PKCS#10 request (P-256 unless ``key`` is given)."""
    key = key or generate_private_key(KeyType.P256)
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)] if common_name else []
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(attributes))
    names: list[x509.GeneralName] = [x509.DNSName(d) for d in dns] + [x509.UniformResourceIdentifier(u) for u in uris]
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    if ca is not None:
        builder = builder.add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return builder.sign(key, algorithm).public_bytes(encoding)
