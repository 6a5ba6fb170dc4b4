"""The learned scores: labelled questions teach the ranking, the held-out split never does,
and the fitted weights are cached without ever being trusted blindly."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from knowledge.evaluate import asked_of, load_questions, training_examples
from knowledge.loader import load_knowledge_base
from knowledge.model import Entry
from knowledge.normalize import Analyzer
from knowledge.retriever import Retriever, Tuning

# A clerk who only answers the phone at night asks how to fill in the 時間外 item: the
# hand-built score prefers the 時間外対応加算 entry, whose words it shares.
NIGHT_PHONE = "夜間は電話に出るだけなんだけど、それでも時間外対応やってるって書いていい？"


@pytest.fixture(scope="module")
def analyzer() -> Analyzer:
    return Analyzer()


def test_labelled_questions_teach_what_tells_siblings_apart(
        retriever: Retriever, analyzer: Analyzer) -> None:
    plain = Retriever(retriever.entries, analyzer, Tuning(w_learned=0.0))
    assert plain.rank(NIGHT_PHONE, k=1)[0].entry_id == "func2-offhours-kasan"
    assert retriever.rank(NIGHT_PHONE, k=1)[0].entry_id == "func2-offhours-choices"


def test_too_few_words_leave_the_hand_built_order(retriever: Retriever) -> None:
    """「G-MISが使えない」 gives the classifier nothing to claim; it must not pull a
    prefecture entry over the login one."""
    decision = retriever.decide("G-MISが使えないです")
    assert decision.candidates[0].entry_id == "gmis-login-failed"
    assert decision.route == "gmis_callcenter"


def test_scores_stay_between_zero_and_one(retriever: Retriever) -> None:
    for question in (NIGHT_PHONE, "報告", "あ" * 3000, "🙂"):
        for candidate in retriever.rank(question, k=10):
            assert 0.0 <= candidate.score <= 1.0


def test_held_out_questions_never_train(retriever: Retriever) -> None:
    trained = {text for text, _ in training_examples()}
    held = load_questions("heldout")
    assert held and not trained & {q.text for q in held}
    assert trained == {text for text, _ in retriever.examples}


def test_a_label_for_an_entry_this_knowledge_base_lacks_is_left_out(
        retriever: Retriever, analyzer: Analyzer) -> None:
    """A deployment with its own entries still reads our labelled questions."""
    examples = [*retriever.examples, ("夜は電話番だけです", "no-such-entry")]
    mine = Retriever(retriever.entries, analyzer, examples=examples)
    assert mine.rank(NIGHT_PHONE, k=1)[0].entry_id == "func2-offhours-choices"


def test_kb_eval_asks_each_trained_question_of_a_retriever_fitted_without_it(
        retriever: Retriever) -> None:
    questions = load_questions("all")
    asked: list[str] = []
    for asking, batch in asked_of(retriever, questions):
        trained = {text for text, _ in asking.examples}
        assert not trained & {q.text for q in batch}
        asked += [q.text for q in batch]
    assert sorted(asked) == sorted(q.text for q in questions)


def _entries_and_examples() -> tuple[list[Entry], list[tuple[str, str]]]:
    entries = load_knowledge_base()
    return entries, training_examples()[:400]


def test_fitted_weights_are_cached_and_read_back_alike(tmp_path: Path) -> None:
    analyzer = Analyzer(cache_dir=tmp_path)
    entries, examples = _entries_and_examples()
    first = Retriever(entries, analyzer, examples=examples)
    cached = list(tmp_path.glob("learned-*.npz"))
    assert len(cached) == 1
    again = Retriever(entries, analyzer, examples=examples)
    for question in (NIGHT_PHONE, "締め切りはいつ", "紙で出してもいい？"):
        assert again.rank(question, k=5) == first.rank(question, k=5)
    # Other labels are other weights: a new file, the old one kept for running processes.
    Retriever(entries, analyzer, examples=examples[:300])
    assert len(list(tmp_path.glob("learned-*.npz"))) == 2


def test_a_damaged_cache_file_is_fitted_again(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    analyzer = Analyzer(cache_dir=tmp_path)
    entries, examples = _entries_and_examples()
    fresh = Retriever(entries, analyzer, examples=examples).rank(NIGHT_PHONE, k=3)
    [cached] = tmp_path.glob("learned-*.npz")
    cached.write_bytes(cached.read_bytes()[:500])  # cut short, as by a full disk
    with caplog.at_level(logging.WARNING, logger="knowledge.learned"):
        refitted = Retriever(entries, analyzer, examples=examples)
    assert refitted.rank(NIGHT_PHONE, k=3) == fresh
    assert "unreadable" in caplog.text
