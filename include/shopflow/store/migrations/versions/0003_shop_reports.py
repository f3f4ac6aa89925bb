"""shop reports

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 08:13:48.585551
"""

import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('reports',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('ds', sa.Date(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('datasets', sa.JSON(), nullable=False),
    sa.Column('summary', sa.JSON(), nullable=False),
    sa.Column('html_path', sa.Text(), nullable=False),
    sa.Column('json_path', sa.Text(), nullable=False),
    sa.Column('html_sha256', sa.String(length=64), nullable=False),
    sa.Column('json_sha256', sa.String(length=64), nullable=False),
    sa.Column('airflow_run_id', sa.String(length=250), nullable=True),
    sa.Column('generated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('ds', name='uq_reports_ds')
    )


def downgrade() -> None:
    op.drop_table('reports')
