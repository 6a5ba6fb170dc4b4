"""LINE end to end: the real line-bot-sdk v3 client over HTTP to a local fake Messaging API,
webhooks signed as LINE signs them and posted to our route on a real web server, on SQLite
and PostgreSQL."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import aiohttp
import pytest
from pydantic import SecretStr
from sqlmodel import col, select

from bot.app import App
from bot.line import LineChannel, build_line_channel
from bot.line import channel as line_channel
from bot.line.render import LABEL_LIMIT, short_label
from bot.pending import TAKE_OVER_AFTER
from bot.render import EXPIRED_BUTTON
from bot.settings import ConfigError, Settings
from db.events import TAKE_OVER_ATTEMPTS, first_delivery, take_over
from db.models import ChatAccount, ConversationLog, Institution, Outbox, ProcessedEvent
from handlers.context import Context
from handlers.messages import Button, Inbound, Reply
from handlers.texts import EMPTY, WELCOME
from scheduler import campaigns
from scheduler.calendar import JST
from scheduler.outbox import enqueue
from tests.conftest import DEMO_PREF, NOW
from tests.fakes.clock import MovingClock
from tests.fakes.line_api import PUSH, REPLY, FakeLineAPI
from tests.fakes.web import raw_post, serving

USER = "U4af4980629a0b1c2d3e4f5a6b7c8d9e0"
PATH = "/line/webhook"


@pytest.fixture
async def api() -> AsyncIterator[FakeLineAPI]:
    async with FakeLineAPI() as fake:
        yield fake


@pytest.fixture
def clock() -> MovingClock:
    return MovingClock(NOW)


def line_settings(api: FakeLineAPI, **overrides: Any) -> Settings:
    values: dict[str, Any] = dict(line_channel_secret=SecretStr(api.secret),
                                  line_channel_access_token=SecretStr(api.token),
                                  line_api_base=api.base_url, default_prefecture="26")
    return Settings(_env_file=None, **{**values, **overrides})  # type: ignore[call-arg]


class Bot:
    """A started channel behind a real web server: what LINE's platform talks to."""

    def __init__(self, api: FakeLineAPI, channel: LineChannel, url: str) -> None:
        self.api, self.channel, self.url = api, channel, url

    async def post(self, *events: dict[str, Any]) -> int:
        return await self.api.post_webhook(self.url, list(events))

    async def say(self, text: str, user: str = USER) -> list[str]:
        assert await self.post(self.api.text_event(user, text)) == 200
        return await self.api.next_texts(user)

    async def tap(self, label: str, user: str = USER) -> list[str]:
        data = self.api.tap_data(user, label)
        assert await self.post(self.api.postback_event(user, data)) == 200
        return await self.api.next_texts(user)

    async def flush(self) -> None:
        async with asyncio.timeout(10):
            await self.channel.settled()
            await self.channel.outbox.flush()


@asynccontextmanager
async def running(api: FakeLineAPI, ctx: Context, clock: MovingClock,
                  **kwargs: Any) -> AsyncIterator[Bot]:
    channel = LineChannel(line_settings(api), ctx, clock=clock, **kwargs)
    await channel.start()
    try:
        async with serving(channel.web_routes()) as base:
            yield Bot(api, channel, base + PATH)
    finally:
        await channel.stop()


@pytest.fixture
async def bot(api: FakeLineAPI, ctx: Context, clock: MovingClock) -> AsyncIterator[Bot]:
    async with running(api, ctx, clock) as started:
        yield started


def answering(make: Callable[[Inbound], Reply | Awaitable[Reply]]) -> Callable[..., Any]:
    """A stand-in for the domain dispatcher, to shape replies the knowledge base lacks."""
    async def fake_dispatch(msg: Inbound, _ctx: Context) -> list[Reply]:
        result = make(msg)
        return [await result if isinstance(result, Awaitable) else result]

    return fake_dispatch


def quick_replies(api: FakeLineAPI, user: str = USER) -> list[dict[str, Any]]:
    """The quick-reply actions under the latest message the user got."""
    last = api.delivered(user)[-1].body["messages"][-1]
    return [item["action"] for item in (last.get("quickReply") or {}).get("items", [])]


