"""The Slack staff desk end to end: signed requests from "Slack" to the Bolt endpoint served
by uvicorn, the real slack_sdk client talking to a fake Slack Web API, real databases."""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from pydantic import SecretStr
from sqlalchemy import func, update
from sqlmodel import col, select

from bot import cli
from bot.runner import channel_builders
from bot.settings import GMIS_CONTACT_DEFAULT, ConfigError, Settings
from bot.slack import SlackChannel, build_slack_channel
from db import repo
from db.models import (
    ChatAccount,
    ConversationLog,
    Escalation,
    Institution,
    KbDraft,
    Outbox,
)
from handlers import desk, prefecture_choice
from handlers.context import Context
from handlers.desk_digest import build_digest, enqueue_digest, render_digest
from handlers.dispatch import dispatch
from handlers.messages import Inbound
from knowledge.loader import load_knowledge_base
from tests.conftest import NOW, update_prefecture
from tests.fakes.redmine_api import API_KEY, FakeRedmine
from tests.fakes.slack_api import APP_TOKEN, TOKEN, FakeSlackAPI
from tests.fakes.slack_requests import SECRET, SlackSide, block_actions
from tests.fakes.web import serving

C26, C13 = "C0KYOTO", "C0TOKYO"
STAFF_A, STAFF_B, STAFF_TOKYO = "U0AAA", "U0BBB", "U0TKY"
LATER = NOW + timedelta(minutes=10)


def desk_settings(api: FakeSlackAPI, **extra: Any) -> Settings:
    return Settings(_env_file=None, slack_bot_token=SecretStr(TOKEN),  # type: ignore[call-arg]
                    slack_signing_secret=SecretStr(SECRET), slack_api_base=api.base_url,
                    **extra)


serve = serving  # the shared web server (uvicorn + Starlette) on a bound socket


@dataclass
class Desk:
    ctx: Context
    api: FakeSlackAPI
    channel: SlackChannel
    slack: SlackSide


@asynccontextmanager
async def running_desk(ctx: Context, api: FakeSlackAPI, **extra: Any) -> AsyncIterator[Desk]:
    channel = SlackChannel(desk_settings(api, **extra), ctx.sessions, ctx.clock,
                           process_before_response=True)
    async with serve(channel.web_routes()) as url, httpx.AsyncClient(timeout=15) as http:
        yield Desk(ctx, api, channel, SlackSide(http, url + "/slack/events"))


@pytest.fixture
async def api() -> AsyncIterator[FakeSlackAPI]:
    async with FakeSlackAPI() as fake:
        yield fake


@pytest.fixture
async def d(ctx: Context, api: FakeSlackAPI) -> AsyncIterator[Desk]:
    await map_channels(ctx)
    async with running_desk(ctx, api) as running:
        yield running


async def map_channels(ctx: Context) -> None:
    async with ctx.session() as session:
        await desk.map_channel(session, "26", C26, NOW, GMIS_CONTACT_DEFAULT)
        await desk.map_channel(session, "13", C13, NOW, GMIS_CONTACT_DEFAULT)


BRANCH_QUESTION = "分院を開設予定ですが、今年の報告は本院とまとめられますか"


async def escalate(ctx: Context, user: str = "clinic-1", question: str = BRANCH_QUESTION,
                   ) -> int:
    """A clinic asks something, then taps 「担当者に聞く」."""
    await dispatch(Inbound("telegram", user, text=question), ctx)
    [reply] = await dispatch(Inbound("telegram", user, text="担当者に聞く", payload="esc:ask"),
                             ctx)
    if reply.meta["action"] == prefecture_choice.FLOW:  # the desk serves 26 and 13: say which
        [reply] = await dispatch(Inbound("telegram", user, text="京都府", payload="esc:pref:26"),
                                 ctx)
    return int(reply.meta["escalation_id"])  # type: ignore[call-overload]


async def esc(ctx: Context, esc_id: int) -> Escalation:
    async with ctx.session() as session:
        found = await session.get(Escalation, esc_id)
        assert found is not None
        return found


async def rows(ctx: Context, **where: Any) -> list[Outbox]:
    stmt = select(Outbox).order_by(col(Outbox.id))
    for name, value in where.items():
        stmt = stmt.where(getattr(Outbox, name) == value)
    async with ctx.session() as session:
        return list((await session.exec(stmt)).all())


def blocks_text(params: dict[str, Any]) -> str:
    blocks = params.get("blocks")
    return json.dumps(blocks if not isinstance(blocks, str) else json.loads(blocks),
                      ensure_ascii=False)


def action_ids(params: dict[str, Any]) -> list[str]:
    blocks = json.loads(blocks_text(params))
    return [e["action_id"] for b in blocks if b["type"] == "actions" for e in b["elements"]]


async def posted_card(d: Desk, esc_id: int) -> tuple[str, str]:
    """Send queued cards; return where the escalation's card now lives."""
    await d.channel.flush(NOW)
    row = await esc(d.ctx, esc_id)
    assert row.card_channel and row.card_ts
    return row.card_channel, row.card_ts


# --- the card -------------------------------------------------------------------------------

async def test_escalation_card_reaches_its_prefecture_channel_with_everything(d: Desk) -> None:
    esc_id = await escalate(d.ctx)
    [queued] = await rows(d.ctx, channel="slack")
    assert queued.kind == "escalation_card" and queued.recipient == C26
    channel, ts = await posted_card(d, esc_id)
    [post] = d.api.of("chat.postMessage")
    card = blocks_text(post.params)
    escalation = await esc(d.ctx, esc_id)
    assert channel == C26 and post.params["channel"] == C26
    assert escalation.receipt in card and "分院を開設予定" in card
    assert "未連携" in card and "分前" in card
    assert "これまでの会話" in card and "スコア" in card
    for candidate in escalation.context["candidates"]:
        assert candidate["question"] in card
    assert action_ids(post.params) == ["desk_claim", "desk_answer", "desk_forward",
                                       "desk_resolve"]
    assert d.api.latest(channel, ts)["channel"] == C26


