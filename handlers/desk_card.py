"""The escalation card as our own data: everything staff need to answer, in one place.

Adapters render a `Card` (Slack Block Kit, or plain text); nothing here knows a chat library.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from db import repo
from db.models import ChatAccount, Escalation
from handlers.texts import cut
from scheduler.calendar import JST

UNLINKED = "未連携"
HISTORY_SHOWN = 5
TEXT_CUT = 300

STATUS_LABELS: dict[str, str] = {
    "open": "未対応",
    "claimed": "対応中",
    "forwarded": "厚労省へ転送済（回答待ち）",
    "answered": "回答済",
    "resolved": "解決（回答なし）",
}
OPEN_STATUSES = ("open", "claimed", "forwarded")
# Which buttons make sense in each state; the desk re-checks every action anyway.
ACTIONS: dict[str, tuple[str, ...]] = {
    "open": ("claim", "answer", "forward", "resolve"),
    "claimed": ("answer", "forward", "resolve"),
    "forwarded": ("answer", "resolve"),
    "answered": ("kb",),
    "resolved": (),
}


@dataclass(frozen=True)
class Turn:
    """One earlier exchange between the clinic and the bot."""

    question: str
    reply: str
    action: str | None


@dataclass(frozen=True)
class Tried:
    """A knowledge-base entry the bot considered, with its score."""

    entry_id: str
    question: str
    score: float


@dataclass(frozen=True)
class Card:
    escalation_id: int
    prefecture_code: str
    receipt: str
    status: str
    received: str
    age: str
    clinic: str
    via: str
    question: str
    history: tuple[Turn, ...]
    tried: tuple[Tried, ...]
    tier: int
    supplements: tuple[str, ...] = ()  # what the clinic added later, oldest first
    claimed_by: str | None = None
    answer: str | None = None
    answered_by: str | None = None
    forwarded_by: str | None = None
    redmine_url: str | None = None
    resolution: str | None = None
    resolved_by: str | None = None

    @property
    def status_label(self) -> str:
        return STATUS_LABELS.get(self.status, self.status)

    @property
    def actions(self) -> tuple[str, ...]:
        return ACTIONS.get(self.status, ())


async def build_card(session: AsyncSession, esc: Escalation, now: datetime) -> Card:
    """Gather the card's content; the clinic is shown only through its linked account."""
    assert esc.id is not None
    account = await session.get(ChatAccount, esc.chat_account_id)
    return Card(
        escalation_id=esc.id, prefecture_code=esc.prefecture_code, receipt=esc.receipt,
        status=esc.status, received=esc.created_at.astimezone(JST).strftime(
            "%Y/%m/%d %H:%M"), age=format_age(esc.created_at, now),
        clinic=await _clinic(session, esc, account), via=account.channel if account else "",
        question=esc.question, history=_history(esc.context), tried=_tried(esc.context),
        tier=esc.tier, supplements=supplements(esc.context),
        claimed_by=esc.claimed_by, answer=esc.answer,
        answered_by=esc.answered_by, forwarded_by=esc.forwarded_by,
        redmine_url=esc.redmine_url, resolution=esc.resolution, resolved_by=esc.resolved_by,
    )


async def _clinic(session: AsyncSession, esc: Escalation, account: ChatAccount | None) -> str:
    """The institution the chat was linked to when it asked (a clerk who has since linked
    the chat to another clinic, or been unlinked, still asked for that one); asked before
    linking, the one it is linked to now."""
    asked_for = esc.institution_id
    if asked_for is None and account is not None:
        asked_for = account.institution_id
    if not isinstance(asked_for, int):
        return UNLINKED
    inst = await repo.get_institution(session, esc.prefecture_code, asked_for)
    if inst is None:  # linked to another prefecture's roster: never shown here
        return UNLINKED
    confirmation = f"・{inst.confirmation}" if inst.confirmation else ""
    return f"{inst.name}（{inst.code}）報告状況：{inst.status}{confirmation}"


def _history(context: dict[str, Any]) -> tuple[Turn, ...]:
    """Earlier turns, oldest first (the context stores them newest first)."""
    raw = [t for t in context.get("history") or [] if isinstance(t, dict)][:HISTORY_SHOWN]
    return tuple(Turn(cut(str(t.get("q") or ""), TEXT_CUT), cut(str(t.get("a") or ""), TEXT_CUT),
                      t.get("action")) for t in reversed(raw))


def supplements(context: dict[str, Any]) -> tuple[str, ...]:
    """The clinic's follow-ups to its question (「Q26-000001の補足です…」), oldest first."""
    return tuple(str(s.get("text") or "") for s in context.get("supplements") or []
                 if isinstance(s, dict))


def _tried(context: dict[str, Any]) -> tuple[Tried, ...]:
    found = [c for c in context.get("candidates") or [] if isinstance(c, dict)]
    return tuple(Tried(str(c.get("entry_id", "")), str(c.get("question", "")),
                       float(c.get("score") or 0.0)) for c in found[:3])


def format_age(created: datetime, now: datetime) -> str:
    minutes = max(0, int((now - created).total_seconds() // 60))
    if minutes < 60:
        return f"{minutes}分前"
    if minutes < 24 * 60:
        return f"{minutes // 60}時間前"
    return f"{minutes // (24 * 60)}日前"


def staff_ref(staff_id: str) -> str:
    """How a staff member is named in desk text; the desk channel (Slack) shows the name."""
    return f"<@{staff_id}>"


def plain_text(card: Card) -> str:
    """The card as one plain message: notification text and a fallback for any channel."""
    return (f"【{card.receipt}】{card.status_label}（{card.age}）\n"
            f"医療機関：{card.clinic}\n質問：{cut(card.question, 200)}")


