"""TPM attestation over the JSON enroll API, in process, with a real swtpm and tpm2-tools on the device side."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from sqlmodel import select
from starlette.testclient import TestClient

from bootstrap.app import create_app
from bootstrap.dm.package import INITIATION_MEDIA_TYPE, REQUEST_MEDIA_TYPE, TPM_MEMBERS, Initiation
from bootstrap.runtime import Runtime
from bootstrap.settings import Settings
from bootstrap.store.models import AuditEvent, CertificateRow
from bootstrap.store.models.tpm import TpmDeviceRow
from pki.authority import fingerprint
from pki.tpm import TPM_RESIDENT_KEY_POLICY, parse_public
from tests.enrollment.support import ADMIN, GROUP, certificates_for, configure, count
from tests.support.tpm import MOVABLE_AK, SoftTpm, TpmMaker
from tests.tpm.device import CHALLENGE, ENROLL, Post, TpmDevice, chain_der

DEV = "IMEI:350000000000017"


@pytest.fixture
def service(runtime: Runtime, tpm_maker: TpmMaker, tpm_device: SoftTpm) -> Runtime:
    """The fleet profile allows tpm; the maker's root is registered for it; DEV is registered."""
    configure(runtime, attestation=("token", "tpm"))
    runtime.tpm_trust.add(GROUP, "swtpm-maker", tpm_maker.root.public_bytes(Encoding.PEM).decode(), actor=ADMIN)
    runtime.devices.register(DEV, GROUP, actor=ADMIN)
    return runtime


def _poster(client: TestClient) -> Post:
    def post(path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        response = client.post(path, json=body)
        return response.status_code, response.json()
    return post


@pytest.fixture
def post(service: Runtime) -> Iterator[Post]:
    with TestClient(create_app(runtime=service)) as client:
        yield _poster(client)


@pytest.fixture
def device(tpm_device: SoftTpm) -> TpmDevice:
    return TpmDevice(tpm_device, DEV)


def _refused(runtime: Runtime, status: int, body: dict[str, Any], expected: int, reason: str) -> None:
    """A problem+json answer (401s say no more than that: the reason is in the audit trail)."""
    assert status == expected, body
    assert body["type"].startswith("urn:dmboot:problem:") and body["status"] == expected, body
    _audited(runtime, reason)


def _nothing_issued(runtime: Runtime) -> None:
    assert certificates_for(runtime, DEV) == 0
    assert count(runtime, TpmDeviceRow) == 0


def _audited(runtime: Runtime, reason: str) -> None:
    with runtime.database.session() as session:
        event = session.exec(select(AuditEvent).where(AuditEvent.action == "device.enroll")
                             .order_by(AuditEvent.seq.desc())).first()  # type: ignore[attr-defined]
    assert event is not None and (event.outcome, event.target) == ("failure", DEV)
    detail = json.loads(event.detail)
    assert detail["method"] == "tpm" and reason in detail["reason"], detail


def _enroll(device: TpmDevice, post: Post, maker: TpmMaker, finish: Post | None = None) -> tuple[int, dict[str, Any]]:
    status, answer = post(CHALLENGE, device.round1(chain=chain_der([maker.intermediate])))
    assert status == 200, answer
    return (finish or post)(ENROLL, device.round2(answer, device.activate(answer)))


def test_a_tpm_device_gets_a_certificate_for_its_tpm_key(service: Runtime, post: Post, device: TpmDevice,
                                                        tpm_maker: TpmMaker) -> None:
    status, body = _enroll(device, post, tpm_maker)
    assert status == 200, body
    cert = x509.load_pem_x509_certificates(body["certificate_chain_pem"].encode())[0]
    tpm_key = parse_public(device.key.public).public_key  # tpm2_create's TPM2B_PUBLIC
    assert cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo) == \
        tpm_key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    policies = cert.extensions.get_extension_for_class(x509.CertificatePolicies).value
    assert [p.policy_identifier.dotted_string for p in policies] == [TPM_RESIDENT_KEY_POLICY]
    ek_cert = x509.load_der_x509_certificate(device.tpm.ek_certificate())
    with service.database.session() as session:
        binding = session.exec(select(TpmDeviceRow)).one()
        event = session.exec(select(AuditEvent).where(AuditEvent.action == "device.enroll")).one()
    assert binding.ek_fingerprint == fingerprint(ek_cert) and binding.ak_name == device.ak.name.hex()
    assert json.loads(event.detail)["ek_fingerprint"] == fingerprint(ek_cert)


def test_an_ek_certificate_from_an_unregistered_maker_is_refused(service: Runtime, post: Post,
                                                                 tmp_path: Path) -> None:
    stranger = TpmMaker(tmp_path / "stranger")
    tpm = SoftTpm(tmp_path / "stranger-tpm", stranger)
    try:
        device = TpmDevice(tpm, DEV)
        status, body = post(CHALLENGE, device.round1(chain=chain_der([stranger.intermediate])))
    finally:
        tpm.close()
    _refused(service, status, body, 401, "not issued by a TPM manufacturer CA registered")
    _nothing_issued(service)


