"""merge the second round's feature branches

Revision ID: 0010
Revises: dm2_0009, pipeline_0009, crl_0009
Create Date: 2026-12-06 14:20:00
"""

from __future__ import annotations

revision = '0010'
down_revision = ('dm2_0009', 'pipeline_0009', 'crl_0009')
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
