"""initial metadata store

Revision ID: 0001
Revises:
Create Date: 2026-11-23 06:15:00.106828
"""

import sqlalchemy as sa
from alembic import op

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('datasets',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('owner', sa.String(length=200), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('tags', sa.JSON(), nullable=False),
    sa.Column('schema', sa.JSON(), nullable=False),
    sa.Column('timezone', sa.String(length=64), nullable=False),
    sa.Column('generated', sa.Boolean(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('name')
    )
    op.create_table('lineage',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('dataset_id', sa.Integer(), nullable=False),
    sa.Column('ds', sa.Date(), nullable=False),
    sa.Column('task', sa.String(length=64), nullable=False),
    sa.Column('inputs', sa.JSON(), nullable=False),
    sa.Column('outputs', sa.JSON(), nullable=False),
    sa.Column('airflow_run_id', sa.String(length=250), nullable=True),
    sa.Column('recorded_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['dataset_id'], ['datasets.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('dataset_id', 'ds', 'task', name='uq_lineage_dataset_ds_task')
    )
    op.create_table('partitions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('dataset_id', sa.Integer(), nullable=False),
    sa.Column('ds', sa.Date(), nullable=False),
    sa.Column('status', sa.String(length=32), nullable=False),
    sa.Column('load_kind', sa.String(length=16), nullable=True),
    sa.Column('rows_in', sa.BigInteger(), nullable=True),
    sa.Column('rows_clean', sa.BigInteger(), nullable=True),
    sa.Column('rows_quarantined', sa.BigInteger(), nullable=True),
    sa.Column('rows_duplicate', sa.BigInteger(), nullable=True),
    sa.Column('quarantined_by_reason', sa.JSON(), nullable=True),
    sa.Column('raw_path', sa.Text(), nullable=True),
    sa.Column('clean_path', sa.Text(), nullable=True),
    sa.Column('quarantine_path', sa.Text(), nullable=True),
    sa.Column('validation_success', sa.Boolean(), nullable=True),
    sa.Column('critical_failures', sa.Integer(), nullable=True),
    sa.Column('warning_failures', sa.Integer(), nullable=True),
    sa.Column('timings', sa.JSON(), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('airflow_run_id', sa.String(length=250), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['dataset_id'], ['datasets.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('dataset_id', 'ds', name='uq_partitions_dataset_ds')
    )
    op.create_table('partition_files',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('partition_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('size_bytes', sa.BigInteger(), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('rows', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['partition_id'], ['partitions.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('validations',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('partition_id', sa.Integer(), nullable=False),
    sa.Column('suite', sa.String(length=100), nullable=False),
    sa.Column('expectation', sa.String(length=200), nullable=False),
    sa.Column('column_name', sa.String(length=200), nullable=True),
    sa.Column('severity', sa.String(length=16), nullable=False),
    sa.Column('success', sa.Boolean(), nullable=False),
    sa.Column('observed_value', sa.JSON(), nullable=True),
    sa.Column('unexpected_percent', sa.Float(), nullable=True),
    sa.Column('result', sa.JSON(), nullable=False),
    sa.Column('airflow_run_id', sa.String(length=250), nullable=True),
    sa.ForeignKeyConstraint(['partition_id'], ['partitions.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )


def downgrade() -> None:
    op.drop_table('validations')
    op.drop_table('partition_files')
    op.drop_table('partitions')
    op.drop_table('lineage')
    op.drop_table('datasets')
