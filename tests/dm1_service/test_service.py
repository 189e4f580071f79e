"""Dm1Service on SQLite and PostgreSQL: attestation without issuing, credentials, messages, DDF checks."""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlmodel import SQLModel, select

from bootstrap.auth import hmac_scheme
from bootstrap.auth.attestation import Evidence
from bootstrap.dm.content import DmAccount
from bootstrap.dm.ddf import DEFAULT_DDF_DIR, DdfError, DdfRegistry
from bootstrap.dm.dm1_security import Dm1Credentials
from bootstrap.errors import AuthenticationFailed, ConfigurationError, Conflict, InvalidRequest, NotFound
from bootstrap.runtime import Runtime
from bootstrap.services.config import ProfileSpec
from bootstrap.services.dm1 import (
    Dm1AccountError,
    Dm1Options,
    Dm1Service,
    credentials_path,
    dm1_account,
    profile_options,
)
from bootstrap.store.models import AuditEvent, CertificateRow, EnrollmentTokenRow
from tests.dm1_service.support import (
    ADMIN,
    DEV,
    IMSI,
    PROFILE,
    SERVER_ID,
    SERVER_URL,
    auth_md5,
    configure,
    hmac_sha1_hex,
    mac_key,
    syncml_leaves,
    token,
)
from tests.factories import make_csr

CREDS = Dm1Credentials("dev", "c-secret", base64.b64encode(b"c" * 16).decode(), "srv", "s-secret",
                       base64.b64encode(b"s" * 16).decode())


def _events(runtime: Runtime, action: str) -> list[AuditEvent]:
    with runtime.database.session() as session:
        return list(session.exec(select(AuditEvent).where(AuditEvent.action == action)))


def _leaves(body: bytes) -> dict[str, object]:
    return syncml_leaves(body)  # libwbxml and ElementTree, not the project's decoder


# -- pure parts --------------------------------------------------------------------------


@pytest.mark.parametrize(("url", "port"), [
    pytest.param("https://dm.example.net:8443/dm", 8443, id="explicit"),
    pytest.param("https://dm.example.net/dm", 443, id="https-default"),
    pytest.param("http://dm.example.net/dm", 80, id="http-default"),
])
def test_the_account_maps_to_dmacc_1_0(url: str, port: int) -> None:
    account = dm1_account(DmAccount("srv", url, "Fleet"), Dm1Options(auth="HMAC"), CREDS)
    assert (account.account_name, account.server_id, account.name) == ("srv", "srv", "Fleet")
    assert (account.addr, account.addr_type, account.port, account.auth_pref) == (url, "URI", port, "HMAC")
    assert (account.client_auth.level, account.client_auth.type, account.client_auth.name) == ("CLCRED", "HMAC", "dev")
    assert (account.server_auth.level, account.server_auth.secret, account.server_auth.data) == (
        "SRVCRED", "s-secret", b"s" * 16)


def test_profile_options_have_defaults_and_refuse_bad_values() -> None:
    assert Dm1Options.of({}) == Dm1Options("DIGEST", "USERPIN", None)
    assert Dm1Options.of({"dm1_auth": "HMAC", "dm1_sec": "NETWORKID", "dm1_account": "acc"}) == Dm1Options(
        "HMAC", "NETWORKID", "acc")
    for bad in ({"dm1_auth": "BASIC"}, {"dm1_sec": "PIN"}, {"dm1_account": "a/b"}, {"dm1_account": ""}):
        with pytest.raises(InvalidRequest) as caught:
            profile_options(bad)
        assert caught.value.field == f"dmacc.{next(iter(bad))}"


def test_credentials_path_is_one_segment_both_stores_accept() -> None:
    assert credentials_path("IMEI:490154203237518") == "dm1/IMEI_3A490154203237518"
    assert credentials_path("a_b c") == "dm1/a_5Fb_20c"  # _ itself escaped: the mapping is one-to-one
    with pytest.raises(InvalidRequest):
        credentials_path(":x")


def test_a_profile_keeps_its_dm1_settings_and_refuses_bad_ones(runtime: Runtime) -> None:
    configure(runtime, dm1_auth="HMAC", dm1_sec="NETWORKID", dm1_account="fleet")
    assert runtime.config.get_profile(PROFILE).row.dmacc["dm1_auth"] == "HMAC"
    with pytest.raises(InvalidRequest, match="dm1_sec"):
        runtime.config.add_profile(ProfileSpec(name="bad", dm_servers=(SERVER_ID,), dmacc={"dm1_sec": "X"}),
                                   actor=ADMIN)


# -- bootstrap ---------------------------------------------------------------------------