async def test_card_shows_the_linked_clinic_and_its_status(d: Desk) -> None:
    esc_id = await escalate(d.ctx)
    async with d.ctx.session() as session:
        inst = (await session.exec(select(Institution).where(
            Institution.code == "9990003"))).one()
        await session.exec(update(ChatAccount).where(  # type: ignore[call-overload]
            col(ChatAccount.external_user_id) == "clinic-1").values(
            institution_id=inst.id, prefecture_code="26"))
        await session.commit()
    await posted_card(d, esc_id)
    card = blocks_text(d.api.of("chat.postMessage")[0].params)
    assert "デモ在宅診療所（9990003）報告状況：差し戻し" in card and "未連携" not in card


async def test_a_linked_clinic_is_told_which_prefecture_answered(d: Desk) -> None:
    """Linked when it asked, the clinic was told its prefecture had the question; the notice
    of a forward to the ministry and the answer name that prefecture, not 「都道府県」."""
    async with d.ctx.session() as session:
        inst = (await session.exec(select(Institution).where(
            Institution.code == "9990003"))).one()
        session.add(ChatAccount(channel="telegram", external_user_id="clinic-9",
                                prefecture_code="26", institution_id=inst.id,
                                linked_at=NOW, created_at=NOW))
        await session.commit()
    esc_id = await escalate(d.ctx, user="clinic-9")
    await posted_card(d, esc_id)
    await d.slack.press("desk_forward", esc_id, C26, STAFF_A)
    [told] = await rows(d.ctx, kind="escalation_forwarded")
    assert "京都府から厚生労働省に確認しています" in told.body
    [status] = await dispatch(Inbound("telegram", "clinic-9", text="さっきの問い合わせどうなった"),
                              d.ctx)
    assert "京都府から厚生労働省に確認しています" in status.text
    await update_prefecture(d.ctx, "26", inquiry_contact="京都府医療政策課（075-000-0000）")
    receipt = (await esc(d.ctx, esc_id)).receipt
    for n in range(desk.MAX_SUPPLEMENTS + 1):
        [last] = await dispatch(Inbound("telegram", "clinic-9", text=f"{receipt}の補足です。{n}"),
                                d.ctx)
    assert "これ以上は追加できません" in last.text
    assert "受付番号を添えて京都府医療政策課（075-000-0000）へ" in last.text
    await d.slack.press("desk_answer", esc_id, C26, STAFF_A)
    await d.slack.submit("desk_answer", esc_id, C26, STAFF_A, "それぞれ報告してください。")
    [relay] = await rows(d.ctx, kind="escalation_answer")
    assert relay.recipient == "clinic-9" and "京都府の担当者から回答が届きました" in relay.body


async def test_card_names_the_clinic_asked_for_even_after_a_relink(d: Desk) -> None:
    """A clerk who handles two clinics asked for one, then linked the chat to the other:
    the card had named the second, so staff would have answered about the wrong clinic."""
    async with d.ctx.session() as session:
        first, second = [(await session.exec(select(Institution).where(
            Institution.code == code))).one() for code in ("9990003", "9990001")]
        account = await repo.ensure_account(session, "telegram", "clinic-1")
        account.institution_id, account.prefecture_code = first.id, "26"
        session.add(account)
        await session.commit()
    esc_id = await escalate(d.ctx)
    async with d.ctx.session() as session:
        await session.exec(update(ChatAccount).where(  # type: ignore[call-overload]
            col(ChatAccount.external_user_id) == "clinic-1").values(institution_id=second.id))
        await session.commit()
    await posted_card(d, esc_id)
    card = blocks_text(d.api.of("chat.postMessage")[0].params)
    assert f"{first.name}（9990003）" in card and second.name not in card


async def test_user_text_cannot_become_slack_markup(d: Desk) -> None:
    esc_id = await escalate(d.ctx, question="<!channel> 至急 <https://evil.example|ここ> を見て")
    await posted_card(d, esc_id)
    card = blocks_text(d.api.of("chat.postMessage")[0].params)
    assert "<!channel>" not in card and "&lt;!channel&gt;" in card


# --- claim, answer, forward, resolve, KB ----------------------------------------------------

async def test_claim_records_who_and_the_card_shows_it(d: Desk) -> None:
    esc_id = await escalate(d.ctx)
    channel, ts = await posted_card(d, esc_id)
    response = await d.slack.press("desk_claim", esc_id, C26, STAFF_A)
    assert response.status_code == 200
    row = await esc(d.ctx, esc_id)
    assert row.status == "claimed" and row.claimed_by == STAFF_A and row.claimed_at == NOW
    await d.channel.flush(NOW)
    [upd] = d.api.of("chat.update")
    assert upd.params["ts"] == ts and f"<@{STAFF_A}>" in blocks_text(upd.params)
    assert "desk_claim" not in action_ids(upd.params)

    await d.slack.press("desk_claim", esc_id, C26, STAFF_B)
    [note] = d.api.of("chat.postEphemeral")
    assert note.params["user"] == STAFF_B and "別の担当者が対応中" in note.params["text"]
    assert (await esc(d.ctx, esc_id)).claimed_by == STAFF_A


async def test_answer_opens_a_modal_and_reaches_the_clinic_once(d: Desk) -> None:
    esc_id = await escalate(d.ctx)
    channel, ts = await posted_card(d, esc_id)
    await d.slack.press("desk_answer", esc_id, C26, STAFF_A)
    [opened] = d.api.of("views.open")
    view = opened.params["view"]
    assert view["callback_id"] == "desk_answer" and "分院を開設予定" in json.dumps(
        view, ensure_ascii=False)
    assert json.loads(view["private_metadata"]) == {"id": esc_id, "channel": C26, "seen": 0}

    answer = "分院は別の医療機関として、それぞれ報告してください。"
    first = await d.slack.submit("desk_answer", esc_id, C26, STAFF_A, answer)
    again = await d.slack.submit("desk_answer", esc_id, C26, STAFF_A, answer)  # double press
    assert first.status_code == 200 and first.text == ""
    assert again.json()["response_action"] == "errors"
    assert "すでに回答済み" in again.json()["errors"]["text"]

    [relay] = await rows(d.ctx, kind="escalation_answer")
    assert relay.idempotency_key == f"escalation-answer:{esc_id}"
    assert (relay.channel, relay.recipient) == ("telegram", "clinic-1")
    assert answer in relay.body and (await esc(d.ctx, esc_id)).receipt in relay.body
    # Unlinked, the clinic said it is in 京都府 when it asked; the answer names it too.
    assert "京都府の担当者から回答が届きました" in relay.body
    await d.channel.flush(NOW)
    card = blocks_text(d.api.latest(channel, ts))
    assert answer in card and action_ids(d.api.latest(channel, ts)) == ["desk_kb"]


