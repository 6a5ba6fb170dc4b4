"""Hand a question to the prefecture's staff, with enough context to answer it."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import replace

from db import repo
from db.models import Escalation, Prefecture
from handlers import answers, courtesy, desk, history, linking, prefecture_choice, qa
from handlers.context import Context
from handlers.messages import Button, Inbound, Reply
from handlers.router import Found
from handlers.texts import NOTED, OFFER_QUESTION, desk_of, shorten, staff_of
from knowledge.normalize import MAIL_GREETING

ASK_FLOW = "ask_staff"
SUPPLEMENTED = "supplement"  # the logged action of a turn that added to an inquiry
UNSURE = ("escalate", "suggest", history.OFFER)  # replies that offer 「担当者に聞く」
CONFIRM_BUTTONS = (Button("この質問を送る", "esc:ask"), Button("別の質問を送る", "esc:new"),
                   Button("送らない", "esc:no"))
# 「受付番号 Q26-000001 の回答はまだですか」「さっきの問い合わせはどうなりましたか」
# Only a message about the inquiry itself: one with a question of its own (「Q26-000001の
# 件ですが、期限の延長は？」) goes on to be answered, and 「調査票の回答はまだ必要？」 is no
# inquiry at all.
# A receipt as typed: 「Q26-000001」, with an IME's ー or − for the hyphen, or spaces.
_RECEIPT_AT = r"Q(\d{2})\s*[-ー−‐–—]?\s*(\d{1,6})(?!\d)"
_RECEIPT = re.compile(_RECEIPT_AT)
# How both forms end: the answer has not come (「どうなりましたか」「まだ？」「来ない」).
_WAITING = (r"どうなり(?:ました|ます)か?|どうなって(?:います|ます|る)?|どうなった(?:の|かな)?"
            r"|(?:まだ)?(?:回答|返事|返信)?(?:が|は)?(?:ない|無い|ありません|来てない|来ていない)"
            r"(?:です|でしょう)?か?"
            r"|まだ(?:ですか|でしょうか|来ない)?|来ない|こない|届かない|届いて(?:い)?ない")
# 「Q26-000001 補足 回答まだ？」 asks about the inquiry (with its supplement), adds nothing;
# 「Q26-000001の補足」 alone announces one (an asking word must follow the 補足).
_TOPIC = (r"(?:件|お問い合わせ|問い合わせ)?(?:の|は|って|、)?\s*(?:回答|返事|返信|状況|進み具合)?"
          r"(?:は|って)?")
_ASKING = rf"(?:{_WAITING}|いつ(?:ですか|頃|ごろ)?|どう)"
_ABOUT_RECEIPT = re.compile(
    rf"^(?:受付番号)?(?:は|:|：)?\s*{_RECEIPT_AT}\s*(?:の|は|って|、)?\s*"
    rf"(?:(?:への|に)?(?:補足|追記)(?:した件|の件)?\s*(?:の|は|って|、)?\s*{_TOPIC}{_ASKING}"
    rf"|{_TOPIC}{_ASKING}?)[?？。]*$")
# 「さっき送った問い合わせ」「この前の質問」: the inquiry, without its number.
_WHEN = r"(?:さっき|先ほど|先程|先日|前に|以前|この前|この間|昨日|きのう)"
_INQUIRY = (r"の?(?:送った|お送りした|した|出した|お願いした|聞いた)?"
            r"(?:問い?合わ?せ|といあわせ|質問)")
_ASKS_TICKET = re.compile(
    rf"^{_WHEN}?{_INQUIRY}(?:の件)?"
    r"(?:の|は|って|、)?(?:回答|返事|返信)?(?:は|って|が)?"
    rf"(?:{_WAITING}|状況を(?:教えて|知りたい)(?:ください|下さい)?"
    r"|の?受付番号(?:を|が)?(?:忘れ|失念|わから|わすれ|なんだっけ|何だっけ|教えて)\S*)[?？。]*$"
    r"|^(?:受付番号|うけつけばんごう)(?:を|が|って)?(?:忘れ|失念|わから|わすれ|なんだっけ|何だっけ)")
# A follow-up says so at its start, after the receipt or the inquiry it adds to:
# 「Q26-000001の補足です。…」「先ほどの質問に追記します：…」; and right after one was sent,
# 「追記です。…」「すみません、言い忘れましたが…」. The word must be the announcement
# (補足です, 補足：), not a topic (補足資料はどこ, 追記したい場合は, 補足の回答はまだ).
_ADDED = (r"(?:補足|追記|追伸|追加|付け加え|付け足し?|つけたし|ほそく)(?:情報|事項)?"
          r"(?:です|します|いたします|させて(?:ください|いただきます)|があります"
          r"|したい(?:です|のですが)?|を?お送りします|[:：。、\s]|$)")
_SUPPLEMENT = re.compile(
    rf"^{MAIL_GREETING}(?:受付番号)?\s*(?:{_RECEIPT_AT}|{_WHEN}{_INQUIRY}|{_WHEN}の件)\s*(?:の件)?"
    rf"(?:の|に|で|について|への|、)?\s*{_ADDED}")
_JUST_SENT = re.compile(
    rf"^{MAIL_GREETING}(?:すみません|すいません|失礼しました|あの)?[、,。\s]*(?:もう一点|もうひとつ)?"
    rf"(?:{_ADDED}|(?:言い|書き)忘れ(?:ました|ていました|てました|てた)(?:が|けど)?)")
_NOTHING_ADDED = re.compile(r"[\s。、,.:：!！]*(?:よろしくお願いします|お願いします)?[。!！]*")
TICKET_STATUS = {
    "open": "受け付けました。担当者の確認をお待ちください",
    "claimed": "担当者が確認しています",
    "forwarded": "{prefecture}から厚生労働省に確認しています。回答までお時間をいただきます",
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
        # would be sent before sending it. A question typed next is the new one.
        await _set_flow(msg, ctx, {"confirm": question})
        return [Reply(f"直前のご質問は「{shorten(question)}」です。{_system_note(question, ctx)}"
                      "別のことをお聞きになりたい場合は、そのご質問を入力してください。\n"
                      + OFFER_QUESTION, CONFIRM_BUTTONS, meta={"action": history.OFFER})]
    if ctx.flow == ASK_FLOW:  # the confirmation's button: the prompt is answered
        return await _send_closing_prompt(msg, ctx, question)
    return [await _escalate(msg, ctx, question, history.for_staff(turns))]


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
    return [await _escalate(msg, ctx, question, history.for_staff(turns))]


async def handle_no_staff(msg: Inbound, ctx: Context, _found: Found) -> list[Reply]:
    """「送らない」: the question is closed (and a pending 「担当者に聞く」 prompt with it); a
    later 「担当者に聞く」 asks for one afresh."""
    if ctx.flow == ASK_FLOW:
        async with ctx.session() as session:
            await repo.clear_state(session, msg.channel, msg.user_id)
    return [Reply(NOTED, meta={"action": history.SMALL_TALK})]


async def _escalate(msg: Inbound, ctx: Context, question: str, exchanges: list[dict],
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
        replies = [await _escalate(msg, ctx, question, history.for_staff(turns))]
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


def _receipt(m: re.Match[str]) -> Found:
    found = {"receipt": f"Q{m.group(1)}-{int(m.group(2)):06d}", "prefecture": m.group(1),
             "id": m.group(2)}
    # 「Q15-3の回答は？」 may be an item of a Q&A document rather than a short-typed receipt.
    loose = len(m.group(2)) < 4 and "受付番号" not in m.string[:m.start()]
    return found | ({"loose": "yes"} if loose else {})


def asks_ticket(msg: Inbound, _ctx: Context) -> Found | None:
    """A short question about an inquiry already sent: by number, or 「さっきの問い合わせ」."""
    text = unicodedata.normalize("NFKC", msg.text).upper().strip()
    if msg.payload is not None or len(text) > 60:
        return None
    if (m := _RECEIPT.search(text)) and _ABOUT_RECEIPT.search(text):
        return _receipt(m)
    return {} if not m and _ASKS_TICKET.search(text) else None


# 「さっきの問い合わせを取り消したい」「Q26-1の件、取り消せますか」
_WITHDRAW = re.compile(rf"(?:{_RECEIPT_AT}|問い?合わ?せ|といあわせ|質問)[^。？?]{{0,12}}?"
                       r"(?:取り消|取消|とりけ|取り下げ|取下げ|とりさげ|キャンセル|撤回)")


def asks_withdraw(msg: Inbound, _ctx: Context) -> Found | None:
    """A short request to take back an inquiry already sent."""
    text = unicodedata.normalize("NFKC", msg.text).upper().strip()
    if msg.payload is not None or len(text) > 40 or not (m := _WITHDRAW.search(text)):
        return None
    return _receipt(m) if m.group(1) else {}


async def handle_withdraw(msg: Inbound, ctx: Context, found: Found) -> list[Reply]:
    """The chat cannot close an inquiry itself (staff may be answering it): a supplement
    saying so reaches the staff, who close it."""
    rows = await _account_inquiries(ctx, found)
    if not rows:
        return [_not_found(found)]
    receipt = rows[0].receipt
    return [Reply("お送りしたお問い合わせは、このチャットから取り消すことはできません。取り下げる"
                  f"場合は、「{receipt}の補足です。解決したので取り下げます。」のようにお送り"
                  "ください。担当者に伝わり、対応を終えます。", meta={"action": "ticket"})]


def adds_to_ticket(msg: Inbound, ctx: Context) -> Found | None:
    """A follow-up to an inquiry already sent, named by its receipt or as the one just sent
    (not in the middle of a flow: there 「補足です。…」 is the answer the flow waits for)."""
    if msg.payload is not None:
        return None
    text = unicodedata.normalize("NFKC", msg.text).upper().strip()
    if _ABOUT_RECEIPT.search(text):
        return None  # asks how it stands
    m = _SUPPLEMENT.match(text)
    recent = m is None and (m := _JUST_SENT.match(text)) is not None
    if m is None:
        return None
    rest = text[m.end():]
    found = {"content": "" if _NOTHING_ADDED.fullmatch(rest) else "yes"}
    if recent:  # 「補足です。…Q26-000012の件、…」: the number, if it comes later
        if later := _RECEIPT.search(text):
            return found | _receipt(later)
        return None if ctx.flow else found | {"recent": "yes"}
    return found | (_receipt(m) if m.group(1) else {})


async def handle_supplement(msg: Inbound, ctx: Context, found: Found) -> list[Reply]:
    """Add the message to the inquiry it names, so the staff answer with it in view; an
    inquiry already closed gets it as a new one that quotes the old receipt."""
    if found.get("recent"):
        last = await history.last_turn(msg, ctx)
        if last is None or last.action not in (history.ESCALATED, SUPPLEMENTED):
            return await qa.handle_question(msg, ctx, {})  # not said about an inquiry
    rows = await _account_inquiries(ctx, found)
    earlier = [] if rows else await _account_inquiries(ctx, found, linked_now=False)
    if (rows or earlier) and found["content"] and ctx.flow == ASK_FLOW:  # at the staff prompt
        async with ctx.session() as session:
            await repo.clear_state(session, msg.channel, msg.user_id)
    if not rows:
        if earlier and found["content"]:  # its own, sent under the link it had before
            return [await _as_new_inquiry(msg, ctx, earlier[0],
                                          "以前の連携先でお送りいただいたものなので")]
        return [_not_found(found)]
    esc = rows[0]
    assert esc.id is not None
    if not found["content"]:
        return [Reply(f"補足の内容を、受付番号を添えて1つのメッセージでお送りください。"
                      f"（例：「{esc.receipt}の補足です。当院は有床診療所です。」）",
                      meta={"action": SUPPLEMENTED})]
    try:
        added = await desk.add_supplement(ctx.session, esc.prefecture_code, esc.id,
                                          linking.mask_codes(msg.text.strip()), ctx.clock())
    except desk.DeskRefused as full:
        return [Reply(full.message, meta={"action": SUPPLEMENTED})]
    if added:
        return [Reply(f"受付番号 {esc.receipt} のお問い合わせに、いただいた補足を追加し、担当者に"
                      "お知らせしました。回答はこのチャットにお届けします。",
                      meta={"action": SUPPLEMENTED, "escalation_id": esc.id})]
    return [await _as_new_inquiry(msg, ctx, esc, "対応を終えているため")]


async def _as_new_inquiry(msg: Inbound, ctx: Context, old: Escalation, why: str) -> Reply:
    """A supplement the old inquiry cannot take, sent as a new one that quotes it."""
    turns = await history.recent(msg, ctx)
    sent = await _escalate(msg, ctx, f"（{old.receipt} への補足）{msg.text.strip()}",
                           history.for_staff(turns), choose=False)  # where the old one went
    return replace(sent, text=f"受付番号 {old.receipt} のお問い合わせは{why}、"
                              f"新しいお問い合わせとしてお送りしました。{sent.text}")


async def _account_inquiries(ctx: Context, found: Found, linked_now: bool = True,
                             ) -> list[Escalation]:
    """This chat's own inquiries, newest first (the one a receipt names), whichever
    prefecture each went to: the chat account is the boundary, never the tenant.

    `linked_now`: only those asked for the institution the chat is linked to now. Asked
    under another link (a relink, a revoked one), an inquiry is that institution's; asked
    before linking, it is the chat's own (ask first, find the letter's code later)."""
    assert ctx.account is not None
    receipt = found.get("receipt")
    async with ctx.session() as session:
        rows = await repo.account_escalations(
            session, ctx.account.id, int(found["id"]) if receipt else None,
            linked_to=ctx.account.institution_id if linked_now else ...)
    # A receipt names its prefecture too: Q13-000001 is not this chat's Q26-000001.
    return [e for e in rows if not receipt or e.prefecture_code == found["prefecture"]]


def _not_found(found: Found) -> Reply:
    if receipt := found.get("receipt"):
        return Reply(f"このチャットから送られたお問い合わせに、受付番号 {receipt} は見つかり"
                     "ませんでした。番号をご確認ください。", meta={"action": "ticket"})
    return Reply("このチャットから都道府県の担当者に送られたお問い合わせはまだありません。"
                 "ご質問があれば、そのまま入力してください。", meta={"action": "ticket"})


async def handle_ticket_status(msg: Inbound, ctx: Context, found: Found) -> list[Reply]:
    """The state of this chat's own inquiries, never anyone else's: a receipt number typed
    here is looked up among them only."""
    if not (rows := await _account_inquiries(ctx, found)):
        if earlier := await _account_inquiries(ctx, found, linked_now=False):
            receipt = earlier[0].receipt if found.get("receipt") else "以前のお問い合わせ"
            return [Reply(f"{receipt}は、以前の連携先でお送りいただいたお問い合わせのため、"
                          "ここでは状況をお伝えできません。担当者からの回答は、届きしだいこの"
                          "チャットにお届けします。", meta={"action": "ticket"})]
        if found.get("loose"):  # not one of this chat's: the question is about something else
            return await qa.handle_question(msg, ctx, {})
        return [_not_found(found)]
    async with ctx.session() as session:
        told = [await desk.name_told(session, esc) or "都道府県" for esc in rows[:3]]
    lines = []
    for esc, name in zip(rows[:3], told, strict=True):
        state = TICKET_STATUS.get(esc.status, "確認しています").format(prefecture=name)
        line = f"・{esc.receipt}「{shorten(esc.question, 30)}」：{state}。"
        if esc.status in ("answered", "resolved") and esc.answer:
            line += f"\n　回答：{esc.answer}"
        lines.append(line)
    return [Reply("お問い合わせの状況です。\n" + "\n".join(lines)
                  + "\n回答はこのチャットにお届けします。", meta={"action": "ticket"})]

