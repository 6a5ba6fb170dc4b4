"""Tables. Every row that belongs to a prefecture carries `prefecture_code` (the tenant)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import JSON, Column, Index, UniqueConstraint
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    # Every datetime column is SQLModel's UTCDateTime: it refuses naive values and reads
    # aware UTC back on every database, SQLite included, so timestamps always compare.
    return datetime.now(UTC)


def desk_channel(pref: Prefecture | None) -> str:
    """The prefecture's Slack channel, or "" when it has none (the sender then refuses)."""
    return (pref.slack_channel if pref else None) or ""


class Prefecture(SQLModel, table=True):
    """The tenant: one prefecture's calendar and contacts."""

    code: str = Field(primary_key=True, max_length=2)
    name: str
    period_start: date | None = None
    period_end: date | None = None
    send_start_hour: int = 9
    send_end_hour: int = 17
    inquiry_contact: str = ""
    gmis_contact: str = ""
    slack_channel: str | None = Field(default=None, unique=True, index=True)
    # When the last status file (G-MIS export) came in: what a clinic's 報告状況 is as of.
    status_as_of: datetime | None = None


class Institution(SQLModel, table=True):
    """A hospital or clinic on a prefecture's roster, with its latest report status."""

    __table_args__ = (UniqueConstraint("prefecture_code", "code"),)
    id: int | None = Field(default=None, primary_key=True)
    prefecture_code: str = Field(foreign_key="prefecture.code", index=True, max_length=2)
    code: str = Field(max_length=20, description="医療機関コード")
    name: str
    kind: str = Field(max_length=10, description="hospital | clinic")
    special_function: bool = False
    dental: bool = False
    closed_on_jan1: bool = False
    municipality: str = ""
    medical_area: str = Field(default="", description="二次医療圏")
    email: str = ""
    phone: str = ""
    status: str = Field(default="未報告", max_length=20)
    reported_on: date | None = None
    confirmation: str | None = Field(default=None, max_length=10, description="体制あり|体制なし")
    return_reason: str | None = None
    report: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))


