"""dm objects: MO instances published for HGET delivery (issue 4, DM 2.0 wire protocol)

Revision ID: 0004_dm
Revises: 0003
Create Date: 2026-11-24 05:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op


revision = '0004_dm'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('dm_object',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('ref', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('dev_id', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
    sa.Column('client_uri', sqlmodel.sql.sqltypes.AutoString(length=512), nullable=False),
    sa.Column('cv', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
    sa.Column('body', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('expires_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('dm_object', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_dm_object_ref'), ['ref'], unique=True)
        batch_op.create_index(batch_op.f('ix_dm_object_dev_id'), ['dev_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_dm_object_expires_at'), ['expires_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('dm_object', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_dm_object_expires_at'))
        batch_op.drop_index(batch_op.f('ix_dm_object_dev_id'))
        batch_op.drop_index(batch_op.f('ix_dm_object_ref'))
    op.drop_table('dm_object')
