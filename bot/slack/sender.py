"""Outbox sender for channel "slack": posts escalation cards, keeps them current, posts
thread reminders and digests. Cards are rendered from the database at send time, so a card
posted late (Slack was down) already shows everything that happened meanwhile."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy import update
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.slack.blocks import campaign_preview_blocks, card_blocks, escape
from db.models import Campaign, Escalation, Outbox, Prefecture, desk_channel
from handlers import desk
from handlers.desk_card import Card, build_card, plain_text, staff_ref
from scheduler import campaigns, outbox
from scheduler.calendar import JST
from scheduler.outbox import Outcome

logger = logging.getLogger(__name__)
TRANSIENT = "transient: "  # prefix of errors worth retrying for as long as Slack is away
NO_CHANNEL_WAIT = 3600.0
CARD_WAIT = 60.0
RETRYABLE_ERRORS = {"internal_error", "fatal_error", "service_unavailable", "request_timeout"}
# The bot's own token refused: nothing is wrong with the message, which waits (no attempt
# spent) until the token is fixed. They had failed for good, and clinics' questions with them.
AUTH_ERRORS = {"invalid_auth", "not_authed", "account_inactive", "token_revoked",
               "token_expired"}
AUTH_WAIT = 300.0



NO_CHANNEL = Outcome("retry", "no Slack channel mapped for this prefecture",
                     retry_after=NO_CHANNEL_WAIT)  # it waits until `slack-channel` maps one


def destination(pref: Prefecture | None, row: Outbox) -> str:
    """The prefecture's staff channel now (it may have been mapped or moved since the row
    was queued), else the one the row was addressed to."""
    return desk_channel(pref) or row.recipient


DIGEST_KEEPS = timedelta(hours=20)  # a digest posted later than this is skipped


class SlackSender:
    """Callable handed to scheduler.outbox.dispatch_due for channel "slack"."""

    def __init__(self, client: AsyncWebClient, sessions: Callable[[], AsyncSession],
                 clock: Callable[[], datetime]) -> None:
        self.client, self.sessions, self.clock = client, sessions, clock

    async def __call__(self, row: Outbox) -> Outcome:
        try:
            if row.kind == "escalation_card":
                return await self._card(row, post=True)
            if row.kind == "escalation_card_update":
                return await self._card(row, post=False)
            if row.kind in ("escalation_reminder", "escalation_note"):
                return await self._in_thread(row)
            if row.kind in ("digest", "campaign_report"):
                return await self._text(row)
            if row.kind == "campaign_preview":
                return await self._campaign_preview(row)
            if row.kind == "campaign_unlinked":
                return await self._unlinked_file(row)
            return Outcome("failed", f"unknown kind {row.kind}")
        except SlackApiError as exc:
            outcome = api_outcome(exc)
            if outcome.kind == "failed" and row.kind in CAMPAIGN_CARDS:
                _refused_card(row, outcome.detail)
            return outcome
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            return Outcome("retry", f"{TRANSIENT}{type(exc).__name__}")

    async def _load(self, esc_id: int) -> tuple[Escalation, Prefecture | None, Card] | None:
        async with self.sessions() as session:
            esc = await session.get(Escalation, esc_id)
            if esc is None:
                return None
            pref = await session.get(Prefecture, esc.prefecture_code)
            return esc, pref, await build_card(session, esc, self.clock())

    async def _card(self, row: Outbox, post: bool) -> Outcome:
        loaded = await self._load(int(row.payload["escalation_id"]))
        if loaded is None:
            return Outcome("failed", "escalation not found")
        esc, pref, card = loaded
        if esc.card_ts and esc.card_channel:  # already posted (maybe by a crashed attempt)
            await self.client.chat_update(channel=esc.card_channel, ts=esc.card_ts,
                                          text=plain_text(card), blocks=card_blocks(card))
            return Outcome("sent")
        if not post:
            return Outcome("retry", "card not posted yet", retry_after=CARD_WAIT)
        channel = destination(pref, row)
        if not channel:
            return NO_CHANNEL
        resp = await self.client.chat_postMessage(channel=channel, text=plain_text(card),
                                                  blocks=card_blocks(card), unfurl_links=False)
        await self._remember(esc, str(resp["channel"]), str(resp["ts"]))
        return Outcome("sent")

    async def _remember(self, esc: Escalation, channel: str, ts: str) -> None:
        async with self.sessions() as session:
            stmt = (update(Escalation)
                    .where(col(Escalation.id) == esc.id, col(Escalation.card_ts).is_(None))
                    .values(card_channel=channel, card_ts=ts))
            await session.exec(stmt)  # type: ignore[call-overload]
            await session.commit()

    async def _in_thread(self, row: Outbox) -> Outcome:
        """A reply under the card: an SLA reminder (only while unclaimed) or a clinic's
        supplement (always: whoever works on it must see it)."""
        async with self.sessions() as session:
            esc = await session.get(Escalation, int(row.payload["escalation_id"]))
        if esc is None or (row.kind == "escalation_reminder" and esc.status != "open"):
            return Outcome("sent", "no longer needed")
        if not (esc.card_ts and esc.card_channel):
            if row.kind == "escalation_note" and await self._card_failed(esc):
                # Waits no longer; mapping the channel again re-sends the card and this.
                return Outcome("failed", "the card this note belongs under was never posted")
            # A supplement waits for the card however long Slack is away (revived as transient).
            wait = TRANSIENT if row.kind == "escalation_note" else ""
            return Outcome("retry", f"{wait}card not posted yet", retry_after=CARD_WAIT)
        text = escape(row.body)  # the clinic's words must not become mentions or links
        if row.kind == "escalation_note":
            text = note_text(esc, text)
        await self.client.chat_postMessage(channel=esc.card_channel, thread_ts=esc.card_ts,
                                           text=text, unfurl_links=False)
        return Outcome("sent")

    async def _card_failed(self, esc: Escalation) -> bool:
        """The card's own row has failed for good (not for Slack being away)."""
        assert esc.id is not None
        async with self.sessions() as session:
            card = await outbox.find(session, desk.card_key(esc.id))
        return card is not None and card.status in ("failed", "unreachable") and not (
            card.last_error or "").startswith(TRANSIENT)

    async def _text(self, row: Outbox) -> Outcome:
        if row.kind == "digest" and row.created_at + DIGEST_KEEPS < self.clock():
            # Waited for a channel (or for Slack) past the next morning: its figures are
            # stale and the next digest supersedes it.
            return Outcome("skipped", "digest out of date")
        async with self.sessions() as session:
            pref = await session.get(Prefecture, row.prefecture_code or "")
        channel = destination(pref, row)
        if not channel:
            return NO_CHANNEL
        await self.client.chat_postMessage(channel=channel, text=row.body, unfurl_links=False)
        return Outcome("sent")

    async def _campaign_preview(self, row: Outbox) -> Outcome:
        """Rendered from the database at send time, like cards."""
        async with self.sessions() as session:
            if (found := await _campaign_of(session, row)) is None:
                return Outcome("failed", "campaign not found")
            c, pref = found
            if c.status not in ("planned", "previewed"):  # cancelled or approved meanwhile
                return Outcome("skipped", f"campaign is {c.status}")
            sample = await campaigns.sample(session, c)
            csv_head = await campaigns.unlinked_csv(session, c, limit=20) if c.unlinked else ""
        channel = destination(pref, row)
        if not channel:
            return NO_CHANNEL
        title = f"{campaigns.KIND_LABELS[c.kind]}の送信確認（キャンペーン {c.id}）"
        summary = (f"*送信対象*：{c.recipients:,}件（チャット連携済み）\n"
                   f"*送信予定*：{c.send_at.astimezone(JST):%Y-%m-%d %H:%M} から"
                   f"（送信時間帯のみ）\n*予定*：{c.run_tag}")
        blocks = campaign_preview_blocks(c.id or 0, title, summary, sample, csv_head,
                                         c.unlinked)
        await self.client.chat_postMessage(channel=channel, text=title, blocks=blocks,
                                           unfurl_links=False)
        return Outcome("sent")

    async def _unlinked_file(self, row: Outbox) -> Outcome:
        """The full list of target institutions no chat reaches, as a CSV that opens in
        Excel (UTF-8 with BOM), built from the database at send time."""
        async with self.sessions() as session:
            if (found := await _campaign_of(session, row)) is None:
                return Outcome("failed", "campaign not found")
            c, pref = found
            if c.status == "cancelled":  # sent again after a remap, for a campaign stopped since
                return Outcome("skipped", "campaign is cancelled")
            table = await campaigns.unlinked_csv(session, c)
        channel = destination(pref, row)
        if not channel:
            return NO_CHANNEL
        await self.client.files_upload_v2(
            channel=channel, content=table.encode("utf-8-sig"),
            filename=f"unlinked-campaign-{c.id}.csv", title=f"未連携医療機関_キャンペーン{c.id}",
            initial_comment=row.body)
        return Outcome("sent")


