"""Admin objects through the services: create, read, delete, and every validation refusal."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from sqlmodel import select

from bootstrap.auth.hmac_scheme import derive_device_key
from bootstrap.errors import Conflict, DmBootstrapError, InvalidRequest, NotFound
from bootstrap.runtime import Runtime
from bootstrap.services.config import ProfileSpec
from bootstrap.store.models import EnrollmentProfileRow, EnrollmentTokenRow
from pki.errors import CsrPolicyError
from tests.enrollment.support import ADMIN, EXTRA_MO, GROUP, fleet_spec, last_event, make_maker
from tests.factories import make_csr


def test_servers_and_repositories_round_trip(configured: Runtime) -> None:
    assert [s.server_id for s in configured.config.list_servers()] == ["dm1"]
    assert configured.config.get_server("dm1").trust_anchor_pem is None
    anchor = make_maker("Their DM CA").pem
    configured.config.add_server("dm2", "", "https://dm2.example.net/", anchor, actor=ADMIN)
    assert configured.config.get_server("dm2").name == "dm2"
    assert configured.config.get_server("dm2").trust_anchor_pem == anchor
    assert [r.name for r in configured.config.list_repositories()] == ["repo1"]
    configured.config.delete_server("dm2", actor=ADMIN)
    with pytest.raises(NotFound):
        configured.config.get_server("dm2")
    assert last_event(configured, "dm-server.delete").target == "dm2"


@pytest.mark.parametrize(("kind", "ident"), [("dm-server", "dm1"), ("data-repository", "repo1")])
def test_in_use_servers_and_repositories_cannot_be_deleted(configured: Runtime, kind: str, ident: str) -> None:
    delete = configured.config.delete_server if kind == "dm-server" else configured.config.delete_repository
    with pytest.raises(Conflict, match="fleet"):
        delete(ident, actor=ADMIN)


@pytest.mark.parametrize(("kind", "ident", "host"), [
    pytest.param("dm-server", "dm1", "dm.example.net", id="dm-server"),
    pytest.param("data-repository", "repo1", "repo.example.net", id="data-repository"),
])
def test_server_certificates_are_for_the_host_of_the_url(configured: Runtime, kind: str, ident: str,
                                                         host: str) -> None:
    issued = configured.config.issue_server_certificate(kind, ident, make_csr(None), actor=ADMIN)
    san = issued.certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == [host]
    assert issued.profile == kind
    with pytest.raises(CsrPolicyError):
        configured.config.issue_server_certificate(kind, ident, make_csr(None, dns=["evil.example"]), actor=ADMIN)


BAD_SERVERS = [
    pytest.param({"server_id": "has space"}, "server_id", id="server-id-space"),
    pytest.param({"url": "http://dm.example.net"}, "url", id="plain-http"),
    pytest.param({"url": "https://"}, "url", id="no-host"),
    pytest.param({"url": "https://user@dm.example.net"}, "url", id="userinfo"),
    pytest.param({"url": "https://[0]"}, "url", id="bracketed-non-address"),  # was a ValueError: 500
    pytest.param({"anchor": "not a pem"}, "trust_anchor_pem", id="bad-anchor"),
    pytest.param({"server_id": "dm1"}, "server_id", id="duplicate"),
]


@pytest.mark.parametrize(("change", "field"), BAD_SERVERS)
def test_bad_dm_servers_are_refused(configured: Runtime, change: dict[str, str], field: str) -> None:
    values: dict[str, Any] = {"server_id": "dm9", "url": "https://dm9.example.net", "anchor": None, **change}
    with pytest.raises(DmBootstrapError) as caught:
        configured.config.add_server(values["server_id"], "", values["url"], values["anchor"], actor=ADMIN)
    assert caught.value.field == field


def test_profile_round_trip(configured: Runtime) -> None:
    view = configured.config.get_profile(GROUP)
    document = view.to_json()
    assert document["dm_servers"] == ["dm1"] and document["data_repositories"] == ["repo1"]
    assert document["group_key"] is True and document["extra_mos"][0]["MOID"] == EXTRA_MO["MOID"]
    spec = ProfileSpec.from_json({**{k: document[k] for k in ("dm_servers", "attestation", "key_types")},
                                  "name": GROUP, "delivery": "hget", "data_repositories": ["repo1"]})
    assert configured.config.update_profile(spec, actor=ADMIN).row.delivery == "hget"
    assert configured.config.get_profile(GROUP).row.group_key_ref == view.row.group_key_ref
    configured.config.add_profile(fleet_spec(name="spare"), actor=ADMIN)
    configured.config.delete_profile("spare", actor=ADMIN)
    assert [v.row.name for v in configured.config.list_profiles()] == [GROUP]


BAD_PROFILES = [
    pytest.param({"name": GROUP}, Conflict, "name", id="duplicate"),
    pytest.param({"name": "bad name"}, InvalidRequest, "name", id="bad-name"),
    pytest.param({"dm_servers": ()}, InvalidRequest, "dm_servers", id="no-server"),
    pytest.param({"dm_servers": ("nope",)}, NotFound, "dm_servers", id="unknown-server"),
    pytest.param({"data_repositories": ("nope",)}, NotFound, "data_repositories", id="unknown-repository"),
    pytest.param({"delivery": "carrier-pigeon"}, InvalidRequest, "delivery", id="bad-delivery"),
    pytest.param({"attestation": ("password",)}, InvalidRequest, "attestation", id="unknown-method"),
    pytest.param({"attestation": ()}, InvalidRequest, "attestation", id="no-method"),
    pytest.param({"key_types": ("dsa1024",)}, InvalidRequest, "key_types", id="unknown-key-type"),
    pytest.param({"key_types": ()}, InvalidRequest, "key_types", id="no-key-type"),
    pytest.param({"certificate_profile": "dm-server"}, InvalidRequest, "certificate_profile", id="not-device"),
    pytest.param({"validity_days": 0}, InvalidRequest, "validity_days", id="zero-validity"),
    pytest.param({"dmacc": {"SrvID": "x"}}, InvalidRequest, "dmacc.SrvID", id="dmacc-srvid"),
    pytest.param({"dmacc": {"Perm": ["not-a-urn"]}}, InvalidRequest, "dmacc.Perm", id="dmacc-perm"),
    pytest.param({"dmacc": {"Noti": {"Type": "x", "Secret": "s"}}}, InvalidRequest, "dmacc.Noti.Secret",
                 id="noti-secret"),
    pytest.param({"extra_mos": ({**EXTRA_MO, "MOData": {"AppID": "w7"}},)}, InvalidRequest, "extra_mos",
                 id="extra-mo-fails-its-ddf"),
    pytest.param({"extra_mos": ({**EXTRA_MO, "MOID": "urn:oma:mo:unknown:1.0",
                                 "ClientURI": "urn:oma:mo:unknown:1.0/x"},)}, InvalidRequest, "extra_mos",
                 id="extra-mo-without-ddf"),
    pytest.param({"extra_mos": ({"DDF": "https://x.test/d", "ClientURI": "urn:oma:mo:oma-dm-dmacc:1.2/x",
                                 "MOData": {}},)}, InvalidRequest, "extra_mos", id="extra-mo-dmacc-is-ours"),
]


@pytest.mark.parametrize(("change", "error", "field"), BAD_PROFILES)
def test_bad_profiles_are_refused(configured: Runtime, change: dict[str, Any], error: type[Exception],
                                  field: str) -> None:
    with pytest.raises(error) as caught:
        configured.config.add_profile(fleet_spec(**{"name": "new", **change}), actor=ADMIN)
    assert getattr(caught.value, "field", None) == field


@pytest.mark.parametrize(("document", "field"), [
    pytest.param([], "body", id="not-an-object"),
    pytest.param({"dm_servers": ["dm1"]}, "name", id="no-name"),
    pytest.param({"name": "x", "dm_servers": "dm1"}, "dm_servers", id="servers-not-a-list"),
    pytest.param({"name": "x", "dm_servers": ["dm1"], "validity_days": "30"}, "validity_days", id="days-text"),
    pytest.param({"name": "x", "dm_servers": ["dm1"], "enabled": 1}, "enabled", id="enabled-int"),
    pytest.param({"name": "x", "dm_servers": ["dm1"], "colour": "red"}, "colour", id="unknown-member"),
])
def test_profile_json_is_read_strictly(document: Any, field: str | None) -> None:
    with pytest.raises(InvalidRequest) as caught:
        ProfileSpec.from_json(document)
    assert caught.value.field == field


def test_devices_register_search_block(configured: Runtime) -> None:
    for dev_id in ("IMEI:1", "IMEI:2", "SN:3"):
        configured.devices.register(dev_id, GROUP, actor=ADMIN)
    assert [v.row.dev_id for v in configured.devices.search(q="IMEI")] == ["IMEI:1", "IMEI:2"]
    assert configured.devices.update("IMEI:2", status="blocked", actor=ADMIN).row.status == "blocked"
    assert [v.row.dev_id for v in configured.devices.search(status="blocked")] == ["IMEI:2"]
    view = configured.devices.get("SN:3")
    assert view.to_json()["profile"] == GROUP and view.to_json()["declared_mos"] == []
    with pytest.raises(Conflict):
        configured.devices.register("IMEI:1", GROUP, actor=ADMIN)


@pytest.mark.parametrize(("kwargs", "error"), [
    pytest.param({"dev_id": "with space"}, InvalidRequest, id="bad-devid"),
    pytest.param({"profile": "nope"}, NotFound, id="unknown-profile"),
    pytest.param({"idevid_fingerprint": "md5:abc"}, InvalidRequest, id="bad-fingerprint"),
    pytest.param({"dm_server": "nope"}, NotFound, id="unknown-dm-server"),
])
def test_bad_devices_are_refused(configured: Runtime, kwargs: dict[str, str], error: type[Exception]) -> None:
    values = {"dev_id": "IMEI:9", "profile": GROUP, **kwargs}
    with pytest.raises(error):
        configured.devices.register(values.pop("dev_id"), values.pop("profile"), actor=ADMIN, **values)


def test_enrollment_tokens_are_shown_once_and_stored_as_hashes(configured: Runtime) -> None:
    configured.devices.register("IMEI:1", GROUP, actor=ADMIN)
    view, token = configured.devices.create_token(dev_id="IMEI:1", actor=ADMIN)
    assert token.startswith("dmt_") and len(token) >= 4 + 32  # 192 bits, url-safe base64
    with configured.database.session() as session:
        row = session.exec(select(EnrollmentTokenRow)).one()
    assert row.token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert token not in json.dumps(view.to_json()) and view.profile == GROUP
    listed = configured.devices.list_tokens()[0].to_json()
    assert listed["state"] == "unused" and "token" not in listed
    assert token not in last_event(configured, "enrollment-token.create").detail


@pytest.mark.parametrize(("kwargs", "error"), [
    pytest.param({}, InvalidRequest, id="neither-profile-nor-device"),
    pytest.param({"dev_id": "IMEI:unknown"}, NotFound, id="unknown-device"),
    pytest.param({"profile": "nope"}, NotFound, id="unknown-profile"),
])
def test_bad_tokens_are_refused(configured: Runtime, kwargs: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        configured.devices.create_token(actor=ADMIN, **kwargs)


def test_group_key_lives_in_the_secret_store_only(configured: Runtime) -> None:
    with configured.database.session() as session:
        row = session.exec(select(EnrollmentProfileRow).where(EnrollmentProfileRow.name == GROUP)).one()
    data, _ref = configured.store.get(f"groups/{GROUP}")
    group_key = bytes.fromhex(data["key"])
    assert len(group_key) == 32
    assert row.group_key_ref is not None and data["key"] not in row.model_dump_json()
    keys = configured.devices.export_device_keys(GROUP, ["IMEI:1", "IMEI:2"], actor=ADMIN)
    assert keys["IMEI:1"] == hmac.new(group_key, b"IMEI:1", hashlib.sha256).hexdigest()
    assert bytes.fromhex(keys["IMEI:2"]) == derive_device_key(group_key, "IMEI:2")
    event = last_event(configured, "group-key.export")
    assert json.loads(event.detail)["count"] == 2 and data["key"] not in event.detail
    with pytest.raises(Conflict):
        configured.devices.create_group_key(GROUP, actor=ADMIN)


def test_manufacturer_cas(configured: Runtime) -> None:
    maker = make_maker()
    row = configured.config.add_manufacturer_ca("acme", maker.pem, actor=ADMIN)
    assert row.enabled and row.fingerprint.startswith("sha256:")
    with pytest.raises(Conflict):
        configured.config.add_manufacturer_ca("acme-again", maker.pem, actor=ADMIN)
    leaf, _ = maker.idevid("IMEI:1")
    with pytest.raises(InvalidRequest, match="not a CA"):
        configured.config.add_manufacturer_ca("leaf", leaf.public_bytes(Encoding.PEM).decode(), actor=ADMIN)
    assert not configured.config.set_manufacturer_ca_enabled("acme", False, actor=ADMIN).enabled
    assert [m.name for m in configured.config.list_manufacturer_cas()] == ["acme"]
