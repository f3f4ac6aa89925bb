"""model registry, repairs and search intents

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 06:47:35.594368
"""

import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('models',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('base_model', sa.Text(), nullable=False),
    sa.Column('hyperparameters', sa.JSON(), nullable=False),
    sa.Column('data_lineage', sa.JSON(), nullable=False),
    sa.Column('metrics', sa.JSON(), nullable=False),
    sa.Column('baseline_metrics', sa.JSON(), nullable=False),
    sa.Column('training', sa.JSON(), nullable=False),
    sa.Column('macro_f1', sa.Float(), nullable=False),
    sa.Column('artifact_path', sa.Text(), nullable=False),
    sa.Column('decision_reason', sa.Text(), nullable=True),
    sa.Column('trained_on_ds', sa.Date(), nullable=False),
    sa.Column('airflow_run_id', sa.String(length=250), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('decided_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('name', 'version', name='uq_models_name_version')
    )
    op.create_table('repair_audit',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('ds', sa.Date(), nullable=False),
    sa.Column('uniq_id', sa.String(length=64), nullable=False),
    sa.Column('action', sa.String(length=16), nullable=False),
    sa.Column('field', sa.String(length=64), nullable=False),
    sa.Column('before', sa.Text(), nullable=True),
    sa.Column('after', sa.Text(), nullable=True),
    sa.Column('confidence', sa.Float(), nullable=False),
    sa.Column('model_version', sa.Integer(), nullable=False),
    sa.Column('airflow_run_id', sa.String(length=250), nullable=True),
    sa.Column('reverted_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('recorded_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('repair_runs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('ds', sa.Date(), nullable=False),
    sa.Column('model_version', sa.Integer(), nullable=False),
    sa.Column('threshold', sa.Float(), nullable=False),
    sa.Column('rows_in', sa.BigInteger(), nullable=False),
    sa.Column('rows_filled', sa.BigInteger(), nullable=False),
    sa.Column('rows_flagged', sa.BigInteger(), nullable=False),
    sa.Column('rows_review', sa.BigInteger(), nullable=False),
    sa.Column('rows_unchanged', sa.BigInteger(), nullable=False),
    sa.Column('masked_n', sa.Integer(), nullable=True),
    sa.Column('masked_filled', sa.Integer(), nullable=True),
    sa.Column('masked_precision', sa.Float(), nullable=True),
    sa.Column('output_path', sa.Text(), nullable=False),
    sa.Column('airflow_run_id', sa.String(length=250), nullable=True),
    sa.Column('recorded_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('ds', name='uq_repair_runs_ds')
    )
    op.create_table('search_intents',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('ds', sa.Date(), nullable=False),
    sa.Column('query', sa.Text(), nullable=False),
    sa.Column('searches', sa.Integer(), nullable=False),
    sa.Column('category', sa.String(length=200), nullable=False),
    sa.Column('confidence', sa.Float(), nullable=False),
    sa.Column('model_version', sa.Integer(), nullable=False),
    sa.Column('airflow_run_id', sa.String(length=250), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('ds', 'query', name='uq_search_intents_ds_query')
    )


def downgrade() -> None:
    op.drop_table('search_intents')
    op.drop_table('repair_runs')
    op.drop_table('repair_audit')
    op.drop_table('models')
