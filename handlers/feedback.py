"""👍/👎 under an answer (or a typed 「違います」), recorded on the log row of that answer."""

from __future__ import annotations

from db import repo
from handlers.answers import ASK_STAFF, OFFER_STAFF, for_clinics
from handlers.context import Context
from handlers.history import ANSWERED, FEEDBACK, question_answered, recent
from handlers.messages import Button, Inbound, Reply
from handlers.router import Found
from handlers.texts import OFFER_QUESTION

SHOWN_QUESTION = 60  # characters of the question quoted back


async def handle_feedback(msg: Inbound, ctx: Context, found: Found) -> list[Reply]:
    vote, _, entry_id = found["arg"].partition(":")
    if vote == "up":
        await record_vote(msg, ctx, entry_id, 1)
        return [Reply("ご評価ありがとうございます。", meta={"action": FEEDBACK})]
    return [await not_helpful(msg, ctx, entry_id)]


async def record_vote(msg: Inbound, ctx: Context, entry_id: str, vote: int) -> None:
    async with ctx.session() as session:
        for turn in await repo.recent_turns(session, msg.channel, msg.user_id, limit=20):
            if turn.entry_id == entry_id and turn.action in ANSWERED:
                turn.feedback = vote
                session.add(turn)
                await session.commit()
                break


async def not_helpful(msg: Inbound, ctx: Context, entry_id: str) -> Reply:
    """Record the 👎, then offer the two ways on: rephrasing, or the question that answer
    was for sent to staff (the buttons or a typed 「はい」 send that one, quoted here, even
    when newer questions came after it: history.question_answered)."""
    await record_vote(msg, ctx, entry_id, -1)
    question = question_answered(await recent(msg, ctx), entry_id)
    shown_question = (question[:SHOWN_QUESTION] + "…" if len(question) > SHOWN_QUESTION
                      else question)
    about = f"「{shown_question}」について、" if question else ""
    # The entries next in line: the right one was often one rephrasing away.
    bar = ctx.retriever.tuning.related_at
    nearby = [c for c in ctx.retriever.rank(question, k=4)
              if c.entry_id != entry_id and c.score >= bar] if question else []
    shown = tuple(Button(c.question, f"qa:show:{c.entry_id}")
                  for c in for_clinics(nearby, ctx, first=False)[:2])
    text = ("ご期待に沿えず申し訳ありません。"
            + ("近いご質問を下に挙げました。" if shown else "")
            + "別の言い方でもう一度お試しいただくこともできます。" + about + OFFER_QUESTION)
    ask = Button(ASK_STAFF.label, f"{ASK_STAFF.payload}:for:{entry_id}")  # this question
    return Reply(text, (*shown, ask, *OFFER_STAFF[1:]),
                 meta={"action": FEEDBACK, "entry_id": entry_id})
