"""SLA: business hours (weekdays 9–17 JST, holidays and 年末年始 off) and thread reminders
for escalations nobody has claimed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from pydantic import SecretStr
from sqlmodel import col, select

from bot.settings import GMIS_CONTACT_DEFAULT, Settings
from bot.slack import SlackChannel
from db import repo
from db.models import Outbox
from handlers import desk
from handlers.context import Context
from handlers.desk_sla import remind_unclaimed
from scheduler.calendar import business_hours_between, is_business_day
from tests.fakes.slack_api import TOKEN, FakeSlackAPI
from tests.fakes.slack_requests import SECRET

JST = ZoneInfo("Asia/Tokyo")
C26 = "C0KYOTO"


def jst(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=JST)


@pytest.mark.parametrize(("start", "end", "hours"), [
    (jst(2026, 11, 24, 10), jst(2026, 11, 24, 12, 30), 2.5),  # same weekday
    (jst(2026, 11, 27, 16), jst(2026, 11, 30, 12), 4.0),  # Fri 16:00 → Mon 12:00
    (jst(2026, 11, 20, 17), jst(2026, 11, 24, 10), 1.0),  # Mon 11/23 is 勤労感謝の日
    (jst(2026, 12, 28, 17), jst(2027, 1, 4, 9), 0.0),  # 年末年始 12/29–1/3
    (jst(2026, 11, 24, 18), jst(2026, 11, 25, 8), 0.0),  # overnight
    (jst(2026, 11, 24, 12), jst(2026, 11, 24, 11), 0.0),  # end before start
])
def test_business_hours(start: datetime, end: datetime, hours: float) -> None:
    assert business_hours_between(start, end) == pytest.approx(hours)


def test_year_end_and_holidays_are_not_business_days() -> None:
    assert not is_business_day(jst(2026, 12, 29).date())
    assert not is_business_day(jst(2027, 1, 1).date())
    assert not is_business_day(jst(2026, 11, 23).date())
    assert is_business_day(jst(2026, 12, 28).date())


@pytest.fixture
async def channel(ctx: Context) -> AsyncIterator[tuple[SlackChannel, FakeSlackAPI]]:
    async with FakeSlackAPI() as api:
        settings = Settings(_env_file=None,  # type: ignore[call-arg]
                            slack_bot_token=SecretStr(TOKEN),
                            slack_signing_secret=SecretStr(SECRET), slack_api_base=api.base_url)
        yield SlackChannel(settings, ctx.sessions, ctx.clock), api


async def new_escalation(ctx: Context, user: str, created: datetime) -> int:
    async with ctx.session() as session:
        account = await repo.ensure_account(session, "telegram", user)
        assert account.id is not None
        esc = await repo.create_escalation(session, "26", account.id, "分院の扱いは？",
                                           {"history": [], "candidates": []}, created)
        await desk.announce(session, esc, created)
    assert esc.id is not None
    return esc.id


async def reminders(ctx: Context) -> list[Outbox]:
    async with ctx.session() as session:
        stmt = select(Outbox).where(Outbox.kind == "escalation_reminder").order_by(
            col(Outbox.id))
        return list((await session.exec(stmt)).all())


async def test_unclaimed_escalation_is_reminded_once_per_level_in_its_thread(
        ctx: Context, channel: tuple[SlackChannel, FakeSlackAPI]) -> None:
    desk_channel, api = channel
    async with ctx.session() as session:
        await desk.map_channel(session, "26", C26, jst(2026, 11, 27, 9), GMIS_CONTACT_DEFAULT)
    friday = jst(2026, 11, 27, 16)
    waiting = await new_escalation(ctx, "clinic-1", friday)
    taken = await new_escalation(ctx, "clinic-2", friday)
    await desk.claim(ctx.sessions, "26", taken, "U0AAA", friday)
    await desk_channel.flush(friday)
    assert len(api.of("chat.postMessage")) == 2  # both cards

    assert await remind_unclaimed(ctx.sessions, "26", jst(2026, 11, 30, 11), 4) == 0  # 3 h
    assert await remind_unclaimed(ctx.sessions, "26", jst(2026, 11, 30, 12), 4) == 1  # 4 h
    assert await remind_unclaimed(ctx.sessions, "26", jst(2026, 11, 30, 15), 4) == 0  # 7 h
    assert await remind_unclaimed(ctx.sessions, "26", jst(2026, 12, 1, 12), 4) == 1  # 12 h
    keys = [r.idempotency_key for r in await reminders(ctx)]
    assert keys == [f"escalation-reminder:{waiting}:1", f"escalation-reminder:{waiting}:3"]

    await desk_channel.flush(jst(2026, 12, 1, 12))
    thread = [c for c in api.of("chat.postMessage") if c.params.get("thread_ts")]
    assert len(thread) == 2
    assert all(c.params["thread_ts"] == card_ts(api, waiting) for c in thread)
    assert "営業時間で4時間以上" in thread[0].params["text"]
    assert "担当する" in thread[0].params["text"]


def card_ts(api: FakeSlackAPI, esc_id: int) -> str:
    """The ts of the card that names this escalation's receipt."""
    receipt = f"Q26-{esc_id:06d}"
    return next(ts for (_, ts), msg in api.messages.items() if receipt in msg.get("text", ""))


async def test_reminder_queued_then_claimed_is_not_posted(
        ctx: Context, channel: tuple[SlackChannel, FakeSlackAPI]) -> None:
    desk_channel, api = channel
    async with ctx.session() as session:
        await desk.map_channel(session, "26", C26, jst(2026, 11, 27, 9), GMIS_CONTACT_DEFAULT)
    esc_id = await new_escalation(ctx, "clinic-1", jst(2026, 11, 24, 9))
    await desk_channel.flush(jst(2026, 11, 24, 9))
    assert await remind_unclaimed(ctx.sessions, "26", jst(2026, 11, 24, 14), 4) == 1
    await desk.claim(ctx.sessions, "26", esc_id, "U0AAA", jst(2026, 11, 24, 14))
    await desk_channel.flush(jst(2026, 11, 24, 14))
    assert [c for c in api.of("chat.postMessage") if c.params.get("thread_ts")] == []
    [row] = await reminders(ctx)
    assert row.status == "sent"


async def test_reminders_touch_only_their_prefecture(ctx: Context) -> None:
    await new_escalation(ctx, "clinic-1", jst(2026, 11, 24, 9))
    assert await remind_unclaimed(ctx.sessions, "13", jst(2026, 11, 26, 9), 4) == 0
    assert await remind_unclaimed(ctx.sessions, "26", jst(2026, 11, 26, 9), 4) == 1
