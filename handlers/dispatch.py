"""One entry point per inbound message: resolve the account, route, answer, log.

This is the single error boundary: whatever goes wrong, the user gets a polite reply
and the turn is logged.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import UTC, timedelta

from db import repo
from handlers import basic, escalation, feedback, linking, qa, status, wizard
from handlers.context import Account, Context
from handlers.errors import UserFacingError
from handlers.messages import Inbound, Reply
from handlers.router import Route, Router, always, command, in_flow, payload
from handlers.texts import APOLOGY, EMPTY
from knowledge.normalize import clean_user_text

logger = logging.getLogger(__name__)
MAX_TEXT = 4000  # longer messages are cut before storage; scoring truncates further

ROUTES = Router([
    Route("start", command("start", "ヘルプ", "help", "はじめる", "使い方"), basic.handle_start),
    Route("help", command("help"), basic.handle_start),  # the /help menu command
    Route("cancel", command("cancel", "キャンセル", "やめる", "中止"), basic.handle_cancel),
    Route("show", payload("qa:show"), qa.handle_show),
    Route("detail", payload("qa:detail"), qa.handle_detail),
    Route("feedback", payload("fb"), feedback.handle_feedback),
    Route("ask_staff", payload("esc:ask"), escalation.handle_ask_staff),
    Route("no_staff", payload("esc:no"), escalation.handle_no_staff),
    Route("ask_staff_cmd", command("ask", "担当者に聞く", "担当者に質問"),
          escalation.handle_ask_staff),
    Route("link", command("link", "連携"), linking.handle_link),
    Route("status", command("status", "報告状況", "ステータス", "状況確認"), status.handle_status),
    Route("check", command("check", "対象か確認", "対象確認", "対象かどうか確認"),
          wizard.handle_start),
    Route("wizard", payload("wiz"), wizard.handle_answer),
    Route("wizard_text", in_flow(wizard.FLOW), wizard.handle_answer),
    Route("staff_question", in_flow(escalation.ASK_FLOW), escalation.handle_question_for_staff),
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
            route, found = router.resolve(msg, ctx)
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


async def _with_account(msg: Inbound, ctx: Context) -> Context:
    async with ctx.session() as session:
        row = await repo.ensure_account(session, msg.channel, msg.user_id, msg.display_name)
        if not row.reachable:  # they wrote to us, so messages reach them again (unblocked)
            await repo.set_reachable(session, msg.channel, msg.user_id, True)
        state = await repo.get_state(session, msg.channel, msg.user_id)
        ttl = timedelta(minutes=ctx.config.wizard_ttl_minutes)
        if state is not None and _aware(state.updated_at) + ttl < ctx.clock():
            await repo.clear_state(session, msg.channel, msg.user_id)
            state = None
    assert row.id is not None
    account = Account(row.id, row.channel, row.external_user_id, row.prefecture_code,
                      row.institution_id)
    return replace(ctx, account=account, flow=state.flow if state else None,
                   flow_data=dict(state.data) if state else {})


def _aware(value):  # type: ignore[no-untyped-def]
    return value if value.tzinfo else value.replace(tzinfo=UTC)


async def _log(msg: Inbound, ctx: Context, replies: list[Reply]) -> None:
    meta = replies[0].meta if replies else {}
    score = meta.get("score")
    try:
        async with ctx.session() as session:
            await repo.log_turn(
                session, channel=msg.channel, external_user_id=msg.user_id,
                prefecture_code=ctx.tenant, inbound_text=msg.text, payload=msg.payload,
                reply_text="\n\n".join(r.text for r in replies)[:MAX_TEXT],
                action=meta.get("action"), entry_id=meta.get("entry_id"),
                score=float(score) if isinstance(score, int | float) else None,
                created_at=ctx.clock(),
            )
    except Exception:
        logger.exception("could not log turn: channel=%s user=%s", msg.channel, msg.user_id)
