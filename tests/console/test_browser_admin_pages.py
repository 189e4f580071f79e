"""New console pages in a real browser: Certificates (search by DevID, serial, fingerprint; revoke by
serial), the dashboard corrected, API tokens (create, shown once, revoke), the audit view (filters
by actor, action, target and time; detail as fields; export as CSV and JSON lines).

Screenshots are kept in test-artifacts/console-admin-pages/.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.console.test_browser import CHROMIUM, CHROMIUM_ARGS, PASSWORD, REVOKED, server

__all__ = ["server"]  # the fixture: a real `dmboot serve` with alice and one device certificate

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "console-admin-pages"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def page(server: str) -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    shutil.rmtree(ARTIFACTS, ignore_errors=True)
    ARTIFACTS.mkdir(parents=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        context = browser.new_context(ignore_https_errors=True, base_url=server,
                                      viewport={"width": 1280, "height": 900})
        tab = context.new_page()
        tab.goto("/console/login")
        tab.fill("input[name=username]", "alice")
        tab.fill("input[name=password]", PASSWORD)
        tab.click("button:has-text('Log in')")
        tab.wait_for_url("**/console/")
        yield tab
        context.close()
        browser.close()


def _shot(page: object, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)  # type: ignore[attr-defined]


def _rows(page: object) -> list[list[str]]:
    cells = page.eval_on_selector_all(  # type: ignore[attr-defined]
        "main table tr", "rows => rows.slice(1).map(r => [...r.cells].map(c => c.innerText.trim()))")
    return [r for r in cells if len(r) > 1]


def test_search_and_revoke_by_serial(page: object) -> None:
    p = page
    p.click("nav a:has-text('Certificates')")  # type: ignore[attr-defined]
    p.wait_for_url("**/console/certificates")  # type: ignore[attr-defined]
    everything = _rows(p)
    assert len(everything) >= 2  # the service's TLS certificate and the device's
    assert p.inner_text("#cert-total") == f"{len(everything)} certificates"  # type: ignore[attr-defined]
    _shot(p, "01-all")

    p.fill("input[name=q]", REVOKED)  # type: ignore[attr-defined]
    p.click("button:has-text('Search')")  # type: ignore[attr-defined]
    (row,) = _rows(p)
    serial, fingerprint = row[0], row[6]
    assert row[3] == REVOKED and row[4] == "valid"
    assert p.inner_text("#cert-total") == "1 certificate"  # type: ignore[attr-defined]
    for query in (serial.upper(), fingerprint, fingerprint.removeprefix("sha256:")):
        p.goto(f"/console/certificates?q={query}")  # type: ignore[attr-defined]
        assert [r[0] for r in _rows(p)] == [serial], query
    _shot(p, "02-found")

    # A wrong confirmation: an error page that says what to type, not a bare "Invalid request".
    p.click("summary:has-text('Revoke')")  # type: ignore[attr-defined]
    p.fill("input[name=confirm]", "not-the-serial")  # type: ignore[attr-defined]
    with p.expect_navigation() as wrong:  # type: ignore[attr-defined]
        p.click("form.revoke button:has-text('Revoke')")  # type: ignore[attr-defined]
    assert wrong.value.status == 400
    assert f"Type the serial {serial} to revoke it" in p.inner_text("#revoke-error")  # type: ignore[attr-defined]
    assert _rows(p)[0][0] == serial and _rows(p)[0][4] == "valid"  # the certificate again, nothing revoked
    assert p.is_visible("form.revoke input[name=confirm]")  # type: ignore[attr-defined]  # its form open
    _shot(p, "03-wrong-confirmation")

    p.goto(f"/console/certificates?q={serial}")  # type: ignore[attr-defined]
    p.click("summary:has-text('Revoke')")  # type: ignore[attr-defined]
    p.select_option("select[name=reason]", "keyCompromise")  # type: ignore[attr-defined]
    p.fill("input[name=confirm]", serial)  # type: ignore[attr-defined]
    p.click("form.revoke button:has-text('Revoke')")  # type: ignore[attr-defined]
    p.wait_for_url("**revoked=1")  # type: ignore[attr-defined]
    assert "Revoked; the CRLs are republished." in p.inner_text("main")  # type: ignore[attr-defined]
    assert _rows(p)[0][4] == "revoked"
    _shot(p, "04-revoked")


def test_dashboard_reads_right_and_fits(page: object, server: str) -> None:
    import httpx

    # Failures from devices the service could not identify (no DevID): they must not read "device:None".
    for body in (b"{}", b'{"csr": "x"}'):
        httpx.post(f"{server}/api/v1/enroll", content=body, headers={"Content-Type": "application/json"},
                   verify=False)  # noqa: S501 - the failure is the point, not the TLS
    p = page
    p.goto("/console/")  # type: ignore[attr-defined]
    text = p.inner_text("main")  # type: ignore[attr-defined]
    assert "device:None" not in text and "\tNone\n" not in text and "None\t" not in text
    import re

    assert not re.search(r"(?m)^1\s+(certificates|enrollments|failures)\b", text), text
    overflow = p.evaluate(  # type: ignore[attr-defined]
        "() => document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert overflow <= 0
    _shot(p, "05-dashboard")


def test_api_tokens_page_creates_shows_once_and_revokes(page: object) -> None:
    p = page
    p.click("nav a:has-text('API tokens')")  # type: ignore[attr-defined]
    p.wait_for_url("**/console/tokens")  # type: ignore[attr-defined]
    _shot(p, "06-tokens")
    # A factory-line token with no profile could provision nothing: refused, with the reason.
    p.fill("#token-form input[name=name]", "line-9")  # type: ignore[attr-defined]
    p.check("#token-form input[value=factory-line]")  # type: ignore[attr-defined]
    p.click("#token-form button:has-text('Create token')")  # type: ignore[attr-defined]
    assert "needs at least one enrollment profile" in p.inner_text("[role=alert]")  # type: ignore[attr-defined]
    _shot(p, "07-token-refused")
    p.check("#token-form input[value=factory-line]")  # type: ignore[attr-defined]
    p.fill("#token-form input[name=profiles]", "fleet")  # type: ignore[attr-defined]
    p.click("#token-form button:has-text('Create token')")  # type: ignore[attr-defined]
    token = p.inner_text("#new-token").strip()  # type: ignore[attr-defined]
    assert token.startswith("dmb_") or len(token) > 30
    _shot(p, "08-token-shown-once")
    p.click("a:has-text('Back to API tokens')")  # type: ignore[attr-defined]
    assert token not in p.content()  # type: ignore[attr-defined]
    row = next(r for r in _rows(p) if r[0] == "line-9")
    assert row[1] == "factory-line" and row[2] == "fleet" and "active" in row[7]
    p.click("tr:has(td:text-is('line-9')) button:has-text('Revoke')")  # type: ignore[attr-defined]
    p.wait_for_url("**revoked=line-9")  # type: ignore[attr-defined]
    assert next(r for r in _rows(p) if r[0] == "line-9")[7] == "revoked"
    _shot(p, "09-token-revoked")


def test_audit_view_filters_reads_and_exports(page: object, tmp_path: Path) -> None:
    import csv
    import json
    from datetime import UTC, datetime

    p = page
    p.click("nav a:has-text('Audit')")  # type: ignore[attr-defined]
    p.wait_for_url("**/console/audit")  # type: ignore[attr-defined]
    _shot(p, "10-audit")
    today = datetime.now(UTC).strftime("%Y-%m-%d")
    p.fill("input[name=actor]", "admin:*")  # type: ignore[attr-defined]
    p.fill("input[name=action]", "cert.revoke")  # type: ignore[attr-defined]
    p.fill("input[name=since]", today)  # type: ignore[attr-defined]
    p.click("button:has-text('Filter')")  # type: ignore[attr-defined]
    (row,) = _rows(p)  # the revocation of test_search_and_revoke_by_serial
    serial = row[5]
    assert row[2] == "admin:alice" and row[3] == "cert.revoke" and row[4] == "success"
    assert "reason" in row[6] and "keyCompromise" in row[6]  # detail as fields, not JSON text
    width = p.eval_on_selector("table.audit td.detail", "cell => cell.getBoundingClientRect().width")  # type: ignore[attr-defined]
    assert width > 150  # not a sliver wrapping one character a line
    overflow = p.evaluate(  # type: ignore[attr-defined]
        "() => document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert overflow <= 0
    _shot(p, "11-audit-filtered")

    p.fill("input[name=target]", serial)  # type: ignore[attr-defined]
    p.click("button:has-text('Filter')")  # type: ignore[attr-defined]
    assert [r[5] for r in _rows(p)] == [serial]
    with p.expect_download() as csv_download:  # type: ignore[attr-defined]
        p.click("#export-csv")  # type: ignore[attr-defined]
    saved = tmp_path / "audit.csv"
    csv_download.value.save_as(saved)
    (exported,) = list(csv.DictReader(saved.read_text().splitlines()))
    assert exported["action"] == "cert.revoke" and exported["target"] == serial
    assert json.loads(exported["detail"])["reason"] == "keyCompromise"
    with p.expect_download() as jsonl_download:  # type: ignore[attr-defined]
        p.click("#export-jsonl")  # type: ignore[attr-defined]
    lines = Path(jsonl_download.value.path()).read_text().splitlines()
    assert [json.loads(line)["seq"] for line in lines] == [int(exported["seq"])]

    p.fill("input[name=since]", "")  # type: ignore[attr-defined]
    p.fill("input[name=until]", "2000-01-01")  # type: ignore[attr-defined]
    p.click("button:has-text('Filter')")  # type: ignore[attr-defined]
    assert "No events match." in p.inner_text("table.audit")  # type: ignore[attr-defined]
    p.fill("input[name=until]", "last tuesday")  # type: ignore[attr-defined]
    p.click("button:has-text('Filter')")  # type: ignore[attr-defined]
    assert "until must be an ISO 8601" in p.inner_text("main")  # type: ignore[attr-defined]
    _shot(p, "12-audit-bad-time")

