"""EstService on SQLite and PostgreSQL: labels, authentication rules, identity, nothing issued on error."""

from __future__ import annotations

import json

import pytest
from asn1crypto import core as asn1_core
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import AttributeOID, NameOID
from sqlalchemy import func
from sqlmodel import select

from bootstrap.errors import AuthenticationFailed, InvalidRequest, NotFound, PermissionDenied
from bootstrap.runtime import Runtime
from bootstrap.services.config import ProfileSpec
from bootstrap.services.est import EstClient
from bootstrap.services.issuance import Requester
from bootstrap.store.models import AuditEvent, CertificateRow, DeviceRow, EnrollmentTokenRow
from pki.errors import CsrEncodingError, CsrPolicyError, KeyPolicyError
from pki.keys import KeyType, PrivateKey, generate_private_key
from tests.factories import make_csr

DEV = "IMEI:510000000000001"
ADMIN = Requester("test:admin")


@pytest.fixture
def est(runtime: Runtime) -> Runtime:
    """A runtime with profiles factory-a (token, idevid, current-cert) and factory-b (token only)."""
    runtime.config.add_server("dm-1", "DM one", "https://dm.example.net/dm", actor="test")
    runtime.config.add_profile(ProfileSpec("factory-a", ("dm-1",), attestation=("token", "idevid", "current-cert")),
                               actor="test")
    runtime.config.add_profile(ProfileSpec("factory-b", ("dm-1",), key_types=("rsa2048",), attestation=("token",)),
                               actor="test")
    runtime.devices.register(DEV, "factory-a", actor="test")
    return runtime


def _token(runtime: Runtime, dev_id: str = DEV) -> EstClient:
    _view, token = runtime.devices.create_token(dev_id=dev_id, actor="test")
    return EstClient(username=dev_id, password=token)


def _count(runtime: Runtime) -> int:
    with runtime.database.session() as session:
        return int(session.exec(select(func.count()).select_from(CertificateRow)).one())


def _der(cn: str = DEV, key: PrivateKey | None = None) -> bytes:
    return make_csr(cn, key=key, encoding=Encoding.DER)


def test_labels(est: Runtime) -> None:
    assert est.est.label(None).certificate_profile == "device"
    profile = est.est.label("factory-a")
    assert profile.enrollment_profile is not None and profile.certificate_profile == "device"
    assert est.est.label("dm-server").enrollment_profile is None
    for bad in ("nope", "ocsp-signer", "root", "../etc", ""):
        with pytest.raises(NotFound, match="no EST label"):
            est.est.label(bad)


def test_csr_attributes_follow_the_profile_key_types(est: Runtime) -> None:
    ec_attrs = est.est.csr_attributes(est.est.label("factory-a"))
    rsa_attrs = est.est.csr_attributes(est.est.label("factory-b"))
    assert asn1_core.load(ec_attrs).dump() == ec_attrs  # one DER SEQUENCE
    assert asn1_core.ObjectIdentifier("1.2.840.10045.3.1.7").dump() in ec_attrs  # prime256v1
    assert asn1_core.ObjectIdentifier("1.2.840.113549.1.9.7").dump() in ec_attrs  # challengePassword
    assert asn1_core.ObjectIdentifier("1.2.840.113549.1.1.1").dump() in rsa_attrs  # rsaEncryption
    assert asn1_core.ObjectIdentifier("1.2.840.10045.3.1.7").dump() not in rsa_attrs


def test_enroll_with_a_token(est: Runtime) -> None:
    issued = est.est.enroll(est.est.label("factory-a"), _der(), _token(est), request_id="r-1")
    san = issued.certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [f"urn:dmboot:devid:{DEV}"]
    with est.database.session() as session:
        device = session.exec(select(DeviceRow).where(DeviceRow.dev_id == DEV)).one()
        event = session.exec(select(AuditEvent).where(AuditEvent.action == "est.enroll")).one()
    assert device.status == "enrolled" and device.current_serial == issued.serial_hex
    assert event.outcome == "success" and json.loads(event.detail)["method"] == "token"


@pytest.mark.parametrize(("csr", "error"), [
    (b"\x30\x03\x02\x01\x00", CsrEncodingError),
    (None, KeyPolicyError),  # a P-521 key: outside every policy
    (b"CN", CsrPolicyError),  # a request for another DevID
], ids=["garbage", "key-type", "other-devid"])
def test_a_refused_request_issues_nothing_and_keeps_the_token(est: Runtime, csr: bytes | None,
                                                              error: type[Exception]) -> None:
    client = _token(est)
    if csr is None:
        csr = _der(key=ec.generate_private_key(ec.SECP521R1()))
    elif csr == b"CN":
        csr = _der("IMEI:999999999999999")
        client = EstClient(username=DEV, password=client.password)
    before = _count(est)
    with pytest.raises(error):
        est.est.enroll(est.est.label("factory-a"), csr, client)
    assert _count(est) == before
    with est.database.session() as session:
        assert session.exec(select(EnrollmentTokenRow.used_at)).one() is None
        failure = session.exec(select(AuditEvent).where(AuditEvent.action == "est.enroll")).one()
    assert failure.outcome == "failure" and client.password not in failure.detail  # type: ignore[operator]
    est.est.enroll(est.est.label("factory-a"), _der(), client)  # the same token still works


