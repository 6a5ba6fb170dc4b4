"""Greeting, help and cancel."""

from __future__ import annotations

from db import repo
from handlers.answers import ASK_STAFF
from handlers.context import Context
from handlers.messages import Button, Inbound, Reply
from handlers.router import Found
from handlers.texts import WELCOME

# The things besides a question a clerk comes for, one tap away (typed words work too).
MENU = (Button("報告状況を確認", "menu:status"), Button("報告の対象か確認", "menu:check"),
        ASK_STAFF)


async def handle_start(msg: Inbound, ctx: Context, _found: Found) -> list[Reply]:
    return [Reply(WELCOME, MENU, meta={"action": "help"})]


async def handle_cancel(msg: Inbound, ctx: Context, _found: Found) -> list[Reply]:
    async with ctx.session() as session:
        await repo.clear_state(session, msg.channel, msg.user_id)
    return [Reply("操作を取り消しました。ご質問があれば、そのまま入力してください。",
                  meta={"action": "cancel"})]
