"""Conversations through the channel-neutral dispatcher, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import timedelta

import pytest
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from db.models import ChatAccount, ConversationLog, Escalation, receipt_of
from db.turns import TurnStore
from handlers import qa
from handlers.context import Context
from handlers.dispatch import dispatch
from handlers.messages import Inbound, Reply
from handlers.router import Route, Router, always
from handlers.texts import OFFER_QUESTION
from tests.conftest import NOW


def said(text: str = "", payload: str | None = None, user: str = "u1") -> Inbound:
    return Inbound("demo", user, text=text, payload=payload, tenant="26")


ROW = dict(channel="demo", external_user_id="u1", prefecture_code="26", inbound_text="",
           payload=None, reply_text="", action=None, entry_id=None, score=None, created_at=NOW)


async def logs(ctx: Context) -> list[ConversationLog]:
    async with ctx.session() as session:
        return list(await session.exec(select(ConversationLog).order_by(ConversationLog.id)))


async def test_question_is_answered_and_logged_with_decision(ctx: Context) -> None:
    [reply] = await dispatch(said("歯科診療所は報告しますか"), ctx)
    assert "歯科" in reply.text and "対象外" in reply.text
    assert any(b.payload.startswith("fb:up:") for b in reply.buttons)
    [row] = await logs(ctx)
    assert row.inbound_text == "歯科診療所は報告しますか"
    assert row.action == "answer" and row.entry_id == "scope-dental-exempt"
    assert row.score is not None and row.score > 0.5
    # Unlinked, its prefecture is not known yet (the default is only the bot's): the row
    # waits with none until the chat says or links one.
    assert row.prefecture_code is None and row.reply_text == reply.text


async def test_gmis_question_gives_call_center_contact(ctx: Context) -> None:
    [reply] = await dispatch(said("G-MISにログインできません"), ctx)
    assert reply.text.count("050-3355-8230") == 1  # the configured contact, once
    assert not any(b.payload == "esc:ask" for b in reply.buttons)


async def test_an_answer_that_points_to_the_gmis_desk_carries_the_configured_contact(
        ctx: Context) -> None:
    """The 引き戻し answer wrote the G-MIS number itself, so a changed number would have
    stayed wrong there; it now points below, where the configured contact is added."""
    contact = "G-MIS事務局（テスト）: 03-0000-0000"
    ctx = replace(ctx, config=replace(ctx.config, gmis_contact=contact))
    [reply] = await dispatch(said("報告を提出した後で間違いに気づきました。修正できますか？"), ctx)
    assert reply.meta["entry_id"] == "confirmation-pullback"
    assert "連絡先は下に記載しています" in reply.text and reply.text.count(contact) == 1
    assert "050-3355-8230" not in reply.text


async def test_a_call_center_hand_off_offers_the_entries_close_to_the_question(
        ctx: Context) -> None:
    """A new clinic waiting for its account: the call center issues nothing faster,
    but how long an account takes and whether it must report are one tap away."""
    [reply] = await dispatch(said("開業したてでG-MISアカウント申請中です。報告に間に合うか"
                                  "不安です"), ctx)
    assert reply.meta["action"] == "escalate" and "050-3355-8230" in reply.text
    shown = [b.payload for b in reply.buttons if b.payload.startswith("qa:show:")]
    assert 0 < len(shown) <= 2  # (a message this long also gets the offer of staff)
    assert {"qa:show:scope-new-opening", "qa:show:gmis-new-account"} & set(shown)
    # Asked whether it must report, the new-opening entry leads, not the account.
    [told] = await dispatch(said("昨年の10月に内科クリニックを新規開業しました。まだG-MISの"
                                 "アカウントも持っていません。今年の報告は必要なのでしょうか。",
                                 user="u2"), ctx)
    lead = told.meta["entry_id"] or told.buttons[0].payload.removeprefix("qa:show:")
    assert lead == "scope-new-opening"


async def test_a_long_message_about_gmis_and_more_may_go_to_staff_too(ctx: Context) -> None:
    """An e-mail that asks about the G-MIS login *and* the 制度 gets the call center for the
    one and the offer of staff for the rest, not the call center alone."""
    mail = ("お世話になっております。当院は今年初めて報告するのですが、G-MISのログインIDが"
            "わかりません。また、うちのような無床診療所も報告の対象になるのか、いつまでに"
            "何をすればよいかも教えてください。")
    login, scope, offer = await dispatch(said(mail), ctx)
    assert login.meta["entry_id"] == "gmis-forgot-id" and "050-3355-8230" in login.text
    assert scope.meta["entry_id"] == "scope-beds"
    assert "ほかにお答えできていない点" in offer.text  # いつまでに何を: a person may answer
    [receipt] = await dispatch(said("はい"), ctx)
    assert "受付番号" in receipt.text
    [esc] = await escalations(ctx)
    assert esc.question == mail


async def test_suggestion_tap_answers_that_entry(ctx: Context) -> None:
    [reply] = await dispatch(said("報告"), ctx)
    shown = [b for b in reply.buttons if b.payload.startswith("qa:show:")]
    assert shown, reply
    entry_id = shown[0].payload.removeprefix("qa:show:")
    [answer] = await dispatch(said(shown[0].label, shown[0].payload), ctx)
    assert answer.text == ctx.retriever.by_id[entry_id].answer


async def test_a_button_sent_before_two_entries_were_merged_still_answers(ctx: Context) -> None:
    """reminder-fine became part of reminder-consequence-no-report; old chats keep its button."""
    merged = ctx.retriever.by_id["reminder-consequence-no-report"]
    [answer] = await dispatch(said("罰金はいくら？", "qa:show:reminder-fine"), ctx)
    assert answer.text == merged.answer
    assert "fb:up:reminder-consequence-no-report" in [b.payload for b in answer.buttons]


async def test_typed_more_shows_the_detail_of_the_last_answer(ctx: Context) -> None:
    [answer] = await dispatch(said("医療機能情報提供制度とはどういう関係ですか"), ctx)
    entry = ctx.retriever.by_id["overview-vs-iryokino"]
    assert answer.text == entry.answer and entry.detail
    [more] = await dispatch(said("もっと詳しく教えてください"), ctx)
    assert more.text == entry.detail
    [again] = await dispatch(said("詳しく"), ctx)  # nothing more to show: say so, offer staff
    assert "すべて" in again.text and entry.question in again.text
    assert any(b.payload == "esc:ask" for b in again.buttons)


async def test_typed_more_after_two_answers_asks_which(ctx: Context) -> None:
    """「詳しく」 typed after a message answered in two parts had expanded the first only."""
    answers = await dispatch(said("1号機能の要件は？あと17の診療領域って何？"), ctx)
    ids = [r.meta["entry_id"] for r in answers]
    assert ids == ["func1-requirements", "func1-17-areas"]
    [which] = await dispatch(said("詳しく"), ctx)
    assert [b.payload for b in which.buttons] == [f"qa:detail:{i}" for i in ids]
    [second] = await dispatch(said(which.buttons[1].label, which.buttons[1].payload), ctx)
    assert second.text == ctx.retriever.by_id["func1-17-areas"].detail
    # Of two answers only one with more to show: that one is shown.
    await dispatch(said("報告期間いつ？あと17の診療領域って何？", user="u2"), ctx)
    [more] = await dispatch(said("詳しく", user="u2"), ctx)
    assert more.text == ctx.retriever.by_id["func1-17-areas"].detail


async def test_typed_more_without_detail_offers_staff_with_the_question(ctx: Context) -> None:
    [answer] = await dispatch(said("歯科診療所は報告しますか"), ctx)
    assert not ctx.retriever.by_id["scope-dental-exempt"].detail
    [more] = await dispatch(said("詳しく"), ctx)
    assert "すべて" in more.text and "申し訳ありません" not in more.text
    ask = next(b for b in more.buttons if b.payload == "esc:ask")
    await dispatch(said(ask.label, ask.payload), ctx)
    async with ctx.session() as session:
        [esc] = (await session.exec(select(Escalation))).all()
    assert esc.question == "歯科診療所は報告しますか"


async def test_typed_more_after_a_gmis_answer_points_to_the_call_center(ctx: Context) -> None:
    await dispatch(said("G-MISのパスワードを忘れました"), ctx)
    [more] = await dispatch(said("詳しく教えていただけますか"), ctx)
    assert "050-3355-8230" in more.text
    assert not any(b.payload == "esc:ask" for b in more.buttons)


async def test_typed_more_is_about_the_latest_question_only(ctx: Context) -> None:
    await dispatch(said("歯科診療所は報告しますか"), ctx)
    await dispatch(said("今日の天気は"), ctx)  # escalation offered, not an answer
    [more] = await dispatch(said("詳しく"), ctx)
    assert "歯科" not in more.text and "ご質問の内容" in more.text


async def test_an_entry_for_prefecture_staff_is_no_runner_up_for_a_clinic(ctx: Context) -> None:
    """「紙の調査票はどこでもらえる？」 is a clinic's question; 「都道府県の担当です。回収した
    紙調査票は、G-MISでどのように代理入力すればよいですか？」 beside it only puzzles the
    clerk. As the best match an entry for staff is still offered."""
    question = "紙の調査票はどこでもらえる？"
    ranked = [c.entry_id for c in ctx.retriever.decide(question).candidates]
    assert "method-proxy-input-gmis-steps" in ranked[1:]  # the retriever still finds it
    [offer] = await dispatch(said(question), ctx)
    shown = [b.payload for b in offer.buttons]
    assert offer.meta["action"] == "suggest" and shown[0] == f"qa:show:{ranked[0]}"
    assert "qa:show:method-proxy-input-gmis-steps" not in shown and shown[-1] == "esc:ask"


async def test_typed_more_under_suggestions_points_to_them(ctx: Context) -> None:
    [offer] = await dispatch(said("紙の場合は？"), ctx)
    assert offer.meta["action"] == "suggest"
    [more] = await dispatch(said("詳しく"), ctx)
    assert "上の選択肢" in more.text and "ご質問の内容" not in more.text


async def test_typed_more_before_any_answer_asks_for_the_question(ctx: Context) -> None:
    [reply] = await dispatch(said("詳しく"), ctx)
    assert "ご質問の内容" in reply.text
    [question] = await dispatch(said("詳しく知りたいのは院内掲示の様式です"), ctx)
    assert question.text == ctx.retriever.by_id["posting-template"].answer


async def test_out_of_scope_offers_staff_and_escalation_gets_receipt(ctx: Context) -> None:
    [offer] = await dispatch(said("今日の天気は"), ctx)
    assert "担当者" in offer.text
    ask = next(b for b in offer.buttons if b.payload == "esc:ask")
    [receipt] = await dispatch(said(ask.label, ask.payload), ctx)
    async with ctx.session() as session:
        [esc] = (await session.exec(select(Escalation))).all()
    assert esc.question == "今日の天気は" and esc.prefecture_code == "26"
    assert esc.receipt in receipt.text and esc.status == "open"
    assert esc.context["history"][0]["q"] == "今日の天気は"


async def test_a_question_about_another_system_says_where_it_belongs(ctx: Context) -> None:
    """A マイナ保険証 card reader or a 診療報酬 point is not this report's desk either; the
    clerk hears that first, and may still send it."""
    [reply] = await dispatch(said("マイナ保険証のカードリーダーが動かないんですが"), ctx)
    assert reply.text.startswith("ご質問は「マイナ保険証」についてのようです")
    assert "その制度の担当窓口" in reply.text and "見つかりませんでした" not in reply.text
    [reply] = await dispatch(said("機能強化加算の点数っていくつでしたっけ"), ctx)
    assert "「機能強化加算」" in reply.text
    [mamis] = await dispatch(said("mamisの受講履歴ってどこで見るの", user="u3"), ctx)
    assert "「MAMIS」" in mamis.text  # named as words.yaml writes it, whatever the typing
    [receipt] = await dispatch(said("はい"), ctx)  # the offer still stands
    assert "受付番号" in receipt.text
    ours_q = "機能強化加算を取っていれば、かかりつけ医機能報告はしなくていい？"
    [ours] = await dispatch(said(ours_q, user="u2"), ctx)
    assert "その制度の担当窓口" not in ours.text  # about this report: not sent away


async def test_ask_staff_without_question_asks_for_it_then_escalates(ctx: Context) -> None:
    [prompt] = await dispatch(said("担当者に聞く"), ctx)
    assert "ご質問を入力" in prompt.text
    [receipt] = await dispatch(said("うちの分院の扱いを教えてください"), ctx)
    assert "受付番号" in receipt.text
    async with ctx.session() as session:
        [esc] = (await session.exec(select(Escalation))).all()
    assert esc.question == "うちの分院の扱いを教えてください"
    [after] = await dispatch(said("紙で報告できますか"), ctx)
    assert "受付番号" not in after.text  # the flow ended; back to Q&A


async def escalations(ctx: Context) -> list[Escalation]:
    async with ctx.session() as session:
        return list((await session.exec(select(Escalation).order_by(col(Escalation.id)))).all())


async def test_a_question_is_handed_to_staff_once(ctx: Context) -> None:
    """A second 「担当者に聞く」 (a double tap, or /ask again) asks for the new question
    instead of sending the one staff already have."""
    [offer] = await dispatch(said("今日の天気は"), ctx)
    ask = next(b for b in offer.buttons if b.payload == "esc:ask")
    [receipt] = await dispatch(said(ask.label, ask.payload), ctx)
    [again] = await dispatch(said(ask.label, ask.payload), ctx)
    assert "受付番号" in receipt.text and "ご質問を入力" in again.text
    await dispatch(said("キャンセル"), ctx)
    await dispatch(said("明日の天気は"), ctx)
    [typed] = await dispatch(said("/ask"), ctx)
    [typed_again] = await dispatch(said("/ask"), ctx)
    assert "受付番号" in typed.text and "ご質問を入力" in typed_again.text
    assert [e.question for e in await escalations(ctx)] == ["今日の天気は", "明日の天気は"]


async def test_concurrent_messages_are_all_logged_and_make_one_account(ctx: Context) -> None:
    """Rows of messages finishing together share a commit; each is still written."""
    texts = [f"紙で報告できますか {i}" for i in range(12)]
    await asyncio.gather(*(dispatch(said(t, user="new"), ctx) for t in texts),
                         *(dispatch(said(t, user=f"u{i}"), ctx) for i, t in enumerate(texts)))
    rows = await logs(ctx)
    assert sorted(r.inbound_text for r in rows) == sorted(texts * 2)
    async with ctx.session() as session:
        accounts = (await session.exec(select(ChatAccount))).all()
    assert len(accounts) == 13 and sum(a.external_user_id == "new" for a in accounts) == 1


async def test_a_bad_log_row_does_not_cost_the_others_theirs(ctx: Context) -> None:
    log = TurnStore()
    good = [dict(ROW, inbound_text=f"q{i}") for i in range(6)]
    bad = dict(ROW, channel=None)  # NOT NULL: this insert fails
    results = await asyncio.gather(*(log.write(ctx.begin, row) for row in [*good, bad, *good]),
                                   return_exceptions=True)
    assert [isinstance(r, IntegrityError) for r in results] == [False] * 6 + [True] + [False] * 6
    assert len(await logs(ctx)) == 12


async def test_cancel_leaves_the_staff_question_flow(ctx: Context) -> None:
    await dispatch(said("担当者に聞く"), ctx)
    [done] = await dispatch(said("キャンセル"), ctx)
    assert "取り消しました" in done.text
    [reply] = await dispatch(said("紙で報告できますか"), ctx)
    assert "受付番号" not in reply.text


async def test_feedback_is_recorded_on_the_answer(ctx: Context) -> None:
    [reply] = await dispatch(said("紙で報告できますか"), ctx)
    down = next(b for b in reply.buttons if b.payload.startswith("fb:down:"))
    [thanks] = await dispatch(said(down.label, down.payload), ctx)
    assert "お送りしましょうか" in thanks.text
    assert any(b.payload.startswith("esc:ask") for b in thanks.buttons)
    rows = await logs(ctx)
    assert rows[0].feedback == -1
    # The entries next in line are offered too (after 👎 the only way on was staff), never
    # the one voted down.
    nearby = [b.payload for b in thanks.buttons if b.payload.startswith("qa:show:")]
    assert nearby and down.payload.split(":")[-1] not in [p.split(":")[-1] for p in nearby]


async def test_empty_and_hostile_messages_get_polite_replies(ctx: Context) -> None:
    for text in ["", "   ", "\x00\x1b", "😀😀", "'; DROP TABLE chataccount; --", "あ" * 10000,
                 "ｶｶﾘﾂｹｲｷﾉｳﾎｳｺｸ"]:
        replies = await dispatch(said(text), ctx)
        assert replies and all(r.text for r in replies), text
        assert all("Traceback" not in r.text and "Error" not in r.text for r in replies)
    rows = await logs(ctx)
    assert len(rows) == 7
    assert max(len(r.inbound_text) for r in rows) <= 4000
    [number] = await dispatch(said("２"), ctx)  # a button number typed with no buttons shown
    assert "選択肢が表示されているとき" in number.text and "読み取れません" not in number.text


async def test_handler_failure_becomes_an_apology_and_is_logged(ctx: Context) -> None:
    async def broken(_msg: Inbound, _ctx: Context, _found: dict[str, str]) -> list[Reply]:
        raise RuntimeError("secret internal detail")

    router = Router([Route("boom", always, broken)])
    [reply] = await dispatch(said("報告期間は"), ctx, router)
    assert "申し訳ありません" in reply.text and "secret" not in reply.text
    [row] = await logs(ctx)
    assert row.action == "error"


async def test_start_explains_what_the_bot_does(ctx: Context) -> None:
    [reply] = await dispatch(said("/start"), ctx)
    assert "報告状況" in reply.text and "担当者に聞く" in reply.text


async def test_a_short_follow_up_is_read_with_the_question_before(ctx: Context) -> None:
    """「じゃあ病院は？」 alone could be about anything; after the 歯科 answer it asks who
    must report. The reading with the question before is offered first, never answered."""
    [alone] = await dispatch(said("じゃあ病院は？", user="fresh"), ctx)
    assert alone.meta["action"] != "answer"
    assert alone.buttons[0].payload != "qa:show:scope-who-must-report"
    [dental] = await dispatch(said("歯医者も報告が必要？"), ctx)
    assert dental.meta["entry_id"] == "scope-dental-exempt"
    [follow] = await dispatch(said("じゃあ病院は？"), ctx)
    assert follow.meta["action"] == "suggest"
    shown = [b.payload for b in follow.buttons]
    assert shown[0] == "qa:show:scope-who-must-report"
    assert "qa:show:scope-dental-exempt" not in shown  # already given
    assert shown[-1] == "esc:ask"


async def test_a_short_question_in_the_knowledge_bases_words_leans_on_the_one_before(
        ctx: Context) -> None:
    """「往診だけでもかくの？」 has no それ, but every word of it is one the entries use: after
    the question about home-care items it asks about 往診 only, which alone was handed to
    staff. The question before is read as it was answered, on its own, even though it too
    ends in 「は？」. Something no entry mentions (天気) stays a question of its own."""
    [alone] = await dispatch(said("往診だけでもかくの？", user="fresh"), ctx)
    assert alone.meta["action"] == "escalate"
    await dispatch(said("しょめいいる？"), ctx)
    [items] = await dispatch(said("訪問診療の報告項目は？"), ctx)
    assert items.meta["entry_id"] == "func2-homecare-items"
    [follow] = await dispatch(said("往診だけでもかくの？"), ctx)
    assert follow.meta["action"] == "suggest"
    assert follow.buttons[0].payload == "qa:show:func2-homecare-oushin-only"
    [weather] = await dispatch(said("今日の天気は？"), ctx)
    assert weather.meta["action"] == "escalate"
    assert not any(b.payload.startswith("qa:show:") for b in weather.buttons)


async def test_whom_to_ask_right_after_an_answer_names_that_answers_desk(ctx: Context) -> None:
    """「県にきけばいい？」 after the G-MIS login answer once got an officer's entry; alone
    it matches the prefecture's desk, which is the wrong one for a login."""
    await dispatch(said("Gmisのろぐいんできない"), ctx)
    for ask in ("県にきけばいい？", "どこに電話すればいい", "じゃあ県に電話すればいい？"):
        [desk] = await dispatch(said(ask), ctx)
        assert desk.meta["entry_id"] == "contact-gmis-vs-prefecture", ask
        assert "050-3355-8230" in desk.text
    await dispatch(said("報告期間はいつ？", user="u2"), ctx)
    [desk] = await dispatch(said("どこに聞けばいい？", user="u2"), ctx)
    assert desk.meta["entry_id"] == "contact-system-questions"
    # A question with its own matter is not a whom-to-ask about the answer before.
    await dispatch(said("G-MISのパスワードを忘れた", user="u3"), ctx)
    for own in ("報告期限を過ぎたらどこに電話すればいい", "連絡先を変更したい"):
        [reply] = await dispatch(said(own, user="u3"), ctx)
        assert reply.meta["entry_id"] != "contact-gmis-vs-prefecture", own
    await dispatch(said("G-MISのパスワードを忘れた", user="u4"), ctx)
    await dispatch(said("詳しく", user="u4"), ctx)  # still about the G-MIS answer
    [desk] = await dispatch(said("どこに電話すればいい", user="u4"), ctx)
    assert desk.meta["entry_id"] == "contact-gmis-vs-prefecture"


