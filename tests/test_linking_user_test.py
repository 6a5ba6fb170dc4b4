"""User test ut10, items 1 and 11: a typed answer to the unlink confirmation, and a used code.

「はい」 to 「連携を解除しますか」 had got 「承知しました」 and left the chat linked (a clerk
leaving the job believed her clinic's status was gone from the chat); re-sending a code
already used had been a wrong code that counted toward the lockout.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
from sqlmodel import select

from bot.demo import DEMO_CODE, DEMO_USER, demo_link_hint
from db.models import ChatAccount, LinkAttempt
from handlers.context import Context
from handlers.dispatch import dispatch
from handlers.linking import LAST_TRY, LOCKED
from handlers.messages import Inbound, Reply
from tests.conftest import DEMO_PREF, NOW
from tests.test_linking_status import code_for, load_samples, said

SAKURA = "さくら内科クリニック"  # 2610001 in the samples


def tapped(label: str, payload: str, user: str = "clerk-1") -> Inbound:
    return Inbound("demo", user, text=label, payload=payload, tenant="26")


async def linked_and_asked(ctx: Context) -> Reply:
    """clerk-1 links to さくら内科 and asks to unlink: the confirmation."""
    await load_samples(ctx)
    await dispatch(said(f"連携 {await code_for(ctx, '2610001')}"), ctx)
    [ask] = await dispatch(said("連携解除"), ctx)
    assert [b.payload for b in ask.buttons] == ["link:unlink", "link:keep"]
    return ask


async def shows_status(ctx: Context, user: str = "clerk-1") -> bool:
    [reply] = await dispatch(said("報告状況", user=user), ctx)
    return reply.meta["action"] == "status" and SAKURA in reply.text


async def strikes(ctx: Context) -> int:
    async with ctx.session() as session:
        return len((await session.exec(select(LinkAttempt))).all())


@pytest.mark.parametrize("yes", ["はい", "ハイ！", "お願いします", "はい、お願いします",
                                 "解除してください", "連携を解除する", "OK", "👍"])
async def test_a_typed_yes_to_the_unlink_confirmation_unlinks(ctx: Context, yes: str) -> None:
    await linked_and_asked(ctx)
    [done] = await dispatch(said(yes), ctx)
    assert f"{SAKURA} 様との連携を解除しました" in done.text and "承知しました" not in done.text
    assert not await shows_status(ctx)
    async with ctx.session() as session:
        account = (await session.exec(select(ChatAccount))).one()
    assert account.institution_id is None


@pytest.mark.parametrize("no", ["いいえ", "やめる", "やめておきます", "キャンセル",
                                "解除しないでください"])
async def test_a_typed_no_keeps_the_link_and_says_so(ctx: Context, no: str) -> None:
    await linked_and_asked(ctx)
    [kept] = await dispatch(said(no), ctx)
    assert kept.text.startswith("連携は解除していません")
    assert f"引き続き {SAKURA} 様と連携しています" in kept.text
    assert "操作を取り消しました" not in kept.text  # not the cancel command's word
    assert await shows_status(ctx)


@pytest.mark.parametrize("unclear", ["わかりました", "大丈夫です", "結構です", "はい、やめます"])
async def test_an_unclear_reply_unlinks_nothing_and_asks_again(ctx: Context,
                                                               unclear: str) -> None:
    """「大丈夫です」 may mean either; never 「承知しました」, which sounds like it is done."""
    await linked_and_asked(ctx)
    [again] = await dispatch(said(unclear), ctx)
    assert again.text.startswith("連携はまだ解除していません") and SAKURA in again.text
    assert [b.payload for b in again.buttons] == ["link:unlink", "link:keep"]
    assert await shows_status(ctx)
    await dispatch(said("連携解除"), ctx)  # (the status card came in between)
    await dispatch(said(unclear), ctx)
    [done] = await dispatch(said("はい"), ctx)  # the question asked again is answered
    assert "連携を解除しました" in done.text and not await shows_status(ctx)


async def test_a_yes_long_after_or_without_the_confirmation_does_not_unlink(
        ctx: Context) -> None:
    await load_samples(ctx)
    await dispatch(said(f"連携 {await code_for(ctx, '2610001')}"), ctx)
    for text in ("はい", "解除して", "お願いします"):  # no confirmation before
        [reply] = await dispatch(said(text), ctx)
        assert "解除しました" not in reply.text, text
    assert await shows_status(ctx)
    await dispatch(said("連携解除"), ctx)
    later = replace(ctx, clock=lambda: NOW + timedelta(minutes=16))  # past the reply window
    [late] = await dispatch(said("はい"), later)
    assert "解除しました" not in late.text and await shows_status(later)
    await dispatch(said("連携解除"), ctx)
    await dispatch(said("報告期間はいつまで"), ctx)  # the question is no longer the last
    [after] = await dispatch(said("はい"), ctx)
    assert "解除しました" not in after.text and await shows_status(ctx)


async def test_a_question_typed_at_the_confirmation_is_answered_as_usual(ctx: Context) -> None:
    await linked_and_asked(ctx)
    assert await shows_status(ctx)  # 報告状況 typed there: the card, and still linked
    await dispatch(said("連携解除"), ctx)
    [answer] = await dispatch(said("報告期間はいつまでですか"), ctx)
    assert answer.meta["action"] == "answer" and "解除" not in answer.text


async def test_re_sending_the_own_code_says_already_linked_and_never_locks(
        ctx: Context) -> None:
    await load_samples(ctx)
    code = await code_for(ctx, "2610001")
    await dispatch(said(f"連携 {code}"), ctx)
    for text in [f"連携 {code}", code, f"連携{code.replace('-', '')}", f"連携 {code.lower()}",
                 f"連携 {code}", f"連携 {code}", f"連携 {code}"]:
        [reply] = await dispatch(said(text), ctx)
        assert f"すでに {SAKURA} 様と連携済み" in reply.text, text
        assert "確認できませんでした" not in reply.text and LAST_TRY not in reply.text
    assert await strikes(ctx) == 0 and await shows_status(ctx)
    linked, _welcome = await dispatch(said(f"/start {code}"), ctx)  # the letter's QR again
    assert "連携済み" in linked.text


async def test_a_code_used_by_another_account_is_said_to_be_used_naming_no_one(
        ctx: Context) -> None:
    await load_samples(ctx)
    code = await code_for(ctx, "2610001")
    await dispatch(said(f"連携 {code}", user="a"), ctx)
    for _ in range(6):  # more than the lockout allows, were they failures
        [used] = await dispatch(said(f"連携 {code}", user="b"), ctx)
        assert "すでに使用済み" in used.text and "新しい連携コード" in used.text
        assert "都道府県の担当窓口" in used.text
        assert "さくら" not in used.text and "2610001" not in used.text and "完了" not in used.text
    assert not await shows_status(ctx, user="b") and await strikes(ctx) == 0
    # Linked elsewhere, the chat is told it still is: that names its own link only.
    await dispatch(said(f"連携 {await code_for(ctx, '2610002')}", user="c"), ctx)
    [other] = await dispatch(said(f"連携 {code}", user="c"), ctx)
    assert "すでに使用済み" in other.text and "引き続き みなみ総合病院 様と連携" in other.text
    assert "さくら" not in other.text and "連携済みです" not in other.text
    [fresh] = await dispatch(said(f"連携 {await code_for(ctx, '2610001')}", user="b"), ctx)
    assert "完了" in fresh.text  # a new code from the prefecture links as ever


async def test_the_own_code_after_unlinking_is_used_and_links_no_more(ctx: Context) -> None:
    await load_samples(ctx)
    code = await code_for(ctx, "2610001")
    await dispatch(said(f"連携 {code}"), ctx)
    await dispatch(tapped("連携を解除する", "link:unlink"), ctx)
    [used] = await dispatch(said(f"連携 {code}"), ctx)
    assert "すでに使用済み" in used.text and "連携を解除した後" in used.text
    assert SAKURA not in used.text and "連携済みです" not in used.text
    assert not await shows_status(ctx) and await strikes(ctx) == 0


async def test_a_wrong_code_still_strikes_and_locks_as_before(ctx: Context) -> None:
    await load_samples(ctx)
    code = await code_for(ctx, "2610001")
    await dispatch(said(f"連携 {code}"), ctx)
    replies = [(await dispatch(said("連携 ABCDE-FGHJK"), ctx))[0] for _ in range(4)]
    assert all("確認できませんでした" in r.text for r in replies)
    assert [LAST_TRY in r.text for r in replies] == [False, False, False, True]
    [own] = await dispatch(said(f"連携 {code}"), ctx)  # neither a strike nor a reset
    assert "連携済み" in own.text and await strikes(ctx) == 4
    [locked] = await dispatch(said("連携 ABCDE-FGHJK"), ctx)
    assert locked.text == LOCKED
    [still] = await dispatch(said(f"連携 {code}"), ctx)  # locked: no answer about any code
    assert still.text == LOCKED


async def test_the_demo_code_is_single_use_within_a_run_and_renewed_by_the_next(
        ctx: Context) -> None:
    """bot.demo resets TRYME-23456 at each start: within one run it is a real one-time code
    (after unlinking it is used, no strike), and the next run lets it link again."""
    async with ctx.session() as session:
        assert await demo_link_hint(session, DEMO_PREF, NOW, None)
    demo = Inbound("demo", DEMO_USER, text=f"連携 {DEMO_CODE}", tenant=DEMO_PREF)
    assert "完了" in (await dispatch(demo, ctx))[0].text
    [ask] = await dispatch(replace(demo, text="連携解除"), ctx)
    assert "解除しますか" in ask.text
    [done] = await dispatch(replace(demo, text="はい"), ctx)
    assert "連携を解除しました" in done.text
    [used] = await dispatch(demo, ctx)
    assert "すでに使用済み" in used.text and await strikes(ctx) == 0
    async with ctx.session() as session:  # the next `main.py demo`
        await demo_link_hint(session, DEMO_PREF, NOW, None)
    [again] = await dispatch(demo, ctx)
    assert "デモ在宅診療所 様との連携が完了" in again.text
