"""Reading operator CSV files from Excel or G-MIS: encoding detection and header mapping."""

from __future__ import annotations

import csv
import io
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path


class FileProblem(Exception):
    """The file as a whole cannot be read (encoding, missing columns); names file and why."""


@dataclass(frozen=True)
class RowError:
    line: int
    column: str
    value: str
    reason: str

    def __str__(self) -> str:
        return f"{self.line}行目 「{self.column}」 値={self.value!r}: {self.reason}"


@dataclass(frozen=True)
class Column:
    header: str
    key: str
    parse: Callable[[str], object]
    required: bool = True
    aliases: tuple[str, ...] = ()
    # Messages (a 差し戻し reason) are kept as typed: NFKC would turn （ハ） into (ハ) and ①
    # into 1. Names stay NFKC'd so staff find ｻｸﾗ内科 by typing サクラ; codes, dates and
    # flags so that full-width digits work.
    verbatim: bool = False


@dataclass
class Table:
    path: Path
    encoding: str
    rows: list[tuple[int, dict[str, str]]] = field(default_factory=list)


def decode(path: Path) -> tuple[str, str]:
    """Return (text, label of the encoding used): UTF-8 with/without BOM, else CP932."""
    data = path.read_bytes()
    if data.startswith(b"\xef\xbb\xbf"):
        return data[3:].decode("utf-8", errors="strict"), "UTF-8（BOM付き）"
    try:
        return data.decode("utf-8"), "UTF-8"
    except UnicodeDecodeError:
        pass
    try:
        return data.decode("cp932"), "Shift_JIS（CP932）"
    except UnicodeDecodeError as exc:
        raise FileProblem(
            f"{path}: 文字コードを判別できません（UTF-8 でも Shift_JIS でもありません。"
            f"{exc.start}バイト目付近）") from exc


def _key(header: str) -> str:
    return unicodedata.normalize("NFKC", header).strip().replace(" ", "")


def read_table(path: Path, columns: list[Column]) -> Table:
    """Parse the CSV and map Japanese headers to keys; missing required columns fail."""
    text, encoding = decode(path)
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, None)
    if not header:
        raise FileProblem(f"{path}: 空のファイルです（1行目に見出しが必要です）")
    index = {_key(h): i for i, h in enumerate(header)}
    positions: dict[str, int] = {}
    missing: list[str] = []
    for col in columns:
        names = [_key(n) for n in (col.header, *col.aliases)]
        pos = next((index[n] for n in names if n in index), None)
        if pos is None and col.required:
            missing.append(col.header)
        if pos is not None:
            positions[col.key] = pos
    if missing:  # all of them at once, and what the file has instead
        found = "、".join(f"「{h.strip()}」" for h in header if h.strip()) or "（なし）"
        raise FileProblem(f"{path}: 1行目に列{'・'.join(f'「{m}」' for m in missing)}が"
                          f"ありません（この行にある見出し：{found}）")
    table = Table(path, encoding)
    for line, raw in _numbered(reader, path):
        if not any(cell.strip() for cell in raw):
            continue
        table.rows.append((line, {k: (raw[p] if p < len(raw) else "")
                                  for k, p in positions.items()}))
    return table


def _numbered(reader: Iterator[list[str]], path: Path) -> Iterator[tuple[int, list[str]]]:
    # csv.reader.line_num counts physical lines, so quoted newlines keep numbers right.
    try:
        for raw in reader:
            yield reader.line_num, raw  # type: ignore[attr-defined]
    except csv.Error as exc:  # e.g. a runaway quote swallowing the rest of the file
        line = reader.line_num  # type: ignore[attr-defined]
        raise FileProblem(f"{path}:{line}行目付近: CSVとして読み取れません（{exc}）。"
                          "引用符（\"）の閉じ忘れがないかご確認ください") from exc


def parse_row(line: int, raw: dict[str, str], columns: list[Column],
              errors: list[RowError]) -> dict[str, object] | None:
    """Parse every cell; append a RowError per bad cell; None if any cell was bad."""
    out: dict[str, object] = {}
    ok = True
    for col in columns:
        cell = raw.get(col.key, "")
        value = (cell if col.verbatim else unicodedata.normalize("NFKC", cell)).strip()
        try:
            out[col.key] = col.parse(value)
        except ValueError as exc:
            errors.append(RowError(line, col.header, value, str(exc)))
            ok = False
    return out if ok else None
