"""Bolt listeners: translate Slack requests into desk operations and back.

Tenant rule: the prefecture is always the one mapped to the Slack channel the request came
from (for modals, the channel stored when the modal was opened); the desk refuses anything
outside it. Buttons ack first, then work; modal submissions do their short database step
before acking so a refusal (already answered) can be shown in the modal itself.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from slack_bolt import BoltResponse
from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.slack.blocks import answer_modal, escape, resolve_modal
from db import repo
from db.events import first_delivery
from handlers import desk, kb_drafts
from handlers.desk_card import build_card, plain_text
from handlers.desk_lookup import lookup, lookup_text
from scheduler import campaigns

logger = logging.getLogger(__name__)
UNMAPPED = ("このチャンネルはどの都道府県の窓口にも割り当てられていません。管理者に "
            "`python main.py slack-channel --prefecture NN --channel <ID>` "
            "の実行を依頼してください。")
BAD_REQUEST = "操作を受け付けられませんでした。カードを開き直してから、もう一度お試しください。"
TRY_AGAIN = "一時的なエラーで処理できませんでした。少し待ってから、もう一度お試しください。"
RECEIPT = re.compile(r"Q(\d{2})-(\d{6})")


@dataclass(frozen=True)
class DeskDeps:
    """What the listeners need, passed explicitly by the channel's composition code."""

    sessions: Callable[[], AsyncSession]
    clock: Callable[[], datetime]
    wake: Callable[[], None]  # the outbox: a reply was queued
    command: str = "/kakaritsuke"
    redmine: bool = False

    async def prefecture(self, channel_id: str | None) -> str | None:
        async with self.sessions() as session:
            return await desk.prefecture_for_channel(session, channel_id or "")


def register(app: AsyncApp, deps: DeskDeps) -> None:
    """Attach every desk listener to the Bolt app."""
    app.middleware(_dedupe(deps))
    for action_id, run in (("desk_claim", _claim), ("desk_forward", _forward),
                           ("desk_kb", _kb), ("desk_answer", _open_answer),
                           ("desk_resolve", _open_resolve)):
        app.action(action_id)(_button(deps, run))
    for action_id, approve in (("campaign_send", True), ("campaign_cancel", False)):
        app.action(action_id)(_campaign_button(deps, approve))
    app.view("desk_answer")(_submit(deps, _do_answer))
    app.view("desk_resolve")(_submit(deps, _do_resolve))
    app.command(deps.command)(_command(deps))
    app.event("app_mention")(_mention(deps))


def _dedupe(deps: DeskDeps) -> Callable[..., Any]:
    async def dedupe_events(body: dict[str, Any], next_: Callable[[], Any]) -> BoltResponse | None:
        event_id = body.get("event_id") if body.get("type") == "event_callback" else None
        if event_id:
            async with deps.sessions() as session:
                if not await first_delivery(session, "slack", str(event_id), deps.clock()):
                    logger.info("duplicate Slack event ignored: %s", event_id)
                    return BoltResponse(status=200, body="")
        await next_()
        return None
    return dedupe_events


@dataclass(frozen=True)
class Press:
    """One button press, decided once: who, where, on what (an escalation or a campaign, by
    id), and which prefecture the channel belongs to."""

    user: str
    channel: str
    item_id: int
    prefecture: str
    trigger_id: str


Action = Callable[[DeskDeps, Press, AsyncWebClient], Any]


async def _pressed(deps: DeskDeps, body: dict[str, Any], client: AsyncWebClient,
                   ) -> Press | None:
    """Read a block_actions payload; None (and the person is told why) when the channel is
    not a prefecture's desk or the button carries no id."""
    user = str(body.get("user", {}).get("id", ""))
    channel = str((body.get("channel") or {}).get("id")
                  or (body.get("container") or {}).get("channel_id") or "")
    value = str((body.get("actions") or [{}])[0].get("value", ""))
    pref = await deps.prefecture(channel)
    if pref is None or not value.isdigit():
        await _tell(client, channel, user, UNMAPPED if pref is None else BAD_REQUEST)
        return None
    return Press(user, channel, int(value), pref, str(body.get("trigger_id", "")))


