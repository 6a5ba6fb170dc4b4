"""Hand a question to the prefecture's staff, with enough context to answer it."""

from __future__ import annotations

import re
import unicodedata

from db import repo
from db.models import Prefecture
from handlers import courtesy, desk, history
from handlers.context import Context
from handlers.messages import Button, Inbound, Reply
from handlers.router import Found
from handlers.texts import NOTED, OFFER_QUESTION

ASK_FLOW = "ask_staff"
CONFIRM_BUTTONS = (Button("この質問を送る", "esc:ask"), Button("別の質問を送る", "esc:new"),
                   Button("送らない", "esc:no"))
# 「受付番号 Q26-000001 の回答はまだですか」「さっきの問い合わせはどうなりましたか」
# Only a message about the inquiry itself: one with a question of its own (「Q26-000001の
# 件ですが、期限の延長は？」) goes on to be answered, and 「調査票の回答はまだ必要？」 is no
# inquiry at all.
_RECEIPT = re.compile(r"Q(\d{2})-?(\d{1,6})(?!\d)")
# How both forms end: the answer has not come (「どうなりましたか」「まだ？」「来ない」).
_WAITING = (r"どうなり(?:ました|ます)か|どうなって(?:います|ます|る)?"
            r"|まだ(?:ですか|でしょうか|来ない)?|来ない|こない|届かない|届いて(?:い)?ない")
_ABOUT_RECEIPT = re.compile(
    r"^(?:受付番号)?(?:は|:|：)?\s*Q\d{2}-?\d{1,6}\s*(?:の|は|って|、)?\s*(?:件|お問い合わせ|問い合わせ)?"
    r"(?:の|は|って|、)?\s*(?:回答|返事|返信|状況|進み具合)?(?:は|って)?"
    rf"(?:{_WAITING}|いつ(?:ですか|頃|ごろ)?|どう)?[?？。]*$")
_ASKS_TICKET = re.compile(
    r"^(?:さっき|先ほど|先日|前に|以前|この前|昨日|きのう|この間)?の?"
    r"(?:送った|お送りした|した|出した|お願いした|聞いた)?(?:問い?合わ?せ|質問)(?:の件)?"
    r"(?:の|は|って|、)?(?:回答|返事|返信)?(?:は|って|が)?"
    rf"(?:{_WAITING}|状況を(?:教えて|知りたい)(?:ください|下さい)?"
    r"|の?受付番号(?:を|が)?(?:忘れ|失念|わから|わすれ|なんだっけ|何だっけ|教えて)\S*)[?？。]*$"
    r"|^(?:受付番号|うけつけばんごう)(?:を|が|って)?(?:忘れ|失念|わから|わすれ|なんだっけ|何だっけ)")
TICKET_STATUS = {
    "open": "受け付けました。担当者の確認をお待ちください",
    "claimed": "担当者が確認しています",
    "forwarded": "都道府県から厚生労働省に確認しています。回答までお時間をいただきます",
    "answered": "回答済みです",
    "resolved": "対応を終えています",
}


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
        return await handle_new_question(msg, ctx, {})
    if found.get("confirm"):
        # 「人と話したい」 in words may mean the question before or a new one: say which
        # would be sent before sending it.
        return [Reply(f"直前のご質問は「{desk.shorten(question)}」です。別のことをお聞きに"
                      "なりたい場合は「別の質問を送る」を選んでください。\n"
                      + OFFER_QUESTION, CONFIRM_BUTTONS, meta={"action": history.OFFER})]
    return [await _escalate(msg, ctx, question, history.for_staff(turns))]


async def handle_new_question(msg: Inbound, ctx: Context, _found: Found) -> list[Reply]:
    """Ask for the question to send (nothing asked yet, or 「別の質問を送る」)."""
    await _set_flow(msg, ctx)
    return [Reply("担当者にお送りするご質問を入力してください。（やめる場合は「キャンセル」）",
                  meta={"action": "ask_staff"})]


async def handle_question_for_staff(msg: Inbound, ctx: Context, _found: Found) -> list[Reply]:
    """The message typed after 「担当者に聞く」 is the question itself."""
    text = msg.text.strip()
    if not text or text.isdigit() or len(text) < 3:  # 「1」: a tap on a button long gone
        return [Reply("ご質問を文章で入力してください。（やめる場合は「キャンセル」）")]
    if kinds := set(courtesy.kinds_of(msg.text)):  # 「はい」 is not the question
        if kinds <= {"no", "decline"}:
            return await handle_no_staff(msg, ctx, {})
        return [Reply("担当者にお送りするご質問の内容を、文章で入力してください。"
                      "（やめる場合は「キャンセル」）")]
    async with ctx.session() as session:
        await repo.clear_state(session, msg.channel, msg.user_id)
    turns = await history.recent(msg, ctx)
    return [await _escalate(msg, ctx, text, history.for_staff(turns))]


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


def asks_ticket(msg: Inbound, _ctx: Context) -> Found | None:
    """A short question about an inquiry already sent: by number, or 「さっきの問い合わせ」."""
    text = unicodedata.normalize("NFKC", msg.text).upper().strip()
    if msg.payload is not None or len(text) > 60:
        return None
    if (m := _RECEIPT.search(text)) and _ABOUT_RECEIPT.search(text):
        return {"receipt": f"Q{m.group(1)}-{int(m.group(2)):06d}", "prefecture": m.group(1),
                "id": m.group(2)}
    return {} if not m and _ASKS_TICKET.search(text) else None


async def handle_ticket_status(msg: Inbound, ctx: Context, found: Found) -> list[Reply]:
    """The state of this chat's own inquiries, never anyone else's: a receipt number typed
    here is looked up among them only."""
    assert ctx.account is not None
    receipt = found.get("receipt")
    if receipt and found["prefecture"] != ctx.tenant:  # another prefecture's number
        rows = []
    else:
        async with ctx.session() as session:
            rows = await repo.account_escalations(
                session, ctx.tenant, ctx.account.id, int(found["id"]) if receipt else None)
    # Asked under another link (a relink, a revoked one), an inquiry is that institution's.
    rows = [e for e in rows if e.context.get("institution_id") == ctx.account.institution_id]
    if receipt:
        if not rows:
            return [Reply(f"このチャットから送られたお問い合わせに、受付番号 {receipt} は見つかり"
                          "ませんでした。番号をご確認ください。", meta={"action": "ticket"})]
    if not rows:
        return [Reply("このチャットから都道府県の担当者に送られたお問い合わせはまだありません。"
                      "ご質問があれば、そのまま入力してください。", meta={"action": "ticket"})]
    lines = []
    for esc in rows[:3]:
        state = TICKET_STATUS.get(esc.status, "確認しています")
        line = f"・{esc.receipt}「{desk.shorten(esc.question, 30)}」：{state}。"
        if esc.status in ("answered", "resolved") and esc.answer:
            line += f"\n　回答：{esc.answer}"
        lines.append(line)
    return [Reply("お問い合わせの状況です。\n" + "\n".join(lines)
                  + "\n回答はこのチャットにお届けします。", meta={"action": "ticket"})]

