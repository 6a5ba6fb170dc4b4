"""「対象か確認」: the eligibility wizard, its back/cancel, persistence and expiry."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from db.engine import make_engine, make_sessionmaker
from handlers.context import Context
from handlers.dispatch import dispatch
from handlers.messages import Inbound, Reply
from handlers.rules import Facility, judge, obligation
from tests.conftest import NOW


def said(text: str = "", payload: str | None = None, user: str = "w1") -> Inbound:
    return Inbound("demo", user, text=text, payload=payload, tenant="26")


async def tap(ctx: Context, reply: Reply, label: str) -> Reply:
    button = next(b for b in reply.buttons if b.label == label)
    [nxt] = await dispatch(said(button.label, button.payload), ctx)
    return nxt


async def test_clinic_holding_1go_and_some_2go(ctx: Context) -> None:
    [r] = await dispatch(said("対象か確認"), ctx)
    assert "医療機関の種類" in r.text
    r = await tap(ctx, r, "診療所")
    assert "歯科" in r.text  # special-function question is only for hospitals
    for label in ("いいえ", "いいえ"):
        r = await tap(ctx, r, label)
    assert "1号機能" in r.text
    # the eligibility result comes before the optional 1号 check, and stopping there keeps it
    assert "判定：報告の対象です" in r.text and "理由：" in r.text
    # Opened after 1月1日 is not a case the check can judge (it had said 「対象です」 flatly).
    assert "1月2日以降に開設した場合の扱いは、都道府県にご確認ください" in r.text
    assert [b.label for b in r.buttons] == ["確認する", "ここで終わる", "戻る", "やめる"]
    r = await tap(ctx, r, "確認する")
    for label in ("はい", "はい", "はい", "はい", "いいえ", "はい", "いいえ"):
        r = await tap(ctx, r, label)
    assert "報告の対象です" in r.text and "1号機能：あり" in r.text
    assert "（イ）通常の診療時間外の診療：あり" in r.text
    assert ("（ロ）入退院時の支援：なし" in r.text
            and "（ニ）介護サービス等と連携した医療提供：なし" in r.text)
    assert [b.payload for b in r.buttons] == ["menu:check"]  # a mis-tap: start again
    [back] = await dispatch(said("戻る"), ctx)  # typed after the result: no step to go to
    assert "続きから再開できる確認はありません" in back.text and "担当者" not in back.text
    [never] = await dispatch(said("戻る", user="w2"), ctx)  # no check at all
    assert never.text.startswith("戻れる操作はありません")
    # Unlinked, at the first question: nothing before it (no roster was used).
    await dispatch(said("対象か確認", user="w3"), ctx)
    [r] = await dispatch(said("戻る", user="w3"), ctx)
    assert "これより前の質問はありません" in r.text and "登録内容" not in r.text
    # At the staff prompt, 「戻る」 is not taken for the check.
    await dispatch(said("担当者に聞く", user="w4"), ctx)
    [prompt] = await dispatch(said("戻る", user="w4"), ctx)
    assert "確認" not in prompt.text and "文章" in prompt.text
    # 「確認を続ける」 after the result had said the check had timed out.
    [after] = await dispatch(said("確認を続ける"), ctx)
    assert "確認が終わったか" in after.text and "「対象か確認」" in after.text


async def test_the_exemption_questions_say_what_does_not_exempt(ctx: Context) -> None:
    """Almost every clinic is closed on New Year's Day, and many have a dental department:
    a clerk who reads 「休院」 or 「歯科」 loosely would tap はい and skip a required report."""
    [r] = await dispatch(said("対象か確認"), ctx)
    r = await tap(ctx, r, "診療所")
    assert "医科と歯科を併せて診療している場合は「いいえ」" in r.text
    r = await tap(ctx, r, "いいえ")
    assert "お正月の休診日は休院に当たりません" in r.text


async def test_back_changes_an_answer_and_cancel_stops(ctx: Context) -> None:
    [r] = await dispatch(said("/check"), ctx)
    r = await tap(ctx, r, "病院")
    assert "特定機能病院" in r.text
    r = await tap(ctx, r, "はい")
    assert "対象外" in r.text and "特定機能病院" in r.text
    [r] = await dispatch(said("/check"), ctx)
    r = await tap(ctx, r, "病院")
    r = await tap(ctx, r, "いいえ")
    r = await tap(ctx, r, "戻る")
    assert "特定機能病院" in r.text
    r = await tap(ctx, r, "戻る")
    assert "医療機関の種類" in r.text
    r = await tap(ctx, r, "やめる")
    assert "終了しました" in r.text
    [after] = await dispatch(said("はい"), ctx)
    assert "特定機能病院" not in after.text


async def test_a_fact_typed_for_a_later_step_is_not_dropped(ctx: Context) -> None:
    """「うちは休院中です」 at the 歯科 question was read as an unclear answer with no word
    about it; the clerk thought the bot had taken it in."""
    await dispatch(said("対象か確認"), ctx)
    await dispatch(said("診療所"), ctx)
    [r] = await dispatch(said("うちは去年から休院中です"), ctx)
    assert "このあとの質問でお伺いします" in r.text and "歯科医療機関" in r.text
    r = await tap(ctx, r, "いいえ")
    assert "休院" in r.text
    r = await tap(ctx, r, "いいえ")
    r = await tap(ctx, r, "確認する")
    [r] = await dispatch(said("歯科はやっていません"), ctx)  # answered already
    assert "前の質問でお答えいただいています" in r.text and "院内に掲示" in r.text
    [r] = await dispatch(said("休診日は往診しています"), ctx)  # not an answer about 休院
    assert "前の質問でお答えいただいています" not in r.text
    assert r.text.startswith("ボタンでお答えください") and "院内に掲示" in r.text


async def test_a_typed_answer_at_the_closed_step_keeps_the_buttons(ctx: Context) -> None:
    """「やすんでました」 at the 休院 step was answered from the knowledge base and paused
    the check: the 院長's next 「2」 (いいえ) became a 👎 and an inquiry."""
    await dispatch(said("対象か確認"), ctx)
    for typed in ("診療所", "いいえ"):
        [r] = await dispatch(said(typed), ctx)
    [r] = await dispatch(said("やすんでました"), ctx)
    assert "ボタンでお答えください" in r.text and "休院" in r.text
    assert [b.label for b in r.buttons][:2] == ["はい", "いいえ"]


