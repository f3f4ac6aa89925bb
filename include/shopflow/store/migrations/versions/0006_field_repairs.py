"""field repairs: the repair run's second-level and brand fills, price flags and their masked precision

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 12:30:00
"""

import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

COLUMNS = [
    ('rows_l2_filled', sa.BigInteger()), ('rows_brand_filled', sa.BigInteger()), ('rows_price_flagged', sa.BigInteger()),
    ('l2_masked_n', sa.Integer()), ('l2_masked_filled', sa.Integer()), ('l2_masked_precision', sa.Float()),
    ('brand_masked_n', sa.Integer()), ('brand_masked_filled', sa.Integer()), ('brand_masked_precision', sa.Float()),
]


def upgrade() -> None:
    with op.batch_alter_table('repair_runs') as batch:
        for name, kind in COLUMNS:
            batch.add_column(sa.Column(name, kind, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('repair_runs') as batch:
        for name, _ in reversed(COLUMNS):
            batch.drop_column(name)
