"""Console workflows: profiles with validation, claim codes, subscriber self-service, revocation, audit."""

from __future__ import annotations

import json
from typing import Any

from sqlmodel import col, select
from starlette.testclient import TestClient

from bootstrap.auth.principals import hash_token
from bootstrap.runtime import Runtime
from bootstrap.services.issuance import Requester
from bootstrap.store.models import AuditEvent, CertificateRow, DeviceRow, EnrollmentTokenRow
from bootstrap.web.console.security import SESSION_COOKIE
from pki.identity import device_uri
from tests.factories import make_csr
from tests.support.admins import csrf_of, login, make_admin

DEV_ID = "IMEI:490154203237518"
#: A configuration package: a legacy DM account (DMAcc 1.0), an MO our DDF registry knows.
PACKAGE = {
    "DDF": "https://dmboot.test/ddf/urn:oma:mo:oma-dm-dmacc:1.0", "MOID": "urn:oma:mo:oma-dm-dmacc:1.0",
    "ClientURI": "urn:oma:mo:oma-dm-dmacc:1.0/legacy",
    "MOData": {"AppID": "w7", "ServerID": "legacy-dm", "AppAddr": {"a1": {"Addr": "https://legacy.example.net",
                                                                          "AddrType": "URI"}}},
}


def _profile_form(csrf: str, **changes: Any) -> dict[str, Any]:
    form: dict[str, Any] = {"csrf": csrf, "name": "fleet", "description": "test fleet", "dm_servers": ["dm1", "dm2"],
                            "delivery": "inline", "validity_days": "365", "key_types": ["p256"],
                            "attestation": ["token"], "dmacc_Name": "Fleet",
                            "extra_mos": json.dumps([PACKAGE]), "enabled": "on"}
    form.update(changes)
    return form


def _servers(runtime: Runtime) -> None:
    runtime.config.add_server("dm1", "DM one", "https://dm1.example.net/dm", actor="test")
    runtime.config.add_server("dm2", "DM two", "https://dm2.example.net/dm", actor="test")


def test_create_and_edit_a_profile_with_validation(client: TestClient, console_runtime: Runtime) -> None:
    _servers(console_runtime)
    make_admin(console_runtime, "pat", "provisioning-admin")
    login(client, "pat")
    csrf = csrf_of(client.get("/console/profiles/new").text)
    for changes, field in (({"dm_servers": []}, "dm_servers"), ({"validity_days": "forever"}, "validity_days"),
                           ({"extra_mos": "[{not json"}, "extra_mos"), ({"attestation": ["magic"]}, "attestation"),
                           ({"name": "bad name"}, "name")):
        response = client.post("/console/profiles", data=_profile_form(csrf, **changes))
        assert response.status_code == 400, (field, response.text)
        assert f"(field: {field})" in response.text
        assert 'value="test fleet"' in response.text  # what was typed is kept
    assert console_runtime.config.list_profiles() == []
    response = client.post("/console/profiles", data=_profile_form(csrf), follow_redirects=False)
    assert response.status_code == 303
    assert "fleet" in client.get("/console/profiles").text
    again = client.post("/console/profiles", data=_profile_form(csrf))
    assert again.status_code == 409
    edit = client.get("/console/profiles/fleet")
    assert edit.status_code == 200 and "legacy-dm" in edit.text
    assert 'name="server_keygen">' in edit.text  # created without it: unchecked
    response = client.post("/console/profiles/fleet", data=_profile_form(csrf, validity_days="90", dm_servers=["dm2"],
                                                                          server_keygen="on"),
                           follow_redirects=False)
    assert response.status_code == 303
    view = console_runtime.config.get_profile("fleet")
    assert view.row.validity_days == 90 and view.dm_servers == ("dm2",) and view.row.server_keygen
    assert 'name="server_keygen" checked>' in client.get("/console/profiles/fleet").text