async def test_a_clinics_supplement_reaches_the_card_and_its_thread(d: Desk) -> None:
    """「Q26-000001の補足です…」 was answered as a new question and never reached the staff
    working on the inquiry."""
    esc_id = await escalate(d.ctx)
    channel, ts = await posted_card(d, esc_id)
    receipt = (await esc(d.ctx, esc_id)).receipt
    note = f"{receipt}の補足です。本院は有床診療所で、分院は無床の予定です。"
    [reply] = await dispatch(Inbound("telegram", "clinic-1", text=note), d.ctx)
    assert receipt in reply.text and "補足を追加し" in reply.text
    assert len(await rows(d.ctx, kind="escalation_card")) == 1  # no second inquiry
    await d.channel.flush(NOW)
    [posted] = [c for c in d.api.of("chat.postMessage") if c.params.get("thread_ts")]
    assert posted.params["thread_ts"] == ts and "分院は無床の予定" in posted.params["text"]
    assert "分院は無床の予定" in blocks_text(d.api.latest(channel, ts))
    await d.slack.press("desk_answer", esc_id, C26, STAFF_A)
    [opened] = d.api.of("views.open")
    assert "分院は無床の予定" in json.dumps(opened.params["view"], ensure_ascii=False)

    # Said after the staff answered, it becomes a new inquiry that names the old one.
    await d.slack.submit("desk_answer", esc_id, C26, STAFF_A, "分院も別に報告してください。")
    [late] = await dispatch(Inbound("telegram", "clinic-1",
                                    text=f"{receipt}に追記します。分院の開設は5月です。"), d.ctx)
    assert "新しいお問い合わせとしてお送りしました" in late.text
    newer = await esc(d.ctx, int(late.meta["escalation_id"]))  # type: ignore[call-overload]
    assert newer.id != esc_id and receipt in newer.question and "5月" in newer.question


async def test_a_supplement_goes_only_to_the_chats_own_inquiry(d: Desk) -> None:
    esc_id = await escalate(d.ctx)
    receipt = (await esc(d.ctx, esc_id)).receipt
    [other] = await dispatch(Inbound("telegram", "clinic-2",
                                     text=f"{receipt}の補足です。うちは病院です。"), d.ctx)
    assert "見つかりませんでした" in other.text
    [bare] = await dispatch(Inbound("telegram", "clinic-1", text="さっきの質問に補足したいです"),
                            d.ctx)
    assert "補足の内容を" in bare.text and receipt in bare.text
    [earlier] = await dispatch(Inbound("telegram", "clinic-1",
                                       text="さっきの質問の補足：分院は隣の市です"), d.ctx)
    assert "補足を追加し" in earlier.text
    assert (await esc(d.ctx, esc_id)).context["supplements"][0]["text"] == (
        "さっきの質問の補足：分院は隣の市です")


async def test_supplements_at_once_are_all_kept(d: Desk) -> None:
    esc_id = await escalate(d.ctx)
    texts = [f"{n}点目の補足です。" for n in range(1, 6)]
    await asyncio.gather(*(desk.add_supplement(d.ctx.sessions, "26", esc_id, text, NOW)
                           for text in texts))
    kept = [s["text"] for s in (await esc(d.ctx, esc_id)).context["supplements"]]
    assert sorted(kept) == sorted(texts)
    assert len(await rows(d.ctx, kind="escalation_note")) == 5


async def test_an_answer_written_before_a_new_supplement_is_held_back_to_review(
        d: Desk) -> None:
    """The modal showed the supplements as they were when it opened; one arriving while the
    staff member typed was never seen, and the answer went out ignoring it."""
    esc_id = await escalate(d.ctx)
    receipt = (await esc(d.ctx, esc_id)).receipt
    await d.slack.press("desk_answer", esc_id, C26, STAFF_A)
    [opened] = d.api.of("views.open")
    meta = opened.params["view"]["private_metadata"]
    await dispatch(Inbound("telegram", "clinic-1",
                           text=f"{receipt}の補足です。分院は有床になりました。"), d.ctx)
    draft = "分院は無床なので、本院とは別に報告してください。"
    response = await d.slack.submit("desk_answer", esc_id, C26, STAFF_A, draft, metadata=meta)
    shown = response.json()
    assert shown["response_action"] == "update"
    view = json.dumps(shown["view"], ensure_ascii=False)
    assert "補足が届きました" in view and "分院は有床になりました" in view and draft in view
    assert (await esc(d.ctx, esc_id)).status == "open"
    assert await rows(d.ctx, kind="escalation_answer") == []
    # Sent again from the refreshed modal (it has seen the supplement): it goes out once.
    again = await d.slack.submit("desk_answer", esc_id, C26, STAFF_A, "有床でも別に報告です。",
                                 metadata=shown["view"]["private_metadata"])
    assert again.text == ""
    [relay] = await rows(d.ctx, kind="escalation_answer")
    assert "有床でも別に報告です。" in relay.body


async def test_a_refused_bot_token_keeps_the_card_waiting_not_failed(d: Desk) -> None:
    """With a wrong or revoked SLACK_BOT_TOKEN (invalid_auth) the clinic's question card had
    failed for good after one try, though the clinic was told it was sent (an operator
    test). It waits, no attempt spent, and posts once the token works."""
    d.api.token = "xoxb-revoked"
    esc_id = await escalate(d.ctx)
    await d.channel.flush(NOW)
    [card] = await rows(d.ctx, kind="escalation_card")
    assert card.status == "pending" and card.attempts == 0
    assert "token refused" in (card.last_error or "")
    d.api.token = TOKEN  # fixed
    await d.channel.flush(LATER)
    [card] = await rows(d.ctx, kind="escalation_card")
    [posted] = d.api.of("chat.postMessage")
    assert card.status == "sent" and (await esc(d.ctx, esc_id)).receipt in blocks_text(
        posted.params)


