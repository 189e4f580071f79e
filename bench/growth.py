"""Pre-fill a PostgreSQL database with N certificate rows and their N audit events.

One ``INSERT ... SELECT FROM generate_series(1, N)`` per table, in the server: a
million rows of each take a minute or two, not the hours real issuance would.
Columns come from the tables the code defines (``bootstrap.store.models``), so a
new column needs no change here unless it is NOT NULL without a default and of a
type the fallbacks below cannot fill. Values:

- certificates: valid ``device`` certificates of the active issuing CA, a unique
  159-bit-looking serial and a unique fingerprint per row, a real PEM (the issuing
  CA's own, for its size), ``created_at`` spread over the last year;
- audit events: ``certificate.issue`` events with consecutive ``seq`` numbers after
  the existing ones and made-up hashes; the chain head (if the schema has one) is
  moved to the last of them, so new events chain on. ``dmboot audit verify`` fails
  on such a database: it is a bench database, dropped afterwards.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import Table, text
from sqlalchemy.engine import Engine
from sqlalchemy.types import Boolean, DateTime, Integer, String

__all__ = ["fill"]


def _fallback(column: Any) -> str:
    if isinstance(column.type, Integer):
        return "g"
    if isinstance(column.type, DateTime):
        return "now()"
    if isinstance(column.type, Boolean):
        return "false"
    if isinstance(column.type, String):
        return "'bench-' || g"
    raise SystemExit(f"bench/growth.py cannot fill {column.table.name}.{column.name} ({column.type}); add it there")


def _select(table: Table, known: dict[str, str]) -> tuple[str, str]:
    names, values = [], []
    for column in table.columns:
        if column.name in known:
            names.append(column.name)
            values.append(known[column.name])
        elif not column.primary_key and not column.nullable and column.server_default is None \
                and column.default is None:
            names.append(column.name)
            values.append(_fallback(column))
    return ", ".join(names), ", ".join(values)


def fill(engine: Engine, rows: int) -> float:
    """Insert ``rows`` certificates and ``rows`` audit events; seconds it took."""
    from sqlmodel import SQLModel

    tables = SQLModel.metadata.tables
    started = time.perf_counter()
    with engine.begin() as conn:
        authority_id, pem = conn.execute(text(
            "SELECT id, pem FROM authority WHERE kind = 'issuing' ORDER BY id DESC LIMIT 1")).one()
        certificate = {
            "serial_hex": "'7' || lpad(to_hex(g), 39, '0')", "authority_id": ":authority", "profile": "'device'",
            "subject": "'CN=IMEI:9' || lpad(g::text, 14, '0')", "common_name": "'IMEI:9' || lpad(g::text, 14, '0')",
            "sans": "'[\"uri:urn:dmboot:devid:IMEI:9' || lpad(g::text, 14, '0') || '\"]'",
            "device_id": "'IMEI:9' || lpad(g::text, 14, '0')", "key_type": "'p256'",
            "not_before": "now() - interval '1 day'", "not_after": "now() + interval '364 days'",
            "status": "'valid'", "fingerprint": "md5(g::text) || md5('f' || g::text)", "pem": ":pem",
            "requested_by": "'bench'", "created_at": "now() - (g % 365) * interval '1 day'",
        }
        names, values = _select(tables["certificate"], certificate)
        conn.execute(text(f"INSERT INTO certificate ({names}) SELECT {values}"  # noqa: S608 - our own SQL
                          " FROM generate_series(1, :rows) AS g"),
                     {"rows": rows, "authority": authority_id, "pem": pem})
        base = conn.execute(text("SELECT coalesce(max(seq), 0) FROM audit_event")).scalar_one()
        audit = {
            "seq": f"{int(base)} + g", "at": "now() - (g % 365) * interval '1 day'", "actor": "'bench'",
            "action": "'certificate.issue'", "outcome": "'success'",
            "target": "'7' || lpad(to_hex(g), 39, '0')", "detail": "'{\"profile\": \"device\"}'",
            "prev_hash": "md5((g - 1)::text) || md5('h' || (g - 1)::text)",
            "hash": "md5(g::text) || md5('h' || g::text)",
        }
        names, values = _select(tables["audit_event"], audit)
        conn.execute(text(f"INSERT INTO audit_event ({names}) SELECT {values}"  # noqa: S608 - our own SQL
                          " FROM generate_series(1, :rows) AS g"), {"rows": rows})
        if "audit_head" in tables and {"seq", "hash"} <= set(tables["audit_head"].columns.keys()):
            conn.execute(text("UPDATE audit_head SET seq = e.seq, hash = e.hash FROM"
                              " (SELECT seq, hash FROM audit_event ORDER BY seq DESC LIMIT 1) AS e"))
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE certificate"))
        conn.execute(text("VACUUM ANALYZE audit_event"))
    return time.perf_counter() - started
