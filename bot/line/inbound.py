"""A LINE webhook event as our `Inbound`: decided once here, never again downstream."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from linebot.v3.webhooks import (
    Event,
    FollowEvent,
    JoinEvent,
    MessageEvent,
    PostbackEvent,
    TextMessageContent,
    UnfollowEvent,
    UserSource,
)

from bot.line.render import Postbacks
from handlers.messages import Inbound

CHANNEL = "line"
START = "/start"  # a new friend is greeted as Telegram's /start is

Kind = Literal["turn", "unfollow", "group"]


@dataclass(frozen=True)
class Incoming:
    """What the adapter needs besides the `Inbound`: whom to answer and with which token."""

    kind: Kind
    user_id: str  # LINE user id (U...), or the group/room id for kind "group"
    inbound: Inbound | None = None
    reply_token: str | None = None
    expired_button: bool = False  # a tapped token this process no longer knows


def parse(event: Event, tenant: str, postbacks: Postbacks) -> Incoming | None:
    """The user's action, or None for events the bot ignores (standby mode, unsend, ...)."""
    if event.mode != "active":  # another channel of a module has the chat
        return None
    source = event.source
    if isinstance(event, JoinEvent):  # added to a group or room
        group = getattr(source, "group_id", None) or getattr(source, "room_id", None)
        return Incoming("group", str(group), reply_token=event.reply_token) if group else None
    if not isinstance(source, UserSource) or not source.user_id:
        return None  # messages in groups: institution data must not be shown there
    user = source.user_id
    if isinstance(event, UnfollowEvent):
        return Incoming("unfollow", user)
    if isinstance(event, FollowEvent):
        return _turn(user, event.reply_token, START, tenant)
    if isinstance(event, MessageEvent):
        content = event.message
        text = content.text if isinstance(content, TextMessageContent) else ""
        return _turn(user, event.reply_token, text, tenant)  # "": asked for text (dispatch)
    if isinstance(event, PostbackEvent):
        payload, label = postbacks.decode(event.postback.data)
        inbound = Inbound(CHANNEL, user, text=label, payload=payload or "", tenant=tenant)
        return Incoming("turn", user, inbound, event.reply_token, expired_button=payload is None)
    return None


def _turn(user: str, reply_token: str | None, text: str, tenant: str) -> Incoming:
    return Incoming("turn", user, Inbound(CHANNEL, user, text=text, tenant=tenant), reply_token)
