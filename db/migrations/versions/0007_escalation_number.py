"""escalation.number: receipt numbers counted per prefecture

The receipt was `Q{prefecture}-{id:06d}` with the global row id, so in a deployment serving
many prefectures a clinic could read the whole deployment's volume from its number. Each
prefecture now counts its own, unique per (prefecture_code, number). Existing rows keep the
receipts clinics were given (number = id); new ones continue from the prefecture's
max(number) + 1, so nothing collides.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03 01:00:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0007'
down_revision: str | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ESCALATION = sa.table('escalation', sa.column('id', sa.Integer),
                       sa.column('number', sa.Integer))


def upgrade() -> None:
    with op.batch_alter_table('escalation', schema=None) as batch_op:
        batch_op.add_column(sa.Column('number', sa.Integer(), nullable=True))
    t = _ESCALATION
    op.get_bind().execute(t.update().values(number=t.c.id))  # the receipts already given
    with op.batch_alter_table('escalation', schema=None) as batch_op:
        batch_op.alter_column('number', existing_type=sa.Integer(), nullable=False)
        batch_op.create_unique_constraint('uq_escalation_prefecture_number',
                                          ['prefecture_code', 'number'])


def downgrade() -> None:
    # Receipts given after 0007 (Q26-000002 while its row id is 4812) cannot survive going
    # back to id-based receipts: they are lost with the column.
    with op.batch_alter_table('escalation', schema=None) as batch_op:
        batch_op.drop_constraint('uq_escalation_prefecture_number', type_='unique')
        batch_op.drop_column('number')
