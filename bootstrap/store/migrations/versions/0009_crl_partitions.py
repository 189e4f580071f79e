"""CRLs at scale: revoked_certificate (the CRL builder's input), CRL scopes, pre-signed OCSP responses

Revision ID: crl_0009
Revises: 0008
Create Date: 2026-12-06 13:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = 'crl_0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('revoked_certificate',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('authority_id', sa.Integer(), nullable=False),
    sa.Column('serial_hex', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('scope', sqlmodel.sql.sqltypes.AutoString(length=96), nullable=False),
    sa.Column('revoked_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('reason', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('not_after', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['authority_id'], ['authority.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('serial_hex')
    )
    with op.batch_alter_table('revoked_certificate', schema=None) as batch_op:
        batch_op.create_index('ix_revoked_scope', ['authority_id', 'scope'], unique=False)
        batch_op.create_index(batch_op.f('ix_revoked_certificate_not_after'), ['not_after'], unique=False)
        batch_op.create_index(batch_op.f('ix_revoked_certificate_revoked_at'), ['revoked_at'], unique=False)

    op.create_table('ocsp_response',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('authority_id', sa.Integer(), nullable=False),
    sa.Column('serial_hex', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('hash_algorithm', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('cert_status', sqlmodel.sql.sqltypes.AutoString(length=8), nullable=False),
    sa.Column('this_update', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('next_update', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('der', sa.LargeBinary(), nullable=False),
    sa.ForeignKeyConstraint(['authority_id'], ['authority.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('authority_id', 'serial_hex', 'hash_algorithm', name='uq_ocsp_response')
    )
    with op.batch_alter_table('ocsp_response', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_ocsp_response_next_update'), ['next_update'], unique=False)

    with op.batch_alter_table('crl', schema=None) as batch_op:
        batch_op.alter_column('kind', existing_type=sqlmodel.sql.sqltypes.AutoString(length=8),
                              type_=sqlmodel.sql.sqltypes.AutoString(length=16), existing_nullable=False)
        batch_op.add_column(sa.Column('scope', sqlmodel.sql.sqltypes.AutoString(length=96), nullable=False,
                                      server_default=''))
        batch_op.add_column(sa.Column('log_upto', sa.Integer(), nullable=False, server_default='0'))
        batch_op.create_index('ix_crl_scope', ['authority_id', 'kind', 'scope', 'number'], unique=False)
    # Existing CRLs cover their CA's certificates; existing revocations named the CA's one CRL.
    op.execute("UPDATE crl SET scope = (SELECT name FROM authority WHERE authority.id = crl.authority_id)")
    op.execute(
        "INSERT INTO revoked_certificate (authority_id, serial_hex, scope, revoked_at, reason, not_after) "
        "SELECT c.authority_id, c.serial_hex, a.name, COALESCE(c.revoked_at, c.created_at), "
        "COALESCE(c.revocation_reason, 'unspecified'), c.not_after "
        "FROM certificate c JOIN authority a ON a.id = c.authority_id WHERE c.status = 'revoked' ORDER BY c.id"
    )


def downgrade() -> None:
    with op.batch_alter_table('crl', schema=None) as batch_op:
        batch_op.drop_index('ix_crl_scope')
        batch_op.drop_column('log_upto')
        batch_op.drop_column('scope')
    with op.batch_alter_table('ocsp_response', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_ocsp_response_next_update'))
    op.drop_table('ocsp_response')
    with op.batch_alter_table('revoked_certificate', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_revoked_certificate_revoked_at'))
        batch_op.drop_index(batch_op.f('ix_revoked_certificate_not_after'))
        batch_op.drop_index('ix_revoked_scope')
    op.drop_table('revoked_certificate')
