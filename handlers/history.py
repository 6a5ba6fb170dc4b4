"""What the conversation so far says: the user's recent turns, read from the log.

Typed replies (「はい」, 「違います」, 「それって病院も？」) and hand-offs are read against what
came before; every handler that looks back does it here, so they agree on what "the last
question" and "the bot's last reply" are.
"""

from __future__ import annotations

from datetime import timedelta

from db import repo
from db.models import ConversationLog
from handlers.context import Context
from handlers.messages import Inbound

QUESTION_ACTIONS = ("answer", "suggest", "escalate")
ANSWERED = ("answer", "detail")  # turns that showed an entry's text (a 👍/👎 is about them)
ESCALATED = "escalated"  # the logged action of a turn that handed a question to staff
FEEDBACK = "feedback"  # the logged action of a 👍/👎 (entry_id set when it was a 👎)
SMALL_TALK = "smalltalk"  # thanks, greetings, 「やっぱりやめます」: the topic is closed
OFFER = "offer_staff"  # an offer to send the question before it (it carries none itself)
LINKED = "linked"  # the chat was linked to an institution: what came before is another's
# An unlinked chat changed its prefecture: what came before went to another prefecture.
PREFECTURE_CHANGED = "prefecture_changed"
# Turns after which an earlier question is no longer the one a 「担当者に聞く」 means.
_CLOSED = (ESCALATED, SMALL_TALK, LINKED, PREFECTURE_CHANGED, "help", "cancel")
# How old a question may be and still be sent on with one tap; an older one is asked for.
OPEN_WINDOW = timedelta(hours=1)
# How long the bot's last reply is what a typed reply answers. Short: a campaign message or
# a staff answer in between is not logged as a turn.
REPLY_WINDOW = timedelta(minutes=15)


async def recent(msg: Inbound, ctx: Context, limit: int = 10) -> list[ConversationLog]:
    """The user's latest turns, newest first (the current message is not logged yet)."""
    async with ctx.session() as session:
        return await repo.recent_turns(session, msg.channel, msg.user_id, limit=limit)


def within(turns: list[ConversationLog], ctx: Context,
           window: timedelta = OPEN_WINDOW) -> list[ConversationLog]:
    """The leading turns no older than `window` (turns are newest first)."""
    cutoff = ctx.clock() - window
    kept = []
    for turn in turns:
        if turn.created_at < cutoff:
            break
        kept.append(turn)
    return kept


async def last_turn(msg: Inbound, ctx: Context) -> ConversationLog | None:
    """The bot's latest reply to this user, if recent enough to be what they answer."""
    turns = await recent(msg, ctx, limit=1)
    return turns[0] if turns and fresh(turns[0], ctx) else None


def fresh(turn: ConversationLog, ctx: Context) -> bool:
    return turn.created_at + REPLY_WINDOW >= ctx.clock()


def last_open_question(turns: list[ConversationLog]) -> str:
    """The latest question typed since the last escalation or small talk; one already handed
    to staff is not sent again (a second 「担当者に聞く」 asks for the new question instead),
    nor one the user closed with 「ありがとう」 or 「やっぱりやめます」. Right
    after a 👎 it is the question whose answer was voted down, which need not be the latest
    (also after the bot's offer to send it, which carries no question of its own)."""
    lead = next((i for i, t in enumerate(turns) if t.action != OFFER), len(turns))
    if lead < len(turns) and turns[lead].action == FEEDBACK and turns[lead].entry_id:
        return question_answered(turns[lead + 1:], turns[lead].entry_id)
    for turn in turns:  # newest first
        if turn.action in _CLOSED:
            return ""
        if turn.payload is None and turn.inbound_text and turn.action in QUESTION_ACTIONS:
            return turn.inbound_text
    return ""


def question_answered(turns: list[ConversationLog], entry_id: str) -> str:
    """The question the user asked that `entry_id` answered: the typed question itself, or,
    for a tapped suggestion, the question typed before the tap. Newest first; nothing once
    an escalation lies in between (that question may already be with staff), nor across a
    relink (it was asked for another institution)."""
    for i, turn in enumerate(turns):
        if turn.action in (ESCALATED, LINKED, PREFECTURE_CHANGED):  # with staff, or another's
            return ""
        if turn.action == "answer" and turn.entry_id == entry_id:
            if turn.payload is None:
                return turn.inbound_text
            return next((t.inbound_text for t in turns[i + 1:] if t.payload is None
                         and t.inbound_text and t.action in QUESTION_ACTIONS), "")
    return ""


def for_staff(turns: list[ConversationLog]) -> list[dict]:
    """The typed exchanges since the chat was last linked, as the escalation shows them to
    staff: never a link code, nor what was said while linked to another institution (its
    status, its deadline), which may be another prefecture's."""
    shown = []
    for t in turns:  # newest first
        if t.action in (LINKED, PREFECTURE_CHANGED):
            break
        if t.payload is None and t.inbound_text and not (t.action or "").startswith("link"):
            shown.append({"q": t.inbound_text, "a": t.reply_text, "action": t.action,
                          "score": t.score})
    return shown
