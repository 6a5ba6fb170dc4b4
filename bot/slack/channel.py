"""The Slack staff desk as a runnable channel: Bolt app (HTTP or Socket Mode) plus the
outbox dispatcher that posts and updates cards, reminders and digests."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from slack_bolt.adapter.starlette.async_handler import AsyncSlackRequestHandler
from slack_bolt.async_app import AsyncApp
from slack_bolt.authorization import AuthorizeResult
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy import update
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from bot.redmine import RedmineSender
from bot.settings import Settings
from bot.slack import listeners
from bot.slack.sender import TRANSIENT, SlackSender
from db.events import forget_old
from db.models import Outbox
from scheduler.outbox import dispatch_due
from scheduler.tasks import cancel_and_wait

if TYPE_CHECKING:
    from bot.app import App

logger = logging.getLogger(__name__)
DEFAULT_API_BASE = "https://slack.com/api/"
EVENTS_PATH = "/slack/events"
REVIVE_AFTER = timedelta(minutes=5)


def build_slack_channel(settings: Settings, app: App) -> SlackChannel | None:
    """The desk, or None when it is not configured: a bot token, and either a signing
    secret (HTTP mode, every request verified) or an app token (Socket Mode, where the
    websocket itself is authenticated and no request reaches our web server)."""
    if settings.slack_bot_token is None:
        return None
    if settings.slack_socket_mode and settings.slack_app_token is None:
        logger.error("SLACK_SOCKET_MODE needs SLACK_APP_TOKEN; the Slack desk is not started")
        return None
    if not settings.slack_socket_mode and settings.slack_signing_secret is None:
        return None
    ctx = app.context
    return SlackChannel(settings, ctx.sessions, ctx.clock)


class SlackChannel:
    name = "slack"

    def __init__(self, settings: Settings, sessions: Callable[[], AsyncSession],
                 clock: Callable[[], datetime], process_before_response: bool = False) -> None:
        assert settings.slack_bot_token
        secret = settings.slack_signing_secret
        assert secret or settings.slack_socket_mode, "HTTP mode needs the signing secret"
        self.settings, self.sessions, self.clock = settings, sessions, clock
        base = settings.slack_api_base or DEFAULT_API_BASE
        self.api_base = base if base.endswith("/") else base + "/"
        token = settings.slack_bot_token.get_secret_value()
        # retry_handlers=[]: the outbox owns retries and backoff, one policy for all sends
        self.client = AsyncWebClient(token=token, base_url=self.api_base, retry_handlers=[])
        self.sender = SlackSender(self.client, sessions, clock)
        self.redmine = _redmine(settings, sessions, clock)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._socket: object | None = None
        self.bolt = self._bolt(token, secret.get_secret_value() if secret else "",
                               process_before_response)
        self._handler = AsyncSlackRequestHandler(self.bolt)

    def _bolt(self, token: str, signing_secret: str, process_before_response: bool) -> AsyncApp:
        bot_user_id = self.settings.slack_bot_user_id

        async def authorize(enterprise_id: str | None, team_id: str | None) -> AuthorizeResult:
            # Single workspace with a known token: never ask Slack (auth.test) who we are.
            return AuthorizeResult(enterprise_id=enterprise_id, team_id=team_id,
                                   bot_token=token, bot_user_id=bot_user_id)

        bolt = AsyncApp(signing_secret=signing_secret, authorize=authorize,
                        client=AsyncWebClient(base_url=self.api_base, retry_handlers=[]),
                        process_before_response=process_before_response)
        listeners.register(bolt, listeners.DeskDeps(
            self.sessions, self.clock, self.wake, self.settings.slack_command,
            redmine=self.redmine is not None))
        return bolt

    def web_routes(self) -> list[BaseRoute]:
        if self.settings.slack_socket_mode:
            return []
        return [Route(EVENTS_PATH, self._endpoint, methods=["POST"])]

    async def _endpoint(self, request: Request) -> Response:
        return await self._handler.handle(request)

    async def start(self) -> None:
        if self.settings.slack_socket_mode:
            from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler

            assert self.settings.slack_app_token is not None
            handler = AsyncSocketModeHandler(self.bolt,
                                             self.settings.slack_app_token.get_secret_value())
            await handler.connect_async()
            self._socket = handler
        self._task = asyncio.create_task(self._run(), name="slack-outbox")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None
        if self._socket is not None:
            await self._socket.close_async()  # type: ignore[attr-defined]
            self._socket = None

    def wake(self) -> None:
        """Something was queued: send it now rather than at the next interval."""
        self._wake.set()

    async def flush(self, now: datetime | None = None) -> int:
        """One dispatcher pass over the desk's outbox rows; returns how many were handled."""
        now = now or self.clock()
        await self._revive(now)
        handled = await dispatch_due(self.sessions, "slack", self.sender, now)
        if self.redmine is not None:
            handled += await dispatch_due(self.sessions, "redmine", self.redmine, now)
        return handled

    async def _revive(self, now: datetime) -> None:
        """Rows that ran out of attempts while Slack or Redmine was away wait again:
        an outage longer than the outbox's retry budget must not lose a card."""
        stmt = (update(Outbox)
                .where(col(Outbox.channel).in_(("slack", "redmine")),
                       col(Outbox.status) == "failed",
                       col(Outbox.last_error).startswith(TRANSIENT))
                .values(status="pending", attempts=0, next_attempt_at=now + REVIVE_AFTER))
        async with self.sessions() as session:
            await session.exec(stmt)  # type: ignore[call-overload]
            await session.commit()

    async def _run(self) -> None:
        interval = self.settings.desk_outbox_interval
        passes = 0
        while True:
            self._wake.clear()  # before the pass: a wake() during it triggers another pass
            try:
                await self.flush()
                passes += 1
                if passes % 1000 == 1:
                    async with self.sessions() as session:
                        await forget_old(session, self.clock())
            except Exception:
                logger.exception("Slack outbox pass failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=interval)


def _redmine(settings: Settings, sessions: Callable[[], AsyncSession],
             clock: Callable[[], datetime]) -> RedmineSender | None:
    if not (settings.redmine_url and settings.redmine_api_key):
        return None
    return RedmineSender(settings.redmine_url, settings.redmine_api_key,
                         settings.redmine_project_id, sessions, clock)
