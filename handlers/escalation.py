"""Hand a question to the prefecture's staff, with enough context to answer it."""

from __future__ import annotations

from dataclasses import replace

from db import repo
from db.models import Prefecture
from handlers import answers, courtesy, desk, history, linking, prefecture_choice, qa
from handlers.context import Context
from handlers.messages import Button, Inbound, Reply
from handlers.router import Found
from handlers.texts import NOTED, OFFER_QUESTION, desk_of, shorten, staff_of

ASK_FLOW = "ask_staff"
UNSURE = ("escalate", "suggest", history.OFFER)  # replies that offer 「担当者に聞く」
CONFIRM_BUTTONS = (Button("この質問を送る", "esc:ask"), Button("別の質問を送る", "esc:new"),
                   Button("送らない", "esc:no"))


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
        # would be sent before sending it. A question typed next is the new one.
        await _set_flow(msg, ctx, {"confirm": question})
        return [Reply(f"直前のご質問は「{shorten(question)}」です。{_system_note(question, ctx)}"
                      "別のことをお聞きになりたい場合は、そのご質問を入力してください。\n"
                      + OFFER_QUESTION, CONFIRM_BUTTONS, meta={"action": history.OFFER})]
    if ctx.flow == ASK_FLOW:  # the confirmation's button: the prompt is answered
        return await _send_closing_prompt(msg, ctx, question)
    return [await escalate(msg, ctx, question, history.for_staff(turns))]


async def handle_ask_staff_command(msg: Inbound, ctx: Context, found: Found) -> list[Reply]:
    """「担当者に聞く」 typed. Right after the bot said it is unsure it is the yes to that
    offer; after an answer the clerk may mean the question they type next, so the one that
    would be sent is shown first."""
    if found.get("arg"):  # 「担当者に聞く 紙でも出せますか」: the question itself
        return await handle_ask_staff(msg, ctx, found)
    last = await history.last_turn(msg, ctx)
    offered = last is not None and (last.action in UNSURE or (  # or a 👎's reply
        last.action == history.FEEDBACK and last.entry_id is not None))
    return await handle_ask_staff(msg, ctx, {} if offered else {"confirm": "yes"})


async def handle_new_question(msg: Inbound, ctx: Context, _found: Found) -> list[Reply]:
    """Ask for the question to send (nothing asked yet, or 「別の質問を送る」)."""
    await _set_flow(msg, ctx)
    return [Reply("担当者にお送りするご質問を入力してください。（やめる場合は「キャンセル」）",
                  meta={"action": "ask_staff"})]


def _system_note(question: str, ctx: Context) -> str:
    """For a G-MIS system question about to go to the prefecture: who can answer it. A
    clerk who typed 「担当者に聞く」 after the password answer had it sent to staff, who
    cannot reset a password."""
    if ctx.retriever.decide(question).route != "gmis_callcenter":
        return ""
    return ("\nG-MISのログイン・パスワード・画面操作については、都道府県の担当者では"
            "お答えできません。G-MIS事務局にお問い合わせください。\n"
            f"{answers.contact_line(ctx.config.gmis_contact)}\n")


async def handle_question_for_staff(msg: Inbound, ctx: Context, _found: Found) -> list[Reply]:
    """The message typed after 「担当者に聞く」 is the question itself; one the knowledge
    base answers for sure is answered first, with the offer to send it still open (a busy
    desk should not get 「締め切りはいつ？」), and one with no words at all is asked again."""
    text = msg.text.strip()
    confirming = str(ctx.flow_data.get("confirm") or "")  # the question the prompt named
    if not any(c.isalnum() for c in text):  # 「😀😀😀」「？？？」: no words (as qa reads it)
        return [Reply("ご質問を文章で入力してください。（やめる場合は「キャンセル」）")]
    if not text or text.isdigit() or len(text) < 3:  # 「1」: a tap on a button long gone
        if confirming and courtesy.yes_or_no(text) == "yes":  # 「はい」: the one named
            return await _send_closing_prompt(msg, ctx, confirming)
        return [Reply("ご質問を文章で入力してください。（やめる場合は「キャンセル」）")]
    if kinds := set(courtesy.kinds_of(msg.text)):  # 「はい」 is not the question
        if kinds <= {"no", "decline"}:
            return await handle_no_staff(msg, ctx, {})
        if confirming and kinds & {"yes", "please"}:
            return await _send_closing_prompt(msg, ctx, confirming)
        return [Reply("担当者にお送りするご質問の内容を、文章で入力してください。"
                      "（やめる場合は「キャンセル」）")]
    if (decision := ctx.retriever.decide(text)).action == "answer":
        async with ctx.session() as session:
            await repo.clear_state(session, msg.channel, msg.user_id)
        answer = await answers.reply_for(decision, ctx, text)
        if decision.route == "gmis_callcenter":
            rest = "G-MIS以外のことでしたら、"
        else:
            rest = "この内容で解決しない場合は、"
        return [replace(answer, text="担当者にお送りする前に、ご案内できる内容をお示しします。\n\n"
                        + answer.text),
                Reply(rest + OFFER_QUESTION, answers.OFFER_STAFF,
                      meta={"action": history.OFFER})]
    return await _send_closing_prompt(msg, ctx, text)


