"""A fake Telegram Bot API server (aiohttp, 127.0.0.1, ephemeral port) for end-to-end tests.

The real python-telegram-bot client talks to it over HTTP through `base_url`. It implements
the methods the bot uses, checks what Telegram checks (text length, 64-byte callback data),
records every call with an awaitable way to wait for calls, serves `getUpdates` from a
queue the test feeds, and can inject 429 (with `retry_after`), 403, 5xx and hangs.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from tests.fakes.web import start_fake

TOKEN = "123456:TEST-token_for-the-fake"
WAIT_LIMIT = 10.0  # seconds a test waits for the bot before it fails
BOT_USER = {"id": 123456, "is_bot": True, "first_name": "かかりつけ医機能報告ボット",
            "username": "kakaritsuke_test_bot"}
STRING_FIELDS = {"text", "secret_token", "url", "callback_query_id", "action", "parse_mode",
                 "caption", "description", "language_code", "chat_id_str"}


@dataclass
class Call:
    method: str
    params: dict[str, Any]
    status: int
    at: float = field(default_factory=time.monotonic)

    @property
    def ok(self) -> bool:
        return self.status == 200

    @property
    def chat_id(self) -> int | None:
        value = self.params.get("chat_id")
        return int(value) if value is not None else None


@dataclass
class Fault:
    method: str
    status: int
    times: int
    retry_after: int | None = None
    description: str = ""
    hang: bool = False


class FakeTelegramAPI:
    """`async with FakeTelegramAPI() as api:` then point the bot at `api.base_url`."""

    def __init__(self, token: str = TOKEN) -> None:
        self.token = token
        self.calls: list[Call] = []
        self.blocked: set[int] = set()  # chats that blocked the bot (403)
        self.unknown_chats: set[int] = set()  # chats Telegram does not know (400)
        self.webhook: dict[str, Any] | None = None
        self.sent_messages: dict[tuple[int, int], dict[str, Any]] = {}
        self._updates: list[dict[str, Any]] = []
        self._faults: list[Fault] = []
        self._update_ids = itertools.count(10_000)
        self._message_ids = itertools.count(1)
        self._callback_ids = itertools.count(1)
        self._tick = asyncio.Event()  # replaced by a fresh event on every change
        self._closing = asyncio.Event()
        self._read: dict[int, int] = {}
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def __aenter__(self) -> FakeTelegramAPI:
        app = web.Application()
        app.router.add_post("/bot{token}/{method}", self._handle)
        self._runner, self.port = await start_fake(app)
        return self

    async def __aexit__(self, *_exc: object) -> None:
        self._closing.set()
        self._notify()
        if self._runner:
            await self._runner.cleanup()

    # ---- feeding updates -------------------------------------------------------------

    def user(self, chat_id: int, name: str = "山田") -> dict[str, Any]:
        return {"id": chat_id, "is_bot": False, "first_name": name, "language_code": "ja"}

    def text_update(self, chat_id: int, text: str, *, chat_type: str = "private",
                    name: str = "山田") -> dict[str, Any]:
        chat = {"id": chat_id, "type": chat_type, "first_name": name}
        if chat_type != "private":
            chat = {"id": chat_id, "type": chat_type, "title": "医療機関グループ"}
        message = {"message_id": next(self._message_ids), "date": int(time.time()),
                   "chat": chat, "from": self.user(abs(chat_id), name), "text": text}
        if text.startswith("/"):
            message["entities"] = [{"type": "bot_command", "offset": 0,
                                    "length": len(text.split()[0])}]
        return {"update_id": next(self._update_ids), "message": message}

    def callback_update(self, chat_id: int, data: str,
                        message: dict[str, Any] | None = None) -> dict[str, Any]:
        """A tap on a button of `message` (by default the latest bot message carrying it)."""
        message = message or self.message_with_button(chat_id, data)
        return {"update_id": next(self._update_ids), "callback_query": {
            "id": str(next(self._callback_ids)), "from": self.user(chat_id),
            "chat_instance": f"ci{chat_id}", "data": data, "message": message}}

    def membership_update(self, chat_id: int, status: str) -> dict[str, Any]:
        """What Telegram sends when a user blocks ("kicked") or unblocks ("member") the bot."""
        def member(state: str) -> dict[str, Any]:
            extra = {"until_date": 0} if state == "kicked" else {}
            return {"user": BOT_USER, "status": state, **extra}

        old = "member" if status == "kicked" else "kicked"
        return {"update_id": next(self._update_ids), "my_chat_member": {
            "chat": {"id": chat_id, "type": "private", "first_name": "山田"},
            "from": self.user(chat_id), "date": int(time.time()),
            "old_chat_member": member(old), "new_chat_member": member(status)}}

    def send_text(self, chat_id: int, text: str, **kwargs: Any) -> int:
        return self.feed(self.text_update(chat_id, text, **kwargs))

    def tap(self, chat_id: int, label: str) -> int:
        """Tap the button labelled `label` on the latest bot message that has it."""
        for message in reversed(list(self._messages_to(chat_id))):
            for row in message.get("reply_markup", {}).get("inline_keyboard", []):
                for button in row:
                    if button["text"] == label and "callback_data" in button:
                        return self.feed(self.callback_update(chat_id, button["callback_data"],
                                                              message))
        raise AssertionError(f"no button {label!r} in chat {chat_id}")

    def feed(self, update: dict[str, Any]) -> int:
        self._updates.append(update)
        self._notify()
        return int(update["update_id"])

    def message_with_button(self, chat_id: int, data: str) -> dict[str, Any]:
        for message in reversed(list(self._messages_to(chat_id))):
            for row in message.get("reply_markup", {}).get("inline_keyboard", []):
                if any(b.get("callback_data") == data for b in row):
                    return message
        raise AssertionError(f"no button with data {data!r} in chat {chat_id}")

    async def post_webhook(self, url: str, update: dict[str, Any] | bytes,
                           secret: str | None) -> int:
        """POST an update the way Telegram does; returns the HTTP status the bot answered."""
        headers = {"Content-Type": "application/json"}
        if secret is not None:
            headers["X-Telegram-Bot-Api-Secret-Token"] = secret
        body = update if isinstance(update, bytes) else json.dumps(update).encode()
        async with aiohttp.ClientSession() as session, session.post(
                url, data=body, headers=headers) as response:
            return response.status

    # ---- faults ------------------------------------------------------------------------

    def fail(self, method: str, status: int, *, times: int = 1, retry_after: int | None = None,
             description: str = "") -> None:
        """The next `times` calls of `method` fail with `status` (429 with retry_after)."""
        self._faults.append(Fault(method, status, times, retry_after, description))

    def hang(self, method: str, *, times: int = 1) -> None:
        """The next `times` calls never get an answer: the client times out."""
        self._faults.append(Fault(method, 0, times, hang=True))

    # ---- what the bot did --------------------------------------------------------------

    def calls_of(self, method: str, *, chat_id: int | None = None,
                 ok: bool | None = None) -> list[Call]:
        return [c for c in self.calls if c.method == method
                and (chat_id is None or c.chat_id == chat_id) and (ok is None or c.ok == ok)]

    def texts(self, chat_id: int) -> list[str]:
        """Texts of messages the bot delivered to a chat, in order."""
        return [c.params["text"] for c in self.calls_of("sendMessage", chat_id=chat_id, ok=True)]

    async def wait_for(self, method: str, count: int = 1, *, chat_id: int | None = None,
                       ok: bool | None = True) -> list[Call]:
        """Wait (at most WAIT_LIMIT seconds) until at least `count` matching calls were made;
        returns all of them."""
        def enough() -> bool:
            return len(self.calls_of(method, chat_id=chat_id, ok=ok)) >= count

        async with asyncio.timeout(WAIT_LIMIT):
            await self._until(enough)
        return self.calls_of(method, chat_id=chat_id, ok=ok)

    async def next_reply(self, chat_id: int) -> str:
        """Wait for the next message delivered to `chat_id` after those already read."""
        seen = self._read.get(chat_id, 0)
        calls = await self.wait_for("sendMessage", seen + 1, chat_id=chat_id)
        self._read[chat_id] = seen + 1
        return str(calls[seen].params["text"])

    def _messages_to(self, chat_id: int) -> Any:
        return (m for (chat, _), m in self.sent_messages.items() if chat == chat_id)

    # ---- the HTTP side -----------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        if request.match_info["token"] != self.token:
            return _error(401, "Unauthorized")
        params = await _params(request)
        fault = self._take_fault(method)
        if fault and fault.hang:
            await self._closing.wait()
            return _error(504, "Gateway Timeout")
        if method == "getUpdates" and not fault:
            return web.json_response({"ok": True, "result": await self._get_updates(params)})
        status, body = (_fault_response(fault) if fault else self._answer(method, params))
        self.calls.append(Call(method, params, status))
        self._notify()
        return web.json_response(body, status=status)

    def _answer(self, method: str, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        handler: Callable[[dict[str, Any]], tuple[int, dict[str, Any]]] | None = getattr(
            self, f"_m_{method}", None)
        if handler is None:
            return 404, {"ok": False, "error_code": 404, "description": "Not Found"}
        return handler(params)

    def _m_getMe(self, _p: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        return 200, {"ok": True, "result": BOT_USER}

    def _m_setMyCommands(self, p: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        return _ok(True)

    def _m_setWebhook(self, p: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        self.webhook = p
        return _ok(True)

    def _m_deleteWebhook(self, _p: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        self.webhook = None
        return _ok(True)

    def _m_sendChatAction(self, _p: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        return _ok(True)

    def _m_answerCallbackQuery(self, _p: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        return _ok(True)

    def _m_sendMessage(self, p: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        chat_id, text = int(p["chat_id"]), str(p.get("text", ""))
        if chat_id in self.blocked:
            return _err(403, "Forbidden: bot was blocked by the user")
        if chat_id in self.unknown_chats:
            return _err(400, "Bad Request: chat not found")
        if not text.strip():
            return _err(400, "Bad Request: message text is empty")
        if len(text.encode("utf-16-le")) // 2 > 4096:
            return _err(400, "Bad Request: message is too long")
        markup = p.get("reply_markup")
        for row in (markup or {}).get("inline_keyboard", []):
            for button in row:
                if len(button.get("callback_data", "").encode()) > 64:
                    return _err(400, "Bad Request: BUTTON_DATA_INVALID")
        message_id = next(self._message_ids)
        message: dict[str, Any] = {
            "message_id": message_id, "date": int(time.time()),
            "chat": {"id": chat_id, "type": "private", "first_name": "山田"},
            "from": BOT_USER, "text": text}
        if markup:
            message["reply_markup"] = markup
        self.sent_messages[(chat_id, message_id)] = message
        return _ok(message)

    async def _get_updates(self, p: dict[str, Any]) -> list[dict[str, Any]]:
        offset, limit = int(p.get("offset") or 0), int(p.get("limit") or 100)
        self._updates = [u for u in self._updates if u["update_id"] >= offset]
        timeout = float(p.get("timeout") or 0)
        if not self._updates and timeout > 0:
            try:
                async with asyncio.timeout(timeout):  # a long poll, as Telegram does
                    await self._until(lambda: bool(self._updates) or self._closing.is_set())
            except TimeoutError:
                pass
        self.calls.append(Call("getUpdates", p, 200))
        return self._updates[:limit]

    def _take_fault(self, method: str) -> Fault | None:
        for fault in self._faults:
            if fault.method == method and fault.times > 0:
                fault.times -= 1
                return fault
        return None

    def _notify(self) -> None:
        tick, self._tick = self._tick, asyncio.Event()
        tick.set()

    async def _until(self, predicate: Callable[[], bool]) -> None:
        """Wait, without polling, until `predicate` holds after some change."""
        while not predicate():
            await self._tick.wait()


def _ok(result: Any) -> tuple[int, dict[str, Any]]:
    return 200, {"ok": True, "result": result}


def _err(status: int, description: str) -> tuple[int, dict[str, Any]]:
    return status, {"ok": False, "error_code": status, "description": description}


def _error(status: int, description: str) -> web.Response:
    return web.json_response(_err(status, description)[1], status=status)


def _fault_response(fault: Fault) -> tuple[int, dict[str, Any]]:
    if fault.status == 429:
        body = _err(429, fault.description or
                    f"Too Many Requests: retry after {fault.retry_after}")[1]
        body["parameters"] = {"retry_after": fault.retry_after or 1}
        return 429, body
    default = {403: "Forbidden: bot was blocked by the user", 400: "Bad Request"}
    return _err(fault.status, fault.description or default.get(fault.status, "Bad Gateway"))


async def _params(request: web.Request) -> dict[str, Any]:
    """PTB posts form fields whose non-string values are JSON-encoded; decode them back."""
    if request.content_type == "application/json":
        return dict(await request.json())
    form = await request.post()
    params: dict[str, Any] = {}
    for key, value in form.items():
        if not isinstance(value, str):
            continue  # file uploads: not used by this bot
        if key in STRING_FIELDS:
            params[key] = value
            continue
        try:
            params[key] = json.loads(value)
        except ValueError:
            params[key] = value
    return params
