"""Outbox rows as `Reply`s: an outgoing message may carry buttons and links in its payload.

A row's `body` is the text; `payload["buttons"]` is a list of [label, payload] pairs and
`payload["links"]` a list of [label, url] pairs. Other payload keys (escalation_id, ...) are
bookkeeping and ignored here. Channel senders render the result like any handler reply.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from db.models import Outbox
from handlers.messages import Button, Link, Reply
from scheduler import outbox


def payload_for(reply: Reply, **extra: Any) -> dict[str, Any]:
    """The outbox payload that carries a reply's buttons and links."""
    payload: dict[str, Any] = dict(extra)
    if reply.buttons:
        payload["buttons"] = [[b.label, b.payload] for b in reply.buttons]
    if reply.links:
        payload["links"] = [[link.label, link.url] for link in reply.links]
    return payload


async def defer_parts(sessions: Callable[[], AsyncSession], channel: str, recipient: str,
                      parts: list[Reply], key: str, offset: int, prefecture_code: str,
                      now: datetime, not_before: datetime) -> None:
    """Queue the parts of a reply a channel could not send at once (a rate limit, an expired
    reply token), in order and once each (`key:index`), for its outbox sender."""
    async with sessions() as session:
        for i, part in enumerate(parts, offset):
            await outbox.enqueue(session, key=f"{key}:{i}", channel=channel, recipient=recipient,
                                 kind="reply", body=part.text, prefecture_code=prefecture_code,
                                 now=now, payload=payload_for(part), not_before=not_before)


def reply_of(row: Outbox) -> Reply:
    """The message a row stands for; malformed button data is dropped, never fatal."""
    payload = row.payload or {}
    buttons = tuple(Button(str(p[0]), str(p[1])) for p in payload.get("buttons", ())
                    if _pair(p))
    links = tuple(Link(str(p[0]), str(p[1])) for p in payload.get("links", ()) if _pair(p))
    return Reply(row.body, buttons, links)


def _pair(value: object) -> bool:
    return isinstance(value, list | tuple) and len(value) == 2
