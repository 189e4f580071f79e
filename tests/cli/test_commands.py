"""Help that reads as help, `config show`, `token list`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer.main
from typer.testing import CliRunner, Result

from bootstrap.cli import app
from bootstrap.cli.help_text import tidy
from bootstrap.runtime import Runtime
from bootstrap.settings import Secret, Settings

PASSPHRASE = "commands-test-pass"


def _paths(command: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    yield path
    if not hasattr(command, "list_commands"):
        return
    context = command.make_context("dmboot", ["--help"], resilient_parsing=True)
    for name in command.list_commands(context):  # the root's groups load on demand (bootstrap/cli/lazy.py)
        yield from _paths(command.get_command(context, name), (*path, name))


def test_no_command_help_shows_python_types_or_rest(capsys: pytest.CaptureFixture[str],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    root = tidy(typer.main.get_command(app))
    paths = list(_paths(root))
    assert len(paths) > 50
    for path in paths:
        root.main([*path, "--help"], prog_name="dmboot", standalone_mode=False)
        output = capsys.readouterr().out
        assert "Usage: dmboot" in output, path
        for bad in ("<bool>", "<str>", "<int>", "<list[", "<path>", "<datetime>", "``"):
            assert bad not in output, (path, bad, output)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    runtime, _ = Runtime.initialize(Settings(data_dir=path, keystore_passphrase=Secret(PASSPHRASE)), actor="test")
    runtime.close()
    return path


def dmboot(data_dir: Path, *args: str, **env: str) -> Result:
    environ: dict[str, str | None] = {"DMBOOT_DATA_DIR": str(data_dir), "DMBOOT_KEYSTORE_PASSPHRASE": PASSPHRASE,
                                      "DMBOOT_DATABASE_URL": "", "DMBOOT_PUBLIC_URL": None, "DMBOOT_PORT": None, **env}
    return CliRunner().invoke(app, list(args), env=environ)


def test_config_show_says_where_each_setting_came_from(data_dir: Path) -> None:
    result = dmboot(data_dir, "config", "show", "--json", DMBOOT_LOG_LEVEL="debug")
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)["settings"]
    assert shown["log_level"] == {"value": "debug", "source": "environment DMBOOT_LOG_LEVEL"}
    assert shown["port"] == {"value": 8443, "source": f"config file {data_dir / 'dmboot.toml'}"}
    assert shown["public_url"] == {"value": "https://localhost:8443", "source": "derived from port"}
    assert shown["keystore_passphrase"] == {"value": "(set, hidden)",
                                            "source": "environment DMBOOT_KEYSTORE_PASSPHRASE"}
    assert shown["max_body_bytes"]["source"] == "default"
    assert PASSPHRASE not in result.stdout
    text = dmboot(data_dir, "config", "show")
    assert text.exit_code == 0 and "derived from port" in text.stdout and PASSPHRASE not in text.stdout


def test_token_list_shows_tokens_but_never_the_secret(data_dir: Path) -> None:
    created = dmboot(data_dir, "token", "create", "ci-bot", "--role", "auditor")
    assert created.exit_code == 0, created.output
    secret = created.stdout.strip()
    listed = dmboot(data_dir, "token", "list", "--json")
    doc = json.loads(listed.stdout)
    assert doc["total"] == 1 and doc["tokens"][0]["name"] == "ci-bot" and doc["tokens"][0]["roles"] == ["auditor"]
    text = dmboot(data_dir, "token", "list")
    assert "ci-bot" in text.stdout and "active" in text.stdout and "1 tokens" in text.stdout
    assert secret not in listed.stdout + text.stdout


def test_cert_issue_takes_cert_profile_and_the_old_spelling_warns(data_dir: Path, tmp_path: Path) -> None:
    from tests.factories import make_csr

    (tmp_path / "req.pem").write_bytes(make_csr("IMEI:490154203237518"))
    new = dmboot(data_dir, "cert", "issue", "--csr", str(tmp_path / "req.pem"), "--cert-profile", "device", "--json")
    assert new.exit_code == 0, new.output
    assert json.loads(new.stdout)["profile"] == "device" and "deprecated" not in new.stderr
    (tmp_path / "req2.pem").write_bytes(make_csr("IMEI:490154203237519"))
    old = dmboot(data_dir, "cert", "issue", "--csr", str(tmp_path / "req2.pem"), "--profile", "device", "--json")
    assert old.exit_code == 0, old.output
    assert old.stderr.strip() == "warning: `cert issue --profile` is deprecated; use --cert-profile"


def test_listings_say_how_many_there_are(data_dir: Path, tmp_path: Path) -> None:
    from tests.factories import make_csr

    for i in range(3):
        (tmp_path / f"r{i}.pem").write_bytes(make_csr(f"IMEI:49015420323750{i}"))
        assert dmboot(data_dir, "cert", "issue", "--csr", str(tmp_path / f"r{i}.pem"), "--cert-profile",
                      "device").exit_code == 0
    listed = dmboot(data_dir, "cert", "list", "--limit", "2")
    assert listed.exit_code == 0, listed.output
    assert len(listed.stdout.splitlines()) == 2
    # 3 devices + the service's own TLS certificate (dm-server), issued by init.
    assert listed.stderr.strip() == "2 of 4 certificates; next page: --after 3"
    devices = dmboot(data_dir, "device", "list")
    assert devices.exit_code == 0 and devices.stderr.strip() == "0 of 0 devices"
