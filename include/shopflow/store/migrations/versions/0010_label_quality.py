"""label quality: a label-issue flag's score in the repair audit (shopflow.model.training.label_issues)

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07 17:30:00
"""

import sqlalchemy as sa
from alembic import op

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('repair_audit') as batch:
        batch.add_column(sa.Column('label_quality', sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('repair_audit') as batch:
        batch.drop_column('label_quality')
