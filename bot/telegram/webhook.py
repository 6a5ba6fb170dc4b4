"""The webhook endpoint on our own web server (Starlette), for several workers or a proxy.

Telegram sends the secret we registered with `setWebhook` in a header; anything without it
is refused before the body is even read, so a forged update never reaches the handlers.
"""

from __future__ import annotations

import hmac
import json
import logging

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from telegram import Update
from telegram.ext import Application

from bot.web import limited_body

logger = logging.getLogger(__name__)

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"


def webhook_route(path: str, secret: str, application: Application) -> Route:  # type: ignore[type-arg]
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
        update = _parse(body, application)
        if update is None:
            return Response(status_code=400)
        await application.update_queue.put(update)
        return Response(status_code=200)

    return Route(path, receive, methods=["POST"], name="telegram-webhook")


def _parse(body: bytes, application: Application) -> Update | None:  # type: ignore[type-arg]
    try:
        data = json.loads(body)
        if not isinstance(data, dict) or not isinstance(data.get("update_id"), int):
            raise ValueError("not an update")
        return Update.de_json(data, application.bot)
    except Exception as exc:  # any malformed body: 400, never a crash
        logger.warning("webhook request refused: malformed update (%s)", type(exc).__name__)
        return None
