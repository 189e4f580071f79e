"""One UPDATE statement for many rows: a group commit's token claims, device updates, supersede marks.

A :class:`BulkUpdate` is one UPDATE in two forms, side by side: the per-row
statement (SQLAlchemy, bind parameters; SQLite runs it once per row, as an
executemany) and, for PostgreSQL, the same UPDATE joined to ``unnest`` of one
array per parameter, so a batch's rows go in ONE statement with a text that
never changes (psycopg prepares it once; an executemany was one statement per
row in psycopg's pipeline). The tests run on both databases, so the two forms
are held to the same meaning.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from sqlalchemy import JSON, Column, Connection, Executable

__all__ = ["BulkUpdate"]


@dataclass(frozen=True, eq=False)
class BulkUpdate:
    """An UPDATE of many rows: ``statement`` per row, or ``sql`` once on PostgreSQL.

    ``sql`` holds ``{rows}``, replaced by ``unnest(%(p)s::type[], ...) AS v(p, ...)``
    over ``parameters`` (name -> the column whose type it binds as); it refers to a
    row's values as ``v.<name>``. Rows with the same ``key`` values update the same
    rows: only one of them is kept (``keep``), as one row per statement would leave them.
    """

    statement: Executable
    sql: str
    parameters: Mapping[str, Column[Any]]
    key: tuple[str, ...]
    keep: Literal["first", "last"] = "last"
    _built: dict[str, Any] = field(default_factory=dict, repr=False)

    def run(self, connection: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
        """Apply ``rows`` (one parameter dict per row): one statement on PostgreSQL."""
        if not rows:
            return
        if connection.dialect.name != "postgresql":
            connection.execute(self.statement, list(rows))
            return
        sql, params = self.postgresql(connection, rows)
        connection.exec_driver_sql(sql, params)

    def postgresql(self, connection: Connection, rows: Sequence[Mapping[str, Any]],
                   prefix: str = "b") -> tuple[str, dict[str, Any]]:
        """The PostgreSQL statement for ``rows`` and its psycopg parameters, named ``<prefix>_<name>``.

        Its text depends on ``prefix`` only, never on the rows: a caller may run it as a
        CTE of another statement (pipeline/deferred.py) with other prefixes beside it.
        """
        kept: dict[tuple[Any, ...], Mapping[str, Any]] = {}
        for row in rows:
            identity = tuple(row[k] for k in self.key)
            if self.keep == "last" or identity not in kept:
                kept[identity] = row
        sql, processors = self._compiled(connection, prefix)
        params: dict[str, Any] = {}
        for name, process in processors.items():
            values = [row[name] for row in kept.values()]
            params[f"{prefix}_{name}"] = [process(v) for v in values] if process is not None else values
        return sql, params

    def _compiled(self, connection: Connection, prefix: str) -> tuple[str, dict[str, Any]]:
        built = self._built.get(prefix)
        if built is None:
            dialect = connection.dialect
            arrays = ", ".join(f"%({prefix}_{name})s::{column.type.compile(dialect=dialect)}[]"
                               for name, column in self.parameters.items())
            rows = f"unnest({arrays}) AS v({', '.join(self.parameters)})"
            # JSON values go as their text (json[] from text[]): psycopg would read a list as an array.
            processors = {name: _json_text if isinstance(column.type, JSON) else column.type.bind_processor(dialect)
                          for name, column in self.parameters.items()}
            built = self._built[prefix] = (self.sql.replace("{rows}", rows), processors)
        return built


def _json_text(value: Any) -> str | None:
    return None if value is None else json.dumps(value)