async def test_a_bare_how_long_after_an_answer_is_not_answered_about_something_else(
        ctx: Context) -> None:
    """「どれくらいかかりますか」 alone leads to the 代理申請 entry (1〜2週間), though it may
    as well ask how long the report takes (offered too); right after the answer about a
    missing reporting right (about a month) it asks about that, so the two are offered,
    that one first, and neither is stated as the answer."""
    [alone] = await dispatch(said("どれくらいかかりますか", user="fresh"), ctx)
    assert alone.meta["action"] == "suggest"
    assert [b.payload for b in alone.buttons][:2] == ["qa:show:method-proxy-account-application",
                                                      "qa:show:method-time-needed"]
    [first] = await dispatch(said("G-MISで報告を開始できませんと出ます"), ctx)
    assert first.meta["entry_id"] == "gmis-no-report-right"
    [follow] = await dispatch(said("どれくらいかかりますか"), ctx)
    assert follow.meta["action"] == "suggest"
    shown = [b.payload for b in follow.buttons]
    assert shown[0] == "qa:show:gmis-no-report-right"
    assert "qa:show:method-proxy-account-application" in shown and shown[-1] == "esc:ask"


async def test_each_question_of_a_short_message_is_answered(ctx: Context) -> None:
    """「報告期間いつ？あとIDわからない」 read as one question answered only the first."""
    period, login = await dispatch(said("報告期間いつ？あとIDわからない😭"), ctx)
    assert period.meta["entry_id"] == "schedule-reporting-period"
    assert login.meta["action"] == "answer" and "050-3355-8230" in login.text
    replies = await dispatch(said("しめきりすぎたらどうなる？ばっきんある？", user="u2"), ctx)
    assert [r.meta["action"] for r in replies] == ["answer", "answer"]
    assert len({r.meta["entry_id"] for r in replies}) == 2
    for text in ("報告期限はいつ？ありがとうございます",
                 "休院中の診療所は対象ですか？うちは3月に再開予定です"):
        assert len(await dispatch(said(text, user="u3"), ctx)) == 1, text  # courtesy, context


