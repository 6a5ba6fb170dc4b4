"""The Slack staff desk as a runnable channel: Bolt app (HTTP or Socket Mode) plus the
outbox dispatcher that posts and updates cards, reminders and digests."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import aiohttp
from slack_bolt.adapter.starlette.async_handler import AsyncSlackRequestHandler
from slack_bolt.async_app import AsyncApp
from slack_bolt.authorization import AuthorizeResult
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy import update
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from bot.redmine import RedmineSender
from bot.settings import ConfigError, Settings, secret_given
from bot.slack import listeners
from bot.slack.sender import AUTH_ERRORS, TRANSIENT, SlackSender, slack_error
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
    """The desk, or None when no Slack setting is given at all: a bot token, and either a
    signing secret (HTTP mode, every request verified) or an app token (Socket Mode, where
    the websocket itself is authenticated and no request reaches our web server). Half a
    configuration is a ConfigError naming what is missing: silently running without the
    desk had been reported as "no chat channel is configured"."""
    if problem := missing_setting(settings):
        raise ConfigError(problem)
    if not secret_given(settings.slack_bot_token):
        return None
    ctx = app.context
    return SlackChannel(settings, ctx.sessions, ctx.clock)


def missing_setting(settings: Settings) -> str:
    """What a partly configured desk lacks, as the operator fixes it ("" when the desk is
    fully configured or not at all). Names only, never values."""
    token, secret, app_token = (secret_given(settings.slack_bot_token),
                                secret_given(settings.slack_signing_secret),
                                secret_given(settings.slack_app_token))
    socket = settings.slack_socket_mode
    if not token:
        present = [name for name, on in (("SLACK_SIGNING_SECRET", secret),
                                          ("SLACK_APP_TOKEN", app_token),
                                          ("SLACK_SOCKET_MODE", socket)) if on]
        return (f"{' and '.join(present)} {'is' if len(present) == 1 else 'are'} set but "
                "SLACK_BOT_TOKEN is not: set the bot token (xoxb-..., OAuth & Permissions) "
                "for the Slack desk, or remove the Slack settings") if present else ""
    if socket and not app_token:
        return ("SLACK_SOCKET_MODE is true but SLACK_APP_TOKEN is not set: set the app-level "
                "token (xapp-..., Basic Information, scope connections:write), or set "
                "SLACK_SOCKET_MODE=false and SLACK_SIGNING_SECRET for HTTP mode")
    if not socket and not secret:
        return ("SLACK_BOT_TOKEN is set but SLACK_SIGNING_SECRET is not: HTTP mode verifies "
                "every request from Slack with it (Basic Information, App Credentials), or "
                "set SLACK_SOCKET_MODE=true with SLACK_APP_TOKEN")
    return ""


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
        await self._check_token()
        if self.settings.slack_socket_mode:
            from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler

            assert self.settings.slack_app_token is not None
            handler = AsyncSocketModeHandler(self.bolt,
                                             self.settings.slack_app_token.get_secret_value())
            try:
                await handler.connect_async()
            except SlackApiError as exc:
                if slack_error(exc) in AUTH_ERRORS:
                    raise ConfigError(f"Slack refused SLACK_APP_TOKEN ({slack_error(exc)}): "
                                      "check the app-level token (xapp-...) and its scope "
                                      "connections:write") from None
                raise
            self._socket = handler
        self._task = asyncio.create_task(self._run(), name="slack-outbox")

    async def _check_token(self) -> None:
        """auth.test once at start: a refused token is a deployment error to show now, not
        on the day the first card waits unseen. Slack away (5xx, network) is not: the
        outbox keeps every card until it is back, so the bot starts."""
        try:
            who = await self.client.auth_test()
        except SlackApiError as exc:
            if (error := slack_error(exc)) in AUTH_ERRORS:
                raise ConfigError(f"Slack refused SLACK_BOT_TOKEN ({error}): check the bot "
                                  "token (xoxb-..., OAuth & Permissions) of the app installed "
                                  "in the workspace") from None
            logger.warning("Slack auth.test failed (%s): starting anyway; the desk's "
                           "messages wait until Slack answers", error)
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            logger.warning("Slack is unreachable at start-up (%s): starting anyway; the "
                           "desk's messages wait until Slack answers", type(exc).__name__)
        else:
            logger.info("slack: token accepted for workspace %s as %s", who.get("team"),
                        who.get("user"))

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
