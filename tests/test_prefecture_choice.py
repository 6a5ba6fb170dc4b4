"""An unlinked chat of a bot serving several prefectures says which one is its own before
its question reaches a desk: a Tokyo clinic's question must not land in Kyoto's channel."""

from __future__ import annotations

import pytest
from sqlmodel import col, select

from db.models import ChatAccount, Escalation, Institution, Outbox
from db.prefectures import named_in
from db.seed import ensure_prefecture
from handlers import desk, prefecture_choice
from handlers.context import Context
from handlers.desk_digest import build_digest
from handlers.dispatch import dispatch
from handlers.linking import issue_code
from handlers.messages import Inbound, Reply
from tests.conftest import NOW

QUESTION = "分院を開設予定ですが、今年の報告は本院とまとめられますか"


def said(text: str, user: str = "clerk-1", payload: str | None = None) -> Inbound:
    return Inbound("telegram", user, text=text, payload=payload)


async def serve(ctx: Context, *codes: str) -> None:
    async with ctx.session() as session:
        for code in codes:
            await ensure_prefecture(session, code, NOW.date(), "")


async def escalations(ctx: Context) -> list[Escalation]:
    async with ctx.session() as session:
        return list((await session.exec(select(Escalation).order_by(col(Escalation.id)))).all())


async def ask_staff(ctx: Context, user: str = "clerk-1", question: str = QUESTION) -> Reply:
    await dispatch(said(question, user), ctx)
    [reply] = await dispatch(said("担当者に聞く", user, "esc:ask"), ctx)
    return reply


async def tokyo_clinic(ctx: Context, inst_code: str) -> tuple[Institution, str]:
    """A Tokyo clinic on the roster and the one-time code of its 案内 letter."""
    async with ctx.session() as session:
        inst = Institution(prefecture_code="13", code=inst_code, name=f"東京医院{inst_code}",
                           kind="clinic", status="未報告")
        session.add(inst)
        await session.commit()
        code, _ = await issue_code(session, inst, NOW, 30)
        await session.commit()
    return inst, code


@pytest.fixture
async def two(ctx: Context) -> Context:
    """The bot's default is 京都府 (26); it also serves 東京都 (13)."""
    await serve(ctx, "13")
    return ctx


async def test_the_question_waits_for_the_prefecture_then_reaches_that_desk(two: Context,
                                                                          ) -> None:
    asked = await ask_staff(two)
    assert "まだ送信していません" in asked.text and "どちらの都道府県ですか" in asked.text
    assert [b.label for b in asked.buttons] == ["東京都", "京都府"]
    assert await escalations(two) == []  # nothing sent to the default's desk meanwhile

    [sent] = await dispatch(said("東京の診療所です"), two)
    [esc] = await escalations(two)
    assert esc.prefecture_code == "13" and esc.question == QUESTION
    assert esc.receipt.startswith("Q13-")
    assert "このチャットからのご質問は、東京都の担当者にお送りします" in sent.text
    assert f"東京都の担当者にお問い合わせを送りました。受付番号は {esc.receipt}" in sent.text
    assert "東京都 かかりつけ医機能報告 担当窓口" in sent.text  # Tokyo's desk, not Kyoto's
    async with two.session() as session:
        [card] = (await session.exec(select(Outbox).where(Outbox.channel == "slack"))).all()
    assert card.prefecture_code == "13"

    # The chat's prefecture is kept: the next question is sent without asking, and the
    # inquiry's status is found in that prefecture.
    again = await ask_staff(two, question="紙の調査票はどこで手に入りますか")
    assert "東京都の担当者にお問い合わせを送りました" in again.text
    assert [e.prefecture_code for e in await escalations(two)] == ["13", "13"]
    [status] = await dispatch(said("さっきの問い合わせどうなりました"), two)
    assert esc.receipt in status.text and "受け付けました" in status.text


async def test_a_tap_on_a_prefecture_button_sends_it(two: Context) -> None:
    await ask_staff(two)
    [sent] = await dispatch(said("京都府", payload=f"{prefecture_choice.PAYLOAD}:26"), two)
    [esc] = await escalations(two)
    assert esc.prefecture_code == "26" and "京都府の担当者にお問い合わせを送りました" in sent.text


