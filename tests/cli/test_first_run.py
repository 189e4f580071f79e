"""What a newcomer meets first: --version, port choices, errors in one line, where the data is."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from bootstrap.settings import load_with_sources
from tests.support.servers import free_port

DMBOOT = [sys.executable, "-m", "bootstrap"]


def dmboot(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("DMBOOT_")}
    environ |= {"DMBOOT_KEYSTORE_PASSPHRASE": "first-run-pass", **env}
    return subprocess.run([*DMBOOT, *args], cwd=cwd, capture_output=True, text=True, env=environ, check=False)


def test_version_prints_and_exits_zero(tmp_path: Path) -> None:
    result = dmboot(tmp_path, "--version")
    assert result.returncode == 0 and result.stdout.startswith("dmboot "), result.stderr


@pytest.mark.parametrize("port", ["80000", "0"])
def test_port_out_of_range_is_one_line(tmp_path: Path, port: str) -> None:
    result = dmboot(tmp_path, "serve", "--port", port)
    assert result.returncode == 1
    assert result.stderr.strip() == f"error: port {port} is out of range", result.stderr


def test_port_in_use_is_refused_before_anything_is_said(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = dmboot(tmp_path, "--data-dir", "d", "serve", "--port", str(port))
    assert result.returncode == 1
    assert result.stdout == ""  # no "serving on", no "created ..."
    assert result.stderr.strip().splitlines() == [
        f"error: port {port} on 127.0.0.1 is already in use; stop what listens there or pick another with --port"]
    assert not (tmp_path / "d").exists()  # nothing half-done


def test_listen_port_and_public_url_on_different_ports_warns(tmp_path: Path) -> None:
    with socket.socket() as taken:  # keeps serve from starting: the warning comes first
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = dmboot(tmp_path, "serve", "--port", str(port), DMBOOT_PUBLIC_URL="https://localhost:8443")
        behind_proxy = dmboot(tmp_path, "serve", "--port", str(port), DMBOOT_PUBLIC_URL="https://dm.example:443",
                              DMBOOT_TRUSTED_PROXIES="127.0.0.1")
    warning = result.stderr.splitlines()[0]
    assert warning.startswith(
        f"warning: listening on port {port} but public_url https://localhost:8443 names port 8443")
    assert result.returncode == 1 and behind_proxy.returncode == 1
    assert "warning" not in behind_proxy.stderr


def test_public_url_follows_the_port_unless_set() -> None:
    settings, sources = load_with_sources({}, Path("/nonexistent.toml"), {"port": 18643})
    assert settings.public_url == "https://localhost:18643"
    assert sources["public_url"] == "derived from port" and sources["port"] == "command line"
    pinned, sources = load_with_sources({"DMBOOT_PUBLIC_URL": "https://dm.example"}, Path("/nonexistent.toml"),
                                        {"port": 18643})
    assert pinned.public_url == "https://dm.example"
    assert sources["public_url"] == "environment DMBOOT_PUBLIC_URL"


def test_init_port_keeps_public_url_following_it(tmp_path: Path) -> None:
    port = free_port()
    assert dmboot(tmp_path, "--data-dir", "d", "init", "--port", str(port)).returncode == 0
    config = tomllib.loads((tmp_path / "d" / "dmboot.toml").read_text())
    assert config["port"] == port and "public_url" not in config
    assert dmboot(tmp_path, "--data-dir", "e", "init", "--public-url", "https://dm.example.net").returncode == 0
    assert tomllib.loads((tmp_path / "e" / "dmboot.toml").read_text())["public_url"] == "https://dm.example.net"


def test_missing_data_dir_names_the_absolute_path_and_how_to_point_at_it(tmp_path: Path) -> None:
    result = dmboot(tmp_path, "cert", "list")
    assert result.returncode == 1
    line = result.stderr.strip()
    assert line.startswith(f"error: no data directory at {tmp_path / 'data'} (a relative path")
    assert "--data-dir DIR" in line and "DMBOOT_DATA_DIR" in line and "with a new CA" in line


def test_version_imports_neither_the_database_layer_nor_cryptography() -> None:
    probe = ("import sys; sys.argv = ['dmboot', '--version']; from bootstrap.cli import main; main(); "
             "print(sorted(m for m in ('sqlalchemy', 'cryptography', 'typer', 'bootstrap.runtime')"
             " if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.splitlines() == ["dmboot 0.1.0", "[]"]


def test_keystore_warning_once_per_data_dir_and_never_with_quiet(tmp_path: Path) -> None:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("DMBOOT_")}  # key file, no passphrase

    def init(*args: str) -> str:
        done = subprocess.run([*DMBOOT, *args, "init"], cwd=tmp_path, env=environ, capture_output=True, text=True,
                              check=True)
        return done.stderr

    first, again = init("--data-dir", "a"), init("--data-dir", "a")
    assert first.count("warning: embedded keystore") == 1 and "shown once" in first
    assert "warning" not in again
    assert "warning" not in init("--quiet", "--data-dir", "b")


HEAVY = ("sqlalchemy", "sqlmodel", "cryptography", "starlette", "bootstrap.runtime", "pydantic")


@pytest.mark.parametrize("args", [["config", "show"], ["config", "show", "--json"], ["--help"], ["config", "--help"],
                                  ["cert", "--help"], ["cert", "revoke", "--help"], ["ca", "--help"],
                                  ["audit", "--help"], ["profile", "--help"], ["device", "list", "--help"],
                                  ["token", "--help"], ["admin", "--help"]], ids=" ".join)
def test_simple_commands_import_no_database_layer_or_cryptography(tmp_path: Path, args: list[str]) -> None:
    # `dmboot config show` took a second importing every command group's services; the groups
    # load when named now (bootstrap/cli/lazy.py). Timing is bench/cli_start.py's job, not a test's.
    probe = (f"import sys; sys.argv = ['dmboot', *{args!r}]\nfrom bootstrap.cli import main\n"
             "try:\n    main()\nexcept SystemExit as exit:\n    assert not exit.code, exit.code\n"
             f"print('heavy:', sorted(m for m in {HEAVY!r} if m in sys.modules))")
    environ = {k: v for k, v in os.environ.items() if not k.startswith("DMBOOT_")}
    result = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=environ, capture_output=True, text=True,
                            check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "heavy: []"


def test_every_command_group_loads_with_the_help_line_it_is_listed_with() -> None:
    import typer.main

    from bootstrap.cli.lazy import GROUPS
    from bootstrap.cli.main import app

    root = typer.main.get_command(app)
    context = root.make_context("dmboot", ["--help"], resilient_parsing=True)
    for name, spec in GROUPS.items():
        group = root.get_command(context, name)
        assert group is not None and group.name == name
        assert group.help == spec.help, name
        assert getattr(group, "commands", None), name  # a group, even with one command (`config show`)
    assert [n for n in root.list_commands(context) if n in GROUPS] == list(GROUPS)
    assert {"init", "serve", "db"} <= set(root.list_commands(context))


def test_a_mistyped_group_is_suggested(tmp_path: Path) -> None:
    result = dmboot(tmp_path, "crt", "list")
    assert result.returncode == 2 and "Did you mean 'cert'" in result.stderr, result.stderr
