"""reference rows: the rows of a partition's lookup files (joined onto its rows, not cleaned rows themselves)

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 09:40:00
"""

import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('partitions') as batch:
        batch.add_column(sa.Column('rows_reference', sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('partitions') as batch:
        batch.drop_column('rows_reference')