class StatusHistory(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    prefecture_code: str = Field(max_length=2, index=True)
    institution_id: int = Field(foreign_key="institution.id", index=True)
    old_status: str | None = None
    new_status: str
    source_file: str
    changed_at: datetime = Field(default_factory=utcnow)


class ChatAccount(SQLModel, table=True):
    """A person in a chat channel; sees institution data only once linked."""

    __table_args__ = (UniqueConstraint("channel", "external_user_id"),)
    id: int | None = Field(default=None, primary_key=True)
    channel: str = Field(max_length=20)
    external_user_id: str = Field(max_length=100)
    display_name: str | None = None
    prefecture_code: str | None = Field(default=None, max_length=2, index=True)
    institution_id: int | None = Field(default=None, foreign_key="institution.id", index=True)
    reachable: bool = True
    linked_at: datetime | None = None
    created_at: datetime = Field(default_factory=utcnow)


class LinkCode(SQLModel, table=True):
    """A one-time code, stored only as a hash, that links a chat account to an institution."""

    id: int | None = Field(default=None, primary_key=True)
    prefecture_code: str = Field(max_length=2, index=True)
    institution_id: int = Field(foreign_key="institution.id")
    code_hash: str = Field(max_length=64, unique=True)
    expires_at: datetime
    used_at: datetime | None = None
    used_by: int | None = Field(default=None, foreign_key="chataccount.id")
    created_at: datetime = Field(default_factory=utcnow)


class LinkAttempt(SQLModel, table=True):
    """Failed link tries, for the 5-per-hour lockout."""

    id: int | None = Field(default=None, primary_key=True)
    chat_account_id: int = Field(foreign_key="chataccount.id", index=True)
    attempted_at: datetime = Field(default_factory=utcnow)


class ConversationState(SQLModel, table=True):
    """Where a user is in a multi-step flow (wizard), so a restart loses nothing."""

    channel: str = Field(primary_key=True, max_length=20)
    external_user_id: str = Field(primary_key=True, max_length=100)
    flow: str = Field(max_length=30)
    data: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    updated_at: datetime = Field(default_factory=utcnow)


class ConversationLog(SQLModel, table=True):
    """Every inbound message and the reply, with the retrieval decision and score."""

    __table_args__ = (Index("ix_convlog_user", "channel", "external_user_id", "created_at"),)
    id: int | None = Field(default=None, primary_key=True)
    created_at: datetime = Field(default_factory=utcnow)
    channel: str = Field(max_length=20)
    external_user_id: str = Field(max_length=100)
    prefecture_code: str | None = Field(default=None, max_length=2, index=True)
    inbound_text: str = ""
    payload: str | None = None
    reply_text: str = ""
    action: str | None = Field(default=None, max_length=20)
    entry_id: str | None = None
    # Every entry answered when a message asked several (the first is `entry_id` too): a
    # typed 「詳しく」 after them must know them all.
    entry_ids: list[str] | None = Field(default=None, sa_column=Column(JSON))
    score: float | None = None
    feedback: int | None = Field(default=None, description="+1 / -1 from the user")


def receipt_of(prefecture_code: str, number: int) -> str:
    """The one format of a receipt number, shown to clinics and staff: Q26-000001."""
    return f"Q{prefecture_code}-{number:06d}"


class Escalation(SQLModel, table=True):
    """A question handed to prefecture staff (tier 1) or forwarded to the ministry (tier 2)."""

    __table_args__ = (UniqueConstraint("prefecture_code", "number",
                                       name="uq_escalation_prefecture_number"),)
    id: int | None = Field(default=None, primary_key=True)
    prefecture_code: str = Field(max_length=2, index=True)
    # Counted per prefecture (the receipt's number): a global id would let a clinic read
    # the whole deployment's volume from its receipt. repo.create_escalation assigns it.
    number: int | None = Field(default=None, nullable=False)
    chat_account_id: int = Field(foreign_key="chataccount.id")
    # The institution the chat was linked to when it asked (None: asked before linking); a
    # chat relinked to another clinic no longer sees the inquiry, the card still names it.
    institution_id: int | None = Field(default=None, index=True)
    question: str
    context: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    status: str = Field(default="open", max_length=20)
    tier: int = 1
    claimed_by: str | None = None
    answer: str | None = None
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    # Staff desk (status: open → claimed → answered | forwarded → answered | resolved)
    claimed_at: datetime | None = None
    answered_by: str | None = None
    answered_at: datetime | None = None
    forwarded_by: str | None = None
    forwarded_at: datetime | None = None
    redmine_url: str | None = None
    resolved_by: str | None = None
    resolved_at: datetime | None = None
    resolution: str | None = None
    card_channel: str | None = Field(default=None, max_length=40)
    card_ts: str | None = Field(default=None, max_length=40)

    @property
    def receipt(self) -> str:
        """Receipt number a clinic can quote on the phone."""
        assert self.number is not None, "receipt of an escalation not yet inserted"
        return receipt_of(self.prefecture_code, self.number)


class Outbox(SQLModel, table=True):
    """Everything the bot sends on its own initiative; the key makes a send happen once."""

    id: int | None = Field(default=None, primary_key=True)
    idempotency_key: str = Field(max_length=200, unique=True)
    prefecture_code: str | None = Field(default=None, max_length=2, index=True)
    channel: str = Field(max_length=20)
    recipient: str = Field(max_length=100)
    kind: str = Field(max_length=30)
    body: str
    payload: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    status: str = Field(default="pending", max_length=20, index=True)
    attempts: int = 0
    next_attempt_at: datetime = Field(default_factory=utcnow)
    last_error: str | None = None
    created_at: datetime = Field(default_factory=utcnow)
    sent_at: datetime | None = None
    campaign_id: int | None = Field(default=None, index=True,
                                    description="set on campaign messages, for reports")


class KbDraft(SQLModel, table=True):
    """A staff answer proposed for the knowledge base; a person approves it into YAML."""

    id: int | None = Field(default=None, primary_key=True)
    prefecture_code: str = Field(max_length=2, index=True)
    escalation_id: int = Field(foreign_key="escalation.id", unique=True)
    question: str
    answer: str
    phrasings: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    status: str = Field(default="draft", max_length=20, description="draft|approved|rejected")
    created_by: str = ""
    created_at: datetime = Field(default_factory=utcnow)
    category: str | None = Field(default=None, max_length=30)
    entry_id: str | None = None
    reviewed_at: datetime | None = None


class ProcessedEvent(SQLModel, table=True):
    """Event ids already handled, so a platform's retries (Slack `event_id`) run once.

    A channel that answers the platform before handling (LINE, Telegram's webhook) keeps the
    event itself until it is handled: a process that dies in between leaves it for another
    to finish (bot.pending)."""

    channel: str = Field(primary_key=True, max_length=20)
    event_id: str = Field(primary_key=True, max_length=100)
    received_at: datetime = Field(default_factory=utcnow, index=True)
    # none_as_null: a cleared payload is SQL NULL, not the JSON text 'null'
    payload: dict[str, Any] | None = Field(default=None,
                                           sa_column=Column(JSON(none_as_null=True)))
    handled_at: datetime | None = None
    attempts: int = 0  # take-overs so far (db.events.take_over)


class CampaignSettings(SQLModel, table=True):
    """A prefecture's campaign cadence; defaults apply when a prefecture has no row."""

    prefecture_code: str = Field(primary_key=True, max_length=2)
    annai_month: int = 11
    annai_day: int = 10
    reminder_days: list[int] = Field(default_factory=lambda: [30, 14, 7, 3, 1],
                                     sa_column=Column(JSON, nullable=False))
    after_deadline_every_days: int = 7
    after_deadline_count: int = 8
    returned_after_business_days: int = 3
    auto_send: bool = False
    enabled: bool = True
    updated_at: datetime = Field(default_factory=utcnow)


class MessageTemplate(SQLModel, table=True):
    """A prefecture's wording for one campaign kind; placeholders are checked when saved."""

    __table_args__ = (UniqueConstraint("prefecture_code", "kind"),)
    id: int | None = Field(default=None, primary_key=True)
    prefecture_code: str = Field(max_length=2, index=True)
    kind: str = Field(max_length=20)
    body: str
    updated_at: datetime = Field(default_factory=utcnow)


class Campaign(SQLModel, table=True):
    """One scheduled send: planned → previewed → approved → sending → done, or cancelled.
    (prefecture, kind, run_tag) is unique so a schedule that fires twice plans once."""

    __table_args__ = (UniqueConstraint("prefecture_code", "kind", "run_tag"),)
    id: int | None = Field(default=None, primary_key=True)
    prefecture_code: str = Field(max_length=2, index=True)
    kind: str = Field(max_length=20, description="annai | dunning | returned")
    run_tag: str = Field(max_length=60)
    status: str = Field(default="planned", max_length=20, index=True)
    deadline: date | None = None
    send_at: datetime = Field(default_factory=utcnow)
    body_template: str = ""
    recipients: int = 0
    unlinked: int = 0
    approved_by: str | None = None
    approved_at: datetime | None = None
    cancelled_by: str | None = None
    created_at: datetime = Field(default_factory=utcnow)
    finished_at: datetime | None = None
    report: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))


class SchedulerLease(SQLModel, table=True):
    """Leader election: only the holder of an unexpired lease runs the scheduler."""

    name: str = Field(primary_key=True, max_length=40)
    holder: str = Field(max_length=100)
    expires_at: datetime
