"""Campaigns: plan (recipients from current status) → preview → approve → send → report.

Planning writes one outbox row per recipient (a linked, reachable chat account of a target
institution), keyed (campaign, recipient) and `held`: nothing leaves until the campaign is
approved (the 送信 button, `campaign send`, or the prefecture's auto-send setting), which
turns them `pending` from the next allowed slot. The dispatcher re-checks each row just
before sending (scheduler.campaign_check). When no row is open any more, the campaign is
done and a report goes to the prefecture's Slack channel.
"""

from __future__ import annotations

import csv
import io
import logging
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import and_, exists, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from db import repo
from db.engine import insert_for
from db.models import (
    Campaign,
    ChatAccount,
    Institution,
    Outbox,
    Prefecture,
    StatusHistory,
    desk_channel,
)
from handlers.rules import EXEMPTIONS
from scheduler import outbox, templates
from scheduler.cadence import period_opens
from scheduler.calendar import JST, add_business_days, next_slot, sending_hours
from scheduler.campaign_check import TARGET_STATUSES
from scheduler.outbox import OPEN_STATUSES, enqueue

logger = logging.getLogger(__name__)
SEND_CHANNELS = ("telegram", "line")  # chat channels with an outbox sender
CHUNK = 5000
KIND_LABELS = {"annai": "定期報告の案内", "dunning": "督促",
               "returned": "差し戻しの再提出のお願い"}
STATUS_LABELS = {"planned": "計画済み", "previewed": "承認待ち", "sending": "送信中",
                 "done": "完了", "cancelled": "中止"}
REPORT_LABELS = (("sent", "送信済み"), ("unreachable", "届かず（ブロック等）"),
                 ("failed", "失敗"), ("uncertain", "送信中に停止（届いたか不明）"),
                 ("skipped", "送信不要（報告済み・連携解除など）"),
                 ("cancelled", "中止"))


class CampaignError(ValueError):
    """An operation the campaign's state does not allow; the text is for staff."""


@dataclass(frozen=True)
class Plan:
    campaign: Campaign
    created: bool


async def plan(session: AsyncSession, prefecture_code: str, kind: str, run_tag: str,
               now: datetime, *, send_at: datetime | None = None,
               channels: tuple[str, ...] = SEND_CHANNELS,
               scope: dict[str, Any] | None = None) -> Plan:
    """Create the campaign and its held rows; a second call with the same tag returns the
    first campaign untouched (even one that would now be refused). `scope` narrows a 差し戻し
    campaign to given institutions. A 督促 whose slot is before 受付開始 is refused
    (CampaignError, see too_early), whoever asks: CLI, Slack or the scheduled jobs."""
    if kind not in TARGET_STATUSES:
        raise CampaignError(f"unknown campaign kind {kind!r}")
    existing = await find(session, prefecture_code, kind, run_tag)
    if existing is not None:
        return Plan(existing, False)
    pref = await session.get(Prefecture, prefecture_code)
    if pref is None:
        raise CampaignError(f"prefecture {prefecture_code} is not set up")
    if refusal := too_early(pref, kind, send_at or now):
        raise CampaignError(refusal)
    body = await templates.get_body(session, prefecture_code, kind)
    at = next_slot(send_at or now, *sending_hours(pref))
    campaign = Campaign(prefecture_code=prefecture_code, kind=kind, run_tag=run_tag,
                        deadline=pref.period_end, send_at=at, body_template=body,
                        created_at=now, report=scope)
    session.add(campaign)
    try:
        await session.commit()
    except IntegrityError:  # another process planned the same run a moment ago
        await session.rollback()
        found = await find(session, prefecture_code, kind, run_tag)
        assert found is not None
        return Plan(found, False)
    await repo.refresh_statistics(session, "institution", "chataccount")
    campaign.recipients = await _write_rows(session, campaign, pref, channels, now)
    campaign.unlinked = await count_unlinked(session, campaign, channels)
    session.add(campaign)
    await session.commit()
    logger.info("campaign %s planned: prefecture=%s kind=%s tag=%s recipients=%d unlinked=%d",
                campaign.id, prefecture_code, kind, run_tag, campaign.recipients,
                campaign.unlinked)
    return Plan(campaign, True)


