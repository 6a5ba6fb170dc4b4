"""Retrieval with abstention: answer when sure, suggest when close, escalate otherwise.

A wrong confident answer about a legal duty is worse than an escalation, so the
thresholds are deliberately conservative and calibrated on knowledge/eval (tune split).
"""

from __future__ import annotations

import hashlib
import logging
import math
import unicodedata
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Literal

import bm25s
import numpy as np
from rapidfuzz import fuzz, process

from knowledge.learned import LearnedScores, unit_tfidf
from knowledge.model import Entry, Route
from knowledge.normalize import MAX_QUERY_CHARS, Analysed, Analyzer

# bm25s sets its own logger to DEBUG on import; index building is not news.
logging.getLogger("bm25s").setLevel(logging.WARNING)

Action = Literal["answer", "suggest", "escalate"]

# Terms that make a question a G-MIS system question: those go to the call center. G-MIS
# named alone does not: 「G-MISで入力する在宅患者数はいつ時点？」 asks what to report.
SYSTEM_TERMS = frozenset({"ろぐいん", "ぱすわーど", "id", "あかうんと", "めんてなんす",
                          "一時保存"})
# Words any software has: a system question only where the nearest entry is the call
# center's, as for G-MIS named alone (「電子カルテの画面を見せるだけでいい？」 is 患者説明).
SCREEN_TERMS = frozenset({"画面", "えらー"})
# The code that turns a text into the learned scores' tokens: part of their cache key.
_CODE = hashlib.sha256(b"".join(
    (Path(__file__).parent / name).read_bytes()
    for name in ("normalize.py", "retriever.py", "learned.py", "userdict.py"))).hexdigest()
# Texts of entries no labelled question names, at most, among the learned scores' examples.
OTHER_SAMPLE = 2000


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
    """Weights and thresholds, fitted on the tune split only (`main.py kb eval --split tune`):
    the weights by a local search for top-1 (then scaled to sum to 1; the entry profile's, by a
    scan with the others kept in proportion: 0.44 gave 93.6% top-1 against 91.9% without it,
    and the search around it found nothing clearly better), the thresholds for the
    most correct confident answers with at most 1% wrong-confident and at least 95% of
    out-of-scope questions escalated, and the questions the tests pin (tests/test_retrieval.py)
    answered or escalated as they say. The margin to the 2% and 90% targets is deliberate: on
    a set written later by someone who had seen none of this (questions_e), the old 1.5%/92%
    calibration gave 3% wrong-confident and 86% escalation. A wrong legal duty stated with
    confidence costs more than a clerk tapping one of three buttons."""

    answer_at: float = 0.47
    # Long questions (officers' 〜についてご教示ください) score lower by construction: term F1
    # and edit ratio against short phrasings. The bar drops per distinct term the index knows
    # past `long_after` (padding such as a signature does not lower it), down to
    # `answer_floor`; the margin still guards, and a near tie above the bar is suggested.
    long_after: int = 6
    answer_step: float = 0.01
    answer_floor: float = 0.36
    margin: float = 0.04
    # 「2号機能ってなんだっけ？」 scores 0.64 against the 1号/2号 difference entry's 0.62: so
    # high, a smaller lead is sure.
    sure_at: float = 0.60
    sure_margin: float = 0.02
    # handlers.answers answers a clinic with an entry written for prefecture staff (a 事例集
    # case) only from here, and offers it as a button below: on tune, all 14 such answers to
    # clinic-style questions at 0.60 or more were right.
    clinic_answer_at: float = 0.60
    # handlers.qa answers a sentence of a message read alone (「…ですか。また、…でしょうか」)
    # from here; below, only when the whole message also ranks its entry high: alone, it
    # has lost the context the rest gave.
    part_answer_at: float = 0.60
    suggest_at: float = 0.40
    # A question typed in hiragana (a clerk on a phone) matches mostly through readings and edit
    # ratio, so it scores lower. With at most `kana_share` kanji as typed, suggestions start
    # at `kana_suggest_at`; the bar for answering stays where it is.
    kana_share: float = 0.10
    kana_suggest_at: float = 0.32
    # A long question (a clinic's story, an officer's e-mail) spreads its weight over context
    # the entries never mention, so even the right entry scores 0.3–0.5; on tune such
    # questions were ranked right but handed to staff. With at least `long_suggest_after`
    # known terms and one entry clearly ahead (`long_suggest_lead`), buttons start at
    # `long_suggest_at`; long off-topic questions have no such leader. 「どれでもない（担当者
    # に聞く）」 is always one of the buttons.
    long_suggest_after: int = 8
    long_suggest_at: float = 0.30
    long_suggest_lead: float = 0.03
    # Bars the chat applies on top of a decision: an entry read with the question before
    # (「それって病院も？」 after the 歯科 answer) is offered from `follow_up_at`; beside a
    # hand-off, and under a 👎, entries from `related_at` are shown as buttons (chosen on
    # tune for hand-offs; the rates of right buttons and of out-of-scope hand-offs showing any
    # are in docs/benchmarks.md).
    follow_up_at: float = 0.40
    related_at: float = 0.30
    shortlist: int = 60
    entry_shortlist: int = 12
    w_terms: float = 0.135
    w_fuzzy: float = 0.139
    w_cover: float = 0.225
    w_reading: float = 0.056
    w_profile: float = 0.444
    answer_credit: float = 0.7
    min_cover: float = 0.39
    unnamed_factor: float = 0.6  # an entry lacking a name the question uses (_named)
    w_learned: float = 0.5  # per unit of decision value below the classifier's favourite
    learned_ramp: float = 1.0
    # Chosen on tune, each question asked of a classifier fitted without its fold (`kb eval
    # --split tune`): on sets a–t, w 0.3 and 0.5 gave 95.6% top-1 (0.8: 95.4%; without:
    # 94.2%); on a–u, caps 0.06, 0.08 and 0.1 gave 95.3, 95.4 and 95.3%.
    learned_cap: float = 0.08
    # decide() states an answer only when the classifier prefers no other entry by more
    # than this (in score units, as learned_cap). On tune a–zg: 0 gave 30 wrong-confident
    # of 3,472 and 59.2% answered right, 0.03 gave 33 and 59.3%, no gate 43 and 59.7%; 0.03
    # keeps a near tie of the classifier's (「G-MISのIDって医療機能情報のと同じやつ？」)
    # from vetoing an answer the user test pinned.
    doubt_gap: float = 0.03


