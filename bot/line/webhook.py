"""The LINE webhook endpoint on our own web server (Starlette).

Every request is verified with the channel secret (X-Line-Signature, HMAC-SHA256 of the
body) before its body is read as JSON: a forged or unsigned request gets 400 and reaches
nothing. A signed body that is malformed is refused with one log line that says what was
wrong; one malformed event does not lose the others of its request.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable

from linebot.v3.webhook import SignatureValidator
from linebot.v3.webhooks import Event
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bot.web import limited_body

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Line-Signature"

Accept = Callable[[list[Event]], Awaitable[None]]


def webhook_route(path: str, channel_secret: str, accept: Accept) -> Route:
    validator = SignatureValidator(channel_secret)

    async def receive(request: Request) -> Response:
        client = request.client.host if request.client else "?"
        body = await limited_body(request)
        if isinstance(body, Response):
            return body
        signature = request.headers.get(SIGNATURE_HEADER, "")
        text = _text(body)
        if not signature or text is None or not validator.validate(text, signature):
            logger.warning("line webhook refused: bad or missing %s (from %s)",
                           SIGNATURE_HEADER, client)
            return Response(status_code=400)
        events = parse_events(text)
        if events is None:
            return Response(status_code=400)
        await accept(events)  # records the events; handling goes on after the 200
        return Response(status_code=200)

    return Route(path, receive, methods=["POST"], name="line-webhook")


def _text(body: bytes) -> str | None:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        return None


def parse_events(text: str) -> list[Event] | None:
    """The events of a signed body; None (logged) when the body is not a webhook at all.
    Event types this SDK does not know, or malformed events, are logged and left out."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        logger.warning("line webhook refused: body is not JSON (%s)", exc)
        return None
    raw = data.get("events") if isinstance(data, dict) else None
    if not isinstance(raw, list):
        logger.warning("line webhook refused: no \"events\" list in the body")
        return None
    events: list[Event] = []
    for index, item in enumerate(raw):
        if not isinstance(item, dict):
            logger.warning("line webhook: event %d left out: not an object", index)
            continue
        kind = item.get("type")
        try:
            events.append(Event.from_dict(item))
        except (ValueError, TypeError, AttributeError) as exc:
            first = str(exc).splitlines()[0][:200]
            logger.warning("line webhook: event %d (type %r) left out: %s", index, kind, first)
    return events