def too_early(pref: Prefecture, kind: str, at: datetime) -> str | None:
    """Why a `kind` campaign sent from `at` (its next slot) must not be planned, or None:
    a 督促 before reporting opens would chase clinics that cannot report yet, and the
    calendar refuses such reminders too. There is no override."""
    if kind != "dunning" or pref.period_end is None:
        return None  # without a cycle there is no opening to compare with
    opens = period_opens(pref.period_start, pref.period_end)
    if next_slot(at, *sending_hours(pref)).astimezone(JST).date() >= opens:
        return None
    return (f"督促は受付開始（{templates.format_deadline(opens)}）より前には送れません。"
            "受付開始後にもう一度計画してください"
            "（受付開始は calendar set --start で変更できます）。")


async def find(session: AsyncSession, prefecture_code: str, kind: str, run_tag: str,
               ) -> Campaign | None:
    stmt = select(Campaign).where(Campaign.prefecture_code == prefecture_code,
                                  Campaign.kind == kind, Campaign.run_tag == run_tag)
    return (await session.exec(stmt)).scalars().first()  # type: ignore[call-overload, no-any-return]


async def find_run(session: AsyncSession, prefecture_code: str, kind: str, run_tag: str,
                   ) -> Campaign | None:
    """The campaign of a calendar run. A run's tag names the deadline, so a deadline set
    after the 案内 went out (the first import's provisional date, then the real one)
    re-tags the 案内 run; it is still the cycle's one 案内, so any 案内 of the same
    deadline year that was not cancelled counts as it."""
    if found := await find(session, prefecture_code, kind, run_tag):
        return found
    if kind != "annai":
        return None  # a 督促 is relative to the deadline: a new deadline is a new reminder
    stmt = (select(Campaign).where(
        Campaign.prefecture_code == prefecture_code, Campaign.kind == kind,
        Campaign.status != "cancelled",
        col(Campaign.run_tag).like(f"{run_tag[:4]}-%:annai"))
        .order_by(col(Campaign.id)).limit(1))
    return (await session.exec(stmt)).scalars().first()  # type: ignore[call-overload, no-any-return]


def _targets(campaign: Campaign) -> Any:
    """Institutions the campaign is for: reporting ones in a status it chases."""
    cond = and_(Institution.prefecture_code == campaign.prefecture_code,
                col(Institution.status).in_(TARGET_STATUSES[campaign.kind]),
                repo.reports_this_year(EXEMPTIONS))
    if campaign.kind == "returned":
        cond = and_(cond, col(Institution.id).in_(_returned_ids(campaign)))
    return cond


def _returned_ids(campaign: Campaign) -> list[int]:
    return list((campaign.report or {}).get("institution_ids", []))


def _linked(channels: tuple[str, ...]) -> Any:
    return and_(ChatAccount.institution_id == Institution.id,
                col(ChatAccount.reachable).is_(True), col(ChatAccount.channel).in_(channels))


async def _write_rows(session: AsyncSession, campaign: Campaign, pref: Prefecture,
                      channels: tuple[str, ...], now: datetime) -> int:
    stmt = (select(Institution.id, Institution.name, ChatAccount.id, ChatAccount.channel,
                   ChatAccount.external_user_id)
            .join(ChatAccount, _linked(channels)).where(_targets(campaign))
            .order_by(col(Institution.id), col(ChatAccount.id)))
    values = {"deadline": templates.format_deadline(campaign.deadline),
              "days_left": templates.days_left_text(campaign.deadline,
                                                    campaign.send_at.astimezone(JST).date()),
              "how_to_report": templates.HOW_TO_REPORT, "contact": pref.inquiry_contact,
              "prefecture": pref.name}
    result = await session.stream(stmt)
    batch: list[dict[str, Any]] = []
    async for inst_id, name, account_id, channel, user_id in result:
        body = templates.render(campaign.body_template, values | {"institution_name": name})
        batch.append(dict(
            idempotency_key=row_key(campaign, inst_id, account_id), channel=channel,
            recipient=user_id, kind="campaign", body=body, status="held", attempts=0,
            prefecture_code=campaign.prefecture_code, campaign_id=campaign.id,
            payload={"campaign_id": campaign.id, "institution_id": inst_id,
                     "account_id": account_id},
            created_at=now, next_attempt_at=campaign.send_at))
        if len(batch) >= CHUNK:
            await _insert(session, batch)
            batch = []
    if batch:
        await _insert(session, batch)
    stmt = select(func.count()).select_from(Outbox).where(col(Outbox.campaign_id) == campaign.id)
    return int((await session.exec(stmt)).scalar_one())  # type: ignore[call-overload]


