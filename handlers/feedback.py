"""👍/👎 under an answer (or a typed 「違います」), recorded on the log row of that answer."""

from __future__ import annotations

from db import repo
from handlers.context import Context
from handlers.messages import Inbound, Reply
from handlers.qa import OFFER_STAFF
from handlers.router import Found
from handlers.texts import OFFER_QUESTION


async def handle_feedback(msg: Inbound, ctx: Context, found: Found) -> list[Reply]:
    vote, _, entry_id = found["arg"].partition(":")
    await record_vote(msg, ctx, entry_id, 1 if vote == "up" else -1)
    if vote == "up":
        return [Reply("ご評価ありがとうございます。", meta={"action": "feedback"})]
    return [not_helpful()]


async def record_vote(msg: Inbound, ctx: Context, entry_id: str, vote: int) -> None:
    async with ctx.session() as session:
        for turn in await repo.recent_turns(session, msg.channel, msg.user_id, limit=20):
            if turn.entry_id == entry_id and turn.action in ("answer", "detail"):
                turn.feedback = vote
                session.add(turn)
                await session.commit()
                break


def not_helpful() -> Reply:
    """The answer missed: rephrasing is one way, the person who can answer is the other (the
    buttons, or a typed 「はい」, send the question that answer was for)."""
    return Reply("ご期待に沿えず申し訳ありません。言い方を変えてもう一度お試しいただくことも"
                 "できます。" + OFFER_QUESTION, OFFER_STAFF, meta={"action": "feedback"})
