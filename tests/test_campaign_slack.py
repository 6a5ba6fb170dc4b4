"""Campaign preview in the prefecture's Slack channel: 送信 / 中止, tenant-checked; report."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.campaign_admin import card_state
from bot.settings import GMIS_CONTACT_DEFAULT
from db.models import Campaign, Outbox
from handlers import desk
from scheduler import campaigns
from tests.conftest import DEMO_PREF, NOW
from tests.test_campaign import IN_PERIOD, Recorder, add_clinics, outbox_rows, run_all
from tests.test_slack_desk import (  # noqa: F401  (fixtures)
    C13,
    C26,
    STAFF_A,
    STAFF_TOKYO,
    Desk,
    action_ids,
    api,
    blocks_text,
    d,
)


async def dunning(session: AsyncSession, tag: str) -> campaigns.Plan:
    """A 督促 planned now (the desk's clock, before 受付開始) for a slot in the period: a
    dunning for a slot before 受付開始 is refused."""
    return await campaigns.plan(session, DEMO_PREF, "dunning", tag, NOW, send_at=IN_PERIOD)


async def planned(d: Desk) -> Campaign:
    await add_clinics(d.ctx, ["未報告", "未報告"])
    await add_clinics(d.ctx, ["未報告"], linked=False, prefix="88")
    async with d.ctx.session() as session:
        c = (await dunning(session, "slack:D-7")).campaign
        await campaigns.request_preview(session, c, NOW)
    await d.channel.flush(NOW)
    return c


async def status_of(d: Desk, campaign_id: int) -> str:
    async with d.ctx.session() as session:
        return (await session.exec(select(Campaign.status).where(
            Campaign.id == campaign_id))).one()


async def test_preview_card_then_send_button_releases_the_messages(d: Desk) -> None:
    c = await planned(d)
    [card] = d.api.of("chat.postMessage")
    assert card.params["channel"] == C26
    text = blocks_text(card.params)
    assert "送信対象" in text and "2件" in text and "テスト診療所770 ご担当者さま" in text
    assert "テスト診療所880" in text  # the unlinked CSV excerpt
    assert action_ids(card.params) == ["campaign_send", "campaign_cancel"]
    [upload] = d.api.of("files.completeUploadExternal")  # the full list, to phone or mail
    assert c.unlinked >= 1 and upload.params["channel_id"] == C26
    assert f"未連携の医療機関（{c.unlinked}件）" in upload.params["initial_comment"]
    [(file_id, table)] = d.api.uploads.items()
    assert upload.params["files"][0]["id"] == file_id
    lines = table.decode("utf-8-sig").splitlines()
    assert lines[0].startswith("医療機関コード,医療機関名") and len(lines) == 1 + c.unlinked
    assert any("テスト診療所880" in line for line in lines)
    await d.slack.press("campaign_send", c.id, C26, STAFF_A)
    assert await status_of(d, c.id) == "sending"  # type: ignore[arg-type]
    assert {r.status for r in await outbox_rows(d.ctx, campaign_id=c.id)} == {"pending"}
    assert "承認しました（2件）" in d.api.of("chat.postEphemeral")[-1].params["text"]


async def test_another_prefectures_channel_cannot_approve(d: Desk) -> None:
    c = await planned(d)
    await d.slack.press("campaign_send", c.id, C13, STAFF_TOKYO)
    assert await status_of(d, c.id) == "previewed"  # type: ignore[arg-type]
    assert "見つかりません" in d.api.of("chat.postEphemeral")[-1].params["text"]


async def test_cancel_button_and_the_final_report(d: Desk) -> None:
    c = await planned(d)
    await d.slack.press("campaign_cancel", c.id, C26, STAFF_A)
    assert await status_of(d, c.id) == "cancelled"  # type: ignore[arg-type]
    async with d.ctx.session() as session:
        c2 = (await dunning(session, "slack:D-3")).campaign
        await campaigns.approve(session, c2, "auto", NOW)
        await campaigns.cancel(session, c2, "x", NOW)
        c3 = (await campaigns.plan(session, DEMO_PREF, "annai", "slack:annai", NOW)).campaign
        await campaigns.approve(session, c3, "auto", NOW)

    await run_all(d.ctx, Recorder())
    async with d.ctx.session() as session:
        assert await campaigns.finish_done(session, NOW) == [c3.id]
    await d.channel.flush(NOW)
    report = d.api.of("chat.postMessage")[-1].params
    assert report["channel"] == C26 and "送信済み：2件" in report["text"]
    assert "チャット未連携の医療機関：" in report["text"]


async def test_a_card_for_a_campaign_cancelled_before_it_went_out_is_not_posted(
        d: Desk) -> None:
    """A channel mapped late (or Slack down for a while) must not bring up 送信 buttons for
    a campaign that was cancelled by the CLI in the meantime."""
    await add_clinics(d.ctx, ["未報告"])
    async with d.ctx.session() as session:
        c = (await dunning(session, "slack:late")).campaign
        await campaigns.request_preview(session, c, NOW)
        await campaigns.cancel(session, c, "cli", NOW)
    await d.channel.flush(NOW)
    assert not [m for m in d.api.of("chat.postMessage")
                if "campaign_send" in action_ids(m.params)]
    [card] = [r for r in await outbox_rows(d.ctx) if r.kind == "campaign_preview"]
    assert card.status == "skipped" and "cancelled" in (card.last_error or "")


async def preview_row(d: Desk) -> Outbox:
    [row] = [r for r in await outbox_rows(d.ctx) if r.kind == "campaign_preview"]
    return row


async def state(d: Desk, c: Campaign) -> str:
    async with d.ctx.session() as session:
        return await card_state(session, c)


async def test_a_card_refused_for_good_is_reported_and_sent_again_when_asked(
        d: Desk, caplog: pytest.LogCaptureFixture) -> None:
    """The bot not invited to the staff channel: the card had failed silently, and asking
    for the preview again did nothing (its outbox key existed)."""
    d.api.outside_channels.add(C26)
    with caplog.at_level(logging.ERROR, logger="bot.slack.sender"):
        c = await planned(d)
    assert not d.api.of("chat.postMessage")
    assert (await preview_row(d)).status == "failed"
    [logged] = [r.getMessage() for r in caplog.records if "approval card" in r.getMessage()]
    assert f"campaign {c.id} (prefecture 26)" in logged and "(not_in_channel)" in logged
    assert f"campaign preview {c.id} --prefecture 26" in logged
    said = await state(d, c)
    assert "Slackに届いていません（not_in_channel）" in said and "招待" in said
    d.api.outside_channels.clear()  # the operator invites the bot, then asks again
    async with d.ctx.session() as session:
        assert await campaigns.request_preview(session, c, NOW)
    await d.channel.flush(NOW)
    [card] = d.api.of("chat.postMessage")
    assert card.params["channel"] == C26 and "campaign_send" in action_ids(card.params)
    assert await state(d, c) == "確認カード：Slackに送りました。"


async def test_a_card_for_a_channel_not_found_goes_out_when_the_channel_is_mapped_again(
        d: Desk) -> None:
    d.api.unknown_channels.add(C26)
    c = await planned(d)
    assert "slack-channel --prefecture 26" in await state(d, c)
    async with d.ctx.session() as session:
        await desk.map_channel(session, DEMO_PREF, "C0KYOTO2", NOW, GMIS_CONTACT_DEFAULT)
    await d.channel.flush(NOW)
    [card] = d.api.of("chat.postMessage")
    assert card.params["channel"] == "C0KYOTO2" and "campaign_send" in action_ids(card.params)


async def test_a_rate_limited_card_is_retried_not_dropped(d: Desk) -> None:
    d.api.fail("ratelimited")
    c = await planned(d)
    row = await preview_row(d)
    assert row.status == "pending" and "自動で送り直します（ratelimited）" in await state(d, c)
    await d.channel.flush(NOW + timedelta(seconds=8))  # after Slack's Retry-After (7 s)
    [card] = d.api.of("chat.postMessage")
    assert "campaign_send" in action_ids(card.params)
