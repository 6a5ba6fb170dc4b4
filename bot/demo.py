"""Local terminal channel: the demo chat on the embedded defaults, scriptable via stdin."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import TextIO

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from db.models import Institution, LinkCode
from db.prefectures import default_period
from handlers.context import Context, system_clock
from handlers.dispatch import dispatch
from handlers.linking import hash_code, normalise_code
from handlers.messages import Button, Inbound, Reply
from knowledge.normalize import clean_user_text
from scheduler.calendar import JST

DEMO_USER = "demo-user"
DEMO_LINKED = "9990003"  # デモ在宅診療所: 差し戻し, the status with the most to show
# The demo's own database holds made-up institutions only, so one printed, fixed code is
# safe there, and a piped script can use it without reading the banner first.
DEMO_CODE = "TRYME-23456"


async def demo_link_hint(session: AsyncSession, prefecture: str, now: datetime,
                         key: bytes | None) -> str:
    """Make DEMO_CODE link the demo user to a demo clinic, so 連携 and 報告状況 can be
    tried; say so in the banner."""
    inst = (await session.exec(select(Institution).where(
        Institution.prefecture_code == prefecture, Institution.code == DEMO_LINKED))).first()
    if inst is None or inst.id is None:
        return ""
    digest = hash_code(normalise_code(DEMO_CODE) or "", key)
    row = (await session.exec(select(LinkCode).where(LinkCode.code_hash == digest))).first()
    if row is None:
        row = LinkCode(prefecture_code=prefecture, institution_id=inst.id, code_hash=digest,
                       expires_at=now, created_at=now)
    row.institution_id, row.used_at, row.used_by = inst.id, None, None
    row.expires_at = now + timedelta(days=1)
    session.add(row)
    await session.commit()
    return (f"報告状況を試すには「連携 {DEMO_CODE}」と送ってください（{inst.name}のデモ用）。"
            "本物のコードと同じく1回限りで、デモを起動し直すと再び使えます。\n")


def demo_clock(base: Callable[[], datetime] = system_clock,
               ) -> tuple[Callable[[], datetime], str]:
    """The demo's clock, and a banner line if it is not today's: outside the reporting
    window it runs on 1 February of the coming cycle, because its clinics are 報告済 or
    差し戻し, which read as nonsense before reporting has opened."""
    today = base().astimezone(JST).date()
    start, end = default_period(today)
    if start <= today <= end:
        return base, ""
    shift = timedelta(days=(start + timedelta(days=31) - today).days)
    day = today + shift
    return (lambda: base() + shift,
            f"デモは、報告期間中の{day.year}年{day.month}月{day.day}日として動いています。\n")


def render(replies: Iterable[Reply]) -> tuple[str, list[Button]]:
    """Reply text with buttons as numbered choices; returns the choices for the next line."""
    lines: list[str] = []
    choices: list[Button] = []
    for reply in replies:
        lines.append(reply.text)
        for link in reply.links:
            lines.append(f"  {link.label}: {link.url}")
        for button in reply.buttons:
            choices.append(button)
            lines.append(f"  [{len(choices)}] {button.label}")
    return "\n".join(lines), choices


def choice_number(line: str) -> int | None:
    """A line that is a bare number (ASCII or full-width digits; not ① or ²)."""
    text = line.strip()
    return int(text) if text.isdecimal() else None


def to_inbound(line: str, choices: list[Button], tenant: str) -> Inbound:
    """A bare number picks the numbered button of the previous reply."""
    number = choice_number(line)
    if number is not None and 1 <= number <= len(choices):
        button = choices[number - 1]
        return Inbound("demo", DEMO_USER, text=button.label, payload=button.payload,
                       tenant=tenant)
    return Inbound("demo", DEMO_USER, text=line, tenant=tenant)


async def run_demo(ctx: Context, stdin: TextIO = sys.stdin, stdout: TextIO = sys.stdout,
                   hint: str = "") -> None:
    interactive = stdin.isatty()
    out = stdout.write
    out("かかりつけ医機能報告サポート（デモ）です。ご質問を入力してください。"
        "番号で選択肢を選べます。終了は Ctrl-D または「終了」。\n" + hint)
    choices: list[Button] = []
    while True:
        if interactive:
            out("\nあなた> ")
            stdout.flush()
        line = stdin.readline()
        if not line or line.strip() in ("終了", "exit", "quit"):
            break
        if not interactive:
            out(f"\nあなた> {clean_user_text(line)}\n")  # never echo escape codes
        number = choice_number(line)
        if number is not None and choices and not 1 <= number <= len(choices):
            # A chat shows buttons, not numbers: a number off the list is the demo's to answer.
            listed = "「1」を入力してお選びください" if len(choices) == 1 else (
                f"1〜{len(choices)}の番号でお選びください")
            out(f"ボット> その番号の選択肢はありません。{listed}。\n")
            continue
        replies = await dispatch(to_inbound(line.rstrip("\n"), choices, ctx.tenant), ctx)
        text, choices = render(replies)
        out(f"ボット> {text}\n")
        stdout.flush()
    out("ご利用ありがとうございました。\n")
