"""A batch's reads in bulk: the devices and tokens its requests announced, locked in one statement each.

A request says what it will read (:class:`Needs`, the ``hint`` of
:meth:`GroupCommitter.run`); the writer reads them all before the batch's
requests run, with ``SELECT ... FOR UPDATE`` in id order (every batch locks in
the same order, so two writers cannot deadlock on them), and each request takes
its rows from the session instead of a round trip of its own. A row is taken
once: a second request of the batch for the same device reads it afresh.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlmodel import Session, col, select

from bootstrap.auth.attestation import prefetch_tokens
from bootstrap.store.models import DeviceRow
from pki.identity import check_dev_id

__all__ = ["Needs", "prefetch", "take_device"]

_DEVICES = "dmboot.devices.prefetched"  # session.info: dev_id -> its row (or None), locked for the batch


@dataclass(frozen=True)
class Needs:
    """What one request will read: its device, and the hash of its enrollment token."""

    dev_id: str | None = None
    token_digest: str | None = None


def prefetch(session: Session, needs: list[Any]) -> None:
    """Read and lock the batch's devices, then its tokens (the order every request locks them in)."""
    wanted = [n for n in needs if isinstance(n, Needs)]
    # Only well-formed DevIDs: a request's malformed one is refused by its own authorizer,
    # and must not fail the statement that reads the whole batch's devices.
    dev_ids = sorted({n.dev_id for n in wanted if n.dev_id and _well_formed(n.dev_id)})
    if dev_ids:
        rows = session.exec(select(DeviceRow).where(col(DeviceRow.dev_id).in_(dev_ids))
                            .order_by(col(DeviceRow.id)).with_for_update())
        found = {row.dev_id: row for row in rows}
        session.info[_DEVICES] = {dev_id: found.get(dev_id) for dev_id in dev_ids}
    digests = sorted({n.token_digest for n in wanted if n.token_digest})
    if digests:
        prefetch_tokens(session, digests)


def take_device(session: Session, dev_id: str) -> tuple[bool, DeviceRow | None]:
    """(True, the batch's row of ``dev_id`` or None: no such device), or (False, None): not read for it."""
    prefetched: dict[str, DeviceRow | None] | None = session.info.get(_DEVICES)
    if prefetched is None or dev_id not in prefetched:
        return False, None
    return True, prefetched.pop(dev_id)


def _well_formed(dev_id: str) -> bool:
    try:
        check_dev_id(dev_id)
    except (TypeError, ValueError):
        return False
    return True