async def turns(ctx: Context) -> list[ConversationLog]:
    async with ctx.session() as session:
        return list((await session.exec(select(ConversationLog)
                                        .order_by(col(ConversationLog.id)))).all())


async def line_rows(ctx: Context) -> list[Outbox]:
    async with ctx.session() as session:
        return list((await session.exec(select(Outbox).where(Outbox.channel == "line")
                                        .order_by(col(Outbox.id)))).all())


async def line_account(ctx: Context, user: str = USER) -> ChatAccount:
    async with ctx.session() as session:
        found = (await session.exec(select(ChatAccount).where(
            ChatAccount.channel == "line", ChatAccount.external_user_id == user))).first()
    assert found is not None
    return found


async def queue(ctx: Context, clock: MovingClock, key: str, body: str,
                kind: str = "escalation_answered", user: str = USER) -> bool:
    async with ctx.session() as session:
        return await enqueue(session, key=key, channel="line", recipient=user, kind=kind,
                             body=body, prefecture_code="26", now=clock())


# ---- conversations --------------------------------------------------------------------


async def test_a_signed_question_is_answered_through_the_reply_api(
        api: FakeLineAPI, bot: Bot, ctx: Context) -> None:
    event = api.text_event(USER, "歯科診療所は報告しますか")
    assert await bot.post(event) == 200
    assert await api.next_texts(USER) == [ctx.retriever.by_id["scope-dental-exempt"].answer]
    [reply] = api.calls_of(REPLY, ok=True)
    assert reply.body["replyToken"] == event["replyToken"] and api.calls_of(PUSH) == []
    [turn] = await turns(ctx)
    assert (turn.channel, turn.external_user_id) == ("line", USER)
    assert turn.entry_id == "scope-dental-exempt"


async def test_an_oversized_or_mislabelled_body_is_refused_without_being_read(
        api: FakeLineAPI, bot: Bot, ctx: Context) -> None:
    """The body is read before its signature can be checked, so its size is bounded as
    it streams: a chunked body has no Content-Length to trust."""
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(40):
            yield b"x" * 50_000  # 2 MB in all
    async with aiohttp.ClientSession() as session, session.post(bot.url, data=chunks()) as r:
        assert r.status == 413
    assert await raw_post(bot.url, {"Content-Length": "12abc",
                                    "X-Line-Signature": "AAAA"}, b"{}") == 400
    assert await bot.post(api.text_event(USER, "歯医者も報告が必要？")) == 200  # still serving
    await bot.flush()
    assert [t.inbound_text for t in await turns(ctx)] == ["歯医者も報告が必要？"]


async def test_bad_or_missing_signatures_get_400_and_nothing_happens(
        api: FakeLineAPI, bot: Bot, ctx: Context, caplog: pytest.LogCaptureFixture) -> None:
    forged = [api.text_event(USER, "偽のメッセージです")]
    assert await api.post_webhook(bot.url, forged, signature=None) == 400
    assert await api.post_webhook(bot.url, forged, signature="AAAA") == 400
    other = FakeLineAPI(secret="someone-elses-secret")
    body = b'{"destination": "U0", "events": []}'
    assert await api.post_webhook(bot.url, body, signature=other.sign(body)) == 400
    with caplog.at_level(logging.WARNING, logger="bot.line.webhook"):
        assert await api.post_webhook(bot.url, b"{not json") == 400
        assert await api.post_webhook(bot.url, b'{"destination": "U0"}') == 400
        assert await api.post_webhook(bot.url, [{"type": "message", "mode": "active"}]) == 200
    said = [r.getMessage() for r in caplog.records]
    assert any("not JSON" in line for line in said)
    assert any('no "events" list' in line for line in said)
    assert any("event 0 (type 'message') left out" in line for line in said)
    assert await bot.post(api.event(USER, "somethingNew", reply=False)) == 200  # unknown type
    await bot.flush()
    assert api.calls_of(REPLY) == [] and api.calls_of(PUSH) == []
    assert await turns(ctx) == []
    assert await bot.say("報告期間はいつまでですか")  # the channel still serves real ones