async def test_kana_typed_with_spaces_reaches_the_command_it_spells(ctx: Context) -> None:
    """An elderly 院長 types kana with spaces between words: 「たいしょうか かくにん」 got
    suggestions instead of the check, 「たんとうしゃに ききたい」 no person."""
    [check] = await dispatch(said("たいしょうか かくにん"), ctx)
    assert "医療機関の種類をお選びください" in check.text
    await dispatch(said("やめる"), ctx)
    [status] = await dispatch(said("ほうこく じょうきょう"), ctx)
    assert status.meta["action"].startswith("status")
    [staff] = await dispatch(said("たんとうしゃに ききたい"), ctx)
    assert "担当者にお送りするご質問" in staff.text
    # A question keeps its spaces for the knowledge base (and for staff, if sent).
    [asked] = await dispatch(said("しか いいん も ほうこく ひつよう？", user="u2"), ctx)
    assert not asked.meta["action"].startswith("status") and "医療機関の種類" not in asked.text


async def test_a_question_in_english_is_told_the_bot_answers_in_japanese(ctx: Context) -> None:
    [reply] = await dispatch(said("What is the deadline for the family doctor function report?"),
                             ctx)
    assert "in Japanese only" in reply.text and reply.text.endswith(OFFER_QUESTION)
    assert [b.payload for b in reply.buttons] == ["esc:ask", "esc:no"]
    # A G-MIS login question is still the call center's, in any language.
    [login] = await dispatch(said("cannot login to G-MIS", user="u2"), ctx)
    assert "050-3355-8230" in login.text and "in Japanese only" not in login.text


