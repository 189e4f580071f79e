"""Real OpenBao servers for tests, on a free local port.

:class:`BaoDevServer` runs ``bao server -dev``: everything in memory, unsealed at start
with one unseal key (printed on stdout, which we capture) and the root token we choose.
A restart therefore loses all state; :meth:`BaoDevServer.start` mounts Transit again
each time, and the root token stays the same because we pass ``-dev-root-token-id``.

:class:`BaoServer` runs a production-mode server on integrated storage (Raft) in a
directory of its own: initialised on first start, unsealed by the fixture on every
start, so keys, secrets and tokens survive a real stop and start - what a Vault
restart looks like to the service.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, Self

import hvac

from tests.support.peers import find_peer

__all__ = ["BaoDevServer", "BaoServer", "find_bao"]

# How long to wait for a fresh server to answer: a readiness wait, not a test limit.
_READY_DEADLINE = 120.0
_UNSEAL_KEY = re.compile(r"^Unseal Key: (\S+)$", re.MULTILINE)


def find_bao() -> Path | None:
    """The ``bao`` program as :func:`tests.support.peers.find_peer` finds it (None if missing)."""
    return find_peer("bao")


def _free_port_pair() -> int:
    # bao listens on the port and its cluster listener on port + 1: both must be free.
    for _ in range(100):
        with socket.socket() as first:
            first.bind(("127.0.0.1", 0))
            port = int(first.getsockname()[1])
            with socket.socket() as second:
                try:
                    second.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
        return port
    raise RuntimeError("no free pair of local ports for OpenBao")


class BaoDevServer:
    """One ``bao server -dev`` process, restartable, sealable, killed on :meth:`stop`.

    Args:
        binary: The ``bao`` executable.
        workdir: Where logs (one file per start) and, with ``tls``, certificates go.
        tls: Serve HTTPS with a CA generated at start (``-dev-tls``); see :attr:`ca_file`.
    """

    def __init__(self, binary: Path, workdir: Path, *, tls: bool = False) -> None:
        self.binary = binary
        self.workdir = workdir
        self.tls = tls
        self.port = _free_port_pair()
        self.addr = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        self.root_token = secrets.token_urlsafe(18)
        self.unseal_key: str | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._starts = 0
        self._log: Path | None = None
        self._root: hvac.Client | None = None

    # -- lifecycle ------------------------------------------------------------------

    def start(self) -> None:
        """Start the server, wait until it is unsealed and active, mount Transit."""
        if self._process is not None:
            raise RuntimeError("OpenBao is running already")
        self._starts += 1
        self._log = self.workdir / f"bao-{self._starts}.log"
        argv = [str(self.binary), "server", "-dev", "-dev-no-store-token",
                f"-dev-listen-address=127.0.0.1:{self.port}", f"-dev-root-token-id={self.root_token}"]
        if self.tls:
            self.ca_file.parent.mkdir(exist_ok=True)
            argv += ["-dev-tls", f"-dev-tls-cert-dir={self.ca_file.parent}"]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("BAO_", "VAULT_"))}
        with self._log.open("wb") as log:
            self._process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env,
                                             stdin=subprocess.DEVNULL)
        self._wait_ready()
        self.root_client().sys.enable_secrets_engine("transit", path="transit")

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL) and reap it; idempotent."""
        if self._root is not None:
            self._root.adapter.close()
            self._root = None
        process, self._process = self._process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def restart(self) -> None:
        """Stop and start again on the same address with the same root token (state is lost)."""
        self.stop()
        self.start()

    def seal(self) -> None:
        """Seal the server (``sys/seal``)."""
        self.root_client().sys.seal()

    def unseal(self) -> None:
        """Unseal with the key the dev server printed."""
        if self.unseal_key is None:
            raise RuntimeError("the dev server printed no unseal key")
        self.root_client().sys.submit_unseal_key(self.unseal_key)

    @property
    def ca_file(self) -> Path:
        """The CA certificate of a ``tls`` server (written by bao at start)."""
        return self.workdir / "tls" / "vault-ca.pem"

    @property
    def _verify(self) -> bool | str:
        return str(self.ca_file) if self.tls else True

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- clients --------------------------------------------------------------------

    def root_client(self) -> hvac.Client:
        """An hvac client with the root token (one, closed by :meth:`stop`)."""
        if self._root is None:
            self._root = hvac.Client(url=self.addr, token=self.root_token, verify=self._verify, timeout=30)
        return self._root

    def write(self, path: str, body: dict[str, Any], *, method: str = "POST") -> dict[str, Any]:
        """Send ``body`` to ``/v1/{path}`` with the root token; the JSON answer, {} for 204."""
        answer = self.root_client().adapter.request(method, f"/v1/{path}", json=body)
        return dict(answer) if isinstance(answer, dict) else {}

    def read(self, path: str) -> dict[str, Any]:
        """GET ``/v1/{path}`` with the root token."""
        answer = self.root_client().adapter.request("GET", f"/v1/{path}")
        return dict(answer) if isinstance(answer, dict) else {}

    def make_approle(self, name: str, policy: str, **role: Any) -> tuple[str, str]:
        """Load ``policy`` as ``name`` and make AppRole ``name`` whose tokens carry only it.

        ``token_no_default_policy`` proves the policy is enough on its own. Returns the
        role id and a fresh secret id. AppRole must be enabled (``enable_approle``).
        """
        self.write(f"sys/policies/acl/{name}", {"policy": policy}, method="PUT")
        self.write(f"auth/approle/role/{name}", {"token_policies": [name], "token_no_default_policy": True,
                                                 **role})
        role_id = self.read(f"auth/approle/role/{name}/role-id")["data"]["role_id"]
        secret_id = self.write(f"auth/approle/role/{name}/secret-id", {})["data"]["secret_id"]
        return str(role_id), str(secret_id)

    def enable_approle(self) -> None:
        """Enable the AppRole auth method at ``approle/``."""
        self.write("sys/auth/approle", {"type": "approle"})

    def health(self) -> dict[str, Any] | None:
        """``sys/health`` as JSON, whatever its status code; None if nothing answers."""
        url = f"{self.addr}/v1/sys/health"
        try:
            context = ssl.create_default_context(cafile=str(self.ca_file)) if self.tls else None
            with urllib.request.urlopen(url, timeout=5, context=context) as response:  # noqa: S310 - our URL
                return dict(json.load(response))
        except urllib.error.HTTPError as exc:  # 429/472/473/501/503 still carry the JSON
            return dict(json.load(exc))
        except (OSError, ValueError):
            return None

    # -- internals ------------------------------------------------------------------

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + _READY_DEADLINE
        while time.monotonic() < deadline:
            if self._process is None or self._process.poll() is not None:
                self._process = None
                raise RuntimeError(f"bao exited at start-up:\n{self.log_tail()}")
            health = self.health()
            active = health is not None and health.get("initialized") and not health.get("sealed")
            if active and health is not None and not health.get("standby"):
                key = _UNSEAL_KEY.search(self.log_text())
                if key:  # the banner with the key comes right after the server is up
                    self.unseal_key = key.group(1)
                    return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(
            f"OpenBao at {self.addr} not ready after {_READY_DEADLINE:.0f}s:\n{self.log_tail()}"
        )

    def log_text(self) -> str:
        """Everything the current (or last) server printed."""
        return self._log.read_text(errors="replace") if self._log and self._log.exists() else ""

    def log_tail(self, lines: int = 30) -> str:
        """The last ``lines`` of the server log, for error messages."""
        return "\n".join(self.log_text().splitlines()[-lines:])


