"""Replies built from one retrieval decision: the answer with its buttons, the offer of
candidates, or a hand-off; and the linked clinic's own lines under an answer."""

from __future__ import annotations

import re
from dataclasses import replace

from db.models import Prefecture
from handlers.context import Context
from handlers.messages import Button, Reply
from handlers.status import own_record, period_lines, settled, status_line
from handlers.texts import OFFER_QUESTION, shorten
from knowledge.retriever import Candidate, Decision
from scheduler.calendar import JST

ASK_STAFF = Button("担当者に聞く", "esc:ask")
OFFER_STAFF = (ASK_STAFF, Button("送らない", "esc:no"))
MIXED_AFTER = 60  # characters: a G-MIS question this long may ask about the 制度 too
# A question that names this report or its functions is ours, whatever else it names.
# So does one about this report's own duties that a billing item's paperwork may meet
# (「生活習慣病管理料の療養計画書で代用できますか」: the 患者説明 書面).
_OURS = re.compile(r"かかりつけ|[12１２]号|報告対象|対象外|患者説明|説明書面|療養計画書|院内掲示")


def for_clinics(candidates: list[Candidate], ctx: Context,
                 first: bool = True) -> list[Candidate]:
    """The buttons a clinic sees: an entry written for prefecture staff only as the best
    match (`first`), never as a runner-up beside the clerk's own question."""
    return [c for i, c in enumerate(candidates)
            if (first and i == 0) or ctx.retriever.by_id[c.entry_id].audience != "prefecture"]


def _for_a_clinic(decision: Decision, ctx: Context) -> Decision:
    """An entry written for prefecture staff (a 事例集 case, the route to 厚労省) answers a
    clinic outright only when the match is sure: a clerk's 「じむのひとがいない」 had been
    answered 「あります。新潟県燕市では…」. Below that it is offered as a button."""
    if decision.action != "answer" or decision.entry_id is None:
        return decision
    if (ctx.retriever.by_id[decision.entry_id].audience != "prefecture"
            or decision.score >= ctx.retriever.tuning.clinic_answer_at):
        return decision
    return replace(decision, action="suggest", entry_id=None, answer=None)


async def reply_for(decision: Decision, ctx: Context, question: str, part: str = "") -> Reply:
    """The reply for one decision; `part` is the question it is for when the message asked
    several, so buttons under it say which one they answer."""
    decision = _for_a_clinic(decision, ctx)
    meta = {"action": decision.action, "entry_id": decision.entry_id, "score": decision.score}
    if decision.action == "answer" and decision.entry_id:
        return await answer_reply(decision.entry_id, ctx, meta)
    if decision.action == "suggest":
        buttons = tuple(Button(c.question, f"qa:show:{c.entry_id}")
                        for c in for_clinics(decision.candidates, ctx))
        text = (f"「{shorten(part, 30)}」については、次のいずれかのご質問でしょうか。"
                "近いものをお選びください。" if part else
                "もしかして、次のいずれかのご質問でしょうか。近いものをお選びください。")
        return Reply(text, (*buttons, Button("どれでもない（担当者に聞く）", "esc:ask")),
                     meta=meta)
    # Entries close to the question are worth a tap before a phone call or a hand-off (a
    # new clinic without an account: how long the account takes, whether it must report;
    # 「歯医者もこれやんなきゃいけないの？」 just short of sure: the dental exemption).
    related = tuple(Button(c.question, f"qa:show:{c.entry_id}")
                    for c in for_clinics(decision.candidates, ctx, first=False)
                    if c.score >= ctx.retriever.tuning.related_at)[:2]
    if decision.route == "gmis_callcenter":
        text = gmis_text(ctx) + ("\n\n関連するご案内は、下のボタンからご覧いただけます。"
                                 if related else "")
        if len(question) < MIXED_AFTER:
            return Reply(text, related, meta=meta)
        # A long message (an officer's e-mail) that mentions G-MIS often asks about the
        # system and the 制度 at once: the call center for one, staff for the rest.
        return Reply(text + "\n\nG-MIS以外のご質問も含まれている場合は、" + OFFER_QUESTION,
                     (*related, *OFFER_STAFF), meta=meta)
    if names := elsewhere(question, ctx):
        # The prefecture's desk for this report cannot answer a 診療報酬 or マイナ保険証
        # question either: say where it belongs before offering to send it.
        quoted = "・".join(f"「{n}」" for n in names)
        text = (f"ご質問は{quoted}についてのようです。このボットは、かかりつけ医機能報告に"
                f"ついてお答えしています。{quoted}については、その制度の担当窓口にお問い合わせ"
                "ください。\nかかりつけ医機能報告に関わるご質問でしたら、" + OFFER_QUESTION)
        return Reply(text, OFFER_STAFF, meta=meta)
    # With buttons, say they may hold the answer: 「見つかりませんでした」 above the right
    # entry's button read as "do not bother" in a user test.
    text = (("お答えできそうなご案内を下のボタンにお示しします。当てはまるものがない場合は、"
             if related else
             "申し訳ありません。このご質問に確実にお答えできる情報が見つかりませんでした。")
            + OFFER_QUESTION)  # last: a typed はい answers it (smalltalk)
    return Reply(text, (ASK_STAFF, *related, *OFFER_STAFF[1:]), meta=meta)


