"""Local terminal channel: the demo chat on the embedded defaults, scriptable via stdin."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import TextIO

from handlers.context import Context
from handlers.dispatch import dispatch
from handlers.messages import Button, Inbound, Reply
from knowledge.normalize import clean_user_text

DEMO_USER = "demo-user"


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


def to_inbound(line: str, choices: list[Button], tenant: str) -> Inbound:
    """A bare number picks the numbered button of the previous reply."""
    text = line.strip()
    if text.isdigit() and 1 <= int(text) <= len(choices):
        button = choices[int(text) - 1]
        return Inbound("demo", DEMO_USER, text=button.label, payload=button.payload,
                       tenant=tenant)
    return Inbound("demo", DEMO_USER, text=line, tenant=tenant)


async def run_demo(ctx: Context, stdin: TextIO = sys.stdin, stdout: TextIO = sys.stdout) -> None:
    interactive = stdin.isatty()
    out = stdout.write
    out("かかりつけ医機能報告サポート（デモ）です。ご質問を入力してください。"
        "番号で選択肢を選べます。終了は Ctrl-D または「終了」。\n")
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
        replies = await dispatch(to_inbound(line.rstrip("\n"), choices, ctx.tenant), ctx)
        text, choices = render(replies)
        out(f"ボット> {text}\n")
        stdout.flush()
    out("ご利用ありがとうございました。\n")
