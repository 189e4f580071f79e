"""The device side of TPM attestation, with a real swtpm: what a device's first-boot agent does."""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.serialization import Encoding

from pki.tpm import Credential
from tests.support.tpm import SoftTpm, TpmKey

#: (path, JSON body) -> (HTTP status, JSON answer)
Post = Callable[[str, dict[str, Any]], tuple[int, dict[str, Any]]]
CHALLENGE = "/api/v1/enroll/tpm/challenge"
ENROLL = "/api/v1/enroll/tpm"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@dataclass
class TpmDevice:
    """One device: its TPM, EK, AK and a TLS key made in the TPM, and the requests it sends."""

    tpm: SoftTpm
    dev_id: str
    ek: TpmKey = field(init=False)
    ak: TpmKey = field(init=False)
    key: TpmKey = field(init=False)
    handle: str = field(init=False)
    csr: str = field(init=False)

    def __post_init__(self) -> None:
        self.ek = self.tpm.create_ek("rsa")
        self.ak = self.tpm.create_ak(self.ek)
        self.key, self.handle = self.tpm.create_key()
        self.csr = self.tpm.csr(self.handle, self.dev_id)

    def round1(self, *, ek_certificate: bytes | None = None, chain: list[bytes] | None = None,
               ak_public: bytes | None = None) -> dict[str, Any]:
        return {"dev_id": self.dev_id, "ek_certificate": b64(ek_certificate or self.tpm.ek_certificate()),
                "ek_chain": [b64(c) for c in (chain or [])], "ek_public": b64(self.ek.public),
                "ak_public": b64(ak_public or self.ak.public), "csr": self.csr}

    def activate(self, answer: dict[str, Any]) -> bytes:
        credential = Credential(base64.b64decode(answer["credential_blob"]),
                                base64.b64decode(answer["encrypted_secret"]))
        return self.tpm.activate(self.ak, self.ek, credential.tpm2_tools_file())

    def round2(self, answer: dict[str, Any], secret: bytes, *, certified: TpmKey | None = None,
               key_public: bytes | None = None) -> dict[str, Any]:
        attest, signature = self.tpm.certify(certified or self.key, self.ak)
        return {"dev_id": self.dev_id, "challenge": answer["challenge"], "secret": b64(secret),
                "ak_public": b64(self.ak.public), "key_public": b64(key_public or self.key.public),
                "certify_info": b64(attest), "signature": b64(signature), "csr": self.csr}


def chain_der(tpm_chain: list[Any]) -> list[bytes]:
    return [c.public_bytes(Encoding.DER) for c in tpm_chain]
