"""Sending to LINE: replies with the event's reply token, and pushes through the outbox
for everything else (a reply whose token is spent or stale, staff answers, campaigns).

LINE's answers mean different things and get different treatment:
- 429: nothing was sent; LINE's limits are per channel, so every chat waits (Retry-After
  when LINE gives one, else a minute; an hour for the monthly message quota).
- 409 on a push: a push with this X-Line-Retry-Key was already accepted (a retry after a
  timeout): it arrived, so it counts as sent and is never sent twice.
- 5xx, timeouts, network: try again later with backoff. A reply cut off by a timeout may
  have arrived: it is asked again with the same token, and LINE's "Invalid reply token"
  for a token fresh a moment ago means it had (the user never gets it twice).
- 400 (invalid user, bad message) and 401/403 (token, plan): retrying cannot help; the row
  fails with LINE's reason.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta

import aiohttp
from linebot.v3.messaging import (
    ApiException,
    AsyncMessagingApi,
    PushMessageRequest,
    ReplyMessageRequest,
    TextMessage,
)
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.line.inbound import CHANNEL
from bot.line.render import Postbacks, batches, message, parts
from db.models import Outbox
from handlers.messages import Reply
from scheduler.messages import defer_parts, reply_of
from scheduler.outbox import Outcome
from scheduler.ratelimit import RateLimiter

logger = logging.getLogger(__name__)

RATE_LIMIT_WAIT = 60.0  # seconds, when a 429 gives no Retry-After
QUOTA_WAIT = 3600.0  # the monthly message quota is spent: an operator must act
REPLY_TOKEN_TTL = timedelta(seconds=50)  # LINE: use the token within about a minute
TRANSIENT = (aiohttp.ClientError, TimeoutError)
# LINE answers in well under a second; the SDK's own default would hold a chat five minutes.
CALL_TIMEOUT = 10.0
RETRY_KEY_NAMESPACE = uuid.UUID("6f1c2a52-3f0e-4c7e-9d7e-6a1b2c3d4e5f")


def retry_key(row_key: str, batch: int) -> str:
    """A stable X-Line-Retry-Key per outbox row and batch: LINE refuses a second push with
    it (409), so a retry after a timeout never sends the same messages twice."""
    return str(uuid.uuid5(RETRY_KEY_NAMESPACE, f"{row_key}:{batch}"))


def error_message(exc: ApiException) -> str:
    """LINE's own reason ("Invalid reply token"), never the request or its headers."""
    try:
        body = json.loads(exc.body or b"{}")
    except ValueError:
        body = {}
    message = body.get("message") if isinstance(body, dict) else None
    return f"{exc.status} {message or exc.reason or ''}".strip()[:200]


def rate_limit_wait(exc: ApiException) -> float:
    """How long every chat waits after a 429."""
    if "monthly limit" in error_message(exc).lower():
        return QUOTA_WAIT
    header = (exc.headers or {}).get("Retry-After", "")
    return float(header) if header.strip().isdigit() else RATE_LIMIT_WAIT


