"""CSRF protection: a synchronizer token per session, checked on every POST.

The token is HMAC-SHA256(session token, "csrf"): tied to the session, known to the
server without storing anything, and useless for recovering the session token
(which the HttpOnly cookie keeps from scripts anyway). Forms carry it in a hidden
``csrf`` field. Before login, the same derivation runs over the anonymous
``__Host-dmboot-pre`` cookie, so the login and claim forms are protected too
(login CSRF). SameSite=Strict cookies are a second, independent line.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

__all__ = ["csrf_token", "csrf_valid"]


def csrf_token(session_token: str) -> str:
    """The form token for the session (or pre-session) token."""
    mac = hmac.new(session_token.encode(), b"dmboot console csrf", hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).decode().rstrip("=")


def csrf_valid(session_token: str | None, submitted: object) -> bool:
    """Whether ``submitted`` is the form token of ``session_token`` (constant time)."""
    if not session_token or not isinstance(submitted, str) or not submitted:
        return False
    return hmac.compare_digest(csrf_token(session_token), submitted)
