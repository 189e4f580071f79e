"""Parallel password guesses: the throttle counts each attempt before the hash, and hashing is bounded.

Expected values come from the throttle's documented policy (5 free failures,
then the name is locked) and from RFC 7914: one scrypt hash at n=2**17, r=8
needs 128 * r * n bytes = 128 MiB.
"""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlmodel import select

from bootstrap.errors import AuthenticationFailed, TooManyAttempts
from bootstrap.runtime import Runtime
from bootstrap.services.admins import AdminAccountService
from bootstrap.store.models import AuditEvent
from tests.support.admins import PASSWORD, fast_admins, make_admin
from tests.support.servers import free_port

FREE_FAILURES = 5  # docs/security.md: five failures, then the name is locked
GUESSES = 40
MIB = 2**20


@pytest.fixture
def admins(runtime: Runtime) -> AdminAccountService:
    return fast_admins(runtime)


def _login_events(runtime: Runtime) -> list[AuditEvent]:
    with runtime.database.session() as session:
        return list(session.exec(select(AuditEvent).where(AuditEvent.action == "admin.login")).all())


def test_parallel_guesses_evaluate_at_most_the_free_failures(runtime: Runtime, admins: AdminAccountService) -> None:
    make_admin(runtime, "pat", "provisioning-admin")
    # All wrong: a right guess among them, if evaluated early, would clear the count (a success
    # does, by policy) and let the rest be evaluated afresh - the lock is what is under test.
    guesses = [f"wrong guess number {i:02d}" for i in range(GUESSES)]
    start = threading.Barrier(GUESSES)

    def guess(password: str) -> str:
        start.wait()
        try:
            admins.login("pat", password)
        except TooManyAttempts:
            return "refused"
        except AuthenticationFailed:
            return "wrong"
        return "accepted"

    with ThreadPoolExecutor(GUESSES) as pool:
        outcomes = list(pool.map(guess, guesses))
    evaluated = [o for o in outcomes if o != "refused"]
    assert len(evaluated) <= FREE_FAILURES, outcomes
    # The audit trail shows only the evaluated attempts.
    assert len(_login_events(runtime)) == len(evaluated)
    # The name is locked now: even the right password is not evaluated (as 40 guesses with
    # the right one among them were, before the throttle counted attempts ahead of the hash).
    with pytest.raises(TooManyAttempts):
        admins.login("pat", PASSWORD)


def test_a_success_clears_the_attempts_counted_before_it(runtime: Runtime, admins: AdminAccountService) -> None:
    make_admin(runtime, "pat", "provisioning-admin")
    for _ in range(FREE_FAILURES - 1):
        with pytest.raises(AuthenticationFailed):
            admins.login("pat", "not the password")
    admins.login("pat", PASSWORD)  # the fifth attempt is still evaluated, and clears the count
    for _ in range(FREE_FAILURES - 1):
        with pytest.raises(AuthenticationFailed) as caught:
            admins.login("pat", "not the password")
        assert not isinstance(caught.value, TooManyAttempts)


# -- a served process at the real scrypt cost --------------------------------------------------


def _peak_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc status")


@pytest.fixture
def served_http(tmp_path: Path) -> Iterator[tuple[str, int]]:
    data_dir = tmp_path / "data"
    port = free_port()
    env = {**os.environ, "DMBOOT_DATA_DIR": str(data_dir), "DMBOOT_KEYSTORE_PASSPHRASE": "race-test-passphrase"}
    log = (tmp_path / "serve.log").open("wb")
    process = subprocess.Popen([sys.executable, "-m", "bootstrap", "serve", "--port", str(port)],
                               env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_for_tls_port(port, process, tmp_path / "serve.log")
        yield f"https://127.0.0.1:{port}", process.pid
    finally:
        process.terminate()
        process.wait(timeout=60)
        log.close()


def _wait_for_tls_port(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    for _ in range(600):  # a readiness wait, not a time limit on the behaviour under test
        if process.poll() is not None:
            raise AssertionError(log.read_text(errors="replace")[-3000:])
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    raise AssertionError("server did not listen:\n" + log.read_text(errors="replace")[-3000:])


@pytest.mark.slow
def test_anonymous_logins_do_not_grow_memory_without_bound(served_http: tuple[str, int]) -> None:
    url, pid = served_http
    context = ssl._create_unverified_context()  # noqa: S323 - only the server's memory is under test
    page = urllib.request.urlopen(f"{url}/console/login", context=context)  # noqa: S310
    cookie = page.headers["set-cookie"].split(";")[0]
    csrf = page.read().decode().split('name="csrf" value="')[1].split('"')[0]
    baseline = _peak_rss(pid)

    def attempt(i: int) -> int:
        body = urllib.parse.urlencode({"username": f"nobody-{i}", "password": "a guess of twelve+",
                                       "csrf": csrf, "next": "/console/"}).encode()
        request = urllib.request.Request(f"{url}/console/login", data=body, headers={  # noqa: S310
            "Cookie": cookie, "Content-Type": "application/x-www-form-urlencoded"})
        try:
            return int(urllib.request.urlopen(request, context=context).status)  # noqa: S310
        except urllib.error.HTTPError as exc:
            return exc.code

    with ThreadPoolExecutor(GUESSES) as pool:
        statuses = list(pool.map(attempt, range(GUESSES)))
    assert set(statuses) <= {401, 429}, statuses
    grown = _peak_rss(pid) - baseline
    # At most two 128 MiB hashes at a time (passwords.MAX_CONCURRENT_HASHES), plus slack;
    # unbounded, 40 concurrent hashes would take 5 GiB.
    assert grown < 3 * 128 * MIB + 64 * MIB, f"peak RSS grew by {grown // MIB} MiB"
