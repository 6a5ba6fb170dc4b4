"""👍/👎 under an answer, recorded on the conversation log row of that answer."""

from __future__ import annotations

from db import repo
from handlers.context import Context
from handlers.messages import Inbound, Reply
from handlers.router import Found


async def handle_feedback(msg: Inbound, ctx: Context, found: Found) -> list[Reply]:
    vote, _, entry_id = found["arg"].partition(":")
    async with ctx.session() as session:
        for turn in await repo.recent_turns(session, msg.channel, msg.user_id, limit=20):
            if turn.entry_id == entry_id and turn.action in ("answer", "detail"):
                turn.feedback = 1 if vote == "up" else -1
                session.add(turn)
                await session.commit()
                break
    if vote == "up":
        return [Reply("ご評価ありがとうございます。", meta={"action": "feedback"})]
    return [
        Reply(
            "ご期待に沿えず申し訳ありません。質問の言い方を変えてお試しいただくか、"
            "「担当者に聞く」で都道府県の担当者にお問い合わせください。",
            meta={"action": "feedback"},
        )
    ]
