"""The prefecture staff desk: escalation cards, claims, answers, tier 2, closing, KB drafts.

Channel-neutral: a chat adapter passes the prefecture of the staff channel an action came
from, and every operation touches only that prefecture's escalations. State changes are
guarded in the database (`UPDATE ... WHERE status IN ...`), so a double press or two staff
acting at once changes an escalation once, and each message to the clinic goes through
the outbox under a fixed idempotency key.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from db.models import ChatAccount, Escalation, Outbox, Prefecture, desk_channel
from db.seed import ensure_prefecture
from handlers.desk_card import OPEN_STATUSES, build_card, plain_text, supplements
from handlers.errors import UserFacingError
from handlers.texts import desk_of, shorten, staff_of
from scheduler import outbox

logger = logging.getLogger(__name__)
Sessions = Callable[[], AsyncSession]

DESK_CHANNEL = "slack"
# Enough for any real follow-up; a chat sending more is flooding the staff thread.
MAX_SUPPLEMENTS = 20
TOO_MANY_SUPPLEMENTS = (
    "このお問い合わせには補足がすでに多く届いているため、これ以上は追加できません。"
    "担当者からの回答をお待ちいただくか、お急ぎの場合は受付番号を添えて{desk}へ"
    "お問い合わせください。")
NOT_FOUND = ("この問い合わせは見つからないか、このチャンネルの都道府県のものではないため、"
             "操作できません。")
REFUSALS: dict[str, str] = {
    "claimed": "この問い合わせは、すでに別の担当者が対応中です。",
    "answered": "この問い合わせには、すでに回答済みです。回答は一度だけ医療機関に送られます。",
    "forwarded": "この問い合わせは、すでに厚生労働省へ転送済みです。",
    "resolved": "この問い合わせは、すでに解決済みとして閉じられています。",
}


class DeskRefused(UserFacingError):
    """An action that cannot be done (wrong prefecture, already answered, ...)."""


async def prefecture_for_channel(session: AsyncSession, channel_id: str) -> str | None:
    """The prefecture a staff channel belongs to; None when the channel is not mapped."""
    if not channel_id:
        return None
    stmt = select(Prefecture.code).where(Prefecture.slack_channel == channel_id)
    return (await session.exec(stmt)).first()


async def announce(session: AsyncSession, esc: Escalation, now: datetime) -> None:
    """Queue the new escalation's card for the prefecture's staff channel.

    With no channel mapped yet the row waits with an empty recipient; mapping the channel
    later (`map_channel`) sends it, so nothing is lost.
    """
    assert esc.id is not None
    pref = await session.get(Prefecture, esc.prefecture_code)
    await outbox.enqueue(
        session, key=card_key(esc.id), channel=DESK_CHANNEL,
        recipient=desk_channel(pref), kind="escalation_card",
        body=plain_text(await build_card(session, esc, now)),
        prefecture_code=esc.prefecture_code, now=now, payload={"escalation_id": esc.id})


async def get_escalation(session: AsyncSession, pref: str, esc_id: int) -> Escalation | None:
    stmt = select(Escalation).where(Escalation.id == esc_id, Escalation.prefecture_code == pref)
    return (await session.exec(stmt)).first()


async def require(sessions: Sessions, pref: str, esc_id: int, allowed: tuple[str, ...],
                  ) -> Escalation:
    """The escalation if this prefecture may act on it now; else a polite refusal."""
    async with sessions() as session:
        esc = await get_escalation(session, pref, esc_id)
    if esc is None:
        raise DeskRefused(NOT_FOUND)
    if esc.status not in allowed:
        raise DeskRefused(REFUSALS.get(esc.status, NOT_FOUND))
    return esc


async def claim(sessions: Sessions, pref: str, esc_id: int, staff: str, now: datetime,
                ) -> Escalation:
    """担当する: the first staff member to press it owns the escalation."""
    values = dict(status="claimed", claimed_by=staff, claimed_at=now, updated_at=now)
    async with sessions() as session:
        if not await _transition(session, pref, esc_id, ("open",), values):
            esc = await _refuse(session, pref, esc_id)
            if esc.status == "claimed" and esc.claimed_by == staff:
                return esc  # pressed twice by the same person: nothing to do
            raise DeskRefused(REFUSALS.get(esc.status, NOT_FOUND))
        esc = await _card_update(session, pref, esc_id, "claimed", now)
    return esc


class SupplementArrived(DeskRefused):
    """The clinic added to its question after the staff member opened the answer form."""

    def __init__(self) -> None:
        super().__init__("回答を書き始めた後に、医療機関から補足が届きました。補足をご確認の"
                         "うえ、必要なら回答を直して、もう一度送信してください。")


async def answer(sessions: Sessions, pref: str, esc_id: int, staff: str, text: str,
                 now: datetime, seen: int | None = None) -> Escalation:
    """回答する: store the answer and queue it for the clinic, exactly once.

    `seen`: how many supplements the staff member had in view; when more have arrived the
    answer is not sent (SupplementArrived), so it never ignores what the clinic added."""
    text = text.strip()
    if not text:
        raise DeskRefused("回答を入力してください。")
    values = dict(status="answered", answer=text, answered_by=staff, answered_at=now,
                  updated_at=now)
    async with sessions() as session:
        if not await _transition(session, pref, esc_id, ("open", "claimed", "forwarded"),
                                 values):
            raise DeskRefused(REFUSALS.get((await _refuse(session, pref, esc_id)).status,
                                           NOT_FOUND))
        esc = await get_escalation(session, pref, esc_id)
        assert esc is not None
        if seen is not None and len(supplements(esc.context)) > seen:
            await session.rollback()
            raise SupplementArrived()
        body = (f"【受付番号 {esc.receipt} へのご回答】\n"
                f"お問い合わせいただいた「{shorten(esc.question)}」について、"
                f"{staff_of(await name_told(session, esc))}から回答が届きました。"
                f"\n\n{text}\n\n"
                "ほかにご不明な点があれば、このチャットでお尋ねください。")
        await _to_clinic(session, esc, "answer", body, now)  # commits with the transition
        return await _card_update(session, pref, esc_id, "answered", now)


async def prefecture_told(session: AsyncSession, esc: Escalation) -> Prefecture | None:
    """The prefecture the clinic is told has its question (by name, and its desk's contact):
    only when the chat's prefecture was known when it asked (linked, or chosen by the
    chat). Otherwise the tenant was only the bot's default, so it is told 都道府県 on the
    receipt, the forward notice and the answer alike."""
    if esc.institution_id is None and not (esc.context or {}).get("prefecture_known"):
        return None
    return await session.get(Prefecture, esc.prefecture_code)


async def name_told(session: AsyncSession, esc: Escalation) -> str | None:
    """The name in 「京都府の担当者」「京都府から厚生労働省に」; None: say 都道府県."""
    prefecture = await prefecture_told(session, esc)
    return prefecture.name if prefecture else None


async def forward(sessions: Sessions, pref: str, esc_id: int, staff: str, now: datetime,
                  redmine: bool) -> Escalation:
    """厚労省へ転送: record tier 2, tell the clinic, and queue the Redmine issue if configured."""
    values = dict(status="forwarded", tier=2, forwarded_by=staff, forwarded_at=now,
                  updated_at=now)
    async with sessions() as session:
        if not await _transition(session, pref, esc_id, ("open", "claimed"), values):
            raise DeskRefused(REFUSALS.get((await _refuse(session, pref, esc_id)).status,
                                           NOT_FOUND))
        esc = await get_escalation(session, pref, esc_id)
        assert esc is not None
        name = await name_told(session, esc) or "都道府県"
        body = (f"受付番号 {esc.receipt} のご質問は、{name}から厚生労働省に確認しています。"
                "回答が届きしだい、このチャットでお知らせします。お時間をいただく場合があります。"
                "ご了承ください。")
        await _to_clinic(session, esc, "forwarded", body, now)
        if redmine:
            await outbox.enqueue(
                session, key=redmine_issue_key(esc_id), channel="redmine", recipient="",
                kind="redmine_issue", body=esc.question, prefecture_code=pref, now=now,
                payload={"escalation_id": esc_id})
        return await _card_update(session, pref, esc_id, "forwarded", now)


async def resolve(sessions: Sessions, pref: str, esc_id: int, staff: str, reason: str,
                  now: datetime) -> Escalation:
    """解決: close without an answer in the chat, keeping the reason."""
    reason = reason.strip()
    if not reason:
        raise DeskRefused("解決の理由を入力してください。")
    values = dict(status="resolved", resolution=reason[:1000], resolved_by=staff,
                  resolved_at=now, updated_at=now)
    async with sessions() as session:
        if not await _transition(session, pref, esc_id, ("open", "claimed", "forwarded"),
                                 values):
            raise DeskRefused(REFUSALS.get((await _refuse(session, pref, esc_id)).status,
                                           NOT_FOUND))
        return await _card_update(session, pref, esc_id, "resolved", now)


async def add_supplement(sessions: Sessions, pref: str, esc_id: int, text: str,
                         now: datetime) -> Escalation | None:
    """The clinic's follow-up to an open inquiry: kept on it, shown on the card, and posted
    in the card's thread so whoever handles it sees it. None when the inquiry has closed.

    The guarded UPDATE comes first, so two follow-ups at once queue up behind it instead of
    one overwriting the other's copy of the context."""
    async with sessions() as session:
        if not await _transition(session, pref, esc_id, OPEN_STATUSES, {"updated_at": now}):
            await session.rollback()
            return None
        esc = await get_escalation(session, pref, esc_id)
        assert esc is not None
        notes = [*(esc.context.get("supplements") or []),
                 {"text": text[:4000], "at": now.isoformat()}]
        if len(notes) > MAX_SUPPLEMENTS:
            told = await prefecture_told(session, esc)
            refusal = TOO_MANY_SUPPLEMENTS.format(
                desk=desk_of(told.inquiry_contact if told else None))
            await session.rollback()
            raise DeskRefused(refusal)
        esc.context = {**esc.context, "supplements": notes}
        session.add(esc)
        if esc.status == "forwarded" and await outbox.find(session, redmine_issue_key(esc_id)):
            # The ministry answers from its Redmine issue: the supplement goes there too.
            await outbox.enqueue(
                session, key=f"redmine-note:{esc_id}:{len(notes)}", channel="redmine",
                recipient="", kind="redmine_note", body=text[:4000], prefecture_code=pref,
                now=now, payload={"escalation_id": esc_id, "supplement": len(notes)},
                commit=False)
        await outbox.enqueue(  # commits the supplement with the messages announcing it
            session, key=f"escalation-note:{esc_id}:{len(notes)}", channel=DESK_CHANNEL,
            recipient=esc.card_channel or "", kind="escalation_note",
            body=f"{esc.receipt} に医療機関から補足が届きました。\n{shorten(text, 300)}",
            prefecture_code=pref, now=now, payload={"escalation_id": esc_id})
        return await _card_update(session, pref, esc_id, f"note-{len(notes)}", now)


