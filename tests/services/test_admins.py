"""Admin accounts: the role rules (DM-AZ-001), logins, TOTP, throttling, sessions - on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlmodel import col, select

from bootstrap.auth import totp
from bootstrap.auth.principals import Principal
from bootstrap.auth.sessions import SessionService
from bootstrap.errors import AuthenticationFailed, Conflict, InvalidRequest, PermissionDenied, TooManyAttempts
from bootstrap.runtime import Runtime
from bootstrap.services.admins import AdminAccountService, totp_path
from bootstrap.store.models import AdminRow, AuditEvent, ConsoleSessionRow, utcnow
from tests.support.admins import PASSWORD, fast_admins, make_admin


@pytest.fixture
def admins(runtime: Runtime) -> AdminAccountService:
    return fast_admins(runtime)


def _events(runtime: Runtime, action: str) -> list[AuditEvent]:
    with runtime.database.session() as session:
        return list(session.exec(select(AuditEvent).where(AuditEvent.action == action).order_by(col(AuditEvent.seq))))


def test_first_admin_from_the_cli_and_no_secret_in_the_database(runtime: Runtime, admins: AdminAccountService) -> None:
    info = admins.create("alice", PASSWORD, ["security-admin"], actor="cli:root")
    assert info.roles == ("security-admin",) and info.created_by == "cli:root"
    secret, uri = admins.enable_totp("alice", actor="cli:root")
    with runtime.database.session() as session:
        row = session.exec(select(AdminRow)).one()
    assert PASSWORD not in row.password_hash and row.password_hash.startswith("scrypt$")
    assert secret not in json.dumps(row.model_dump(), default=str)
    assert runtime.store.get(totp_path("alice"))[0]["secret"] == secret
    assert uri.startswith("otpauth://totp/")
    assert [e.outcome for e in _events(runtime, "admin.create")] == ["success"]


def test_granting_roles_needs_roles_manage(runtime: Runtime, admins: AdminAccountService) -> None:
    make_admin(runtime, "sec", "security-admin")
    make_admin(runtime, "pat", "provisioning-admin")
    make_admin(runtime, "aud", "auditor")
    for actor in ("pat", "aud"):
        principal = admins.get(actor).principal
        with pytest.raises(PermissionDenied, match="roles:manage"):
            admins.grant("aud" if actor == "pat" else "pat", "security-admin", actor=principal)
        with pytest.raises(PermissionDenied):
            admins.create("mallory", PASSWORD, ["auditor"], actor=principal)
        with pytest.raises(PermissionDenied):
            admins.set_disabled("sec", True, actor=principal)
    refused = _events(runtime, "admin.role.grant")
    assert [e.outcome for e in refused] == ["failure", "failure"]
    assert "roles:manage" in json.loads(refused[0].detail)["reason"]
    # A security-admin may grant a data role to someone else (it holds no data permission itself).
    assert admins.grant("aud", "provisioning-admin", actor=admins.get("sec").principal).roles == (
        "auditor", "provisioning-admin")


def test_nobody_grants_themselves_more(runtime: Runtime, admins: AdminAccountService) -> None:
    make_admin(runtime, "sec", "security-admin")
    me = admins.get("sec").principal
    with pytest.raises(PermissionDenied, match="themselves"):
        admins.grant("sec", "provisioning-admin", actor=me)
    with pytest.raises(PermissionDenied, match="themselves"):
        admins.set_roles("sec", ["security-admin", "auditor"], actor=me)
    assert admins.get("sec").roles == ("security-admin",)


def test_the_last_security_admin_stays(runtime: Runtime, admins: AdminAccountService) -> None:
    make_admin(runtime, "one", "security-admin")
    make_admin(runtime, "aud", "auditor")
    with pytest.raises(Conflict, match="last security-admin"):
        admins.revoke_role("one", "security-admin", actor="cli:root")
    with pytest.raises(Conflict, match="last security-admin"):
        admins.set_roles("one", ["auditor"], actor="cli:root")
    with pytest.raises(Conflict, match="last security-admin"):
        admins.set_disabled("one", True, actor="cli:root")
    admins.grant("aud", "security-admin", actor="cli:root")
    admins.revoke_role("one", "security-admin", actor=admins.get("aud").principal)  # now allowed
    with pytest.raises(Conflict, match="last security-admin"):
        admins.set_disabled("aud", True, actor="cli:root")
    assert [e.outcome for e in _events(runtime, "admin.role.revoke")] == ["failure", "success"]


def test_bad_input_is_refused_by_field(admins: AdminAccountService) -> None:
    with pytest.raises(InvalidRequest) as caught:
        admins.create("Bad Name", PASSWORD, ["auditor"], actor="cli:root")
    assert caught.value.field == "username"
    with pytest.raises(InvalidRequest) as caught:
        admins.create("ok", PASSWORD, ["root"], actor="cli:root")
    assert caught.value.field == "roles"
    with pytest.raises(InvalidRequest) as caught:
        admins.create("ok", "short", ["auditor"], actor="cli:root")
    assert caught.value.field == "password"
    admins.create("ok", PASSWORD, ["auditor"], actor="cli:root")
    with pytest.raises(Conflict):
        admins.create("ok", PASSWORD, ["auditor"], actor="cli:root")


def test_login_success_failure_and_audit(runtime: Runtime, admins: AdminAccountService) -> None:
    make_admin(runtime, "pat", "provisioning-admin")
    result = admins.login("pat", PASSWORD, request_id="r-1")
    assert not result.needs_totp and result.admin.principal.can("config:write")
    for name, password in (("pat", "wrong password!"), ("nobody", PASSWORD)):
        with pytest.raises(AuthenticationFailed, match="wrong username or password"):
            admins.login(name, password)
    admins.set_disabled("pat", True, actor="cli:root")
    with pytest.raises(AuthenticationFailed, match="wrong username or password"):
        admins.login("pat", PASSWORD)
    events = _events(runtime, "admin.login")
    assert [(e.outcome, json.loads(e.detail).get("reason")) for e in events] == [
        ("success", None), ("failure", "bad password"), ("failure", "unknown user"), ("failure", "disabled")]
    assert events[0].request_id == "r-1"
    assert all(PASSWORD not in e.detail for e in events)


def test_login_is_throttled_per_username(runtime: Runtime, admins: AdminAccountService) -> None:
    make_admin(runtime, "pat", "provisioning-admin")
    make_admin(runtime, "other", "auditor")
    for _ in range(5):
        with pytest.raises(AuthenticationFailed):
            admins.login("pat", "not the password")
    with pytest.raises(TooManyAttempts) as caught:
        admins.login("pat", PASSWORD)  # even the right password waits
    assert 0 < caught.value.retry_after <= 30
    admins.login("other", PASSWORD)  # other names are not affected


def test_totp_second_factor(runtime: Runtime, admins: AdminAccountService) -> None:
    make_admin(runtime, "sec", "security-admin")
    secret, _ = admins.enable_totp("sec", actor="cli:root")
    assert admins.login("sec", PASSWORD).needs_totp
    assert [e.outcome for e in _events(runtime, "admin.login")] == []  # not logged in yet
    with pytest.raises(AuthenticationFailed):
        admins.verify_totp("sec", "000000" if totp.totp(secret) != "000000" else "111111")
    code = totp.totp(secret)
    admins.verify_totp("sec", code)
    with pytest.raises(AuthenticationFailed, match="already used"):
        admins.verify_totp("sec", code)  # a code works once
    assert [json.loads(e.detail)["method"] for e in _events(runtime, "admin.login")] == [
        "totp", "password+totp", "totp"]
    admins.disable_totp("sec", actor="cli:root")
    assert not admins.login("sec", PASSWORD).needs_totp


def test_disabling_or_new_password_ends_sessions(runtime: Runtime, admins: AdminAccountService) -> None:
    make_admin(runtime, "sec", "security-admin")
    pat = make_admin(runtime, "pat", "provisioning-admin")
    token = runtime.sessions.start_admin(pat.id)
    assert runtime.sessions.lookup(token) is not None
    admins.set_password("pat", "a brand new password", actor=admins.get("pat").principal)  # own password
    assert runtime.sessions.lookup(token) is None
    token = runtime.sessions.start_admin(pat.id)
    admins.set_disabled("pat", True, actor=admins.get("sec").principal)
    assert runtime.sessions.lookup(token) is None
    with pytest.raises(PermissionDenied):  # others' passwords need roles:manage
        admins.set_password("sec", "a brand new password", actor=Principal.with_roles("x", "admin",
                                                                                        frozenset({"auditor"})))


def test_sessions_expire_idle_and_absolute(runtime: Runtime) -> None:
    sessions = SessionService(runtime.database, idle=timedelta(minutes=15), absolute=timedelta(hours=8))
    fast_admins(runtime)
    admin = make_admin(runtime, "pat", "provisioning-admin")
    start = utcnow()
    token = sessions.start_admin(admin.id, now=start)
    for minutes in (10, 20, 30):  # each visit within the idle limit keeps it alive
        assert sessions.lookup(token, now=start + timedelta(minutes=minutes)) is not None
    assert sessions.lookup(token, now=start + timedelta(minutes=46)) is None  # idle > 15 min
    token = sessions.start_admin(admin.id, now=start)
    moment = start
    while moment < start + timedelta(hours=7, minutes=50):
        moment += timedelta(minutes=10)
        assert sessions.lookup(token, now=moment) is not None
    assert sessions.lookup(token, now=start + timedelta(hours=8)) is None  # absolute limit
    with runtime.database.session() as session:
        assert session.exec(select(ConsoleSessionRow)).all() == []  # expired rows are deleted
    stored = sessions.start_admin(admin.id)
    with runtime.database.session() as session:
        assert stored not in {r.token_hash for r in session.exec(select(ConsoleSessionRow))}  # hash only


def test_promote_issues_a_new_token(runtime: Runtime) -> None:
    fast_admins(runtime)
    admin = make_admin(runtime, "pat", "provisioning-admin")
    pending = runtime.sessions.start_admin(admin.id, stage="totp")
    assert (info := runtime.sessions.lookup(pending)) is not None and info.stage == "totp"
    active = runtime.sessions.promote(pending)
    assert active != pending and runtime.sessions.lookup(pending) is None
    assert (info := runtime.sessions.lookup(active)) is not None and info.stage == "active"


def test_purge_removes_dead_sessions_only(runtime: Runtime) -> None:
    fast_admins(runtime)
    admin = make_admin(runtime, "pat", "provisioning-admin")
    old = utcnow() - timedelta(hours=9)
    runtime.sessions.start_admin(admin.id, now=old)
    runtime.sessions.start_admin(admin.id, now=utcnow() - timedelta(minutes=20))  # idle too long
    live = runtime.sessions.start_admin(admin.id)
    assert runtime.sessions.purge_expired() == 2
    assert runtime.sessions.lookup(live) is not None


def test_claim_codes_are_throttled_per_dev_id(runtime: Runtime) -> None:
    from bootstrap.services.subscriber import SubscriberService

    service = SubscriberService(runtime.database)
    for _ in range(5):
        with pytest.raises(AuthenticationFailed):
            service.claim("IMEI:1", "dmt_guess")
    with pytest.raises(TooManyAttempts):
        service.claim("IMEI:1", "dmt_guess")
    with pytest.raises(AuthenticationFailed) as caught:
        service.claim("IMEI:2", "dmt_guess")  # another DevID is not locked
    assert not isinstance(caught.value, TooManyAttempts)