def test_a_token_device_without_csr_is_attested_recorded_and_gets_its_account(configured: Runtime) -> None:
    secret = token(configured)
    package = configured.dm1.bootstrap(DEV, Evidence("token", token=secret), request_id="r-1")
    assert package.serial_hex is None and package.certificate_chain == ()
    with configured.database.session() as session:
        assert session.exec(select(EnrollmentTokenRow)).one().used_by == DEV  # the token is consumed
        assert session.exec(select(CertificateRow).where(CertificateRow.device_id == DEV)).first() is None
    assert configured.devices.get(DEV).row.status == "enrolled"
    event = _events(configured, "device.enroll")[-1]
    detail = json.loads(event.detail)
    assert (event.outcome, detail["channel"], detail["serial"], detail["sec"]) == ("success", "dm1", None, "USERPIN")
    leaves = _leaves(package.wbxml.body)
    acc = f"./DMAcc/{SERVER_ID}"
    assert leaves[f"{acc}/AppID"] == "w7" and leaves[f"{acc}/ServerID"] == SERVER_ID
    assert leaves[f"{acc}/Name"] == "Legacy DM"
    assert (leaves[f"{acc}/AppAddr/1/Addr"], leaves[f"{acc}/AppAddr/1/Port/1/PortNbr"]) == (SERVER_URL, 8443)
    assert leaves[f"{acc}/AAuthPref"] == leaves[f"{acc}/AppAuth/1/AAuthType"] == "DIGEST"
    assert (leaves[f"{acc}/AppAuth/1/AAuthLevel"], leaves[f"{acc}/AppAuth/1/AAuthName"]) == ("CLCRED", DEV)
    assert (leaves[f"{acc}/AppAuth/2/AAuthLevel"], leaves[f"{acc}/AppAuth/2/AAuthName"]) == ("SRVCRED", SERVER_ID)
    assert _leaves(package.xml.body) == leaves


def test_with_a_csr_the_device_also_gets_a_certificate(configured: Runtime) -> None:
    package = configured.dm1.bootstrap(DEV, Evidence("token", token=token(configured)), csr=make_csr(DEV))
    assert package.serial_hex is not None and len(package.certificate_chain) == 2
    assert configured.devices.get(DEV).row.current_serial == package.serial_hex


def test_a_group_key_device_is_registered_by_its_first_bootstrap(configured: Runtime) -> None:
    dev = "IMEI:356938035643809"
    key = bytes.fromhex(configured.devices.export_device_keys(PROFILE, [dev], actor=ADMIN)[dev])
    body = json.dumps({"dev_id": dev}).encode()
    evidence = Evidence("group-key", authorization=hmac_scheme.authorization_header(key, PROFILE, dev, body),
                        body=body)
    package = configured.dm1.bootstrap(dev, evidence)
    assert package.account.client_auth.name == dev
    assert configured.devices.get(dev).row.status == "enrolled"


def test_a_second_bootstrap_returns_the_same_credentials_until_rotated(configured: Runtime) -> None:
    first = configured.dm1.bootstrap(DEV, Evidence("token", token=token(configured)))
    second = configured.dm1.bootstrap(DEV, Evidence("token", token=token(configured)))
    assert second.account == first.account and second.wbxml == first.wbxml
    assert second.account.client_auth.secret == first.account.client_auth.secret
    ref = configured.dm1.rotate(DEV, actor=ADMIN)
    third = configured.dm1.bootstrap(DEV, Evidence("token", token=token(configured)))
    assert third.credentials_ref == ref.to_uri() != first.credentials_ref
    assert third.account.client_auth.secret != first.account.client_auth.secret
    assert third.pin == first.pin  # rotation keeps the user's PIN
    assert [e.outcome for e in _events(configured, "dm1.credentials.create")] == ["success"]
    assert len(_events(configured, "dm1.credentials.rotate")) == 1


def test_credentials_are_in_the_secret_store_created_with_cas_0(configured: Runtime) -> None:
    package = configured.dm1.bootstrap(DEV, Evidence("token", token=token(configured)))
    data, ref = configured.store.get(credentials_path(DEV))
    assert ref.version == 1 and package.credentials_ref == ref.to_uri()
    assert data["client_secret"] == package.account.client_auth.secret
    assert data["server_secret"] == package.account.server_auth.secret
    assert base64.b64decode(data["client_nonce"]) == package.account.client_auth.data
    assert data["pin"] == package.pin and len(data["pin"]) == 8 and data["pin"].isdigit()