async def test_a_supplement_under_a_card_that_failed_waits_for_the_remap_not_forever(
        d: Desk) -> None:
    """The card's channel was gone (channel_not_found): the supplement had been retried for
    ever under a card that would never post; after the channel is mapped again both go."""
    d.api.unknown_channels.add(C26)
    esc_id = await escalate(d.ctx)
    receipt = (await esc(d.ctx, esc_id)).receipt
    await d.channel.flush(NOW)
    [card] = await rows(d.ctx, kind="escalation_card")
    assert card.status == "failed"
    note_text = f"{receipt}の補足です。分院は隣の市です。"
    await dispatch(Inbound("telegram", "clinic-1", text=note_text), d.ctx)
    await d.channel.flush(NOW)
    [note] = await rows(d.ctx, kind="escalation_note")
    assert note.status == "failed" and "never posted" in (note.last_error or "")
    d.api.unknown_channels.discard(C26)
    async with d.ctx.session() as session:
        await desk.map_channel(session, "26", C26, NOW, GMIS_CONTACT_DEFAULT)
    for _ in range(2):
        await d.channel.flush(LATER)
    threaded = [c for c in d.api.of("chat.postMessage") if c.params.get("thread_ts")]
    assert [c.params["text"] for c in threaded if "分院は隣の市です" in c.params["text"]]
    assert (await rows(d.ctx, kind="escalation_note"))[0].status == "sent"


async def test_a_chat_cannot_flood_an_inquiry_with_supplements(d: Desk) -> None:
    """Each supplement posts in the staff thread; past a generous limit the clinic is told
    politely to wait or call, and nothing more is stored or posted."""
    esc_id = await escalate(d.ctx)
    receipt = (await esc(d.ctx, esc_id)).receipt
    for n in range(1, desk.MAX_SUPPLEMENTS + 1):
        [ok] = await dispatch(Inbound("telegram", "clinic-1",
                                      text=f"{receipt}の補足です。{n}点目です。"), d.ctx)
        assert "補足を追加し" in ok.text
    [refused] = await dispatch(Inbound("telegram", "clinic-1",
                                       text=f"{receipt}の補足です。まだあります。"), d.ctx)
    assert "これ以上は追加できません" in refused.text
    assert "京都府 かかりつけ医機能報告 担当窓口へ" in refused.text  # the prefecture it chose
    row = await esc(d.ctx, esc_id)
    assert len(row.context["supplements"]) == desk.MAX_SUPPLEMENTS
    assert all("まだあります" not in s["text"] for s in row.context["supplements"])
    assert len(await rows(d.ctx, kind="escalation_note")) == desk.MAX_SUPPLEMENTS
    assert len(await rows(d.ctx, kind="escalation_card")) == 1  # not sent as a new inquiry


async def test_a_supplement_cannot_ping_the_desk_or_hide_a_link(d: Desk) -> None:
    esc_id = await escalate(d.ctx)
    channel, ts = await posted_card(d, esc_id)
    receipt = (await esc(d.ctx, esc_id)).receipt
    await d.slack.press("desk_claim", esc_id, C26, STAFF_A)
    hostile = f"{receipt}の補足です。<!channel> 至急 <https://evil.example|ここ> を見て"
    await dispatch(Inbound("telegram", "clinic-1", text=hostile), d.ctx)
    await d.channel.flush(NOW)
    [note] = [c for c in d.api.of("chat.postMessage") if c.params.get("thread_ts")]
    assert "<!channel>" not in note.params["text"] and "&lt;!channel&gt;" in note.params["text"]
    assert "<https://evil.example" not in note.params["text"]
    assert note.params["text"].startswith(f"<@{STAFF_A}>")  # the one handling it is told
    assert "<!channel>" not in blocks_text(d.api.latest(channel, ts))


async def test_a_long_supplement_does_not_hide_the_newest(d: Desk) -> None:
    esc_id = await escalate(d.ctx)
    channel, ts = await posted_card(d, esc_id)
    receipt = (await esc(d.ctx, esc_id)).receipt
    for text in (f"{receipt}の補足です。" + "経緯の説明です。" * 400,
                 f"{receipt}の補足です。分院は5月開設です。"):
        await dispatch(Inbound("telegram", "clinic-1", text=text), d.ctx)
    await d.channel.flush(NOW)
    assert "分院は5月開設です" in blocks_text(d.api.latest(channel, ts))


async def test_two_staff_answering_at_once_relay_one_answer(d: Desk) -> None:
    esc_id = await escalate(d.ctx)
    responses = await asyncio.gather(
        d.slack.submit("desk_answer", esc_id, C26, STAFF_A, "Aさんの回答です。ご確認ください。"),
        d.slack.submit("desk_answer", esc_id, C26, STAFF_B, "Bさんの回答です。ご確認ください。"))
    accepted = [r for r in responses if r.text == ""]
    refused = [r for r in responses if r.text and r.json().get("response_action") == "errors"]
    assert len(accepted) == 1 and len(refused) == 1
    [relay] = await rows(d.ctx, kind="escalation_answer")
    row = await esc(d.ctx, esc_id)
    assert row.answer is not None and row.answer in relay.body
    assert row.answered_by == (STAFF_A if "Aさん" in row.answer else STAFF_B)


async def test_empty_answer_is_refused_in_the_modal(d: Desk) -> None:
    esc_id = await escalate(d.ctx)
    response = await d.slack.submit("desk_answer", esc_id, C26, STAFF_A, "   ")
    assert "回答を入力してください" in response.json()["errors"]["text"]
    assert (await esc(d.ctx, esc_id)).status == "open"
    assert await rows(d.ctx, kind="escalation_answer") == []


