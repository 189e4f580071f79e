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
from typing import Annotated, Any

from cryptography import x509
from pydantic import Field, StrictBool, StrictStr
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bootstrap.auth.attestation import Evidence
from bootstrap.auth.tpm import TpmProof
from bootstrap.body import Body, validate
from bootstrap.errors import InvalidRequest
from bootstrap.services.tpm import TpmStart
from bootstrap.store.models.tpm import TpmManufacturerCaRow
from bootstrap.web.auth import authorize
from bootstrap.web.bodies import CertPem, CsrPem, DeclaredMos, DevId, Features
from bootstrap.web.common import JSON, read_model, refusals_recorded, request_id, runtime_of
from bootstrap.web.enroll import content_document
from bootstrap.web.openapi import request_body

__all__ = ["TPM_CHALLENGE_PATH", "TPM_ENROLL_PATH", "TpmCaBody", "TpmCaUpdateBody", "TpmChallengeBody",
           "TpmEnrollBody", "routes", "tpm_proof"]

TPM_CHALLENGE_PATH = "/api/v1/enroll/tpm/challenge"
TPM_ENROLL_PATH = "/api/v1/enroll/tpm"
_MAX_B64 = 8192

#: Binary members: base64 (standard alphabet, padding optional), at most 8192 characters.
B64 = Annotated[StrictStr, Field(min_length=2, max_length=_MAX_B64,
                                 pattern=r"^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}(?:==)?|[A-Za-z0-9+/]{3}=?)?$",
                                 json_schema_extra={"contentEncoding": "base64"})]


class TpmChallengeBody(Body):
    """Round 1: the device's EK certificate (and chain), EK and AK public areas, and its CSR."""

    dev_id: DevId
    ek_certificate: B64
    ek_chain: Annotated[list[B64], Field(max_length=4)] = []
    ek_public: B64
    ak_public: B64
    csr: CsrPem


class TpmProofBody(Body):
    """Round 2's evidence: the activated secret and the AK's certification of the CSR's key."""

    challenge: Annotated[StrictStr, Field(min_length=1, max_length=_MAX_B64, pattern=r"^[!-~]+$")]
    secret: B64
    ak_public: B64
    key_public: B64
    certify_info: B64
    signature: B64


class TpmEnrollBody(TpmProofBody):
    """Round 2: the proof, the DevID and CSR, and what the device declares (as in ``/api/v1/enroll``)."""

    dev_id: DevId
    csr: CsrPem
    mos: DeclaredMos | None = None
    features: Features | None = None


class TpmCaBody(Body):
    """A TPM manufacturer CA to trust for a profile's EK certificates."""

    name: Annotated[StrictStr, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")]
    pem: CertPem


class TpmCaUpdateBody(Body):
    """Enable or disable a TPM manufacturer CA."""

    enabled: StrictBool


def _b64(value: str, key: str) -> bytes:
    try:
        return base64.b64decode(value + "=" * (-len(value) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequest(f"{key} is not base64", field=key) from None


def tpm_proof(members: Any, csr: bytes) -> TpmProof:
    """Round 2's evidence from its members (the JSON body, or DM 2.0 ``ext-dmboot.TPM``).

    Raises:
        InvalidRequest: a member is missing or not base64.
    """
    body = members if isinstance(members, TpmProofBody) else validate(TpmProofBody, members)
    return TpmProof(challenge=body.challenge, secret=_b64(body.secret, "secret"),
                    ak_public=_b64(body.ak_public, "ak_public"), key_public=_b64(body.key_public, "key_public"),
                    certify_info=_b64(body.certify_info, "certify_info"),
                    signature=_b64(body.signature, "signature"), csr=csr)


@request_body(TpmChallengeBody)
async def challenge(request: Request) -> Response:
    """Round 1: EK certificate, EK and AK public areas and CSR in; a credential and a challenge out."""
    runtime = runtime_of(request)
    body = await request.body()
    async with refusals_recorded(request, channel="json", method="tpm") as device:
        round1 = device.parse(TpmChallengeBody, body)
        start = TpmStart(dev_id=round1.dev_id, ek_certificate=_b64(round1.ek_certificate, "ek_certificate"),
                         ek_chain=tuple(_b64(c, "ek_chain") for c in round1.ek_chain),
                         ek_public=_b64(round1.ek_public, "ek_public"), ak_public=_b64(round1.ak_public, "ak_public"),
                         csr=round1.csr.encode())
    answer = await run_in_threadpool(runtime.tpm.start, start, request_id=request_id(request))
    return JSONResponse({
        "credential_blob": base64.b64encode(answer.credential_blob).decode(),
        "encrypted_secret": base64.b64encode(answer.encrypted_secret).decode(),
        "challenge": answer.challenge,
        "expires_at": answer.expires_at.isoformat(),
    }, media_type=JSON)


@request_body(TpmEnrollBody)
async def enroll(request: Request) -> Response:
    """Round 2: the activated secret and the AK's certification of the CSR's key; the enrollment out."""
    runtime = runtime_of(request)
    body = await request.body()
    async with refusals_recorded(request, channel="json", method="tpm") as device:
        round2 = device.parse(TpmEnrollBody, body)
        csr = round2.csr.encode()
        proof = tpm_proof(round2, csr)
    outcome = await run_in_threadpool(
        runtime.enrollment.enroll, round2.dev_id, Evidence("tpm", tpm=proof, body=body), csr,
        declared_mos=None if round2.mos is None else [m.model_dump(exclude_none=True) for m in round2.mos],
        features=round2.features, channel="json", request_id=request_id(request))
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
    rows = await run_in_threadpool(runtime_of(request).tpm_trust.list, request.path_params["name"])
    return JSONResponse([_ca_json(p, r) for p, r in rows])


@request_body(TpmCaBody)
async def add_ca(request: Request) -> Response:
    """Trust a TPM manufacturer CA for a profile's EK certificates: ``{name, pem}``."""
    principal = await authorize(request, "ca:manage")
    body = await read_model(request, TpmCaBody)
    profile = request.path_params["name"]
    row = await run_in_threadpool(runtime_of(request).tpm_trust.add, profile, body.name, body.pem,
                                  actor=principal.actor)
    return JSONResponse(_ca_json(profile, row), status_code=201)


@request_body(TpmCaUpdateBody)
async def update_ca(request: Request) -> Response:
    """Enable or disable a TPM manufacturer CA: ``{enabled}``."""
    principal = await authorize(request, "ca:manage")
    body = await read_model(request, TpmCaUpdateBody)
    profile = request.path_params["name"]
    row = await run_in_threadpool(runtime_of(request).tpm_trust.set_enabled, profile, request.path_params["ca"],
                                  body.enabled, actor=principal.actor)
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
