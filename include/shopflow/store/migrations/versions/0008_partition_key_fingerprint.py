"""partition key fingerprint: which pseudonymisation key (its HMAC fingerprint, never the key) a partition's
user ids were pseudonymised under

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 14:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('partitions', sa.Column('key_fingerprint', sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('partitions') as batch_op:
        batch_op.drop_column('key_fingerprint')
