"""Campaign message templates: per prefecture and kind, with named placeholders.

A template is checked when it is saved: an unknown placeholder, a format spec or a broken
brace is refused then, so a campaign can never fail (or send "{institution}") at send time.
"""

from __future__ import annotations

import difflib
import string
from collections.abc import Mapping
from datetime import date

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from db.models import MessageTemplate, utcnow
from scheduler.campaign_check import TARGET_STATUSES

PLACEHOLDERS: Mapping[str, str] = {
    "institution_name": "医療機関名",
    "deadline": "報告期限（例：2027年3月31日（水））",
    "days_left": "期限までの日数（例：あと7日／本日が期限／期限から3日経過）",
    "how_to_report": "報告の方法",
    "contact": "都道府県の問い合わせ先",
    "prefecture": "都道府県名",
}
KINDS = tuple(TARGET_STATUSES)  # annai, dunning, returned
MAX_LENGTH = 3500  # one Telegram message (4096) with room for the placeholders' values
HOW_TO_REPORT = ("G-MISにパソコンからログインし、かかりつけ医機能報告を入力したうえで、"
                 "最後に「報告」ボタンを押してください（押さないと提出されません）。")
WEEKDAYS = "月火水木金土日"

DEFAULTS: Mapping[str, str] = {
    "annai": (
        "{institution_name} ご担当者さま\n\n"
        "{prefecture}より、かかりつけ医機能報告（定期報告）のご案内です。"
        "今年度の報告期限は{deadline}です。\n\n{how_to_report}\n"
        "G-MISのアカウントがない場合や報告画面に進めない場合は、準備に2週間〜1か月ほど"
        "かかることがありますので、お早めにご確認ください。\n\n"
        "お問い合わせ：{contact}"),
    "dunning": (
        "{institution_name} ご担当者さま\n\n"
        "かかりつけ医機能報告について、{prefecture}ではまだ報告を確認できておりません。"
        "報告期限は{deadline}です（{days_left}）。\n\n{how_to_report}\n"
        "すでにご報告済みの場合は、行き違いですのでご容赦ください。\n\n"
        "お問い合わせ：{contact}"),
    "returned": (
        "{institution_name} ご担当者さま\n\n"
        "{prefecture}からお送りした、かかりつけ医機能報告の修正のお願い（差し戻し）について、"
        "まだ再提出を確認できておりません。G-MISで報告を修正し、もう一度「報告」ボタンを"
        "押して再提出をお願いいたします。報告期限は{deadline}です（{days_left}）。\n\n"
        "お問い合わせ：{contact}"),
}


class TemplateError(ValueError):
    """A template that must not be saved; the message says why, in Japanese for staff.

    `line` and `column` (1-based, in the body) say where, when the problem has a place."""

    def __init__(self, message: str, line: int | None = None, column: int | None = None):
        super().__init__(message)
        self.message, self.line, self.column = message, line, column


def validate(body: str) -> None:
    """Refuse unknown placeholders, format specs, broken braces and a missing {contact}.

    {contact} is required because nothing appends it: README promises every message says
    whom to ask, and every default has it. Lines are checked one by one so that an error
    can name its line (a placeholder never spans lines)."""
    if not body.strip():
        raise TemplateError("本文が空です。")
    if len(body) > MAX_LENGTH:
        raise TemplateError(f"本文が長すぎます（{len(body)}文字、上限{MAX_LENGTH}文字）。")
    names = {name for number, line in enumerate(body.split("\n"), 1)
             for name in _placeholders(line, number)}
    if "contact" not in names:
        raise TemplateError(f"差し込み項目 {{contact}}（{PLACEHOLDERS['contact']}）がありません。"
                            "どの文面にも問い合わせ先を入れてください（例：お問い合わせ：{contact}）。")


def _placeholders(line: str, number: int) -> list[str]:
    """The placeholder names on one line; a TemplateError names the line (and column)."""
    try:
        fields = list(string.Formatter().parse(line))
    except ValueError:
        column, brace = _stray_brace(line)
        other = "}" if brace == "{" else "{"
        raise TemplateError(f"「{brace}」に対応する「{other}」がありません。差し込み項目は "
                            "{deadline} のように書き、波かっこを文字として使う場合は {{ と }} "
                            "と書いてください。", number, column or None) from None
    names = [(name, spec or conversion) for _text, name, spec, conversion in fields
             if name is not None]
    for name, formatted in names:
        if name not in PLACEHOLDERS:
            known = "、".join("{" + p + "}" for p in PLACEHOLDERS)
            raise TemplateError(f"使えない差し込み項目 {{{name}}} があります。"
                                f"{_did_you_mean(name)}使えるのは {known} です。", number)
        if formatted:
            raise TemplateError(f"差し込み項目 {{{name}}} に書式指定は使えません。", number)
    return [name for name, _ in names]


def _stray_brace(line: str) -> tuple[int, str]:
    """Column (1-based) and the brace str.format stumbles on: a lone "}" or an unclosed "{"
    (nested ones counted as format() counts them); (0, "{") if none is found."""
    i = 0
    while i < len(line):
        if line.startswith(("{{", "}}"), i):
            i += 2
        elif line[i] == "}":
            return i + 1, "}"
        elif line[i] == "{":
            depth, j = 1, i + 1
            while j < len(line) and depth:
                depth += {"{": 1, "}": -1}.get(line[j], 0)
                j += 1
            if depth:
                return i + 1, "{"
            i = j
        else:
            i += 1
    return 0, "{"


def _did_you_mean(name: str) -> str:
    close = difflib.get_close_matches(name, PLACEHOLDERS, n=1)
    return f"{{{close[0]}}} のことでしょうか。" if close else ""


def render(body: str, values: Mapping[str, str]) -> str:
    return body.format_map({k: values.get(k, "") for k in PLACEHOLDERS})


def format_deadline(day: date | None) -> str:
    if day is None:
        return "（未設定）"
    return f"{day.year}年{day.month}月{day.day}日（{WEEKDAYS[day.weekday()]}）"


def days_left_text(deadline: date | None, on: date) -> str:
    if deadline is None:
        return "期限は未設定です"
    days = (deadline - on).days
    if days > 0:
        return f"あと{days}日"
    return "本日が期限" if days == 0 else f"期限から{-days}日経過"


async def get_body(session: AsyncSession, prefecture_code: str, kind: str) -> str:
    """The prefecture's own wording for `kind`, else the built-in default."""
    stmt = select(MessageTemplate).where(MessageTemplate.prefecture_code == prefecture_code,
                                         MessageTemplate.kind == kind)
    found = (await session.exec(stmt)).first()
    return found.body if found else DEFAULTS[kind]


async def save(session: AsyncSession, prefecture_code: str, kind: str, body: str) -> None:
    """Validate, then store; raises TemplateError and stores nothing when invalid."""
    if kind not in KINDS:
        raise TemplateError(f"種類は {', '.join(KINDS)} のいずれかです。")
    validate(body)
    stmt = select(MessageTemplate).where(MessageTemplate.prefecture_code == prefecture_code,
                                         MessageTemplate.kind == kind)
    row = (await session.exec(stmt)).first() or MessageTemplate(
        prefecture_code=prefecture_code, kind=kind, body=body)
    row.body, row.updated_at = body, utcnow()
    session.add(row)
    await session.commit()
