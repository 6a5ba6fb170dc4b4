"""A linear classifier over the entries, learned from labelled questions.

The hand-built score treats a word the same in every entry it appears in; a classifier
fitted on the entries' own texts and on questions labelled with their entry learns which
words tell siblings apart. On a blind set it raised top-1 from 82.9 to 91.5%
(docs/benchmarks.md). It only re-orders near ties (Retriever._ranked): every candidate
keeps the hand-built score the thresholds were calibrated on.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import json
import logging
import math
import os
import tempfile
import zipfile
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from knowledge.userdict import cache_dirs, cached_file, forget_old, writable_cache

logger = logging.getLogger(__name__)

FORMAT = 1  # of the cached file: a change of what is stored must change the name
# How the weights are fitted, besides C: part of the cache key, so a change here refits.
# (tf-idf is always sublinear: `scores` weighs a question with unit_tfidf.)
FIT = {"random_state": 0}


def unit_tfidf(counts: Counter[str], idf: Mapping[str, float]) -> dict[str, float]:
    """Sublinear tf-idf of the keys idf knows, scaled to unit length (scikit-learn's
    TfidfVectorizer with sublinear_tf, given the same idf). A query's unseen keys are left
    out, not counted against it: the retriever's term features already do that, and counting
    them here too cost more in-scope answers than it won escalations (set p)."""
    weights = {k: (1 + math.log(n)) * idf[k] for k, n in counts.items() if k in idf}
    norm = math.sqrt(sum(w * w for w in weights.values())) or 1.0
    return {k: w / norm for k, w in weights.items()}


def _identity(tokens: list[str]) -> list[str]:
    return tokens


class LearnedScores:
    """One-vs-rest linear SVM over sparse tf-idf of the retriever's tokens.

    Only entries some labelled question names get a class of their own; the texts of the
    rest share one class that nobody is ranked by (they still teach the others what they
    are not).
    """

    def __init__(self, vocabulary: list[str], idf: np.ndarray, row: np.ndarray,
                 coef: np.ndarray, bias: np.ndarray) -> None:
        self._vocabulary = vocabulary
        self._col = {term: i for i, term in enumerate(vocabulary)}
        self._idf = dict(zip(vocabulary, idf.tolist(), strict=True))
        self._row = row  # each entry's row in coef, -1 for one without a class
        self._coef = coef
        self._bias = bias

    @classmethod
    def fit(cls, examples: Callable[[], Sequence[tuple[list[str], int]]], labelled: set[int],
            n_entries: int, cache_dir: Path | None = None, c: float = 1.0, *,
            source: object) -> LearnedScores:
        """Fitted on the (tokens, entry) pairs `examples` makes, or read back from the cache
        when the same `source` was fitted before: fitting is most of a start. `source` is
        whatever decides the pairs entirely, cheaper to have than the pairs themselves
        (analysing every labelled question was most of a cached start)."""
        key = hashlib.sha256(json.dumps(
            [FORMAT, c, FIT, n_entries, sorted(labelled), source,
             importlib.metadata.version("scikit-learn")], ensure_ascii=False).encode()
        ).hexdigest()[:16]
        name = f"learned-{key}.npz"
        places = cache_dirs(cache_dir)
        if (found := cached_file(places, name)) is not None:
            try:
                return cls._read(found, n_entries)
            except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
                logger.warning("cached learned scores %s unreadable (%s): fitting again",
                               found, exc)
        scores = cls._fitted(examples(), labelled, n_entries, c)
        if (directory := writable_cache(places)) is not None:
            scores._write(directory / name)
        else:
            logger.warning("no writable cache folder among %s: the learned scores are fitted "
                           "at every start", ", ".join(map(str, places)))
        return scores

    @classmethod
    def _fitted(cls, examples: Sequence[tuple[list[str], int]], labelled: set[int],
                n_entries: int, c: float) -> LearnedScores:
        # Imported here: a start that finds its weights cached scores without scikit-learn
        # (loading it costs most of a second, in every CLI command too).
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.svm import LinearSVC

        vectorizer = TfidfVectorizer(analyzer=_identity, sublinear_tf=True)
        x = vectorizer.fit_transform([tokens for tokens, _ in examples])
        y = np.array([label if label in labelled else -1 for _, label in examples])
        row = np.full(n_entries, -1, dtype=np.int64)
        coef = np.zeros((0, x.shape[1]), dtype=np.float32)
        bias = np.zeros(0, dtype=np.float32)
        if len(np.unique(y)) > 2:  # below that there is nothing to tell apart
            svm = LinearSVC(C=c, random_state=FIT["random_state"]).fit(x, y)
            own = svm.classes_ >= 0
            row[svm.classes_[own]] = np.arange(int(own.sum()))
            coef = svm.coef_[own].astype(np.float32)
            bias = svm.intercept_[own].astype(np.float32)
        vocabulary = sorted(vectorizer.vocabulary_, key=vectorizer.vocabulary_.get)
        return cls(vocabulary, vectorizer.idf_, row, coef, bias)

    def _write(self, path: Path) -> None:
        """Written under a temporary name and renamed: a process starting meanwhile never
        reads half a file. Readable by all, as the compiled dictionary beside it is, so
        another service user sharing CACHE_DIR uses it too. A cache that cannot be written
        only costs the next start its time."""
        temporary: str | None = None
        try:
            with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".npz.part",
                                             delete=False) as out:
                temporary = out.name
                np.savez(out, vocabulary=np.array(self._vocabulary, dtype=str),
                         idf=np.array([self._idf[t] for t in self._vocabulary]),
                         row=self._row, coef=self._coef, bias=self._bias)
            os.chmod(temporary, 0o644)
            os.replace(temporary, path)
            forget_old(path, "learned-*.npz")
        except OSError as exc:
            logger.warning("learned scores not cached in %s: %s", path.parent, exc)
            if temporary is not None:
                with contextlib.suppress(OSError):
                    os.unlink(temporary)

    @classmethod
    def _read(cls, path: Path, n_entries: int) -> LearnedScores:
        with path.open("rb") as file:
            data = np.load(file, allow_pickle=False)
            if not isinstance(data, np.lib.npyio.NpzFile):
                raise ValueError("not an archive of arrays")
            vocabulary, idf, row = [str(t) for t in data["vocabulary"]], data["idf"], data["row"]
            coef, bias = data["coef"], data["bias"]
        # A file of other shapes would fail at the first question, not here.
        width = len(vocabulary)
        if (idf.shape != (width,) or coef.ndim != 2 or coef.shape[1] != width
                or bias.shape != (coef.shape[0],) or row.shape != (n_entries,)
                or row.max(initial=-1) >= coef.shape[0]):
            raise ValueError("arrays of unexpected shapes")
        return cls(vocabulary, idf, row, coef, bias)

    def scores(self, tokens: list[str], rows: np.ndarray) -> np.ndarray:
        """Decision values of the given entries; an entry no labelled question names gets
        the best value of the others (the classifier has no opinion on it)."""
        at = self._row[rows]
        known = at >= 0
        if not known.any():
            return np.zeros(len(rows))
        weights = unit_tfidf(Counter(tokens), self._idf)
        cols = np.fromiter((self._col[t] for t in weights), dtype=np.int64, count=len(weights))
        values = np.fromiter(weights.values(), dtype=np.float32, count=len(weights))
        own = self._coef[at[known]][:, cols] @ values + self._bias[at[known]]
        out = np.full(len(rows), float(own.max()))
        out[known] = own
        return out