async def test_a_reason_after_the_question_does_not_hide_its_entry(ctx: Context) -> None:
    """「ホームページに掲載するだけでは不十分でしょうか。待合室が狭く…」: the reason had
    sunk the answer the question alone gets; it is offered (not stated: the reason may
    matter)."""
    alone = "当院のホームページに掲載するだけでは不十分でしょうか。"
    [plain] = await dispatch(said(alone), ctx)
    assert plain.meta["entry_id"] == "posting-website"
    [reply] = await dispatch(said(alone + "待合室が狭く、掲示スペースの確保が難しい状況で"
                                  "ございます。", user="u2"), ctx)
    assert reply.meta["action"] in ("suggest", "escalate")
    assert "qa:show:posting-website" in [b.payload for b in reply.buttons]
    # A question sentence that says little alone (「対象外ですよね？」) adds nothing: it had
    # pushed the 健診-only clinic's entry off the buttons for 歯科 and the generic ones.
    [kenshin] = await dispatch(said("健診専門のクリニックで外来診療はしてません。対象外ですよね？",
                                    user="u3"), ctx)
    shown = [b.payload for b in kenshin.buttons]
    assert "qa:show:scope-no-general-outpatient" in shown
    assert "qa:show:scope-dental-exempt" not in shown
    # Context that says next to nothing does not hold back the answer the question gets.
    [fine] = await dispatch(said("出さなかったら罰金とかあるの？うちの先生が気にしてて",
                                 user="u4"), ctx)
    assert fine.meta["entry_id"] == "reminder-consequence-no-report"