async def _send_closing_prompt(msg: Inbound, ctx: Context, question: str) -> list[Reply]:
    """Send `question` to staff and end the prompt that asked for it."""
    async with ctx.session() as session:
        await repo.clear_state(session, msg.channel, msg.user_id)
    turns = await history.recent(msg, ctx)
    return [await escalate(msg, ctx, question, history.for_staff(turns))]


async def handle_no_staff(msg: Inbound, ctx: Context, _found: Found) -> list[Reply]:
    """「送らない」: the question is closed (and a pending 「担当者に聞く」 prompt with it); a
    later 「担当者に聞く」 asks for one afresh."""
    if ctx.flow == ASK_FLOW:
        async with ctx.session() as session:
            await repo.clear_state(session, msg.channel, msg.user_id)
    return [Reply(NOTED, meta={"action": history.SMALL_TALK})]


async def escalate(msg: Inbound, ctx: Context, question: str, exchanges: list[dict],
                    choose: bool = True) -> Reply:
    """Send the question to the chat's prefecture; an unlinked chat of a bot serving several
    is first asked which one is its own (`choose`), and the question waits for the answer."""
    assert ctx.account is not None
    if choose and (served := await prefecture_choice.to_choose(ctx)):
        await _set_flow(msg, ctx, {"question": question}, prefecture_choice.FLOW)
        return prefecture_choice.ask(served)
    question = linking.mask_codes(question)
    candidates = [c.__dict__ for c in ctx.retriever.rank(question, k=3)]
    shown = [{**t, "q": linking.mask_codes(str(t.get("q") or "")),
              "a": linking.mask_codes(str(t.get("a") or ""))} for t in exchanges[:10]]
    # The name the clinic is told: its prefecture is known once linked or chosen, while
    # an unlinked chat's default tenant may not be its own.
    context = {"history": shown, "candidates": candidates,
               "prefecture_known": ctx.account.known_prefecture is not None}
    async with ctx.session() as session:
        esc = await repo.create_escalation(session, ctx.tenant, ctx.account.id, question[:4000],
                                           context, ctx.clock(), ctx.account.institution_id)
        await desk.announce(session, esc, ctx.clock())  # the staff card, through the outbox
        pref = await desk.prefecture_told(session, esc)
    desk_contact = desk_of(pref.inquiry_contact if pref else None)
    text = (
        f"{staff_of(pref.name if pref else None)}にお問い合わせを送りました。"
        f"受付番号は {esc.receipt} です。\n"
        "回答はこのチャットにお届けします。お急ぎの場合は、受付番号を添えて"
        f"{desk_contact}へお問い合わせください。"
    )
    return Reply(text, meta={"action": history.ESCALATED, "escalation_id": esc.id})


async def _set_flow(msg: Inbound, ctx: Context, data: dict[str, str] | None = None,
                    flow: str = ASK_FLOW) -> None:
    async with ctx.session() as session:
        await repo.set_state(session, msg.channel, msg.user_id, flow, data or {}, ctx.clock())