@pytest.mark.parametrize("sec", ["NETWORKID", "USERPIN", "USERPIN_NETWORKID"])
def test_the_mac_verifies_for_each_sec_mode(configured: Runtime, sec: str) -> None:
    package = configured.dm1.bootstrap(DEV, Evidence("token", token=token(configured)), imsi=IMSI, sec=sec)
    pin = configured.store.get(credentials_path(DEV))[0]["pin"]
    expected = hmac_sha1_hex(mac_key(sec, pin), package.wbxml.body)
    assert package.mac == expected
    assert package.wbxml.content_type == f"application/vnd.syncml.dm+wbxml; SEC={sec}; MAC={expected}"
    assert package.xml.content_type.endswith(f"SEC={sec}; MAC={hmac_sha1_hex(mac_key(sec, pin), package.xml.body)}")


def test_the_digest_a_dm_server_expects_matches_the_message(configured: Runtime) -> None:
    package = configured.dm1.bootstrap(DEV, Evidence("token", token=token(configured)))
    leaves = _leaves(package.wbxml.body)
    acc = f"./DMAcc/{SERVER_ID}/AppAuth"
    view = configured.dm1.credentials(DEV, actor="token:dm").to_json()
    for side, n in (("client", 1), ("server", 2)):
        name, secret, nonce = (leaves[f"{acc}/{n}/{leaf}"] for leaf in ("AAuthName", "AAuthSecret", "AAuthData"))
        assert isinstance(name, str) and isinstance(secret, str) and isinstance(nonce, bytes)
        assert (view[side]["name"], view[side]["secret"], base64.b64decode(view[side]["nonce"])) == (
            name, secret, nonce)
        assert view[side]["auth_md5"] == auth_md5(name, secret, nonce)
    assert (view["auth_type"], view["auth_scheme"]) == ("DIGEST", "syncml:auth-md5")
    assert json.loads(_events(configured, "dm1.credentials.read")[-1].detail)["ref"] == view["ref"]


def test_credentials_of_a_device_without_any_are_not_found_and_audited(configured: Runtime) -> None:
    configured.devices.register(DEV, PROFILE, actor=ADMIN)
    with pytest.raises(NotFound):
        configured.dm1.credentials(DEV, actor="token:dm")
    assert _events(configured, "dm1.credentials.read")[-1].outcome == "failure"


# -- refusals leave nothing behind -------------------------------------------------------


def test_networkid_without_an_imsi_is_refused_and_the_token_stays_unused(configured: Runtime) -> None:
    secret = token(configured)
    with pytest.raises(InvalidRequest) as caught:
        configured.dm1.bootstrap(DEV, Evidence("token", token=secret), sec="NETWORKID")
    assert caught.value.field == "imsi"
    with configured.database.session() as session:
        assert session.exec(select(EnrollmentTokenRow)).one().used_at is None
    assert configured.devices.get(DEV).row.status == "registered"
    event = _events(configured, "device.enroll")[-1]
    assert (event.outcome, json.loads(event.detail)["channel"]) == ("failure", "dm1")
    configured.dm1.bootstrap(DEV, Evidence("token", token=secret), sec="NETWORKID", imsi=IMSI)  # still good


def test_a_used_token_is_refused(configured: Runtime) -> None:
    secret = token(configured)
    configured.dm1.bootstrap(DEV, Evidence("token", token=secret))
    with pytest.raises(AuthenticationFailed, match="used already"):
        configured.dm1.bootstrap(DEV, Evidence("token", token=secret))


def test_the_factory_pin_seeds_the_device_pin_and_may_not_change_it(configured: Runtime) -> None:
    configured.devices.register(DEV, PROFILE, actor=ADMIN)
    package = configured.dm1.package_for(DEV, pin="24681357", actor=ADMIN)
    assert package.pin == "24681357" and package.mac == hmac_sha1_hex(b"24681357", package.wbxml.body)
    assert configured.devices.get(DEV).row.status == "registered"  # writing files attests nothing
    with pytest.raises(Conflict, match="PIN"):
        configured.dm1.package_for(DEV, pin="11112222", actor=ADMIN)
    with pytest.raises(NotFound):
        configured.dm1.package_for("IMEI:000000000000000", actor=ADMIN)


# -- the DDF -----------------------------------------------------------------------------


def _service_with(runtime: Runtime, ddfs: DdfRegistry) -> Dm1Service:
    return Dm1Service(runtime.database, runtime.store, runtime.issuance, ddfs, runtime.enrollment)


def _without_aauthpref(directory: Path) -> Path:
    """The shipped DMAcc 1.0 DDF with the AAuthPref node cut out: a DDF that forbids a node we send."""
    source = (DEFAULT_DDF_DIR / "dmacc-1.0.ddf").read_text()
    start = source.index("<NodeName>AAuthPref</NodeName>")
    start = source.rindex("<Node>", 0, start)
    end = source.index("</Node>", start) + len("</Node>")
    (directory / "dmacc-1.0.ddf").write_text(source[:start] + source[end:])
    return directory