def _button(deps: DeskDeps, run: Action) -> Callable[..., Any]:
    async def on_button(ack: Callable[..., Any], body: dict[str, Any],
                        client: AsyncWebClient) -> None:
        await ack()
        if (press := await _pressed(deps, body, client)) is None:
            return
        try:
            await run(deps, press, client)
        except desk.DeskRefused as exc:
            await _tell(client, press.channel, press.user, exc.message)
        except Exception:  # the error boundary: log it, tell the person, never crash
            logger.exception("desk button failed: %s on escalation %s", run.__name__,
                             press.item_id)
            await _tell(client, press.channel, press.user, TRY_AGAIN)
        deps.wake()
    return on_button


def _campaign_button(deps: DeskDeps, approve: bool) -> Callable[..., Any]:
    """送信 / 中止 on a campaign preview; only from the prefecture's own channel."""
    async def on_campaign(ack: Callable[..., Any], body: dict[str, Any],
                          client: AsyncWebClient) -> None:
        await ack()
        if (press := await _pressed(deps, body, client)) is None:
            return
        by = f"slack:{press.user}"
        try:
            async with deps.sessions() as session:
                c = await campaigns.get(session, press.item_id, press.prefecture)
                if approve:
                    n = await campaigns.approve(session, c, by, deps.clock())
                    text = (f"キャンペーン {c.id} を承認しました（{n}件）。"
                            "送信時間帯の中で順に送信します。")
                else:
                    n = await campaigns.cancel(session, c, by, deps.clock())
                    text = f"キャンペーン {c.id} を中止しました（{n}件を取り消し）。"
        except campaigns.CampaignError as exc:
            text = str(exc)
        except Exception:
            logger.exception("campaign button failed on campaign %s", press.item_id)
            text = TRY_AGAIN
        await _tell(client, press.channel, press.user, text)
        deps.wake()
    return on_campaign


async def _claim(deps: DeskDeps, p: Press, client: AsyncWebClient) -> None:
    await desk.claim(deps.sessions, p.prefecture, p.item_id, p.user, deps.clock())


async def _forward(deps: DeskDeps, p: Press, client: AsyncWebClient) -> None:
    esc = await desk.forward(deps.sessions, p.prefecture, p.item_id, p.user, deps.clock(),
                             deps.redmine)
    extra = "問合せ管理ツールへの登録が済むと、カードにリンクが表示されます。" if deps.redmine \
        else "問合せ管理ツールへの登録は、手作業でお願いします（Redmine連携は未設定です）。"
    await _tell(client, p.channel, p.user,
                f"{esc.receipt} を厚生労働省への確認中にしました。"
                "医療機関にもその旨をお知らせします。" + extra)


async def _kb(deps: DeskDeps, p: Press, client: AsyncWebClient) -> None:
    draft, created = await kb_drafts.create_draft(deps.sessions, p.prefecture, p.item_id,
                                                  p.user, deps.clock())
    head = "KBの下書きを作成しました" if created else "この問い合わせのKB下書きは作成済みです"
    await _tell(client, p.channel, p.user,
                f"{head}（下書き #{draft.id}）。レビュー担当者が "
                f"`python main.py kb drafts show {draft.id}` で確認し、"
                "承認すると知識ベースに入ります。")


async def _open_answer(deps: DeskDeps, p: Press, client: AsyncWebClient) -> None:
    await _open_modal(deps, p, client, ("open", "claimed", "forwarded"), answer_modal)


async def _open_resolve(deps: DeskDeps, p: Press, client: AsyncWebClient) -> None:
    await _open_modal(deps, p, client, ("open", "claimed", "forwarded"), resolve_modal)


async def _open_modal(deps: DeskDeps, p: Press, client: AsyncWebClient,
                      allowed: tuple[str, ...], make: Callable[..., dict[str, Any]]) -> None:
    esc = await desk.require(deps.sessions, p.prefecture, p.item_id, allowed)
    async with deps.sessions() as session:
        card = await build_card(session, esc, deps.clock())
    await client.views_open(trigger_id=p.trigger_id, view=make(card, p.channel))


Submit = Callable[[DeskDeps, str, int, str, str, dict[str, Any]], Any]


