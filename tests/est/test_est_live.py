"""EST (RFC 7030) end to end: the real server, curl for every endpoint, openssl on what comes back."""

from __future__ import annotations

import base64
import email
import email.policy
import http.client
import json
import ssl
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import AttributeOID, NameOID
from sqlalchemy import func
from sqlmodel import select

from bootstrap.store.models import CertificateRow
from pki.keys import KeyType, generate_private_key
from tests.est.conftest import DEVICES
from tests.est.live import CurlResult, LiveServer, b64
from tests.revocation.helpers import openssl

EST = "/.well-known/est"
PKCS10 = ("-H", "Content-Type: application/pkcs10")
TokenFor = Callable[[str], str]


def openssl_csr(folder: Path, common_name: str, name: str = "req") -> tuple[Path, bytes]:
    """A P-256 key and a DER PKCS#10 request made by ``openssl req`` (a real EST client's tool)."""
    key, der = folder / f"{name}.key", folder / f"{name}.der"
    openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", key,
            "-subj", f"/CN={common_name}", "-outform", "DER", "-out", der)
    return key, der.read_bytes()


def certificate_count(server: LiveServer) -> int:
    with server.runtime().database.session() as session:
        return int(session.exec(select(func.count()).select_from(CertificateRow)).one())


def print_certs(folder: Path, result: CurlResult, name: str = "p7") -> tuple[str, list[x509.Certificate]]:
    """``openssl pkcs7 -print_certs`` on a base64 certs-only body; its text and the certificates."""
    der = folder / f"{name}.p7b"
    encoded = folder / f"{name}.b64"
    encoded.write_bytes(result.body)
    # GNU base64 -d, as a shell user decodes it (it refuses CR line ends, so we send LF).
    decoded = subprocess.run(["base64", "-d", str(encoded)], capture_output=True, check=False)
    assert decoded.returncode == 0, decoded.stderr
    der.write_bytes(decoded.stdout)
    printed = openssl("pkcs7", "-inform", "DER", "-in", der, "-print_certs")
    return printed.stdout, x509.load_pem_x509_certificates(printed.stdout.encode())


def assert_problem(result: CurlResult, status: int, *words: str) -> dict[str, object]:
    assert result.status == status, (result.status, result.text)
    assert result.headers["content-type"] == "application/problem+json", result.headers
    body: dict[str, object] = json.loads(result.body)
    assert body["status"] == status
    for word in words:
        assert word in str(body["detail"]), body
    return body


def _basic(dev_id: str, token: str) -> tuple[str, str]:
    return ("-u", f"{dev_id}:{token}")


@dataclass(frozen=True)
class Enrolled:
    """The ``token`` device after its first EST enrollment."""

    result: CurlResult
    text: str
    cert: x509.Certificate
    cert_path: Path
    key: Path
    token: str
    before: int
    after: int


@pytest.fixture(scope="package")
def enrolled(server: LiveServer, tmp_path_factory: pytest.TempPathFactory) -> Enrolled:
    """The ``token`` device, enrolled once over EST with a token (curl, openssl req)."""
    folder = tmp_path_factory.mktemp("enrolled")
    dev_id = DEVICES["token"]
    _view, token = server.runtime().devices.create_token(dev_id=dev_id, actor="test")
    key, csr = openssl_csr(folder, dev_id)
    before = certificate_count(server)
    result = server.curl(f"{EST}/simpleenroll", *_basic(dev_id, token), *PKCS10, data=b64(csr))
    text, certs = print_certs(folder, result)
    cert_path = folder / "cert.pem"
    cert_path.write_bytes(certs[0].public_bytes(Encoding.PEM))
    return Enrolled(result, text, certs[0], cert_path, key, token, before, certificate_count(server))


# -- cacerts, csrattrs ---------------------------------------------------------------------------


@pytest.mark.parametrize("label", ["", "/factory-a", "/device", "/dm-server"], ids=["default", "enrollment-profile",
                                                                                    "cert-profile", "server"])