def test_the_account_validates_against_the_shipped_ddf(configured: Runtime) -> None:
    assert configured.ddfs.find("urn:oma:mo:oma-dm-dmacc:1.0") is not None
    configured.dm1.bootstrap(DEV, Evidence("token", token=token(configured)))  # validated before encoding


def test_a_node_the_ddf_forbids_is_a_clear_error_and_leaves_nothing(configured: Runtime, tmp_path: Path) -> None:
    service = _service_with(configured, DdfRegistry.load(_without_aauthpref(tmp_path)))
    secret = token(configured)
    with pytest.raises(Dm1AccountError) as caught:
        service.bootstrap(DEV, Evidence("token", token=secret))
    message = caught.value.message
    assert f"DMAcc/{SERVER_ID}/AAuthPref" in message and "not defined by the DDF" in message
    assert str(tmp_path / "dmacc-1.0.ddf") in message and caught.value.field == f"DMAcc/{SERVER_ID}/AAuthPref"
    assert isinstance(caught.value, ConfigurationError)
    with configured.database.session() as session:
        assert session.exec(select(EnrollmentTokenRow)).one().used_at is None
    assert configured.devices.get(DEV).row.status == "registered"


def test_a_broken_ddf_is_a_clear_error(tmp_path: Path) -> None:
    broken = tmp_path / "dmacc-1.0.ddf"
    shutil.copy(DEFAULT_DDF_DIR / "dmacc-1.0.ddf", broken)
    broken.write_text(broken.read_text().replace("</MgmtTree>", ""))
    with pytest.raises(DdfError) as caught:
        DdfRegistry.load(tmp_path)
    assert str(broken) in caught.value.message and caught.value.line is not None


def test_without_a_dmacc_1_0_ddf_dm1_bootstraps_are_refused(configured: Runtime, tmp_path: Path) -> None:
    service = _service_with(configured, DdfRegistry.load(tmp_path, default_dir=None))
    with pytest.raises(ConfigurationError, match="no DDF is registered for urn:oma:mo:oma-dm-dmacc:1.0"):
        service.bootstrap(DEV, Evidence("token", token=token(configured)))


# -- nothing secret in the database --------------------------------------------------------


def test_no_dm1_secret_is_in_the_database(configured: Runtime) -> None:
    configured.dm1.bootstrap(DEV, Evidence("token", token=token(configured)), imsi=IMSI, sec="USERPIN_NETWORKID")
    configured.dm1.credentials(DEV, actor="token:dm")
    configured.dm1.rotate(DEV, actor=ADMIN)
    configured.dm1.bootstrap(DEV, Evidence("token", token=token(configured)), csr=make_csr(DEV))
    secrets_seen: set[str] = set()
    raw: set[bytes] = set()
    for version in (1, 2):
        data, _ = configured.store.get(credentials_path(DEV), version)
        secrets_seen |= {data[k] for k in ("client_secret", "server_secret", "client_nonce", "server_nonce", "pin")}
        raw |= {base64.b64decode(data[k]) for k in ("client_nonce", "server_nonce")}
    dump: list[str] = []
    blobs: list[bytes] = []
    with configured.database.engine.connect() as connection:
        for table in SQLModel.metadata.sorted_tables:
            for row in connection.execute(text(f'SELECT * FROM "{table.name}"')):  # noqa: S608 - our table names
                for value in row:
                    if isinstance(value, bytes | memoryview):
                        blobs.append(bytes(value))
                    else:
                        dump.append(str(value))
    text_dump = "\n".join(dump)
    assert "dm1/IMEI_3A490154203237518#2" in text_dump  # references are there...
    assert not [s for s in secrets_seen if s in text_dump]  # ...secrets are not
    assert not [n for n in raw for b in blobs if n in b]


# -- every secret store --------------------------------------------------------------------


def test_credentials_live_in_every_secret_store(any_backend_runtime: Runtime) -> None:
    runtime = any_backend_runtime
    configure(runtime)
    first = runtime.dm1.bootstrap(DEV, Evidence("token", token=token(runtime)))
    second = runtime.dm1.bootstrap(DEV, Evidence("token", token=token(runtime)))
    assert second.account.client_auth.secret == first.account.client_auth.secret
    data, ref = runtime.store.get(credentials_path(DEV))
    assert (data["client_secret"], ref.to_uri()) == (first.account.client_auth.secret, first.credentials_ref)
    assert runtime.dm1.rotate(DEV, actor=ADMIN).version == ref.version + 1