def test_an_ak_without_fixed_tpm_is_refused(service: Runtime, post: Post, device: TpmDevice,
                                            tpm_maker: TpmMaker) -> None:
    movable, _handle = device.tpm.create_key(MOVABLE_AK, "ecc256:ecdsa-sha256:null")
    status, body = post(CHALLENGE, device.round1(chain=chain_der([tpm_maker.intermediate]),
                                                 ak_public=movable.public))
    _refused(service, status, body, 401, "the AK is not fixedTPM")
    _nothing_issued(service)


def test_a_credential_for_another_tpm_cannot_be_activated(service: Runtime, post: Post, device: TpmDevice,
                                                           tpm_maker: TpmMaker, tmp_path: Path) -> None:
    """A second TPM presents the first one's EK certificate with its own AK: it cannot answer."""
    other = SoftTpm(tmp_path / "other-tpm", tpm_maker)
    try:
        thief = TpmDevice(other, DEV)
        round1 = thief.round1(ek_certificate=device.tpm.ek_certificate(), chain=chain_der([tpm_maker.intermediate]))
        round1["ek_public"] = device.round1()["ek_public"]
        status, answer = post(CHALLENGE, round1)
        assert status == 200, answer
        with pytest.raises(Exception, match="activatecredential"):
            thief.activate(answer)  # its own EK cannot open a credential made for another
        status, body = post(ENROLL, thief.round2(answer, secrets.token_bytes(32)))
    finally:
        other.close()
    _refused(service, status, body, 401, "activated secret is wrong")
    _nothing_issued(service)


@pytest.mark.parametrize("lie", ["other-key-public", "csr-key-public"])
def test_a_certify_over_another_key_than_the_csrs_is_refused(service: Runtime, post: Post, device: TpmDevice,
                                                              tpm_maker: TpmMaker, lie: str) -> None:
    other, _handle = device.tpm.create_key()
    status, answer = post(CHALLENGE, device.round1(chain=chain_der([tpm_maker.intermediate])))
    assert status == 200, answer
    secret = device.activate(answer)
    if lie == "other-key-public":  # honest about what was certified, but it is not the CSR's key
        status, body = post(ENROLL, device.round2(answer, secret, certified=other, key_public=other.public))
        _refused(service, status, body, 401, "key_public is not the CSR's key")
    else:  # claims the CSR's key, but the TPM certified another one
        status, body = post(ENROLL, device.round2(answer, secret, certified=other))
        _refused(service, status, body, 401, "certified another key")
    _nothing_issued(service)


def test_a_replayed_challenge_is_refused(service: Runtime, post: Post, device: TpmDevice,
                                         tpm_maker: TpmMaker) -> None:
    status, answer = post(CHALLENGE, device.round1(chain=chain_der([tpm_maker.intermediate])))
    round2 = device.round2(answer, device.activate(answer))
    assert post(ENROLL, round2)[0] == 200
    status, body = post(ENROLL, round2)
    _refused(service, status, body, 401, "replayed challenge")
    assert certificates_for(service, DEV) == 1


def test_an_expired_challenge_is_refused(service: Runtime, post: Post, device: TpmDevice,
                                        tpm_maker: TpmMaker) -> None:
    service.tpm.sealer.ttl = timedelta(0)  # expires the moment it is made
    status, answer = post(CHALLENGE, device.round1(chain=chain_der([tpm_maker.intermediate])))
    assert status == 200, answer
    status, body = post(ENROLL, device.round2(answer, device.activate(answer)))
    _refused(service, status, body, 401, "the challenge expired")
    _nothing_issued(service)


def test_a_challenge_from_one_replica_is_finished_on_another(service: Runtime, settings: Settings, post: Post,
                                                             device: TpmDevice, tpm_maker: TpmMaker) -> None:
    other = Runtime(settings)  # another process's runtime: same database and secret store, nothing else shared
    try:
        with TestClient(create_app(runtime=other)) as client:
            status, body = _enroll(device, post, tpm_maker, finish=_poster(client))
    finally:
        other.close()
    assert status == 200, body
    assert certificates_for(service, DEV) == 1


def test_round_two_in_dm2_package_one(service: Runtime, post: Post, device: TpmDevice, tpm_maker: TpmMaker) -> None:
    """Ours: ext-dmboot.TPM carries round 2 in package 1; the device leaves with package 2 and a TPM certificate."""
    status, answer = post(CHALLENGE, device.round1(chain=chain_der([tpm_maker.intermediate])))
    assert status == 200, answer
    members = device.round2(answer, device.activate(answer))
    tpm = {k: members[k] for k in TPM_MEMBERS}
    csr = x509.load_pem_x509_csr(device.csr.encode()).public_bytes(Encoding.DER)
    package1 = Initiation(dev_id=DEV, mos=(), csr=csr, tpm=tpm).encode()
    with TestClient(create_app(runtime=service)) as client:
        response = client.post("/dm/bootstrap", content=package1,
                               headers={"content-type": INITIATION_MEDIA_TYPE, "OMADM-DevID": DEV})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith(REQUEST_MEDIA_TYPE)
    with service.database.session() as session:
        row = session.exec(select(CertificateRow).where(CertificateRow.device_id == DEV)).one()
    cert = x509.load_pem_x509_certificate(row.pem.encode())
    policies = cert.extensions.get_extension_for_class(x509.CertificatePolicies).value
    assert [p.policy_identifier.dotted_string for p in policies] == [TPM_RESIDENT_KEY_POLICY]
    assert count(service, TpmDeviceRow) == 1
