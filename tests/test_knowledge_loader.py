"""The loader refuses a bad knowledge base and says exactly where the problem is."""

from pathlib import Path

import pytest

from knowledge.loader import KnowledgeBaseError, load_knowledge_base
from knowledge.model import CATEGORIES

GOOD = """\
entries:
  - id: scope-sample
    category: scope
    question: 歯科診療所も報告しますか
    phrasings: [歯医者も対象ですか, 歯科は報告不要ですか]
    answer: 歯科医療機関は報告の対象外です。
    route: prefecture
    source:
      - file: 002_6cfe617623eeeb84.txt
        section: 報告対象
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    (tmp_path / name).write_text(text, encoding="utf-8")
    return tmp_path


def problems_of(directory: Path) -> list[str]:
    with pytest.raises(KnowledgeBaseError) as info:
        load_knowledge_base(directory)
    return [str(p) for p in info.value.problems]


def test_real_knowledge_base_loads_and_covers_every_foundation_topic() -> None:
    entries = load_knowledge_base()
    assert len(entries) >= 40
    categories = {e.category for e in entries}
    for needed in ("scope", "schedule", "method", "gmis", "func1", "func2", "posting",
                   "explanation", "publication", "reminder"):
        assert needed in categories, needed
    assert all(len(e.phrasings) >= 2 and e.source for e in entries)
    assert all(e.route == "gmis_callcenter" for e in entries if e.category == "gmis")


def test_good_file_loads(tmp_path: Path) -> None:
    entries = load_knowledge_base(write(tmp_path, "scope.yaml", GOOD))
    assert [e.id for e in entries] == ["scope-sample"]


def test_broken_yaml_names_file_and_line(tmp_path: Path) -> None:
    broken = GOOD.replace("    route: prefecture\n", "    route: [prefecture\n")
    [problem] = problems_of(write(tmp_path, "scope.yaml", broken))
    assert "scope.yaml:" in problem and "YAML syntax" in problem
    line = int(problem.split("scope.yaml:")[1].split(":")[0])
    assert 8 <= line <= 11


@pytest.mark.parametrize(
    ("change", "field", "line"),
    [
        (("    answer: 歯科医療機関は報告の対象外です。\n", "    answer: ''\n"), "answer", 6),
        (("    answer: 歯科医療機関は", "    answer: いいえ、歯科医療機関は"), "はい/いいえ", 6),
        (("category: scope", "category: weather"), "category", 3),
        (("    source:\n      - file: 002_6cfe617623eeeb84.txt\n        section: 報告対象\n",
          ""), "source", 2),
        (("    route: prefecture", "    route: slack"), "route", 7),
        # The chat adds the configured G-MIS contact; written in, it would show twice.
        (("    answer: 歯科医療機関は報告の対象外です。\n    route: prefecture",
          "    answer: G-MIS事務局（050-3355-8230）へどうぞ。\n    route: gmis_callcenter"),
         "configured G-MIS contact", 6),
        (("    answer: 歯科医療機関は報告の対象外です。\n    route: prefecture",
          "    answer: G-MIS事務局へどうぞ。\n    detail: helpdesk@example.jp へ\n"
          "    route: gmis_callcenter"), "configured G-MIS contact", 7),
        # Also in an answer on another topic that names the desk (it went stale there).
        (("    answer: 歯科医療機関は報告の対象外です。\n",
          "    answer: 操作はG-MIS事務局（050-3355-8230）へ。\n"), "configured G-MIS contact", 6),
        (("    phrasings: [歯医者も対象ですか, 歯科は報告不要ですか]",
          "    phrasings: [一つだけ]"),
         "phrasings", 5),
    ],
)
def test_invalid_entry_names_file_line_entry_and_field(
    tmp_path: Path, change: tuple[str, str], field: str, line: int
) -> None:
    """The line is the field's own (the entry's when the field is missing), so an editor of a
    200-entry file goes straight to it."""
    problems = problems_of(write(tmp_path, "scope.yaml", GOOD.replace(*change)))
    assert any(f"scope.yaml:{line}:" in p and "scope-sample" in p and field in p
               for p in problems), problems


def test_duplicate_ids_across_files_are_refused(tmp_path: Path) -> None:
    write(tmp_path, "scope.yaml", GOOD)
    other = GOOD.replace("category: scope", "category: method")
    problems = problems_of(write(tmp_path, "method.yaml", other))
    # Both places named: the second copy (files load in name order) and the first.
    assert any(p.startswith(f"{tmp_path / 'scope.yaml'}:2:") and "scope-sample" in p
               and f"duplicate id (first at {tmp_path / 'method.yaml'}:2)" in p
               for p in problems), problems


def test_category_must_match_file(tmp_path: Path) -> None:
    problems = problems_of(write(tmp_path, "method.yaml", GOOD))
    assert any("category" in p and "method" in p for p in problems)


def test_every_category_has_a_japanese_label() -> None:
    assert all(label for label in CATEGORIES.values())


def test_a_bad_phrasing_is_named_at_its_own_line(tmp_path: Path) -> None:
    block = GOOD.replace("    phrasings: [歯医者も対象ですか, 歯科は報告不要ですか]\n",
                         "    phrasings:\n      - 歯医者も対象ですか\n"
                         "      - 歯科は報告不要ですか\n      - {歯科: 対象外}\n")
    [problem] = problems_of(write(tmp_path, "scope.yaml", block))
    assert "scope.yaml:8:" in problem and "phrasings.2" in problem, problem
