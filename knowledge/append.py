"""Append one entry to a knowledge-base YAML file without ever leaving the base invalid.

The new text is appended (existing entries, comments and folding stay as they are), the
whole base is re-validated with the loader on a copy, and only then is the real file
replaced atomically. Any problem leaves the files untouched and raises.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from knowledge.loader import KnowledgeBaseError, Problem, load_knowledge_base
from knowledge.model import Entry

HEADER = "entries:\n"


class _Dumper(yaml.SafeDumper):
    """Multi-line strings as literal blocks, so reviewers read them as written."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def append_entry(directory: Path, data: dict[str, Any]) -> Entry:
    """Validate `data` as an Entry, append it to `<category>.yaml`, and return it."""
    entry = Entry.model_validate(data)  # pydantic's ValidationError names the field
    path = directory / f"{entry.category}.yaml"
    with _locked(directory):
        old = path.read_text(encoding="utf-8") if path.exists() else HEADER
        new = _appended(old, entry, path)
        with tempfile.TemporaryDirectory() as tmp:
            for existing in directory.glob("*.yaml"):
                shutil.copy2(existing, Path(tmp) / existing.name)
            (Path(tmp) / path.name).write_text(new, encoding="utf-8")
            load_knowledge_base(Path(tmp))  # raises KnowledgeBaseError listing every problem
        _write_atomically(path, new)
    return entry


def _appended(old: str, entry: Entry, path: Path) -> str:
    """Old text plus the entry, indented like the file's existing list items."""
    indent = _item_indent(old)
    data = entry.model_dump(exclude_none=True)
    # Written as the hand-written entries are: the answer before its route.
    first = ("id", "category", "question", "phrasings", "answer", "detail", "route", "source")
    data = {k: data[k] for k in first if k in data} | data
    item = yaml.dump([data], Dumper=_Dumper,
                     allow_unicode=True, sort_keys=False, width=10_000)
    block = "".join((" " * indent + line) if line.strip() else line
                    for line in item.splitlines(keepends=True))
    new = old.rstrip("\n") + "\n" + ("\n" if _item_count(old) else "") + block
    parsed = yaml.safe_load(new)
    items = parsed.get("entries") if isinstance(parsed, dict) else None
    if not isinstance(items, list) or not items or items[-1] != entry.model_dump(
            exclude_none=True):
        raise KnowledgeBaseError([Problem(str(path), None, entry.id, None,
                                          "could not append safely: 'entries' must be the "
                                          "last top-level key")])
    return new


def _item_indent(text: str) -> int:
    root = yaml.compose(text)
    if isinstance(root, yaml.MappingNode):
        for key, value in root.value:
            if key.value == "entries" and isinstance(value, yaml.SequenceNode) and value.value:
                return max(0, value.value[0].start_mark.column - 2)
    return 2


def _item_count(text: str) -> int:
    data = yaml.safe_load(text)
    items = data.get("entries") if isinstance(data, dict) else None
    return len(items) if isinstance(items, list) else 0


def _write_atomically(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """One writer at a time across processes (two reviewers approving at once)."""
    digest = hashlib.sha1(str(directory.resolve()).encode()).hexdigest()[:12]
    with open(Path(tempfile.gettempdir()) / f"kb-append-{digest}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
