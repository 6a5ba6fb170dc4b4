"""Knowledge-base fixes from user test 10: the questions it found answered with a neighbouring
entry, or handed to staff with no buttons although the right entry existed, now reach the
right entry; answers to yes/no questions open with the fact, not with a bare yes or no; and
none of the fixed questions became a confident wrong answer."""

from __future__ import annotations

import re

import pytest

from handlers.context import Context
from handlers.dispatch import dispatch
from handlers.messages import Inbound
from knowledge.retriever import Retriever

# The user test's own words (kept here only: the phrasings in knowledge/entries are written
# anew), each with the entry that answers it.
ANSWERED = [
    # 5: whether explaining is required, not the list of what to explain.
    ("患者さんに何か説明しないといけないんですか", "explanation-duty"),
    # 5: no request, no duty (いらない had read as a bare negation).
    ("患者が説明いらないって言ったら？", "explanation-no-request"),
    # 5: the seeds speak of 外来・在宅 only; the entry says so and sends the rest to the
    # prefecture.
    ("患者説明は入院患者にも必要ですか", "explanation-inpatient"),
    # 6: a hospital with its own beds: 自院による確保, not the 無床診療所 answer.
    ("入退院支援について、後方支援病床は当院の自前の病床で「有」でいいですよね",
     "func2-backup-beds"),
    # 7: the entry that opened 「必ずしもそうなりません」.
    ("時間外対応加算は診療所向けの加算なので当院は届出していません。それでも時間外「有」に"
     "できますか。", "func2-offhours-kasan"),
    # 8: handed to staff with no buttons before.
    ("入力し終わったらどうすればいいですか", "method-press-report-button"),
    ("先生に説明したいので、一言でいうと何の制度ですか", "overview-what-is"),
    ("うちの系列に歯科医院もあるんですが、そっちも報告するんですか", "scope-dental-exempt"),
    ("公表されるのは困るんですが、非公表にできますか", "publication-refuse"),
    # 9: the account is shared with 医療機能情報提供制度 (the entry routes to G-MIS anyway).
    ("G-MISのIDって医療機能情報のと同じやつ？", "gmis-existing-account"),
    # 12: asked at the wizard's 休院 and ★2 steps.
    ("えっと、休院っていうのはお正月休みのことですか？", "scope-suspended-jan1"),
    ("一次診療ってどういう意味？", "func1-primary-care"),
    ("休診日が多いんですけど、一次診療ってどういう意味？", "func1-primary-care"),
    # 14: what the term means, not only that such hospitals are exempt.
    ("特定機能病院の承認って何", "scope-tokutei-what"),
]

# Neighbours of the entries changed or added: each still gets its own answer.
NEIGHBOURS = [
    ("患者さんに何を説明すればいい？", "explanation-contents"),
    ("特定機能病院は報告しなくていいの？", "scope-tokutei-exempt"),
    ("特定機能病院もかかりつけ医機能報告が必要ですか", "scope-tokutei-exempt"),
    ("無床診療所でも後方支援病床ありにできる？", "func2-backup-beds-no-beds"),
    ("一次診療できる疾患の一覧", "func1-common-diseases"),
    ("17の診療領域って何？", "func1-17-areas"),
    ("G-MISのIDを忘れました", "gmis-forgot-id"),
    ("入院患者の退院支援では何を報告しますか", "func2-admission-items"),
    ("系列クリニックは1院ずつ提出するの？", "scope-multi-clinic-corporation"),
    ("歯科と内科をやっていたら報告はいらない？", "scope-dental-exempt"),
]


@pytest.mark.parametrize(("question", "entry_id"), ANSWERED + NEIGHBOURS)
def test_the_question_is_answered_with_its_entry(
        retriever: Retriever, question: str, entry_id: str) -> None:
    decision = retriever.decide(question)
    assert (decision.action, decision.entry_id) == ("answer", entry_id), decision.candidates
    assert decision.answer == retriever.by_id[entry_id].answer


def test_a_small_clinic_without_beds_is_offered_the_scope_entries_first(
        retriever: Retriever) -> None:
    """Its first real question in the test: the 眼科・美容 entry had come before 無床診療所,
    and nothing at all was said with confidence about another entry."""
    question = ("うちは小さい内科で、先生が一人だけです。ベッドはありません。"
                "それでも出さないといけないんでしょうか")
    decision = retriever.decide(question)
    assert decision.action == "suggest"
    ids = [c.entry_id for c in decision.candidates]
    assert ids[:2] == ["scope-who-must-report", "scope-beds"]
    assert "scope-specialist-clinic" not in ids


# Openings that mean yes or no only against the way the canonical question is put.
_POLAR = re.compile(r"^(必ずしも|はい|いいえ|いえ、|そうです|その通り|違います|なり得ます|"
                    r"おすすめしません|構いません|大丈夫です|問題ありません)")


def test_no_answer_opens_with_a_bare_yes_or_no(retriever: Retriever) -> None:
    """「それでも『有』にできますか」 read 「必ずしもそうなりません」 as a no, and the rest of
    the answer said yes: an answer states the fact, whichever way the question is put."""
    bare = {e.id: e.answer[:20] for e in retriever.entries if _POLAR.match(e.answer.strip())}
    assert not bare


def test_the_fixed_answers_say_what_the_user_test_missed(retriever: Retriever) -> None:
    by_id = retriever.by_id
    duty = by_id["explanation-duty"].answer
    assert all(w in duty for w in ("努力義務", "4か月", "求め", "確認を受けた"))
    assert by_id["explanation-no-request"].answer.startswith("患者さんやご家族から求めがなければ")
    assert "自院による確保" in by_id["func2-backup-beds"].answer.split("。")[1]
    assert by_id["func2-offhours-kasan"].answer.startswith("時間外対応加算の届出がなくても")
    # What the seeds do not say is not stated: 入院 and the term 特定機能病院 go to the
    # prefecture (or the hospital's own office).
    inpatient = by_id["explanation-inpatient"].answer
    assert "定めは示されていない" in inpatient and "都道府県にご確認ください" in inpatient
    assert "説明はありません" in by_id["scope-tokutei-what"].answer


def said(text: str, user: str = "ut10") -> Inbound:
    return Inbound("demo", user, text=text, tenant="26")


async def _at_step(ctx: Context, taps: list[str], user: str) -> None:
    for text in ["対象か確認", *taps]:
        await dispatch(said(text, user), ctx)


@pytest.mark.parametrize(("taps", "question", "entry_id"), [
    (["診療所", "いいえ"], "えっと、休院っていうのはお正月休みのことですか？",
     "scope-suspended-jan1"),
    (["診療所", "いいえ", "いいえ", "確認する", "はい"],
     "休診日が多いんですけど、一次診療ってどういう意味？", "func1-primary-care"),
    (["病院"], "特定機能病院の承認って何", "scope-tokutei-what"),
])
async def test_a_question_about_the_wizard_step_gets_the_entry(
        ctx: Context, taps: list[str], question: str, entry_id: str) -> None:
    """The check's own terms, asked about at its step: answered (the 休院 one had only been
    offered to staff, the 一次診療 one had found nothing)."""
    await _at_step(ctx, taps, user=entry_id)
    replies = await dispatch(said(question, entry_id), ctx)
    assert any(ctx.retriever.by_id[entry_id].answer in r.text for r in replies)
