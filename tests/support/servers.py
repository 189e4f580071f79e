"""Starting real servers in tests: a free loopback port, and waiting until one answers."""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

__all__ = ["free_port", "poll", "post_json", "serve_replicas", "stop_process", "wait_ready"]

#: How long a cold server start may take. A readiness wait, not a test time limit.
READY_SECONDS = 120


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(url: str, context: ssl.SSLContext, process: subprocess.Popen[bytes], log: Path | None = None) -> None:
    """Poll ``url`` until it answers 200; fail at once, with the log's tail, if ``process`` exits."""
    deadline = time.monotonic() + READY_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"server exited with {process.returncode}:\n{_tail(log)}")
        try:
            with urllib.request.urlopen(url, context=context, timeout=5) as response:  # noqa: S310
                if response.status == 200:
                    return
        except (OSError, urllib.error.URLError):
            pass
        time.sleep(0.2)
    raise AssertionError(f"{url} did not become ready:\n{_tail(log)}")


def _tail(log: Path | None) -> str:
    return log.read_text(errors="replace")[-4000:] if log is not None and log.exists() else ""


def poll(probe: Callable[[], T], done: Callable[[T], bool], interval: float = 0.2) -> T:
    """Call ``probe`` until ``done(result)``; return that result, or the last one after READY_SECONDS.

    For state that other processes reach eventually; the caller asserts on the result.
    """
    deadline = time.monotonic() + READY_SECONDS
    result = probe()
    while not done(result) and time.monotonic() < deadline:
        time.sleep(interval)
        result = probe()
    return result


def stop_process(process: subprocess.Popen[bytes] | None, how: signal.Signals = signal.SIGTERM) -> None:
    """Stop ``process`` with ``how``, SIGKILL if it lingers; nothing if it is gone already."""
    if process is None or process.poll() is not None:
        return
    process.send_signal(how)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def serve_replicas(stack: ExitStack, env_extra: dict[str, str], context: ssl.SSLContext, logs: Path,
                   count: int = 2) -> tuple[str, ...]:
    """``count`` real ``dmboot serve`` processes sharing one data dir and database (``env_extra``), each
    on a free port, ready; stopped when ``stack`` closes. Their URLs, ``https://localhost:<port>``."""
    env = {**os.environ, **env_extra}
    urls = []
    for index in range(count):
        port = free_port()
        log = stack.enter_context((logs / f"serve-{index}.log").open("wb"))
        process = subprocess.Popen([sys.executable, "-m", "bootstrap", "serve", "--port", str(port)], env=env,
                                   stdout=log, stderr=subprocess.STDOUT)
        stack.callback(process.wait, 30)
        stack.callback(process.terminate)
        wait_ready(f"https://localhost:{port}/healthz", context, process)
        urls.append(f"https://localhost:{port}")
    return tuple(urls)


def post_json(url: str, body: dict[str, Any], context: ssl.SSLContext) -> tuple[int, dict[str, Any]]:
    """POST ``body`` as JSON; the status and the JSON answer (a problem document on an HTTP error)."""
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",  # noqa: S310 - https
                                     headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, context=context, timeout=120) as response:  # noqa: S310 - https
            answer: dict[str, Any] = json.loads(response.read())
            return response.status, answer
    except urllib.error.HTTPError as error:
        problem: dict[str, Any] = json.loads(error.read())
        return error.code, problem