async def _campaign_of(session: AsyncSession, row: Outbox,
                       ) -> tuple[Campaign, Prefecture | None] | None:
    """The campaign a preview or file row is about, with its prefecture."""
    try:
        c = await campaigns.get(session, int(row.payload["campaign_id"]),
                                row.prefecture_code or "")
    except campaigns.CampaignError:
        return None
    return c, await session.get(Prefecture, c.prefecture_code)


CAMPAIGN_CARDS = {"campaign_preview": "approval card", "campaign_unlinked": "unlinked list"}


def _refused_card(row: Outbox, error: str) -> None:
    """A campaign waits for its approval card: one Slack refused for good must reach the
    operator's log with the way to send it again (`campaign status` shows it too)."""
    campaign_id, pref = row.payload.get("campaign_id"), row.prefecture_code
    logger.error("campaign %s (prefecture %s): Slack refused its %s (%s); it was not posted. "
                 "Invite the bot to the staff channel or map the right one (slack-channel), "
                 "then `campaign preview %s --prefecture %s` sends it again",
                 campaign_id, pref, CAMPAIGN_CARDS[row.kind], error, campaign_id, pref)


def note_text(esc: Escalation, body: str) -> str:
    """A supplement as posted under the card: whoever claimed it is mentioned (a bot's reply
    in a thread notifies no one else), and after forwarding, where it must go on."""
    if esc.claimed_by:
        body = f"{staff_ref(esc.claimed_by)} {body}"
    if esc.status == "forwarded":
        body += "\n（厚生労働省へ転送済みです。必要に応じて問合せ管理ツールにも追記してください）"
    return body


def slack_error(exc: SlackApiError) -> str:
    """Slack's error code (`channel_not_found`), else the HTTP status, as text."""
    if not exc.response:
        return "?"
    return str(exc.response.get("error") or exc.response.status_code)


def api_outcome(exc: SlackApiError) -> Outcome:
    """Rate limits and Slack-side failures are retried; configuration errors are not."""
    status = exc.response.status_code
    error = slack_error(exc)
    if status == 429 or error == "ratelimited":
        after = exc.response.headers.get("Retry-After") or exc.response.headers.get(
            "retry-after") or "30"
        return Outcome("retry", f"{TRANSIENT}ratelimited", retry_after=float(after))
    if status >= 500 or error in RETRYABLE_ERRORS:
        return Outcome("retry", f"{TRANSIENT}{error}")
    if error in AUTH_ERRORS:
        logger.error("Slack refused the bot token (%s): check SLACK_BOT_TOKEN; messages wait",
                     error)
        return Outcome("defer", f"Slack token refused: {error}", retry_after=AUTH_WAIT)
    logger.warning("Slack refused a message: %s", error)
    return Outcome("failed", error)