def test_cacerts(server: LiveServer, files: Path, label: str) -> None:
    result = server.curl(f"{EST}{label}/cacerts")
    assert result.status == 200
    assert result.headers["content-type"].startswith("application/pkcs7-mime")
    assert result.headers["content-transfer-encoding"] == "base64"
    text, certs = print_certs(files, result)
    assert "Issuing CA 1" in text and "Root CA" in text
    # certificates is a SET OF (RFC 5652 5.1): DER sorts it, so compare without order.
    assert sorted(c.public_bytes(Encoding.PEM) for c in certs) == sorted(
        [server.issuing_pem.read_bytes(), server.root_pem.read_bytes()])


def test_csrattrs(server: LiveServer, files: Path) -> None:
    result = server.curl(f"{EST}/factory-a/csrattrs")
    assert result.status == 200 and result.headers["content-type"] == "application/csrattrs"
    assert result.headers["content-transfer-encoding"] == "base64"
    der = files / "attrs.der"
    der.write_bytes(base64.b64decode(result.body))
    parsed = openssl("asn1parse", "-inform", "DER", "-in", der).stdout
    for word in ("challengePassword", "id-ecPublicKey", "prime256v1", "ecdsa-with-SHA256"):
        assert word in parsed, parsed


# -- simpleenroll --------------------------------------------------------------------------------


def test_simpleenroll_with_an_enrollment_token(server: LiveServer, enrolled: Enrolled, files: Path) -> None:
    result = enrolled.result
    assert result.status == 200, result.text
    assert result.headers["content-type"] == "application/pkcs7-mime; smime-type=certs-only"
    assert result.headers["content-transfer-encoding"] == "base64"
    dev_id = DEVICES["token"]
    assert f"subject=CN = {dev_id}" in str(enrolled.text)
    assert enrolled.after == enrolled.before + 1
    shown = openssl("x509", "-in", enrolled.cert_path, "-noout", "-text").stdout
    assert f"URI:urn:dmboot:devid:{dev_id}" in shown and "TLS Web Client Authentication" in shown
    verified = openssl("verify", "-CAfile", server.root_pem, "-untrusted", server.issuing_pem, enrolled.cert_path)
    assert ": OK" in verified.stdout
    # The token was consumed: the second use is refused with a Basic challenge, nothing issued.
    before = certificate_count(server)
    _key, csr = openssl_csr(files, dev_id)
    again = server.curl(f"{EST}/simpleenroll", *_basic(dev_id, str(enrolled.token)), *PKCS10, data=b64(csr))
    assert_problem(again, 401, "EST refused")  # why: in the audit trail
    assert again.headers["www-authenticate"].startswith("Basic realm=")
    assert certificate_count(server) == before


def test_simpleenroll_with_a_manufacturer_certificate(server: LiveServer, files: Path) -> None:
    dev_id = DEVICES["idevid"]
    _key, csr = openssl_csr(files, dev_id)
    result = server.curl(f"{EST}/factory-a/simpleenroll", "--cert", server.files / "idevid.pem",
                         "--key", server.files / "idevid.key", *PKCS10, data=b64(csr))
    assert result.status == 200, result.text
    text, [cert] = print_certs(files, result)
    assert f"subject=CN = {dev_id}" in text and cert.issuer.rfc4514_string().endswith("Issuing CA 1")


# -- simplereenroll ------------------------------------------------------------------------------