def row_key(campaign: Campaign, institution_id: int, account_id: int) -> str:
    """One message per (campaign, recipient); a 差し戻し is chased once per 差し戻し."""
    if campaign.kind == "returned":
        history = (campaign.report or {}).get("history", {}).get(str(institution_id))
        return f"campaign:returned:{history}:{account_id}"
    return f"campaign:{campaign.id}:{account_id}"


async def _insert(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    insert = insert_for(session)
    stmt = insert(Outbox).on_conflict_do_nothing(index_elements=["idempotency_key"])
    await session.exec(stmt, params=rows)  # type: ignore[call-overload]


async def count_unlinked(session: AsyncSession, campaign: Campaign,
                         channels: tuple[str, ...] = SEND_CHANNELS) -> int:
    stmt = select(func.count()).select_from(Institution).where(
        _targets(campaign), ~exists().where(_linked(channels)))
    return int((await session.exec(stmt)).scalar_one())  # type: ignore[call-overload]


async def unlinked_csv(session: AsyncSession, campaign: Campaign,
                       channels: tuple[str, ...] = SEND_CHANNELS, limit: int | None = None,
                       ) -> str:
    """Target institutions no chat account can reach, for phone or mail follow-up."""
    stmt = (select(Institution.code, Institution.name, Institution.status, Institution.phone,
                   Institution.email, Institution.municipality)
            .where(_targets(campaign), ~exists().where(_linked(channels)))
            .order_by(col(Institution.code)).limit(limit))
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["医療機関コード", "医療機関名", "報告状況", "電話番号", "メール", "市区町村"])
    for row in (await session.exec(stmt)).all():  # type: ignore[call-overload]
        writer.writerow(list(row))
    return out.getvalue()


async def get(session: AsyncSession, campaign_id: int, prefecture_code: str) -> Campaign:
    """A campaign of this prefecture; another prefecture's is as good as missing."""
    campaign = await session.get(Campaign, campaign_id)
    if campaign is None or campaign.prefecture_code != prefecture_code:
        raise CampaignError(f"キャンペーン {campaign_id} が見つかりません。")
    return campaign


async def unsent(session: AsyncSession, prefecture_code: str) -> list[tuple[Campaign, int]]:
    """Live campaigns of the prefecture with messages not sent yet (held or pending), each
    with how many: their text was rendered at planning, from the calendar of then."""
    stmt = (select(Outbox.campaign_id, func.count())
            .join(Campaign, col(Campaign.id) == col(Outbox.campaign_id))
            .where(Campaign.prefecture_code == prefecture_code,
                   col(Campaign.status).in_(("planned", "previewed", "sending")),
                   col(Outbox.status).in_(("held", "pending")))
            .group_by(col(Outbox.campaign_id)).order_by(col(Outbox.campaign_id)))
    found = []
    for campaign_id, n in (await session.exec(stmt)).all():  # type: ignore[call-overload]
        campaign = await session.get(Campaign, campaign_id)
        if campaign is not None:
            found.append((campaign, int(n)))
    return found


async def covering(session: AsyncSession, prefecture_code: str, kind: str, run_tag: str,
                   since: datetime) -> Campaign | None:
    """A live campaign that sends a calendar run: the run's own (by tag), or one of its kind
    planned since the run's slot (by hand, when the scheduler had given up on it)."""
    stmt = (select(Campaign).where(
        Campaign.prefecture_code == prefecture_code, Campaign.kind == kind,
        Campaign.status != "cancelled",
        or_(Campaign.run_tag == run_tag, col(Campaign.created_at) >= since))
        .order_by(col(Campaign.id)).limit(1))
    return (await session.exec(stmt)).scalars().first()  # type: ignore[call-overload, no-any-return]