def card_key(esc_id: int) -> str:
    """The outbox key of an escalation's staff card (posted once)."""
    return f"escalation-card:{esc_id}"


def redmine_issue_key(esc_id: int) -> str:
    """The outbox key of an escalation's Redmine issue (one per escalation)."""
    return f"redmine-issue:{esc_id}"


async def record_redmine_url(sessions: Sessions, esc_id: int, url: str, now: datetime,
                             issue_row: int, payload: dict[str, Any]) -> None:
    """Link the ministry's Redmine issue to the escalation and refresh its card; the issue's
    outbox row keeps, in the same commit, how many supplements its description carried."""
    async with sessions() as session:
        esc = await session.get(Escalation, esc_id)
        if esc is None:
            return
        await session.exec(update(Escalation).where(col(Escalation.id) == esc_id)  # type: ignore[call-overload]
                           .values(redmine_url=url, updated_at=now))
        await outbox.set_payload(session, issue_row, payload)
        await _card_update(session, esc.prefecture_code, esc_id, "redmine", now)


# Rows a channel refused for good (not found, bot not in it) that a new mapping sends again:
# a case's card, a campaign's approval card and its unlinked list (checked again when sent).
RESENT_ON_MAP = ("escalation_card", "campaign_preview", "campaign_unlinked")


