"""Labelled questions: questions as people ask them, each with the entries that answer it.

They live in knowledge/eval/*.yaml (`q`, `expect`: list of acceptable entry ids, empty for
out of scope). A hash of the text puts each in tune (two thirds) or held-out (one third) for
good. Tune questions train the retriever's learned scores (the bot loads them at every
start); held-out ones only ever test it (`kb eval`, knowledge/evaluate.py).
"""

from __future__ import annotations

import hashlib
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from knowledge.loader import KnowledgeBaseError, Problem, item_lines, read_yaml

LABELLED_DIR = Path(__file__).resolve().parent / "eval"


@dataclass(frozen=True)
class Question:
    text: str
    expect: frozenset[str]
    style: str
    file: str = ""
    line: int | None = None

    @property
    def split(self) -> str:
        return "heldout" if bucket(self.text, 3) == 0 else "tune"


def bucket(text: str, n: int) -> int:
    """A fixed bucket of 0..n-1 for a text, the same on every machine and run (unlike hash())."""
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16) % n


def load_questions(split: str, directory: Path = LABELLED_DIR) -> list[Question]:
    """The labelled questions of one split ("all" for both); a malformed item raises
    KnowledgeBaseError naming its file and line rather than skewing the numbers."""
    if not directory.is_dir():  # a mistyped LABELLED_DIR must not turn learning off unseen
        raise KnowledgeBaseError([Problem(str(directory), None, None, None,
                                          "no such folder of labelled questions")])
    out: list[Question] = []
    problems: list[Problem] = []
    for path in sorted(directory.glob("*.yaml")):
        data, node = read_yaml(path)
        items = data.get("questions") if isinstance(data, dict) else None
        if not isinstance(items, list):
            problems.append(Problem(str(path), None, None, "questions",
                                    "needs a list of questions under 'questions'"))
            continue
        lines = item_lines(node, "questions")
        for i, item in enumerate(items):
            line = lines[i] if i < len(lines) else None
            text = item.get("q") if isinstance(item, dict) else None
            expect = item.get("expect") if isinstance(item, dict) else None
            if not isinstance(text, str) or not text.strip():
                problems.append(Problem(str(path), line, None, "q", "needs the question's text"))
            elif not (expect is None or isinstance(expect, list)
                      and all(isinstance(x, str) for x in expect)):
                problems.append(Problem(str(path), line, None, "expect",
                                        "a list of entry ids, [] for out of scope"))
            else:
                q = Question(text, frozenset(expect or []), str(item.get("style", "")),
                             str(path), line)
                if split == "all" or q.split == split:
                    out.append(q)
    if problems:
        raise KnowledgeBaseError(problems)
    return out


def same_text(text: str) -> str:
    """A question as the analyser sees it, near enough: width, case, spaces and punctuation
    do not make 「ｺｰﾃﾞｨﾈｰﾀｰ 役割」 another question than 「コーディネーター役割」."""
    return "".join(c for c in unicodedata.normalize("NFKC", text).lower() if c.isalnum())


def training_examples(directory: Path = LABELLED_DIR) -> list[tuple[str, str]]:
    """What the learned scores are fitted on: each tune question under each entry it
    expects. Held-out questions never are, nor a tune question that is one of them but
    for width, spaces or punctuation, so `kb eval --split heldout` stays a test."""
    questions = load_questions("all", directory)
    held = {same_text(q.text) for q in questions if q.split == "heldout"}
    return [(q.text, entry_id) for q in questions
            if q.split == "tune" and same_text(q.text) not in held
            for entry_id in sorted(q.expect)]
