"""Sending to Telegram: replies to a user's message, and outbox messages the bot sends on
its own (staff answers, campaign messages).

Telegram's errors mean different things and get different treatment:
- RetryAfter (429): nothing was sent; wait exactly as long as Telegram asks, for that chat.
- TimedOut / NetworkError: try again later with backoff (a timed-out send may in rare cases
  have arrived, so at-least-once is the price of never losing an answer).
- Forbidden: the user blocked the bot; the account is marked unreachable so campaigns skip
  it and staff can see it. Writing to the bot again makes it reachable again.
- BadRequest (chat not found, ...): retrying cannot help; the row fails with the reason.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlmodel.ext.asyncio.session import AsyncSession
from telegram import Bot
from telegram.error import (
    BadRequest,
    ChatMigrated,
    Forbidden,
    RetryAfter,
    TelegramError,
    TimedOut,
)

from bot.telegram.inbound import CHANNEL
from bot.telegram.render import CallbackCodec, keyboard, parts
from db import repo
from db.models import Outbox
from handlers.messages import Reply
from scheduler.messages import defer_parts, reply_of
from scheduler.outbox import Outcome
from scheduler.ratelimit import RateLimiter

logger = logging.getLogger(__name__)


def retry_seconds(exc: RetryAfter) -> float:
    """`retry_after` in seconds (a timedelta under PTB_TIMEDELTA=1, an int before)."""
    value = exc.retry_after
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


class TelegramSender:
    """Everything that leaves the bot goes through here. Messages the bot sends on its own
    are paced by the limiter (overall and per chat); a reply to what a user just wrote is
    sent at once, unless Telegram has asked us to wait for that chat."""

    def __init__(self, bot: Bot, sessions: Callable[[], AsyncSession], limiter: RateLimiter,
                 codec: CallbackCodec, clock: Callable[[], datetime],
                 wake_outbox: Callable[[], None], tenant: str) -> None:
        self._bot, self._sessions, self._limiter = bot, sessions, limiter
        self._codec, self._clock, self._wake, self._tenant = codec, clock, wake_outbox, tenant
        self._progress: dict[int, int] = {}  # outbox row id -> parts already delivered

    async def __call__(self, row: Outbox) -> Outcome:
        """The outbox `Sender`: deliver one row (all its parts) or say why not."""
        chat = row.recipient
        if (wait := self._limiter.blocked_for(chat)) > 0:
            return Outcome("retry", "waiting for Telegram's retry_after", retry_after=wait)
        messages = parts([reply_of(row)])
        assert row.id is not None
        first = self._progress.pop(row.id, 0)  # resume after a retry: no part twice
        for index in range(first, len(messages)):
            await self._limiter.acquire(chat)
            try:
                await self._send(chat, messages[index])
            except TelegramError as exc:
                outcome = await self._outcome(chat, exc)
                if outcome.kind == "retry":
                    self._progress[row.id] = index
                return outcome
        return Outcome("sent")

    async def reply(self, chat_id: int, replies: list[Reply], key: str) -> None:
        """Answer a user's message now; what cannot go now goes through the outbox."""
        messages, chat = parts(replies), str(chat_id)
        for index, message in enumerate(messages):
            if self._limiter.blocked_for(chat) > 0:  # Telegram asked us to wait
                await self._defer(chat, messages[index:], key, index)
                return
            try:
                await self._send(chat, message)
            except BadRequest as exc:  # a bug of ours; the other parts may still go
                logger.error("Telegram refused a reply to chat %s: %s", chat, exc.message)
            except Forbidden:
                await self._mark_unreachable(chat)
                return
            except TelegramError as exc:  # 429, timeouts, network, 5xx: the outbox retries
                await self._outcome(chat, exc)
                await self._defer(chat, messages[index:], key, index)
                return

    async def _send(self, chat: str, message: Reply) -> None:
        await self._bot.send_message(chat_id=_chat_id(chat), text=message.text,
                                     reply_markup=keyboard(message, self._codec))

    async def _outcome(self, chat: str, exc: TelegramError) -> Outcome:
        if isinstance(exc, RetryAfter):
            seconds = retry_seconds(exc)
            self._limiter.block(chat, seconds)
            return Outcome("retry", f"RetryAfter {seconds:.0f}s", retry_after=seconds)
        if isinstance(exc, Forbidden):
            await self._mark_unreachable(chat)
            return Outcome("unreachable", exc.message)
        if isinstance(exc, BadRequest | ChatMigrated):
            return Outcome("failed", exc.message)
        if isinstance(exc, TimedOut):
            return Outcome("retry", "TimedOut")
        logger.warning("Telegram send to chat %s failed: %s", chat, exc.message)
        return Outcome("retry", f"{type(exc).__name__}: {exc.message}"[:200])

    async def _defer(self, chat: str, messages: list[Reply], key: str, offset: int) -> None:
        """Queue unsent parts in order, not before the chat's retry_after has passed."""
        now = self._clock()
        not_before = now + timedelta(seconds=max(self._limiter.blocked_for(chat), 1.0))
        await defer_parts(self._sessions, CHANNEL, chat, messages, key, offset, self._tenant,
                          now, not_before)
        logger.info("reply to chat %s deferred to the outbox (%d parts)", chat, len(messages))
        self._wake()

    async def _mark_unreachable(self, chat: str) -> None:
        async with self._sessions() as session:
            if await repo.set_reachable(session, CHANNEL, chat, False):
                logger.info("chat %s blocked the bot: marked unreachable", chat)


def _chat_id(chat: str) -> int | str:
    return int(chat) if chat.lstrip("-").isdigit() else chat
