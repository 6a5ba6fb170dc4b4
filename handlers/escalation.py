"""Hand a question to the prefecture's staff, with enough context to answer it."""

from __future__ import annotations

from db import repo
from db.models import Prefecture
from handlers import courtesy, desk, history
from handlers.context import Context
from handlers.messages import Inbound, Reply
from handlers.router import Found
from handlers.texts import NOTED

ASK_FLOW = "ask_staff"


async def handle_ask_staff(msg: Inbound, ctx: Context, found: Found) -> list[Reply]:
    """Escalate the question given, else the user's last question, else ask for one."""
    question = found.get("arg", "").strip() if msg.payload is None else ""
    turns = await history.recent(msg, ctx)
    if not question and msg.payload and found.get("arg", "").startswith("for:"):
        # The button under a 👎 reply: the question of the answer voted down, even if it
        # is tapped after newer questions.
        question = history.question_answered(turns, found["arg"].removeprefix("for:"))
    elif not question:
        question = history.last_open_question(history.within(turns, ctx))
    if not question:
        await _set_flow(msg, ctx)
        return [Reply("担当者にお送りするご質問を入力してください。（やめる場合は「キャンセル」）",
                      meta={"action": "ask_staff"})]
    return [await _escalate(msg, ctx, question, history.for_staff(turns))]


async def handle_question_for_staff(msg: Inbound, ctx: Context, _found: Found) -> list[Reply]:
    """The message typed after 「担当者に聞く」 is the question itself."""
    if not msg.text.strip():
        return [Reply("ご質問を文章で入力してください。（やめる場合は「キャンセル」）")]
    if kinds := set(courtesy.kinds_of(msg.text)):  # 「はい」 is not the question
        if kinds <= {"no", "decline"}:
            return await handle_no_staff(msg, ctx, {})
        return [Reply("担当者にお送りするご質問の内容を、文章で入力してください。"
                      "（やめる場合は「キャンセル」）")]
    async with ctx.session() as session:
        await repo.clear_state(session, msg.channel, msg.user_id)
    turns = await history.recent(msg, ctx)
    return [await _escalate(msg, ctx, msg.text.strip(), history.for_staff(turns))]


async def handle_no_staff(msg: Inbound, ctx: Context, _found: Found) -> list[Reply]:
    """「送らない」: the question is closed (and a pending 「担当者に聞く」 prompt with it); a
    later 「担当者に聞く」 asks for one afresh."""
    if ctx.flow == ASK_FLOW:
        async with ctx.session() as session:
            await repo.clear_state(session, msg.channel, msg.user_id)
    return [Reply(NOTED, meta={"action": history.SMALL_TALK})]


async def _escalate(msg: Inbound, ctx: Context, question: str, exchanges: list[dict],
                    ) -> Reply:
    assert ctx.account is not None
    candidates = [c.__dict__ for c in ctx.retriever.rank(question, k=3)]
    context = {"history": exchanges[:10], "candidates": candidates,
               "institution_id": ctx.account.institution_id}
    async with ctx.session() as session:
        esc = await repo.create_escalation(session, ctx.tenant, ctx.account.id, question[:4000],
                                           context, ctx.clock())
        await desk.announce(session, esc, ctx.clock())  # the staff card, through the outbox
        own = ctx.account.linked_prefecture  # an unlinked user's is only the bot's default
        pref = await session.get(Prefecture, own) if own else None
    desk_contact = pref.inquiry_contact if pref and pref.inquiry_contact else "都道府県の窓口"
    text = (
        f"都道府県の担当者にお問い合わせを送りました。受付番号は {esc.receipt} です。\n"
        "回答はこのチャットにお届けします。お急ぎの場合は、受付番号を添えて"
        f"{desk_contact}へお問い合わせください。"
    )
    return Reply(text, meta={"action": history.ESCALATED, "escalation_id": esc.id})


async def _set_flow(msg: Inbound, ctx: Context) -> None:
    async with ctx.session() as session:
        await repo.set_state(session, msg.channel, msg.user_id, ASK_FLOW, {}, ctx.clock())