async def test_a_redelivered_event_is_handled_once(
        api: FakeLineAPI, bot: Bot, ctx: Context) -> None:
    event = api.text_event(USER, "報告期間はいつまでですか")
    assert await bot.post(event) == 200
    first = await api.next_texts(USER)
    assert await bot.post(api.redelivered(event)) == 200
    assert await bot.post(event, api.text_event(USER, "/start")) == 200  # a batch repeats it
    assert await api.next_texts(USER) == [WELCOME]
    await bot.flush()
    assert api.texts(USER) == [*first, WELCOME]
    assert [t.inbound_text for t in await turns(ctx)] == ["報告期間はいつまでですか", "/start"]


async def test_a_quick_reply_tap_answers_as_a_postback(
        api: FakeLineAPI, bot: Bot, ctx: Context) -> None:
    await bot.say("歯科診療所は報告しますか")
    actions = quick_replies(api)
    assert [a["label"] for a in actions][-2:] == ["👍 役に立った", "👎 違う"]
    assert all(a["type"] == "postback" and len(a["label"]) <= LABEL_LIMIT for a in actions)
    [thanks] = await bot.tap("👍 役に立った")
    assert "ありがとうございます" in thanks
    log = await turns(ctx)
    assert log[0].feedback == 1 and log[1].inbound_text == "👍 役に立った"
    assert (log[1].payload or "").startswith("fb:up:")


async def test_a_suggestion_tap_answers_that_entry_and_shows_the_full_question(
        api: FakeLineAPI, bot: Bot, ctx: Context) -> None:
    [offer] = await bot.say("報告")
    assert offer.startswith("もしかして")
    first = quick_replies(api)[0]
    entry = next(e for e in ctx.retriever.by_id.values() if e.question == first["displayText"])
    assert first["label"] == short_label(entry.question)
    assert await bot.tap(entry.question) == [entry.answer]


async def test_long_payloads_many_parts_and_expired_taps(
        api: FakeLineAPI, ctx: Context, clock: MovingClock) -> None:
    long_payload = "qa:show:" + "とても長い項目の識別子" * 20
    label = "報告の対象になる医療機関の範囲はどこまでですか？"
    text = "".join(f"これは{i}番目の説明で、報告の手順を述べています。" for i in range(1500))
    seen: list[Inbound] = []

    def choose(msg: Inbound) -> Reply:
        seen.append(msg)
        return Reply(text if msg.text == "長く" else "お選びください。",
                     (Button(label, long_payload),))

    async with running(api, ctx, clock, dispatch=answering(choose)) as bot:
        parts = await bot.say("長く")
        await bot.flush()
        assert len(parts) == 5 and "".join(api.texts(USER)) == text  # reply, then push
        assert len(api.calls_of(PUSH, ok=True)) == len(api.texts(USER)) - 5 > 0
        api.mark_read(USER)
        [action] = quick_replies(api)
        assert len(action["data"]) <= 300 and action["displayText"] == label
        assert action["label"] == "報告の対象になる医療機関の範囲はどこま…"
        assert short_label("報告の対象になる医療機関はどこまでですか？") == \
            "報告の対象になる医療機関はどこまでですか"  # the ？ goes first, nothing is cut
        await bot.tap(label)
        assert seen[-1].payload == long_payload and seen[-1].text == label
        assert await bot.post(api.postback_event(USER, "~forgotten-token")) == 200
        assert await api.next_texts(USER) == [EXPIRED_BUTTON]
    assert len(seen) == 2  # the expired tap never reached the handlers


async def test_stickers_get_a_polite_request_for_text(api: FakeLineAPI, bot: Bot) -> None:
    assert await bot.post(api.sticker_event(USER)) == 200
    assert await api.next_texts(USER) == [EMPTY]


async def test_follow_greets_and_unfollow_marks_the_account_unreachable(
        api: FakeLineAPI, bot: Bot, ctx: Context) -> None:
    assert await bot.post(api.follow_event(USER)) == 200
    assert await api.next_texts(USER) == [WELCOME]
    assert (await line_account(ctx)).reachable
    assert await bot.post(api.unfollow_event(USER)) == 200
    await bot.flush()
    assert not (await line_account(ctx)).reachable
    assert len(api.texts(USER)) == 1  # nothing was sent to find out
    assert await bot.post(api.follow_event(USER)) == 200  # added as a friend again
    assert await api.next_texts(USER) == [WELCOME]
    assert (await line_account(ctx)).reachable


