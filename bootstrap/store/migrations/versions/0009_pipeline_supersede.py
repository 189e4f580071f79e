"""pipeline: re-enrollment supersedes earlier certificates

Revision ID: pipeline_0009
Revises: 0008
Create Date: 2026-12-06 13:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = 'pipeline_0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('certificate', schema=None) as batch_op:
        batch_op.add_column(sa.Column('superseded_by', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True))
        batch_op.add_column(sa.Column('supersede_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column('first_used_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))
        batch_op.create_index(batch_op.f('ix_certificate_supersede_at'), ['supersede_at'], unique=False)
    with op.batch_alter_table('enrollment_profile', schema=None) as batch_op:
        batch_op.add_column(sa.Column('supersede', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False,
                                      server_default='first-use'))
        batch_op.add_column(sa.Column('supersede_grace_seconds', sa.Integer(), nullable=False,
                                      server_default='3600'))


def downgrade() -> None:
    with op.batch_alter_table('enrollment_profile', schema=None) as batch_op:
        batch_op.drop_column('supersede_grace_seconds')
        batch_op.drop_column('supersede')
    with op.batch_alter_table('certificate', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_certificate_supersede_at'))
        batch_op.drop_column('first_used_at')
        batch_op.drop_column('supersede_at')
        batch_op.drop_column('superseded_by')