async def test_the_question_sentence_alone_keeps_the_learned_order(ctx: Context) -> None:
    """Joining what the question sentence alone finds must not re-sort the buttons by score:
    the learned scores put the 時間外 entry for what to tick first, though the 加算 entry,
    which shares more words, scores a little higher."""
    alone = "夜間は電話に出るだけなんだけど、それでも時間外対応やってるって書いていい？"
    [reply] = await dispatch(said("院長が一人でやってます。" + alone), ctx)
    shown = [b.payload for b in reply.buttons if b.payload.startswith("qa:show:")]
    assert shown[0] == "qa:show:func2-offhours-choices"
    assert "qa:show:func2-offhours-kasan" in shown


async def test_a_pasted_reminder_letter_is_answered_as_one(ctx: Context) -> None:
    """A 督促 letter pasted whole got only the G-MIS call center (its paragraph on accounts)."""
    letter = ("令和9年2月1日　医療機関管理者　様　京都府健康福祉部医療課長　かかりつけ医機能報告の"
              "提出について（督促）　日頃より本府の保健医療行政に御理解と御協力を賜り、厚く御礼"
              "申し上げます。さて、かかりつけ医機能報告につきましては、1月13日付けで依頼して"
              "おりましたが、現時点で貴院からの報告が確認できておりません。つきましては、下記"
              "により期限までに御報告くださいますようお願いいたします。記　1 報告期限　2月26日"
              "　2 報告方法　G-MISにより報告してください。G-MISのアカウントをお持ちでない場合は"
              "新規ユーザ登録申請を行ってください。")
    [reply] = await dispatch(said(letter), ctx)
    assert reply.meta["entry_id"] == "reminder-what-to-do" and "督促" in reply.text.split("\n")[0]


async def test_a_pasted_guidance_letter_says_what_to_do_not_offers_staff(ctx: Context) -> None:
    """A clerk pasting the prefecture's 案内 letter was offered to send it to staff as a
    question; another report's letter is still read as any question is."""
    letter = ("令和8年12月1日　医療機関の管理者　様　京都府健康福祉部医療課長　"
              "令和8年度かかりつけ医機能報告の実施について（依頼）　日頃より本府の保健医療"
              "行政に御理解と御協力を賜り、厚く御礼申し上げます。さて、病院及び診療所は、"
              "かかりつけ医機能を都道府県に報告することとされております。つきましては、"
              "下記のとおり御報告くださいますようお願いいたします。記　1 報告期間　令和9年"
              "1月5日から3月31日まで　2 報告方法　G-MISにより報告してください。")
    [reply] = await dispatch(said(letter), ctx)
    assert reply.meta["entry_id"] == "overview-clinic-duties"
    assert reply.text.startswith("お送りいただいた文書は、都道府県からのかかりつけ医機能報告の"
                                 "ご案内")
    other = (letter.replace("かかりつけ医機能報告", "病床機能報告")
             .replace("かかりつけ医機能を", "病床の機能を"))
    [reply] = await dispatch(said(other, user="u2"), ctx)
    assert not reply.text.startswith("お送りいただいた文書") and "「病床機能報告」" in reply.text


