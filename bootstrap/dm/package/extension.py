"""Ours: the ``ext-dmboot`` member of package 1: the PKCS#10 request, a token, and TPM attestation's round 2."""

from __future__ import annotations

import base64
import binascii

from bootstrap.dm.package._json import PackageError, json_text, kind

__all__ = ["EXTENSION", "MAX_CSR_BYTES", "MAX_TOKEN_LENGTH", "TPM_MEMBERS", "parse_extension"]

#: Ours: the package 1 member holding our extension: ``{"CSR": <base64 DER>, "Token": <token>?}``.
EXTENSION = "ext-dmboot"
MAX_CSR_BYTES = 16 * 1024
MAX_TOKEN_LENGTH = 512

#: ``ext-dmboot.TPM``: the members of round 2 of TPM attestation (docs/tpm.md), besides the CSR.
TPM_MEMBERS = ("challenge", "secret", "ak_public", "key_public", "certify_info", "signature")


def parse_extension(value: object) -> tuple[bytes | None, str | None, dict[str, str] | None]:
    pointer = f"/{EXTENSION}"
    if not isinstance(value, dict):
        raise PackageError(pointer, f"must be an object, not {kind(value)}")
    for key in value:
        if key not in ("CSR", "Token", "TPM"):
            raise PackageError(f"{pointer}/{key}", "unknown member (ours: CSR, Token, TPM)")
    csr = None
    if value.get("CSR") is not None:
        text = json_text(value["CSR"], f"{pointer}/CSR", limit=MAX_CSR_BYTES * 4 // 3 + 4)
        try:
            csr = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise PackageError(f"{pointer}/CSR", "is not standard base64 (RFC 4648 4)") from None
    token = None
    if value.get("Token") is not None:
        token = json_text(value["Token"], f"{pointer}/Token", limit=MAX_TOKEN_LENGTH)
    return csr, token, _tpm(value["TPM"], f"{pointer}/TPM") if value.get("TPM") is not None else None


def _tpm(value: object, pointer: str) -> dict[str, str]:
    if not isinstance(value, dict):
        raise PackageError(pointer, f"must be an object, not {kind(value)}")
    for key in value:
        if key not in TPM_MEMBERS:
            raise PackageError(f"{pointer}/{key}", f"unknown member (ours: {', '.join(TPM_MEMBERS)})")
    missing = [key for key in TPM_MEMBERS if key not in value]
    if missing:
        raise PackageError(f"{pointer}/{missing[0]}", "required member missing")
    return {key: json_text(value[key], f"{pointer}/{key}", limit=8192) for key in TPM_MEMBERS}
