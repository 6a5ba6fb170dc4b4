"""Appending an approved draft keeps every knowledge-base file valid, or changes nothing."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from pydantic import ValidationError

from knowledge.append import append_entry
from knowledge.loader import DEFAULT_DIR, KnowledgeBaseError, load_knowledge_base

SOURCE = [{"file": "staff-desk", "section": "Q26-000001 都道府県担当者の回答"}]


def entry(**changes: object) -> dict[str, object]:
    data: dict[str, object] = {
        "id": "scope-desk-1", "category": "scope", "question": "分院も報告が必要ですか？",
        "phrasings": ["分院は別に報告するの？", "本院と分院はまとめて報告できますか"],
        "answer": "分院は、本院とは別の医療機関として、それぞれ報告してください。\n"
                  "「報告」ボタンを押すまで提出されません: ご注意ください。",
        "route": "prefecture", "source": SOURCE}
    data.update(changes)
    return data


@pytest.fixture
def kb(tmp_path: Path) -> Path:
    target = tmp_path / "entries"
    shutil.copytree(DEFAULT_DIR, target)
    return target


def test_append_keeps_the_file_as_written_and_adds_one_valid_entry(kb: Path) -> None:
    before_text = (kb / "scope.yaml").read_text(encoding="utf-8")
    before = len(load_knowledge_base(kb))
    added = append_entry(kb, entry())
    after = {e.id: e for e in load_knowledge_base(kb)}
    assert len(after) == before + 1 and after["scope-desk-1"] == added
    assert "\n" in added.answer and ": ご注意" in added.answer  # literal block survived
    text = (kb / "scope.yaml").read_text(encoding="utf-8")
    assert text.startswith(before_text.rstrip())
    # Laid out as the hand-written entries are, for the editor who reads it next.
    added_text = text[len(before_text.rstrip()):]
    assert added_text.index("answer:") < added_text.index("route:") < added_text.index("source:")


def test_a_new_category_file_is_created(kb: Path) -> None:
    (kb / "cases.yaml").unlink(missing_ok=True)
    append_entry(kb, entry(id="cases-desk-2", category="cases"))
    assert "cases-desk-2" in {e.id for e in load_knowledge_base(kb)}


def test_unindented_list_style_is_followed(kb: Path) -> None:
    (kb / "cases.yaml").write_text(
        "entries:\n- id: cases-x-1\n  category: cases\n  question: 事例はありますか？\n"
        "  phrasings: [事例, 取組例]\n  answer: 事例集に掲載されています。ご覧ください。\n"
        "  route: prefecture\n  source:\n  - url: https://example.jp/a\n", encoding="utf-8")
    append_entry(kb, entry(id="cases-desk-3", category="cases"))
    ids = [e.id for e in load_knowledge_base(kb) if e.category == "cases"]
    assert ids == ["cases-x-1", "cases-desk-3"]


@pytest.mark.parametrize(("changes", "error"), [
    ({"id": "Bad ID"}, ValidationError),
    ({"phrasings": ["ひとつだけ"]}, ValidationError),
    ({"category": "unknown"}, ValidationError),
    ({"id": "scope-desk-1", "category": "func1"}, KnowledgeBaseError),  # duplicate id
])
def test_invalid_entries_change_nothing(kb: Path, changes: dict[str, object],
                                        error: type[Exception]) -> None:
    append_entry(kb, entry())  # so "scope-desk-1" exists for the duplicate case
    snapshot = {p.name: p.read_text(encoding="utf-8") for p in kb.glob("*.yaml")}
    with pytest.raises(error):
        append_entry(kb, entry(**changes))
    assert {p.name: p.read_text(encoding="utf-8") for p in kb.glob("*.yaml")} == snapshot


def test_a_file_it_cannot_append_to_safely_is_left_alone(kb: Path) -> None:
    odd = "entries: []\nnotes: |\n  entries must stay the last key for appending\n"
    (kb / "cases.yaml").write_text(odd, encoding="utf-8")
    with pytest.raises(KnowledgeBaseError):
        append_entry(kb, entry(id="cases-desk-4", category="cases"))
    assert (kb / "cases.yaml").read_text(encoding="utf-8") == odd