async def test_a_hand_off_shows_the_entries_just_short_of_sure(ctx: Context) -> None:
    """「歯医者もこれやんなきゃいけないの？」 scored just under a suggestion: the clerk was
    only offered a person, though the dental exemption was the best match. (It is offered
    now; a typo'd question about penalties is the one just short today.)"""
    [reply] = await dispatch(said("出さなかったら罰禁いくら？"), ctx)
    assert reply.meta["action"] == "escalate" and reply.text.endswith(OFFER_QUESTION)
    payloads = [b.payload for b in reply.buttons]
    assert payloads[0] == "esc:ask" and payloads[-1] == "esc:no"
    assert "qa:show:reminder-consequence-no-report" in payloads
    [far] = await dispatch(said("今日の天気は？", user="u2"), ctx)  # nothing near: no guesses
    assert [b.payload for b in far.buttons] == ["esc:ask", "esc:no"]
    [sent] = await dispatch(said("はい"), ctx)  # the offer still takes a typed yes
    assert "受付番号" in sent.text


async def test_a_numbered_list_inside_one_question_stays_one_question(ctx: Context) -> None:
    """「★の3項目は①院内掲示②一次診療③継続的な相談のことですか？」 got confident answers
    about 「一次診療」 and 「継続的な相談」 alone."""
    replies = await dispatch(said("★の3項目は①院内掲示②一次診療③継続的な相談のことですか？"), ctx)
    assert len(replies) == 1
    assert replies[0].meta["entry_id"] in (None, "func1-requirements")  # never 一次診療 alone
    offered = [b.payload for b in replies[0].buttons]
    assert replies[0].meta["entry_id"] or offered[0] == "qa:show:func1-requirements"


async def test_a_sentence_read_alone_does_not_answer_away_from_the_message(
        ctx: Context) -> None:
    """An officer's 「…公表すればよいでしょうか。様式の例はありますか。」 had its second
    sentence answered with the 患者説明 form; 「また公表方法は県のホームページ掲載でよいのでし
    ょうか」, with the clinic-website entry (a user test)."""
    replies = await dispatch(said("協議の場の結果はいつ頃、どのような形で公表すればよいでしょ"
                                  "うか。様式の例はありますか。"), ctx)
    assert "explanation-form" not in [r.meta["entry_id"] for r in replies]
    mail = ("報告内容の公表はいつ頃までに行う必要がありますか。また公表方法は県のホームページ"
            "掲載でよいのでしょうか。")
    replies = await dispatch(said(mail, user="u2"), ctx)
    answered = [r.meta["entry_id"] for r in replies if r.meta["action"] == "answer"]
    assert "posting-website" not in answered and "publication-where" in answered


async def test_numbered_questions_are_each_taken_up(ctx: Context) -> None:
    """「①…②…③…」 without question marks had been read as one question and dropped, and a
    G-MIS part sent the whole message to the call center."""
    replies = await dispatch(said("①締切はいつ ②病棟ごとに報告が必要？ ③紙でも出せる？"), ctx)
    # Each part answered, or (病棟ごと, just short of sure) offered first, after the answers.
    assert sorted(r.meta["entry_id"] or r.buttons[0].payload.removeprefix("qa:show:")
                  for r in replies) == [
        "method-paper-allowed", "schedule-reporting-period", "scope-hospital-many-departments"]
    mixed = await dispatch(said("至急です。①前任者が辞めてG-MISのパスワードがわからない"
                                "②紙でも出せる？", user="u2"), ctx)
    [paper] = [r for r in mixed if r.meta["entry_id"] == "method-paper-allowed"]
    [system] = [r for r in mixed if r is not paper]
    assert "G-MIS事務局" in system.text


async def test_a_list_numbered_with_spaces_is_each_taken_up(ctx: Context) -> None:
    """「1 しめきり 2 ぱすわーど忘れた」 got only the password answer: the deadline was lost.
    A number before a counter is a quantity, and those messages stay whole."""
    replies = await dispatch(said("1 しめきり 2 ぱすわーど忘れた"), ctx)
    assert [r.meta["entry_id"] for r in replies] == [
        "schedule-reporting-period", "gmis-forgot-password"]
    three = await dispatch(said("1 締切 2 紙でもいい？ 3 罰則", user="u2"), ctx)
    assert [r.meta["entry_id"] for r in three] == [
        "schedule-reporting-period", "method-paper-allowed", "reminder-consequence-no-report"]
    for user, whole in enumerate(("1 号機能と 2 号機能の違いは？",
                                  "1 人医師の診療所ですが 2 号機能も報告しますか",
                                  "2 か月前に開業しました。1 年目でも報告は必要ですか",
                                  "3 しめきり 4 ぱすわーど忘れた")):  # (not a run from 1)
        replies = await dispatch(said(whole, user=f"w{user}"), ctx)
        assert len(replies) == 1, whole


async def test_topics_named_in_a_row_are_each_answered(ctx: Context) -> None:
    """「締め切りとパスワードと紙の調査票について教えて」 had got only buttons for the paper
    form: the deadline and the password were lost. Each topic is taken up, in its order;
    a comparison (「…の違いを教えて」) stays one question."""
    replies = await dispatch(said("締め切りとパスワードと紙の調査票について教えて"), ctx)
    assert [r.text.split("」")[0] for r in replies] == [
        "「締め切り", "「パスワード", "「紙の調査票"]
    assert replies[0].meta["entry_id"] == "schedule-reporting-period"
    assert "G-MIS事務局" in replies[1].text and "050-3355-8230" in replies[1].text
    assert replies[2].meta["entry_id"] == "method-paper-allowed"
    [whole] = await dispatch(said("病院と診療所の違いを教えて", user="u2"), ctx)
    assert not whole.text.startswith("「病院」について")


@pytest.mark.parametrize("one", ["報告の対象となる病院と診療所について教えて",
                                 "歯科と医科を併設している場合について教えて",
                                 "1月1日時点で休院している病院と診療所の扱いを教えて",
                                 "病院と診療所の違いを教えて"])
def test_one_question_with_a_list_in_it_is_not_cut_into_topics(one: str) -> None:
    """A と inside one sentence (「…となる病院と診療所」) is no row of topics: cut, 歯科
    alone would get a bare 対象外 for a clinic that also does 医科."""
    assert qa._topics(one) == []


