"""Retrieval: right entry when sure, call center for G-MIS, escalation when out of scope."""

import pytest

from knowledge.retriever import Retriever

EXPECTED = [
    ("歯科診療所は報告しますか", "scope-dental-exempt", "prefecture"),
    ("報告期間はいつからいつまで", "schedule-reporting-period", "prefecture"),
    ("G-MISにログインできません", "gmis-login-failed", "gmis_callcenter"),
    ("1号機能の要件は", "func1-requirements", "prefecture"),
    ("紙で報告できますか", "method-paper-allowed", "prefecture"),
]


@pytest.mark.parametrize(("question", "entry_id", "route"), EXPECTED)
def test_foundation_questions_are_answered_confidently(
    retriever: Retriever, question: str, entry_id: str, route: str
) -> None:
    decision = retriever.decide(question)
    assert (decision.action, decision.entry_id, decision.route) == ("answer", entry_id, route)
    assert decision.answer == retriever.by_id[entry_id].answer


@pytest.mark.parametrize("question", ["今日の天気は", "おすすめのラーメン屋を教えて",
                                      "確定申告のやり方は？"])
def test_out_of_scope_escalates(retriever: Retriever, question: str) -> None:
    decision = retriever.decide(question)
    assert decision.action == "escalate"
    assert decision.entry_id is None and decision.answer is None


def test_unsure_system_question_routes_to_call_center_not_prefecture(
    retriever: Retriever,
) -> None:
    decision = retriever.decide("G-MISの画面が真っ白で固まってしまいます、ぴよぴよ")
    assert decision.route == "gmis_callcenter"


def test_colloquial_and_width_variants_find_the_same_entry(retriever: Retriever) -> None:
    assert retriever.decide("ｼﾞｰﾐｽのパスワード忘れた").entry_id == "gmis-forgot-password"
    assert retriever.decide("締め切りっていつ").entry_id == "schedule-reporting-period"


@pytest.mark.parametrize(
    "query",
    ["", " ", "😀😀😀", "\x00\x07\x1b[31m", "'; DROP TABLE institution; --", "ｱｲｳｴｵ",
     "報告" * 5000, "a" * 10000, "🏥" * 3000, "\u202e\u200b報告期間"],
)
def test_any_input_gets_a_decision_without_crashing(retriever: Retriever, query: str) -> None:
    decision = retriever.decide(query)
    assert decision.action in ("answer", "suggest", "escalate")
    assert 0.0 <= decision.score <= 1.0


def test_suggestions_are_at_most_three_distinct_entries(retriever: Retriever) -> None:
    ranked = retriever.rank("報告", k=3)
    assert len(ranked) <= 3
    assert len({c.entry_id for c in ranked}) == len(ranked)
    assert [c.score for c in ranked] == sorted((c.score for c in ranked), reverse=True)
