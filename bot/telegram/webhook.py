"""The webhook endpoint on our own web server (Starlette), for several workers or a proxy.

Telegram sends the secret we registered with `setWebhook` in a header; anything without it
is refused before the body is even read, so a forged update never reaches the handlers. A
real one is recorded (`accept`, bot.pending) before its 200: Telegram never sends it again,
so a process that stops before handling it leaves it for another; a retry of one already
recorded is answered 200 and dropped.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from telegram import Update
from telegram.ext import Application

from bot.web import limited_body

logger = logging.getLogger(__name__)

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"

Accept = Callable[[dict[str, Any], Update], Awaitable[bool]]  # True: new, to be handled


def webhook_route(path: str, secret: str, application: Application,  # type: ignore[type-arg]
                  accept: Accept) -> Route:
    expected = secret.encode()

    async def receive(request: Request) -> Response:
        given = request.headers.get(SECRET_HEADER, "").encode("latin-1")
        if not hmac.compare_digest(given, expected):
            logger.warning("webhook request refused: bad or missing secret token (from %s)",
                           request.client.host if request.client else "?")
            return Response(status_code=403)
        body = await limited_body(request)
        if isinstance(body, Response):
            return body
        parsed = _parse(body, application)
        if parsed is None:
            return Response(status_code=400)
        if await accept(*parsed):
            await application.update_queue.put(parsed[1])
        return Response(status_code=200)

    return Route(path, receive, methods=["POST"], name="telegram-webhook")


def _parse(body: bytes, application: Application,  # type: ignore[type-arg]
           ) -> tuple[dict[str, Any], Update] | None:
    try:
        data = json.loads(body)
        if not isinstance(data, dict) or not isinstance(data.get("update_id"), int):
            raise ValueError("not an update")
        update = Update.de_json(data, application.bot)
        if update is None:
            raise ValueError("not an update")
        return data, update
    except Exception as exc:  # any malformed body: 400, never a crash
        logger.warning("webhook request refused: malformed update (%s)", type(exc).__name__)
        return None
