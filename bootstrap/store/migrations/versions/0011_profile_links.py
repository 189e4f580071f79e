"""profile links: enrollment profiles name their DM servers and data repositories through
association tables with foreign keys (and a position), not JSON arrays of ids

Revision ID: store_0011
Revises: 0010
Create Date: 2026-12-06 16:10:00

The upgrade carries every profile's lists over in order. An id that names no row any
more (a dangling id the JSON could hold) or names one twice cannot be a foreign key:
it is dropped, and said so in the migration's log.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = 'store_0011'
down_revision = '0010'
branch_labels = None
depends_on = None

log = logging.getLogger("alembic.runtime.migration")

#: (link table, JSON column of enrollment_profile, link column, referenced table)
_LINKS = (
    ('profile_dm_server', 'dm_server_ids', 'dm_server_id', 'dm_server'),
    ('profile_data_repository', 'data_repository_ids', 'data_repository_id', 'data_repository'),
)


def _ids(value: Any) -> list[Any]:
    if value is None:
        return []
    parsed = json.loads(value) if isinstance(value, str | bytes) else value
    return list(parsed) if isinstance(parsed, list) else []


def upgrade() -> None:
    for table, _column, link, target in _LINKS:
        op.create_table(
            table,
            sa.Column('profile_id', sa.Integer(), nullable=False),
            sa.Column('position', sa.Integer(), nullable=False),
            sa.Column(link, sa.Integer(), nullable=False),
            sa.ForeignKeyConstraint(['profile_id'], ['enrollment_profile.id'], ondelete='CASCADE'),
            sa.ForeignKeyConstraint([link], [f'{target}.id'], ondelete='RESTRICT'),
            sa.PrimaryKeyConstraint('profile_id', 'position'),
            sa.UniqueConstraint('profile_id', link, name=f'uq_{table}'),
        )
        op.create_index(op.f(f'ix_{table}_{link}'), table, [link], unique=False)

    bind = op.get_bind()
    for table, column, link, target in _LINKS:
        existing = {row[0] for row in bind.execute(sa.text(f'SELECT id FROM {target}'))}
        rows: list[dict[str, int]] = []
        for profile_id, raw in bind.execute(sa.text(f'SELECT id, {column} FROM enrollment_profile ORDER BY id')):
            kept: list[int] = []
            for value in _ids(raw):
                if isinstance(value, int) and value in existing and value not in kept:
                    kept.append(value)
                else:
                    log.warning("profile %s: %s %r dropped (no such row, or named twice)", profile_id, column, value)
            rows += [{'profile_id': profile_id, 'position': i, link: v} for i, v in enumerate(kept)]
        if rows:
            links = sa.table(table, sa.column('profile_id'), sa.column('position'), sa.column(link))
            bind.execute(links.insert(), rows)

    for _table, column, _link, _target in _LINKS:
        if bind.dialect.name == 'sqlite':
            # Native DROP COLUMN (SQLite 3.35): a batch copy would drop and re-create the
            # table that devices and tokens reference, which foreign keys refuse.
            op.execute(f'ALTER TABLE enrollment_profile DROP COLUMN {column}')
        else:
            op.drop_column('enrollment_profile', column)


def downgrade() -> None:
    bind = op.get_bind()
    for _table, column, _link, _target in _LINKS:
        op.add_column('enrollment_profile', sa.Column(column, sa.JSON(), nullable=False, server_default='[]'))
    for table, column, link, _target in _LINKS:
        lists: dict[int, list[int]] = {}
        for profile_id, value in bind.execute(sa.text(
                f'SELECT profile_id, {link} FROM {table} ORDER BY profile_id, position')):
            lists.setdefault(profile_id, []).append(value)
        profiles = sa.table('enrollment_profile', sa.column('id'), sa.column(column, sa.JSON()))
        for profile_id, ids in lists.items():
            bind.execute(profiles.update().where(profiles.c.id == profile_id).values({column: ids}))
        op.drop_index(op.f(f'ix_{table}_{link}'), table_name=table)
        op.drop_table(table)
    if bind.dialect.name != 'sqlite':  # 0010's columns had no server default (SQLite cannot drop one)
        for _table, column, _link, _target in _LINKS:
            op.alter_column('enrollment_profile', column, server_default=None)
