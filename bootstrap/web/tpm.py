"""TPM 2.0 attestation over the JSON enroll API: two round trips (docs/tpm.md).

``POST /api/v1/enroll/tpm/challenge`` (round 1) takes ``{"dev_id", "ek_certificate",
"ek_chain"?, "ek_public", "ak_public", "csr"}`` and answers ``{"credential_blob",
"encrypted_secret", "challenge", "expires_at"}``. ``POST /api/v1/enroll/tpm`` (round 2)
takes ``{"dev_id", "challenge", "secret", "ak_public", "key_public", "certify_info",
"signature", "csr", "mos"?, "features"?}`` and answers what ``/api/v1/enroll`` does.
Binary members are base64 (standard alphabet, padding optional); the CSR is PEM.
Every refusal is problem+json and an audit event.

The admin API registers TPM manufacturer CAs per enrollment profile:
``GET|POST /api/v1/profiles/{name}/tpm-cas`` (``{name, pem}``) and
``PATCH /api/v1/profiles/{name}/tpm-cas/{ca}`` (``{enabled}``); permissions
``ca:read`` and ``ca:manage``, as for IDevID manufacturer CAs.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from cryptography import x509
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bootstrap.auth.attestation import Evidence
from bootstrap.auth.tpm import TpmProof
from bootstrap.errors import DmBootstrapError, InvalidRequest
from bootstrap.runtime import Runtime
from bootstrap.services.tpm import TpmStart
from bootstrap.store.models.tpm import TpmManufacturerCaRow
from bootstrap.web.api import JSON, field, media_type, parse_json, read_json, request_id
from bootstrap.web.auth import authorize
from bootstrap.web.enroll import content_document

__all__ = ["TPM_CHALLENGE_PATH", "TPM_ENROLL_PATH", "routes", "tpm_proof"]

TPM_CHALLENGE_PATH = "/api/v1/enroll/tpm/challenge"
TPM_ENROLL_PATH = "/api/v1/enroll/tpm"
_ROUND1 = {"dev_id", "ek_certificate", "ek_chain", "ek_public", "ak_public", "csr"}
_ROUND2 = {"dev_id", "challenge", "secret", "ak_public", "key_public", "certify_info", "signature", "csr", "mos",
           "features"}
_MAX_B64 = 8192


def _runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def _bytes(document: dict[str, Any], key: str) -> bytes:
    value = field(document, key, str, required=True)
    if value is None or len(value) > _MAX_B64:
        raise InvalidRequest(f"{key} must be base64 of at most {_MAX_B64} characters", field=key)
    try:
        return base64.b64decode(value + "=" * (-len(value) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequest(f"{key} is not base64", field=key) from None


def tpm_proof(members: dict[str, Any] | Any, csr: bytes) -> TpmProof:
    """Round 2's evidence from its members (the JSON body, or DM 2.0 ``ext-dmboot.TPM``).

    Raises:
        InvalidRequest: a member is missing or not base64.
    """
    return TpmProof(challenge=str(field(members, "challenge", str, required=True)),
                    secret=_bytes(members, "secret"), ak_public=_bytes(members, "ak_public"),
                    key_public=_bytes(members, "key_public"), certify_info=_bytes(members, "certify_info"),
                    signature=_bytes(members, "signature"), csr=csr)


def _document(request: Request, body: bytes, members: set[str]) -> dict[str, Any]:
    document = parse_json(media_type(request), body)
    if not isinstance(document, dict):
        raise InvalidRequest("the body must be a JSON object", field="body")
    unknown = sorted(set(document) - members)
    if unknown:
        raise InvalidRequest(f"unknown members: {', '.join(unknown)}", field=unknown[0])
    return document


def _dev_id(document: object) -> object:
    return document.get("dev_id") if isinstance(document, dict) else None


async def challenge(request: Request) -> Response:
    """Round 1: EK certificate, EK and AK public areas and CSR in; a credential and a challenge out."""
    runtime = _runtime(request)
    body = await request.body()
    document: Any = None
    try:
        document = _document(request, body, _ROUND1)
        chain = field(document, "ek_chain", list) or []
        if len(chain) > 4 or not all(isinstance(c, str) for c in chain):
            raise InvalidRequest("ek_chain must be a list of at most 4 base64 certificates", field="ek_chain")
        start = TpmStart(dev_id=str(field(document, "dev_id", str, required=True)),
                         ek_certificate=_bytes(document, "ek_certificate"),
                         ek_chain=tuple(_bytes({"ek_chain": c}, "ek_chain") for c in chain),
                         ek_public=_bytes(document, "ek_public"), ak_public=_bytes(document, "ak_public"),
                         csr=str(field(document, "csr", str, required=True)).encode())
    except DmBootstrapError as exc:
        await run_in_threadpool(runtime.enrollment.record_refusal, _dev_id(document), "tpm", exc, channel="json",
                                request_id=request_id(request))
        raise
    answer = await run_in_threadpool(runtime.tpm.start, start, request_id=request_id(request))
    return JSONResponse({
        "credential_blob": base64.b64encode(answer.credential_blob).decode(),
        "encrypted_secret": base64.b64encode(answer.encrypted_secret).decode(),
        "challenge": answer.challenge,
        "expires_at": answer.expires_at.isoformat(),
    }, media_type=JSON)


async def enroll(request: Request) -> Response:
    """Round 2: the activated secret and the AK's certification of the CSR's key; the enrollment out."""
    runtime = _runtime(request)
    body = await request.body()
    document: Any = None
    try:
        document = _document(request, body, _ROUND2)
        dev_id = str(field(document, "dev_id", str, required=True))
        csr = str(field(document, "csr", str, required=True)).encode()
        proof = tpm_proof(document, csr)
        mos, features = field(document, "mos", list), field(document, "features", dict)
    except DmBootstrapError as exc:
        await run_in_threadpool(runtime.enrollment.record_refusal, _dev_id(document), "tpm", exc, channel="json",
                                request_id=request_id(request))
        raise
    outcome = await run_in_threadpool(
        runtime.enrollment.enroll, dev_id, Evidence("tpm", tpm=proof, body=body), csr, declared_mos=mos,
        features=features, channel="json", request_id=request_id(request))
    return JSONResponse(content_document(outcome), media_type=JSON)


# -- admin: TPM manufacturer CAs ---------------------------------------------------------


def _ca_json(profile: str, row: TpmManufacturerCaRow) -> dict[str, Any]:
    cert = x509.load_pem_x509_certificate(row.pem.encode())
    return {"profile": profile, "name": row.name, "fingerprint": row.fingerprint,
            "subject": cert.subject.rfc4514_string(), "not_after": cert.not_valid_after_utc.isoformat(),
            "enabled": row.enabled, "pem": row.pem, "created_at": row.created_at.isoformat()}


async def list_cas(request: Request) -> Response:
    """The TPM manufacturer CAs of a profile."""
    await authorize(request, "ca:read")
    rows = await run_in_threadpool(_runtime(request).tpm_trust.list, request.path_params["name"])
    return JSONResponse([_ca_json(p, r) for p, r in rows])


async def add_ca(request: Request) -> Response:
    """Trust a TPM manufacturer CA for a profile's EK certificates: ``{name, pem}``."""
    principal = await authorize(request, "ca:manage")
    body = await read_json(request)
    profile = request.path_params["name"]
    row = await run_in_threadpool(_runtime(request).tpm_trust.add, profile,
                                  str(field(body, "name", str, required=True)),
                                  str(field(body, "pem", str, required=True)), actor=principal.actor)
    return JSONResponse(_ca_json(profile, row), status_code=201)


async def update_ca(request: Request) -> Response:
    """Enable or disable a TPM manufacturer CA: ``{enabled}``."""
    principal = await authorize(request, "ca:manage")
    enabled = field(await read_json(request), "enabled", bool, required=True)
    profile = request.path_params["name"]
    row = await run_in_threadpool(_runtime(request).tpm_trust.set_enabled, profile, request.path_params["ca"],
                                  bool(enabled), actor=principal.actor)
    return JSONResponse(_ca_json(profile, row))


def routes() -> list[Route]:
    """The two rounds of TPM attestation, and the admin API of TPM manufacturer CAs."""
    return [
        Route(TPM_CHALLENGE_PATH, challenge, methods=["POST"]),
        Route(TPM_ENROLL_PATH, enroll, methods=["POST"]),
        Route("/api/v1/profiles/{name}/tpm-cas", list_cas, methods=["GET"]),
        Route("/api/v1/profiles/{name}/tpm-cas", add_ca, methods=["POST"]),
        Route("/api/v1/profiles/{name}/tpm-cas/{ca}", update_ca, methods=["PATCH"]),
    ]
