"""Following up an inquiry already sent: how it stands, a supplement to it, taking it back.

A chat sees only its own inquiries (the chat account is the boundary, never the tenant),
in whichever prefecture each went to.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import replace

from db import repo
from db.models import Escalation, receipt_of
from handlers import desk, history, linking, qa
from handlers.context import Context
from handlers.escalation import ASK_FLOW, escalate
from handlers.messages import Inbound, Reply
from handlers.router import Found
from handlers.texts import shorten
from knowledge.normalize import MAIL_GREETING

SUPPLEMENTED = "supplement"  # the logged action of a turn that added to an inquiry
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


def _receipt(m: re.Match[str]) -> Found:
    found = {"receipt": receipt_of(m.group(1), int(m.group(2))), "prefecture": m.group(1),
             "number": m.group(2)}
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
    sent = await escalate(msg, ctx, f"（{old.receipt} への補足）{msg.text.strip()}",
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
    # A receipt names its prefecture and that prefecture's number: Q13-000001 is not this
    # chat's Q26-000001.
    receipt = (found["prefecture"], int(found["number"])) if found.get("receipt") else None
    async with ctx.session() as session:
        return await repo.account_escalations(
            session, ctx.account.id, receipt,
            linked_to=ctx.account.institution_id if linked_now else ...)


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
