"""PSK-TLS (RFC 4279), which DM 2.0 servers SHALL support, is a documented gap (docs/security.md).

Python's ssl module gained a server-side PSK callback only in 3.13; on the Python this
service runs on it has none, so `dmboot serve` cannot offer the PSK suites itself. When
this test fails, the interpreter can serve PSK-TLS: update docs/security.md and build it.
"""

from __future__ import annotations

import ssl
import sys


def test_this_python_cannot_serve_psk_tls() -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    can_serve_psk = hasattr(context, "set_psk_server_callback")
    assert can_serve_psk == (sys.version_info >= (3, 13))
    assert not can_serve_psk, "this Python can serve PSK-TLS: docs/security.md's gap can be closed"