def test_simplereenroll_keeps_the_identity(server: LiveServer, enrolled: Enrolled, files: Path) -> None:
    current = enrolled.cert
    dev_id = DEVICES["token"]
    key, csr = openssl_csr(files, dev_id)
    result = server.curl(f"{EST}/simplereenroll", "--cert", enrolled.cert_path, "--key", enrolled.key,
                         *PKCS10, data=b64(csr))
    assert result.status == 200, result.text
    _text, [renewed] = print_certs(files, result)
    assert renewed.subject == current.subject and renewed.serial_number != current.serial_number
    san = x509.SubjectAlternativeName
    assert renewed.extensions.get_extension_for_class(san).value == current.extensions.get_extension_for_class(
        san).value
    new_key = serialization.load_pem_private_key(key.read_bytes(), None)
    assert renewed.public_key() == new_key.public_key()
    # Re-enrollment without the current certificate, or for another subject, is refused.
    before = certificate_count(server)
    no_cert = server.curl(f"{EST}/simplereenroll", *_basic(dev_id, "dmt_whatever"), *PKCS10, data=b64(csr))
    assert_problem(no_cert, 401, "EST refused")
    renewed_path = files / "renewed.pem"
    renewed_path.write_bytes(renewed.public_bytes(serialization.Encoding.PEM))
    _key2, other = openssl_csr(files, "IMEI:999999999999999", "other")
    renamed = server.curl(f"{EST}/simplereenroll", "--cert", renewed_path, "--key", key,
                          *PKCS10, data=b64(other))
    assert_problem(renamed, 400, "keeps the subject")
    # The certificate the re-enrollment superseded no longer attests.
    superseded = server.curl(f"{EST}/simplereenroll", "--cert", enrolled.cert_path, "--key", enrolled.key,
                             *PKCS10, data=b64(csr))
    assert_problem(superseded, 401, "EST refused")  # the reason (superseded) is in the audit trail
    assert certificate_count(server) == before


# -- serverkeygen --------------------------------------------------------------------------------


def test_serverkeygen(server: LiveServer, token_for: TokenFor, files: Path) -> None:
    dev_id = DEVICES["keygen"]
    _key, csr = openssl_csr(files, dev_id)
    before = certificate_count(server)
    # Empty Basic username: the DevID comes from the request's CN.
    result = server.curl(f"{EST}/serverkeygen", "-u", f":{token_for(dev_id)}", *PKCS10, data=b64(csr))
    assert result.status == 200, result.text
    assert result.headers["content-type"].startswith("multipart/mixed; boundary=")
    message = email.message_from_bytes(b"Content-Type: " + result.headers["content-type"].encode() + b"\r\n\r\n"
                                       + result.body, policy=email.policy.HTTP)
    parts = {part.get_content_type(): part for part in message.iter_parts()}
    assert set(parts) == {"application/pkcs8", "application/pkcs7-mime"}
    assert parts["application/pkcs7-mime"].get_param("smime-type") == "certs-only"
    key_der = files / "key.der"
    key_der.write_bytes(base64.b64decode(str(parts["application/pkcs8"].get_payload())))
    assert "Private-Key: (256 bit" in openssl("pkey", "-inform", "DER", "-in", key_der, "-noout", "-text").stdout
    p7 = files / "certs.p7b"
    p7.write_bytes(base64.b64decode(str(parts["application/pkcs7-mime"].get_payload())))
    [cert] = x509.load_pem_x509_certificates(openssl("pkcs7", "-inform", "DER", "-in", p7, "-print_certs").stdout
                                             .encode())
    private = serialization.load_der_private_key(key_der.read_bytes(), None)
    assert cert.public_key() == private.public_key()
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == dev_id
    assert certificate_count(server) == before + 1


# -- tls-unique (RFC 7030 3.5) --------------------------------------------------------------------


def _post_on_tls12(server: LiveServer, token: str, challenge: Callable[[bytes], bytes]) -> tuple[int, bytes]:
    """Open a TLS 1.2 connection, build a CSR whose challengePassword derives from its tls-unique, POST it."""
    context = ssl.create_default_context(cafile=str(server.root_pem))
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    host, port = server.url.removeprefix("https://").split(":")
    connection = http.client.HTTPSConnection(host, int(port), context=context)
    connection.connect()
    assert isinstance(connection.sock, ssl.SSLSocket)
    unique = connection.sock.get_channel_binding("tls-unique")
    assert unique
    key = generate_private_key(KeyType.P256)
    dev_id = DEVICES["binding"]
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, dev_id)]))
           .add_attribute(AttributeOID.CHALLENGE_PASSWORD, challenge(unique))
           .sign(key, hashes.SHA256()))
    auth = base64.b64encode(f"{dev_id}:{token}".encode()).decode()
    connection.request("POST", f"{EST}/simpleenroll", body=b64(csr.public_bytes(Encoding.DER)),
                       headers={"Content-Type": "application/pkcs10", "Authorization": f"Basic {auth}"})
    response = connection.getresponse()
    body = response.read()
    connection.close()
    return response.status, body


