"""Reading operator CSV files from Excel or G-MIS: encoding detection and header mapping."""

from __future__ import annotations

import csv
import io
import re
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path


class FileProblem(Exception):
    """The file as a whole cannot be read (encoding, missing columns); names file and why."""


CUT_HINT = ("ダウンロードやコピーが途中で止まった可能性があります。元のファイルを保存し直して"
            "から取り込んでください")


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
    # Rows whose cells cannot be matched to the header (a runaway quote, too few or too many
    # cells): one error each, and their cells are not read, since they sit in the wrong columns.
    errors: list[RowError] = field(default_factory=list)

    @property
    def size(self) -> int:
        """Data rows in the file, well-formed or not (blank lines are not rows)."""
        return len(self.rows) + len(self.errors)


def decode(path: Path) -> tuple[str, str]:
    """Return (text, label of the encoding used): UTF-8 with/without BOM, else CP932."""
    data = path.read_bytes()
    if data.startswith(b"\xef\xbb\xbf"):
        try:
            return data[3:].decode("utf-8", errors="strict"), "UTF-8（BOM付き）"
        except UnicodeDecodeError as exc:
            raise _undecodable(path, data[3:], exc) from exc
    try:
        return data.decode("utf-8"), "UTF-8"
    except UnicodeDecodeError as exc:
        if _cut_at_end(data, exc):  # CP932 would read the cut UTF-8 file as nonsense
            raise _undecodable(path, data, exc) from exc
    try:
        return data.decode("cp932"), "Shift_JIS（CP932）"
    except UnicodeDecodeError as exc:
        raise _undecodable(path, data, exc) from exc


def _cut_at_end(data: bytes, exc: UnicodeDecodeError) -> bool:
    """The only bad bytes are a character begun in the last bytes and never finished: the
    file was cut (a download that stopped), not written in another encoding."""
    return exc.end == len(data) and len(data) - exc.start < 4


def _undecodable(path: Path, data: bytes, exc: UnicodeDecodeError) -> FileProblem:
    if _cut_at_end(data, exc):
        line = data[:exc.start].count(b"\n") + 1
        return FileProblem(f"{path}:{line}行目: ファイルの最後で文字が途中で切れています。"
                           f"{CUT_HINT}")
    return FileProblem(f"{path}: 文字コードを判別できません（UTF-8 でも Shift_JIS でも"
                       f"ありません。{exc.start}バイト目付近）")


def _key(header: str) -> str:
    return unicodedata.normalize("NFKC", header).strip().replace(" ", "")


def read_table(path: Path, columns: list[Column]) -> Table:
    """Parse the CSV and map Japanese headers to keys; a bad header fails the whole file."""
    text, encoding = decode(path)
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, None)
    if not header:
        raise FileProblem(f"{path}: 空のファイルです（1行目に見出しが必要です）")
    positions = _positions(path, header, columns)
    # A message (a 差し戻し reason typed with Alt+Enter) may hold line breaks.
    multiline = {positions[c.key] for c in columns if c.verbatim and c.key in positions}
    table = Table(path, encoding)
    last: tuple[int, list[str]] = (0, [])
    for start, end, raw in _numbered(reader, path):
        last = (start, raw)
        if not any(cell.strip() for cell in raw):
            continue
        problem = _shape_problem(start, end, raw, header, multiline)
        if problem:
            table.errors.append(problem)
        else:  # as many cells as headings: every position exists
            table.rows.append((start, {k: raw[p] for k, p in positions.items()}))
    if cut := _cut_off(text, *last, header, table):
        table.rows = [row for row in table.rows if row[0] != cut.line]
        table.errors = [e for e in table.errors if e.line != cut.line] + [cut]
    if not table.size:  # "0件 imported" would read as success (and a status file as current)
        raise FileProblem(f"{path}: データの行がありません（見出しの1行目だけです）。"
                          "2行目から1医療機関1行で入れてください")
    return table


def _positions(path: Path, header: list[str], columns: list[Column]) -> dict[str, int]:
    """Where each column is. Missing or doubled columns fail, all of them named at once:
    with two 医療機関コード columns, silently taking one imports the wrong values."""
    keys = [_key(h) for h in header]
    positions: dict[str, int] = {}
    missing: list[str] = []
    problems: list[str] = []
    for col in columns:
        names = {_key(n) for n in (col.header, *col.aliases)}
        found = [i for i, k in enumerate(keys) if k in names]
        if len(found) > 1:
            problems.append(_doubled(col.header, header, found))
        elif found:
            positions[col.key] = found[0]
        elif col.required:
            missing.append(col.header)
    if missing:  # all of them at once, and what the file has instead
        found_text = "、".join(f"「{h.strip()}」" for h in header if h.strip()) or "（なし）"
        problems.append(f"1行目に列{'・'.join(f'「{m}」' for m in missing)}がありません"
                        f"（この行にある見出し：{found_text}）")
    if problems:
        raise FileProblem(f"{path}: " + "。".join(problems))
    return positions


def _doubled(name: str, header: list[str], found: list[int]) -> str:
    spellings = {_key(header[i]) for i in found}
    where = "、".join(f"{i + 1}列目" + (f"「{header[i].strip()}」" if len(spellings) > 1 else "")
                     for i in found)
    return (f"1行目に「{name}」の列が{len(found)}つあります（{where}）。"
            "どの列を使うか決められないため、1つにしてください")


