"""duplicate runs: the near-duplicate search of a catalogue day, its ledger, settings and GX results

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 13:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('duplicate_runs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('source', sa.String(length=100), nullable=False),
    sa.Column('ds', sa.Date(), nullable=False),
    sa.Column('products_in', sa.BigInteger(), nullable=False),
    sa.Column('products_in_clusters', sa.BigInteger(), nullable=False),
    sa.Column('singletons', sa.BigInteger(), nullable=False),
    sa.Column('clusters', sa.BigInteger(), nullable=False),
    sa.Column('largest_cluster', sa.Integer(), nullable=False),
    sa.Column('candidate_pairs', sa.BigInteger(), nullable=False),
    sa.Column('accepted_pairs', sa.BigInteger(), nullable=False),
    sa.Column('counts', sa.JSON(), nullable=False),
    sa.Column('policy', sa.JSON(), nullable=False),
    sa.Column('embedding', sa.JSON(), nullable=False),
    sa.Column('validation_success', sa.Boolean(), nullable=False),
    sa.Column('critical_failures', sa.Integer(), nullable=False),
    sa.Column('validation', sa.JSON(), nullable=False),
    sa.Column('output_path', sa.Text(), nullable=False),
    sa.Column('pairs_path', sa.Text(), nullable=False),
    sa.Column('seconds', sa.Float(), nullable=False),
    sa.Column('airflow_run_id', sa.String(length=250), nullable=True),
    sa.Column('recorded_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('source', 'ds', name='uq_duplicate_runs_source_ds')
    )


def downgrade() -> None:
    op.drop_table('duplicate_runs')
