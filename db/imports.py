"""Imports of rosters, report status and report answers exported from G-MIS or Excel.

All or nothing per file: every row is validated first; one bad row means nothing is
written and the operator gets every bad row. Re-importing the same file changes nothing.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import partial
from pathlib import Path
from typing import Any

from sqlalchemy import insert, update
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from db import repo
from db.csvfile import Column, RowError, Table, parse_row, read_table
from db.models import Institution, Prefecture, StatusHistory

logger = logging.getLogger(__name__)
Progress = Callable[[int, int], None]  # (rows just written, rows to write in all)
Rule = Callable[[int, dict[str, Any], list[RowError]], None]  # (line, parsed cells, errors)
CHUNK = 2000

STATUSES = {"未報告": "未報告", "報告済": "報告済", "報告済み": "報告済", "確認済": "確認済",
            "確認済み": "確認済", "差し戻し": "差し戻し", "差戻し": "差し戻し", "差戻": "差し戻し",
            "修正依頼": "差し戻し", "紙受付": "紙受付", "紙報告受付": "紙受付"}
TRUE = {"有", "あり", "はい", "○", "◯", "1", "true", "yes", "y", "実施", "実績あり", "該当"}
FALSE = {"無", "なし", "いいえ", "×", "0", "false", "no", "n", "未実施", "実績なし", "非該当"}


def institution_code(v: str) -> str:
    if not re.fullmatch(r"\d{7}|\d{10}", v):
        raise ValueError("医療機関コードは7桁または10桁の数字で入力してください")
    return v


def foreign_prefix(code: str, prefecture: str) -> str | None:
    """The prefecture number a 10-digit 医療機関コード begins with, when it is not
    `prefecture`'s; None for a code of this prefecture and for a 7-digit one, which has no
    prefecture number (it is taken as `prefecture`'s and counted: ImportResult.short_codes)."""
    return code[:2] if len(code) == 10 and code[:2] != prefecture else None


def text(limit: int, required: bool = False) -> Callable[[str], str]:
    def parse(v: str) -> str:
        if required and not v:
            raise ValueError("必須項目です")
        if len(v) > limit:
            raise ValueError(f"{limit}文字以内で入力してください")
        return v
    return parse


def kind(v: str) -> str:
    if v == "病院":
        return "hospital"
    if v in ("診療所", "一般診療所", "有床診療所", "無床診療所"):
        return "clinic"
    raise ValueError("「病院」または「診療所」を入力してください")


def flag(v: str) -> bool:
    # A blank is not "無": these columns decide who must report, so a row cut short in
    # Excel must not make an exempt 歯科 clinic a target without anyone noticing.
    if not v.strip():
        raise ValueError("空欄です。「有」または「無」を入力してください")
    low = v.lower()
    if low in TRUE:
        return True
    if low in FALSE:
        return False
    raise ValueError("「有」または「無」（はい／いいえ、1／0 も可）を入力してください")


def optional_flag(v: str) -> bool | None:
    return None if v == "" else flag(v)


def email(v: str) -> str:
    if v and not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", v):
        raise ValueError("メールアドレスの形式ではありません")
    return v


def phone(v: str) -> str:
    if v and not re.fullmatch(r"[0-9()\-+ ]{6,20}", v):
        raise ValueError("電話番号は数字とハイフンで入力してください")
    return v


def status(v: str) -> str:
    if v not in STATUSES:
        raise ValueError("未報告／報告済／確認済／差し戻し／紙受付 のいずれかを入力してください")
    return STATUSES[v]


def report_date(v: str) -> date | None:
    if not v:
        return None
    m = re.fullmatch(r"(\d{4})[-/.年](\d{1,2})[-/.月](\d{1,2})日?", v)
    if not m:
        raise ValueError("日付は 2026-01-31 または 2026/1/31 の形で入力してください")
    year, month, day = int(m[1]), int(m[2]), int(m[3])
    try:
        return date(year, month, day)
    except ValueError:  # the form was right: a format hint would send the operator astray
        raise ValueError(f"{year}年{month}月{day}日は存在しない日付です") from None


def confirmation(v: str) -> str | None:
    table = {"": None, "体制あり": "体制あり", "あり": "体制あり", "有": "体制あり",
             "体制なし": "体制なし", "なし": "体制なし", "無": "体制なし"}
    if v not in table:
        raise ValueError("「体制あり」または「体制なし」を入力してください")
    return table[v]


ROSTER = [
    Column("医療機関コード", "code", institution_code),
    Column("名称", "name", text(200, required=True), aliases=("医療機関名", "医療機関名称")),
    Column("種別", "kind", kind),
    Column("特定機能病院", "special_function", flag),
    Column("歯科", "dental", flag, aliases=("歯科医療機関",)),
    Column("休院", "closed_on_jan1", flag, aliases=("休院（1月1日時点）", "1月1日時点休院")),
    Column("市区町村", "municipality", text(50)),
    Column("二次医療圏", "medical_area", text(50)),
    Column("メール", "email", email, required=False, aliases=("メールアドレス",)),
    Column("電話", "phone", phone, required=False, aliases=("電話番号",)),
]
STATUS = [
    Column("医療機関コード", "code", institution_code),
    Column("報告状況", "status", status),
    Column("報告日", "reported_on", report_date, required=False),
    Column("確認結果", "confirmation", confirmation, required=False),
    Column("差し戻し理由", "return_reason", text(500), required=False, aliases=("差戻し理由",),
           verbatim=True),
]
REPORT = [
    Column("医療機関コード", "code", institution_code),
    Column("院内掲示", "posting", optional_flag),
    Column("一次診療", "primary_care", optional_flag),
    Column("患者相談", "consultation", optional_flag, aliases=("相談対応",)),
    Column("2号イ", "i", optional_flag, aliases=("時間外診療",)),
    Column("2号ロ", "ro", optional_flag, aliases=("入退院支援",)),
    Column("2号ハ", "ha", optional_flag, aliases=("在宅医療",)),
    Column("2号ニ", "ni", optional_flag, aliases=("介護連携",)),
]


@dataclass
class ImportResult:
    file: str
    encoding: str
    rows: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    # 7-digit codes carry no prefecture number: how many were taken as --prefecture's
    short_codes: int = 0
    errors: list[RowError] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


def _validate(table: Table, columns: list[Column], result: ImportResult,
              *rules: Rule) -> dict[str, dict[str, Any]]:
    """Parsed rows by institution code; every problem lands in result.errors.

    Every check runs on every row, whatever else is wrong with it, so the operator gets
    all the errors of the file in one run instead of one kind per attempt.
    """
    result.errors.extend(table.errors)
    parsed: dict[str, dict[str, Any]] = {}
    first_line: dict[str, int] = {}
    for line, raw in table.rows:
        before = len(result.errors)
        row = parse_row(line, raw, columns, result.errors)
        for rule in rules:
            rule(line, row, result.errors)
        _duplicate(line, row, first_line, result.errors)
        if len(result.errors) == before:
            parsed[str(row["code"])] = row
    result.rows = table.size
    result.short_codes = sum(len(code) == 7 for code in parsed)
    result.errors.sort(key=lambda e: e.line)  # stable: a row's errors keep column order
    return parsed


def _duplicate(line: int, row: dict[str, Any], first_line: dict[str, int],
               errors: list[RowError]) -> None:
    code = row.get("code")
    if code is None:  # its own error is reported already
        return
    if code in first_line:
        errors.append(RowError(line, "医療機関コード", code,
                               f"{first_line[code]}行目と重複しています"))
    else:
        first_line[code] = line


async def _existing(session: AsyncSession, prefecture: str) -> dict[str, Institution]:
    rows = await session.exec(select(Institution).where(Institution.prefecture_code == prefecture))
    return {inst.code: inst for inst in rows}


async def import_roster(session: AsyncSession, path: Path, prefecture: str,
                        progress: Progress | None = None) -> ImportResult:
    table = read_table(path, ROSTER)
    result = ImportResult(str(path), table.encoding)
    parsed = _validate(table, ROSTER, result, _roster_rules,
                       partial(_prefecture_rule, prefecture))
    if result.errors:
        return result
    existing = await _existing(session, prefecture)
    new, changed = [], []
    for code, row in parsed.items():
        current = existing.get(code)
        if current is None:
            new.append({**row, "prefecture_code": prefecture, "status": "未報告"})
        elif any(getattr(current, k) != v for k, v in row.items()):
            changed.append({"id": current.id, **row})
    await _write(session, new, changed, progress)
    result.created, result.updated = len(new), len(changed)
    result.unchanged = len(parsed) - len(new) - len(changed)
    return result


async def _write(session: AsyncSession, new: list[dict[str, Any]],
                 changed: list[dict[str, Any]], progress: Progress | None,
                 history: list[dict[str, Any]] | None = None) -> None:
    """One transaction for the whole file: a failure half-way writes nothing."""
    total = len(new) + len(changed)
    try:
        if progress:
            progress(0, total)
        for i in range(0, len(new), CHUNK):
            await session.exec(insert(Institution), params=new[i:i + CHUNK])  # type: ignore[call-overload]
            if progress:
                progress(len(new[i:i + CHUNK]), total)
        for i in range(0, len(changed), CHUNK):
            await session.exec(update(Institution), params=changed[i:i + CHUNK])  # type: ignore[call-overload]
            if progress:
                progress(len(changed[i:i + CHUNK]), total)
        if history:
            await session.exec(insert(StatusHistory), params=history)  # type: ignore[call-overload]
        await session.commit()
    except BaseException:
        await session.rollback()
        raise
    if total:  # after the commit: the file is in, whatever happens to the statistics
        try:
            await repo.refresh_statistics(session, "institution")
        except Exception:
            logger.warning("import committed; refreshing planner statistics failed",
                           exc_info=True)


def _roster_rules(line: int, row: dict[str, Any], errors: list[RowError]) -> None:
    # A cell that did not parse is absent from row (and reported): rules needing it skip.
    if row.get("special_function") and row.get("kind") == "clinic":
        errors.append(RowError(line, "特定機能病院", "有",
                               "特定機能病院は病院にだけ指定できます（種別が診療所です）"))


def _prefecture_rule(prefecture: str, line: int, row: dict[str, Any],
                     errors: list[RowError]) -> None:
    """A 10-digit 医療機関コード begins with its prefecture's number: a file imported under
    the wrong --prefecture is caught here, not after 案内 went to another's clinics."""
    code = row.get("code", "")
    if (other := foreign_prefix(code, prefecture)) is not None:
        errors.append(RowError(line, "医療機関コード", code,
                               f"先頭2桁（都道府県番号 {other}）が取り込み先の都道府県 "
                               f"{prefecture} と違います。--prefecture をご確認ください"))


def _status_rules(line: int, row: dict[str, Any], errors: list[RowError]) -> None:
    # A cell that did not parse is absent from row: reported already, not again as empty.
    if row.get("status") == "確認済" and "confirmation" in row and not row["confirmation"]:
        errors.append(RowError(line, "確認結果", "",
                               "確認済の場合は「体制あり」か「体制なし」が必要です"))
    if row.get("status") == "差し戻し" and "return_reason" in row and not row["return_reason"]:
        errors.append(RowError(line, "差し戻し理由", "", "差し戻しの場合は理由が必要です"))


async def import_status(session: AsyncSession, path: Path, prefecture: str, now: datetime,
                        progress: Progress | None = None) -> ImportResult:
    table = read_table(path, STATUS)
    result = ImportResult(str(path), table.encoding)
    existing = await _existing(session, prefecture)
    parsed = _validate(table, STATUS, result, _status_rules,
                       partial(_on_roster, prefecture, existing))
    if result.errors:
        return result
    changed, history = [], []
    for code, row in parsed.items():
        inst = existing[code]
        fields = {k: v for k, v in row.items() if k != "code"}
        if all(getattr(inst, k) == v for k, v in fields.items()):
            continue
        changed.append({"id": inst.id, **fields})
        if inst.status != row["status"]:
            history.append(dict(prefecture_code=prefecture, institution_id=inst.id,
                                old_status=inst.status, new_status=row["status"],
                                source_file=path.name, changed_at=now))
    # Even a file that changes nothing tells clinics their status is current as of now.
    pref = await session.get(Prefecture, prefecture)
    if pref is not None:
        pref.status_as_of = now
        session.add(pref)
    await _write(session, [], changed, progress, history)
    result.updated, result.unchanged = len(changed), len(parsed) - len(changed)
    return result


def _on_roster(prefecture: str, existing: dict[str, Institution], line: int,
               row: dict[str, Any], errors: list[RowError]) -> None:
    """On this prefecture's roster; another prefecture's 10-digit code is named as that."""
    code = row.get("code")
    if code is not None and foreign_prefix(code, prefecture) is not None:
        _prefecture_rule(prefecture, line, row, errors)
    elif code is not None and code not in existing:
        errors.append(RowError(line, "医療機関コード", code, "この都道府県の名簿にない"
                               "医療機関です（先に名簿を取り込んでください）"))


async def import_report(session: AsyncSession, path: Path, prefecture: str,
                        progress: Progress | None = None) -> ImportResult:
    table = read_table(path, REPORT)
    result = ImportResult(str(path), table.encoding)
    existing = await _existing(session, prefecture)
    parsed = _validate(table, REPORT, result, partial(_on_roster, prefecture, existing))
    if result.errors:
        return result
    changed = []
    for code, row in parsed.items():
        report = {k: v for k, v in row.items() if k != "code"}
        if existing[code].report != report:
            changed.append({"id": existing[code].id, "report": report})
    await _write(session, [], changed, progress)
    result.updated, result.unchanged = len(changed), len(parsed) - len(changed)
    return result

