"""prefecture.status_as_of: when the last status file was imported

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 15:10:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = '0004'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('prefecture', schema=None) as batch_op:
        batch_op.add_column(sa.Column('status_as_of', sqlmodel.sql.sqltypes.UTCDateTime(),
                                      nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('prefecture', schema=None) as batch_op:
        batch_op.drop_column('status_as_of')
