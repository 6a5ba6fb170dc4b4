"""One entry point per inbound message: resolve the account, route, answer, log.

This is the single error boundary: whatever goes wrong, the user gets a polite reply
and the turn is logged.
"""

from __future__ import annotations

import logging
import re
from dataclasses import replace
from datetime import datetime, timedelta

from sqlalchemy.exc import IntegrityError

from db import repo
from handlers import (
    basic,
    escalation,
    feedback,
    linking,
    prefecture_choice,
    qa,
    smalltalk,
    status,
    tickets,
    wizard,
)
from handlers.context import Account, Context
from handlers.errors import UserFacingError
from handlers.messages import Inbound, Reply
from handlers.router import (
    Found,
    Route,
    Router,
    always,
    both,
    command,
    in_flow,
    in_flow_any,
    payload,
    phrase,
)
from handlers.texts import APOLOGY, EMPTY
from knowledge.normalize import clean_user_text

logger = logging.getLogger(__name__)
MAX_TEXT = 4000  # longer messages are cut before storage; scoring truncates further
_KANA_GAP = re.compile(r"(?<=[\u3041-\u30ff])[ \u3000]+(?=[\u3041-\u30ff])")

ROUTES = Router([
    Route("start_link", linking.start_with_code(), linking.handle_start_link),
    Route("start", command("start", "ヘルプ", "へるぷ", "help", "はじめる", "使い方", "つかいかた",
                           "メニュー"), basic.handle_start),
    Route("help", command("help"), basic.handle_start),  # the /help menu command
    Route("cancel", command("cancel", "キャンセル", "やめる", "中止"), basic.handle_cancel),
    Route("paused_show", both(in_flow_any(wizard.PAUSED), payload("qa:show")),
          wizard.handle_paused_show),
    Route("show", payload("qa:show"), qa.handle_show),
    Route("detail", payload("qa:detail"), qa.handle_detail),
    Route("feedback", payload("fb"), feedback.handle_feedback),
    Route("ask_staff", payload("esc:ask"), escalation.handle_ask_staff),
    Route("no_staff", payload("esc:no"), escalation.handle_no_staff),
    Route("new_staff_question", payload("esc:new"), escalation.handle_new_question),
    Route("staff_prefecture_tap", payload(prefecture_choice.PAYLOAD),
          escalation.handle_prefecture),
    Route("change_prefecture", prefecture_choice.asks_change,
          escalation.handle_change_prefecture),
    # 「人と話したい」 and other ways of asking for a person: courtesy's "staff" (small_talk).
    Route("ask_staff_cmd", command("ask", "担当者に聞く", "担当者に質問", "たんとうしゃにきく"),
          escalation.handle_ask_staff_command),
    Route("link_code", linking.typed_code, linking.handle_link),  # 「連携コードはXXXXX-…」
    Route("unlink", linking.asks_unlink, linking.handle_unlink),
    Route("unlink_tap", payload("link"), linking.handle_unlink),
    Route("link_question", linking.asks_about_code, linking.handle_about_code),
    Route("link", command("link", "連携コード", "連携", "れんけい"), linking.handle_link),
    Route("status", command("status", "報告状況", "ほうこくじょうきょう", "ステータス",
                            "状況確認"), status.handle_status),
    Route("check", command("check", "対象か確認", "たいしょうかかくにん", "対象確認",
                           "対象かどうか確認"),
          wizard.handle_start),
    Route("check_request", wizard.wants_check, wizard.handle_start),
    Route("check_resume", command("resume", "確認を続ける", "確認の続き", "続きから"),
          wizard.handle_resume),
    Route("status_request", status.asks_status, status.handle_status),
    Route("withdraw", tickets.asks_withdraw, tickets.handle_withdraw),
    Route("supplement", tickets.adds_to_ticket, tickets.handle_supplement),
    Route("ticket", tickets.asks_ticket, tickets.handle_ticket_status),
    Route("menu_status", payload("menu:status"), status.handle_status),
    Route("menu_check", payload("menu:check"), wizard.handle_start),
    Route("wizard", payload("wiz"), wizard.handle_answer),
    Route("wizard_text", in_flow(wizard.FLOW), wizard.handle_answer),
    Route("staff_question", in_flow(escalation.ASK_FLOW), escalation.handle_question_for_staff),
    Route("staff_prefecture", in_flow(prefecture_choice.FLOW), escalation.handle_prefecture),
    # After the staff prompt: there 「戻る」 or a question about others is the question.
    Route("wizard_back", command("back", "戻る", "もどる"), wizard.handle_back),
    Route("status_others", status.asks_others, status.handle_others),
    Route("more", phrase(qa.MORE), qa.handle_more),
    Route("repeat", phrase(qa.REPEAT), qa.handle_repeat),
    Route("small_talk", smalltalk.small_talk, smalltalk.handle_small_talk),
    Route("paused_question", in_flow(wizard.PAUSED), wizard.handle_paused_question),
    Route("question", always, qa.handle_question),
])