async def test_unclear_answers_ask_again_and_lose_nothing(two: Context) -> None:
    await ask_staff(two)
    [unread] = await dispatch(said("はい"), two)
    assert "都道府県名を読み取れませんでした" in unread.text
    [several] = await dispatch(said("東京と京都"), two)
    assert "1つだけ" in several.text
    [elsewhere] = await dispatch(said("大阪府です"), two)
    assert "大阪府の医療機関からのお問い合わせは、このチャットではお受けできません" in (
        elsewhere.text)
    assert [b.label for b in elsewhere.buttons] == ["東京都", "京都府"]  # still tappable
    assert "大阪府の担当窓口" in elsewhere.text
    [forged] = await dispatch(said("沖縄県", payload=f"{prefecture_choice.PAYLOAD}:47"), two)
    assert "読み取れませんでした" in forged.text  # a payload the bot never offered
    assert await escalations(two) == []
    [sent] = await dispatch(said("東京都"), two)  # the question waited through all of it
    [esc] = await escalations(two)
    assert esc.question == QUESTION and esc.receipt in sent.text


async def test_a_new_question_instead_of_a_prefecture_is_answered(two: Context) -> None:
    await ask_staff(two)
    [answer] = await dispatch(said("報告期間はいつからいつまでになっていますか"), two)
    assert answer.meta["action"] in ("answer", "suggest")
    assert await escalations(two) == []
    [later] = await dispatch(said("東京都"), two)  # the prompt has ended
    assert "設定しました" not in later.text


async def test_cancel_ends_the_prompt_and_sends_nothing(two: Context) -> None:
    await ask_staff(two)
    await dispatch(said("キャンセル"), two)
    assert await escalations(two) == []
    again = await ask_staff(two)  # still unchosen: asked again next time
    assert "どちらの都道府県ですか" in again.text


async def test_a_wrong_choice_can_be_changed(two: Context) -> None:
    await ask_staff(two)
    await dispatch(said("京都府"), two)
    [asked] = await dispatch(said("都道府県を変更"), two)
    assert "どちらの都道府県ですか" in asked.text
    [set_] = await dispatch(said("東京都"), two)
    assert "このチャットからのご質問は、東京都の担当者にお送りします" in set_.text
    assert await escalations(two) != [] and len(await escalations(two)) == 1  # no resend
    await ask_staff(two, question="紙の調査票はどこで手に入りますか")
    assert [e.prefecture_code for e in await escalations(two)] == ["26", "13"]


async def test_a_linked_chat_is_never_asked(two: Context) -> None:
    inst, code = await tokyo_clinic(two, "1310001")
    await dispatch(said(f"連携 {code}"), two)
    sent = await ask_staff(two)
    assert "東京都の担当者にお問い合わせを送りました" in sent.text
    [changed] = await dispatch(said("都道府県を変更"), two)
    assert "連携しているため" in changed.text and "東京都の担当者" in changed.text
    async with two.session() as session:
        account = (await session.exec(select(ChatAccount))).one()
    assert account.prefecture_code == "13" and account.institution_id == inst.id


async def test_a_bot_for_one_prefecture_asks_nothing(ctx: Context) -> None:
    sent = await ask_staff(ctx)
    assert "受付番号は Q26-" in sent.text and "どちらの都道府県" not in sent.text
    # The default may not be the clinic's own, so the receipt still names no prefecture.
    assert "都道府県の担当者にお問い合わせを送りました" in sent.text
    [changed] = await dispatch(said("都道府県を変更"), ctx)
    assert "京都府の担当者にお送りしています" in changed.text


async def test_many_prefectures_are_typed_not_tapped(ctx: Context) -> None:
    await serve(ctx, *[f"{n:02d}" for n in range(1, 48)])
    asked = await ask_staff(ctx)
    assert asked.buttons == () and "「東京都」のように入力してください" in asked.text
    await dispatch(said("北海道です"), ctx)
    [esc] = await escalations(ctx)
    assert esc.prefecture_code == "01"


@pytest.mark.parametrize(("typed", "codes"), [
    ("東京都", {"13"}), ("京都", {"26"}), ("京都府の医院です", {"26"}), ("東京の内科です", {"13"}),
    ("13", {"13"}), ("１３", {"13"}), ("1", set()), ("99", set()), ("北海道", {"01"}),
    ("大阪と兵庫", {"27", "28"}), ("よろしくお願いします", set()), ("東京と京都", {"13", "26"}),
    ("山口内科です", set()), ("東京都の石川クリニックです", {"13"}), ("千葉医院の者です", set()),
    ("山口と申します", set()),
])
def test_prefecture_names_as_typed(typed: str, codes: set[str]) -> None:
    assert named_in(typed) == codes