class LineSender:
    """Everything that leaves the bot for LINE goes through here; pushes are paced by the
    limiter, a reply with a fresh token goes at once unless LINE asked us to wait."""

    def __init__(self, api: Callable[[], AsyncMessagingApi],
                 sessions: Callable[[], AsyncSession], limiter: RateLimiter,
                 postbacks: Postbacks, clock: Callable[[], datetime],
                 wake_outbox: Callable[[], None], tenant: str,
                 timeout: float = CALL_TIMEOUT) -> None:
        self._api, self._sessions, self._limiter = api, sessions, limiter
        self.timeout = timeout
        self._postbacks, self._clock, self._wake, self._tenant = (postbacks, clock,
                                                                  wake_outbox, tenant)
        self._progress: dict[int, int] = {}  # outbox row id -> batches already delivered

    async def __call__(self, row: Outbox) -> Outcome:
        """The outbox `Sender`: push one row (all its batches) or say why not."""
        user = row.recipient
        if (wait := self._limiter.blocked_for(user)) > 0:
            return Outcome("retry", "waiting for LINE's rate limit", retry_after=wait)
        groups = batches([message(p, self._postbacks) for p in parts([reply_of(row)])])
        assert row.id is not None
        first = self._progress.pop(row.id, 0)  # resume after a retry: no batch twice
        for index in range(first, len(groups)):
            await self._limiter.acquire(user)
            outcome = await self._push(user, groups[index], retry_key(row.idempotency_key, index))
            if outcome is not None:
                if outcome.kind == "retry":
                    self._progress[row.id] = index
                return outcome
        return Outcome("sent")

    async def reply(self, user: str, token: str | None, received: datetime,
                    replies: list[Reply], key: str) -> None:
        """Answer an event: the first batch with its reply token while it is fresh, the rest
        (or all, when the token cannot be used) by push through the outbox."""
        messages = parts(replies)
        if not messages:  # a handler with nothing to say
            return
        sent = 0
        if token and self._clock() - received < REPLY_TOKEN_TTL and \
                self._limiter.blocked_for(user) <= 0:
            sent = await self._reply(user, token, messages[:len(batches(messages)[0])])
        if sent < len(messages):
            await self._defer(user, messages[sent:], key, sent)

    async def _reply(self, user: str, token: str, first: list[Reply]) -> int:
        """How many parts the reply token delivered (0: push them instead)."""
        request = ReplyMessageRequest(reply_token=token,
                                      messages=[message(p, self._postbacks) for p in first])
        for again in (False, True):
            try:
                await self._api().reply_message(request, _request_timeout=self.timeout)
                return len(first)
            except ApiException as exc:
                reason = error_message(exc)
                if again and exc.status == 400 and "reply token" in reason.lower():
                    logger.info("line: reply to %s had arrived before the timeout", user)
                    return len(first)
                if exc.status == 429:
                    self._limiter.block(None, rate_limit_wait(exc))
                elif exc.status == 400 and "reply token" not in reason.lower():
                    logger.error("LINE refused a reply to %s: %s", user, reason)
                    return len(first)  # a bug of ours: pushing it would be refused the same way
                logger.info("line: reply to %s not sent (%s): pushing", user, reason)
                return 0
            except aiohttp.ClientConnectorError as exc:  # LINE never saw it
                logger.warning("line: reply to %s failed (%s): pushing", user,
                               type(exc).__name__)
                return 0
            except TRANSIENT as exc:
                if again:
                    logger.warning("line: reply to %s failed twice (%s): pushing", user,
                                   type(exc).__name__)
                    return 0
                logger.warning("line: reply to %s cut off (%s): asking again", user,
                               type(exc).__name__)
        return 0

    async def _push(self, user: str, batch: list[TextMessage], key: str) -> Outcome | None:
        """None when LINE accepted the batch (now or before); else the row's outcome."""
        try:
            await self._api().push_message(PushMessageRequest(to=user, messages=batch),
                                           x_line_retry_key=key,
                                           _request_timeout=self.timeout)
            return None
        except ApiException as exc:
            return self._outcome(user, exc)
        except TRANSIENT as exc:
            logger.warning("line: push to %s failed: %s", user, type(exc).__name__)
            return Outcome("retry", type(exc).__name__)

    def _outcome(self, user: str, exc: ApiException) -> Outcome | None:
        reason = error_message(exc)
        if exc.status == 409:  # accepted before, under the same retry key
            return None
        if exc.status == 429:
            seconds = rate_limit_wait(exc)
            self._limiter.block(None, seconds)
            return Outcome("retry", f"429 retry after {seconds:.0f}s", retry_after=seconds)
        if exc.status is not None and exc.status >= 500:
            return Outcome("retry", reason)
        logger.warning("LINE refused a push to %s: %s", user, reason)
        return Outcome("failed", reason)

    async def _defer(self, user: str, messages: list[Reply], key: str, offset: int) -> None:
        """Queue unsent parts in order, not before LINE's rate-limit wait has passed."""
        now = self._clock()
        not_before = now + timedelta(seconds=self._limiter.blocked_for(user))
        await defer_parts(self._sessions, CHANNEL, user, messages, key, offset, self._tenant,
                          now, not_before)
        logger.info("line: reply to %s goes by push (%d parts)", user, len(messages))
        self._wake()