def test_authentication_and_profile_rules(est: Runtime) -> None:
    label = est.est.label("factory-a")
    with pytest.raises(AuthenticationFailed, match="client certificate .* or HTTP Basic"):
        est.est.enroll(label, _der(), EstClient())
    with pytest.raises(AuthenticationFailed, match="not registered"):
        est.est.enroll(label, _der("IMEI:520000000000001"), EstClient(password="dmt_x"))
    with pytest.raises(PermissionDenied, match="factory-a"):
        est.est.enroll(est.est.label("factory-b"), _der(), _token(est))
    with pytest.raises(PermissionDenied, match="dm-server"):
        est.est.enroll(est.est.label("dm-server"), _der(), _token(est))
    est.devices.register("IMEI:520000000000002", "factory-b", actor="test")
    with pytest.raises(KeyPolicyError):  # factory-b takes RSA keys only
        est.est.enroll(est.est.label("factory-b"), _der("IMEI:520000000000002"), _token(est, "IMEI:520000000000002"))
    assert _count(est) == 1  # the service's own TLS certificate


def test_blocked_device_is_refused_until_readmitted(est: Runtime) -> None:
    first = est.est.enroll(est.est.label("factory-a"), _der(), _token(est))
    est.revocation.revoke_device(DEV, "keyCompromise", ADMIN)
    with pytest.raises(PermissionDenied, match="blocked"):
        est.est.enroll(est.est.label("factory-a"), _der(), _token(est))
    with pytest.raises(AuthenticationFailed, match="revoked"):
        est.est.reenroll(est.est.label(None), _der(), EstClient(certificate=first.certificate))
    est.revocation.readmit_device(DEV, ADMIN)
    est.est.enroll(est.est.label("factory-a"), _der(), _token(est))


def _with_challenge(password: str, cn: str = DEV) -> bytes:
    key = generate_private_key(KeyType.P256)
    builder = (x509.CertificateSigningRequestBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
               .add_attribute(AttributeOID.CHALLENGE_PASSWORD, password.encode()))
    return builder.sign(key, hashes.SHA256()).public_bytes(Encoding.DER)


def test_tls_unique_binding(est: Runtime) -> None:
    import base64

    unique = b"\x01" * 12
    token = _token(est)
    bound = EstClient(username=DEV, password=token.password, tls_unique=unique)
    with pytest.raises(InvalidRequest, match="tls-unique"):
        est.est.enroll(est.est.label(None), _with_challenge("c29tZXRoaW5nIGVsc2U="), bound)
    est.est.enroll(est.est.label(None), _with_challenge(base64.b64encode(unique).decode()), bound)


def test_reenroll_keeps_identity_and_profile(est: Runtime) -> None:
    first = est.est.enroll(est.est.label("factory-a"), _der(), _token(est))
    current = EstClient(certificate=first.certificate)
    renewed = est.est.reenroll(est.est.label(None), _der(), current)
    assert renewed.certificate.subject == first.certificate.subject and renewed.profile == "device"
    assert renewed.serial_hex != first.serial_hex
    with pytest.raises(AuthenticationFailed, match=f"superseded by {renewed.serial_hex}"):
        est.est.reenroll(est.est.label(None), _der(), current)  # the superseded certificate no longer attests
    current = EstClient(certificate=renewed.certificate)
    with pytest.raises(CsrPolicyError, match="keeps the subject"):
        est.est.reenroll(est.est.label(None), _der("IMEI:530000000000001"), current)
    with pytest.raises(PermissionDenied, match="dm-server"):
        est.est.reenroll(est.est.label("dm-server"), _der(), current)
    with pytest.raises(AuthenticationFailed, match="current certificate"):
        est.est.reenroll(est.est.label(None), _der(), EstClient(password="dmt_x"))
    with est.database.session() as session:
        assert session.exec(select(DeviceRow.current_serial).where(DeviceRow.dev_id == DEV)).one() == \
            renewed.serial_hex


def test_server_keygen_makes_a_key_of_the_requested_type(est: Runtime) -> None:
    client_key = generate_private_key(KeyType.P384)
    issued, key = est.est.server_keygen(est.est.label(None), _der(key=client_key), _token(est))
    assert issued.certificate.public_key() == key.public_key() != client_key.public_key()
    assert isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp384r1"


def test_ca_certificates(est: Runtime) -> None:
    issuing, root = est.est.ca_certificates()
    assert issuing.issuer == root.subject == root.issuer




@pytest.mark.parametrize("username", ["IMEI:51000\x000000001", "x" * 300, "not a devid"])
def test_a_malformed_basic_username_is_a_400_not_a_database_error(est: Runtime, username: str) -> None:
    """The batch reads its devices by the DevIDs requests name: a malformed one (a NUL PostgreSQL
    refuses in text, an overlong one) is left to the request's authorizer, which refuses it."""
    _view, token = est.devices.create_token(dev_id=DEV, actor="test")
    before = _count(est)
    with pytest.raises(InvalidRequest) as refused:
        est.est.enroll(est.est.label("factory-a"), _der(), EstClient(username=username, password=token))
    assert refused.value.field == "dev_id"
    assert _count(est) == before