def test_profile_editor_sets_the_default_server_and_dmacc_fields(client: TestClient, console_runtime: Runtime) -> None:
    _servers(console_runtime)
    make_admin(console_runtime, "pat", "provisioning-admin")
    login(client, "pat")
    csrf = csrf_of(client.get("/console/profiles/new").text)
    # dm2 is ticked after dm1 but chosen as the default: it comes first, as the API's list has it.
    form = _profile_form(csrf, default_server="dm2", dmacc_Perm="urn:oma:mo:oma-dm-devinfo:1.0\n\n",
                         dmacc_NotiType="sms", dmacc_NotiData="+15550100")
    assert client.post("/console/profiles", data=form, follow_redirects=False).status_code == 303
    view = console_runtime.config.get_profile("fleet")
    assert view.dm_servers == ("dm2", "dm1")
    assert view.row.dmacc == {"Name": "Fleet", "Perm": ["urn:oma:mo:oma-dm-devinfo:1.0"],
                              "Noti": {"Type": "sms", "Data": "+15550100"}}
    page = client.get("/console/profiles/fleet").text
    assert 'name="default_server" value="dm2" aria-label="default: dm2" checked' in page
    assert 'name="dmacc_NotiType" value="sms"' in page and "urn:oma:mo:oma-dm-devinfo:1.0</textarea>" in page
    # A bad MOID is named at its own field, and what was typed stays.
    bad = client.post("/console/profiles/fleet", data=_profile_form(csrf, default_server="dm1",
                                                                    dmacc_Perm="not-a-moid"))
    assert bad.status_code == 400
    assert 'id="error-dmacc-Perm">dmacc.Perm.0: must be a MOID such as urn:oma:mo:oma-dm-devinfo:1.0' in bad.text
    assert "not-a-moid</textarea>" in bad.text
    assert console_runtime.config.get_profile("fleet").dm_servers == ("dm2", "dm1")  # nothing saved
    # The default alone (not ticked) is still a server of the profile, first.
    client.post("/console/profiles/fleet", data=_profile_form(csrf, default_server="dm1", dm_servers=[]))
    assert console_runtime.config.get_profile("fleet").dm_servers == ("dm1",)


def _fleet(runtime: Runtime) -> None:
    from bootstrap.services.config import ProfileSpec

    _servers(runtime)
    runtime.config.add_profile(ProfileSpec(name="fleet", dm_servers=("dm1", "dm2"), extra_mos=(PACKAGE,)),
                               actor="test")


def _claim_code(client: TestClient, dev_id: str = DEV_ID) -> str:
    page = client.get("/console/claim-codes")
    response = client.post("/console/claim-codes", data={"csrf": csrf_of(page.text), "dev_id": dev_id,
                                                        "profile": "fleet", "ttl_days": "30"})
    assert response.status_code == 200, response.text
    start = response.text.index('id="claim-code">') + len('id="claim-code">')
    return response.text[start:response.text.index("<", start)]


def test_claim_code_is_shown_once_and_stored_hashed(client: TestClient, console_runtime: Runtime) -> None:
    _fleet(console_runtime)
    make_admin(console_runtime, "pat", "provisioning-admin")
    login(client, "pat")
    code = _claim_code(client)
    assert code.startswith("dmt_")
    listing = client.get("/console/claim-codes").text
    assert code not in listing and DEV_ID in listing
    with console_runtime.database.session() as session:
        row = session.exec(select(EnrollmentTokenRow)).one()
        device = session.exec(select(DeviceRow)).one()
    assert row.token_hash == hash_token(code) and row.dev_id == DEV_ID and device.dev_id == DEV_ID
    bad = client.post("/console/claim-codes", data={"csrf": csrf_of(listing), "dev_id": "", "profile": "fleet"})
    assert bad.status_code == 400