async def handle_prefecture(msg: Inbound, ctx: Context, found: Found) -> list[Reply]:
    """The prefecture an unlinked chat named (tapped or typed), kept for the chat; the
    question that waited for it is then sent. Nothing else is ever sent from here: a late
    or second tap only says where questions go."""
    assert ctx.account is not None
    waiting = ctx.flow == prefecture_choice.FLOW
    tapped = msg.payload is not None
    if ctx.account.linked or (not waiting and ctx.account.known_prefecture is not None):
        return await _prefecture_settled(msg, ctx, waiting, tapped)
    if waiting and not tapped and prefecture_choice.moved_on(msg.text, ctx.retriever):
        return await _leave_prompt(msg, ctx)
    async with ctx.session() as session:
        served = await repo.prefectures(session)
    picked = prefecture_choice.read(found.get("arg", "") if tapped else msg.text, served, tapped)
    if isinstance(picked, Reply):
        return [picked]
    async with ctx.session() as session:
        await repo.set_chat_prefecture(session, ctx.account.id, picked.code)
        if waiting:
            await repo.clear_state(session, msg.channel, msg.user_id)
    ctx = replace(ctx, account=replace(ctx.account, prefecture_code=picked.code))
    lead = prefecture_choice.chosen(picked.name)
    if question := str(ctx.flow_data.get("question") or "") if waiting else "":
        turns = await history.recent(msg, ctx)
        replies = [await escalate(msg, ctx, question, history.for_staff(turns))]
    elif waiting:  # 「都道府県を変更」: nothing waited to be sent
        return [Reply(lead + "\nご質問があれば、そのまま入力してください。",
                      meta={"action": history.PREFECTURE_CHANGED})]
    else:  # a tap after the prompt ended: the question before it only once confirmed
        replies = await handle_ask_staff(msg, ctx, {"confirm": "yes"})
    return [replace(replies[0], text=lead + "\n\n" + replies[0].text), *replies[1:]]


async def _prefecture_settled(msg: Inbound, ctx: Context, waiting: bool, tapped: bool,
                              ) -> list[Reply]:
    """The chat's prefecture is known already (linked since it was asked, or a second
    tap): a tap says where questions go, a typed message is read as itself."""
    if waiting:
        async with ctx.session() as session:
            await repo.clear_state(session, msg.channel, msg.user_id)
    if not tapped:
        return await qa.handle_question(msg, ctx, {})
    async with ctx.session() as session:
        current = await session.get(Prefecture, ctx.tenant)
    name = current.name if current else "都道府県"
    if ctx.account is not None and ctx.account.linked:
        return [Reply(f"このチャットは{name}の医療機関と連携しているため、ご質問は{name}の"
                      "担当者にお送りします。", meta={"action": prefecture_choice.FLOW})]
    return [Reply(f"このチャットからのご質問は、{name}の担当者にお送りしています。"
                  + prefecture_choice.CHANGE_HINT, meta={"action": prefecture_choice.FLOW})]


async def _leave_prompt(msg: Inbound, ctx: Context) -> list[Reply]:
    async with ctx.session() as session:
        await repo.clear_state(session, msg.channel, msg.user_id)
    return await qa.handle_question(msg, ctx, {})


async def handle_change_prefecture(msg: Inbound, ctx: Context, found: Found) -> list[Reply]:
    """「都道府県を変更」: an unlinked chat chooses again (a wrong tap must not send every
    later question to another prefecture's desk); the current one holds until the new one
    is given, so a キャンセル keeps it. A linked chat's is its institution's."""
    assert ctx.account is not None
    async with ctx.session() as session:
        served = await repo.prefectures(session)
        current = await session.get(Prefecture, ctx.tenant)
    name = current.name if current else "都道府県"
    if ctx.account.linked:
        return [Reply(f"このチャットは{name}の医療機関と連携しているため、ご質問は{name}の"
                      "担当者にお送りします。", meta={"action": prefecture_choice.FLOW})]
    if len(served) <= 1:
        return [Reply(f"このチャットからのご質問は、{name}の担当者にお送りしています。所在地が"
                      f"{name}以外の場合は、所在地の都道府県の窓口へお問い合わせください。",
                      meta={"action": prefecture_choice.FLOW})]
    await _set_flow(msg, ctx, {"question": ""}, prefecture_choice.FLOW)
    if arg := found.get("arg"):  # 「都道府県を変更 東京都」
        return await handle_prefecture(replace(msg, text=arg),
                                       replace(ctx, flow=prefecture_choice.FLOW,
                                               flow_data={"question": ""}), {})
    known = ctx.account.known_prefecture is not None
    return [prefecture_choice.ask(served, f"現在の送り先は{name}です。" if known else "")]