async def map_channel(session: AsyncSession, pref: str, channel_id: str, now: datetime,
                      gmis_contact: str) -> int:
    """Map a prefecture to its staff channel; queued cards waiting for it are sent again.

    Returns how many waiting rows were (re)addressed to the channel.
    """
    owner = await prefecture_for_channel(session, channel_id)
    if owner is not None and owner != pref:
        raise DeskRefused(f"チャンネル {channel_id} は、すでに都道府県コード {owner} に"
                          "割り当てられています。")
    prefecture = await ensure_prefecture(session, pref, now.date(), gmis_contact)
    prefecture.slack_channel = channel_id
    session.add(prefecture)
    waiting = (col(Outbox.recipient) == "") | (
        col(Outbox.kind).in_(RESENT_ON_MAP) & (col(Outbox.status) == "failed"))
    stmt = (update(Outbox)
            .where(col(Outbox.channel) == DESK_CHANNEL, col(Outbox.prefecture_code) == pref,
                   col(Outbox.status).in_(("pending", "failed")), waiting)
            .values(recipient=channel_id, status="pending", attempts=0, next_attempt_at=now,
                    last_error=None))
    result = await session.exec(stmt)  # type: ignore[call-overload]
    await session.commit()
    return int(result.rowcount or 0)


async def _transition(session: AsyncSession, pref: str, esc_id: int, allowed: tuple[str, ...],
                      values: dict[str, Any]) -> bool:
    """Change state only from an allowed state; the first statement of its transaction, so
    SQLite waits for a concurrent writer instead of failing on a stale snapshot."""
    stmt = (update(Escalation)
            .where(col(Escalation.id) == esc_id, col(Escalation.prefecture_code) == pref,
                   col(Escalation.status).in_(allowed))
            .values(**values))
    result = await session.exec(stmt)  # type: ignore[call-overload]
    return bool(result.rowcount == 1)