# ---- pushes: the outbox ---------------------------------------------------------------


async def test_a_staff_answer_reaches_the_line_user_by_push_once(
        api: FakeLineAPI, bot: Bot, ctx: Context, clock: MovingClock) -> None:
    await bot.say("報告期間はいつまでですか")
    answer = "受付番号 Q26-000001 へのご回答です。分院も別の医療機関として報告してください。"
    assert await queue(ctx, clock, "escalation-answered:1", answer)
    bot.channel.wake()
    assert await api.next_texts(USER) == [answer]
    [push] = api.calls_of(PUSH, ok=True)
    assert push.body["to"] == USER and push.headers.get("X-Line-Retry-Key")
    clock.advance(600)  # well past any lease
    await bot.flush()
    assert api.texts(USER).count(answer) == 1
    [row] = await line_rows(ctx)
    assert row.status == "sent" and row.attempts == 1


async def test_a_push_whose_first_try_timed_out_is_not_sent_twice(
        api: FakeLineAPI, bot: Bot, ctx: Context, clock: MovingClock) -> None:
    await queue(ctx, clock, "campaign:1", "報告期限が近づいています。", kind="campaign")
    await bot.flush()
    [accepted] = api.calls_of(PUSH, ok=True)
    sender = bot.channel.sender
    [row] = await line_rows(ctx)
    outcome = await sender(row)  # as if the outcome had been lost and the row resent
    assert outcome.kind == "sent"
    assert [c.status for c in api.calls_of(PUSH)] == [200, 409]
    assert api.texts(USER) == ["報告期限が近づいています。"]
    assert accepted.headers["X-Line-Retry-Key"] == api.calls_of(PUSH)[1].headers[
        "X-Line-Retry-Key"]


async def test_a_reply_cut_off_after_it_arrived_is_not_pushed_again(
        api: FakeLineAPI, bot: Bot, ctx: Context) -> None:
    """LINE took the reply but its answer came too late: asking again with the same token
    gets "Invalid reply token", which for a fresh token means the first one arrived."""
    bot.channel.sender.timeout = 0.3
    api.hang(REPLY, 1.0)
    assert await bot.post(api.text_event(USER, "歯医者も報告が必要？")) == 200
    await bot.flush()
    assert [c.status for c in api.calls_of(REPLY)] == [200, 400]
    assert api.calls_of(PUSH) == [] and await line_rows(ctx) == []
    assert len(api.texts(USER)) == 1


async def test_a_reply_cut_off_before_it_arrived_is_sent_once(
        api: FakeLineAPI, bot: Bot) -> None:
    """The same timeout when LINE had not taken it: the second try delivers it."""
    bot.channel.sender.timeout = 0.3
    api.fail(REPLY, 500)  # a call LINE did not carry out, answered too late to be heard
    api.hang(REPLY, 1.0)
    assert await bot.post(api.text_event(USER, "歯医者も報告が必要？")) == 200
    await bot.flush()
    assert [c.status for c in api.calls_of(REPLY)] == [500, 200]
    assert api.calls_of(PUSH) == [] and len(api.texts(USER)) == 1


async def test_a_429_is_retried_after_the_wait_once(
        api: FakeLineAPI, bot: Bot, ctx: Context, clock: MovingClock) -> None:
    api.fail(PUSH, 429, retry_after=30)
    await queue(ctx, clock, "escalation-answered:2", "ご回答です。")
    await bot.flush()
    [row] = await line_rows(ctx)
    assert row.status == "pending" and "429" in (row.last_error or "")
    assert api.texts(USER) == []
    clock.advance(10)  # LINE said 30 s: nothing may be tried yet
    await bot.flush()
    assert len(api.calls_of(PUSH)) == 1
    clock.advance(25)
    await bot.flush()
    assert api.texts(USER) == ["ご回答です。"]
    assert (await line_rows(ctx))[0].status == "sent"


