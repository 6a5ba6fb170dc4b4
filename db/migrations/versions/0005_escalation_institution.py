"""escalation.institution_id: the institution a chat was linked to when it asked

It was kept in the context JSON, so listing a chat's inquiries for its current link had to
filter in Python after the LIMIT; as a column the database filters. Existing rows are
filled from their context.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 01:00:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


_ESCALATION = sa.table('escalation', sa.column('id', sa.Integer), sa.column('context', sa.JSON),
                       sa.column('institution_id', sa.Integer))


def upgrade() -> None:
    with op.batch_alter_table('escalation', schema=None) as batch_op:
        batch_op.add_column(sa.Column('institution_id', sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f('ix_escalation_institution_id'), ['institution_id'],
                              unique=False)
    bind = op.get_bind()
    t = _ESCALATION
    for esc_id, context in bind.execute(sa.select(t.c.id, t.c.context)).all():
        institution = context.get("institution_id") if isinstance(context, dict) else None
        if isinstance(institution, int):
            bind.execute(t.update().where(t.c.id == esc_id).values(institution_id=institution))


def downgrade() -> None:
    bind = op.get_bind()
    t = _ESCALATION
    rows = bind.execute(sa.select(t.c.id, t.c.context, t.c.institution_id)
                        .where(t.c.institution_id.is_not(None))).all()
    for esc_id, context, institution in rows:  # back where the old code reads it
        bind.execute(t.update().where(t.c.id == esc_id).values(
            context={**(context if isinstance(context, dict) else {}),
                     "institution_id": institution}))
    with op.batch_alter_table('escalation', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_escalation_institution_id'))
        batch_op.drop_column('institution_id')