async def test_the_chosen_prefectures_desk_and_period_follow_the_answers(two: Context) -> None:
    question = "県の担当の電話番号を教えて"
    [before] = await dispatch(said(question), two)
    assert "担当窓口】" not in before.text  # the default (京都府) may not be theirs
    await ask_staff(two)
    await dispatch(said("東京都"), two)
    [after] = await dispatch(said(question), two)
    assert "【東京都の担当窓口】東京都 かかりつけ医機能報告 担当窓口" in after.text
    assert "京都府" not in after.text
    [status] = await dispatch(said("報告状況"), two)
    assert "連携" in status.text and "報告状況：" not in status.text  # a 報告状況 needs a link


async def test_a_second_tap_on_an_old_prompt_sends_nothing(two: Context) -> None:
    await ask_staff(two)
    await dispatch(said("東京都", payload=f"{prefecture_choice.PAYLOAD}:13"), two)
    [again] = await dispatch(said("京都府", payload=f"{prefecture_choice.PAYLOAD}:26"), two)
    assert "東京都の担当者にお送りしています" in again.text and "都道府県を変更" in again.text
    [answer] = await dispatch(said("紙の調査票はどこで手に入りますか"), two)
    assert answer.meta["action"] != "escalated"  # no staff prompt was opened by the tap
    assert [e.prefecture_code for e in await escalations(two)] == ["13"]


async def test_a_tap_after_the_prompt_ended_asks_before_sending(two: Context) -> None:
    await ask_staff(two)
    await dispatch(said("報告期間はいつからいつまでになっていますか"), two)  # moved on
    [tapped] = await dispatch(said("東京都", payload=f"{prefecture_choice.PAYLOAD}:13"), two)
    assert "東京都の担当者にお送りします" in tapped.text
    assert "この質問を送る" in [b.label for b in tapped.buttons]  # asked, not sent
    assert await escalations(two) == []


async def test_a_short_question_at_the_prompt_is_answered(two: Context) -> None:
    await ask_staff(two)
    [answer] = await dispatch(said("締め切りはいつですか"), two)
    assert "都道府県名を読み取れませんでした" not in answer.text
    assert answer.meta["action"] in ("answer", "suggest")
    [surname] = await dispatch(said("山口内科です"), two)  # the prompt has ended: a question
    assert "山口県" not in surname.text


async def test_a_surname_is_not_a_prefecture(two: Context) -> None:
    await ask_staff(two)
    [reply] = await dispatch(said("山口内科です"), two)
    assert "読み取れませんでした" in reply.text and "山口県" not in reply.text


async def test_a_link_code_typed_at_the_prompt_ends_it(two: Context) -> None:
    _, code = await tokyo_clinic(two, "1310002")
    await ask_staff(two)
    await dispatch(said(f"連携 {code}"), two)
    [next_one] = await dispatch(said("G-MISのアカウントはどうやって作りますか"), two)
    assert next_one.meta["action"] in ("answer", "suggest")  # read as itself, not swallowed
    assert await escalations(two) == []


async def test_changing_keeps_the_chats_inquiries_and_cancel_keeps_the_prefecture(
        two: Context) -> None:
    await ask_staff(two)
    await dispatch(said("東京都"), two)
    [esc] = await escalations(two)
    await dispatch(said("都道府県を変更したいです"), two)
    await dispatch(said("キャンセル"), two)
    [status] = await dispatch(said(f"{esc.receipt}の回答はまだですか"), two)
    assert "受け付けました" in status.text  # still Tokyo: the cancel kept it
    [changed] = await dispatch(said("都道府県を変更 京都府"), two)
    assert "京都府の担当者にお送りします" in changed.text
    [status] = await dispatch(said(f"{esc.receipt}の回答はまだですか"), two)
    assert esc.receipt in status.text and "受け付けました" in status.text
    [added] = await dispatch(said(f"{esc.receipt}の補足です。当院は有床診療所です。"), two)
    assert "補足を追加し" in added.text
    new = await ask_staff(two, question="紙の調査票はどこで手に入りますか")
    assert "京都府の担当者にお問い合わせを送りました" in new.text
    first, second = await escalations(two)
    assert first.context["supplements"][0]["text"].endswith("有床診療所です。")
    assert second.prefecture_code == "26"
    shown = [t["q"] for t in second.context["history"]]
    assert QUESTION not in shown  # Kyoto never reads what was asked of Tokyo