def elsewhere(question: str, ctx: Context) -> list[str]:
    """Systems and billing items with their own office (knowledge/words.yaml) that the
    question names, as written there."""
    if _OURS.search(question):  # 「機能強化加算を取っていればかかりつけ医機能報告は不要？」
        return []
    desks = ctx.retriever.analyzer.other_desk
    terms = ctx.retriever.analyzer.analyse(question).terms
    return list(dict.fromkeys(desks[t] for t in terms if t in desks))


def contact_line(gmis_contact: str) -> str:
    """The configured G-MIS contact, under every call-center answer and every answer that
    points to it (KB answers never write it: kb check refuses one that does)."""
    return f"【お問い合わせ先】{gmis_contact}"


def gmis_text(ctx: Context) -> str:
    return (
        "G-MIS（医療機関等情報支援システム）のログイン・パスワード・画面操作などは、"
        f"G-MIS事務局がお答えします。\n{ctx.config.gmis_contact}"
    )


async def answer_reply(entry_id: str, ctx: Context, meta: dict[str, object] | None = None,
                       ) -> Reply:
    entry = ctx.retriever.by_id[entry_id]
    text = entry.answer
    # Only for a chat whose prefecture is known (linked, or said when it asked staff): one
    # bot may serve several prefectures, and an unlinked user's is only the default, which
    # may not be theirs (a 静岡県 clinic must not read 京都府's deadline as its own).
    if entry.local:
        lead, lines = await _local_lines(entry.local, ctx)
        text = lead + text + ("\n\n" + "\n".join(lines) if lines else "")
    if entry.with_gmis_contact and ctx.config.gmis_contact not in text:
        text += "\n\n" + contact_line(ctx.config.gmis_contact)
    buttons = [Button("詳しく", f"qa:detail:{entry.id}")] if entry.detail else []
    buttons += [Button("👍 役に立った", f"fb:up:{entry.id}"),
                Button("👎 違う", f"fb:down:{entry.id}")]
    meta = meta or {"action": "answer", "entry_id": entry.id, "score": None}
    return Reply(text, tuple(buttons), meta=meta)


async def _local_lines(wanted: list[str], ctx: Context) -> tuple[str, list[str]]:
    """The linked clinic's own period, desk or 報告状況, read tenant-filtered: a lead for
    before the answer, lines for after it. An unlinked chat that said its prefecture gets
    that prefecture's period and desk (public), never a 報告状況."""
    if (found := await own_record(ctx)) is None:
        if ctx.account is None or (known := ctx.account.known_prefecture) is None:
            return "", []
        async with ctx.session() as session:
            said = await session.get(Prefecture, known)
        return "", _prefecture_lines(wanted, said, ctx) if said else []
    inst, pref = found
    lead, lines = "", []
    done = settled(inst) if "status" in wanted else None
    if "status" in wanted:
        line = f"【{inst.name}】{status_line(inst, pref)}"
        if done:
            # A 督促 answer says "enter and press 報告"; an exempt or reported clinic reads
            # first what its own record says.
            lead = (f"{line}\n記録では{done}。督促などが行き違いで届いた場合や、記録が実際と"
                    "違う場合は、都道府県にお知らせください。\n\n以下は一般的なご案内です。\n")
        else:
            lines.append(line)
    # "あと119日" is not for a clinic that is done
    lines += _prefecture_lines([w for w in wanted if w != "deadline" or not done], pref, ctx)
    return lead, lines


def _prefecture_lines(wanted: list[str], pref: Prefecture, ctx: Context) -> list[str]:
    lines = []
    if "deadline" in wanted:
        lines += period_lines(pref, ctx.clock().astimezone(JST).date())
    if "contact" in wanted and pref.inquiry_contact:
        lines.append(f"【{pref.name}の担当窓口】{pref.inquiry_contact}")
    return lines