async def test_a_typed_yes_or_no_with_its_reason_answers_the_step(ctx: Context) -> None:
    """「いいえ、歯科ではありません」 had been told to tap a button: the いいえ first is the
    answer, the rest explains it. A rest that asks something is a question instead, and a
    はい with a reason answers only a step where yes exempts no one (test above)."""
    await dispatch(said("対象か確認"), ctx)
    await dispatch(said("診療所"), ctx)
    [r] = await dispatch(said("いいえ、歯科ではありません。内科です"), ctx)
    assert "休院" in r.text and "ボタンでお答えください" not in r.text
    [r] = await dispatch(said("いいえ。届出はしていません"), ctx)
    assert "判定：報告の対象です" in r.text
    [r] = await dispatch(said("はい、お願いします"), ctx)
    assert "★1" in r.text
    for unsettled in ("はい、まだ掲示していません", "はい、これから掲示します",
                      "いや、わからないです", "いいえ、確認します"):
        [r] = await dispatch(said(unsettled), ctx)
        assert "★1" in r.text and "★2" not in r.text, unsettled  # asked again
    *_, note = await dispatch(said("はい、掲示はいつまでに必要ですか"), ctx)
    assert "★2" not in note.text and "一時中断" in note.text  # asked, not answered yes


async def test_without_1go_no_2go_questions(ctx: Context) -> None:
    [r] = await dispatch(said("対象か確認"), ctx)
    for label in ("診療所", "いいえ", "いいえ", "確認する", "はい", "いいえ"):
        r = await tap(ctx, r, label)
    assert "1号機能：なし" in r.text and "2号機能の報告は不要" in r.text
    # It says which ★ was not met (the second: 一次診療), not just that one was.
    assert "満たしていない★の要件：17の診療領域のうち一つ以上での一次診療）" in r.text


async def test_typed_answers_work_and_nonsense_repeats_the_question(ctx: Context) -> None:
    await dispatch(said("対象か確認"), ctx)
    [r] = await dispatch(said("診療所"), ctx)
    assert "歯科" in r.text
    [r] = await dispatch(said("ラーメン食べたい"), ctx)
    assert "ボタンでお答えください" in r.text and "歯科" in r.text
    [r] = await dispatch(said("ちょっとわからないです"), ctx)  # a way on, not just "tap"
    assert "「担当者に聞く」から都道府県に" in r.text and "歯科" in r.text
    [r] = await dispatch(said("ううん。"), ctx)  # a typed no, as people answer in chat
    assert "休院" in r.text
    [r] = await dispatch(said("いいえ"), ctx)
    assert "報告の対象です" in r.text and "確認する" in [b.label for b in r.buttons]
    [r] = await dispatch(said("ﾊｲ！"), ctx)  # means 確認する (half-width, as phones type it)
    assert "ボタンでお答えください" not in r.text and "院内に掲示" in r.text