async def sample(session: AsyncSession, campaign: Campaign) -> str | None:
    stmt = (select(Outbox.body).where(Outbox.campaign_id == campaign.id)
            .order_by(col(Outbox.id)).limit(1))
    return (await session.exec(stmt)).scalars().first()  # type: ignore[call-overload, no-any-return]


def preview_keys(campaign_id: int | None) -> tuple[str, str]:
    """Outbox keys of a campaign's approval card and of its unlinked-institution file."""
    return f"campaign-preview:{campaign_id}", f"campaign-unlinked:{campaign_id}"


async def request_preview(session: AsyncSession, campaign: Campaign, now: datetime) -> bool:
    """Queue the preview card (with 送信 / 中止 buttons) for the prefecture's Slack channel;
    True when it is queued now. Asked again, a card Slack refused for good (the bot not in
    the channel) is queued again: the way to send it once the cause is fixed."""
    if campaign.status not in ("planned", "previewed"):
        raise CampaignError(f"キャンペーン {campaign.id} は"
                            f"{STATUS_LABELS.get(campaign.status, campaign.status)}です。")
    card_key, file_key = preview_keys(campaign.id)
    again = await outbox.send_again(session, (card_key, file_key), now)
    pref = await session.get(Prefecture, campaign.prefecture_code)
    created = await enqueue(
        session, key=card_key, channel="slack",
        recipient=desk_channel(pref), kind="campaign_preview",
        body=f"{KIND_LABELS[campaign.kind]}の送信確認（{campaign.recipients}件）",
        prefecture_code=campaign.prefecture_code, now=now,
        payload={"campaign_id": campaign.id})
    if campaign.unlinked:  # the whole list as a file, for phone or mail follow-up
        await enqueue(
            session, key=file_key, channel="slack",
            recipient=desk_channel(pref), kind="campaign_unlinked",
            body=f"チャット未連携の医療機関（{campaign.unlinked:,}件）の一覧です。"
                 "電話・メールでのご連絡にお使いください。",
            prefecture_code=campaign.prefecture_code, now=now,
            payload={"campaign_id": campaign.id})
    campaign.status = "previewed"
    session.add(campaign)
    await session.commit()
    return created or bool(again)


async def approve(session: AsyncSession, campaign: Campaign, by: str, now: datetime) -> int:
    """Release the held rows from the campaign's slot (or the next one); returns how many."""
    if campaign.status in ("sending", "done"):
        return 0
    if campaign.status not in ("planned", "previewed"):
        raise CampaignError(
            f"キャンペーン {campaign.id} は{STATUS_LABELS.get(campaign.status, campaign.status)}"
            "のため送信できません。")
    pref = await session.get(Prefecture, campaign.prefecture_code)
    at = next_slot(max(now, campaign.send_at), *sending_hours(pref))
    stmt = (update(Outbox).where(col(Outbox.campaign_id) == campaign.id,
                                 col(Outbox.status) == "held")
            .values(status="pending", next_attempt_at=at))
    released = (await session.exec(stmt)).rowcount  # type: ignore[call-overload]
    campaign.status, campaign.approved_by, campaign.approved_at = "sending", by, now
    session.add(campaign)
    await session.commit()
    logger.info("campaign %s approved by %s: %d messages from %s", campaign.id, by, released, at)
    return int(released or 0)


async def cancel(session: AsyncSession, campaign: Campaign, by: str, now: datetime) -> int:
    """Stop a campaign; rows not yet sent are cancelled (in-flight ones are skipped by the
    pre-send check). Returns how many rows were cancelled."""
    if campaign.status in ("done", "cancelled"):
        raise CampaignError(
            f"キャンペーン {campaign.id} はすでに{STATUS_LABELS[campaign.status]}です。")
    stmt = (update(Outbox).where(col(Outbox.campaign_id) == campaign.id,
                                 col(Outbox.status).in_(("held", "pending")))
            .values(status="cancelled"))
    cancelled = (await session.exec(stmt)).rowcount  # type: ignore[call-overload]
    campaign.status, campaign.cancelled_by, campaign.finished_at = "cancelled", by, now
    session.add(campaign)
    await session.commit()
    return int(cancelled or 0)


