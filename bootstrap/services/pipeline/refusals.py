"""Refused requests: one failure event in a transaction of its own, for every channel."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from bootstrap.errors import DmBootstrapError
from bootstrap.logs import failures
from bootstrap.services.audit import append_event
from bootstrap.store.db import Database
from pki.errors import PkiError

__all__ = ["audit_refusal", "refusal_reason"]

log = logging.getLogger(__name__)


def refusal_reason(exc: BaseException) -> str:
    """What the audit trail says of a refusal: the domain error's message, never an internal one's."""
    if not isinstance(exc, DmBootstrapError | PkiError):
        return "internal error"
    return (getattr(exc, "message", None) or str(exc) or type(exc).__name__)[:500]


def audit_refusal(database: Database, exc: BaseException, *, actor: str, action: str, target: str | None = None,
                  request_id: str | None = None, detail: Mapping[str, Any] | None = None) -> None:
    """Write the failure event of a refused request; a failure to write it is logged, not raised."""
    try:
        with database.session() as session:
            append_event(session, actor=actor[:128], action=action, outcome="failure", target=target,
                         request_id=request_id,
                         detail={**(detail or {}), "error": type(exc).__name__, "reason": refusal_reason(exc)})
    except Exception as failed:  # the original error matters more; the log counts this one (an outage: one line)
        failures.record(f"audit of a refused {action}", failed)