async def test_a_list_that_opens_the_message_is_taken_item_by_item(ctx: Context) -> None:
    """「1. 締め切りはいつ 2. パスワードを忘れた」 answered the password only, and
    「(1)締め切り (2)パスワード」 gave one mixed list of buttons (a user test). Items asking
    nothing themselves, they had read as one question."""
    for user, text in enumerate(("1. 締め切りはいつ 2. パスワードを忘れた",
                                 "(1)締め切り (2)パスワード")):
        replies = await dispatch(said(text, user=f"l{user}"), ctx)
        assert [r.meta["entry_id"] for r in replies] == [
            "schedule-reporting-period", "gmis-forgot-password"], text
        assert replies[0].text.startswith("「締め切り")  # which item each answer is for
    # Closed as one question by its last item, the list stays one question.
    [one] = await dispatch(said("①院内掲示②一次診療③継続的な相談のことですか？"), ctx)
    assert one.meta["entry_id"] in (None, "func1-requirements")
    # Answers and buttons come in the list's order.
    replies = await dispatch(said("①報告する内容は何ですか②どのくらい時間かかりますか",
                                  user="l9"), ctx)
    assert replies[0].text.startswith("「報告する内容は何ですか」")
    assert replies[-1].text.startswith("「どのくらい時間かかりますか」について")


async def test_sentences_each_sure_are_each_answered_when_the_whole_is_not(
        ctx: Context) -> None:
    """「督促が来ました。G-MISのIDもわかりません。締切はいつですか」 went to the G-MIS call
    center whole: the 督促 and the deadline were lost."""
    text = "督促が来ました。G-MISのIDもわかりません。締切はいつですか"
    replies = await dispatch(said(text), ctx)
    assert [r.meta["entry_id"] for r in replies] == [
        "reminder-what-to-do", "gmis-forgot-id", "schedule-reporting-period"]
    # A sentence of context with one question is still one question.
    context = "うちは無床の診療所です。2号機能も報告が必要ですか"
    [one] = await dispatch(said(context, user="u2"), ctx)
    assert one.meta["action"] in ("answer", "suggest")


async def test_asking_to_hear_the_answer_again_shows_it_again(ctx: Context) -> None:
    """「さっきのもう一回」 got 「お答えできる情報が見つかりませんでした」 and one tap sent the
    fragment to the prefecture's staff."""
    [answer] = await dispatch(said("紙で報告できますか"), ctx)
    for again in ("さっきのもう一回", "もう一度お願いします", "さっきの回答をもう一度見せて"):
        [repeat] = await dispatch(said(again), ctx)
        assert repeat.text == answer.text and repeat.meta["entry_id"] == answer.meta["entry_id"]
    [nothing] = await dispatch(said("もう一回", user="u2"), ctx)
    assert "直前のお答えが見つかりませんでした" in nothing.text and not nothing.buttons
    # Only the reply just before: after a hand-off there is no answer to repeat.
    await dispatch(said("今日の天気は？"), ctx)
    [after] = await dispatch(said("もう一度お願いします"), ctx)
    assert "直前のお答えが見つかりませんでした" in after.text


async def test_a_question_of_several_without_a_sure_answer_is_offered_to_staff(
        ctx: Context) -> None:
    text = "紙で報告できますか？今日の天気は？"
    paper, rest = await dispatch(said(text), ctx)
    assert paper.meta["entry_id"] == "method-paper-allowed"
    assert rest.text.startswith("「今日の天気は？」については") and "esc:ask" in [
        b.payload for b in rest.buttons]
    [receipt] = await dispatch(said("はい"), ctx)
    assert "受付番号" in receipt.text
    [esc] = await escalations(ctx)
    assert esc.question == text  # staff see the whole message


async def test_an_entry_for_prefecture_staff_answers_a_clinic_only_when_sure(
        ctx: Context) -> None:
    """A clerk's 「じむのひとがいない」 was answered 「あります。新潟県燕市では…」 (a 事例集
    case for prefecture staff), and 「むずかしい」 with the route to 厚労省."""
    for vague in ("じむのひとがいない", "むずかしい", "いしかいのけんしゅう"):
        [reply] = await dispatch(said(vague), ctx)
        assert reply.meta["action"] != "answer", vague
    [sure] = await dispatch(said("「かかりつけ医機能に関する取組事例集」とは何ですか？"), ctx)
    assert sure.meta["action"] == "answer" and sure.meta["entry_id"] == "cases-what"


async def test_two_polite_questions_in_one_message_are_both_taken_up(ctx: Context) -> None:
    """「当院も報告対象になりますか。また、報告期限はいつまでですか。」 was answered with the
    deadline alone, and nothing said the first question had been left."""
    replies = await dispatch(said("当院も報告対象になりますか。また、報告期限はいつまでですか。"),
                             ctx)
    assert sorted(r.meta["entry_id"] for r in replies) == [
        "schedule-reporting-period", "scope-who-must-report"]
    replies = await dispatch(said("報告期限はいつまでですか。また、病棟ごとに報告が必要ですか。"),
                             ctx)
    assert [r.meta["action"] for r in replies] == ["answer", "suggest"]
    assert replies[0].meta["entry_id"] == "schedule-reporting-period"
    assert "scope-hospital-many-departments" in [b.payload.split(":")[-1]
                                                 for b in replies[1].buttons]
    # The buttons say which question they are for (the answer above is for the other one).
    assert replies[1].text.startswith("「病棟ごとに報告が必要ですか」については")
    # One question asked twice over still gets one answer, and a polite opener is none.
    assert len(await dispatch(said("報告って義務？出さなくてもいい？"), ctx)) == 1
    # 「それとも」 offers another reading of the same question; 「も1回だけ？」 was once
    # answered as a question of its own.
    [either] = await dispatch(said("毎年出すんですか？それとも1回だけ？"), ctx)
    assert either.meta["entry_id"] == "schedule-every-year" and "「も1回" not in either.text
    opened = await dispatch(said("質問してもよろしいでしょうか。報告期限はいつまでですか。"), ctx)
    assert [r.meta["action"] for r in opened] == ["answer"]


