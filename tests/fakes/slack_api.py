"""A fake Slack Web API (aiohttp, 127.0.0.1, ephemeral port) for end-to-end tests.

The real slack_sdk AsyncWebClient talks to it through `base_url`. It answers the methods the
desk uses (auth.test, chat.postMessage, chat.update, chat.postEphemeral, views.open), checks
the bot token, refuses posts to unknown channels and to channels the bot is not in, records
every call with an awaitable wait, and can fail on demand: HTTP 500, `ratelimited` (429 +
Retry-After), or go away entirely (connection refused) and come back on the same port.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from dataclasses import dataclass
from typing import Any

from aiohttp import web

TOKEN = "xoxb-test-token-for-the-fake"
WAIT_LIMIT = 10.0
APP_TOKEN = "xapp-test-app-token"  # Socket Mode: apps.connections.open takes the app token
BOT_USER_ID = "U0BOT"
KNOWN = ("auth.test", "chat.postMessage", "chat.update", "chat.postEphemeral", "views.open",
         "files.getUploadURLExternal", "files.completeUploadExternal", "apps.connections.open")


@dataclass
class Call:
    method: str
    params: dict[str, Any]
    status: int

    @property
    def ok(self) -> bool:
        return self.status == 200


class FakeSlackAPI:
    """`async with FakeSlackAPI() as api:` then point the client at `api.base_url`."""

    def __init__(self, token: str = TOKEN) -> None:
        self.token = token
        self.calls: list[Call] = []
        self.messages: dict[tuple[str, str], dict[str, Any]] = {}  # (channel, ts) → message
        self.unknown_channels: set[str] = set()
        self.outside_channels: set[str] = set()  # exist, but the bot was never invited
        self._faults: list[tuple[str, int]] = []  # (status or "ratelimited", times)
        self._holds: dict[str, asyncio.Event] = {}  # method -> released when set
        self.uploads: dict[str, bytes] = {}  # file id -> bytes received at its upload URL
        self.socket_acks: list[dict[str, Any]] = []  # what the app acknowledged over Socket Mode
        self._sockets: list[web.WebSocketResponse] = []
        self._ts = itertools.count(1)
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/"

    async def __aenter__(self) -> FakeSlackAPI:
        await self.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        """Listen on an ephemeral port the first time, on the same port after a stop."""
        app = web.Application()
        app.router.add_post("/api/{method}", self._handle)
        app.router.add_post("/upload/{file_id}", self._upload)
        app.router.add_get("/socket", self._socket)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True)
        await site.start()
        if not self.port:
            self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        """Go away: further calls see connection refused until `start()`."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def fail(self, status: int | str, times: int = 1) -> None:
        """The next `times` calls fail with HTTP `status` (or "ratelimited")."""
        self._faults.append((str(status), times))

    def hold(self, method: str) -> asyncio.Event:
        """Calls of `method` wait (unanswered, unrecorded) until the returned event is set."""
        return self._holds.setdefault(method, asyncio.Event())

    def of(self, method: str) -> list[Call]:
        return [c for c in self.calls if c.method == method and c.ok]

    async def wait_for(self, method: str, count: int = 1) -> list[Call]:
        """Wait until `count` successful calls of `method` were recorded."""
        async with asyncio.timeout(WAIT_LIMIT):
            async with self._changed:
                await self._changed.wait_for(lambda: len(self.of(method)) >= count)
        return self.of(method)

    async def _handle(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        params = await _params(request)
        expected = APP_TOKEN if method == "apps.connections.open" else self.token
        if request.headers.get("Authorization") != f"Bearer {expected}":
            return await self._record(method, params, 200, {"ok": False, "error": "invalid_auth"})
        if (gate := self._holds.get(method)) is not None:
            await gate.wait()
        if self._faults:
            return await self._fault(method, params)
        if method not in KNOWN:
            return await self._record(method, params, 200,
                                      {"ok": False, "error": "unknown_method"})
        return await self._record(method, params, 200, self._answer(method, params))

    async def deliver(self, kind: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Socket Mode: push one envelope to the connected app and return its ack."""
        async with asyncio.timeout(WAIT_LIMIT):
            async with self._changed:
                await self._changed.wait_for(lambda: bool(self._sockets))
        envelope_id = f"env-{next(self._ts)}"
        await self._sockets[-1].send_json({"envelope_id": envelope_id, "type": kind,
                                           "payload": payload,
                                           "accepts_response_payload": False})
        async with asyncio.timeout(WAIT_LIMIT):
            async with self._changed:
                await self._changed.wait_for(lambda: any(
                    a.get("envelope_id") == envelope_id for a in self.socket_acks))
        return next(a for a in self.socket_acks if a.get("envelope_id") == envelope_id)

    async def _socket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        await ws.send_json({"type": "hello", "num_connections": 1,
                            "connection_info": {"app_id": "A0TEST"}})
        async with self._changed:
            self._sockets.append(ws)
            self._changed.notify_all()
        async for message in ws:
            if message.type == web.WSMsgType.TEXT:
                async with self._changed:
                    self.socket_acks.append(json.loads(message.data))
                    self._changed.notify_all()
        self._sockets.remove(ws)
        return ws

    async def _upload(self, request: web.Request) -> web.Response:
        """Step 2 of files_upload_v2: the bytes go to the URL step 1 handed out."""
        file_id = request.match_info["file_id"]
        if file_id not in self.uploads:
            return web.Response(status=404, text="unknown upload")
        self.uploads[file_id] = await request.read()
        return web.Response(status=200, text="OK - 1")

    async def _fault(self, method: str, params: dict[str, Any]) -> web.Response:
        kind, times = self._faults[0]
        self._faults[0] = (kind, times - 1)
        if times <= 1:
            self._faults.pop(0)
        if kind == "ratelimited":
            return await self._record(method, params, 429, {"ok": False, "error": "ratelimited"},
                                      headers={"Retry-After": "7"})
        return await self._record(method, params, int(kind), None)

    def _answer(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        channel = str(params.get("channel", ""))
        if method in ("chat.postMessage", "chat.update", "chat.postEphemeral") and (
                not channel or channel in self.unknown_channels):
            return {"ok": False, "error": "channel_not_found"}
        if method == "chat.postMessage" and channel in self.outside_channels:
            return {"ok": False, "error": "not_in_channel"}
        if method == "auth.test":
            return {"ok": True, "url": "https://test.slack.com/", "team": "Test Workspace",
                    "user": "kakaritsuke-bot", "team_id": "T0TEST", "user_id": BOT_USER_ID,
                    "bot_id": "B0BOT"}
        if method == "chat.postMessage":
            ts = f"1700000000.{next(self._ts):06d}"
            self.messages[(channel, ts)] = dict(params)
            return {"ok": True, "channel": channel, "ts": ts, "message": {"ts": ts}}
        if method == "chat.update":
            key = (channel, str(params.get("ts")))
            if key not in self.messages:
                return {"ok": False, "error": "message_not_found"}
            self.messages[key] = dict(params)
            return {"ok": True, "channel": channel, "ts": key[1]}
        if method == "views.open":
            if not params.get("trigger_id") or not isinstance(params.get("view"), dict):
                return {"ok": False, "error": "invalid_arguments"}
            return {"ok": True, "view": {"id": "V1", **params["view"]}}
        if method == "apps.connections.open":
            return {"ok": True, "url": f"ws://127.0.0.1:{self.port}/socket"}
        if method == "files.getUploadURLExternal":
            file_id = f"F{next(self._ts):06d}"
            self.uploads[file_id] = b""
            return {"ok": True, "file_id": file_id,
                    "upload_url": f"http://127.0.0.1:{self.port}/upload/{file_id}"}
        if method == "files.completeUploadExternal":
            files = params.get("files")
            if not isinstance(files, list) or not all(
                    isinstance(f, dict) and self.uploads.get(str(f.get("id"))) for f in files):
                return {"ok": False, "error": "file_not_found"}
            return {"ok": True, "files": [{"id": f["id"], "title": f.get("title")}
                                          for f in files]}
        return {"ok": True, "message_ts": "1700000000.999999"}

    async def _record(self, method: str, params: dict[str, Any], status: int,
                      body: dict[str, Any] | None, headers: dict[str, str] | None = None,
                      ) -> web.Response:
        # A Slack-level error (HTTP 200, ok: false) is recorded as 400 so `ok` means delivered.
        recorded = status if status != 200 else (200 if body and body.get("ok") else 400)
        async with self._changed:
            self.calls.append(Call(method, params, recorded))
            self._changed.notify_all()
        if body is None:
            return web.Response(status=status, text="<html>Internal Server Error</html>",
                                content_type="text/html")
        return web.json_response(body, status=status, headers=headers)

    def latest(self, channel: str, ts: str) -> dict[str, Any]:
        """The message as Slack would show it now (after updates)."""
        return self.messages[(channel, ts)]


async def _params(request: web.Request) -> dict[str, Any]:
    """slack_sdk sends JSON for these methods, form data or query parameters for others."""
    if request.content_type == "application/json":
        data = await request.json()
        return dict(data) if isinstance(data, dict) else {}
    form = await request.post()
    params: dict[str, Any] = {}
    for key, value in [*request.query.items(), *form.items()]:
        text = str(value)
        try:
            params[key] = json.loads(text) if text[:1] in "[{" else text
        except json.JSONDecodeError:
            params[key] = text
    return params