async def test_asked_for_in_words_and_a_question_mid_check_is_not_dropped(
        ctx: Context) -> None:
    """Clerks ask for the check in their words; a question typed in the middle pauses the
    check and is answered, not met with 「ボタンで」; 「確認を続ける」 picks it up where it
    stopped. A request for a person ends it."""
    [r] = await dispatch(said("うちが報告対象かチェックしたいです"), ctx)
    assert "医療機関の種類" in r.text
    [r] = await dispatch(said("うちは200床の一般病院です"), ctx)  # names one choice
    assert "特定機能病院" in r.text
    answer, note = await dispatch(said("そういえばG-MISのパスワード忘れたんだけど"), ctx)
    assert "G-MIS事務局" in answer.text and "一時中断" in note.text
    assert [b.payload for b in note.buttons] == ["wiz:resume"]
    [r] = await dispatch(said("いいえ"), ctx)  # no longer an answer to the check
    assert "歯科" not in r.text and "ボタンでお答えください" not in r.text
    [again] = await dispatch(said("確認を続ける", payload="wiz:resume"), ctx)
    assert "特定機能病院" in again.text  # the step it stopped at, 病院 kept
    await dispatch(said("対象か確認", user="w2"), ctx)
    await dispatch(said("診療所", user="w2"), ctx)
    note, ask = await dispatch(said("オペレーターにつないでください", user="w2"), ctx)
    assert "確認はここで終了" in note.text and "担当者にお送りするご質問" in ask.text
    await dispatch(said("対象か確認", user="w4"), ctx)
    await dispatch(said("診療所", user="w4"), ctx)
    for label in ("いいえ", "いいえ", "確認する"):
        await dispatch(said(label, user="w4"), ctx)
    mixed = "掲示はまだです。報告期間はいつまでですか？"
    *answer, note = await dispatch(said(mixed, user="w4"), ctx)
    assert "一時中断" in note.text  # handled as a question, not 「ボタンで」
    assert answer and "ボタンでお答えください" not in answer[-1].text
    [r] = await dispatch(said("報告対象期間を確認したい", user="w3"), ctx)
    assert "医療機関の種類" not in r.text  # a question about the period, not the check


@pytest.mark.parametrize("sentence", [
    "歯科もやってます", "うちは歯科しかやってないです", "歯科医療機関ではないわけではないです",
    "いいえ、でも歯科の日もあります", "はい、でも医科もあります", "はい、歯科のみです"])
async def test_a_sentence_is_never_read_as_an_answer(ctx: Context, sentence: str) -> None:
    """Whether 「歯科しかやってないです」 is a yes or a no depends on what it negates; read
    by its ending it told a dental clinic to report, and 「相談はお断りしています」 became a
    yes. A sentence about the step is asked again, to be tapped."""
    await dispatch(said("対象か確認"), ctx)
    await dispatch(said("診療所"), ctx)
    [r] = await dispatch(said(sentence), ctx)
    assert r.text.startswith("お手数ですが、下のボタンでお答えください"), sentence
    assert "歯科医療機関" in r.text and "判定" not in r.text


async def test_no_typed_sentence_ever_exempts_a_clinic(ctx: Context) -> None:
    """「年末年始は休みにしています」 is not 休院, and is asked again with why; a sentence
    never reaches a 判定: only a tap or a plain はい/いいえ does."""
    await dispatch(said("対象か確認"), ctx)
    await dispatch(said("診療所"), ctx)
    [r] = await dispatch(said("いいえ"), ctx)
    for sentence in ("年末年始は休みにしています", "はい、正月は休みでした"):
        [r] = await dispatch(said(sentence), ctx)
        assert r.text.startswith("お正月などの休診日は休院に当たりません"), sentence
    for sentence in ("1月1日は休院していました", "休院はしてないです"):
        [r] = await dispatch(said(sentence), ctx)
        assert "判定" not in r.text and "ボタンでお答えください" in r.text, sentence
    [r] = await dispatch(said("👎"), ctx)  # not a no
    assert "判定" not in r.text
    [r] = await dispatch(said("いいえ"), ctx)
    assert "判定：報告の対象です" in r.text
    [r] = await dispatch(said("はい、お願いします"), ctx)  # 確認する, in words
    assert "院内に掲示" in r.text


async def test_a_typed_yes_is_no_answer_to_a_question_that_is_not_yes_or_no(
        ctx: Context) -> None:
    await dispatch(said("対象か確認"), ctx)
    [r] = await dispatch(said("はい"), ctx)
    assert "ボタンでお答えください" in r.text and "医療機関の種類" in r.text


