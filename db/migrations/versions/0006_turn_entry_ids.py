"""conversationlog.entry_ids: every entry answered when one message asked several

A typed 「詳しく」 after two answers could only expand the first: the log kept one entry id.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 07:10:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('conversationlog', schema=None) as batch_op:
        batch_op.add_column(sa.Column('entry_ids', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('conversationlog', schema=None) as batch_op:
        batch_op.drop_column('entry_ids')