async def test_forward_creates_the_redmine_issue_and_tells_the_clinic(
        ctx: Context, api: FakeSlackAPI) -> None:
    await map_channels(ctx)
    async with FakeRedmine() as redmine, running_desk(
            ctx, api, redmine_url=redmine.base_url, redmine_api_key=API_KEY,
            redmine_project_id="kakaritsuke") as d:
        esc_id = await escalate(ctx)
        channel, ts = await posted_card(d, esc_id)
        redmine.fail_next = 1  # the ministry's tool is down once: retried, not lost
        await d.slack.press("desk_forward", esc_id, C26, STAFF_A)
        row = await esc(ctx, esc_id)
        assert row.status == "forwarded" and row.tier == 2 and row.forwarded_by == STAFF_A
        [told] = await rows(ctx, kind="escalation_forwarded")
        assert told.recipient == "clinic-1"
        assert "京都府から厚生労働省に確認しています" in told.body  # the prefecture it chose
        await d.channel.flush(NOW)
        assert redmine.issues == [] and (await esc(ctx, esc_id)).redmine_url is None
        await d.channel.flush(LATER)
        await d.channel.flush(LATER)  # the card refresh queued by the new link
        [issue] = redmine.issues
        assert row.receipt in issue["subject"] and "分院を開設予定" in issue["description"]
        assert issue["project_id"] == "kakaritsuke"
        assert redmine.headers[-1]["X-Redmine-API-Key"] == API_KEY
        url = f"{redmine.base_url}/issues/{issue['id']}"
        assert (await esc(ctx, esc_id)).redmine_url == url
        assert url in blocks_text(api.latest(channel, ts))
        await d.slack.press("desk_forward", esc_id, C26, STAFF_B)  # pressed again: once
        assert len(redmine.issues) == 1 and len(await rows(ctx, kind="escalation_forwarded")) == 1


async def test_a_supplement_to_a_forwarded_inquiry_reaches_its_redmine_issue_once(
        ctx: Context, api: FakeSlackAPI) -> None:
    """The ministry answers from its Redmine issue: a supplement sent after 厚労省へ転送 had
    stayed in the Slack thread only."""
    await map_channels(ctx)
    async with FakeRedmine() as redmine, running_desk(
            ctx, api, redmine_url=redmine.base_url, redmine_api_key=API_KEY) as d:
        esc_id = await escalate(ctx)
        await posted_card(d, esc_id)
        receipt = (await esc(ctx, esc_id)).receipt
        await d.slack.press("desk_forward", esc_id, C26, STAFF_A)
        # Before the issue exists: it goes into the description, not again as a note.
        await dispatch(Inbound("telegram", "clinic-1",
                               text=f"{receipt}の補足です。分院は隣の市です。"), ctx)
        for _ in range(3):
            await d.channel.flush(LATER)
        [issue] = redmine.issues
        assert "分院は隣の市です" in issue["description"]
        await dispatch(Inbound("telegram", "clinic-1",
                               text=f"{receipt}に追記します。開設は5月の予定です。"), ctx)
        redmine.fail_next = 1  # down once: retried, not lost
        for when in (LATER, LATER + timedelta(minutes=5), LATER + timedelta(minutes=10)):
            await d.channel.flush(when)
        [note] = redmine.notes[issue["id"]]
        assert receipt in note and "開設は5月の予定です" in note and "隣の市" not in note
        assert redmine.headers[-1]["X-Redmine-API-Key"] == API_KEY


async def test_a_supplement_to_an_inquiry_not_forwarded_stays_off_redmine(
        ctx: Context, api: FakeSlackAPI) -> None:
    await map_channels(ctx)
    async with FakeRedmine() as redmine, running_desk(
            ctx, api, redmine_url=redmine.base_url, redmine_api_key=API_KEY) as d:
        esc_id = await escalate(ctx)
        receipt = (await esc(ctx, esc_id)).receipt
        await dispatch(Inbound("telegram", "clinic-1",
                               text=f"{receipt}の補足です。分院は隣の市です。"), ctx)
        await d.channel.flush(LATER)
        assert redmine.issues == [] and redmine.notes == {}
        assert await rows(ctx, channel="redmine") == []


async def test_forward_without_redmine_still_records_tier_two(d: Desk) -> None:
    esc_id = await escalate(d.ctx)
    await d.slack.press("desk_forward", esc_id, C26, STAFF_A)
    assert (await esc(d.ctx, esc_id)).tier == 2
    assert await rows(d.ctx, channel="redmine") == []
    [note] = d.api.of("chat.postEphemeral")
    assert "手作業" in note.params["text"]


async def test_resolve_needs_a_reason_and_closes_without_messaging_the_clinic(d: Desk) -> None:
    esc_id = await escalate(d.ctx)
    channel, ts = await posted_card(d, esc_id)
    await d.slack.press("desk_resolve", esc_id, C26, STAFF_A)
    [opened] = d.api.of("views.open")
    assert opened.params["view"]["callback_id"] == "desk_resolve"
    empty = await d.slack.submit("desk_resolve", esc_id, C26, STAFF_A, "")
    assert "理由を入力" in empty.json()["errors"]["text"]
    done = await d.slack.submit("desk_resolve", esc_id, C26, STAFF_A, "電話で回答済み")
    assert done.text == ""
    row = await esc(d.ctx, esc_id)
    assert (row.status, row.resolution, row.resolved_by) == ("resolved", "電話で回答済み",
                                                             STAFF_A)
    assert [r.kind for r in await rows(d.ctx) if r.channel != "slack"] == []
    await d.channel.flush(NOW)
    assert "電話で回答済み" in blocks_text(d.api.latest(channel, ts))
    assert action_ids(d.api.latest(channel, ts)) == []


