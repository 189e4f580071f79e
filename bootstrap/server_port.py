"""Is the listen port free? Asked before ``serve`` says it is serving."""

from __future__ import annotations

import errno
import socket

from bootstrap.errors import ConfigurationError

__all__ = ["check_port_free"]


def check_port_free(host: str, port: int) -> None:
    """Bind ``host:port`` once, as uvicorn will, and let it go.

    Raises:
        ConfigurationError: the port is taken or the address cannot be bound, in one line.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise ConfigurationError(f"port {port} on {host} is already in use; stop what listens there "
                                         "or pick another with --port", field="port") from None
            raise ConfigurationError(f"cannot listen on {host}:{port}: {exc.strerror}", field="port") from None
