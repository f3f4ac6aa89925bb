"""product keys as text: the repair audit and review decisions recorded before the store converted keys
(`shopflow.store.models.ProductKey`) may hold an integer key as the 8-byte blob of a numpy int64 (SQLite stored the
value's buffer); those become the key's text ("72"). PostgreSQL refused such values, so only SQLite has any.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 10:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None

TABLES = ('repair_audit', 'review_decisions')
INT64_BYTES = 8


def key_of_blob(blob: bytes) -> str:
    """The text of a key stored as a blob: an 8-byte numpy int64 (little-endian, as numpy lays it out on the
    machines that wrote them), else the blob's UTF-8 text."""
    if len(blob) == INT64_BYTES:
        return str(int.from_bytes(blob, 'little', signed=True))
    return blob.decode('utf-8', errors='replace')


def upgrade() -> None:
    connection = op.get_bind()
    if connection.dialect.name != 'sqlite':
        return
    for table in TABLES:
        rows = connection.execute(sa.text(f"SELECT id, uniq_id FROM {table} WHERE typeof(uniq_id) = 'blob'")).all()
        for row_id, blob in rows:
            connection.execute(sa.text(f"UPDATE {table} SET uniq_id = :key WHERE id = :id"),
                               {'key': key_of_blob(bytes(blob)), 'id': row_id})


def downgrade() -> None:
    pass  # the text keys are what the blobs meant; nothing to undo