async def test_a_follow_up_is_read_alone_when_the_question_before_is_old_or_answered(
        ctx: Context) -> None:
    [alone] = await dispatch(said("じゃあ病院は？", user="fresh"), ctx)
    await dispatch(said("歯医者も報告が必要？"), ctx)
    later = replace(ctx, clock=lambda: NOW + timedelta(minutes=30))
    [old] = await dispatch(said("じゃあ病院は？"), later)
    assert [b.payload for b in old.buttons] == [b.payload for b in alone.buttons]
    [paper] = await dispatch(said("紙の場合は？"), ctx)  # clear on its own: read as is
    assert paper.buttons[0].payload == "qa:show:method-paper-allowed"


async def test_a_clerk_asks_after_her_inquiry_and_sees_only_her_own(ctx: Context) -> None:
    """「受付番号 Q26-… の回答はまだですか」 was searched in the knowledge base; it is the
    state of her own inquiry, and another chat's number is not found for her."""
    await dispatch(said("今日の天気は？"), ctx)
    [receipt] = await dispatch(said("担当者に聞く", payload="esc:ask"), ctx)
    [esc] = await escalations(ctx)
    assert esc.receipt in receipt.text
    [state] = await dispatch(said("さっきの問い合わせはどうなりましたか"), ctx)
    assert esc.receipt in state.text and "担当者の確認をお待ちください" in state.text
    async with ctx.session() as session:
        row = await session.get(Escalation, esc.id)
        assert row is not None
        row.status, row.answer = "answered", "晴れの予報です。"
        session.add(row)
        await session.commit()
    [state] = await dispatch(said(f"受付番号 {esc.receipt} の回答はまだですか"), ctx)
    assert "回答済み" in state.text and "晴れの予報です。" in state.text
    [other] = await dispatch(said(f"{esc.receipt}の回答まだ？", user="someone-else"), ctx)
    assert "見つかりませんでした" in other.text and "晴れ" not in other.text
    # The same number in another prefecture is not hers.
    [foreign] = await dispatch(said(f"{receipt_of('13', esc.number or 0)}の回答まだ？"), ctx)
    assert "見つかりませんでした" in foreign.text and "晴れ" not in foreign.text
    # A question of its own, with or without a number, is not swallowed by the status.
    for question in ("調査票の回答はまだ必要ですか", "問い合わせはまだ受け付けていますか",
                     f"{esc.receipt}の件ですが、報告期限の延長はできますか"):
        [reply] = await dispatch(said(question), ctx)
        assert reply.meta["action"] != "ticket", question


async def test_a_message_pointing_back_is_never_answered_from_its_own_words(
        ctx: Context) -> None:
    """「それは病院も同じですか」 after the 患者説明 answer was answered outright with the
    1号 entry 「病院の1号機能の要件は、診療所と同じです」: それ is not 1号機能."""
    await dispatch(said("患者さんへの説明は義務ですか？"), ctx)
    [reply] = await dispatch(said("それは病院も同じですか"), ctx)
    assert reply.meta["action"] == "suggest" and "診療所と同じです" not in reply.text
    assert reply.buttons[-1].payload == "esc:ask"



async def test_a_bare_number_in_the_staff_prompt_is_not_sent_as_the_question(
        ctx: Context) -> None:
    """「1」 typed at 「担当者にお送りするご質問を入力してください」 (a tap on a button long
    gone) once reached the prefecture as the whole inquiry."""
    await dispatch(said("人と話したい"), ctx)
    [reply] = await dispatch(said("1"), ctx)
    assert "文章で入力してください" in reply.text and await escalations(ctx) == []
    await dispatch(said("紙で報告できますか。担当の方に確認したいです"), ctx)
    assert len(await escalations(ctx)) == 1


async def test_noise_is_asked_again_not_offered_to_staff(ctx: Context) -> None:
    """「ああああ…」, 「null」 and 「../../etc/passwd」 were each offered to the prefecture's
    staff (a user test); a bare known word or an English question is still read."""
    for noise in ("ああああああああ", "null", "../../etc/passwd", "あ" * 3000):
        [reply] = await dispatch(said(noise), ctx)
        assert "読み取れませんでした" in reply.text and not reply.buttons, noise[:20]
    [known] = await dispatch(said("ACP", user="u2"), ctx)
    assert known.meta["action"] == "answer"
    [english] = await dispatch(said("When is the deadline for the report?", user="u3"), ctx)
    assert "Japanese" in english.text
    [weather] = await dispatch(said("今日の天気は？", user="u4"), ctx)  # a question: offered
    assert "esc:ask" in [b.payload for b in weather.buttons]


async def test_a_message_without_words_in_the_staff_prompt_is_not_sent(ctx: Context) -> None:
    """「😀😀😀」 typed at the staff prompt reached the prefecture as an inquiry (a user
    test)."""
    await dispatch(said("人と話したい"), ctx)
    for noise in ("😀😀😀", "？？？", "!!!!"):
        [reply] = await dispatch(said(noise), ctx)
        assert "文章で入力してください" in reply.text
    assert await escalations(ctx) == []


async def test_a_gmis_question_about_to_go_to_the_prefecture_says_who_can_answer(
        ctx: Context) -> None:
    """「パスワードを忘れた」 then 「担当者に聞く」 went to the prefecture's staff, who cannot
    reset a G-MIS password, with no word that the call center can."""
    await dispatch(said("パスワードを忘れた"), ctx)
    [confirm] = await dispatch(said("担当者に聞く"), ctx)
    assert "都道府県の担当者ではお答えできません" in confirm.text
    assert ctx.config.gmis_contact in confirm.text and await escalations(ctx) == []
    await dispatch(said("紙で報告できますか", user="u2"), ctx)
    [other] = await dispatch(said("担当者に聞く", user="u2"), ctx)
    assert "G-MIS" not in other.text


@pytest.mark.parametrize("ask", ["問い合わせの状況を教えてください",
                                 "先日お送りした問い合わせの受付番号を失念しました。",
                                 "うけつけばんごうってなんだっけ"])
async def test_asked_politely_or_without_the_number_the_status_is_shown(
        ctx: Context, ask: str) -> None:
    await dispatch(said("今日の天気は？"), ctx)
    await dispatch(said("担当者に聞く", payload="esc:ask"), ctx)
    [esc] = await escalations(ctx)
    [state] = await dispatch(said(ask), ctx)
    assert state.meta["action"] == "ticket" and esc.receipt in state.text