async def counts(session: AsyncSession, campaign_id: int) -> dict[str, int]:
    stmt = (select(Outbox.status, func.count()).where(col(Outbox.campaign_id) == campaign_id)
            .group_by(col(Outbox.status)))
    return {str(s): int(n) for s, n in (await session.exec(stmt)).all()}  # type: ignore[call-overload]


async def finish_done(session: AsyncSession, now: datetime) -> list[int]:
    """Close sending campaigns with no open row left and queue their Slack reports."""
    stmt = select(Campaign).where(Campaign.status == "sending")
    finished: list[int] = []
    for campaign in (await session.exec(stmt)).scalars().all():  # type: ignore[call-overload]
        numbers = await counts(session, campaign.id)
        if any(numbers.get(s) for s in OPEN_STATUSES):
            continue
        campaign.status, campaign.finished_at = "done", now
        campaign.report = {**(campaign.report or {}), "counts": numbers}
        session.add(campaign)
        await session.commit()
        await _queue_report(session, campaign, numbers, now)
        finished.append(campaign.id)
    return finished


def report_text(campaign: Campaign, numbers: dict[str, int], pref_name: str) -> str:
    lines = [f"【{KIND_LABELS[campaign.kind]}・送信結果】{pref_name}（{campaign.run_tag}）"]
    lines += [f"・{label}：{numbers.get(status, 0):,}件" for status, label in REPORT_LABELS
              if numbers.get(status) or status in ("sent", "unreachable", "failed")]
    lines.append(f"・チャット未連携の医療機関：{campaign.unlinked:,}件"
                 f"（`python main.py campaign unlinked {campaign.id} --prefecture "
                 f"{campaign.prefecture_code} --out 未連携.csv` で一覧を"
                 "出力できます）")
    return "\n".join(lines)


async def _queue_report(session: AsyncSession, campaign: Campaign, numbers: dict[str, int],
                        now: datetime) -> None:
    pref = await session.get(Prefecture, campaign.prefecture_code)
    await enqueue(session, key=f"campaign-report:{campaign.id}", channel="slack",
                  recipient=desk_channel(pref),
                  kind="campaign_report",
                  body=report_text(campaign, numbers, pref.name if pref else ""),
                  prefecture_code=campaign.prefecture_code, now=now,
                  payload={"campaign_id": campaign.id})


async def returned_candidates(session: AsyncSession, prefecture_code: str, today: date,
                              after_days: int) -> dict[int, int]:
    """Institutions still 差し戻し `after_days` business days after it: {institution: history}."""
    stmt = (select(StatusHistory.institution_id, func.max(StatusHistory.id),
                   func.max(StatusHistory.changed_at))
            .join(Institution, col(Institution.id) == col(StatusHistory.institution_id))
            .where(StatusHistory.prefecture_code == prefecture_code,
                   StatusHistory.new_status == "差し戻し", Institution.status == "差し戻し")
            .group_by(col(StatusHistory.institution_id)))
    found: dict[int, int] = {}
    for inst_id, hist_id, changed in (await session.exec(stmt)).all():  # type: ignore[call-overload]
        changed_day = changed.astimezone(JST).date()
        if add_business_days(changed_day, after_days) <= today:
            found[int(inst_id)] = int(hist_id)
    return found


async def plan_returned(session: AsyncSession, prefecture_code: str, now: datetime,
                        after_days: int) -> Plan | None:
    """Today's 差し戻し reminder campaign, or None when nobody is newly due. Each 差し戻し
    (status-history row) is chased once, however many daily sweeps see it."""
    today = now.astimezone(JST).date()
    found = await returned_candidates(session, prefecture_code, today, after_days)
    if found:
        likes = [col(Outbox.idempotency_key).startswith(f"campaign:returned:{h}:")
                 for h in found.values()]
        keys = (await session.exec(select(Outbox.idempotency_key).where(  # type: ignore[call-overload]
            or_(*likes)))).scalars().all()
        chased = {int(k.split(":")[2]) for k in keys}
        found = {i: h for i, h in found.items() if h not in chased}
    if not found:
        return None
    return await plan(session, prefecture_code, "returned", f"returned:{today}", now,
                      send_at=now, scope={"institution_ids": list(found),
                                          "history": {str(k): v for k, v in found.items()}})
