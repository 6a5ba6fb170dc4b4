"""campaigns: cadence settings, templates, campaigns, scheduler lease, APScheduler job store,
outbox.campaign_id and an index for claiming due rows

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24 17:53:09.375042
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = '0003'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('campaign',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('prefecture_code', sqlmodel.sql.sqltypes.AutoString(length=2), nullable=False),
    sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
    sa.Column('run_tag', sqlmodel.sql.sqltypes.AutoString(length=60), nullable=False),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
    sa.Column('deadline', sa.Date(), nullable=True),
    sa.Column('send_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('body_template', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('recipients', sa.Integer(), nullable=False),
    sa.Column('unlinked', sa.Integer(), nullable=False),
    sa.Column('approved_by', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('approved_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.Column('cancelled_by', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('finished_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.Column('report', sa.JSON(), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('prefecture_code', 'kind', 'run_tag')
    )
    with op.batch_alter_table('campaign', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_campaign_prefecture_code'), ['prefecture_code'], unique=False)
        batch_op.create_index(batch_op.f('ix_campaign_status'), ['status'], unique=False)

    op.create_table('campaignsettings',
    sa.Column('prefecture_code', sqlmodel.sql.sqltypes.AutoString(length=2), nullable=False),
    sa.Column('annai_month', sa.Integer(), nullable=False),
    sa.Column('annai_day', sa.Integer(), nullable=False),
    sa.Column('reminder_days', sa.JSON(), nullable=False),
    sa.Column('after_deadline_every_days', sa.Integer(), nullable=False),
    sa.Column('after_deadline_count', sa.Integer(), nullable=False),
    sa.Column('returned_after_business_days', sa.Integer(), nullable=False),
    sa.Column('auto_send', sa.Boolean(), nullable=False),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('updated_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('prefecture_code')
    )
    op.create_table('messagetemplate',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('prefecture_code', sqlmodel.sql.sqltypes.AutoString(length=2), nullable=False),
    sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
    sa.Column('body', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('updated_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('prefecture_code', 'kind')
    )
    with op.batch_alter_table('messagetemplate', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_messagetemplate_prefecture_code'), ['prefecture_code'], unique=False)

    op.create_table('schedulerlease',
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
    sa.Column('holder', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('expires_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('name')
    )
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.add_column(sa.Column('campaign_id', sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f('ix_outbox_campaign_id'), ['campaign_id'], unique=False)

    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.create_index('ix_outbox_due', ['channel', 'status', 'next_attempt_at'],
                              unique=False)

    # APScheduler 3's SQLAlchemyJobStore table (same schema the job store would create), so
    # the schema has one owner and the job store's create(checkfirst) finds it in place.
    op.create_table('apscheduler_jobs',
    sa.Column('id', sa.Unicode(length=191), nullable=False),
    sa.Column('next_run_time', sa.Float(precision=25), nullable=True),
    sa.Column('job_state', sa.LargeBinary(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_apscheduler_jobs_next_run_time', 'apscheduler_jobs', ['next_run_time'],
                    unique=False)


def downgrade() -> None:
    op.drop_index('ix_apscheduler_jobs_next_run_time', table_name='apscheduler_jobs')
    op.drop_table('apscheduler_jobs')
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.drop_index('ix_outbox_due')
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_outbox_campaign_id'))
        batch_op.drop_column('campaign_id')

    op.drop_table('schedulerlease')
    with op.batch_alter_table('messagetemplate', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_messagetemplate_prefecture_code'))

    op.drop_table('messagetemplate')
    op.drop_table('campaignsettings')
    with op.batch_alter_table('campaign', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_campaign_status'))
        batch_op.drop_index(batch_op.f('ix_campaign_prefecture_code'))

    op.drop_table('campaign')