def _column_name(header: list[str], index: int) -> str:
    name = header[index].strip() if index < len(header) else ""
    return name or f"{index + 1}列目"


def _shape_problem(start: int, end: int, raw: list[str], header: list[str],
                   multiline: set[int]) -> RowError | None:
    """The one error of a row whose cells cannot be matched to the header, else None."""
    return (_open_quote(start, end, raw, header, multiline)
            or _cell_count(start, raw, header))


def _open_quote(start: int, end: int, raw: list[str], header: list[str],
                multiline: set[int]) -> RowError | None:
    # Only a message may hold a line break (and then only in a row of the right shape), so
    # a cell that does is a quote left open that swallowed the lines after it; the row's
    # other cells would only mislead.
    for i, cell in enumerate(raw):
        if ("\n" in cell or "\r" in cell) and not (i in multiline and len(raw) == len(header)):
            return RowError(start, _column_name(header, i), cell.splitlines()[0],
                            f"引用符（\"）が閉じられていません（{end}行目までが、この欄の値として"
                            "読まれました。欄の中では改行できません）")
    return None


def _cut_off(text: str, start: int, raw: list[str], header: list[str],
             table: Table) -> RowError | None:
    """The error of a last row the file ends in the middle of (a cut download), else None.
    A quoted value left open at the very end is read by csv as if closed, so a last row of
    the right shape had been imported, cut value and all."""
    if not raw:
        return None
    if _ends_in_quotes(_from_line(text, start)):
        value = raw[-1]
        if ("\n" in value or "\r" in value) and any(e.line == start for e in table.errors):
            return None  # a quote opened further up swallowed the lines after it: said so
        first = value.splitlines()[0] if value.strip() else value
        return RowError(start, _column_name(header, len(raw) - 1), first,
                        f"引用符（\"）が閉じられないまま、ファイルが終わっています。{CUT_HINT}")
    if len(raw) < len(header) and not text.endswith(("\n", "\r")):
        return RowError(start, _column_name(header, len(raw)), "",
                        f"この行は{len(raw)}列しかなく（1行目の見出しは{len(header)}列です）、"
                        f"改行のないままファイルが終わっています。{CUT_HINT}")
    return None


def _from_line(text: str, line: int) -> str:
    """`text` from the start of physical line `line` (1-based), counting line breaks as
    csv.reader does (\\r\\n, \\r or \\n)."""
    breaks = re.finditer(r"\r\n|\r|\n", text)
    offset = 0
    for _, found in zip(range(line - 1), breaks, strict=False):
        offset = found.end()
    return text[offset:]


def _ends_in_quotes(row_text: str) -> bool:
    """True when a quoted field opened in `row_text` (a row's text from its start to the end
    of the file) is still open at the end, by csv's own rules: a quote opens a field only
    at its start, and "" inside one is a quote character."""
    quoted = closing = False
    at_start = True
    for char in row_text:
        if quoted:
            if char == '"':
                quoted, closing = False, True
            continue
        if closing and char == '"':  # "" : an escaped quote, still inside the field
            quoted, closing = True, False
            continue
        closing = False
        if at_start and char == '"':
            quoted = True
        at_start = char in ",\r\n"
    return quoted


def _cell_count(start: int, raw: list[str], header: list[str]) -> RowError | None:
    # A missing or extra cell shifts every value after it into the wrong column. Excel
    # writes the same number of cells on every line, the first included.
    counts = f"この行は{len(raw)}列あります（1行目の見出しは{len(header)}列です）"
    if len(raw) < len(header):
        return RowError(start, _column_name(header, len(raw)), "",
                        f"{counts}。列が抜けていないか、値の途中で改行されていないか"
                        "ご確認ください")
    if len(raw) > len(header):
        return RowError(start, _column_name(header, len(header)), raw[len(header)],
                        f"{counts}。カンマ（,）を含む値は引用符（\"）で囲んでください")
    return None


def _numbered(reader: Iterator[list[str]],
              path: Path) -> Iterator[tuple[int, int, list[str]]]:
    """(first line, last line, cells) of each row: errors name the line where a row starts."""
    # csv.reader.line_num counts physical lines read, quoted line breaks included.
    start = reader.line_num + 1  # type: ignore[attr-defined]
    try:
        for raw in reader:
            end = reader.line_num  # type: ignore[attr-defined]
            yield start, end, raw
            start = end + 1
    except csv.Error as exc:  # e.g. a runaway quote swallowing the rest of the file
        raise FileProblem(f"{path}:{start}行目: CSVとして読み取れません（{exc}）。"
                          "この行からの引用符（\"）の閉じ忘れがないかご確認ください") from exc


def parse_row(line: int, raw: dict[str, str], columns: list[Column],
              errors: list[RowError]) -> dict[str, object]:
    """Parse every cell, appending a RowError per bad cell; the cells that parsed.

    A bad cell is left out rather than ending the row, so the row's other checks (duplicate
    code, not on the roster, cross-field rules) still run and all come back in one pass.
    """
    out: dict[str, object] = {}
    for col in columns:
        cell = raw.get(col.key, "")
        value = (cell if col.verbatim else unicodedata.normalize("NFKC", cell)).strip()
        try:
            out[col.key] = col.parse(value)
        except ValueError as exc:
            errors.append(RowError(line, col.header, value, str(exc)))
    return out
