"""`main.py run`: start every configured channel and one web server for all webhooks."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable
from typing import Protocol

import uvicorn
from starlette.applications import Starlette
from starlette.routing import BaseRoute

from bot.app import App, build_app
from bot.settings import ConfigError, Settings, link_code_key
from db.migrate import upgrade
from scheduler.jobs import CampaignScheduler

logger = logging.getLogger(__name__)


class Channel(Protocol):
    """A running chat channel (Telegram, LINE, Slack, ...), built by the composition root."""

    name: str

    def web_routes(self) -> list[BaseRoute]:
        """Webhook endpoints to mount on the shared web server (empty for polling)."""
        ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def wake(self) -> None:
        """Something was queued for this channel: send it now, not at the next interval."""
        ...


ChannelBuilder = Callable[[Settings, App], Channel | None]


def channel_builders() -> list[ChannelBuilder]:
    """Every channel the bot knows; each returns None when its settings are absent."""
    from bot.line import build_line_channel
    from bot.slack import build_slack_channel
    from bot.telegram import build_channel as build_telegram_channel

    return [build_telegram_channel, build_line_channel, build_slack_channel]


# Exit codes of `run`: the CLI prints the "no channel" hint for NO_CHANNEL only.
NO_CHANNEL, CONFIG_ERROR = 1, 2


async def serve(settings: Settings, stop: asyncio.Event) -> int:
    """Run until `stop` is set; returns a process exit code. A channel missing a setting,
    or whose token its platform refuses, stops the start-up with CONFIG_ERROR: a deploy
    must fail where the operator sees it, not run without the desk or the chat."""
    app = build_app(settings)
    try:
        channels = [c for build in channel_builders() if (c := build(settings, app)) is not None]
    except ConfigError as exc:
        await app.close()
        logger.error("%s; nothing was started", exc)
        return CONFIG_ERROR
    if not channels:
        await app.close()
        logger.error("no chat channel is configured")
        return NO_CHANNEL
    if link_code_key(settings) is None:
        logger.warning("LINK_CODE_KEY is not set: link codes are hashed without a key; "
                       "set it in production")
    routes = [r for c in channels for r in c.web_routes()]
    server = _web_server(settings, routes) if routes else None
    campaigns = _campaign_scheduler(settings, app, channels)
    started: list[Channel] = []
    try:
        for channel in channels:
            await channel.start()
            started.append(channel)
            logger.info("channel started: %s", channel.name)
        if campaigns is not None:
            await campaigns.start()
        web_task = asyncio.create_task(server.serve()) if server else None
        await stop.wait()
        if server and web_task:
            server.should_exit = True
            await web_task
    except ConfigError as exc:
        logger.error("%s; the bot is stopping", exc)
        return CONFIG_ERROR
    finally:
        if campaigns is not None:
            await campaigns.stop()
        for channel in reversed(started):  # one that failed to start has cleaned up itself
            await channel.stop()
        await app.close()
    return 0


def _campaign_scheduler(settings: Settings, app: App, channels: list[Channel],
                        ) -> CampaignScheduler | None:
    """Every process runs one; only the lease holder fires schedules (scheduler.jobs)."""
    if not settings.campaign_scheduler:
        return None

    def wake() -> None:  # something was queued: let the outboxes look now
        for channel in channels:
            channel.wake()

    ctx = app.context
    return CampaignScheduler(ctx.sessions, settings.database_url, ctx.clock, on_queued=wake,
                             sla_hours=settings.desk_sla_hours)


def _web_server(settings: Settings, routes: list[BaseRoute]) -> uvicorn.Server:
    config = uvicorn.Config(Starlette(routes=routes), host=settings.web_host,
                            port=settings.web_port, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    return server


def run(settings: Settings) -> int:
    """Blocking entry point for the CLI: migrate, then serve until SIGINT/SIGTERM."""
    upgrade(settings.database_url)

    async def main() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        return await serve(settings, stop)

    return asyncio.run(main())