@dataclass(frozen=True)
class _Query:
    """A query analysed once, as dense vectors over the index's columns, for scoring in bulk."""

    analysed: Analysed
    weight: float  # sum of the idf of its distinct terms, unseen ones included
    features: np.ndarray  # idf per term column, then 1.0 per reading bigram
    n_sounds: int
    profile: np.ndarray  # unit tf-idf vector over the entry profiles' columns


def _spans(first: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """first[i] .. first[i] + counts[i] - 1 for every i, concatenated, and where each i starts."""
    starts = np.cumsum(counts) - counts
    return np.repeat(first - starts, counts) + np.arange(int(counts.sum())), starts


@dataclass(frozen=True)
class _Rows:
    """A sparse matrix stored flat (CSR), so one numpy pass scores many rows against a query."""

    indptr: np.ndarray  # row r is cols[indptr[r]:indptr[r + 1]]
    cols: np.ndarray
    values: np.ndarray | None  # None: every stored value is 1.0

    @classmethod
    def of(cls, rows: list[list[int]], values: list[list[float]] | None = None) -> _Rows:
        indptr = np.zeros(len(rows) + 1, dtype=np.int64)
        indptr[1:] = np.cumsum([len(r) for r in rows])
        n = int(indptr[-1])
        cols = np.fromiter((c for r in rows for c in r), dtype=np.int64, count=n)
        flat = None if values is None else np.fromiter(
            (v for r in values for v in r), dtype=np.float64, count=n)
        return cls(indptr, cols, flat)

    def sizes(self, rows: np.ndarray) -> np.ndarray:
        return self.indptr[rows + 1] - self.indptr[rows]

    def dot(self, rows: np.ndarray, query: np.ndarray) -> np.ndarray:
        """Each given row's dot product with the dense query vector."""
        first = self.indptr[rows]
        counts = self.indptr[rows + 1] - first
        at, starts = _spans(first, counts)
        weights = query[self.cols[at]]
        if self.values is not None:
            weights *= self.values[at]
        # reduceat needs every start in range and gives an empty row its neighbour's value.
        sums = np.add.reduceat(np.append(weights, 0.0), starts)
        return np.where(counts > 0, sums, 0.0)


def _vector(vocab: dict[str, int], weights: Mapping[str, float]) -> np.ndarray:
    """Dense query vector over a vocabulary; keys the index never saw have no column."""
    vector = np.zeros(len(vocab))
    for key, weight in weights.items():
        if (col := vocab.get(key)) is not None:
            vector[col] = weight
    return vector


def _dice(common: np.ndarray, size: int, sizes: np.ndarray) -> np.ndarray:
    """Dice of one set of `size` against many, from intersection sizes; 0 if either is empty."""
    return 2 * common / (size + sizes) if size else np.zeros_like(common)


def _kana_typed(text: str, max_kanji: float) -> bool:
    """Written mostly in hiragana (at least 60% of its letters) with few kanji: not romaji,
    digits or emoji, which get no reading to match on, and not katakana loanwords such as
    ログイン, which are how everyone writes them."""
    kanji = sum("\u4e00" <= c <= "\u9fff" for c in text)
    kana = sum("\u3041" <= c <= "\u309f" for c in text)
    letters = sum(c.isalnum() for c in text)
    return bool(letters) and kana >= 0.6 * letters and kanji <= max_kanji * letters


def bigrams(text: str) -> list[str]:
    return [text[i : i + 2] for i in range(len(text) - 1)] or ([text] if text else [])


class Retriever:
    """Index of every question and phrasing; BM25 shortlist, then an absolute rerank score.

    Scoring runs over all phrasings of the shortlisted entries at once: each phrasing (doc)
    is a row of term and bigram columns, so set overlaps become sparse dot products.
    """

    def __init__(self, entries: list[Entry], analyzer: Analyzer, tuning: Tuning | None = None,
                 examples: Sequence[tuple[str, str]] = ()):
        self.entries = entries
        self.analyzer = analyzer
        self.tuning = tuning or Tuning()
        self.examples = list(examples)
        # Every id a button may carry, including those of entries merged into another.
        self.by_id = {old: e for e in entries for old in e.replaces} | {e.id: e for e in entries}
        # Docs are every text of every entry, in entry order: an entry's docs are contiguous.
        owners = [i for i, entry in enumerate(entries) for _ in entry.texts]
        docs = [analyzer.analyse(text, limit=None) for entry in entries for text in entry.texts]
        self._entry_of = np.array(owners, dtype=np.int64)
        self._n_docs = np.bincount(self._entry_of, minlength=len(entries))
        self._first_doc = np.cumsum(self._n_docs) - self._n_docs
        self._folded = np.array([d.folded for d in docs], dtype=object)  # for rapidfuzz
        self._speller = analyzer.speller(t for e in entries for t in e.texts)
        self._idf = self._idf_table(docs)
        self._unseen_idf = math.log(1 + len(docs))
        self._bm25 = bm25s.BM25()
        self._bm25.index([self._tokens(d) for d in docs], show_progress=False)
        # Entry-level evidence: every term of every phrasing, and (weaker) of the answer.
        asked: list[set[str]] = [set() for _ in entries]
        for i, d in zip(owners, docs, strict=True):
            asked[i].update(d.terms)
        answered = [set(analyzer.analyse(e.answer + (e.detail or ""), limit=None).terms)
                    for e in entries]
        self._mentions = [frozenset(asked[i] | answered[i]) for i in range(len(entries))]
        # The 2号 function each entry is about, by the letter its own question carries
        # (「（ニ）介護サービス等と連携した医療提供」では…), and how a question names each.
        self._function_terms = {c: frozenset(analyzer.analyse(t, limit=None).terms)
                                for c, t in analyzer.functions.items()}
        self._letters = [frozenset(c for c in self._function_terms if f"({c})" in q)
                         for q in (unicodedata.normalize("NFKC", e.question) for e in entries)]
        self._position = {e.id: i for i, e in enumerate(entries)}
        self._entry_bm25 = bm25s.BM25()
        self._entry_bm25.index([[*asked[i], *answered[i]] for i in range(len(entries))],
                               show_progress=False)
        self._term_col: dict[str, int] = {}
        self._sound_col: dict[str, int] = {}
        term_sets = [frozenset(d.terms) for d in docs]
        self._doc_weight = np.array([sum(self.idf(t) for t in s) for s in term_sets])
        terms = [self._columns(self._term_col, s) for s in term_sets]
        sounds = [self._columns(self._sound_col, set(bigrams(d.reading))) for d in docs]
        credit = self.tuning.answer_credit
        evidence = [{**dict.fromkeys(answered[i], credit), **dict.fromkeys(asked[i], 1.0)}
                    for i in range(len(entries))]
        self._evidence = _Rows.of([self._columns(self._term_col, e) for e in evidence],
                                  [list(e.values()) for e in evidence])
        # Rows 2d, 2d+1: doc d's terms and reading bigrams, in one column space (terms, then
        # bigrams), so one pass gets both overlaps of many docs. (Folded bigrams serve the
        # BM25 shortlist; as a rerank feature they fitted to weight 0 and were dropped.)
        t = len(self._term_col)
        self._features = _Rows.of([
            row for d in range(len(docs)) for row in (terms[d], [t + c for c in sounds[d]])
        ])
        # Each entry as one document (all its phrasings): a word every phrasing of one entry
        # uses and its siblings' never do weighs most here, which per-phrasing overlap and
        # phrasing-level idf cannot see (「開業」 sets scope-new-opening apart from the
        # G-MIS account entries that share its other words).
        counts: list[Counter[str]] = [Counter() for _ in entries]
        for i, d in zip(owners, docs, strict=True):
            counts[i].update(self._tokens(d))
        n = len(entries)
        df = Counter(k for c in counts for k in c)
        self._profile_idf = {k: math.log((1 + n) / (1 + m)) + 1 for k, m in df.items()}
        self._profile_col: dict[str, int] = {}
        profiles = [unit_tfidf(c, self._profile_idf) for c in counts]
        self._profiles = _Rows.of([self._columns(self._profile_col, p) for p in profiles],
                                  [list(p.values()) for p in profiles])
        # Every entry text, and each labelled question under every entry it expects (an id
        # this knowledge base does not have is left out: a deployment's own entries).
        labelled = [(text, self._position[entry.id]) for text, entry_id in self.examples
                    if (entry := self.by_id.get(entry_id)) is not None]
        named = {i for _, i in labelled}
        texts = [(self._learned_tokens(d), i) for i, d in zip(owners, docs, strict=True)]
        # What no labelled question names is only ever a counter-example: a sample of it
        # teaches as much, and keeps a grown knowledge base as quick to fit as the real one.
        others = [t for t in texts if t[1] not in named]
        step = max(1, math.ceil(len(others) / OTHER_SAMPLE))
        own = [t for t in texts if t[1] in named] + others[::step]

        def learned() -> list[tuple[list[str], int]]:  # analysed only to fit
            return own + [(self._learned_tokens(self.analyse(text)), i) for text, i in labelled]

        # The labelled questions enter the cache key as written: with the analyser's inputs,
        # its code and this module's, they decide their tokens.
        # (Every entry text shapes the speller a hiragana question is read with.)
        spelled_by = hashlib.sha256("\n".join(t for e in entries for t in e.texts).encode())
        source = [own, labelled, analyzer.fingerprint, _CODE, self.tuning.kana_share,
                  spelled_by.hexdigest()]
        self._learned = (LearnedScores.fit(learned, named, len(entries), analyzer.cache_dir,
                                           source=source)
                         if self.tuning.w_learned and labelled else None)

    @staticmethod
    def _columns(vocab: dict[str, int], keys: Iterable[str]) -> list[int]:
        return [vocab.setdefault(k, len(vocab)) for k in keys]

    @staticmethod
    def _tokens(a: Analysed) -> list[str]:
        """Terms, and the bigrams of the folded text (which carry what the analyser splits or
        misses): what the BM25 shortlist indexes and an entry profile counts. (Reading
        bigrams in the profile fitted no better on tune.)"""
        return [*a.terms, *("~" + b for b in bigrams(a.folded))]

    @staticmethod
    def _learned_tokens(a: Analysed) -> list[str]:
        return [*Retriever._tokens(a), *("@" + b for b in bigrams(a.reading))]

    @staticmethod
    def _idf_table(docs: list[Analysed]) -> dict[str, float]:
        df: Counter[str] = Counter()
        for doc in docs:
            df.update(set(doc.terms))
        n = len(docs)
        return {t: math.log(1 + n / c) for t, c in df.items()}

    def idf(self, term: str) -> float:
        # An unseen term is maximally specific: it counts against a match.
        return self._idf.get(term, self._unseen_idf)

    def _query(self, analysed: Analysed) -> _Query:
        idf = {t: self.idf(t) for t in set(analysed.terms)}
        sounds = set(bigrams(analysed.reading))
        features = np.concatenate([_vector(self._term_col, idf),
                                   _vector(self._sound_col, dict.fromkeys(sounds, 1.0))])
        profile = _vector(self._profile_col,
                          unit_tfidf(Counter(self._tokens(analysed)), self._profile_idf))
        return _Query(analysed, sum(idf.values()), features, len(sounds), profile)

    def analyse(self, query: str) -> Analysed:
        """A question as scored. One typed in hiragana is spelled with the knowledge base's
        own words, after the synonyms (curated, they win: しか いいん is 歯科医院, not しか +
        医院) and the cut to the scoring length."""
        canon = self.analyzer.canonical(query)
        if _kana_typed(query[:MAX_QUERY_CHARS], self.tuning.kana_share):
            canon = self._speller.spell(canon)
        return self.analyzer.analyse_canonical(canon)

    def known_terms(self, query: str) -> set[str]:
        """The question's content words that some entry question or phrasing uses."""
        return {term for term in self.analyse(query).terms if term in self._idf}

    def unknown_terms(self, query: str) -> set[str]:
        """The question's content words that no entry question or phrasing uses."""
        return {term for term in self.analyse(query).terms if term not in self._idf}

    def rank(self, query: str, k: int = 3) -> list[Candidate]:
        """Best entries for the query, one score per entry (its best phrasing)."""
        return self._rank(self.analyse(query), k)

    def _rank(self, analysed: Analysed, k: int) -> list[Candidate]:
        return self._ranked(analysed, k)[0]

    def _ranked(self, analysed: Analysed, k: int) -> tuple[list[Candidate], float, bool]:
        """The best k; the best score any other entry had before the naming rule (a rival
        pushed down only because it lacks the name must not make the top look sure); and
        whether the classifier prefers another entry to the first.

        The order also weighs the learned scores: an entry below the classifier's favourite
        steps back by at most `learned_cap`, enough to re-order near ties. Each candidate
        keeps its hand-built score, on which every bar (answer, buttons, follow-ups) is
        calibrated, so within `learned_cap` a candidate may score above the one before it.
        The rival is the best of the others by that score: the top is answered only when
        both agree it is clearly first."""
        if not analysed.folded or not (shortlist := self._shortlist(analysed)):
            return [], 0.0, False
        q = self._query(analysed)
        raw = self._entry_scores(q, np.array(shortlist))
        scores = self._named(q, shortlist, raw)
        gap = np.minimum(self._learned_gap(analysed, np.array(shortlist)), self.tuning.learned_cap)
        order_by = scores - gap
        # sorted() is stable: equal scores keep shortlist order.
        order = sorted(range(len(shortlist)), key=lambda j: order_by[j], reverse=True)
        rival = float(max((raw[j] for j in order[1:]), default=0.0))
        return ([Candidate(self.entries[shortlist[j]].id, self.entries[shortlist[j]].question,
                           round(float(scores[j]), 4)) for j in order[:k]], round(rival, 4),
                bool(gap[order[0]] > self.tuning.doubt_gap))

    def _learned_gap(self, analysed: Analysed, shortlist: np.ndarray) -> np.ndarray:
        """How far below the classifier's favourite each entry is, in score units."""
        if self._learned is None:
            return np.zeros(len(shortlist))
        learned = self._learned.scores(self._learned_tokens(analysed), shortlist)
        # Decision values below 0 everywhere (「G-MISが使えない」: too few words) mean the
        # classifier claims none of them; its weight fades to nothing at -ramp.
        best = learned.max()
        trust = min(1.0, max(0.0, 1 + best / self.tuning.learned_ramp))
        return self.tuning.w_learned * trust * (best - learned)

    def _named(self, q: _Query, shortlist: list[int], scores: np.ndarray) -> np.ndarray:
        """A question naming another system or institution type (knowledge/words.yaml) is
        not about an entry that never mentions it: 病床機能報告の締め切り is not our deadline.
        Nor is it about an entry that mentions the name but nothing else the question asks:
        consultation-plans names 外来機能報告 (its 協議の場), yet 外来機能報告の締め切り is a
        question about that report's deadline, so the rest of the question must be covered
        as any question's words must (`min_cover`)."""
        named = self.analyzer.named_words.intersection(q.analysed.terms)
        if not named:
            return scores
        t = self.tuning
        unnamed = np.array([not named <= self._mentions[i] for i in shortlist])
        scores = np.where(unnamed, scores * t.unnamed_factor, scores)
        rest = q.features.copy()
        for term in named:
            if (col := self._term_col.get(term)) is not None:
                rest[col] = 0.0
        rest_weight = q.weight - sum(self.idf(term) for term in named)
        if rest_weight <= 0:
            return scores  # the question is only the name
        without_names = replace(q, weight=rest_weight, features=rest)
        return self._short_of_cover(scores, self._cover(without_names, np.array(shortlist)))

    def _short_of_cover(self, scores: np.ndarray, cover: np.ndarray) -> np.ndarray:
        """A question whose specific words the entry never mentions is about something else:
        below `min_cover`, the score shrinks in proportion."""
        min_cover = self.tuning.min_cover
        return np.where(cover >= min_cover, scores, scores * cover / min_cover)

    def _shortlist(self, q: Analysed) -> list[int]:
        """Entries worth scoring, in order of first appearance: best docs, then best entries."""
        vocab = self._bm25.vocab_dict
        tokens = [t for t in self._tokens(q) if t in vocab]
        if not tokens:
            return []
        scores = self._bm25.get_scores(tokens)
        n = min(self.tuning.shortlist, len(self._folded))
        top = np.argpartition(-scores, n - 1)[:n]
        found = self._entry_of[top[scores[top] > 0]].tolist()
        entry_tokens = [t for t in q.terms if t in self._entry_bm25.vocab_dict]
        if entry_tokens:
            escores = self._entry_bm25.get_scores(entry_tokens)
            m = min(self.tuning.entry_shortlist, len(self.entries))
            top = np.argpartition(-escores, m - 1)[:m]
            found += top[escores[top] > 0].tolist()
        return list(dict.fromkeys(found))

    def _entry_scores(self, q: _Query, shortlist: np.ndarray) -> np.ndarray:
        """Each entry's score: the best of its phrasings, all phrasings scored in one pass."""
        t = self.tuning
        counts = self._n_docs[shortlist]
        docs, starts = _spans(self._first_doc[shortlist], counts)
        cover = np.repeat(self._cover(q, shortlist), counts)
        rows = (2 * docs[:, None] + np.arange(2)).ravel()
        common = self._features.dot(rows, q.features).reshape(-1, 2)
        sizes = self._features.sizes(rows).reshape(-1, 2)
        terms = self._term_f1(q, docs, common[:, 0])
        sounds = _dice(common[:, 1], q.n_sounds, sizes[:, 1])
        fuzzy = process.cdist([q.analysed.folded], self._folded[docs], scorer=fuzz.ratio,
                              dtype=np.float64)[0] / 100
        profile = np.repeat(self._profiles.dot(shortlist, q.profile), counts)
        score = (t.w_terms * terms + t.w_fuzzy * fuzzy + t.w_cover * cover
                 + t.w_reading * sounds + t.w_profile * profile)
        return np.maximum.reduceat(self._short_of_cover(score, cover), starts)

    def _cover(self, q: _Query, shortlist: np.ndarray) -> np.ndarray:
        """Share of the query's weight that each entry's phrasings (or, weaker, answer) contain."""
        if not q.weight:
            return np.zeros(len(shortlist))
        return self._evidence.dot(shortlist, q.features) / q.weight  # term columns come first

    def _term_f1(self, q: _Query, docs: np.ndarray, common: np.ndarray) -> np.ndarray:
        """IDF-weighted overlap, symmetric: extra words on either side lower the score."""
        f1 = np.zeros_like(common)
        hit = common > 0  # idf is positive, so both weights are too
        recall, precision = common[hit] / q.weight, common[hit] / self._doc_weight[docs[hit]]
        f1[hit] = 2 * recall * precision / (recall + precision)
        return f1

    def _letters_of(self, candidate: Candidate) -> frozenset[str]:
        return self._letters[self._position[candidate.entry_id]]

    def _each_of(self, analysed: Analysed, named: list[str]) -> list[Candidate]:
        """The best entry on each function named, in the order named."""
        wide = self._rank(analysed, k=20)
        return [c for letter in named
                for c in [next((c for c in wide if self._letters_of(c) == {letter}), None)]
                if c is not None]

    def decide(self, query: str) -> Decision:
        """Answer, suggest the top three, or escalate; system questions route to G-MIS."""
        analysed = self.analyse(query)
        ranked, second, doubted = self._ranked(analysed, k=3)
        terms = set(analysed.terms)
        # A system with its own login (e-Tax, マイナポータル, MAMIS) named without G-MIS: not
        # a question for the G-MIS call center, nor for the G-MIS entries (「MAMISのパスワード
        # を忘れた」 had been offered G-MIS's). 外来機能報告 and the other reports filed in
        # G-MIS are not such systems.
        other_system = bool(self.analyzer.outside_gmis & terms) and "gmis" not in terms
        if other_system:
            ranked = [c for c in ranked if self.by_id[c.entry_id].route != "gmis_callcenter"]
        top = ranked[0].score if ranked else 0.0
        t = self.tuning
        known = {term for term in analysed.terms if term in self._idf}
        answer_at = max(t.answer_floor,
                        t.answer_at - t.answer_step * max(0, len(known) - t.long_after))
        margin = t.sure_margin if top >= t.sure_at else t.margin
        named = [c for c, terms in self._function_terms.items() if terms <= set(analysed.terms)]
        if ranked and 1 < len(named) < len(self._function_terms) and self._letters_of(ranked[0]):
            # 「2号のイとロは何を書く？」 led by the entry on one of them, which answers half
            # the question: each one's own entry is offered. (All four named is a question
            # about 2号 as a whole; one led by another entry keeps its decision.)
            return Decision("suggest", self.by_id[ranked[0].entry_id].route, None, None, top,
                            self._each_of(analysed, named) or ranked)
        # Answered only when the classifier's favourite is the first too (within
        # `doubt_gap`): on tune (sets a–zg) that holds back 10 of the 43 wrong answers and
        # 11 of the 1,673 right ones, offered as buttons instead.
        if ranked and top >= answer_at and top - second >= margin and not doubted:
            entry = self.by_id[ranked[0].entry_id]
            return Decision("answer", entry.route, entry.id, entry.answer, top, ranked)
        suggest_at = min(t.suggest_at, answer_at)
        if _kana_typed(query[:MAX_QUERY_CHARS], t.kana_share):
            suggest_at = min(suggest_at, t.kana_suggest_at)
        if len(known) >= t.long_suggest_after and top - second >= t.long_suggest_lead:
            suggest_at = min(suggest_at, t.long_suggest_at)
        # The first may score up to learned_cap below one after it: any close entry earns
        # the buttons.
        if ranked and max(c.score for c in ranked) >= suggest_at:
            shown = [c for c in ranked if c.score >= suggest_at * 0.8]
            route = self.by_id[ranked[0].entry_id].route
            return Decision("suggest", route, None, None, top, shown)
        # A login question is the G-MIS call center's unless it is another system's. A
        # question that names G-MIS but no login, screen or error goes where its nearest
        # entry would.
        system = bool(SYSTEM_TERMS & terms) and not other_system
        if ("gmis" in terms or SCREEN_TERMS & terms) and not system and ranked:
            system = self.by_id[ranked[0].entry_id].route == "gmis_callcenter"
        route: Route = "gmis_callcenter" if system else "prefecture"
        return Decision("escalate", route, None, None, top, ranked)