@pytest.mark.parametrize(("served", "tapped"), [(8, True), (9, False)])
async def test_buttons_while_the_prefectures_are_few(ctx: Context, served: int,
                                                     tapped: bool) -> None:
    await serve(ctx, *[f"{n:02d}" for n in range(1, served + 1) if n != 26][:served - 1])
    asked = await ask_staff(ctx)
    assert bool(asked.buttons) is tapped and len(asked.buttons) in (0, served)


async def test_a_bot_for_one_prefecture_answers_in_the_name_of_都道府県(ctx: Context) -> None:
    """Its default may not be the unlinked clinic's own: the answer and the forward notice
    name no prefecture, as the receipt did."""
    await ask_staff(ctx)
    [esc] = await escalations(ctx)
    assert esc.id is not None
    await desk.forward(ctx.sessions, "26", esc.id, "U1", NOW, redmine=False)
    await desk.answer(ctx.sessions, "26", esc.id, "U1", "分院は別に報告してください。", NOW)
    async with ctx.session() as session:
        told = {o.kind: o.body for o in (await session.exec(select(Outbox).where(
            Outbox.channel == "telegram"))).all()}
    assert "都道府県から厚生労働省に確認しています" in told["escalation_forwarded"]
    assert "都道府県の担当者から回答が届きました" in told["escalation_answer"]


async def unanswered(ctx: Context, pref: str) -> list[str]:
    async with ctx.session() as session:
        return [q for q, _ in (await build_digest(session, pref, NOW)).unanswered]


async def test_an_unlinked_chats_unanswered_question_is_only_its_own_prefectures(
        two: Context) -> None:
    """The digest's 「答えられなかった質問」 is one desk's to-do list: a question from a chat
    that has not said its prefecture is no desk's until it does, then it is that one's."""
    await dispatch(said(QUESTION), two)
    assert QUESTION not in await unanswered(two, "26")  # the default is not its own
    assert QUESTION not in await unanswered(two, "13")
    await dispatch(said("担当者に聞く", payload="esc:ask"), two)
    await dispatch(said("東京都"), two)
    assert QUESTION in await unanswered(two, "13")
    assert QUESTION not in await unanswered(two, "26")
    later = "分院の管理者が兼務の場合の扱いはどうなりますか"
    await dispatch(said(later), two)  # asked once its prefecture is known
    assert later in await unanswered(two, "13") and later not in await unanswered(two, "26")


async def test_a_bot_for_one_prefecture_lists_every_unlinked_question(ctx: Context) -> None:
    await dispatch(said(QUESTION), ctx)
    assert QUESTION in await unanswered(ctx, "26")


async def test_linking_gives_the_earlier_questions_to_the_institutions_prefecture(
        two: Context) -> None:
    _, code = await tokyo_clinic(two, "1310003")
    await dispatch(said(QUESTION), two)
    await dispatch(said(f"連携 {code}"), two)
    assert QUESTION in await unanswered(two, "13")
    assert QUESTION not in await unanswered(two, "26")


async def test_after_unlinking_the_chat_is_asked_its_prefecture_again(two: Context) -> None:
    """A clerk who moved to a clinic elsewhere: the former institution's desk is not theirs."""
    _, code = await tokyo_clinic(two, "1310004")
    await dispatch(said(f"連携 {code}"), two)
    first = await ask_staff(two)
    assert "東京都の担当者にお問い合わせを送りました" in first.text
    await dispatch(said("連携解除"), two)
    [done] = await dispatch(said("連携を解除する", payload="link:unlink"), two)
    assert "連携を解除しました" in done.text
    asked = await ask_staff(two, question="紙の調査票はどこで手に入りますか")
    assert "どちらの都道府県ですか" in asked.text
    [sent] = await dispatch(said("京都府"), two)
    assert "京都府の担当者にお問い合わせを送りました" in sent.text
    assert [e.prefecture_code for e in await escalations(two)] == ["13", "26"]
    [status] = await dispatch(said("さっきの問い合わせどうなりました"), two)
    assert (await escalations(two))[1].receipt in status.text  # its own, as before
