"""tpm: TPM manufacturer CAs per enrollment profile, and the EK each TPM device enrolled with

Revision ID: tpm_0011
Revises: 0010
Create Date: 2026-12-06 16:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = 'tpm_0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('tpm_manufacturer_ca',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('profile_id', sa.Integer(), nullable=False),
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
    sa.Column('fingerprint', sqlmodel.sql.sqltypes.AutoString(length=80), nullable=False),
    sa.Column('pem', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['profile_id'], ['enrollment_profile.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('profile_id', 'fingerprint'),
    sa.UniqueConstraint('profile_id', 'name')
    )
    with op.batch_alter_table('tpm_manufacturer_ca', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_tpm_manufacturer_ca_profile_id'), ['profile_id'], unique=False)

    op.create_table('tpm_device',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('device_id', sa.Integer(), nullable=False),
    sa.Column('ek_fingerprint', sqlmodel.sql.sqltypes.AutoString(length=80), nullable=False),
    sa.Column('ak_name', sqlmodel.sql.sqltypes.AutoString(length=140), nullable=False),
    sa.Column('enrolled_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['device_id'], ['device.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('device_id'),
    sa.UniqueConstraint('ek_fingerprint')
    )


def downgrade() -> None:
    op.drop_table('tpm_device')
    with op.batch_alter_table('tpm_manufacturer_ca', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_tpm_manufacturer_ca_profile_id'))
    op.drop_table('tpm_manufacturer_ca')