def _submit(deps: DeskDeps, run: Submit) -> Callable[..., Any]:
    async def on_submit(ack: Callable[..., Any], body: dict[str, Any],
                        view: dict[str, Any]) -> None:
        try:
            meta = json.loads(view.get("private_metadata") or "{}")
            esc_id, channel = int(meta["id"]), str(meta["channel"])
            text = str(view["state"]["values"]["text"]["text"].get("value") or "")
        except (ValueError, KeyError, TypeError):
            await ack(response_action="errors", errors={"text": BAD_REQUEST})
            return
        try:
            pref = await deps.prefecture(channel)
            if pref is None:
                raise desk.DeskRefused(UNMAPPED)
            try:
                await run(deps, pref, esc_id, str(body.get("user", {}).get("id", "")), text,
                          meta)
            except desk.SupplementArrived as exc:  # show it, keep the draft, let them resend
                view = await _refreshed(deps, pref, esc_id, channel, text, exc.message)
                await ack(response_action="update", view=view)
                return
        except desk.DeskRefused as exc:
            await ack(response_action="errors", errors={"text": exc.message})
            return
        except Exception:
            logger.exception("desk modal failed: %s on escalation %s", run.__name__, esc_id)
            await ack(response_action="errors", errors={"text": TRY_AGAIN})
            return
        await ack()
        deps.wake()
    return on_submit


async def _refreshed(deps: DeskDeps, pref: str, esc_id: int, channel: str, draft: str,
                     notice: str) -> dict[str, Any]:
    """The answer modal again, with the supplements as they are now and the draft kept."""
    async with deps.sessions() as session:
        esc = await desk.get_escalation(session, pref, esc_id)
        if esc is None:
            raise desk.DeskRefused(desk.NOT_FOUND)
        card = await build_card(session, esc, deps.clock())
    return answer_modal(card, channel, draft=draft, notice=notice)


async def _do_answer(deps: DeskDeps, pref: str, esc_id: int, user: str, text: str,
                     meta: dict[str, Any]) -> None:
    seen = meta.get("seen")  # absent in a modal opened before this was added
    await desk.answer(deps.sessions, pref, esc_id, user, text, deps.clock(),
                      seen=seen if isinstance(seen, int) else None)


async def _do_resolve(deps: DeskDeps, pref: str, esc_id: int, user: str, text: str,
                      _meta: dict[str, Any]) -> None:
    await desk.resolve(deps.sessions, pref, esc_id, user, text, deps.clock())


def _command(deps: DeskDeps) -> Callable[..., Any]:
    async def on_command(ack: Callable[..., Any], command: dict[str, Any]) -> None:
        pref = await deps.prefecture(command.get("channel_id"))
        if pref is None:
            await ack(response_type="ephemeral", text=UNMAPPED)
            return
        query = str(command.get("text") or "")
        results, total = await lookup(deps.sessions, pref, query)
        await ack(response_type="ephemeral",
                  text=escape(lookup_text(results, total, query, deps.command)))
    return on_command


def _mention(deps: DeskDeps) -> Callable[..., Any]:
    async def on_mention(event: dict[str, Any], client: AsyncWebClient) -> None:
        channel = str(event.get("channel", ""))
        pref = await deps.prefecture(channel)
        found = RECEIPT.search(str(event.get("text", "")))
        if pref is None:
            text = UNMAPPED
        elif found is None:
            text = (f"問い合わせの受付番号（例：Q{pref}-000012）を添えてメンションすると、"
                    f"その概要をお見せします。医療機関の確認は `{deps.command} 名前またはコード` "
                    "でどうぞ。")
        else:
            text = await _summary(deps, pref, found)
        await client.chat_postMessage(channel=channel, thread_ts=event.get("ts"), text=text)
    return on_mention


async def _summary(deps: DeskDeps, pref: str, found: re.Match[str]) -> str:
    """The card of the inquiry a mentioned receipt names: only in this channel's prefecture,
    by its number there (every prefecture has its own Q…-000001)."""
    async with deps.sessions() as session:
        esc = None
        if found.group(1) == pref:
            esc = await repo.escalation_by_receipt(session, pref, int(found.group(2)))
        if esc is None:
            return desk.NOT_FOUND
        return escape(plain_text(await build_card(session, esc, deps.clock())))


async def _tell(client: AsyncWebClient, channel: str, user: str, text: str) -> None:
    """A note only the person who pressed sees; failure to deliver it is only logged."""
    try:
        await client.chat_postEphemeral(channel=channel, user=user, text=text)
    except Exception:
        logger.warning("could not post an ephemeral note to %s", user, exc_info=True)

