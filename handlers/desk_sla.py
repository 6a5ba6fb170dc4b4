"""SLA: an escalation nobody has claimed for N business hours gets a reminder in its thread.

Business hours come from the shared calendar (scheduler.calendar): weekdays 9:00–17:00 JST,
excluding national holidays and the year-end break 12/29–1/3.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from db.models import Escalation, Prefecture, desk_channel
from scheduler import outbox
from scheduler.calendar import business_hours_between

logger = logging.getLogger(__name__)
MAX_LEVEL = 3  # after the third reminder, the digest keeps listing it


def reminder_level(created_at: datetime, now: datetime, after_hours: float) -> int:
    """0 = no reminder yet; 1 after N business hours, 2 after 2N, ... up to MAX_LEVEL."""
    if after_hours <= 0:
        return 0
    return min(int(business_hours_between(created_at, now) // after_hours), MAX_LEVEL)


async def remind_unclaimed(sessions: Callable[[], AsyncSession], prefecture_code: str,
                           now: datetime, after_hours: float) -> int:
    """Queue a thread reminder for each unclaimed escalation past its next level.

    Safe to run as often as a scheduler likes: each (escalation, level) is queued once.
    Returns how many reminders were newly queued.
    """
    created = 0
    async with sessions() as session:
        pref = await session.get(Prefecture, prefecture_code)
        stmt = select(Escalation).where(Escalation.prefecture_code == prefecture_code,
                                        Escalation.status == "open").order_by(col(Escalation.id))
        for esc in (await session.exec(stmt)).all():
            level = reminder_level(esc.created_at, now, after_hours)
            if level and await _queue(session, esc, level, after_hours, pref, now):
                created += 1
    if created:
        logger.info("SLA reminders queued: prefecture=%s count=%s", prefecture_code, created)
    return created


async def _queue(session: AsyncSession, esc: Escalation, level: int, after_hours: float,
                 pref: Prefecture | None, now: datetime) -> bool:
    hours = f"{after_hours * level:g}"
    body = (f"⏰ この問い合わせ（{esc.receipt}）は、受付から営業時間で{hours}時間以上、"
            "担当者が決まっていません。対応できる方は「担当する」を押してください。")
    return await outbox.enqueue(
        session, key=f"escalation-reminder:{esc.id}:{level}", channel="slack",
        recipient=esc.card_channel or desk_channel(pref),
        kind="escalation_reminder", body=body, prefecture_code=esc.prefecture_code, now=now,
        payload={"escalation_id": esc.id, "level": level})
