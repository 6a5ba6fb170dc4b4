"""The LINE channel (Messaging API, line-bot-sdk v3): webhook in, reply or push out.

LINE only has webhooks: events arrive on our shared web server (bot.line.webhook), are
recorded by `webhookEventId` so a redelivery is never handled twice, answered 200 at once,
and then handled in the background, in order per user and concurrently across users. Each
is kept until handled (bot.pending): one a stopped or crashed process left behind is
taken over by a running one and answered by push, late but not lost.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from datetime import datetime
from typing import Any

from linebot.v3.messaging import ApiException, AsyncApiClient, AsyncMessagingApi, Configuration
from linebot.v3.webhooks import Event
from starlette.routing import BaseRoute

from bot.app import App
from bot.line.inbound import CHANNEL, Incoming, parse
from bot.line.render import Postbacks
from bot.line.sender import LineSender, error_message
from bot.line.webhook import webhook_route
from bot.ordering import PerKeyGate
from bot.pending import PendingEvents
from bot.render import EXPIRED_BUTTON, GROUP_ONLY_PRIVATE, late_answer
from bot.settings import ConfigError, Settings, secret_given
from db import repo
from handlers import dispatch as dispatch_module
from handlers.context import Context
from handlers.messages import Inbound, Reply
from scheduler.ratelimit import RateLimiter
from scheduler.worker import OutboxWorker

logger = logging.getLogger(__name__)

Dispatch = Callable[[Inbound, Context], Awaitable[list[Reply]]]
STOP_GRACE = 10.0  # seconds events in hand may take to finish at shutdown


class LineChannel:
    """A running LINE channel (the runner's `Channel`)."""

    name = CHANNEL

    def __init__(self, settings: Settings, context: Context, *,
                 dispatch: Dispatch | None = None, clock: Callable[[], datetime] | None = None,
                 max_concurrent_events: int = 16, outbox_interval: float = 1.0) -> None:
        secret, token = settings.line_channel_secret, settings.line_channel_access_token
        if not (secret_given(secret) and secret_given(token)):
            raise ValueError("LINE_CHANNEL_SECRET and LINE_CHANNEL_ACCESS_TOKEN must be set")
        assert secret is not None and token is not None
        self._secret, self._token = secret.get_secret_value(), token.get_secret_value()
        self._host, self._path = settings.line_api_base, settings.line_webhook_path
        self._context, self._tenant = context, settings.default_prefecture
        self._dispatch: Dispatch = dispatch or dispatch_module.dispatch
        self._clock = clock or context.clock
        self._client: AsyncApiClient | None = None
        self._api: AsyncMessagingApi | None = None
        self._postbacks = Postbacks()
        limiter = RateLimiter(settings.line_rate_per_second, settings.line_rate_per_chat,
                              clock=lambda: self._clock().timestamp())
        self.sender = LineSender(self._messaging, context.sessions, limiter, self._postbacks,
                                 self._clock, self.wake, self._tenant)
        self.outbox = OutboxWorker(context.sessions, CHANNEL, self.sender, self._clock,
                                   interval=outbox_interval)
        self._gate = PerKeyGate(max_concurrent_events)
        self._tasks: set[asyncio.Task[None]] = set()
        self.pending = PendingEvents(context.sessions, CHANNEL, self._clock, self._resume)
        self._settled = asyncio.Event()
        self._settled.set()

    def web_routes(self) -> list[BaseRoute]:
        return [webhook_route(self._path, self._secret, self.accept)]

    def wake(self) -> None:
        """Something was queued for LINE: send it now rather than at the next tick."""
        self.outbox.wake()

    async def start(self) -> None:
        self._client = AsyncApiClient(Configuration(host=self._host, access_token=self._token))
        self._api = AsyncMessagingApi(self._client)
        try:
            info = await self._api.get_bot_info()  # a wrong token fails here, loudly
        except ApiException as exc:
            await self._close_client()
            if exc.status in (401, 403):
                raise ConfigError(
                    f"LINE refused LINE_CHANNEL_ACCESS_TOKEN ({error_message(exc)}): issue a "
                    "long-lived channel access token in the LINE Developers console "
                    "(Messaging API tab) for this channel") from None
            raise
        self.outbox.start()
        await self.pending.start()
        logger.info("line: started as %s (webhook %s)", info.basic_id, self._path)

    async def stop(self) -> None:
        """Finish the events in hand, then the outbox batch in flight; close the client. An
        event cut off here stays pending for the next process to take over."""
        await self.pending.stop()
        if self._tasks:
            _done, pending = await asyncio.wait(set(self._tasks), timeout=STOP_GRACE)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        await self.outbox.stop()
        await self._close_client()

    async def settled(self) -> None:
        """Wait until no event is being handled (graceful drains, tests)."""
        await self._settled.wait()

    async def accept(self, events: list[Event]) -> None:
        """The webhook's hand-off: record each event once, then handle the new ones after
        the 200 (LINE waits only a few seconds for it)."""
        received = self._clock()
        for event in events:
            if await self._first_delivery(event, received):
                self._spawn(self._run(event, received))

    async def _first_delivery(self, event: Event, now: datetime) -> bool:
        if await self.pending.record(event.webhook_event_id, event.to_dict(), now):
            return True
        logger.info("line: event %s was handled already (redelivery=%s)",
                    event.webhook_event_id, event.delivery_context.is_redelivery)
        return False

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        self._settled.clear()
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not self._tasks:
            self._settled.set()

    def _resume(self, payload: dict[str, Any], received: datetime) -> None:
        self._spawn(self._run(Event.from_dict(payload), received, late=True))

    async def _run(self, event: Event, received: datetime, late: bool = False) -> None:
        event_id = event.webhook_event_id
        async with self.pending.handling(event_id):
            try:
                incoming = parse(event, self._tenant, self._postbacks)
                if incoming is not None:
                    async with self._gate.turn(incoming.user_id):
                        await self._handle(incoming, received, event_id, late)
            except Exception:  # an adapter bug is logged with the event id, not retried
                logger.exception("line: event %s failed", event_id)

    async def _handle(self, incoming: Incoming, received: datetime, event_id: str,
                      late: bool = False) -> None:
        if incoming.kind == "unfollow":
            await self._unfollowed(incoming.user_id)
            return
        replies = await self._replies_for(incoming)
        if late and replies and incoming.inbound is not None:
            replies = [Reply(late_answer(incoming.inbound.text)), *replies]
        await self.sender.reply(incoming.user_id, incoming.reply_token, received, replies,
                                key=f"line:{event_id}")

    async def _replies_for(self, incoming: Incoming) -> list[Reply]:
        if incoming.kind == "group":
            return [Reply(GROUP_ONLY_PRIVATE)]
        if incoming.expired_button:
            return [Reply(EXPIRED_BUTTON, meta={"action": "expired_button"})]
        assert incoming.inbound is not None
        return await self._dispatch(incoming.inbound, self._context)

    async def _unfollowed(self, user: str) -> None:
        """LINE tells us at once when a user blocks the account, so staff and campaigns see
        it before a push is wasted. Following again (or writing) makes it reachable again."""
        async with self._context.session() as session:
            if await repo.set_reachable(session, CHANNEL, user, False):
                logger.info("line: user %s blocked the account: marked unreachable", user)

    def _messaging(self) -> AsyncMessagingApi:
        if self._api is None:
            raise RuntimeError("the LINE channel is not started")
        return self._api

    async def _close_client(self) -> None:
        client, self._client, self._api = self._client, None, None
        if client is not None:
            await client.close()


def missing_setting(settings: Settings) -> str:
    """What a half-configured LINE channel lacks ("" when fully configured or not at all).
    Names only, never values."""
    secret = secret_given(settings.line_channel_secret)
    token = secret_given(settings.line_channel_access_token)
    if secret == token:
        return ""
    present, missing = (("LINE_CHANNEL_SECRET", "LINE_CHANNEL_ACCESS_TOKEN") if secret
                        else ("LINE_CHANNEL_ACCESS_TOKEN", "LINE_CHANNEL_SECRET"))
    return (f"{present} is set but {missing} is not: set both from the LINE Developers "
            "console (Basic settings: channel secret; Messaging API: channel access token), "
            "or remove the LINE settings")


def build_line_channel(settings: Settings, app: App) -> LineChannel | None:
    """The runner's builder: no LINE settings, no LINE; half of them is a ConfigError."""
    if problem := missing_setting(settings):
        raise ConfigError(problem)
    if not secret_given(settings.line_channel_secret):
        return None
    return LineChannel(settings, app.context)
