"""The learned scores: labelled questions teach the ranking, the held-out split never does,
and the fitted weights are cached without ever being trusted blindly."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from knowledge.evaluate import asked_of
from knowledge.labelled import Question, load_questions, training_examples
from knowledge.loader import KnowledgeBaseError, load_knowledge_base
from knowledge.model import Entry
from knowledge.normalize import SYNONYMS_FILE, Analyzer
from knowledge.retriever import Candidate, Retriever, Tuning

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


def test_the_learned_scores_re_order_and_never_re_score(
        retriever: Retriever, analyzer: Analyzer) -> None:
    """Every bar is calibrated on the hand-built score: a candidate shows that score, the
    same as without the classifier, whatever place the classifier gives it."""
    plain = Retriever(retriever.entries, analyzer, Tuning(w_learned=0.0))
    for question in (NIGHT_PHONE, "報告", "あ" * 3000, "🙂"):
        before = {c.entry_id: c.score for c in plain.rank(question, k=60)}
        for candidate in retriever.rank(question, k=10):
            assert 0.0 <= candidate.score <= 1.0
            assert candidate.score == before[candidate.entry_id]


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
    # The key holds the labelled questions as written, so it also holds what reads them:
    # another synonym list tokenises them otherwise, and is fitted anew, not read stale.
    synonyms = tmp_path / "synonyms.yaml"
    synonyms.write_text(SYNONYMS_FILE.read_text(encoding="utf-8")
                        + "\n夜間対応:\n  - 夜の電話番\n", encoding="utf-8")
    other = Analyzer(synonyms_file=synonyms, cache_dir=tmp_path)
    assert other.fingerprint != analyzer.fingerprint
    Retriever(entries, other, examples=examples)
    assert len(list(tmp_path.glob("learned-*.npz"))) == 3


def _fitted_once(cache: Path) -> tuple[Callable[[], Retriever], list[Candidate], Path]:
    """A way to build the retriever on `cache`, its first ranking, and the file it cached."""
    analyzer = Analyzer(cache_dir=cache)
    entries, examples = _entries_and_examples()

    def build() -> Retriever:
        return Retriever(entries, analyzer, examples=examples)
    fresh = build().rank(NIGHT_PHONE, k=3)
    [cached] = cache.glob("learned-*.npz")
    return build, fresh, cached


def test_a_damaged_cache_file_is_fitted_again(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    build, fresh, cached = _fitted_once(tmp_path)
    cached.write_bytes(cached.read_bytes()[:500])  # cut short, as by a full disk
    with caplog.at_level(logging.WARNING, logger="knowledge.learned"):
        refitted = build()
    assert refitted.rank(NIGHT_PHONE, k=3) == fresh
    assert "unreadable" in caplog.text


def test_an_entry_close_behind_the_first_still_earns_the_buttons(retriever: Retriever) -> None:
    """The learned order may put first an entry that scores a little below the next; the
    question is then still offered as buttons, never handed to staff for want of a score."""
    decision = retriever.decide(NIGHT_PHONE)
    assert decision.action == "suggest"
    assert decision.candidates[0].entry_id == "func2-offhours-choices"
    assert "func2-offhours-kasan" in [c.entry_id for c in decision.candidates]


def test_an_answer_the_classifier_doubts_is_offered_not_stated(retriever: Retriever) -> None:
    """「どれくらいかかりますか」 may ask how long an account takes or how long the report
    does: the hand-built score alone states the first; the classifier prefers the second, so
    both are offered instead."""
    plain = Retriever(retriever.entries, retriever.analyzer, retriever.tuning)  # no labels
    assert plain.decide("どれくらいかかりますか").action == "answer"
    doubted = retriever.decide("どれくらいかかりますか")
    assert doubted.action == "suggest" and doubted.entry_id is None
    assert {"method-proxy-account-application", "method-time-needed"} <= {
        c.entry_id for c in doubted.candidates}


def test_a_tune_question_that_is_a_held_out_one_written_otherwise_never_trains(
        tmp_path: Path) -> None:
    """「ｺｰﾃﾞｨﾈｰﾀｰ 役割」 and 「コーディネーターの役割？」 are one question to the analyser:
    one in held-out keeps its twin out of training."""
    base = "コーディネーターの役割は何ですか"
    variants = [base, base.replace("コーディネーター", "ｺｰﾃﾞｨﾈｰﾀｰ"), f"{base}？", f"{base}。",
                base.replace("の", " の "), f"  {base}  !", f"{base}??", f"【{base}】"]
    held = [v for v in variants if Question(v, frozenset(), "").split == "heldout"]
    tune = [v for v in variants if Question(v, frozenset(), "").split == "tune"]
    assert held and tune  # the raw texts fall on both sides of the split
    lines = "".join(f"- q: '{v}'\n  expect: [consultation-coordinator]\n" for v in variants)
    (tmp_path / "twins.yaml").write_text("questions:\n" + lines, encoding="utf-8")
    (tmp_path / "other.yaml").write_text(
        "questions:\n- q: 紙で出してもいいですか\n  expect: [method-paper-allowed]\n",
        encoding="utf-8")
    assert {text for text, _ in training_examples(tmp_path)} <= {"紙で出してもいいですか"}


def test_a_mistyped_labelled_folder_is_an_error_not_silence(tmp_path: Path) -> None:
    with pytest.raises(KnowledgeBaseError) as raised:
        training_examples(tmp_path / "evl")
    assert "no such folder" in str(raised.value.problems[0].message)


def test_the_cached_weights_are_readable_by_other_users_and_checked_when_read(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    build, fresh, cached = _fitted_once(tmp_path)
    assert cached.stat().st_mode & 0o777 == 0o644
    assert not list(tmp_path.glob("*.part"))
    with np.load(cached) as data:
        arrays = {name: data[name] for name in data.files}
    np.savez(cached, **{**arrays, "row": arrays["row"][:-1]})  # another knowledge base's
    with caplog.at_level(logging.WARNING, logger="knowledge.learned"):
        assert build().rank(NIGHT_PHONE, k=3) == fresh
    assert "unexpected shapes" in caplog.text
