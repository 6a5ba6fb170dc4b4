"""Retrieval with abstention: answer when sure, suggest when close, escalate otherwise.

A wrong confident answer about a legal duty is worse than an escalation, so the
thresholds are deliberately conservative and calibrated on knowledge/eval (tune split).
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from typing import Literal

import bm25s
import numpy as np
from rapidfuzz import fuzz

from knowledge.model import Entry, Route
from knowledge.normalize import Analysed, Analyzer

# bm25s sets its own logger to DEBUG on import; index building is not news.
logging.getLogger("bm25s").setLevel(logging.WARNING)

Action = Literal["answer", "suggest", "escalate"]

# Terms that make a question a G-MIS system question: those go to the call center.
SYSTEM_TERMS = frozenset({"gmis", "ろぐいん", "ぱすわーど", "id", "あかうんと", "画面", "えらー"})


@dataclass(frozen=True)
class Candidate:
    entry_id: str
    question: str
    score: float


@dataclass(frozen=True)
class Decision:
    """The public `ask --json` contract: keep these fields stable."""

    action: Action
    route: Route
    entry_id: str | None
    answer: str | None
    score: float
    candidates: list[Candidate] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True)
class Tuning:
    """Weights and thresholds; calibrated with `main.py kb eval` on the tune split."""

    answer_at: float = 0.62
    margin: float = 0.04
    suggest_at: float = 0.40
    shortlist: int = 60
    entry_shortlist: int = 12
    w_terms: float = 0.30
    w_bigrams: float = 0.10
    w_fuzzy: float = 0.10
    w_cover: float = 0.40
    w_reading: float = 0.1
    answer_credit: float = 0.5
    min_cover: float = 0.6


@dataclass(frozen=True)
class _Doc:
    entry_index: int
    analysed: Analysed
    bigrams: frozenset[str]
    reading_bigrams: frozenset[str]
    terms: frozenset[str]
    weight: float = 0.0  # sum of the idf of its distinct terms


@dataclass(frozen=True)
class _Query:
    """A query analysed once, with everything scoring needs per phrasing precomputed."""

    analysed: Analysed
    idf: dict[str, float]
    weight: float
    bigrams: frozenset[str]
    reading_bigrams: frozenset[str]


def _dice(a: set[str] | frozenset[str], b: frozenset[str]) -> float:
    return 2 * len(a & b) / (len(a) + len(b)) if a and b else 0.0


def bigrams(text: str) -> list[str]:
    return [text[i : i + 2] for i in range(len(text) - 1)] or ([text] if text else [])


class Retriever:
    """Index of every question and phrasing; BM25 shortlist, then an absolute rerank score."""

    def __init__(self, entries: list[Entry], analyzer: Analyzer, tuning: Tuning | None = None):
        self.entries = entries
        self.analyzer = analyzer
        self.tuning = tuning or Tuning()
        self.by_id = {e.id: e for e in entries}
        self._docs = [
            self._doc(i, analyzer.analyse(text))
            for i, entry in enumerate(entries)
            for text in entry.texts
        ]
        self._idf = self._idf_table()
        self._unseen_idf = math.log(1 + len(self._docs))
        self._docs = [replace(d, weight=sum(self.idf(t) for t in d.terms)) for d in self._docs]
        self._bm25 = bm25s.BM25()
        self._bm25.index([self._bm25_tokens(d.analysed) for d in self._docs], show_progress=False)
        # Entry-level evidence: every term of every phrasing, and (weaker) of the answer.
        self._asked: list[frozenset[str]] = [frozenset() for _ in entries]
        for doc in self._docs:
            self._asked[doc.entry_index] |= frozenset(doc.analysed.terms)
        self._answered = [
            frozenset(analyzer.analyse(e.answer + (e.detail or "")).terms) for e in entries
        ]
        self._docs_of: list[list[_Doc]] = [[] for _ in entries]
        for doc in self._docs:
            self._docs_of[doc.entry_index].append(doc)
        self._entry_bm25 = bm25s.BM25()
        self._entry_bm25.index(
            [[*self._asked[i], *self._answered[i]] for i in range(len(entries))],
            show_progress=False,
        )

    @staticmethod
    def _doc(index: int, analysed: Analysed) -> _Doc:
        return _Doc(index, analysed, frozenset(bigrams(analysed.folded)),
                    frozenset(bigrams(analysed.reading)), frozenset(analysed.terms))

    @staticmethod
    def _bm25_tokens(a: Analysed) -> list[str]:
        return [*a.terms, *("~" + b for b in bigrams(a.folded))]

    def _idf_table(self) -> dict[str, float]:
        df: Counter[str] = Counter()
        for doc in self._docs:
            df.update(set(doc.analysed.terms))
        n = len(self._docs)
        return {t: math.log(1 + n / c) for t, c in df.items()}

    def idf(self, term: str) -> float:
        # An unseen term is maximally specific: it counts against a match.
        return self._idf.get(term, self._unseen_idf)

    def _query(self, analysed: Analysed) -> _Query:
        idf = {t: self.idf(t) for t in set(analysed.terms)}
        return _Query(analysed, idf, sum(idf.values()), frozenset(bigrams(analysed.folded)),
                      frozenset(bigrams(analysed.reading)))

    def rank(self, query: str, k: int = 3) -> list[Candidate]:
        """Best entries for the query, one score per entry (its best phrasing)."""
        return self._rank(self.analyzer.analyse(query), k)

    def _rank(self, analysed: Analysed, k: int) -> list[Candidate]:
        if not analysed.folded:
            return []
        q = self._query(analysed)
        best: dict[int, float] = {}
        for doc in self._shortlist(analysed):
            i = doc.entry_index
            if i in best:
                continue
            cover = self._cover(q, i)
            best[i] = max(self._score(q, d, cover) for d in self._docs_of[i])
        ranked = sorted(best.items(), key=lambda kv: kv[1], reverse=True)[:k]
        return [Candidate(self.entries[i].id, self.entries[i].question, round(s, 4)) for i, s in ranked]

    def _shortlist(self, q: Analysed) -> list[_Doc]:
        vocab = self._bm25.vocab_dict
        tokens = [t for t in self._bm25_tokens(q) if t in vocab]
        if not tokens:
            return []
        scores = self._bm25.get_scores(tokens)
        n = min(self.tuning.shortlist, len(self._docs))
        top = np.argpartition(-scores, n - 1)[:n]
        docs = [self._docs[i] for i in top if scores[i] > 0]
        entry_tokens = [t for t in q.terms if t in self._entry_bm25.vocab_dict]
        if entry_tokens:
            escores = self._entry_bm25.get_scores(entry_tokens)
            m = min(self.tuning.entry_shortlist, len(self.entries))
            docs += [self._docs_of[i][0] for i in np.argpartition(-escores, m - 1)[:m]
                     if escores[i] > 0]
        return docs

    def _score(self, q: _Query, doc: _Doc, cover: float) -> float:
        t = self.tuning
        terms = self._term_f1(q, doc)
        grams = _dice(q.bigrams, doc.bigrams)
        sounds = _dice(q.reading_bigrams, doc.reading_bigrams)
        fuzzy = fuzz.ratio(q.analysed.folded, doc.analysed.folded) / 100
        score = t.w_terms * terms + t.w_bigrams * grams + t.w_fuzzy * fuzzy + t.w_cover * cover
        score += t.w_reading * sounds
        # A question whose specific words the entry never mentions is about something else.
        return score if cover >= t.min_cover else score * cover / t.min_cover

    def _cover(self, q: _Query, entry_index: int) -> float:
        """Share of the query's weight that the entry's phrasings (or, weaker, answer) contain."""
        if not q.weight:
            return 0.0
        asked, answered = self._asked[entry_index], self._answered[entry_index]
        credit = self.tuning.answer_credit
        found = sum(w * (1.0 if t in asked else credit if t in answered else 0.0)
                    for t, w in q.idf.items())
        return found / q.weight

    @staticmethod
    def _term_f1(q: _Query, doc: _Doc) -> float:
        """IDF-weighted overlap, symmetric: extra words on either side lower the score."""
        if not q.weight or not doc.weight:
            return 0.0
        common = sum(w for t, w in q.idf.items() if t in doc.terms)
        if common == 0:
            return 0.0
        recall, precision = common / q.weight, common / doc.weight
        return 2 * recall * precision / (recall + precision)

    def decide(self, query: str) -> Decision:
        """Answer, suggest the top three, or escalate; system questions route to G-MIS."""
        analysed = self.analyzer.analyse(query)
        ranked = self._rank(analysed, k=3)
        top = ranked[0].score if ranked else 0.0
        second = ranked[1].score if len(ranked) > 1 else 0.0
        t = self.tuning
        if ranked and top >= t.answer_at and top - second >= t.margin:
            entry = self.by_id[ranked[0].entry_id]
            return Decision("answer", entry.route, entry.id, entry.answer, top, ranked)
        if ranked and top >= t.suggest_at:
            shown = [c for c in ranked if c.score >= t.suggest_at * 0.8]
            route = self.by_id[ranked[0].entry_id].route
            return Decision("suggest", route, None, None, top, shown)
        system = bool(SYSTEM_TERMS & set(analysed.terms))
        route: Route = "gmis_callcenter" if system else "prefecture"
        return Decision("escalate", route, None, None, top, ranked)