async def test_wizard_survives_a_restart(ctx: Context, database_url: str) -> None:
    [r] = await dispatch(said("対象か確認"), ctx)
    await tap(ctx, r, "病院")
    engine = make_engine(database_url)  # a new process: new engine, same database
    restarted = replace(ctx, sessions=make_sessionmaker(engine))
    [r] = await dispatch(said("いいえ"), restarted)
    assert "歯科" in r.text
    await engine.dispose()


async def test_abandoned_wizard_expires(ctx: Context) -> None:
    [r] = await dispatch(said("対象か確認"), ctx)
    await tap(ctx, r, "診療所")
    later = replace(ctx, clock=lambda: NOW + timedelta(hours=2))
    [r] = await dispatch(said("いいえ"), later)
    assert "歯科" not in r.text  # treated as a fresh message, not a wizard answer
    [stale] = await dispatch(said("いいえ", "wiz:no"), later)
    assert "もう一度" in stale.text


@pytest.mark.parametrize(("facility", "required"), [
    (Facility("hospital"), True), (Facility("clinic"), True),
    (Facility("hospital", special_function=True), False), (Facility("clinic", dental=True), False),
    (Facility("clinic", closed_on_jan1=True), False)])
def test_obligation_rules(facility: Facility, required: bool) -> None:
    assert obligation(facility).required is required


def test_one_rule_set_judges_imported_answers() -> None:
    assert judge({"posting": True, "primary_care": True, "consultation": True}).func1 is True
    assert judge({"posting": True, "primary_care": False, "consultation": True}).func1 is False
    assert judge({"posting": True, "primary_care": None, "consultation": True}).func1 is None
    j = judge({"posting": True, "primary_care": True, "consultation": True,
               "i": True, "ha": False})
    assert j.func2 == {"i": True, "ro": None, "ha": False, "ni": None}
    assert judge({"posting": False, "i": True}).func2 == {k: None for k in ("i", "ro", "ha", "ni")}


async def test_a_question_at_a_step_is_never_taken_for_its_answer(ctx: Context) -> None:
    """Found by an adversarial tester: 「診療所の報告期限はいつですか？」 was recorded as 診療所,
    「G-MISのパスワードがわからない」 read as 「わからない」, a question about お休みの日 got the
    休診日 reminder, and 「相談窓口の電話番号を教えてください」 at the 相談 step 「ボタンで」."""
    [r] = await dispatch(said("対象か確認"), ctx)
    answer, note = await dispatch(said("診療所の報告期限はいつですか？"), ctx)
    assert "一時中断" in note.text and "医療機関の種類" not in answer.text
    [r] = await dispatch(said("確認を続ける"), ctx)  # typed, not tapped
    assert "医療機関の種類" in r.text  # 診療所 was not recorded
    r = await tap(ctx, r, "診療所")
    answer, note = await dispatch(said("G-MISのパスワードがわからない"), ctx)
    assert "G-MIS事務局" in answer.text and "一時中断" in note.text
    r = await tap(ctx, r, "いいえ")  # the paused step's own button: resumes and records
    assert "休院" in r.text
    *_, note = await dispatch(said("お休みの日の診療は2号機能のイに入る？"), ctx)
    assert "一時中断" in note.text
    [again] = await dispatch(said("確認を続ける", payload="wiz:resume"), ctx)
    [twice] = await dispatch(said("確認を続ける", payload="wiz:resume"), ctx)
    assert "休院" in again.text and twice.text == again.text  # resuming a running check
    r = await tap(ctx, twice, "いいえ")
    r = await tap(ctx, r, "確認する")
    for label in ("はい", "はい"):
        r = await tap(ctx, r, label)
    assert "相談" in r.text
    *_, note = await dispatch(said("相談窓口の電話番号を教えてください"), ctx)
    assert "一時中断" in note.text
    *_, note = await dispatch(said("報告期間はいつまで？"), ctx)  # a second question
    assert [b.payload for b in note.buttons] == ["wiz:resume"]  # the way back stays
    # A suggestion tapped while paused: its answer, and the way back under it too.
    *_, note = await dispatch(said("", payload="qa:show:scope-new-opening"), ctx)
    assert [b.payload for b in note.buttons] == ["wiz:resume"]
    [r] = await dispatch(said("対象か確認", user="w9"), ctx)
    r = await tap(ctx, r, "診療所")
    *_, note = await dispatch(said("休院ってなに", user="w9"), ctx)  # no ？, still a question
    assert "一時中断" in note.text
