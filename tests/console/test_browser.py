"""The console in a real browser (Debian's chromium through Playwright) against a real `dmboot serve`.

Log in, add DM servers, create a profile, make a claim code, register the device as
its subscriber (choosing its DM server and a package), and revoke a device.
Screenshots of each step are kept in test-artifacts/console/.
"""

from __future__ import annotations

import json
import os
import shutil
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from pki.identity import device_uri
from tests.enrollment.support import make_maker
from tests.factories import make_csr
from tests.support.peers import require_module, require_peer
from tests.support.servers import free_port

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "console"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
PASSWORD = "correct horse battery staple"
DEVICE = "IMEI:356938035643809"
REVOKED = "IMEI:356938035643817"
PACKAGE = {"DDF": "https://dmboot.test/ddf/urn:oma:mo:oma-dm-dmacc:1.0", "MOID": "urn:oma:mo:oma-dm-dmacc:1.0",
           "ClientURI": "urn:oma:mo:oma-dm-dmacc:1.0/legacy",
           "MOData": {"AppID": "w7", "ServerID": "legacy-dm",
                      "AppAddr": {"a1": {"Addr": "https://legacy.example.net", "AddrType": "URI"}}}}

pytestmark = pytest.mark.slow


def _require_browser() -> None:
    require_module("playwright")
    require_peer("chromium")  # Debian's, at CHROMIUM: never a browser downloaded by playwright



