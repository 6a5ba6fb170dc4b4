"""Load and validate the YAML knowledge base, naming file, line, entry and field on error."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from knowledge.model import Entry

DEFAULT_DIR = Path(__file__).resolve().parent / "entries"


@dataclass(frozen=True)
class Problem:
    """One precise complaint about the knowledge base, for the operator."""

    file: str
    line: int | None
    entry_id: str | None
    field: str | None
    message: str

    def __str__(self) -> str:
        where = self.file + (f":{self.line}" if self.line else "")
        what = f" entry {self.entry_id}" if self.entry_id else ""
        fld = f" field {self.field}" if self.field else ""
        return (f"{where}:{what}{fld}: {self.message}" if what or fld
                else f"{where}: {self.message}")


class KnowledgeBaseError(Exception):
    """The knowledge base is invalid; the bot must not start half-loaded."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


def load_knowledge_base(directory: Path = DEFAULT_DIR) -> list[Entry]:
    """Return every entry, or raise KnowledgeBaseError listing every problem found."""
    files = sorted(directory.glob("*.yaml"))
    problems: list[Problem] = []
    entries: list[Entry] = []
    places: list[tuple[str, int | None]] = []  # where each entry is, for duplicate reports
    if not files:
        raise KnowledgeBaseError([Problem(str(directory), None, None, None, "no *.yaml files")])
    for path in files:
        file_entries, file_places, file_problems = _load_file(path)
        entries.extend(file_entries)
        places.extend(file_places)
        problems.extend(file_problems)
    problems.extend(_duplicate_ids(entries, places))
    if problems:
        raise KnowledgeBaseError(problems)
    return entries


# libyaml's loader when PyYAML was built with it: it reads the labelled questions, loaded
# at every start for the learned scores, nine times faster.
FAST_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def read_yaml(path: Path, loader: type[yaml.SafeLoader] = FAST_LOADER,
              ) -> tuple[Any, yaml.Node | None]:
    """A YAML file's data, and its node tree for line numbers. Bad UTF-8 or YAML raises
    KnowledgeBaseError naming the file (and line)."""
    name = str(path)
    try:
        text = path.read_text(encoding="utf-8")
        reader = loader(text)  # parsed once: the data is built from the node tree
        try:
            node = reader.get_single_node()
            return (reader.construct_document(node) if node is not None else None), node
        finally:
            reader.dispose()
    except UnicodeDecodeError as exc:
        raise KnowledgeBaseError([Problem(name, None, None, None,
                                          f"not UTF-8: {exc.reason}")]) from exc
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else None
        raise KnowledgeBaseError([Problem(name, line, None, None,
                                          f"YAML syntax: {exc.problem}")]) from exc


def _load_file(path: Path,
               ) -> tuple[list[Entry], list[tuple[str, int | None]], list[Problem]]:
    name = str(path)
    try:
        data, raw = read_yaml(path)
    except KnowledgeBaseError as exc:
        return [], [], exc.problems
    if not isinstance(data, dict) or not isinstance(data.get("entries"), list):
        return [], [], [Problem(name, 1, None, None,
                                "top level must be a mapping with an 'entries' list")]
    nodes = item_nodes(raw)
    entries: list[Entry] = []
    places: list[tuple[str, int | None]] = []
    problems: list[Problem] = []
    for index, item in enumerate(data["entries"]):
        node = nodes[index] if index < len(nodes) else None
        line = node.start_mark.line + 1 if node else None
        entry_id = item.get("id") if isinstance(item, dict) else None
        try:
            entry = Entry.model_validate(item)
        except ValidationError as exc:
            for err in exc.errors():
                field = ".".join(str(p) for p in err["loc"]) or None
                problems.append(Problem(name, _line_of(node, err["loc"]) or line, entry_id,
                                        field, err["msg"]))
            continue
        if entry.category != path.stem:
            problems.append(Problem(name, _line_of(node, ("category",)) or line, entry.id,
                                    "category", f"must match file name {path.stem!r}"))
        entries.append(entry)
        places.append((name, line))
    return entries, places, problems


def item_nodes(root: yaml.Node | None, list_key: str = "entries") -> list[yaml.Node]:
    """The node of each item of the top-level list under `list_key`."""
    if not isinstance(root, yaml.MappingNode):
        return []
    for key, value in root.value:
        if key.value == list_key and isinstance(value, yaml.SequenceNode):
            return list(value.value)
    return []


def item_lines(root: yaml.Node | None, list_key: str = "entries") -> list[int]:
    """Line numbers (1-based) of each item of the top-level list under `list_key`."""
    return [item.start_mark.line + 1 for item in item_nodes(root, list_key)]


def _line_of(node: yaml.Node | None, loc: tuple[int | str, ...]) -> int | None:
    """The line of the field a validation error is about (「phrasings.3」 is that phrasing's
    line), so an editor goes straight to it; None when the field is missing."""
    found = None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            # The last of a doubled key: it is the one YAML keeps, and so was validated.
            node = next((v for k, v in reversed(node.value) if k.value == part), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) \
                and part < len(node.value):
            node = node.value[part]
        else:
            break
        if node is None:
            break
        found = node.start_mark.line + 1
    return found


def _duplicate_ids(entries: list[Entry], places: list[tuple[str, int | None]],
                   ) -> list[Problem]:
    """Every id, live or replaced, names one entry: a button must not change its meaning."""
    seen: dict[str, str] = {}  # id -> where it was first given, "file:line"
    problems = []
    live = {e.id for e in entries}
    for entry, (name, line) in zip(entries, places, strict=True):
        here = f"{name}:{line}" if line else name
        if entry.id in seen:
            problems.append(Problem(name, line, entry.id, "id",
                                    f"duplicate id (first at {seen[entry.id]})"))
        seen.setdefault(entry.id, here)
        for old in entry.replaces:
            if old in live or old in seen:
                problems.append(Problem(name, line, entry.id, "replaces",
                                        f"{old!r} is already the id of another entry"))
            seen.setdefault(old, here)
    return problems