class BaoServer(BaoDevServer):
    """A production-mode OpenBao (integrated Raft storage in ``workdir/raft``) whose data survive restarts.

    The first :meth:`start` initialises it with a single unseal key and enables Transit,
    KV version 2 at ``secret/`` and AppRole, as an operator would; every start unseals it
    with that key. The root token is the one initialisation returned.
    """

    def __init__(self, binary: Path, workdir: Path) -> None:
        super().__init__(binary, workdir)
        self.root_token = ""  # known after the first start

    def start(self) -> None:
        """Start (and on first start initialise) the server, unseal it, wait until it is active."""
        if self._process is not None:
            raise RuntimeError("OpenBao is running already")
        self._starts += 1
        self._log = self.workdir / f"bao-{self._starts}.log"
        argv = [str(self.binary), "server", f"-config={self._write_config()}"]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("BAO_", "VAULT_"))}
        with self._log.open("wb") as log:
            self._process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env,
                                             stdin=subprocess.DEVNULL)
        health = self._wait_for(lambda h: h is not None, "answer")
        first = not (health or {}).get("initialized")
        if first:
            bare = hvac.Client(url=self.addr, token="", timeout=60)
            answer = bare.sys.initialize(1, 1)
            bare.adapter.close()
            self.unseal_key, self.root_token = answer["keys"][0], answer["root_token"]
        self.unseal()
        if first:
            client = self.root_client()
            client.sys.enable_secrets_engine("transit", path="transit")
            client.sys.enable_secrets_engine("kv", path="secret", options={"version": "2"})
            self.enable_approle()

    def unseal(self) -> None:
        """Unseal with the key from initialisation and wait until this node is active."""
        super().unseal()
        self._wait_for(lambda h: bool(h and h.get("initialized") and not h.get("sealed") and not h.get("standby")),
                       "become active")

    def _write_config(self) -> Path:
        storage = self.workdir / "raft"
        storage.mkdir(exist_ok=True)
        config = self.workdir / "bao.hcl"
        # performance_multiplier 1: the tightest Raft timings, so a lone node elects itself fast.
        config.write_text(f"""storage "raft" {{
  path = "{storage}"
  node_id = "test"
  performance_multiplier = 1
}}
listener "tcp" {{
  address = "127.0.0.1:{self.port}"
  cluster_address = "127.0.0.1:{self.port + 1}"
  tls_disable = true
}}
api_addr = "{self.addr}"
cluster_addr = "http://127.0.0.1:{self.port + 1}"
""")
        return config

    def _wait_for(self, ready: Callable[[dict[str, Any] | None], bool], what: str) -> dict[str, Any] | None:
        deadline = time.monotonic() + _READY_DEADLINE
        while time.monotonic() < deadline:
            if self._process is None or self._process.poll() is not None:
                self._process = None
                raise RuntimeError(f"bao exited at start-up:\n{self.log_tail()}")
            health = self.health()
            if ready(health):
                return health
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"OpenBao at {self.addr} did not {what} in {_READY_DEADLINE:.0f}s:\n{self.log_tail()}")
