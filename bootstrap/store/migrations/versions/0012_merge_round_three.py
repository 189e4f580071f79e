"""merge the third round's branches: profile links (store_0011) and the TPM tables (tpm_0011)

Revision ID: 0012
Revises: store_0011, tpm_0011
Create Date: 2026-12-06 17:20:00
"""

from __future__ import annotations

revision = '0012'
down_revision = ('store_0011', 'tpm_0011')
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