def _dmboot(env: dict[str, str], *args: str) -> str:
    result = subprocess.run([sys.executable, "-m", "bootstrap", *args], capture_output=True, text=True, env=env,
                            check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    _require_browser()
    root = tmp_path_factory.mktemp("browser")
    port = free_port()
    env = {**os.environ, "DMBOOT_DATA_DIR": str(root / "data"), "DMBOOT_KEYSTORE_PASSPHRASE": "browser-test",
           "DMBOOT_DATABASE_URL": "", "DMBOOT_PORT": str(port), "DMBOOT_PUBLIC_URL": f"https://127.0.0.1:{port}"}
    _dmboot(env, "init")
    (root / "pw").write_text(PASSWORD + "\n")
    _dmboot(env, "admin", "create", "alice", "--role", "security-admin", "--role", "provisioning-admin",
            "--password-file", str(root / "pw"))
    csr = root / "revoked.csr"
    csr.write_bytes(make_csr(REVOKED, uris=[device_uri(REVOKED)]))
    _dmboot(env, "cert", "issue", "--csr", str(csr), "--cert-profile", "device", "--out", str(root / "revoked.pem"))
    log = (root / "serve.log").open("w")
    process = subprocess.Popen([sys.executable, "-m", "bootstrap", "serve", "--host", "127.0.0.1", "--port",
                                str(port)], env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"https://127.0.0.1:{port}"
    trust = ssl.create_default_context(cadata=_dmboot(env, "ca", "show", "--pem"))  # our root, verified
    try:
        for _ in range(300):  # bounded: up to ~30 s for the server to come up
            if process.poll() is not None:
                raise AssertionError(f"dmboot serve exited: {(root / 'serve.log').read_text()}")
            try:
                if httpx.get(f"{base}/healthz", verify=trust, timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


@pytest.fixture(scope="module")
def page(server: str) -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    if ARTIFACTS.exists():
        shutil.rmtree(ARTIFACTS)
    ARTIFACTS.mkdir(parents=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        context = browser.new_context(ignore_https_errors=True, base_url=server, viewport={"width": 1280,
                                                                                          "height": 900})
        errors: list[str] = []
        tab = context.new_page()
        tab.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
        yield tab
        context.close()
        browser.close()
        assert not [e for e in errors if "Content Security Policy" in e], errors


def _shot(page: object, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)  # type: ignore[attr-defined]


def test_browser_walkthrough(page: object) -> None:
    p = page  # playwright Page (typed loosely: the package is optional for mypy)
    # 1. Log in.
    p.goto("/console/")  # type: ignore[attr-defined]
    assert p.url.endswith("/console/login?next=/console/")  # type: ignore[attr-defined]
    p.fill("input[name=username]", "alice")  # type: ignore[attr-defined]
    p.fill("input[name=password]", "not the password")  # type: ignore[attr-defined]
    p.click("button:has-text('Log in')")  # type: ignore[attr-defined]
    assert "wrong username or password" in p.inner_text("main")  # type: ignore[attr-defined]
    p.fill("input[name=username]", "alice")  # type: ignore[attr-defined]
    p.fill("input[name=password]", PASSWORD)  # type: ignore[attr-defined]
    p.click("button:has-text('Log in')")  # type: ignore[attr-defined]
    p.wait_for_url("**/console/")  # type: ignore[attr-defined]
    assert "Dashboard" in p.inner_text("h1")  # type: ignore[attr-defined]
    assert int(p.inner_text("#issued-today")) >= 2  # type: ignore[attr-defined] # TLS cert + the device's
    cookies = {c["name"]: c for c in p.context.cookies()}  # type: ignore[attr-defined]
    session = cookies["__Host-dmboot-session"]
    assert session["httpOnly"] and session["secure"] and session["sameSite"] == "Strict"
    _shot(p, "01-dashboard")

    # 2. DM servers, then an enrollment profile (one refused for a bad field first).
    for server_id, name in (("dm-home", "Home DM"), ("dm-work", "Work DM")):
        p.goto("/console/servers")  # type: ignore[attr-defined]
        form = "#add-server"
        p.fill(f"{form} input[name=server_id]", server_id)  # type: ignore[attr-defined]
        p.fill(f"{form} input[name=name]", name)  # type: ignore[attr-defined]
        p.fill(f"{form} input[name=url]", f"https://{server_id}.example.net/dm")  # type: ignore[attr-defined]
        p.click(f"{form} button")  # type: ignore[attr-defined]
        assert "DM server added" in p.inner_text("main")  # type: ignore[attr-defined]
    p.goto("/console/profiles/new")  # type: ignore[attr-defined]
    p.fill("input[name=name]", "home-fleet")  # type: ignore[attr-defined]
    p.fill("input[name=description]", "Home gateways")  # type: ignore[attr-defined]
    # Both servers allowed; dm-work (listed second) is made the default: it must come first.
    p.check("input[aria-label='allowed: dm-home']")  # type: ignore[attr-defined]
    p.check("input[aria-label='allowed: dm-work']")  # type: ignore[attr-defined]
    p.check("input[aria-label='default: dm-work']")  # type: ignore[attr-defined]
    p.fill("input[name=dmacc_Name]", "Home DM")  # type: ignore[attr-defined]
    p.fill("textarea[name=dmacc_Perm]", "not-a-moid")  # type: ignore[attr-defined]
    p.fill("input[name=dmacc_NotiType]", "sms")  # type: ignore[attr-defined]
    p.fill("input[name=validity_days]", "99999")  # type: ignore[attr-defined]
    p.fill("textarea[name=extra_mos]", json.dumps([PACKAGE], indent=2))  # type: ignore[attr-defined]
    p.click("button:has-text('Create profile')")  # type: ignore[attr-defined]
    # The first problem (the bad MOID) is named at its own field, with everything typed kept.
    assert "dmacc.Perm" in p.inner_text("#form-error")  # type: ignore[attr-defined]
    assert "MOID" in p.inner_text("#error-dmacc-Perm")  # type: ignore[attr-defined]
    assert p.input_value("input[name=dmacc_Name]") == "Home DM"  # type: ignore[attr-defined]
    assert p.is_checked("input[aria-label='default: dm-work']")  # type: ignore[attr-defined]
    _shot(p, "02-profile-dmacc-field-error")
    p.fill("textarea[name=dmacc_Perm]", "urn:oma:mo:oma-dm-devinfo:1.0")  # type: ignore[attr-defined]
    p.click("button:has-text('Create profile')")  # type: ignore[attr-defined]
    assert "validity_days" in p.inner_text("#form-error")  # type: ignore[attr-defined]
    assert "3650" in p.inner_text("#error-validity_days")  # type: ignore[attr-defined]
    _shot(p, "02b-profile-validation")
    p.fill("input[name=validity_days]", "730")  # type: ignore[attr-defined]
    p.click("button:has-text('Create profile')")  # type: ignore[attr-defined]
    p.wait_for_url("**/console/profiles?done=profile")  # type: ignore[attr-defined]
    assert "dm-work, dm-home" in p.inner_text("table")  # type: ignore[attr-defined]
    _shot(p, "03-profiles")
    p.click("a:has-text('home-fleet')")  # type: ignore[attr-defined]
    listed = p.inner_text("#dm-servers")  # type: ignore[attr-defined]
    assert listed.index("dm-work") < listed.index("dm-home")  # the default first
    assert p.is_checked("input[aria-label='default: dm-work']")  # type: ignore[attr-defined]
    assert p.input_value("input[name=dmacc_NotiType]") == "sms"  # type: ignore[attr-defined]
    _shot(p, "03b-profile-editor")

    # 3. A claim code for the device, shown once.
    p.goto("/console/claim-codes")  # type: ignore[attr-defined]
    p.fill("#new-claim-code input[name=dev_id]", DEVICE)  # type: ignore[attr-defined]
    p.select_option("#new-claim-code select[name=profile]", "home-fleet")  # type: ignore[attr-defined]
    p.click("#new-claim-code button")  # type: ignore[attr-defined]
    code = p.inner_text("#claim-code").strip()  # type: ignore[attr-defined]
    assert code.startswith("dmt_")
    _shot(p, "04-claim-code")
    p.goto("/console/claim-codes")  # type: ignore[attr-defined]
    assert code not in p.content()  # type: ignore[attr-defined]

    # 4. The subscriber registers the device (a separate browser context: no admin cookie).
    subscriber = p.context.browser.new_context(ignore_https_errors=True,  # type: ignore[attr-defined]
                                               base_url=p.url.split("/console")[0])  # type: ignore[attr-defined]
    s = subscriber.new_page()
    s.goto("/subscriber/")
    s.fill("input[name=dev_id]", DEVICE)
    s.fill("input[name=code]", code)
    s.click("button:has-text('Continue')")
    s.wait_for_url("**/subscriber/device")
    s.check("#server-form input[value=dm-work]")
    s.click("#server-form button")
    assert "Saved" in s.inner_text("#saved-server")
    s.check(f"#packages-form input[value='{PACKAGE['ClientURI']}']")
    s.click("#packages-form button")
    assert "Saved" in s.inner_text("#saved-packages")
    s.screenshot(path=str(ARTIFACTS / "05-subscriber.png"), full_page=True)
    subscriber.close()
    p.goto(f"/console/devices/{DEVICE}")  # type: ignore[attr-defined]
    facts = p.inner_text("dl.facts")  # type: ignore[attr-defined]
    assert "dm-work" in facts and PACKAGE["ClientURI"] in facts
    assert "subscriber.packages.set" in p.inner_text("main")  # type: ignore[attr-defined]

    # 5. Revoke a device that has a certificate (registered in the profile by making its claim code).
    p.goto("/console/claim-codes")  # type: ignore[attr-defined]
    p.fill("#new-claim-code input[name=dev_id]", REVOKED)  # type: ignore[attr-defined]
    p.select_option("#new-claim-code select[name=profile]", "home-fleet")  # type: ignore[attr-defined]
    p.click("#new-claim-code button")  # type: ignore[attr-defined]
    p.goto("/console/devices")  # type: ignore[attr-defined]
    _shot(p, "05b-devices")
    p.click(f"text={REVOKED}")  # type: ignore[attr-defined]
    p.wait_for_url(f"**/console/devices/{REVOKED}")  # type: ignore[attr-defined]
    p.fill("#revoke-form input[name=confirm]", "IMEI:typo")  # type: ignore[attr-defined]
    with p.expect_navigation() as wrong:  # type: ignore[attr-defined]
        p.click("#revoke-form button")  # type: ignore[attr-defined]
    assert wrong.value.status == 400
    assert f"Type the DevID {REVOKED}" in p.inner_text("#revoke-error")  # type: ignore[attr-defined]
    assert p.inner_text("#device-status") != "blocked"  # type: ignore[attr-defined]
    _shot(p, "05c-revoke-wrong-confirmation")
    p.select_option("#revoke-form select[name=reason]", "keyCompromise")  # type: ignore[attr-defined]
    p.fill("#revoke-form input[name=confirm]", REVOKED)  # type: ignore[attr-defined]
    p.click("#revoke-form button")  # type: ignore[attr-defined]
    assert "revoked" in p.inner_text("#revoked")  # type: ignore[attr-defined]
    assert p.inner_text("#device-status") == "blocked"  # type: ignore[attr-defined]
    assert "keyCompromise" in p.inner_text("main")  # type: ignore[attr-defined]
    _shot(p, "06-revoked")

    # 6. The audit trail shows it all, and the chain holds.
    p.goto("/console/audit?action=cert.revoke")  # type: ignore[attr-defined]
    assert "admin:alice" in p.inner_text("table.audit")  # type: ignore[attr-defined]
    _shot(p, "07-audit")
    p.goto("/console/audit/verify")  # type: ignore[attr-defined]
    assert p.is_visible("#chain-ok")  # type: ignore[attr-defined]

    # 7. A TPM maker's EK root, trusted for the profile (TPM attestation, docs/tpm.md).
    ek_root = make_maker("Browser TPM Maker Root").cert.public_bytes(Encoding.PEM).decode()
    p.goto("/console/cas")  # type: ignore[attr-defined]
    p.click("#tpm-ca-add summary")  # type: ignore[attr-defined]
    p.select_option("#tpm-ca-add select[name=profile]", "home-fleet")  # type: ignore[attr-defined]
    p.fill("#tpm-ca-add input[name=name]", "tpm-maker-root")  # type: ignore[attr-defined]
    p.fill("#tpm-ca-add textarea[name=pem]", ek_root)  # type: ignore[attr-defined]
    p.click("#tpm-ca-add button")  # type: ignore[attr-defined]
    p.wait_for_url("**/console/cas?done=tpm")  # type: ignore[attr-defined]
    row = p.inner_text("#tpm-cas")  # type: ignore[attr-defined]
    assert "home-fleet" in row and "tpm-maker-root" in row and "enabled" in row
    _shot(p, "08-tpm-maker-ca")