async def _refuse(session: AsyncSession, pref: str, esc_id: int) -> Escalation:
    """After a refused transition: the escalation as it is now, or NOT_FOUND."""
    await session.rollback()
    esc = await get_escalation(session, pref, esc_id)
    if esc is None:
        raise DeskRefused(NOT_FOUND)
    return esc


async def _to_clinic(session: AsyncSession, esc: Escalation, what: str, body: str,
                     now: datetime) -> None:
    account = await session.get(ChatAccount, esc.chat_account_id)
    assert account is not None
    await outbox.enqueue(
        session, key=f"escalation-{what}:{esc.id}", channel=account.channel,
        recipient=account.external_user_id, kind=f"escalation_{what}", body=body,
        prefecture_code=esc.prefecture_code, now=now, payload={"escalation_id": esc.id})


async def _card_update(session: AsyncSession, pref: str, esc_id: int, event: str,
                       now: datetime) -> Escalation:
    """Commit, then queue a refresh of the card (rendered from the database when sent)."""
    await session.commit()
    esc = await get_escalation(session, pref, esc_id)
    assert esc is not None
    await outbox.enqueue(
        session, key=f"escalation-card:{esc_id}:{event}", channel=DESK_CHANNEL,
        recipient=esc.card_channel or "", kind="escalation_card_update",
        body=f"{esc.receipt} を更新", prefecture_code=pref, now=now,
        payload={"escalation_id": esc_id})
    return esc
