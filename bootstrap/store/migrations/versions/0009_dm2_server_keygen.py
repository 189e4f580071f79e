"""dm2: enrollment profiles may generate the device key (DM 2.0 Auth/Trsp/Secret, issue 11)

Revision ID: dm2_0009
Revises: 0008
Create Date: 2026-12-06 13:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = 'dm2_0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('enrollment_profile') as batch:
        batch.add_column(sa.Column('server_keygen', sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table('enrollment_profile') as batch:
        batch.drop_column('server_keygen')
