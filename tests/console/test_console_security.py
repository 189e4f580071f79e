"""The console's protections: login, TOTP, sessions, CSRF, cookies, headers, redirects."""

from __future__ import annotations

import json
import re
from datetime import timedelta

from sqlalchemy import update
from sqlmodel import col, select
from starlette.testclient import TestClient

from bootstrap.auth import totp
from bootstrap.runtime import Runtime
from bootstrap.store.models import AuditEvent, ConsoleSessionRow, utcnow
from bootstrap.web.console.security import SESSION_COOKIE
from tests.support.admins import PASSWORD, csrf_of, login, make_admin


def _actions(runtime: Runtime, prefix: str) -> list[tuple[str, str]]:
    with runtime.database.session() as session:
        rows = session.exec(select(AuditEvent).where(col(AuditEvent.action).startswith(prefix))
                            .order_by(col(AuditEvent.seq)))
        return [(r.action, r.outcome) for r in rows]


def test_pages_need_a_session(client: TestClient) -> None:
    response = client.get("/console/devices?q=abc", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/console/login?next=/console/devices%3Fq%3Dabc"


def test_login_sets_a_strict_host_cookie_and_is_audited(client: TestClient, console_runtime: Runtime) -> None:
    make_admin(console_runtime, "pat", "provisioning-admin")
    page = client.get("/console/login")
    response = client.post("/console/login", data={"username": "pat", "password": PASSWORD,
                                                   "csrf": csrf_of(page.text), "next": "/console/devices"},
                           follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/console/devices"
    cookie = next(h for h in response.headers.get_list("set-cookie") if h.startswith(SESSION_COOKIE))
    attributes = {a.strip().lower() for a in cookie.split(";")[1:]}
    assert {"httponly", "secure", "samesite=strict", "path=/"} <= attributes
    assert not any(a.startswith("domain") for a in attributes)
    assert client.get("/console/devices").status_code == 200
    assert _actions(console_runtime, "admin.login") == [("admin.login", "success")]


def test_wrong_password_then_throttled(client: TestClient, console_runtime: Runtime) -> None:
    make_admin(console_runtime, "pat", "provisioning-admin")
    for attempt in range(6):
        page = client.get("/console/login")
        response = client.post("/console/login", data={"username": "pat", "password": "wrong password",
                                                       "csrf": csrf_of(page.text)})
        if attempt < 5:
            assert response.status_code == 401 and "wrong username or password" in response.text
    assert response.status_code == 429 and "too many failed attempts" in response.text
    assert int(response.headers["retry-after"]) > 0
    assert SESSION_COOKIE not in client.cookies
    assert _actions(console_runtime, "admin.login").count(("admin.login", "failure")) == 5


def test_login_form_needs_its_csrf_token(client: TestClient, console_runtime: Runtime) -> None:
    make_admin(console_runtime, "pat", "provisioning-admin")
    client.get("/console/login")
    response = client.post("/console/login", data={"username": "pat", "password": PASSWORD, "csrf": "forged"})
    assert response.status_code == 403
    assert SESSION_COOKIE not in client.cookies


def test_every_post_needs_the_session_csrf_token(client: TestClient, console_runtime: Runtime) -> None:
    make_admin(console_runtime, "pat", "provisioning-admin")
    login(client, "pat")
    data = {"server_id": "dm1", "name": "DM one", "url": "https://dm1.example.net/dm"}
    assert client.post("/console/servers", data=data).status_code == 403  # missing
    assert client.post("/console/servers", data={**data, "csrf": "x" * 43}).status_code == 403  # wrong
    assert console_runtime.config.list_servers() == []
    token = csrf_of(client.get("/console/servers").text)
    assert client.post("/console/servers", data={**data, "csrf": token}, follow_redirects=False).status_code == 303
    assert [s.server_id for s in console_runtime.config.list_servers()] == ["dm1"]
    # Another session's token is worthless here.
    other = TestClient(client.app, base_url=str(client.base_url))
    login(other, "pat")
    assert csrf_of(other.get("/console/servers").text) != token
    assert other.post("/console/servers", data={**data, "server_id": "dm2", "csrf": token}).status_code == 403


def test_security_headers_and_no_script_anywhere(client: TestClient, console_runtime: Runtime) -> None:
    make_admin(console_runtime, "sec", "security-admin")
    pages = [client.get("/console/login"), client.get("/subscriber/")]
    login(client, "sec")
    pages += [client.get(p) for p in ("/console/", "/console/cas", "/console/audit", "/console/admins")]
    for page in pages:
        assert page.status_code == 200
        csp = page.headers["content-security-policy"]
        assert "default-src 'self'" in csp and "script-src 'none'" in csp and "frame-ancestors 'none'" in csp
        assert "unsafe-inline" not in csp
        assert page.headers["x-frame-options"] == "DENY"
        assert page.headers["x-content-type-options"] == "nosniff"
        assert page.headers["cache-control"] == "no-store"
        assert "<script" not in page.text.lower() and " style=" not in page.text.lower()
    css = client.get("/console/static/console.css")
    assert css.status_code == 200 and css.headers["x-frame-options"] == "DENY"


def test_totp_login_issues_a_new_session(client: TestClient, console_runtime: Runtime) -> None:
    make_admin(console_runtime, "sec", "security-admin")
    secret, _ = console_runtime.admins.enable_totp("sec", actor="cli:test")
    page = client.get("/console/login")
    response = client.post("/console/login", data={"username": "sec", "password": PASSWORD,
                                                   "csrf": csrf_of(page.text)}, follow_redirects=False)
    assert response.headers["location"].startswith("/console/login/totp")
    half = client.cookies[SESSION_COOKIE]
    assert client.get("/console/", follow_redirects=False).status_code == 303  # not in yet
    form = client.get("/console/login/totp")
    bad = client.post("/console/login/totp", data={"code": "12345", "csrf": csrf_of(form.text)})
    assert bad.status_code == 401
    response = client.post("/console/login/totp", data={"code": totp.totp(secret), "csrf": csrf_of(form.text),
                                                        "next": "/console/audit"}, follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/console/audit"
    assert client.cookies[SESSION_COOKIE] != half
    assert console_runtime.sessions.lookup(half) is None
    assert client.get("/console/audit").status_code == 200


def test_logout_ends_the_session_on_the_server(client: TestClient, console_runtime: Runtime) -> None:
    make_admin(console_runtime, "pat", "provisioning-admin")
    login(client, "pat")
    token = client.cookies[SESSION_COOKIE]
    page = client.get("/console/")
    response = client.post("/console/logout", data={"csrf": csrf_of(page.text)}, follow_redirects=False)
    assert response.status_code == 303
    replay = TestClient(client.app, base_url=str(client.base_url), cookies={SESSION_COOKIE: token})
    assert replay.get("/console/", follow_redirects=False).status_code == 303
    assert ("admin.logout", "success") in _actions(console_runtime, "admin.logout")


def test_idle_sessions_expire(client: TestClient, console_runtime: Runtime) -> None:
    make_admin(console_runtime, "pat", "provisioning-admin")
    login(client, "pat")
    with console_runtime.database.session() as session:
        session.execute(update(ConsoleSessionRow).values(last_seen_at=utcnow() - timedelta(minutes=16)))
    assert client.get("/console/", follow_redirects=False).status_code == 303


def test_no_open_redirect_after_login(client: TestClient, console_runtime: Runtime) -> None:
    make_admin(console_runtime, "pat", "provisioning-admin")
    for target in ("https://evil.example/", "//evil.example/", "/console/\\evil"):
        client.cookies.clear()
        page = client.get("/console/login")
        response = client.post("/console/login", data={"username": "pat", "password": PASSWORD,
                                                       "csrf": csrf_of(page.text), "next": target},
                               follow_redirects=False)
        assert response.headers["location"] == "/console/", target


def test_role_changes_in_the_console_follow_the_rules(client: TestClient, console_runtime: Runtime) -> None:
    make_admin(console_runtime, "sec", "security-admin")
    make_admin(console_runtime, "aud", "auditor")
    login(client, "sec")
    token = csrf_of(client.get("/console/admins").text)
    mine = client.post("/console/admins/sec/roles", data={"roles": ["security-admin", "auditor"], "csrf": token})
    assert mine.status_code == 403 and "nobody can grant themselves" in mine.text
    last = client.post("/console/admins/sec/disabled", data={"disabled": "1", "csrf": token})
    assert last.status_code == 409 and "last security-admin" in last.text
    ok = client.post("/console/admins/aud/roles", data={"roles": ["auditor", "provisioning-admin"], "csrf": token},
                     follow_redirects=False)
    assert ok.status_code == 303
    assert console_runtime.admins.get("aud").roles == ("auditor", "provisioning-admin")
    created = client.post("/console/admins", data={"username": "newbie", "password": PASSWORD,
                                                   "roles": ["auditor"], "csrf": token}, follow_redirects=False)
    assert created.status_code == 303
    events = [(a, o) for a, o in _actions(console_runtime, "admin.") if a != "admin.login"]
    assert events[-4:] == [("admin.roles.set", "failure"), ("admin.disable", "failure"),
                           ("admin.roles.set", "success"), ("admin.create", "success")]
    with console_runtime.database.session() as session:
        last_event = session.exec(select(AuditEvent).order_by(col(AuditEvent.seq).desc())).first()
    assert last_event is not None and last_event.actor == "admin:sec" and last_event.request_id
    assert json.loads(last_event.detail) == {"roles": ["auditor"]}
    assert re.search(r"newbie", client.get("/console/admins").text)
