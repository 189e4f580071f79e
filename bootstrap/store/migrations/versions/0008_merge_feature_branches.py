"""merge feature branches

Revision ID: 0008
Revises: 0004_dm, 0005, 0006, 0007
Create Date: 2026-11-24 05:15:35.771293
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op


revision = '0008'
down_revision = ('0004_dm', '0005', '0006', '0007')
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
