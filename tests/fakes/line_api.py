"""A fake LINE Messaging API (aiohttp, 127.0.0.1, ephemeral port) for end-to-end tests.

The real line-bot-sdk v3 client talks to it over HTTP (`Configuration(host=...)`). It
checks what LINE checks (bearer token, reply tokens used once, at most 5 messages a call,
5,000-character texts, 13 quick-reply items with 20-character labels and 300-character
data, X-Line-Retry-Key answered 409 when seen before), records every call with an
awaitable way to wait for calls, and can inject 429 (optionally with Retry-After) and 5xx.
It also plays LINE's side of the webhook: events signed with the channel secret.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import itertools
import json
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from tests.fakes.web import start_fake

SECRET = "fake-line-channel-secret-0123456789"
TOKEN = "fake-line-channel-access-token-ABCDEFG"
WAIT_LIMIT = 10.0  # seconds a test waits for the bot before it fails
BOT_INFO = {"userId": "Ubot0000000000000000000000000000", "basicId": "@kakaritsuke",
            "displayName": "かかりつけ医機能報告ボット", "chatMode": "bot",
            "markAsReadMode": "auto"}
REPLY, PUSH = "/v2/bot/message/reply", "/v2/bot/message/push"


@dataclass
class Call:
    path: str
    body: dict[str, Any]
    status: int
    headers: dict[str, str]
    to: str | None = None  # the user the messages went to (reply: the token's user)
    at: float = field(default_factory=time.monotonic)

    @property
    def ok(self) -> bool:
        return self.status == 200


@dataclass
class Fault:
    path: str
    status: int
    times: int
    retry_after: int | None = None
    message: str = ""


class FakeLineAPI:
    """`async with FakeLineAPI() as api:` then point the bot at `api.base_url`."""

    def __init__(self, secret: str = SECRET, token: str = TOKEN) -> None:
        self.secret, self.token = secret, token
        self.calls: list[Call] = []
        self._tokens: dict[str, str] = {}  # unused reply token -> user id
        self._retry_keys: set[str] = set()
        self._faults: list[Fault] = []
        self._hangs: dict[str, list[float]] = {}  # path -> delays of its next answers
        self._ids = itertools.count(1)
        self._tick = asyncio.Event()
        self._read: dict[str, int] = {}
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def __aenter__(self) -> FakeLineAPI:
        app = web.Application()
        app.router.add_get("/v2/bot/info", self._bot_info)
        app.router.add_post(REPLY, self._messages)
        app.router.add_post(PUSH, self._messages)
        self._runner, self.port = await start_fake(app)
        return self

    async def __aexit__(self, *_exc: object) -> None:
        if self._runner:
            await self._runner.cleanup()

    # ---- LINE's side of the webhook ----------------------------------------------------

    def event(self, user: str, kind: str, *, redelivery: bool = False, reply: bool = True,
              **extra: Any) -> dict[str, Any]:
        """One webhook event from `user`; with a fresh reply token unless `reply=False`."""
        event: dict[str, Any] = {
            "type": kind, "mode": "active", "timestamp": int(time.time() * 1000),
            "source": {"type": "user", "userId": user},
            "webhookEventId": f"01FAKE{next(self._ids):020d}",
            "deliveryContext": {"isRedelivery": redelivery}, **extra}
        if reply:
            token = f"rt{next(self._ids):030d}"
            self._tokens[token] = user
            event["replyToken"] = token
        return event

    def text_event(self, user: str, text: str) -> dict[str, Any]:
        return self.event(user, "message", message={
            "id": str(next(self._ids)), "type": "text", "text": text, "quoteToken": "q"})

    def sticker_event(self, user: str) -> dict[str, Any]:
        return self.event(user, "message", message={
            "id": str(next(self._ids)), "type": "sticker", "packageId": "446",
            "stickerId": "1988", "stickerResourceType": "STATIC", "quoteToken": "q"})

    def postback_event(self, user: str, data: str) -> dict[str, Any]:
        return self.event(user, "postback", postback={"data": data})

    def follow_event(self, user: str) -> dict[str, Any]:
        return self.event(user, "follow", follow={"isUnblocked": False})

    def unfollow_event(self, user: str) -> dict[str, Any]:
        return self.event(user, "unfollow", reply=False)

    def redelivered(self, event: dict[str, Any]) -> dict[str, Any]:
        """The same event as LINE redelivers it: same id, flagged, its reply token spent."""
        again = json.loads(json.dumps(event))
        again["deliveryContext"]["isRedelivery"] = True
        return again

    def sign(self, body: bytes) -> str:
        digest = hmac.new(self.secret.encode(), body, hashlib.sha256).digest()
        return base64.b64encode(digest).decode()

    async def post_webhook(self, url: str, events: list[dict[str, Any]] | bytes,
                           signature: str | None = "") -> int:
        """POST events as LINE does (signed, unless a `signature` is given or None: none);
        returns the HTTP status the bot answered."""
        body = events if isinstance(events, bytes) else json.dumps(
            {"destination": BOT_INFO["userId"], "events": events}).encode()
        headers = {"Content-Type": "application/json"}
        if signature is not None:
            headers["X-Line-Signature"] = signature or self.sign(body)
        async with aiohttp.ClientSession() as session, session.post(
                url, data=body, headers=headers) as response:
            return response.status

    def tap_data(self, user: str, label: str) -> str:
        """The postback data of the quick reply labelled (or displayed as) `label` under the
        latest message to `user` that has it."""
        for call in reversed(self.delivered(user)):
            for msg in reversed(call.body["messages"]):
                for item in (msg.get("quickReply") or {}).get("items", []):
                    action = item["action"]
                    if label in (action.get("label"), action.get("displayText")):
                        return str(action["data"])
        raise AssertionError(f"no quick reply {label!r} for {user}")

    # ---- faults ------------------------------------------------------------------------

    def fail(self, path: str, status: int, *, times: int = 1, retry_after: int | None = None,
             message: str = "") -> None:
        """The next `times` calls of `path` fail with `status` (429: Retry-After if given)."""
        self._faults.append(Fault(path, status, times, retry_after, message))

    def hang(self, path: str, seconds: float, *, times: int = 1) -> None:
        """The next `times` calls of `path` are carried out, and answered only after
        `seconds`: a client that gives up sooner cannot know they arrived."""
        self._hangs.setdefault(path, []).extend([seconds] * times)

    # ---- what the bot did --------------------------------------------------------------

    def calls_of(self, path: str, *, to: str | None = None,
                 ok: bool | None = None) -> list[Call]:
        return [c for c in self.calls if c.path == path and (to is None or c.to == to)
                and (ok is None or c.ok == ok)]

    def delivered(self, user: str) -> list[Call]:
        """Accepted reply and push calls to `user`, in order."""
        return [c for c in self.calls if c.ok and c.to == user]

    def texts(self, user: str) -> list[str]:
        """Texts of messages LINE delivered to `user`, in order."""
        return [m["text"] for c in self.delivered(user) for m in c.body["messages"]]

    async def wait_for(self, path: str, count: int = 1, *, to: str | None = None,
                       ok: bool | None = True) -> list[Call]:
        async with asyncio.timeout(WAIT_LIMIT):
            while len(self.calls_of(path, to=to, ok=ok)) < count:
                await self._tick.wait()
        return self.calls_of(path, to=to, ok=ok)

    def mark_read(self, user: str) -> None:
        """`next_texts` waits for calls after those delivered so far."""
        self._read[user] = len(self.delivered(user))

    async def next_texts(self, user: str) -> list[str]:
        """Wait for the next accepted call to `user`; its texts."""
        seen = self._read.get(user, 0)
        async with asyncio.timeout(WAIT_LIMIT):
            while len(self.delivered(user)) <= seen:
                await self._tick.wait()
        self._read[user] = seen + 1
        return [m["text"] for m in self.delivered(user)[seen].body["messages"]]

    # ---- the HTTP side -----------------------------------------------------------------

    def _authorized(self, request: web.Request) -> bool:
        return request.headers.get("Authorization") == f"Bearer {self.token}"

    async def _bot_info(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return _error(401, "Authentication failed. Confirm that the access token in the "
                               "authorization header is valid.")
        return web.json_response(BOT_INFO)

    async def _messages(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return _error(401, "Authentication failed.")
        body = await request.json()
        headers = dict(request.headers)
        status, answer, to = self._answer(request.path, body, headers)
        self.calls.append(Call(request.path, body, status, headers, to))
        tick, self._tick = self._tick, asyncio.Event()
        tick.set()
        if delays := self._hangs.get(request.path):
            await asyncio.sleep(delays.pop(0))
        response = web.json_response(answer, status=status)
        if status == 429 and (after := answer.pop("_retry_after", None)):
            response = web.json_response(answer, status=status,
                                         headers={"Retry-After": str(after)})
        return response

    def _answer(self, path: str, body: dict[str, Any], headers: dict[str, str],
                ) -> tuple[int, dict[str, Any], str | None]:
        to = self._tokens.get(body.get("replyToken", "")) if path == REPLY else body.get("to")
        if fault := self._take_fault(path):
            answer: dict[str, Any] = {"message": fault.message or _DEFAULT[fault.status]}
            if fault.retry_after:
                answer["_retry_after"] = fault.retry_after
            return fault.status, answer, to
        if problem := _invalid(body.get("messages")):
            return 400, {"message": problem}, to
        if path == REPLY:
            if self._tokens.pop(body.get("replyToken", ""), None) is None:
                return 400, {"message": "Invalid reply token"}, to
        else:
            key = headers.get("X-Line-Retry-Key")
            if key in self._retry_keys:
                return 409, {"message": "The retry key is already accepted"}, to
            if key:
                self._retry_keys.add(key)
        sent = [{"id": str(next(self._ids))} for _ in body["messages"]]
        return 200, {"sentMessages": sent}, to

    def _take_fault(self, path: str) -> Fault | None:
        for fault in self._faults:
            if fault.path == path and fault.times > 0:
                fault.times -= 1
                return fault
        return None


_DEFAULT = {429: "The API rate limit has been exceeded. Try again later.",
            500: "Internal server error", 502: "Bad Gateway", 400: "The request body has 1 "
            "error(s)"}


def _invalid(messages: object) -> str:
    """What LINE would refuse in `messages` ("" when nothing)."""
    if not isinstance(messages, list) or not 1 <= len(messages) <= 5:
        return "Size must be between 1 and 5"
    for msg in messages:
        text = msg.get("text", "")
        if msg.get("type") != "text" or not text.strip() or len(text) > 5000:
            return "Length must be between 1 and 5000"
        items = (msg.get("quickReply") or {}).get("items", [])
        if len(items) > 13:
            return "Size must be between 0 and 13"
        for item in items:
            action = item["action"]
            if len(action.get("label", "")) > 20 or len(action.get("data", "")) > 300 \
                    or len(action.get("displayText", "")) > 300:
                return "Length must be between 0 and 20"
    return ""


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"message": message}, status=status)

