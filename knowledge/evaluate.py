"""`kb eval`: retrieval quality on the labelled questions, against two baselines.

The questions and their split are knowledge/labelled.py's; tuning looks only at `tune`, and
a tune question is asked of a retriever fitted without it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import bm25s
from rapidfuzz import fuzz, process

from knowledge.labelled import LABELLED_DIR, Question, bucket, load_questions, same_text
from knowledge.loader import KnowledgeBaseError, Problem
from knowledge.model import Entry
from knowledge.normalize import Analyzer
from knowledge.retriever import Decision, Retriever, bigrams

Ranker = Callable[[str], list[str]]


def check_labels(questions: list[Question], retriever: Retriever) -> None:
    """Every expected id must be an entry's current id: a typo or a merged id would count
    as a miss forever, without a word."""
    current = {e.id for e in retriever.entries}
    problems = []
    for q in questions:
        for entry_id in sorted(q.expect - current):
            merged = retriever.by_id.get(entry_id)
            hint = f"was merged into {merged.id}; use that id" if merged else "is no entry"
            problems.append(Problem(q.file, q.line, None, "expect", f"{entry_id} {hint}"))
    if problems:
        raise KnowledgeBaseError(problems)


@dataclass
class Scores:
    name: str
    in_scope: int = 0
    top1: int = 0
    top3: int = 0
    rr: float = 0.0
    out_scope: int = 0
    escalated: int = 0
    wrong_confident: int = 0
    total: int = 0

    def add_ranking(self, q: Question, ranked: list[str]) -> None:
        self.total += 1
        if not q.expect:
            self.out_scope += 1
            return
        self.in_scope += 1
        self.top1 += bool(ranked[:1]) and ranked[0] in q.expect
        self.top3 += any(e in q.expect for e in ranked[:3])
        self.rr += next((1 / (i + 1) for i, e in enumerate(ranked[:10]) if e in q.expect), 0.0)

    def add_decision(self, q: Question, d: Decision) -> None:
        if not q.expect:
            self.escalated += d.action == "escalate"
        if d.action == "answer" and d.entry_id not in q.expect:
            self.wrong_confident += 1

    def row(self, with_decisions: bool) -> str:
        n, o = max(self.in_scope, 1), max(self.out_scope, 1)
        cols = [f"{self.name:28}", f"{self.top1 / n:7.1%}", f"{self.top3 / n:7.1%}",
                f"{self.rr / n:6.3f}", f"{1 - self.top1 / n:7.1%}"]
        if with_decisions:
            cols += [f"{self.wrong_confident / max(self.total, 1):8.1%}",
                     f"{self.escalated / o:8.1%}"]
        else:
            cols += [f"{'-':>8}", f"{'-':>8}"]
        return " ".join(cols)


def bm25_bigram_baseline(entries: list[Entry]) -> Ranker:
    docs = [(e.id, t) for e in entries for t in e.texts]
    model = bm25s.BM25()
    model.index([bigrams(t) for _, t in docs], show_progress=False)

    def rank(query: str) -> list[str]:
        tokens = [b for b in bigrams(query) if b in model.vocab_dict]
        if not tokens:
            return []
        scores = model.get_scores(tokens)
        order = scores.argsort()[::-1]
        return _dedupe(docs[i][0] for i in order[:50] if scores[i] > 0)

    return rank


def wratio_baseline(entries: list[Entry]) -> Ranker:
    docs = [(e.id, t) for e in entries for t in e.texts]
    texts = [t for _, t in docs]

    def rank(query: str) -> list[str]:
        hits = process.extract(query, texts, scorer=fuzz.WRatio, limit=30)
        return _dedupe(docs[i][0] for _, _, i in hits)

    return rank


def _dedupe(ids: object) -> list[str]:
    seen: list[str] = []
    for i in ids:  # type: ignore[attr-defined]
        if i not in seen:
            seen.append(i)
    return seen


TRAINED_FOLDS = 3


def _fold(text: str) -> int:
    return bucket("fold:" + same_text(text), TRAINED_FOLDS)


def asked_of(retriever: Retriever,
             questions: list[Question]) -> Iterator[tuple[Retriever, list[Question]]]:
    """Which retriever asks which questions. One the learned scores were fitted on would
    score as a training example, so it is asked of a retriever fitted without its fold:
    the tune figures are then a test too, and tuning on them stays fair."""
    trained = {text for text, _ in retriever.examples}
    if unseen := [q for q in questions if q.text not in trained]:
        yield retriever, unseen
    for fold in range(TRAINED_FOLDS):
        if asked := [q for q in questions
                     if q.text in trained and _fold(q.text) == fold]:
            kept = [ex for ex in retriever.examples if _fold(ex[0]) != fold]
            yield Retriever(retriever.entries, retriever.analyzer, retriever.tuning, kept), asked


def evaluate(retriever: Retriever, questions: list[Question]) -> list[Scores]:
    ours = Scores("ours (answer/suggest/escalate)")
    for asking, asked in asked_of(retriever, questions):
        for q in asked:
            ours.add_ranking(q, [c.entry_id for c in asking.rank(q.text, k=10)])
            ours.add_decision(q, asking.decide(q.text))
    results = [ours]
    for name, make in (("baseline: BM25 char bigrams", bm25_bigram_baseline),
                       ("baseline: rapidfuzz WRatio", wratio_baseline)):
        ranker, scores = make(retriever.entries), Scores(name)
        for q in questions:
            scores.add_ranking(q, ranker(q.text))
        results.append(scores)
    return results


PHRASING_FOLDS = 5


def phrasing_holdout(entries: list[Entry], analyzer: Analyzer,
                     examples: Sequence[tuple[str, str]] = (),
                     ) -> tuple[int, int, Counter[tuple[str, str]]]:
    """Each phrasing asked of an index built without its fold: (right, asked, confusions).
    With `examples`, the learned scores are fitted for each fold as the bot's are (without
    the held phrasings), so the figure is the bot's own.

    Needs no labelled questions, so it measures the knowledge base itself: a phrasing that
    goes to another entry once it is not indexed marks two entries that overlap, or an
    entry whose other phrasings do not cover that way of asking. Canonical questions stay
    indexed, so every entry keeps at least one text."""
    right = asked = 0
    confusions: Counter[tuple[str, str]] = Counter()
    for fold in range(PHRASING_FOLDS):
        held = [(e.id, p) for e in entries for p in e.phrasings
                if bucket(p, PHRASING_FOLDS) == fold]
        kept = [e.model_copy(update={"phrasings": [p for p in e.phrasings
                                                   if bucket(p, PHRASING_FOLDS) != fold]})
                for e in entries]
        retriever = Retriever(kept, analyzer, examples=examples)
        for entry_id, text in held:
            top = retriever.rank(text, k=1)
            got = top[0].entry_id if top else "-"
            asked += 1
            right += got == entry_id
            if got != entry_id:
                confusions[(entry_id, got)] += 1
    return right, asked, confusions


def run_phrasing_holdout(entries: list[Entry], analyzer: Analyzer,
                         examples: Sequence[tuple[str, str]] = ()) -> int:
    right, asked, confusions = phrasing_holdout(entries, analyzer, examples)
    print(f"phrasings held out ({PHRASING_FOLDS} folds): top-1 {right / max(asked, 1):.1%} "
          f"of {asked}")
    print("most frequent confusions (phrasing of -> answered with):")
    for (want, got), n in confusions.most_common(15):
        print(f"  {n:3}  {want} -> {got}")
    return 0


def run_eval(retriever: Retriever, split: str, show_misses: bool = False,
             directory: Path = LABELLED_DIR) -> int:
    questions = load_questions(split, directory)
    if not questions:
        print(f"no labelled questions found in {directory}")
        return 1
    check_labels(questions, retriever)
    results = evaluate(retriever, questions)
    ins = sum(1 for q in questions if q.expect)
    print(f"split: {split}  questions: {len(questions)} ({ins} in scope, "
          f"{len(questions) - ins} out of scope)  entries: {len(retriever.entries)}")
    print(f"{'':28} {'top-1':>7} {'top-3':>7} {'MRR':>6} {'error':>7} {'wrongconf':>8} "
          f"{'oos-esc':>8}")
    for i, s in enumerate(results):
        print(s.row(with_decisions=i == 0))
    best_baseline = min(1 - s.top1 / max(s.in_scope, 1) for s in results[1:])
    ours = 1 - results[0].top1 / max(results[0].in_scope, 1)
    print(f"error ratio ours / best baseline: {ours / best_baseline if best_baseline else 0:.2f}")
    if show_misses:
        print_misses(retriever, questions)
    return 0


def print_misses(retriever: Retriever, questions: list[Question]) -> None:
    for asking, asked in asked_of(retriever, questions):
        for q in asked:
            d = asking.decide(q.text)
            top = d.candidates[0].entry_id if d.candidates else None
            wrong = (q.expect and top not in q.expect) or (d.action == "answer" and d.entry_id
                                                           not in q.expect)
            if wrong or (not q.expect and d.action != "escalate"):
                print(f"{d.action:8} {d.score:.2f} {q.text}  expect={sorted(q.expect)} got="
                      f"{[(c.entry_id, c.score) for c in d.candidates]}")