async def dispatch(msg: Inbound, ctx: Context, router: Router = ROUTES) -> list[Reply]:
    """Handle one message and return the replies; never raises."""
    msg = replace(msg, text=clean_user_text(msg.text)[:MAX_TEXT])
    route_name = "-"
    try:
        ctx = await _with_account(msg, ctx)
        if not msg.text and msg.payload is None:
            replies = [Reply(EMPTY, meta={"action": "empty"})]
        else:
            # 「はい」 typed to 「連携を解除しますか」 is the button: matchers cannot see the turn
            # before, and 「やめる」 would be the cancel command.
            msg = await linking.typed_answer(msg, ctx)
            msg, route, found = _resolve(msg, ctx, router)
            route_name = route.name
            replies = await route.handler(msg, ctx, found)
    except UserFacingError as exc:
        replies = [Reply(exc.message, meta={"action": "error"})]
    except Exception:
        logger.exception("handler failed: channel=%s user=%s route=%s",
                         msg.channel, msg.user_id, route_name)
        replies = [Reply(APOLOGY, meta={"action": "error"})]
    await _log(msg, ctx, replies)
    return replies


def _resolve(msg: Inbound, ctx: Context, router: Router) -> tuple[Inbound, Route, Found]:
    """The route for a message. 「たいしょうか かくにん」「ほうこく じょうきょう」: a phone's
    kana with spaces between words means the command it spells; a question stays as typed."""
    route, found = router.resolve(msg, ctx)
    fallback = router.routes[-1]
    if route is fallback and (close := _KANA_GAP.sub("", msg.text)) != msg.text:
        typed = replace(msg, text=close)
        tight, tight_found = router.resolve(typed, ctx)
        if tight is not fallback:
            return typed, tight, tight_found
    return msg, route, found


async def _with_account(msg: Inbound, ctx: Context) -> Context:
    """Who is writing and where they are in a flow: a single read for a known user."""
    sender = await _load(msg, ctx)
    if sender is None:
        sender = await _first_contact(msg, ctx)
    elif not sender.reachable or _stale(sender.flow_updated_at, ctx):
        await _settle(msg, ctx)  # unblocked, or a flow left too long ago
        sender = await _load(msg, ctx)
        assert sender is not None
    account = Account(sender.account_id, msg.channel, msg.user_id, sender.prefecture_code,
                      sender.institution_id)
    return replace(ctx, account=account, flow=sender.flow, flow_data=sender.flow_data)


async def _load(msg: Inbound, ctx: Context) -> repo.Sender | None:
    return await ctx.turns.sender(ctx.begin, msg.channel, msg.user_id)


async def _first_contact(msg: Inbound, ctx: Context) -> repo.Sender:
    try:
        async with ctx.begin() as conn:
            return await repo.add_account(conn, msg.channel, msg.user_id, msg.display_name,
                                          ctx.clock())
    except IntegrityError:  # their other message, handled at the same moment, created it
        sender = await _load(msg, ctx)
        assert sender is not None
        return sender


async def _settle(msg: Inbound, ctx: Context) -> None:
    """The writes a message may need before it is handled (rare, so the ORM is fine)."""
    async with ctx.session() as session:
        row = await repo.ensure_account(session, msg.channel, msg.user_id, msg.display_name)
        if not row.reachable:  # they wrote to us, so messages reach them again (unblocked)
            await repo.set_reachable(session, msg.channel, msg.user_id, True)
        state = await repo.get_state(session, msg.channel, msg.user_id)
        if state is not None and _stale(state.updated_at, ctx):
            await repo.clear_state(session, msg.channel, msg.user_id)


def _stale(updated_at: datetime | None, ctx: Context) -> bool:
    """A flow untouched for longer than the wizard TTL has ended."""
    if updated_at is None:
        return False
    return updated_at + timedelta(minutes=ctx.config.wizard_ttl_minutes) < ctx.clock()


async def _log(msg: Inbound, ctx: Context, replies: list[Reply]) -> None:
    meta = replies[0].meta if replies else {}
    score = meta.get("score")
    answered = [str(r.meta["entry_id"]) for r in replies
                if r.meta.get("action") == "answer" and r.meta.get("entry_id")]
    # Not the tenant: an unlinked chat's default is not its own prefecture. Its turns wait
    # with none; the digest reads the account's prefecture once it is said or linked.
    pref = ctx.account.known_prefecture if ctx.account else None
    try:
        await ctx.turns.write(ctx.begin, dict(
            channel=msg.channel, external_user_id=msg.user_id,
            prefecture_code=pref, inbound_text=msg.text, payload=msg.payload,
            reply_text="\n\n".join(r.text for r in replies)[:MAX_TEXT],
            action=meta.get("action"), entry_id=meta.get("entry_id"),
            entry_ids=answered if len(answered) > 1 else None,
            score=float(score) if isinstance(score, int | float) else None,
            created_at=ctx.clock(),
        ))
    except Exception:
        logger.exception("could not log turn: channel=%s user=%s", msg.channel, msg.user_id)