def test_tls_unique_binding(server: LiveServer, token_for: TokenFor) -> None:
    token = token_for(DEVICES["binding"])
    before = certificate_count(server)
    status, body = _post_on_tls12(server, token, lambda unique: base64.b64encode(b"\x00" * len(unique)))
    assert status == 400 and b"tls-unique" in body
    assert certificate_count(server) == before  # refused, and the token is still unused:
    status, body = _post_on_tls12(server, token, base64.b64encode)
    assert status == 200, body
    assert certificate_count(server) == before + 1


# -- refusals: RFC 7030 codes, readable bodies, nothing issued ------------------------------------


def test_bad_requests_issue_nothing_and_keep_the_token(server: LiveServer, token_for: TokenFor, files: Path) -> None:
    dev_id = DEVICES["bad"]
    token = token_for(dev_id)
    _key, csr = openssl_csr(files, dev_id)
    auth = _basic(dev_id, token)
    before = certificate_count(server)
    cases: list[tuple[str, tuple[str, ...], bytes, int, str]] = [
        ("garbage base64", (*auth, *PKCS10), b"%%% this is not base64 %%%", 400, "not base64"),
        ("base64 of garbage", (*auth, *PKCS10), base64.b64encode(b"\x30\x03garbage"), 400, "PKCS#10"),
        ("wrong content type", (*auth, "-H", "Content-Type: application/json"), b64(csr), 415, "application/pkcs10"),
        ("no content type", (*auth,), b64(csr), 415, "application/pkcs10"),
        ("no credentials", PKCS10, b64(csr), 401, "enrollment token"),
        ("wrong token", (*_basic(dev_id, "dmt_wrong"), *PKCS10), b64(csr), 401, "EST refused"),
    ]
    for name, args, body, status, word in cases:
        result = server.curl(f"{EST}/simpleenroll", *args, data=body)
        assert_problem(result, status, word)
        if status == 401:
            assert result.headers.get("www-authenticate", "").startswith("Basic"), name
    unknown = server.curl(f"{EST}/no-such-label/simpleenroll", *auth, *PKCS10, data=b64(csr))
    assert_problem(unknown, 404, "no EST label")
    assert server.curl(f"{EST}/no-such-label/cacerts").status == 404
    other = server.curl(f"{EST}/factory-b/simpleenroll", *auth, *PKCS10, data=b64(csr))
    assert_problem(other, 403, "factory-a")
    assert certificate_count(server) == before
    # Every refusal rolled back: the token still works once.
    final = server.curl(f"{EST}/factory-a/simpleenroll", *auth, *PKCS10, data=b64(csr))
    assert final.status == 200, final.text
    assert certificate_count(server) == before + 1


def test_a_client_certificate_from_another_ca(server: LiveServer, files: Path) -> None:
    _key, csr = openssl_csr(files, DEVICES["bad"])
    before = certificate_count(server)
    # Over our own TLS, OpenSSL refuses the handshake: the CA is not in the trust store.
    direct = server.curl(f"{EST}/simpleenroll", "--cert", server.files / "foreign.pem",
                         "--key", server.files / "foreign.key", *PKCS10, data=b64(csr))
    assert direct.returncode != 0 and direct.status == 0, (direct.returncode, direct.stderr)
    # Forwarded by a trusted TLS-terminating proxy, the application refuses it: 401, readable.
    forwarded = quote((server.files / "foreign.pem").read_text(), safe="")
    proxied = server.curl(f"{EST}/simpleenroll", "-H", f"X-SSL-Client-Cert: {forwarded}", *PKCS10, data=b64(csr))
    assert_problem(proxied, 401, "EST refused")
    # A manufacturer CA an admin disabled while the server runs: TLS still passes, the app refuses.
    _key, retired_csr = openssl_csr(files, DEVICES["retired-maker"], "retired")
    retired = server.curl(f"{EST}/simpleenroll", "--cert", server.files / "retired.pem",
                          "--key", server.files / "retired.key", *PKCS10, data=b64(retired_csr))
    assert_problem(retired, 401, "EST refused")
    assert certificate_count(server) == before


