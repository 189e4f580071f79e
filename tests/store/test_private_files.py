"""The data directory is private: 0700 directories, 0600 files (database, WAL, keystore), whatever the umask."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from bootstrap.runtime import Runtime
from bootstrap.settings import Secret, Settings


def test_everything_in_the_data_dir_is_private(tmp_path: Path) -> None:
    data = tmp_path / "data"
    old = os.umask(0o022)  # the common default, which made the database 0644
    try:
        settings = Settings(data_dir=data, database_url=f"sqlite:///{data / 'dmboot.db'}",
                            keystore_passphrase=Secret("test-passphrase-1234"), public_url="https://dmboot.test")
        runtime, _ = Runtime.initialize(settings, actor="test")
        runtime.close()
    finally:
        os.umask(old)
    found = {p.relative_to(data).as_posix(): stat.S_IMODE(p.stat().st_mode) for p in [data, *data.rglob("*")]}
    assert "dmboot.db" in found and any(name.startswith("keystore") for name in found), sorted(found)
    loose = {name: oct(mode) for name, mode in found.items()
             if mode & 0o077 and not name.endswith(".pem") and name != "dmboot.toml"}
    assert loose == {}, loose


def test_logout_without_a_csrf_token_still_ends_the_server_side_session(tmp_path: Path) -> None:
    from starlette.testclient import TestClient

    from bootstrap.app import create_app
    from tests.support.admins import CONSOLE, fast_admins, login, make_admin

    settings = Settings(data_dir=tmp_path / "data", database_url=f"sqlite:///{tmp_path / 'db.sqlite'}",
                        keystore_passphrase=Secret("test-passphrase-1234"), public_url="https://dmboot.test")
    runtime, _ = Runtime.initialize(settings, actor="test")
    try:
        fast_admins(runtime)
        make_admin(runtime, "aud", "auditor")
        with TestClient(create_app(runtime=runtime), base_url=CONSOLE) as client:
            login(client, "aud")
            cookie = dict(client.cookies)
            client.post("/console/logout", follow_redirects=False)  # no CSRF token
            client.cookies.clear()
            client.cookies.update(cookie)  # the stolen cookie, replayed
            replay = client.get("/console/audit", follow_redirects=False)
        assert replay.status_code in (302, 303) and "/console/login" in replay.headers["location"]
    finally:
        runtime.close()
