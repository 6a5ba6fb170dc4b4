"""processedevent.payload, handled_at, attempts: an event answered 200 but not yet handled
survives

LINE is answered before its events are handled; a process that died in between lost them
(LINE does not send an event again after a 200). The event is now kept until it is handled.
Existing rows (handled, or Slack's ids) have no payload and are never taken up again.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04 19:40:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = '0008'
down_revision: str | None = '0007'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('processedevent', schema=None) as batch_op:
        batch_op.add_column(sa.Column('payload', sa.JSON(none_as_null=True), nullable=True))
        batch_op.add_column(sa.Column('handled_at', sqlmodel.sql.sqltypes.UTCDateTime(),
                                      nullable=True))
        batch_op.add_column(sa.Column('attempts', sa.Integer(), nullable=False,
                                      server_default='0'))


def downgrade() -> None:
    with op.batch_alter_table('processedevent', schema=None) as batch_op:
        batch_op.drop_column('attempts')
        batch_op.drop_column('handled_at')
        batch_op.drop_column('payload')