async def test_a_reply_hit_by_429_or_a_stale_token_goes_by_push(
        api: FakeLineAPI, ctx: Context, clock: MovingClock) -> None:
    async def slow(msg: Inbound) -> Reply:
        if msg.text == "遅い質問":
            clock.advance(120)  # the reply token is long stale when the answer is ready
        return Reply(f"{msg.text}へのお答えです。")

    async with running(api, ctx, clock, dispatch=answering(slow)) as bot:
        api.fail(REPLY, 429)  # no Retry-After: LINE's limits are per channel, wait a minute
        assert await bot.post(api.text_event(USER, "質問")) == 200
        await bot.flush()
        assert api.texts(USER) == [] and [r.kind for r in await line_rows(ctx)] == ["reply"]
        clock.advance(61)
        await bot.flush()
        assert api.texts(USER) == ["質問へのお答えです。"]
        assert await bot.post(api.text_event(USER, "遅い質問")) == 200
        assert await api.next_texts(USER) == ["質問へのお答えです。"]
        assert await api.next_texts(USER) == ["遅い質問へのお答えです。"]
    assert len(api.calls_of(REPLY, ok=True)) == 0 and len(api.calls_of(PUSH, ok=True)) == 2
    assert {r.status for r in await line_rows(ctx)} == {"sent"}


