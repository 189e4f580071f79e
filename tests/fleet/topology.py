"""The deployment of deploy/, brought up on this machine: nginx, two replicas, PostgreSQL, OpenBao (AppRole).

Every piece comes from deploy/ as an operator would use it: the database from
``postgresql/setup.sql`` (psql), the Vault mounts, policy and AppRole from
``openbao/setup-approle.sh`` (bao CLI), each replica's environment from the
``systemd/*.env.example`` files and its command from ``dmboot@.service``'s
ExecStart, and nginx's server block from ``nginx/dmboot.conf.template`` rendered by
envsubst. Only what must differ on a test machine is replaced: addresses, ports,
file paths, and the credentials the setup produced.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shlex
import signal
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.peers import find_peer
from tests.support.servers import free_port, stop_process, wait_ready

__all__ = ["DEPLOY", "Nginx", "Replica", "drop_database", "env_file", "exec_start", "find_nginx", "post_json",
           "replica_env", "setup_database"]

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
UNIT = DEPLOY / "systemd" / "dmboot@.service"


def env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines of an EnvironmentFile (comments and blank lines skipped)."""
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if line.strip() and line[0] != "#")
    return {key.strip(): value.strip() for key, value in pairs}


def exec_start() -> list[str]:
    """The unit's ExecStart, with the installed ``dmboot`` replaced by this interpreter's package."""
    line = next(x for x in UNIT.read_text().splitlines() if x.startswith("ExecStart="))
    argv = shlex.split(line.removeprefix("ExecStart="))
    assert Path(argv[0]).name == "dmboot", argv
    return [sys.executable, "-m", "bootstrap", *argv[1:]]


def find_nginx() -> Path | None:
    return find_peer("nginx")


def setup_database(admin_url: str) -> tuple[str, str, str]:
    """Run deploy/postgresql/setup.sql for a fresh role and database; (role, database, URL)."""
    name = f"dmb_{secrets.token_hex(5)}"
    password = secrets.token_urlsafe(16)
    subprocess.run(["psql", admin_url, "-v", "ON_ERROR_STOP=1", "-q", "-v", f"role={name}", "-v",
                    f"database={name}", "-v", f"password={password}", "-f", str(DEPLOY / "postgresql" / "setup.sql")],
                   check=True, capture_output=True)
    host = re.sub(r"^postgresql://([^/@]*@)?", "", admin_url).split("/")[0]
    return name, name, f"postgresql://{name}:{password}@{host}/{name}"


def drop_database(admin_url: str, role: str, database: str) -> None:
    subprocess.run(["psql", admin_url, "-q", "-c", f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)',
                    "-c", f'DROP ROLE IF EXISTS "{role}"'], check=False, capture_output=True)


@dataclass
class Replica:
    """One ``dmboot serve`` as dmboot@N.service runs it."""

    index: int
    env: dict[str, str]
    workdir: Path
    context: ssl.SSLContext
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0
    logs: list[Path] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"https://localhost:{self.env['DMBOOT_PORT']}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.env['DMBOOT_METRICS_PORT']}/metrics"

    def start(self) -> None:
        self.starts += 1
        log = self.workdir / f"replica-{self.index}.{self.starts}.log"
        self.logs.append(log)
        with log.open("wb") as handle:
            self.process = subprocess.Popen(exec_start(), env=self.env, stdout=subprocess.DEVNULL, stderr=handle,
                                            stdin=subprocess.DEVNULL)
        wait_ready(f"{self.url}/readyz", self.context, self.process, log)

    def kill(self) -> None:
        """SIGKILL: no shutdown, no goodbye - a lost machine."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        stop_process(self.process)


@dataclass
class Nginx:
    """Real nginx in the foreground, with a config in ``workdir``, in front of the replicas."""

    binary: Path
    workdir: Path
    port: int
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"https://localhost:{self.port}"

    def start(self, variables: dict[str, str], context: ssl.SSLContext) -> None:
        template = (DEPLOY / "nginx" / "dmboot.conf.template").read_text()
        names = " ".join(f"${name}" for name in variables)
        rendered = subprocess.run(["envsubst", names], input=template, capture_output=True, text=True, check=True,
                                  env={**os.environ, **variables})
        assert "${DMBOOT_" not in rendered.stdout, "a template variable was left unrendered"
        (self.workdir / "dmboot.conf").write_text(rendered.stdout)
        temp = "\n".join(f"    {kind}_temp_path {self.workdir / kind};"
                         for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        user = "user root root;\n" if os.geteuid() == 0 else ""  # workers then read the test's 0700 tmp dirs
        (self.workdir / "nginx.conf").write_text(f"""{user}daemon off;
worker_processes 1;
pid {self.workdir / "nginx.pid"};
error_log {self.workdir / "error.log"} notice;
events {{ worker_connections 512; }}
http {{
    access_log {self.workdir / "access.log"};
{temp}
    include {self.workdir / "dmboot.conf"};
}}
""")
        argv = [str(self.binary), "-p", str(self.workdir), "-c", str(self.workdir / "nginx.conf"),
                "-e", str(self.workdir / "error.log")]
        checked = subprocess.run([*argv, "-t"], capture_output=True, text=True)
        assert checked.returncode == 0, checked.stderr
        self.process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                        stdin=subprocess.DEVNULL)
        wait_ready(f"{self.url}/healthz", context, self.process, self.workdir / "error.log")

    def stop(self) -> None:
        stop_process(self.process, signal.SIGQUIT)  # nginx: graceful shutdown


def post_json(url: str, body: dict[str, Any], context: ssl.SSLContext) -> tuple[int, dict[str, Any]]:
    """POST a JSON document; (status, JSON answer). A gateway error's body may be HTML: {} then."""
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",  # noqa: S310 - local
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, context=context, timeout=60) as response:  # noqa: S310
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        with exc:
            raw = exc.read()
        try:
            return exc.code, json.loads(raw)
        except ValueError:
            return exc.code, {}


def replica_env(index: int, base: dict[str, str], workdir: Path) -> dict[str, str]:
    """dmboot.env + replica-N.env from deploy/systemd, plus the unit's own Environment= lines, for this machine."""
    shared = env_file(DEPLOY / "systemd" / "dmboot.env.example")
    own = env_file(DEPLOY / "systemd" / f"replica-{index}.env.example")
    changed = {"DMBOOT_PORT": str(free_port()), "DMBOOT_METRICS_PORT": str(free_port()),
               "DMBOOT_DATA_DIR": str(workdir / f"replica-{index}")}
    assert set(base) <= set(shared) | {"DMBOOT_VAULT_SECRET_ID_FILE"}, set(base) - set(shared)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DMBOOT_", "BAO_", "VAULT_", "PROMETHEUS_"))}
    return {**env, **shared, **own, **base, **changed}