def test_subscriber_claims_a_device_and_chooses(client: TestClient, console_runtime: Runtime) -> None:
    _fleet(console_runtime)
    make_admin(console_runtime, "pat", "provisioning-admin")
    login(client, "pat")
    code = _claim_code(client)
    subscriber = TestClient(client.app, base_url=str(client.base_url))
    form = subscriber.get("/subscriber/")
    wrong = subscriber.post("/subscriber/claim", data={"csrf": csrf_of(form.text), "dev_id": DEV_ID,
                                                      "code": "dmt_wrong"})
    assert wrong.status_code == 401 and SESSION_COOKIE not in subscriber.cookies
    other = subscriber.post("/subscriber/claim", data={"csrf": csrf_of(form.text), "dev_id": "IMEI:1", "code": code})
    assert other.status_code == 401  # the code is bound to its DevID
    response = subscriber.post("/subscriber/claim", data={"csrf": csrf_of(form.text), "dev_id": DEV_ID,
                                                         "code": code}, follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/subscriber/device"
    page = subscriber.get("/subscriber/device")
    assert "DM two" in page.text and str(PACKAGE["ClientURI"]) in page.text
    csrf = csrf_of(page.text)
    refused = subscriber.post("/subscriber/device/server", data={"csrf": csrf, "server_id": "elsewhere"})
    assert refused.status_code == 400
    assert subscriber.post("/subscriber/device/server", data={"csrf": csrf, "server_id": "dm2"}).status_code == 200
    saved = subscriber.post("/subscriber/device/packages", data={"csrf": csrf, "packages": [PACKAGE["ClientURI"]]})
    assert 'id="saved-packages"' in saved.text
    with console_runtime.database.session() as session:
        device = session.exec(select(DeviceRow)).one()
        token = session.exec(select(EnrollmentTokenRow)).one()
        actions = [(e.action, e.outcome) for e in session.exec(
            select(AuditEvent).where(AuditEvent.actor == f"subscriber:{DEV_ID}").order_by(col(AuditEvent.seq)))]
    assert device.chosen_dm_server_id == console_runtime.config.get_server("dm2").id
    assert device.pending_packages == [PACKAGE["ClientURI"]]
    assert token.used_at is None  # the device still needs it to bootstrap
    assert actions == [("subscriber.claim", "failure"), ("subscriber.claim", "success"),
                       ("subscriber.server.choose", "failure"), ("subscriber.server.choose", "success"),
                       ("subscriber.packages.set", "success")]
    # A subscriber session opens nothing in the admin console.
    assert subscriber.get("/console/", follow_redirects=False).status_code == 303


def test_revoke_a_device(client: TestClient, console_runtime: Runtime) -> None:
    _fleet(console_runtime)
    console_runtime.devices.register(DEV_ID, "fleet", actor="test")
    issued = console_runtime.issuance.issue_from_csr(make_csr(DEV_ID, uris=[device_uri(DEV_ID)]), "device",
                                                     Requester("test"))
    make_admin(console_runtime, "sec", "security-admin")
    login(client, "sec")
    page = client.get(f"/console/devices/{DEV_ID}")
    assert issued.serial_hex in page.text and 'id="revoke-form"' in page.text
    csrf = csrf_of(page.text)
    unconfirmed = client.post(f"/console/devices/{DEV_ID}/revoke", data={"csrf": csrf, "reason": "keyCompromise",
                                                                          "confirm": "IMEI:wrong"})
    assert unconfirmed.status_code == 400
    # The device page again, with what to type at the form - not a bare "Invalid request".
    assert f"Type the DevID {DEV_ID} to revoke" in unconfirmed.text and 'id="revoke-form"' in unconfirmed.text
    assert "Invalid request" not in unconfirmed.text and issued.serial_hex in unconfirmed.text
    assert console_runtime.devices.get(DEV_ID).row.status != "blocked"
    done = client.post(f"/console/devices/{DEV_ID}/revoke",
                       data={"csrf": csrf, "reason": "keyCompromise", "confirm": DEV_ID})
    assert done.status_code == 200 and 'id="revoked"' in done.text
    with console_runtime.database.session() as session:
        cert = session.exec(select(CertificateRow).where(CertificateRow.serial_hex == issued.serial_hex)).one()
    assert cert.status == "revoked" and cert.revocation_reason == "keyCompromise"
    assert console_runtime.devices.get(DEV_ID).row.status == "blocked"
    assert "cert.revoke" in done.text  # the device's audit history shows it


def test_dashboard_and_audit_viewer(client: TestClient, console_runtime: Runtime) -> None:
    make_admin(console_runtime, "aud", "auditor")
    console_runtime.issuance.issue_from_csr(make_csr("IMEI:1", uris=[device_uri("IMEI:1")]), "device",
                                            Requester("test"))
    login(client, "aud")
    dashboard = client.get("/console/")
    assert dashboard.status_code == 200
    issued_today = dashboard.text.split('id="issued-today">')[1].split("<")[0]
    assert int(issued_today) >= 1
    everything = client.get("/console/audit")
    assert "cert.issue" in everything.text and "admin.login" in everything.text
    logins = client.get("/console/audit", params={"action": "admin.*", "outcome": "success"})
    assert "admin.login" in logins.text and "cert.issue" not in logins.text
    assert "since must be an ISO 8601" in client.get("/console/audit", params={"since": "not-a-date"}).text
    verify = client.get("/console/audit/verify")
    assert 'id="chain-ok"' in verify.text


ODD_ACTOR = "=cmd|' /C calc'!A0"  # an actor a spreadsheet would run as a formula


def test_audit_detail_reads_as_fields_and_the_selection_exports(client: TestClient, console_runtime: Runtime) -> None:
    import csv
    import io

    make_admin(console_runtime, "aud", "auditor")
    console_runtime.issuance.issue_from_csr(make_csr("IMEI:1", uris=[device_uri("IMEI:1")]), "device",
                                            Requester(ODD_ACTOR))
    login(client, "aud")
    page = client.get("/console/audit", params={"action": "cert.issue"}).text
    # Detail as key/value pairs, not the JSON text (which the narrow cell wrapped letter by letter).
    assert '<dl class="audit-detail">' in page and '<dt>profile</dt><dd>device</dd>' in page
    assert 'href="/console/audit/export?action=cert.issue&amp;format=csv"' in page

    jsonl = client.get("/console/audit/export", params={"action": "cert.*", "actor": ODD_ACTOR, "format": "jsonl"})
    assert jsonl.status_code == 200 and jsonl.headers["content-type"].startswith("application/jsonl")
    assert 'filename="audit.jsonl"' in jsonl.headers["content-disposition"]
    events = [json.loads(line) for line in jsonl.text.splitlines()]
    assert [e["action"] for e in events] == ["cert.issue"] and events[0]["detail"]["profile"] == "device"

    exported = client.get("/console/audit/export", params={"action": "cert.issue", "actor": ODD_ACTOR,
                                                                   "format": "csv"})
    assert exported.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert len(rows) == 1 and rows[0]["seq"] == str(events[0]["seq"]) and rows[0]["action"] == "cert.issue"
    assert rows[0]["actor"] == "'=cmd|' /C calc'!A0"  # shown as text, never a formula
    assert json.loads(rows[0]["detail"]) == events[0]["detail"]
    everything = client.get("/console/audit/export", params={"format": "csv"}).text
    assert "admin.login" in everything and "cert.issue" in everything
    assert client.get("/console/audit/export", params={"format": "xml"}).status_code == 400
    assert client.get("/console/audit/export", params={"since": "yesterday"}).status_code == 400



def test_cas_page_shows_when_the_ocsp_responder_renews_itself(client: TestClient, console_runtime: Runtime) -> None:
    from datetime import timedelta

    make_admin(console_runtime, "aud", "auditor")
    login(client, "aud")
    assert "made at the first OCSP request" in client.get("/console/cas").text
    with console_runtime.database.session() as session:
        issuing = console_runtime.authorities.active_row(session).id
    assert issuing is not None
    responder = console_runtime.ocsp.current_responder(issuing)
    page = client.get("/console/cas").text
    # 30 days and 5 minutes of life: renewed with a third left, 10 days and 100 s before notAfter.
    renews = responder.not_valid_after_utc - timedelta(days=10, seconds=100)
    assert (f"valid until {responder.not_valid_after_utc:%Y-%m-%d}; renewed automatically from"
            f" {renews:%Y-%m-%d %H:%M} UTC") in page