async def test_an_event_a_stopped_process_never_handled_is_answered_once_later(
        api: FakeLineAPI, ctx: Context, clock: MovingClock,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """LINE sends nothing again after its 200: a process stopped between the 200 and the
    answer had lost the question. A running process answers it by push, once, with an
    apology; one still young may be another process's work in hand, and is left alone."""
    monkeypatch.setattr(line_channel, "STOP_GRACE", 0.2)
    started = asyncio.Event()

    async def hanging(_msg: Inbound, _ctx: Context) -> list[Reply]:
        started.set()
        await asyncio.Event().wait()  # never answers: stopped mid-question
        return []

    async with running(api, ctx, clock, dispatch=hanging) as first:
        assert await first.post(api.text_event(USER, "報告期間はいつまでですか")) == 200
        async with asyncio.timeout(5):
            await started.wait()
    assert api.texts(USER) == []
    # The process that takes it over is stopped mid-answer too: it is only leased, and
    # taken over again one wait later.
    async with running(api, ctx, clock, dispatch=hanging) as taker:
        clock.advance(TAKE_OVER_AFTER.total_seconds() + 60)
        started.clear()
        assert await taker.channel.pending.take_over() == 1
        async with asyncio.timeout(5):
            await started.wait()
    assert api.texts(USER) == []
    async with running(api, ctx, clock) as second:
        assert await second.channel.pending.take_over() == 0  # five seconds old: maybe in hand
        clock.advance(TAKE_OVER_AFTER.total_seconds() + 60)
        assert await second.channel.pending.take_over() == 1
        await api.next_texts(USER)
        await second.flush()
    texts = api.texts(USER)
    assert texts[0] == "「報告期間はいつまでですか」へのお返事が遅くなり、申し訳ありません。"
    assert len(texts) >= 2 and "3月31日" in "".join(texts[1:])
    assert api.calls_of(REPLY, ok=True) == [] and len(api.calls_of(PUSH, ok=True)) >= 1
    async with running(api, ctx, clock) as third:  # handled: never taken over again
        assert await third.channel.pending.take_over() == 0
    assert [t.inbound_text for t in await turns(ctx)] == ["報告期間はいつまでですか"]


async def test_an_event_that_stops_every_taker_is_given_up_not_retried_forever(
        ctx: Context, caplog: pytest.LogCaptureFixture) -> None:
    """Leased twice and never finished: the third round gives it up, loudly."""
    event = {"type": "message", "webhookEventId": "01POISON"}
    async with ctx.session() as session:
        assert await first_delivery(session, "line", "01POISON", NOW, event)
    later = NOW
    for _ in range(TAKE_OVER_ATTEMPTS):
        later += TAKE_OVER_AFTER * 2
        async with ctx.session() as session:
            assert [e for e, _, _ in await take_over(session, "line", later - TAKE_OVER_AFTER,
                                                     later, set())] == ["01POISON"]
    later += TAKE_OVER_AFTER * 2
    with caplog.at_level(logging.ERROR, logger="db.events"):
        async with ctx.session() as session:
            assert await take_over(session, "line", later - TAKE_OVER_AFTER, later, set()) == []
    assert "01POISON was taken over 2 times" in caplog.text
    async with ctx.session() as session:
        [row] = (await session.exec(select(ProcessedEvent))).all()
    assert row.handled_at is not None and row.payload is None


async def test_a_handled_event_is_not_kept(api: FakeLineAPI, bot: Bot, ctx: Context,
                                           clock: MovingClock) -> None:
    """The message text is kept only while it waits: once answered, its row has none (SQL
    NULL, not the JSON text 'null')."""
    assert await bot.say("報告期間はいつまでですか")
    await bot.flush()
    async with ctx.session() as session:
        [row] = (await session.exec(select(ProcessedEvent))).all()
        kept = (await session.exec(select(ProcessedEvent).where(
            col(ProcessedEvent.payload).is_not(None)))).all()
    assert row.handled_at is not None and row.payload is None and kept == []
    clock.advance(TAKE_OVER_AFTER.total_seconds() + 60)
    assert await bot.channel.pending.take_over() == 0


# ---- configuration --------------------------------------------------------------------


def test_half_a_line_configuration_refuses_to_start(ctx: Context) -> None:
    app = App(Settings(_env_file=None), None, ctx)  # type: ignore[arg-type, call-arg]
    assert build_line_channel(Settings(_env_file=None), app) is None  # type: ignore[call-arg]
    only_secret = Settings(_env_file=None, line_channel_secret="s3cret-value")  # type: ignore[call-arg]
    with pytest.raises(ConfigError, match="LINE_CHANNEL_ACCESS_TOKEN is not") as refused:
        build_line_channel(only_secret, app)
    assert "s3cret-value" not in str(refused.value)
    only_token = Settings(_env_file=None, line_channel_access_token="tok",  # type: ignore[call-arg]
                          line_channel_secret="  ")
    with pytest.raises(ConfigError, match="LINE_CHANNEL_SECRET is not"):
        build_line_channel(only_token, app)


async def test_a_refused_token_stops_the_start_naming_the_setting(
        api: FakeLineAPI, database_url: str, caplog: pytest.LogCaptureFixture) -> None:
    from bot.runner import CONFIG_ERROR, serve

    settings = line_settings(api, database_url=database_url, web_port=0,
                             line_channel_access_token=SecretStr("wrong-token-value"))
    with caplog.at_level(logging.ERROR):
        assert await serve(settings, asyncio.Event()) == CONFIG_ERROR
    said = "\n".join(r.getMessage() for r in caplog.records)
    assert "LINE_CHANNEL_ACCESS_TOKEN" in said and "401" in said
    assert "wrong-token-value" not in said and api.secret not in said


async def test_a_dunning_campaign_reaches_a_line_linked_clinic_once(
        api: FakeLineAPI, ctx: Context) -> None:
    """A clinic linked through LINE is chased like a Telegram one: planned from its status,
    sent only once approved, by push, once; a clinic that has reported gets nothing."""
    in_period = datetime(2027, 2, 17, 10, tzinfo=JST)  # a Wednesday inside the demo period
    async with ctx.session() as session:
        for code, status, user in (("7700001", "未報告", USER), ("7700002", "報告済", "Udone")):
            inst = Institution(prefecture_code=DEMO_PREF, code=code, name=f"LINE診療所{code}",
                               kind="clinic", status=status)
            session.add(inst)
            await session.flush()
            session.add(ChatAccount(channel="line", external_user_id=user,
                                    prefecture_code=DEMO_PREF, institution_id=inst.id,
                                    linked_at=NOW))
        await session.commit()
        planned = await campaigns.plan(session, DEMO_PREF, "dunning", "t:D-3", in_period)
    assert planned.campaign.recipients == 1
    clock = MovingClock(in_period)
    async with running(api, ctx, clock) as started:
        await started.flush()
        assert api.calls_of(PUSH) == []  # nothing before approval
        async with ctx.session() as session:
            assert await campaigns.approve(session, planned.campaign, "U1", in_period) == 1
        started.channel.wake()
        [text] = await api.next_texts(USER)
        assert "LINE診療所7700001" in text and "報告" in text
        clock.advance(3600)
        await started.flush()
    assert len(api.calls_of(PUSH, ok=True)) == 1 and api.texts("Udone") == []
