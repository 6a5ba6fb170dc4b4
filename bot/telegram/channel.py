"""The Telegram channel: PTB's Application built by hand and run inside our own event loop.

Polling when only a token is set; webhook mode (our Starlette route, `setWebhook` with a
secret token) when TELEGRAM_WEBHOOK_URL is set. In webhook mode each update is kept until
handled (bot.pending), so one a stopped process left behind is answered late, not lost.
PTB is built without its job queue: the outbox worker and our scheduler own everything that
runs on a timer.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from starlette.routing import BaseRoute
from telegram import BotCommand, ChatMemberUpdated, Update
from telegram.constants import ChatAction, ChatMemberStatus, ChatType
from telegram.error import InvalidToken, TelegramError
from telegram.ext import Application, ApplicationBuilder, ContextTypes, TypeHandler

from bot.app import App
from bot.pending import PendingEvents
from bot.render import EXPIRED_BUTTON, GROUP_ONLY_PRIVATE, late_answer
from bot.settings import ConfigError, Settings, secret_given
from bot.telegram.inbound import CHANNEL, Incoming, parse
from bot.telegram.processor import PerChatUpdateProcessor
from bot.telegram.render import CallbackCodec
from bot.telegram.request import AiohttpRequest
from bot.telegram.sender import TelegramSender
from bot.telegram.webhook import webhook_route
from db import repo
from handlers import dispatch as dispatch_module
from handlers.context import Context
from handlers.messages import Inbound, Reply
from scheduler.ratelimit import RateLimiter
from scheduler.tasks import cancel_and_wait
from scheduler.worker import OutboxWorker

logger = logging.getLogger(__name__)

__all__ = ["COMMANDS", "EXPIRED_BUTTON", "GROUP_ONLY_PRIVATE", "TelegramChannel", "build_channel"]

Dispatch = Callable[[Inbound, Context], Awaitable[list[Reply]]]

COMMANDS = [
    BotCommand("start", "はじめに：このボットでできること"),
    BotCommand("help", "使い方"),
    BotCommand("status", "報告状況：貴院の報告状況と期限"),
    BotCommand("check", "対象か確認：報告の対象か、1号・2号機能の目安"),
    BotCommand("link", "連携：連携コードで医療機関とこのチャットを結ぶ"),
    BotCommand("ask", "担当者に聞く：都道府県の担当者に質問する"),
    BotCommand("cancel", "キャンセル：操作を取り消す"),
]
ALLOWED_UPDATES = ["message", "callback_query", "my_chat_member"]
DEFAULT_WEBHOOK_PATH = "/telegram/webhook"


class TelegramChannel:
    """A running Telegram channel (the runner's `Channel`)."""

    name = CHANNEL

    def __init__(
        self, settings: Settings, context: Context, *, dispatch: Dispatch | None = None,
        clock: Callable[[], datetime] | None = None, typing_after: float = 1.0,
        request_timeout: float | None = None, max_concurrent_updates: int = 16,
        outbox_interval: float = 1.0,
    ) -> None:
        if settings.telegram_token is None:
            raise ValueError("TELEGRAM_TOKEN is not set")
        self._webhook_url = settings.telegram_webhook_url
        self._secret = (settings.telegram_secret_token.get_secret_value()
                        if settings.telegram_secret_token else "")
        if self._webhook_url:
            _check_webhook(self._webhook_url, self._secret)
        # PTB 22 returns timedeltas for durations only when asked; the int form warns.
        os.environ.setdefault("PTB_TIMEDELTA", "1")
        self._context, self._tenant = context, settings.default_prefecture
        self._dispatch: Dispatch = dispatch or dispatch_module.dispatch
        self._clock = clock or context.clock
        self._typing_after = typing_after
        self.application = _build(settings, webhook=bool(self._webhook_url),
                                  timeout=request_timeout, concurrency=max_concurrent_updates)
        self.application.add_handler(TypeHandler(Update, self._on_update))
        self.application.add_error_handler(self._on_error)
        self._codec = CallbackCodec()
        limiter = RateLimiter(settings.telegram_rate_per_second, settings.telegram_rate_per_chat,
                              clock=lambda: self._clock().timestamp())
        self.sender = TelegramSender(self.application.bot, context.sessions, limiter,
                                     self._codec, self._clock, self.wake, self._tenant)
        self.outbox = OutboxWorker(context.sessions, CHANNEL, self.sender, self._clock,
                                   interval=outbox_interval)
        self._seen: OrderedDict[int, None] = OrderedDict()
        self.pending = PendingEvents(context.sessions, CHANNEL, self._clock, self._resume)
        self._late: set[int] = set()  # update ids taken over from a stopped process
        self._in_flight = 0
        self._settled = asyncio.Event()
        self._settled.set()

    def web_routes(self) -> list[BaseRoute]:
        if not self._webhook_url:
            return []
        path = urlsplit(self._webhook_url).path.rstrip("/") or DEFAULT_WEBHOOK_PATH
        return [webhook_route(path, self._secret, self.application, self._accept)]

    def wake(self) -> None:
        """Something was queued for Telegram: send it now rather than at the next tick."""
        self.outbox.wake()

    async def start(self) -> None:
        app = self.application
        try:
            await app.initialize()  # getMe: a wrong token fails here, loudly
        except InvalidToken:
            # PTB's message quotes the token; ours names the setting. Its HTTP sessions
            # are open though the application is not initialised: close them here.
            await app.bot.shutdown()
            raise ConfigError("Telegram refused TELEGRAM_TOKEN (getMe: Unauthorized): check "
                              "the token @BotFather gave for this bot (123456789:AA...)") from None
        try:
            await self._register_commands()
            await app.start()
            if self._webhook_url:
                await app.bot.set_webhook(self._webhook_url, secret_token=self._secret,
                                          allowed_updates=ALLOWED_UPDATES)
            else:
                assert app.updater is not None
                await app.updater.start_polling(allowed_updates=ALLOWED_UPDATES)
            # Polling records nothing, but a switch from webhook mode may leave updates.
            await self.pending.start()
            self.outbox.start()
        except BaseException:
            await self.stop()
            raise
        logger.info("telegram: started in %s mode as @%s",
                    "webhook" if self._webhook_url else "polling", app.bot.username)

    async def stop(self) -> None:
        """Stop fetching, finish the updates in hand, then the outbox batch in flight.
        The webhook stays registered: other workers may still be serving it."""
        app = self.application
        await self.pending.stop()
        if app.updater is not None and app.updater.running:
            await app.updater.stop()
        if app.running:
            await app.stop()
        await self.outbox.stop()
        await app.shutdown()

    async def _register_commands(self) -> None:
        try:
            await self.application.bot.set_my_commands(COMMANDS)
        except TelegramError as exc:  # cosmetic: the bot works without the menu
            logger.warning("telegram: setMyCommands failed: %s", exc.message)

    async def settled(self) -> None:
        """Wait until no update is being handled (graceful drains, tests)."""
        await self._settled.wait()

    async def _accept(self, data: dict[str, Any], update: Update) -> bool:
        """The webhook's hand-off: record the update before its 200; False for a retry."""
        return await self.pending.record(str(update.update_id), data, self._clock())

    def _resume(self, payload: dict[str, Any], _received: datetime) -> None:
        update = Update.de_json(payload, self.application.bot)
        if update is None:
            raise ValueError("not an update")
        self._late.add(update.update_id)
        self.application.update_queue.put_nowait(update)

    async def _on_update(self, update: Update, _tg: ContextTypes.DEFAULT_TYPE) -> None:
        if self._already_seen(update.update_id):
            return
        self._in_flight += 1
        self._settled.clear()
        try:
            # (In polling mode nothing was recorded, unless the update was taken over from
            # webhook mode; marking it handled is then a no-op.)
            async with self.pending.handling(str(update.update_id)):
                await self._handle(update)  # a failure reaches _on_error
        finally:
            self._late.discard(update.update_id)
            self._in_flight -= 1
            if not self._in_flight:
                self._settled.set()

    async def _handle(self, update: Update) -> None:
        if update.my_chat_member is not None:  # the user blocked or unblocked the bot
            await self._membership(update.my_chat_member)
            return
        incoming = parse(update, self._tenant, self._codec)
        if incoming is None:
            return
        if incoming.callback_id is not None:
            await self._answer_callback(incoming.callback_id)
        if incoming.group:
            await self._group_notice(incoming)
            return
        replies = await self._replies_for(incoming)
        if update.update_id in self._late and replies:
            replies = [Reply(late_answer(incoming.inbound.text)), *replies]
        await self.sender.reply(incoming.chat_id, replies, key=f"telegram:{update.update_id}")

    async def _replies_for(self, incoming: Incoming) -> list[Reply]:
        if incoming.expired_button:
            return [Reply(EXPIRED_BUTTON, meta={"action": "expired_button"})]
        work = self._dispatch(incoming.inbound, self._context)
        return await self._with_typing(incoming.chat_id, work)

    async def _with_typing(self, chat_id: int, work: Awaitable[list[Reply]]) -> list[Reply]:
        """Show "typing…" once the work takes longer than `typing_after`, renewed every
        4.5 s (Telegram clears it after 5 s). A quick answer costs one timer, no task."""
        typing: asyncio.Task[None] | None = None

        def start() -> None:
            nonlocal typing
            typing = asyncio.ensure_future(self._keep_typing(chat_id))

        timer = asyncio.get_running_loop().call_later(self._typing_after, start)
        try:
            return await work
        finally:
            timer.cancel()
            await cancel_and_wait(typing)  # always awaited here, never left running

    async def _keep_typing(self, chat_id: int) -> None:
        while True:
            await self._typing(chat_id)
            await asyncio.sleep(4.5)

    async def _membership(self, change: ChatMemberUpdated) -> None:
        """Telegram tells us at once when a private chat blocks the bot ("kicked"), so staff
        and campaigns see it before a send fails."""
        if change.chat.type != ChatType.PRIVATE:
            return
        reachable = change.new_chat_member.status != ChatMemberStatus.BANNED
        async with self._context.session() as session:
            if await repo.set_reachable(session, CHANNEL, str(change.chat.id), reachable):
                logger.info("telegram: chat %s %s the bot", change.chat.id,
                            "unblocked" if reachable else "blocked")

    async def _typing(self, chat_id: int) -> None:
        try:
            await self.application.bot.send_chat_action(chat_id, ChatAction.TYPING)
        except TelegramError as exc:
            logger.debug("telegram: typing action failed for %s: %s", chat_id, exc.message)

    async def _answer_callback(self, callback_id: str) -> None:
        """Stop the button's spinner at once; a late answer is harmless, so never fatal."""
        try:
            await self.application.bot.answer_callback_query(callback_id)
        except TelegramError as exc:
            logger.debug("telegram: answerCallbackQuery failed: %s", exc.message)

    async def _group_notice(self, incoming: Incoming) -> None:
        if incoming.inbound.text.startswith("/") or incoming.callback_id:
            await self.sender.reply(incoming.chat_id, [Reply(GROUP_ONLY_PRIVATE)],
                                    key=f"telegram:group:{incoming.chat_id}")

    def _already_seen(self, update_id: int) -> bool:
        """Telegram may deliver an update twice (webhook retries); handle it once."""
        if update_id in self._seen:
            return True
        self._seen[update_id] = None
        if len(self._seen) > 10_000:
            self._seen.popitem(last=False)
        return False

    async def _on_error(self, update: object, tg: ContextTypes.DEFAULT_TYPE) -> None:
        """Last resort: an adapter bug is logged with the update id, never raised into PTB."""
        update_id = update.update_id if isinstance(update, Update) else "-"
        logger.error("telegram: update %s failed", update_id, exc_info=tg.error)


def _check_webhook(url: str, secret: str) -> None:
    """Refuse webhook mode that anyone could post forged updates to."""
    if not secret:
        raise ValueError("TELEGRAM_WEBHOOK_URL is set but TELEGRAM_SECRET_TOKEN is not: "
                         "refusing to accept unauthenticated webhook requests")
    if not (1 <= len(secret) <= 256) or not all(c.isascii() and (c.isalnum() or c in "_-")
                                                 for c in secret):
        raise ValueError("TELEGRAM_SECRET_TOKEN must be 1-256 characters of A-Z a-z 0-9 _ -")
    if urlsplit(url).scheme != "https":
        raise ValueError("TELEGRAM_WEBHOOK_URL must be an https URL (Telegram requires it)")


def _build(settings: Settings, *, webhook: bool, timeout: float | None,
           concurrency: int) -> Application:  # type: ignore[type-arg]
    assert settings.telegram_token is not None
    builder = (ApplicationBuilder().token(settings.telegram_token.get_secret_value())
               .job_queue(None).concurrent_updates(PerChatUpdateProcessor(concurrency))
               .request(_request(256, timeout))  # PTB's own default pool sizes
               .get_updates_request(_request(1, timeout)))
    if settings.telegram_api_base:
        base = settings.telegram_api_base.rstrip("/")
        builder = builder.base_url(f"{base}/bot").base_file_url(f"{base}/file/bot")
    if webhook:
        builder = builder.updater(None)
    return builder.build()


def _request(pool_size: int, timeout: float | None) -> AiohttpRequest:
    if timeout is None:
        return AiohttpRequest(pool_size=pool_size)
    return AiohttpRequest(pool_size=pool_size, read_timeout=timeout, write_timeout=timeout,
                          connect_timeout=timeout, pool_timeout=timeout)


def build_channel(settings: Settings, app: App) -> TelegramChannel | None:
    """The runner's builder: no token (or an empty one), no Telegram."""
    if not secret_given(settings.telegram_token):
        return None
    return TelegramChannel(settings, app.context)
