"""Telegram end to end: the real PTB Application over HTTP to a local fake Bot API, driven
the way a clinic clerk would use the bot, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest
from pydantic import SecretStr
from sqlmodel import col, select

from bot.pending import TAKE_OVER_AFTER
from bot.settings import Settings
from bot.telegram import TelegramChannel
from bot.telegram.channel import COMMANDS, EXPIRED_BUTTON, GROUP_ONLY_PRIVATE
from db.models import ChatAccount, ConversationLog, Escalation, Institution, Outbox, ProcessedEvent
from handlers.context import Context
from handlers.linking import issue_code
from handlers.messages import Button, Inbound, Reply
from handlers.texts import EMPTY, WELCOME
from scheduler.outbox import enqueue
from tests.conftest import NOW
from tests.fakes.clock import MovingClock
from tests.fakes.telegram_api import FakeTelegramAPI
from tests.fakes.web import serving

CHAT = 5550001
SECRET = "s3cret-Token_for-tests"
WEBHOOK_URL = "https://bot.example.jp/telegram/webhook"


@pytest.fixture
async def api() -> AsyncIterator[FakeTelegramAPI]:
    async with FakeTelegramAPI() as fake:
        yield fake


@pytest.fixture
def clock() -> MovingClock:
    return MovingClock(NOW)


def settings_for(api: FakeTelegramAPI, **overrides: Any) -> Settings:
    return Settings(_env_file=None, telegram_token=SecretStr(api.token),  # type: ignore[call-arg]
                    telegram_api_base=api.base_url, default_prefecture="26", **overrides)


@asynccontextmanager
async def running(api: FakeTelegramAPI, ctx: Context, clock: MovingClock,
                  **kwargs: Any) -> AsyncIterator[TelegramChannel]:
    settings = settings_for(api, **kwargs.pop("settings", {}))
    channel = TelegramChannel(settings, ctx, clock=clock, **kwargs)
    await channel.start()
    try:
        yield channel
    finally:
        await channel.stop()


@pytest.fixture
async def bot(api: FakeTelegramAPI, ctx: Context, clock: MovingClock,
              ) -> AsyncIterator[TelegramChannel]:
    async with running(api, ctx, clock) as channel:
        yield channel


async def say(api: FakeTelegramAPI, text: str, chat: int = CHAT) -> str:
    api.send_text(chat, text)
    return await api.next_reply(chat)


async def tap(api: FakeTelegramAPI, label: str, chat: int = CHAT) -> str:
    api.tap(chat, label)
    return await api.next_reply(chat)


def buttons(api: FakeTelegramAPI, chat: int = CHAT) -> list[str]:
    """Labels under the latest message, one per row as the user sees them."""
    last = api.calls_of("sendMessage", chat_id=chat, ok=True)[-1].params
    rows = last.get("reply_markup", {}).get("inline_keyboard", [])
    assert all(len(row) == 1 for row in rows)
    return [row[0]["text"] for row in rows]


async def flush(channel: TelegramChannel) -> None:
    async with asyncio.timeout(10):
        await channel.outbox.flush()


async def put(ctx: Context, clock: MovingClock, key: str, chat: int, body: str,
              kind: str = "escalation_answered") -> bool:
    async with ctx.session() as session:
        return await enqueue(session, key=key, channel="telegram", recipient=str(chat),
                             kind=kind, body=body, prefecture_code="26", now=clock())


async def rows(ctx: Context) -> list[Outbox]:
    """Outbox rows for Telegram (escalations also queue staff-desk cards for Slack)."""
    async with ctx.session() as session:
        return list((await session.exec(select(Outbox).where(Outbox.channel == "telegram")
                                        .order_by(col(Outbox.id)))).all())


async def account(ctx: Context, chat: int = CHAT) -> ChatAccount:
    async with ctx.session() as session:
        found = (await session.exec(select(ChatAccount).where(
            ChatAccount.channel == "telegram",
            ChatAccount.external_user_id == str(chat)))).first()
    assert found is not None
    return found


def replying(make: Callable[[Inbound], Reply | Awaitable[Reply]]) -> Callable[..., Any]:
    """A stand-in for the domain dispatcher, to shape replies the knowledge base lacks."""
    async def fake_dispatch(msg: Inbound, _ctx: Context) -> list[Reply]:
        result = make(msg)
        return [await result if isinstance(result, Awaitable) else result]

    return fake_dispatch


# ---- conversations --------------------------------------------------------------------


async def test_start_greets_and_the_menu_is_registered_in_japanese(
        api: FakeTelegramAPI, bot: TelegramChannel) -> None:
    assert await say(api, "/start") == WELCOME
    assert await say(api, "/help") == WELCOME
    [menu] = api.calls_of("setMyCommands")
    names = [c["command"] for c in menu.params["commands"]]
    assert names == ["start", "help", "status", "check", "link", "ask", "cancel"]
    descriptions = {c["command"]: c["description"] for c in menu.params["commands"]}
    assert "報告状況" in descriptions["status"] and "対象か確認" in descriptions["check"]
    assert "連携" in descriptions["link"] and "担当者に聞く" in descriptions["ask"]
    assert len(COMMANDS) == 7


async def test_question_is_answered_with_feedback_buttons_and_the_vote_is_logged(
        api: FakeTelegramAPI, bot: TelegramChannel, ctx: Context) -> None:
    answer = await say(api, "歯科診療所は報告しますか")
    assert answer == ctx.retriever.by_id["scope-dental-exempt"].answer
    assert buttons(api)[-2:] == ["👍 役に立った", "👎 違う"]
    assert "ありがとうございます" in await tap(api, "👍 役に立った")
    [ack] = api.calls_of("answerCallbackQuery")
    assert ack.params["callback_query_id"]
    async with ctx.session() as session:
        log = list((await session.exec(select(ConversationLog)
                                       .order_by(col(ConversationLog.id)))).all())
    assert log[0].entry_id == "scope-dental-exempt" and log[0].feedback == 1
    assert log[1].inbound_text == "👍 役に立った" and (log[1].payload or "").startswith("fb:up:")
    assert all(r.channel == "telegram" and r.external_user_id == str(CHAT) for r in log)


async def test_a_suggestion_tap_answers_that_entry(
        api: FakeTelegramAPI, bot: TelegramChannel, ctx: Context) -> None:
    offer = await say(api, "報告")
    assert offer.startswith("もしかして")
    first = buttons(api)[0]
    entry = next(e for e in ctx.retriever.by_id.values() if e.question == first)
    assert await tap(api, first) == entry.answer
    assert len(api.calls_of("answerCallbackQuery")) == 1


async def test_asking_staff_gives_a_receipt_number(
        api: FakeTelegramAPI, bot: TelegramChannel, ctx: Context) -> None:
    offer = await say(api, "今日の天気は")
    assert "担当者" in offer and "担当者に聞く" in buttons(api)
    receipt = await tap(api, "担当者に聞く")
    other = CHAT + 1  # a new user who starts with the menu command
    assert "ご質問を入力" in await say(api, "/ask", other)
    second = await say(api, "来週の説明会の会場を教えてください", other)
    async with ctx.session() as session:
        first_esc, second_esc = (await session.exec(select(Escalation)
                                                    .order_by(col(Escalation.id)))).all()
    assert first_esc.receipt in receipt and second_esc.receipt in second
    assert second_esc.question == "来週の説明会の会場を教えてください"
    assert first_esc.prefecture_code == second_esc.prefecture_code == "26"


async def test_linking_with_a_code_then_status(
        api: FakeTelegramAPI, bot: TelegramChannel, ctx: Context) -> None:
    assert "連携コード" in await say(api, "/status")  # not linked yet: how to link
    async with ctx.session() as session:
        clinic = (await session.exec(select(Institution)
                                     .where(Institution.code == "9990001"))).one()
        code, _ = await issue_code(session, clinic, NOW, 30)
        await session.commit()
    assert "確認できませんでした" in await say(api, "/link ABCDE-FGHJK")
    assert "デモ内科クリニック 様との連携が完了しました" in await say(api, f"/link {code}")
    status = await say(api, "/status")
    assert "デモ内科クリニック" in status and "報告状況：未報告" in status
    assert "報告期限" in status
    assert (await account(ctx)).institution_id == clinic.id


async def test_the_eligibility_wizard_with_back_and_cancel(
        api: FakeTelegramAPI, bot: TelegramChannel) -> None:
    first = await say(api, "/check")
    assert "医療機関の種類" in first and buttons(api) == ["病院", "診療所", "やめる"]
    assert "歯科" in await tap(api, "診療所")
    assert "医療機関の種類" in await tap(api, "戻る")
    await tap(api, "診療所")
    assert "休院" in await tap(api, "いいえ")
    assert "1号機能" in await tap(api, "いいえ")
    assert "★1" in await tap(api, "確認する")
    for _ in range(3):
        await tap(api, "はい")
    for answer in ("はい", "いいえ", "はい"):
        await tap(api, answer)
    result = await tap(api, "はい")
    assert "判定：報告の対象です" in result and "1号機能：あり" in result
    assert buttons(api) == ["最初から確認し直す"]
    await say(api, "対象か確認")
    assert "確認を終了しました" in await tap(api, "やめる")
    assert "報告期間" in await say(api, "報告期間はいつまでですか")  # back to questions


async def test_photos_stickers_and_group_chats_get_polite_handling(
        api: FakeTelegramAPI, bot: TelegramChannel) -> None:
    sticker = api.text_update(CHAT, "")
    del sticker["message"]["text"]
    sticker["message"]["sticker"] = {"file_id": "x", "file_unique_id": "y", "width": 512,
                                     "height": 512, "is_animated": False, "is_video": False,
                                     "type": "regular"}
    api.feed(sticker)
    assert await api.next_reply(CHAT) == EMPTY
    group = -1009999
    api.send_text(group, "みなさん報告は済みましたか", chat_type="supergroup")
    api.send_text(group, "/status", chat_type="supergroup")
    assert await api.next_reply(group) == GROUP_ONLY_PRIVATE
    assert len(api.texts(group)) == 1  # the chatter before it got no answer


async def test_a_users_messages_are_answered_in_order(
        api: FakeTelegramAPI, ctx: Context, clock: MovingClock) -> None:
    async def slow_first(msg: Inbound) -> Reply:
        if msg.text == "1":
            for _ in range(200):  # give a concurrent "2" every chance to overtake
                await asyncio.sleep(0)
        return Reply(f"echo {msg.text}")

    async with running(api, ctx, clock, dispatch=replying(slow_first)):
        for text in "12345":
            api.send_text(CHAT, text)
        api.send_text(CHAT + 1, "other")
        await api.wait_for("sendMessage", 5, chat_id=CHAT)
    assert api.texts(CHAT) == [f"echo {n}" for n in "12345"]


# ---- rendering ------------------------------------------------------------------------


async def test_long_answers_are_split_between_sentences(
        api: FakeTelegramAPI, ctx: Context, clock: MovingClock) -> None:
    sentences = [f"これは{i}番目の説明で、報告の手順を述べています。" for i in range(400)]
    long_text = "".join(sentences)
    assert len(long_text) > 3 * 4096 // 2
    reply = Reply(long_text, (Button("👍 役に立った", "fb:up:x"),))
    async with running(api, ctx, clock, dispatch=replying(lambda _m: reply)):
        api.send_text(CHAT, "詳しく")
        count = 1
        while "".join(api.texts(CHAT)) != long_text:  # every part, in order, nothing lost
            await api.wait_for("sendMessage", count, chat_id=CHAT)
            count += 1
    parts, calls = api.texts(CHAT), api.calls_of("sendMessage", chat_id=CHAT)
    assert len(parts) >= 2
    assert all(len(p) <= 4096 and p.endswith("。") for p in parts)
    assert [("reply_markup" in c.params) for c in calls] == [False] * (len(calls) - 1) + [True]


async def test_text_goes_out_verbatim_without_markup_parsing(
        api: FakeTelegramAPI, ctx: Context, clock: MovingClock) -> None:
    tricky = "<b>太字</b> & <script>x</script> *星* _下線_ [リンク](http://x) `code`"
    async with running(api, ctx, clock, dispatch=replying(lambda _m: Reply(tricky))):
        assert await say(api, "テスト") == tricky
    [call] = api.calls_of("sendMessage", chat_id=CHAT)
    assert "parse_mode" not in call.params


async def test_long_button_payloads_travel_as_short_tokens(
        api: FakeTelegramAPI, ctx: Context, clock: MovingClock) -> None:
    long_payload = "qa:show:" + "とても長い項目の識別子" * 4
    assert len(long_payload.encode()) > 64
    seen: list[Inbound] = []

    def choose(msg: Inbound) -> Reply:
        seen.append(msg)
        return Reply("お選びください。", (Button("長い選択肢", long_payload),))

    async with running(api, ctx, clock, dispatch=replying(choose)):
        await say(api, "選択")
        [row] = api.calls_of("sendMessage", chat_id=CHAT)[-1].params["reply_markup"][
            "inline_keyboard"]
        assert len(row[0]["callback_data"].encode()) <= 64
        await tap(api, "長い選択肢")
        assert seen[-1].payload == long_payload and seen[-1].text == "長い選択肢"
        message = api.message_with_button(CHAT, row[0]["callback_data"])
        api.feed(api.callback_update(CHAT, "~forgotten-token", message))
        assert await api.next_reply(CHAT) == EXPIRED_BUTTON
    assert len(seen) == 2  # the expired tap never reached the handlers


async def test_typing_is_shown_while_work_takes_time(
        api: FakeTelegramAPI, ctx: Context, clock: MovingClock) -> None:
    async def slow(msg: Inbound) -> Reply:
        await api.wait_for("sendChatAction", chat_id=CHAT)  # done only once typing shows
        return Reply("お待たせしました。")

    async with running(api, ctx, clock, dispatch=replying(slow), typing_after=0.05):
        assert await say(api, "重い質問") == "お待たせしました。"
    [typing] = api.calls_of("sendChatAction")
    assert typing.params["action"] == "typing"
    assert typing.at < api.calls_of("sendMessage", chat_id=CHAT)[0].at


async def test_quick_answers_do_not_flash_typing(
        api: FakeTelegramAPI, bot: TelegramChannel) -> None:
    await say(api, "報告期間はいつまでですか")
    assert api.calls_of("sendChatAction") == []


# ---- the outbox: messages the bot sends on its own ------------------------------------


async def test_a_staff_answer_reaches_the_chat_exactly_once(
        api: FakeTelegramAPI, bot: TelegramChannel, ctx: Context, clock: MovingClock) -> None:
    await say(api, "/ask 分院の扱いを教えてください")
    answer = "受付番号 Q26-000001 へのご回答です。分院も別の医療機関として報告してください。"
    assert await put(ctx, clock, "escalation-answered:1", CHAT, answer)
    assert not await put(ctx, clock, "escalation-answered:1", CHAT, answer)
    bot.wake()
    assert await api.next_reply(CHAT) == answer
    await flush(bot)
    clock.advance(600)  # well past any lease
    await flush(bot)
    assert api.texts(CHAT).count(answer) == 1
    [row] = await rows(ctx)
    assert row.status == "sent" and row.attempts == 1


async def test_a_long_staff_answer_arrives_whole_in_parts(
        api: FakeTelegramAPI, bot: TelegramChannel, ctx: Context, clock: MovingClock) -> None:
    body = "\n".join(f"{i}. 回答の段落です、必要な手続きを順に説明します。" for i in range(300))
    await put(ctx, clock, "escalation-answered:9", CHAT, body)
    await flush(bot)
    parts = api.texts(CHAT)
    assert len(parts) >= 2 and "\n".join(parts) == body
    assert (await rows(ctx))[0].status == "sent"


async def test_a_user_who_blocked_the_bot_is_marked_unreachable(
        api: FakeTelegramAPI, bot: TelegramChannel, ctx: Context, clock: MovingClock) -> None:
    await say(api, "報告期間はいつまでですか")
    assert (await account(ctx)).reachable
    api.blocked.add(CHAT)
    await put(ctx, clock, "campaign:1", CHAT, "報告期限が近づいています。", kind="campaign")
    await flush(bot)
    [row] = await rows(ctx)
    assert row.status == "unreachable" and "blocked" in (row.last_error or "")
    assert not (await account(ctx)).reachable
    api.blocked.discard(CHAT)  # they unblock the bot and write again
    await say(api, "紙で報告できますか")
    assert (await account(ctx)).reachable


async def test_blocking_and_unblocking_is_seen_without_sending_anything(
        api: FakeTelegramAPI, bot: TelegramChannel, ctx: Context) -> None:
    await say(api, "報告期間はいつまでですか")
    api.feed(api.membership_update(CHAT, "kicked"))
    api.send_text(CHAT + 1, "/start")  # updates of one chat run in order: use a second one
    await api.next_reply(CHAT + 1)
    await bot.settled()
    assert not (await account(ctx)).reachable
    api.feed(api.membership_update(CHAT, "member"))
    api.send_text(CHAT + 1, "/start")
    await api.next_reply(CHAT + 1)
    await bot.settled()
    assert (await account(ctx)).reachable
    assert len(api.texts(CHAT)) == 1  # no message was needed to find out


async def test_a_reply_to_a_user_who_just_blocked_the_bot_is_not_retried(
        api: FakeTelegramAPI, bot: TelegramChannel, ctx: Context) -> None:
    api.blocked.add(CHAT)
    api.send_text(CHAT, "報告期間はいつまでですか")
    await api.wait_for("sendMessage", chat_id=CHAT, ok=False)
    await bot.settled()
    await flush(bot)
    assert not (await account(ctx)).reachable
    assert await rows(ctx) == []


async def test_a_429_storm_is_honoured_without_losing_or_duplicating(
        api: FakeTelegramAPI, bot: TelegramChannel, ctx: Context, clock: MovingClock) -> None:
    chats = [CHAT + i for i in range(20)]
    api.fail("sendMessage", 429, times=8, retry_after=30)
    for chat in chats:
        await put(ctx, clock, f"campaign:{chat}", chat, f"{chat} 様へのお知らせです。", "campaign")
    await flush(bot)
    assert len(api.calls_of("sendMessage", ok=True)) == 12
    limited = {c.chat_id for c in api.calls_of("sendMessage", ok=False)}
    assert len(limited) == 8
    attempts = len(api.calls_of("sendMessage"))
    clock.advance(10)  # Telegram said 30 s: nothing may be tried yet
    await flush(bot)
    assert len(api.calls_of("sendMessage")) == attempts
    clock.advance(25)
    await flush(bot)
    for chat in chats:
        assert api.texts(chat) == [f"{chat} 様へのお知らせです。"]
    assert {r.status for r in await rows(ctx)} == {"sent"}


async def test_a_reply_hit_by_429_is_delivered_later_once(
        api: FakeTelegramAPI, bot: TelegramChannel, ctx: Context, clock: MovingClock) -> None:
    api.fail("sendMessage", 429, retry_after=20)
    api.send_text(CHAT, "報告期間はいつまでですか")
    await api.wait_for("sendMessage", chat_id=CHAT, ok=False)
    await bot.settled()
    await flush(bot)
    [deferred] = await rows(ctx)
    assert deferred.kind == "reply" and deferred.status == "pending"
    assert api.texts(CHAT) == []
    clock.advance(21)
    await flush(bot)
    clock.advance(600)
    await flush(bot)
    [text] = api.texts(CHAT)
    assert deferred.body == text and "報告" in text
    assert {r.status for r in await rows(ctx)} == {"sent"}


async def test_server_errors_and_timeouts_are_retried_with_backoff(
        api: FakeTelegramAPI, ctx: Context, clock: MovingClock) -> None:
    async with running(api, ctx, clock, request_timeout=0.3) as channel:
        api.fail("sendMessage", 502)
        await put(ctx, clock, "answer:1", CHAT, "ご回答です。")
        await flush(channel)
        [row] = await rows(ctx)
        assert row.status == "pending" and row.attempts == 1
        assert (row.next_attempt_at - clock()).total_seconds() > 1  # backoff, not a spin
        api.hang("sendMessage")
        clock.advance(5)
        await flush(channel)
        [row] = await rows(ctx)
        assert row.status == "pending" and row.last_error == "TimedOut"
        clock.advance(10)
        await flush(channel)
    assert api.texts(CHAT) == ["ご回答です。"]
    assert (await rows(ctx))[0].status == "sent"


async def test_an_unknown_chat_fails_the_row_with_the_reason(
        api: FakeTelegramAPI, bot: TelegramChannel, ctx: Context, clock: MovingClock) -> None:
    api.unknown_chats.add(CHAT)
    await put(ctx, clock, "answer:2", CHAT, "ご回答です。")
    await flush(bot)
    [row] = await rows(ctx)
    assert row.status == "failed" and "chat not found" in (row.last_error or "").lower()


# ---- webhook mode ---------------------------------------------------------------------


@asynccontextmanager
async def web_server(channel: TelegramChannel) -> AsyncIterator[str]:
    """Our webhook route on a real uvicorn server; yields its URL."""
    async with serving(channel.web_routes()) as base:
        yield f"{base}/telegram/webhook"


async def test_webhook_refuses_forged_requests_and_serves_real_ones(
        api: FakeTelegramAPI, ctx: Context, clock: MovingClock) -> None:
    settings = {"telegram_webhook_url": WEBHOOK_URL, "telegram_secret_token": SECRET}
    async with running(api, ctx, clock, settings=settings) as channel, \
            web_server(channel) as url:
        assert api.webhook is not None
        assert api.webhook["url"] == WEBHOOK_URL and api.webhook["secret_token"] == SECRET
        assert api.calls_of("getUpdates") == []
        forged = api.text_update(CHAT, "偽の更新です")
        assert await api.post_webhook(url, forged, secret=None) == 403
        assert await api.post_webhook(url, forged, secret="wrong") == 403
        assert await api.post_webhook(url, forged, secret=SECRET[:-1]) == 403
        assert await api.post_webhook(url, b"{not json", secret=SECRET) == 400
        assert await api.post_webhook(url, b"[1, 2]", secret=SECRET) == 400

        async def chunks() -> AsyncIterator[bytes]:  # no Content-Length to trust
            for _ in range(40):
                yield b"x" * 50_000
        async with aiohttp.ClientSession() as session, session.post(
                url, data=chunks(), headers={"X-Telegram-Bot-Api-Secret-Token": SECRET}) as r:
            assert r.status == 413
        real = api.text_update(CHAT, "報告期間はいつまでですか")
        assert await api.post_webhook(url, real, secret=SECRET) == 200
        assert await api.post_webhook(url, real, secret=SECRET) == 200  # Telegram's retry
        assert "報告" in await api.next_reply(CHAT)
        second = api.text_update(CHAT, "/start")
        assert await api.post_webhook(url, second, secret=SECRET) == 200
        assert await api.next_reply(CHAT) == WELCOME
    assert len(api.texts(CHAT)) == 2
    async with ctx.session() as session:
        logged = [r.inbound_text for r in (await session.exec(select(ConversationLog))).all()]
    assert "偽の更新です" not in logged and logged.count("報告期間はいつまでですか") == 1


async def test_an_update_a_stopped_process_left_is_answered_late_and_once(
        api: FakeTelegramAPI, ctx: Context, clock: MovingClock) -> None:
    """Telegram sends nothing again after its 200: an update recorded by a process that
    stopped before answering had been lost. A running process answers it, once, with an
    apology; one still young may be another process's work in hand, and is left alone. An
    update handled normally keeps no text."""
    settings = {"telegram_webhook_url": WEBHOOK_URL, "telegram_secret_token": SECRET}
    left = api.text_update(CHAT, "報告期間はいつまでですか")
    async with running(api, ctx, clock, settings=settings) as channel, \
            web_server(channel) as url:
        # What a process stopped between the 200 and the answer leaves in the database:
        assert await channel.pending.record(str(left["update_id"]), left, clock())
        assert await channel.pending.take_over() == 0
        clock.advance(TAKE_OVER_AFTER.total_seconds() + 60)
        assert await channel.pending.take_over() == 1
        assert await api.next_reply(CHAT) == ("「報告期間はいつまでですか」へのお返事が遅くなり、"
                                              "申し訳ありません。")
        await channel.settled()
        await flush(channel)
        assert "3月31日" in "".join(api.texts(CHAT)[1:])
        assert await channel.pending.take_over() == 0
        assert await api.post_webhook(url, api.text_update(CHAT, "/start"), secret=SECRET) == 200
        await api.wait_for("sendMessage", len(api.texts(CHAT)) + 1, chat_id=CHAT)
        await channel.settled()
    async with ctx.session() as session:
        kept = (await session.exec(select(ProcessedEvent))).all()
    assert len(kept) == 2 and all(e.payload is None and e.handled_at for e in kept)
    assert api.texts(CHAT)[-1] == WELCOME


async def test_webhook_mode_refuses_to_start_without_a_secret(
        api: FakeTelegramAPI, ctx: Context) -> None:
    with pytest.raises(ValueError, match="SECRET_TOKEN"):
        TelegramChannel(settings_for(api, telegram_webhook_url=WEBHOOK_URL), ctx)
    with pytest.raises(ValueError, match="SECRET_TOKEN"):
        TelegramChannel(settings_for(api, telegram_webhook_url=WEBHOOK_URL,
                                     telegram_secret_token="has spaces!"), ctx)
    with pytest.raises(ValueError, match="https"):
        TelegramChannel(settings_for(api, telegram_webhook_url="http://bot.example.jp/hook",
                                     telegram_secret_token=SECRET), ctx)


async def test_no_token_means_no_telegram_channel(ctx: Context) -> None:
    from bot.app import App
    from bot.telegram import build_channel

    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert build_channel(settings, App(settings, None, ctx)) is None  # type: ignore[arg-type]



async def test_run_starts_telegram_when_a_token_is_configured(
        api: FakeTelegramAPI, database_url: str) -> None:
    from bot.runner import serve

    stop = asyncio.Event()
    task = asyncio.create_task(serve(settings_for(api, database_url=database_url), stop))
    try:
        assert await say(api, "/start") == WELCOME
    finally:
        stop.set()
        assert await task == 0
    assert [c.method for c in api.calls[:2]] == ["getMe", "setMyCommands"]
