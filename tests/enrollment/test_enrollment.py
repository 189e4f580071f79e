"""EnrollmentService: evidence, device and profile rules, the CSR, the content, the audit trail."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from sqlmodel import select

from bootstrap.auth import hmac_scheme
from bootstrap.errors import AuthenticationFailed, Conflict, InvalidRequest, PermissionDenied
from bootstrap.runtime import Runtime
from bootstrap.services.enrollment import EnrollmentOutcome, Evidence
from bootstrap.store.models import CertificateRow, EnrollmentTokenRow, UsedNonceRow
from pki.authority import fingerprint
from pki.errors import CsrPolicyError, KeyPolicyError, PkiError
from pki.identity import device_uri
from pki.keys import KeyType, generate_private_key
from tests.enrollment.support import (
    ADMIN,
    EXTRA_MO,
    GROUP,
    REPO_URL,
    SERVER_URL,
    assert_refusal_audited,
    certificates_for,
    count,
    device_csr,
    last_event,
    make_maker,
)

DEV = "IMEI:490154203237518"


def _token(runtime: Runtime, dev_id: str | None = DEV, **kwargs: Any) -> str:
    if dev_id is not None and not _registered(runtime, dev_id):
        runtime.devices.register(dev_id, GROUP, actor=ADMIN)
    _view, token = runtime.devices.create_token(profile=GROUP, dev_id=dev_id, actor=ADMIN, **kwargs)
    return token


def _registered(runtime: Runtime, dev_id: str) -> bool:
    return any(v.row.dev_id == dev_id for v in runtime.devices.search(q=dev_id))


def _hmac_evidence(runtime: Runtime, dev_id: str, body: bytes, **kwargs: Any) -> Evidence:
    key = bytes.fromhex(runtime.devices.export_device_keys(GROUP, [dev_id], actor=ADMIN)[dev_id])
    header = hmac_scheme.authorization_header(key, kwargs.pop("group", GROUP), dev_id, body, **kwargs)
    return Evidence("group-key", authorization=header, body=body)


# -- accepted ---------------------------------------------------------------------------


def test_token_enrollment_issues_records_and_builds_the_content(configured: Runtime) -> None:
    token = _token(configured)
    mos: list[dict[str, Any]] = [{"MOID": "urn:oma:mo:oma-dm-dmacc:1.2", "MIID": []},
                                 {"MOID": EXTRA_MO["MOID"], "MIID": ["legacy"]}]
    outcome = configured.enrollment.enroll(DEV, Evidence("token", token=token), device_csr(DEV),
                                           declared_mos=mos, features={"hget": True}, request_id="r-1")
    leaf = outcome.issued.certificate
    assert leaf.subject.rfc4514_string() == f"CN={DEV}"
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [device_uri(DEV)]
    assert (leaf.not_valid_after_utc - leaf.not_valid_before_utc) <= timedelta(days=30, minutes=5)
    content = outcome.content
    assert (content.account.server_id, content.account.server_uri, content.account.name) == ("dm1", SERVER_URL,
                                                                                            "Fleet DM")
    assert content.account.permitted_moids == ("urn:oma:mo:oma-dm-devinfo:1.0",)
    assert content.certificate_chain[0] == leaf.public_bytes(Encoding.DER)
    assert [(a.role, a.name) for a in content.trust_anchors] == [("dm-server", "dm1"), ("data-repository", "repo1"),
                                                                 ("issuing-ca", "issuing-1")]
    with configured.database.session() as session:
        root = configured.authorities.root_row(session)
    root_der = x509.load_pem_x509_certificate(root.pem.encode()).public_bytes(Encoding.DER)
    assert content.trust_anchors[0].der == root_der == content.trust_anchors[1].der
    assert content.data_repository_urls == (REPO_URL,)
    assert [m.moid for m in content.extra_mos] == [EXTRA_MO["MOID"]]
    device = configured.enrollment.device_info(DEV)
    assert (device.status, device.current_serial) == ("enrolled", outcome.issued.serial_hex)
    assert device.declared_mos == mos and device.features == {"hget": True}
    event = last_event(configured)
    assert (event.outcome, event.target, event.request_id) == ("success", DEV, "r-1")
    assert json.loads(event.detail)["method"] == "token"


def test_undeclared_extra_mos_are_left_out(configured: Runtime) -> None:
    outcome = configured.enrollment.enroll(DEV, Evidence("token", token=_token(configured)), device_csr(DEV),
                                           declared_mos=[{"MOID": "urn:oma:mo:oma-dm-dmacc:1.2"}])
    assert outcome.content.extra_mos == ()


def test_chosen_dm_server_overrides_the_profile_default(configured: Runtime) -> None:
    configured.config.add_server("dm2", "Other", "https://dm2.example.net/dm", actor=ADMIN)
    configured.devices.register(DEV, GROUP, dm_server="dm2", actor=ADMIN)
    outcome = configured.enrollment.enroll(DEV, Evidence("token", token=_token(configured)), device_csr(DEV))
    assert outcome.content.account.server_id == "dm2"
    assert [a.name for a in outcome.content.trust_anchors if a.role == "dm-server"] == ["dm2", "dm1"]


def test_complete_marks_the_device_bootstrapped(configured: Runtime) -> None:
    outcome = configured.enrollment.enroll(DEV, Evidence("token", token=_token(configured)), device_csr(DEV))
    with pytest.raises(Conflict):
        configured.enrollment.complete(DEV, "abcdef")
    device = configured.enrollment.complete(DEV, outcome.issued.serial_hex)
    assert device.status == "bootstrapped" and device.bootstrapped_at is not None
    assert configured.enrollment.complete(DEV, outcome.issued.serial_hex).status == "bootstrapped"


def test_group_key_enrolls_an_unknown_device_and_registers_it(configured: Runtime) -> None:
    dev = "SN:GK-0001"
    body = b'{"csr": "..."}'
    outcome = configured.enrollment.enroll(dev, _hmac_evidence(configured, dev, body), device_csr(dev))
    assert outcome.profile.name == GROUP
    assert configured.devices.get(dev).row.status == "enrolled"
    assert count(configured, UsedNonceRow) == 1


def test_idevid_from_a_trusted_manufacturer(configured: Runtime) -> None:
    maker = make_maker()
    configured.config.add_manufacturer_ca("acme", maker.pem, actor=ADMIN)
    idevid, _ = maker.idevid(DEV)
    configured.devices.register(DEV, GROUP, actor=ADMIN)
    assert configured.enrollment.certificate_method(idevid) == "idevid"
    outcome = configured.enrollment.enroll(DEV, Evidence("idevid", client_certificate=idevid), device_csr(DEV))
    assert json.loads(last_event(configured).detail)["manufacturer_ca"] == "acme"
    assert outcome.device.status == "enrolled"


def test_idevid_pinned_by_fingerprint_needs_no_matching_name(configured: Runtime) -> None:
    maker = make_maker()
    configured.config.add_manufacturer_ca("acme", maker.pem, actor=ADMIN)
    idevid, _ = maker.idevid("factory-serial-77")
    configured.devices.register(DEV, GROUP, idevid_fingerprint=fingerprint(idevid), actor=ADMIN)
    configured.enrollment.enroll(DEV, Evidence("idevid", client_certificate=idevid), device_csr(DEV))


def test_current_certificate_renews(configured: Runtime) -> None:
    first = configured.enrollment.enroll(DEV, Evidence("token", token=_token(configured)), device_csr(DEV))
    assert configured.enrollment.certificate_method(first.issued.certificate) == "current-cert"
    second = configured.enrollment.enroll(DEV, Evidence("current-cert", client_certificate=first.issued.certificate),
                                          device_csr(DEV))
    assert second.issued.serial_hex != first.issued.serial_hex
    assert configured.enrollment.device_info(DEV).current_serial == second.issued.serial_hex


# -- refused: nothing issued, an audit event ------------------------------------------------


Case = Callable[[Runtime], tuple[str, Evidence, bytes]]


def _reused_token(rt: Runtime) -> tuple[str, Evidence, bytes]:
    token = _token(rt)
    rt.enrollment.enroll(DEV, Evidence("token", token=token), device_csr(DEV))
    return DEV, Evidence("token", token=token), device_csr(DEV)


def _expired_token(rt: Runtime) -> tuple[str, Evidence, bytes]:
    token = _token(rt)
    with rt.database.session() as session:
        row = session.exec(select(EnrollmentTokenRow)).one()
        row.expires_at -= timedelta(days=8)
        session.add(row)
    return DEV, Evidence("token", token=token), device_csr(DEV)


def _token_for_another_device(rt: Runtime) -> tuple[str, Evidence, bytes]:
    token = _token(rt, "IMEI:other")
    rt.devices.register(DEV, GROUP, actor=ADMIN)
    return DEV, Evidence("token", token=token), device_csr(DEV)


def _unknown_token(rt: Runtime) -> tuple[str, Evidence, bytes]:
    rt.devices.register(DEV, GROUP, actor=ADMIN)
    return DEV, Evidence("token", token="dmt_not-a-real-token"), device_csr(DEV)


def _unknown_dev_id(rt: Runtime) -> tuple[str, Evidence, bytes]:
    token = _token(rt, None)
    return "IMEI:never-registered", Evidence("token", token=token), device_csr("IMEI:never-registered")


def _blocked(rt: Runtime) -> tuple[str, Evidence, bytes]:
    token = _token(rt)
    rt.devices.update(DEV, status="blocked", actor=ADMIN)
    return DEV, Evidence("token", token=token), device_csr(DEV)


def _method_not_allowed(rt: Runtime) -> tuple[str, Evidence, bytes]:
    rt.config.add_profile(_spec("token-only", attestation=("token",)), actor=ADMIN)
    rt.devices.register(DEV, "token-only", actor=ADMIN)
    first = rt.devices.create_token(dev_id=DEV, actor=ADMIN)[1]
    issued = rt.enrollment.enroll(DEV, Evidence("token", token=first), device_csr(DEV)).issued
    return DEV, Evidence("current-cert", client_certificate=issued.certificate), device_csr(DEV)


def _csr_for_another_identity(rt: Runtime) -> tuple[str, Evidence, bytes]:
    return DEV, Evidence("token", token=_token(rt)), device_csr("IMEI:someone-else")


def _csr_with_a_foreign_uri(rt: Runtime) -> tuple[str, Evidence, bytes]:
    return DEV, Evidence("token", token=_token(rt)), device_csr(DEV, uris=[device_uri("IMEI:someone-else")])


def _csr_key_type_not_in_profile(rt: Runtime) -> tuple[str, Evidence, bytes]:
    return DEV, Evidence("token", token=_token(rt)), device_csr(DEV, key=generate_private_key(KeyType.RSA2048))


def _bad_hmac(rt: Runtime) -> tuple[str, Evidence, bytes]:
    good = _hmac_evidence(rt, DEV, b"body")
    assert good.authorization is not None
    return DEV, Evidence("group-key", authorization=good.authorization, body=b"tampered body"), device_csr(DEV)


def _replayed_nonce(rt: Runtime) -> tuple[str, Evidence, bytes]:
    evidence = _hmac_evidence(rt, DEV, b"body", nonce="n" * 22)
    rt.enrollment.enroll(DEV, evidence, device_csr(DEV))
    return DEV, evidence, device_csr(DEV)


def _stale_timestamp(rt: Runtime) -> tuple[str, Evidence, bytes]:
    return DEV, _hmac_evidence(rt, DEV, b"body", ts=int(time.time()) - 301), device_csr(DEV)


def _hmac_for_another_devid(rt: Runtime) -> tuple[str, Evidence, bytes]:
    evidence = _hmac_evidence(rt, "IMEI:other", b"body")
    return DEV, evidence, device_csr(DEV)


def _hmac_with_the_wrong_group(rt: Runtime) -> tuple[str, Evidence, bytes]:
    rt.config.add_profile(_spec("other-group", attestation=("group-key",)), actor=ADMIN)
    rt.devices.create_group_key("other-group", actor=ADMIN)
    rt.devices.register(DEV, GROUP, actor=ADMIN)
    key = bytes.fromhex(rt.devices.export_device_keys("other-group", [DEV], actor=ADMIN)[DEV])
    header = hmac_scheme.authorization_header(key, "other-group", DEV, b"body")
    return DEV, Evidence("group-key", authorization=header, body=b"body"), device_csr(DEV)


def _idevid_untrusted(rt: Runtime) -> tuple[str, Evidence, bytes]:
    rt.config.add_manufacturer_ca("acme", make_maker().pem, actor=ADMIN)
    rt.devices.register(DEV, GROUP, actor=ADMIN)
    stranger, _ = make_maker("Acme Manufacturer CA").idevid(DEV)  # same name, other key
    return DEV, Evidence("idevid", client_certificate=stranger), device_csr(DEV)


def _idevid_disabled_maker(rt: Runtime) -> tuple[str, Evidence, bytes]:
    maker = make_maker()
    rt.config.add_manufacturer_ca("acme", maker.pem, actor=ADMIN)
    rt.config.set_manufacturer_ca_enabled("acme", False, actor=ADMIN)
    rt.devices.register(DEV, GROUP, actor=ADMIN)
    return DEV, Evidence("idevid", client_certificate=maker.idevid(DEV)[0]), device_csr(DEV)


def _idevid_for_another_device(rt: Runtime) -> tuple[str, Evidence, bytes]:
    maker = make_maker()
    rt.config.add_manufacturer_ca("acme", maker.pem, actor=ADMIN)
    rt.devices.register(DEV, GROUP, actor=ADMIN)
    return DEV, Evidence("idevid", client_certificate=maker.idevid("IMEI:other")[0]), device_csr(DEV)


def _idevid_pin_mismatch(rt: Runtime) -> tuple[str, Evidence, bytes]:
    maker = make_maker()
    rt.config.add_manufacturer_ca("acme", maker.pem, actor=ADMIN)
    pinned, _ = maker.idevid(DEV)
    rt.devices.register(DEV, GROUP, idevid_fingerprint=fingerprint(pinned), actor=ADMIN)
    return DEV, Evidence("idevid", client_certificate=maker.idevid(DEV)[0]), device_csr(DEV)


def _idevid_expired(rt: Runtime) -> tuple[str, Evidence, bytes]:
    maker = make_maker()
    rt.config.add_manufacturer_ca("acme", maker.pem, actor=ADMIN)
    rt.devices.register(DEV, GROUP, actor=ADMIN)
    expired, _ = maker.idevid(DEV, days=0)
    return DEV, Evidence("idevid", client_certificate=expired), device_csr(DEV)


def _revoked_current_cert(rt: Runtime) -> tuple[str, Evidence, bytes]:
    issued = rt.enrollment.enroll(DEV, Evidence("token", token=_token(rt)), device_csr(DEV)).issued
    with rt.database.session() as session:
        row = session.exec(select(CertificateRow).where(CertificateRow.serial_hex == issued.serial_hex)).one()
        row.status = "revoked"
        session.add(row)
    return DEV, Evidence("current-cert", client_certificate=issued.certificate), device_csr(DEV)


def _current_cert_of_another_device(rt: Runtime) -> tuple[str, Evidence, bytes]:
    other = rt.enrollment.enroll("IMEI:other", Evidence("token", token=_token(rt, "IMEI:other")),
                                 device_csr("IMEI:other")).issued
    rt.devices.register(DEV, GROUP, actor=ADMIN)
    return DEV, Evidence("current-cert", client_certificate=other.certificate), device_csr(DEV)


def _no_evidence(rt: Runtime) -> tuple[str, Evidence, bytes]:
    rt.devices.register(DEV, GROUP, actor=ADMIN)
    return DEV, Evidence("token"), device_csr(DEV)


def _bad_dev_id(rt: Runtime) -> tuple[str, Evidence, bytes]:
    return "has spaces", Evidence("token", token="x"), device_csr(DEV)


def _spec(name: str, **changes: Any) -> Any:
    from tests.enrollment.support import fleet_spec

    return fleet_spec(name=name, **changes)


REFUSALS = [
    pytest.param(_reused_token, AuthenticationFailed, "used already", id="token-reused"),
    pytest.param(_expired_token, AuthenticationFailed, "expired", id="token-expired"),
    pytest.param(_token_for_another_device, PermissionDenied, "bound to another DevID", id="token-other-device"),
    pytest.param(_unknown_token, AuthenticationFailed, "unknown enrollment token", id="token-unknown"),
    pytest.param(_unknown_dev_id, AuthenticationFailed, "not registered", id="unknown-devid"),
    pytest.param(_blocked, PermissionDenied, "blocked", id="blocked-device"),
    pytest.param(_method_not_allowed, PermissionDenied, "does not allow current-cert", id="method-not-allowed"),
    pytest.param(_csr_for_another_identity, CsrPolicyError, "does not match", id="csr-other-identity"),
    pytest.param(_csr_with_a_foreign_uri, CsrPolicyError, "may not have", id="csr-foreign-uri"),
    pytest.param(_csr_key_type_not_in_profile, KeyPolicyError, "rsa2048 is not allowed", id="csr-key-type"),
    pytest.param(_bad_hmac, AuthenticationFailed, "HMAC does not verify", id="hmac-bad"),
    pytest.param(_replayed_nonce, AuthenticationFailed, "replayed", id="hmac-replayed-nonce"),
    pytest.param(_stale_timestamp, AuthenticationFailed, "timestamp", id="hmac-stale-timestamp"),
    pytest.param(_hmac_for_another_devid, AuthenticationFailed, "does not match the DevID", id="hmac-other-devid"),
    pytest.param(_hmac_with_the_wrong_group, PermissionDenied, "another enrollment profile", id="hmac-wrong-group"),
    pytest.param(_idevid_untrusted, AuthenticationFailed, "trusted manufacturer CA", id="idevid-untrusted-ca"),
    pytest.param(_idevid_disabled_maker, AuthenticationFailed, "trusted manufacturer CA", id="idevid-disabled-ca"),
    pytest.param(_idevid_for_another_device, PermissionDenied, "neither serialNumber nor CN", id="idevid-other-dev"),
    pytest.param(_idevid_pin_mismatch, PermissionDenied, "not the one registered", id="idevid-pin-mismatch"),
    pytest.param(_idevid_expired, AuthenticationFailed, "expired", id="idevid-expired"),
    pytest.param(_revoked_current_cert, AuthenticationFailed, "revoked", id="current-cert-revoked"),
    pytest.param(_current_cert_of_another_device, PermissionDenied, "not a device certificate for",
                 id="current-cert-other-device"),
    pytest.param(_no_evidence, AuthenticationFailed, "needs an enrollment token", id="no-evidence"),
    pytest.param(_bad_dev_id, InvalidRequest, "printable ASCII", id="bad-devid"),
]


@pytest.mark.parametrize(("case", "error", "reason"), REFUSALS)
def test_refused_enrollment_issues_nothing_and_is_audited(configured: Runtime, case: Case,
                                                          error: type[Exception], reason: str) -> None:
    dev_id, evidence, csr = case(configured)
    before = count(configured, CertificateRow)
    with pytest.raises(error) as caught:
        configured.enrollment.enroll(dev_id, evidence, csr, request_id="refused-1")
    assert reason in str(caught.value)
    assert count(configured, CertificateRow) == before
    expected_target = dev_id if " " not in dev_id else repr(dev_id)
    assert_refusal_audited(configured, expected_target, reason)
    assert last_event(configured).request_id == "refused-1"


def test_a_refused_csr_leaves_the_token_unused(configured: Runtime) -> None:
    token = _token(configured)
    with pytest.raises(PkiError):
        configured.enrollment.enroll(DEV, Evidence("token", token=token), device_csr("IMEI:someone-else"))
    assert certificates_for(configured, DEV) == 0
    assert configured.devices.list_tokens()[0].state() == "unused"
    configured.enrollment.enroll(DEV, Evidence("token", token=token), device_csr(DEV))
    assert configured.devices.list_tokens()[0].state() == "used"
    assert certificates_for(configured, DEV) == 1


def test_a_refused_group_key_enrollment_registers_no_device(configured: Runtime) -> None:
    evidence = _hmac_evidence(configured, "SN:new", b"body")
    with pytest.raises(CsrPolicyError):
        configured.enrollment.enroll("SN:new", evidence, device_csr("SN:other"))
    assert configured.devices.search(q="SN:new") == []
    assert count(configured, UsedNonceRow) == 0


@pytest.mark.parametrize(("mos", "features"), [
    pytest.param([{"DDF": "x"}], None, id="mos-without-moid"),
    pytest.param([{"MOID": "urn:x:y", "MIID": "one"}], None, id="miid-not-a-list"),
    pytest.param([{"MOID": "urn:x:y", "Extra": 1}], None, id="unknown-member"),
    pytest.param(None, {"k": {"nested": 1}}, id="nested-feature"),
])
def test_bad_declarations_are_refused(configured: Runtime, mos: Any, features: Any) -> None:
    token = _token(configured)
    with pytest.raises(InvalidRequest):
        configured.enrollment.enroll(DEV, Evidence("token", token=token), device_csr(DEV), declared_mos=mos,
                                     features=features)
    assert certificates_for(configured, DEV) == 0


def test_outcome_type(configured: Runtime) -> None:
    outcome = configured.enrollment.enroll(DEV, Evidence("token", token=_token(configured)), device_csr(DEV))
    assert isinstance(outcome, EnrollmentOutcome)
    assert outcome.content.delivery == "hget"  # the specification's flow is the default
