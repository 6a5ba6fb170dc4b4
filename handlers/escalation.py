"""Hand a question to the prefecture's staff, with enough context to answer it."""

from __future__ import annotations

from db import repo
from db.models import ConversationLog
from handlers import courtesy, desk
from handlers.context import Context
from handlers.messages import Inbound, Reply
from handlers.router import Found
from handlers.texts import NOTED

ASK_FLOW = "ask_staff"
QUESTION_ACTIONS = ("answer", "suggest", "escalate")
ESCALATED = "escalated"  # the logged action of a turn that handed a question to staff
FEEDBACK = "feedback"  # the logged action of a 👍/👎 (entry_id set when it was a 👎)


async def handle_ask_staff(msg: Inbound, ctx: Context, found: Found) -> list[Reply]:
    """Escalate the question given, else the user's last question, else ask for one."""
    question = found.get("arg", "").strip() if msg.payload is None else ""
    turns = await _turns(msg, ctx)
    history = _history(turns)
    if not question:
        question = _last_open_question(turns)
    if not question:
        await _set_flow(msg, ctx)
        return [Reply("担当者にお送りするご質問を入力してください。（やめる場合は「キャンセル」）",
                      meta={"action": "ask_staff"})]
    return [await _escalate(msg, ctx, question, history)]


async def handle_question_for_staff(msg: Inbound, ctx: Context, _found: Found) -> list[Reply]:
    """The message typed after 「担当者に聞く」 is the question itself."""
    if not msg.text.strip():
        return [Reply("ご質問を文章で入力してください。（やめる場合は「キャンセル」）")]
    if kinds := set(courtesy.kinds_of(msg.text)):  # 「はい」 is not the question
        if kinds <= {"no", "decline"}:
            async with ctx.session() as session:
                await repo.clear_state(session, msg.channel, msg.user_id)
            return [Reply(NOTED)]
        return [Reply("担当者にお送りするご質問の内容を、文章で入力してください。"
                      "（やめる場合は「キャンセル」）")]
    async with ctx.session() as session:
        await repo.clear_state(session, msg.channel, msg.user_id)
    return [await _escalate(msg, ctx, msg.text.strip(), _history(await _turns(msg, ctx)))]


async def handle_no_staff(msg: Inbound, ctx: Context, _found: Found) -> list[Reply]:
    return [Reply(NOTED)]


async def _escalate(msg: Inbound, ctx: Context, question: str, history: list[dict]) -> Reply:
    assert ctx.account is not None
    candidates = [c.__dict__ for c in ctx.retriever.rank(question, k=3)]
    context = {"history": history[:10], "candidates": candidates,
               "institution_id": ctx.account.institution_id}
    async with ctx.session() as session:
        esc = await repo.create_escalation(session, ctx.tenant, ctx.account.id, question[:4000],
                                           context, ctx.clock())
        await desk.announce(session, esc, ctx.clock())  # the staff card, through the outbox
    text = (
        f"都道府県の担当者にお問い合わせを送りました。受付番号は {esc.receipt} です。\n"
        "回答はこのチャットにお届けします。お急ぎの場合は、受付番号を添えて都道府県の窓口へ"
        "お電話ください。"
    )
    return Reply(text, meta={"action": ESCALATED, "escalation_id": esc.id})


async def _turns(msg: Inbound, ctx: Context) -> list[ConversationLog]:
    async with ctx.session() as session:
        return await repo.recent_turns(session, msg.channel, msg.user_id, limit=10)


def _last_open_question(turns: list[ConversationLog]) -> str:
    """The latest question typed since the last escalation; one already handed to staff
    is not sent again (a second 「担当者に聞く」 asks for the new question instead). Right
    after a 👎 it is the question whose answer was voted down, which need not be the latest."""
    if turns and turns[0].action == FEEDBACK and turns[0].entry_id:
        return question_answered(turns[1:], turns[0].entry_id)
    for turn in turns:  # newest first
        if turn.action == ESCALATED:
            return ""
        if turn.payload is None and turn.inbound_text and turn.action in QUESTION_ACTIONS:
            return turn.inbound_text
    return ""


def question_answered(turns: list[ConversationLog], entry_id: str) -> str:
    """The question the user asked that `entry_id` answered: the typed question itself, or,
    for a tapped suggestion, the question typed before the tap. Newest first; nothing once
    an escalation lies in between (that question may already be with staff)."""
    for i, turn in enumerate(turns):
        if turn.action == ESCALATED:
            return ""
        if turn.action == "answer" and turn.entry_id == entry_id:
            if turn.payload is None:
                return turn.inbound_text
            return next((t.inbound_text for t in turns[i + 1:] if t.payload is None
                         and t.inbound_text and t.action in QUESTION_ACTIONS), "")
    return ""


def _history(turns: list[ConversationLog]) -> list[dict]:
    return [
        {"q": t.inbound_text, "a": t.reply_text, "action": t.action, "score": t.score}
        for t in turns if t.payload is None and t.inbound_text
    ]


async def _set_flow(msg: Inbound, ctx: Context) -> None:
    async with ctx.session() as session:
        await repo.set_state(session, msg.channel, msg.user_id, ASK_FLOW, {}, ctx.clock())