async def test_kb_draft_approved_into_yaml_that_kb_check_accepts(
        d: Desk, database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    esc_id = await escalate(d.ctx)
    await d.slack.press("desk_kb", esc_id, C26, STAFF_A)  # not answered yet
    assert "回答済みの問い合わせだけ" in d.api.of("chat.postEphemeral")[-1].params["text"]
    answer = "分院は、本院とは別の医療機関として、それぞれかかりつけ医機能報告を行ってください。"
    await d.slack.submit("desk_answer", esc_id, C26, STAFF_A, answer)
    await d.slack.press("desk_kb", esc_id, C26, STAFF_A)
    await d.slack.press("desk_kb", esc_id, C26, STAFF_B)  # a second press: same draft
    async with d.ctx.session() as session:
        [draft] = (await session.exec(select(KbDraft))).all()
    assert draft.answer == answer and draft.created_by == STAFF_A
    assert "作成済み" in d.api.of("chat.postEphemeral")[-1].params["text"]

    kb = tmp_path / "entries"
    shutil.copytree(Path(cli.__file__).parent.parent / "knowledge" / "entries", kb)
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("KNOWLEDGE_DIR", str(kb))
    before = (kb / "scope.yaml").read_text(encoding="utf-8")
    refused = await asyncio.to_thread(cli.main, ["kb", "drafts", "approve", str(draft.id),
                                                 "--category", "scope"])
    assert refused == 1 and (kb / "scope.yaml").read_text(encoding="utf-8") == before

    code = await asyncio.to_thread(cli.main, [
        "kb", "drafts", "approve", str(draft.id), "--category", "scope",
        "--phrasing", "分院も別に報告が必要ですか",
        "--phrasing", "本院と分院はまとめて報告できる？"])
    assert code == 0
    assert (kb / "scope.yaml").read_text(encoding="utf-8").startswith(before.rstrip("\n"))
    assert await asyncio.to_thread(cli.main, ["kb", "check"]) == 0
    entry = {e.id: e for e in load_knowledge_base(kb)}[f"scope-desk-{draft.id}"]
    assert entry.answer == answer and entry.route == "prefecture"
    assert yaml.safe_load((kb / "scope.yaml").read_text(encoding="utf-8"))["entries"][-1][
        "question"] == draft.question
    again = await asyncio.to_thread(cli.main, ["kb", "drafts", "approve", str(draft.id),
                                               "--category", "scope"])
    assert again == 1  # already approved


# --- Slack away, channel not mapped yet -----------------------------------------------------

async def test_slack_down_then_back_posts_the_card_once(d: Desk) -> None:
    esc_id = await escalate(d.ctx)
    await d.api.stop()  # connection refused
    await d.channel.flush(NOW)
    [row] = await rows(d.ctx, channel="slack")
    assert row.status == "pending" and "ClientConnectorError" in (row.last_error or "")
    await d.api.start()
    d.api.fail(500)
    await d.channel.flush(NOW + timedelta(minutes=1))
    d.api.fail("ratelimited")
    await d.channel.flush(NOW + timedelta(minutes=2))
    [row] = await rows(d.ctx, channel="slack")
    assert row.status == "pending" and "ratelimited" in (row.last_error or "")
    assert abs((row.next_attempt_at - (NOW + timedelta(minutes=2))).total_seconds() - 7) < 1
    await d.channel.flush(NOW + timedelta(minutes=3))
    await d.channel.flush(NOW + timedelta(hours=3))
    assert len(d.api.of("chat.postMessage")) == 1
    [row] = await rows(d.ctx, channel="slack")
    assert row.status == "sent" and (await esc(d.ctx, esc_id)).card_ts


async def test_a_long_outage_loses_nothing(d: Desk) -> None:
    esc_id = await escalate(d.ctx)
    await d.api.stop()
    when = NOW
    for _ in range(12):  # more attempts than the outbox's retry budget
        when += timedelta(hours=1)
        await d.channel.flush(when)
    await d.api.start()
    await d.channel.flush(when + timedelta(hours=1))
    assert len(d.api.of("chat.postMessage")) == 1 and (await esc(d.ctx, esc_id)).card_ts


async def test_card_waits_until_the_prefecture_gets_a_channel(
        ctx: Context, api: FakeSlackAPI) -> None:
    async with running_desk(ctx, api) as d:
        esc_id = await escalate(ctx)
        [row] = await rows(ctx, channel="slack")
        assert row.recipient == ""
        await d.channel.flush(NOW)
        assert api.calls == [] and (await rows(ctx, channel="slack"))[0].status == "pending"
        async with ctx.session() as session:
            assert await desk.map_channel(session, "26", C26, NOW, GMIS_CONTACT_DEFAULT) == 1
        await d.channel.flush(NOW)
        [post] = api.of("chat.postMessage")
        assert post.params["channel"] == C26 and (await esc(ctx, esc_id)).card_channel == C26


async def test_the_dispatcher_loop_posts_without_being_asked(
        ctx: Context, api: FakeSlackAPI) -> None:
    await map_channels(ctx)
    async with running_desk(ctx, api, desk_outbox_interval=60) as d:
        await d.channel.start()
        try:
            await escalate(ctx)
            d.channel.wake()
            [post] = await api.wait_for("chat.postMessage")
            assert post.params["channel"] == C26
        finally:
            await d.channel.stop()


async def test_production_mode_acks_first_and_works_after(ctx: Context,
                                                          api: FakeSlackAPI) -> None:
    """Without process_before_response, a button's work runs after Slack got its 200: the
    ack arrives while the modal's `views.open` is still stuck at Slack."""
    await map_channels(ctx)
    channel = SlackChannel(desk_settings(api), ctx.sessions, ctx.clock)
    async with serve(channel.web_routes()) as url, httpx.AsyncClient(timeout=15) as http:
        slack = SlackSide(http, url + "/slack/events")
        esc_id = await escalate(ctx)
        slow_slack = api.hold("views.open")
        pressed = await slack.press("desk_answer", esc_id, C26, STAFF_A)
        assert pressed.status_code == 200 and api.of("views.open") == []
        slow_slack.set()
        [opened] = await api.wait_for("views.open")
        assert opened.params["view"]["callback_id"] == "desk_answer"
        done = await slack.submit("desk_answer", esc_id, C26, STAFF_A, "回答いたします。")
        assert done.status_code == 200 and (await esc(ctx, esc_id)).status == "answered"


async def test_a_database_failure_gets_a_polite_note_not_a_crash(
        d: Desk, monkeypatch: pytest.MonkeyPatch) -> None:
    esc_id = await escalate(d.ctx)

    async def broken(*_args: object, **_kw: object) -> None:
        raise ConnectionError("database went away")

    monkeypatch.setattr(desk, "claim", broken)
    monkeypatch.setattr(desk, "answer", broken)
    assert (await d.slack.press("desk_claim", esc_id, C26, STAFF_A)).status_code == 200
    assert "一時的なエラー" in d.api.of("chat.postEphemeral")[0].params["text"]
    response = await d.slack.submit("desk_answer", esc_id, C26, STAFF_A, "回答です。")
    assert "一時的なエラー" in response.json()["errors"]["text"]
    assert "database" not in response.text


# --- tenant isolation -----------------------------------------------------------------------

async def test_prefecture_b_can_neither_see_nor_act_on_a_escalations(d: Desk) -> None:
    esc_id = await escalate(d.ctx)
    await posted_card(d, esc_id)
    before = await esc(d.ctx, esc_id)
    outbox_before = len(await rows(d.ctx))
    for action in ("desk_claim", "desk_answer", "desk_forward", "desk_resolve", "desk_kb"):
        assert (await d.slack.press(action, esc_id, C13, STAFF_TOKYO)).status_code == 200
    for callback in ("desk_answer", "desk_resolve"):
        response = await d.slack.submit(callback, esc_id, C13, STAFF_TOKYO, "東京から回答します")
        assert "このチャンネルの都道府県のものではない" in response.json()["errors"]["text"]
    notes = d.api.of("chat.postEphemeral")
    assert len(notes) == 5 and all("都道府県のものではない" in n.params["text"] for n in notes)
    assert d.api.of("views.open") == []
    after = await esc(d.ctx, esc_id)
    assert (after.status, after.claimed_by, after.answer, after.tier, after.updated_at) == (
        before.status, before.claimed_by, before.answer, before.tier, before.updated_at)
    assert len(await rows(d.ctx)) == outbox_before

    receipt = before.receipt
    await d.slack.event({"type": "app_mention", "user": STAFF_TOKYO, "channel": C13,
                         "text": f"<@UBOT> {receipt}", "ts": "1700000100.000001"}, "EvTKY1")
    reply = d.api.of("chat.postMessage")[-1]
    assert reply.params["channel"] == C13 and "分院" not in reply.params["text"]


async def test_unmapped_channel_is_refused(d: Desk) -> None:
    esc_id = await escalate(d.ctx)
    await d.slack.press("desk_claim", esc_id, "C0RANDOM", STAFF_A)
    assert "割り当てられていません" in d.api.of("chat.postEphemeral")[0].params["text"]
    assert (await esc(d.ctx, esc_id)).status == "open"


# --- slash command, events, signatures ------------------------------------------------------

async def test_slash_command_looks_up_only_its_own_prefecture(d: Desk) -> None:
    async with d.ctx.session() as session:
        inst = (await session.exec(select(Institution).where(
            Institution.code == "9990001"))).one()
        for user, reachable in (("c1", True), ("c2", False)):
            session.add(ChatAccount(channel="telegram", external_user_id=user,
                                    prefecture_code="26", institution_id=inst.id,
                                    reachable=reachable))
        inst.report = {"posting": True, "primary_care": True, "consultation": True,
                       "i": True, "ro": False, "ha": True, "ni": False}
        session.add(inst)
        await session.commit()
    found = await d.slack.command("/kakaritsuke", "9990001", C26, STAFF_A)
    text = found.json()["text"]
    assert "デモ内科クリニック" in text and "報告状況：未報告" in text
    assert "連携済みチャット：2件（うち連絡が届かない 1件）" in text
    # staff see the same automatic judgement the clinic sees in /status
    assert "自動判定" in text and "1号機能：あり" in text and "（ロ）入退院時の支援：なし" in text
    by_name = (await d.slack.command("/kakaritsuke", "デモ", C26, STAFF_A)).json()["text"]
    assert by_name.count("医療機関コード") == 5
    other = (await d.slack.command("/kakaritsuke", "9990001", C13, STAFF_TOKYO)).json()["text"]
    assert "見つかりませんでした" in other and "デモ内科" not in other
    usage = (await d.slack.command("/kakaritsuke", "", C26, STAFF_A)).json()["text"]
    assert "/kakaritsuke" in usage


async def test_retried_events_are_handled_once(d: Desk) -> None:
    esc_id = await escalate(d.ctx)
    receipt = (await esc(d.ctx, esc_id)).receipt
    event = {"type": "app_mention", "user": STAFF_A, "channel": C26,
             "text": f"<@UBOT> {receipt} の件", "ts": "1700000200.000001"}
    first = await d.slack.event(event, "Ev0001")
    retry = await d.slack.event(event, "Ev0001", retry=1)
    assert first.status_code == retry.status_code == 200
    [reply] = d.api.of("chat.postMessage")
    assert reply.params["thread_ts"] == "1700000200.000001"
    assert receipt in reply.params["text"] and "分院" in reply.params["text"]


async def test_url_verification_is_answered(d: Desk) -> None:
    body = json.dumps({"token": "legacy", "challenge": "c-123", "type": "url_verification"})
    response = await d.slack.post(body, "application/json")
    assert response.status_code == 200 and "c-123" in response.text


async def test_forged_or_stale_requests_are_refused(d: Desk) -> None:
    esc_id = await escalate(d.ctx)
    forged = await d.slack.press("desk_claim", esc_id, C26, STAFF_A, secret="not-the-secret")
    stale = await d.slack.press("desk_claim", esc_id, C26, STAFF_A,
                                timestamp=int(time.time()) - 600)
    unsigned = await d.slack.http.post(d.slack.url, data={"payload": "{}"})
    assert (forged.status_code, stale.status_code, unsigned.status_code) == (401, 401, 401)
    assert (await esc(d.ctx, esc_id)).status == "open" and d.api.calls == []


# --- digest and channel wiring --------------------------------------------------------------

async def seed_progress(ctx: Context) -> None:
    statuses = {"北市": ["報告済", "確認済", "確認済", "未報告", "対象外"],
                "南町": ["未報告", "紙受付", "差し戻し", "報告済"]}  # paper counts as reported
    async with ctx.session() as session:
        for area, values in statuses.items():
            for i, status in enumerate(values):
                session.add(Institution(prefecture_code="26", code=f"{area}{i}", name=f"{area}{i}",
                                        kind="clinic", municipality=area, status=status,
                                        confirmation="体制あり" if status == "確認済" else None))
        # Exempt by its flag, whatever its status says: not a target anywhere.
        session.add(Institution(prefecture_code="26", code="北市歯科", name="北市歯科",
                                kind="clinic", municipality="北市", status="未報告", dental=True))
        for i, text in enumerate(["分院の扱いは？", "分院の扱いは?", "分院の 扱いは", "駐車場は",
                                  "報告期限は"]):
            session.add(ConversationLog(channel="telegram", external_user_id=f"x{i}",
                                        prefecture_code="26", inbound_text=text,
                                        action="answer" if text == "報告期限は" else "escalate",
                                        created_at=NOW - timedelta(days=1)))
        session.add(ConversationLog(channel="telegram", external_user_id="old",
                                    prefecture_code="26", inbound_text="古い質問",
                                    action="escalate", created_at=NOW - timedelta(days=30)))
        session.add(ConversationLog(channel="telegram", external_user_id="tk",
                                    prefecture_code="13", inbound_text="東京の質問",
                                    action="escalate", created_at=NOW - timedelta(days=1)))
        await session.commit()


async def test_digest_numbers_match_the_database(d: Desk) -> None:
    await seed_progress(d.ctx)
    open_id = await escalate(d.ctx, "clinic-1")
    claimed_id = await escalate(d.ctx, "clinic-2", "紙で出した後に修正したい場合は？")
    answered_id = await escalate(d.ctx, "clinic-3", "院長が変わった場合の手続きは？")
    await d.slack.press("desk_claim", claimed_id, C26, STAFF_A)
    await d.slack.submit("desk_answer", answered_id, C26, STAFF_A, "届出は不要です。")

    async with d.ctx.session() as session:
        digest = await build_digest(session, "26", NOW)
        counts = dict((await session.exec(
            select(Institution.status, func.count()).where(
                Institution.prefecture_code == "26").group_by(col(Institution.status)))).all())
        open_receipts = {e.receipt for e in (await session.exec(select(Escalation).where(
            col(Escalation.status).in_(("open", "claimed", "forwarded"))))).all()}
    targets = sum(n for s, n in counts.items() if s != "対象外") - 1  # and not the dental one
    assert digest.overall.targets == targets
    assert digest.overall.reported == sum(counts.get(s, 0) for s in ("報告済", "紙受付", "確認済"))
    assert digest.overall.confirmed == counts.get("確認済", 0)
    areas = {p.name: (p.targets, p.reported, p.confirmed) for p in digest.by_municipality}
    assert areas["北市"] == (4, 3, 2) and areas["南町"] == (4, 2, 0)
    assert {i.receipt for i in digest.open_items} == open_receipts
    assert len(open_receipts) == 2 and digest.unclaimed == 1
    assert digest.unanswered[0][1] == 3
    assert digest.unanswered[0][0] in {"分院の扱いは？", "分院の扱いは?", "分院の 扱いは"}
    texts = [q for q, _ in digest.unanswered]
    assert "報告期限は" not in texts and "古い質問" not in texts and "東京の質問" not in texts
    text = render_digest(digest)
    assert f"報告済 {digest.overall.reported}/{targets}" in text
    assert f"確認済 {digest.overall.confirmed}/{targets}" in text
    assert "（うち担当者未定 1件）" in text and f"<@{STAFF_A}>" in text
    assert (await esc(d.ctx, open_id)).receipt in text

    assert await enqueue_digest(d.ctx.sessions, "26", NOW) is True
    assert await enqueue_digest(d.ctx.sessions, "26", NOW) is False  # once a day
    await d.channel.flush(NOW)
    digest_post = [c for c in d.api.of("chat.postMessage") if "日次まとめ" in c.params["text"]]
    assert len(digest_post) == 1 and digest_post[0].params["channel"] == C26


async def test_a_digest_that_waited_past_the_next_morning_is_not_posted(d: Desk) -> None:
    """A digest queued while Slack was away (or before the channel was mapped) is stale by
    the next day: the next digest supersedes it, and yesterday's figures are not posted."""
    assert await enqueue_digest(d.ctx.sessions, "26", NOW - timedelta(days=1)) is True
    await d.channel.flush(NOW)
    assert not [c for c in d.api.of("chat.postMessage") if "日次まとめ" in c.params["text"]]
    async with d.ctx.session() as session:
        [row] = (await session.exec(select(Outbox).where(Outbox.kind == "digest"))).all()
    assert row.status == "skipped" and row.last_error == "digest out of date"


async def test_channel_is_built_only_with_token_and_secret(api: FakeSlackAPI) -> None:

    assert build_slack_channel in channel_builders()
    bare = Settings(_env_file=None)  # type: ignore[call-arg]

    class _App:
        context = None

    assert build_slack_channel(bare, _App()) is None  # type: ignore[arg-type]
    socket_mode = desk_settings(api, slack_socket_mode=True)  # half a desk: say what is missing
    with pytest.raises(ConfigError, match="SLACK_APP_TOKEN is not set"):
        build_slack_channel(socket_mode, _App())  # type: ignore[arg-type]


async def test_socket_mode_needs_no_signing_secret_and_handles_a_button(
        ctx: Context, api: FakeSlackAPI) -> None:
    """Socket Mode through the real AsyncSocketModeHandler: the app opens the websocket
    with its app token, acknowledges the envelope, and the press claims the escalation."""

    await map_channels(ctx)
    settings = Settings(_env_file=None, slack_bot_token=SecretStr(TOKEN),  # type: ignore[call-arg]
                        slack_api_base=api.base_url, slack_socket_mode=True,
                        slack_app_token=SecretStr(APP_TOKEN))

    class _App:
        context = ctx

    channel = build_slack_channel(settings, _App())  # type: ignore[arg-type]
    assert channel is not None and channel.web_routes() == []  # nothing to forge over HTTP
    esc_id = await escalate(ctx)
    await channel.start()
    try:
        ack = await api.deliver("interactive", block_actions("desk_claim", esc_id, C26, STAFF_A))
        assert set(ack) == {"envelope_id"}
        [update] = await api.wait_for("chat.update")  # the claim, after the ack, shows on the card
        assert STAFF_A in json.dumps(update.params, ensure_ascii=False)
    finally:
        await channel.stop()
    assert (await esc(ctx, esc_id)).claimed_by == STAFF_A
    assert api.of("apps.connections.open")