# -- revocation blocks enrollment until re-admission ----------------------------------------------


def test_revoked_device_cannot_enroll_until_readmitted(server: LiveServer, token_for: TokenFor, files: Path) -> None:
    dev_id = DEVICES["revoked"]
    key, csr = openssl_csr(files, dev_id)
    first = server.curl(f"{EST}/simpleenroll", *_basic(dev_id, token_for(dev_id)), *PKCS10, data=b64(csr))
    assert first.status == 200, first.text
    _text, [cert] = print_certs(files, first)
    cert_path = files / "cert.pem"
    cert_path.write_bytes(cert.public_bytes(Encoding.PEM))
    admin = json.loads(server.dmboot("token", "create", "lifecycle-admin", "--role", "provisioning-admin",
                                     "--json").stdout)["token"]
    bearer = ("-H", f"Authorization: Bearer {admin}", "-H", "Content-Type: application/json")
    revoked = server.curl(f"/api/v1/devices/{dev_id}/revoke", *bearer, data=b'{"reason": "keyCompromise"}')
    assert revoked.status == 200, revoked.text
    outcome = json.loads(revoked.body)
    assert outcome["revoked"] == [format(cert.serial_number, "x")] and outcome["blocked_devices"] == [dev_id]
    before = certificate_count(server)
    renew = server.curl(f"{EST}/simplereenroll", "--cert", cert_path, "--key", key, *PKCS10, data=b64(csr))
    assert_problem(renew, 401, "EST refused")
    blocked = server.curl(f"{EST}/simpleenroll", *_basic(dev_id, token_for(dev_id)), *PKCS10, data=b64(csr))
    assert_problem(blocked, 403, "blocked")
    assert certificate_count(server) == before
    readmitted = server.curl(f"/api/v1/devices/{dev_id}/readmit", *bearer, "-X", "POST")
    assert readmitted.status == 200 and json.loads(readmitted.body)["status"] == "registered"
    again = server.curl(f"{EST}/simpleenroll", *_basic(dev_id, token_for(dev_id)), *PKCS10, data=b64(csr))
    assert again.status == 200, again.text
    # The admin API needs the right permission.
    auditor = json.loads(server.dmboot("token", "create", "lifecycle-auditor", "--role", "auditor",
                                       "--json").stdout)["token"]
    denied = server.curl(f"/api/v1/devices/{dev_id}/revoke", "-H", f"Authorization: Bearer {auditor}",
                         data=b"{}")
    assert_problem(denied, 403, "certs:revoke")
    assert_problem(server.curl(f"/api/v1/devices/{dev_id}/revoke", data=b"{}"), 401)


def test_expiring_over_the_api_and_the_cli(server: LiveServer, enrolled: Enrolled) -> None:
    admin = json.loads(server.dmboot("token", "create", "expiry-reader", "--role", "auditor", "--json").stdout)["token"]
    cert = enrolled.cert
    serial = format(cert.serial_number, "x")
    soon = server.curl("/api/v1/certificates?expiring_within_days=400", "-H", f"Authorization: Bearer {admin}")
    assert soon.status == 200, soon.text
    listed = [c["serial"] for c in json.loads(soon.body)["certificates"]]
    assert serial in listed
    cli = json.loads(server.dmboot("cert", "expiring", "--days", "400", "--json").stdout)
    assert serial in [c["serial"] for c in cli]
    none = server.curl("/api/v1/certificates?expiring_within_days=1", "-H", f"Authorization: Bearer {admin}")
    assert serial not in [c["serial"] for c in json.loads(none.body)["certificates"]]
    assert "no certificate expires within 1 days" in server.dmboot("cert", "expiring", "--days", "1").stdout
    assert_problem(server.curl("/api/v1/certificates?expiring_within_days=x", "-H",
                               f"Authorization: Bearer {admin}"), 400, "integer")
