"""Starting real servers in tests: a free loopback port, and waiting until one answers."""

from __future__ import annotations

import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

__all__ = ["free_port", "poll", "stop_process", "wait_ready"]

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
