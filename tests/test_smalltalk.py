"""Greetings, thanks and typed yes/no: a polite reply or the offer taken, never a search."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
from sqlmodel import col, select

from db.models import ConversationLog, Escalation
from handlers.context import Context
from handlers.dispatch import dispatch
from handlers.messages import Inbound
from tests.conftest import NOW


def said(text: str, user: str = "s1") -> Inbound:
    return Inbound("demo", user, text=text, tenant="26")


async def escalated(ctx: Context) -> list[str]:
    async with ctx.session() as session:
        rows = (await session.exec(select(Escalation).order_by(col(Escalation.id)))).all()
    return [e.question for e in rows]


@pytest.mark.parametrize(("text", "expected"), [
    ("ありがとうございました、助かりました！", "どういたしまして"),
    ("どうもありがとう🙏", "どういたしまして"),
    ("わかりました。ありがとうございます", "どういたしまして"),
    ("ｱﾘｶﾞﾄｳ", "どういたしまして"),  # half-width katakana, as some phones type it
    ("ありがとう、ところで", None),  # not only courtesy: the usual offer
    ("こんにちは", "こんにちは。かかりつけ医機能報告のサポートボットです"),
    ("お世話になっております。", "お世話になっております。かかりつけ医機能報告"),
    ("よろしくお願いいたします", "よろしくお願いいたします。かかりつけ医機能報告"),
    ("了解です👍", "承知しました"),
    ("さようなら", "ご利用ありがとうございました"),
])
async def test_small_talk_gets_a_reply_in_kind_and_no_hand_off(
        ctx: Context, text: str, expected: str | None) -> None:
    [reply] = await dispatch(said(text), ctx)
    if expected is None:
        assert "見つかりませんでした" in reply.text  # not small talk: the usual offer
        return
    assert reply.text.startswith(expected)
    assert "見つかりませんでした" not in reply.text and not reply.buttons
    # Nothing to hand on later: a 「担当者に聞く」 after thanks asks for the question.
    [ask] = await dispatch(said("担当者に聞く"), ctx)
    assert "ご質問を入力" in ask.text
    assert await escalated(ctx) == []


@pytest.mark.parametrize("text", [
    "報告期間を教えてください。よろしくお願いします",
    "こんにちは。歯医者も報告が必要ですか",
    "はいしゃも報告するの",
    "ありがとう、ところで締め切りはいつ？",
])
async def test_a_question_wrapped_in_courtesy_is_still_a_question(
        ctx: Context, text: str) -> None:
    [reply] = await dispatch(said(text), ctx)
    async with ctx.session() as session:
        [turn] = (await session.exec(select(ConversationLog))).all()
    assert turn.action in ("answer", "suggest", "escalate")
    assert not reply.text.startswith(("どういたしまして", "こんにちは", "承知しました"))


async def test_typed_yes_after_the_offer_sends_the_question_and_no_declines(
        ctx: Context) -> None:
    [offer] = await dispatch(said("今日の天気は"), ctx)
    assert "お送りしましょうか" in offer.text
    [receipt] = await dispatch(said("はい、お願いします"), ctx)
    assert "受付番号" in receipt.text
    assert await escalated(ctx) == ["今日の天気は"]
    [again] = await dispatch(said("はい"), ctx)  # the offer was taken: nothing pending now
    assert again.text.startswith("承知しました")

    await dispatch(said("明日の天気は", user="s2"), ctx)
    [declined] = await dispatch(said("大丈夫です", user="s2"), ctx)
    assert declined.text.startswith("承知しました")
    assert await escalated(ctx) == ["今日の天気は"]


async def test_a_late_yes_is_not_read_as_taking_an_old_offer(ctx: Context) -> None:
    await dispatch(said("今日の天気は"), ctx)
    later = replace(ctx, clock=lambda: NOW + timedelta(hours=2))
    [reply] = await dispatch(said("はい"), later)
    assert reply.text.startswith("承知しました")
    assert await escalated(ctx) == []


async def feedback_of(ctx: Context, text: str) -> int | None:
    async with ctx.session() as session:
        turn = (await session.exec(select(ConversationLog).where(
            ConversationLog.inbound_text == text))).one()
    return turn.feedback


async def test_typed_wrong_after_an_answer_is_a_thumbs_down_that_offers_staff(
        ctx: Context) -> None:
    [answer] = await dispatch(said("紙で報告できますか"), ctx)
    assert answer.meta["action"] == "answer"
    [sorry] = await dispatch(said("いえ、違います"), ctx)
    assert sorry.text.startswith("ご期待に沿えず申し訳ありません")
    assert "esc:ask" in [b.payload for b in sorry.buttons]
    assert await feedback_of(ctx, "紙で報告できますか") == -1
    [receipt] = await dispatch(said("はい"), ctx)  # the offer just made
    assert "受付番号" in receipt.text
    assert await escalated(ctx) == ["紙で報告できますか"]


async def test_wrong_with_no_answer_before_asks_again_and_sends_nothing(ctx: Context) -> None:
    [reply] = await dispatch(said("違います"), ctx)
    assert "もう一度" in reply.text and not reply.buttons
    assert await escalated(ctx) == []


async def test_thumbs_down_offers_staff_with_a_button(ctx: Context) -> None:
    [answer] = await dispatch(said("紙で報告できますか"), ctx)
    down = next(b for b in answer.buttons if b.payload.startswith("fb:down"))
    [sorry] = await dispatch(Inbound("demo", "s1", text=down.label, payload=down.payload,
                                     tenant="26"), ctx)
    ask = next(b for b in sorry.buttons if b.payload == "esc:ask")
    await dispatch(Inbound("demo", "s1", text=ask.label, payload=ask.payload, tenant="26"), ctx)
    assert await feedback_of(ctx, "紙で報告できますか") == -1
    assert await escalated(ctx) == ["紙で報告できますか"]
