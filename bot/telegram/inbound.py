"""A Telegram update as our `Inbound`: decided once here, never again downstream."""

from __future__ import annotations

from dataclasses import dataclass

from telegram import CallbackQuery, Message, Update
from telegram.constants import ChatType

from bot.telegram.render import CallbackCodec
from handlers.messages import Inbound

CHANNEL = "telegram"


@dataclass(frozen=True)
class Incoming:
    """What the adapter needs besides the `Inbound`: where to answer and what to ack."""

    inbound: Inbound
    chat_id: int
    callback_id: str | None = None
    expired_button: bool = False  # a tapped token this process no longer knows
    group: bool = False  # not a one-to-one chat: institution data must not be shown there


def parse(update: Update, tenant: str, codec: CallbackCodec) -> Incoming | None:
    """The user's action, or None for updates the bot ignores (edits, channel posts, bots)."""
    if update.callback_query is not None:
        return _from_callback(update.callback_query, tenant, codec)
    message = update.message
    if message is None or message.from_user is None or message.from_user.is_bot:
        return None
    text = message.text or message.caption or ""
    inbound = Inbound(CHANNEL, str(message.chat.id), text=text, tenant=tenant,
                      display_name=message.from_user.full_name)
    return Incoming(inbound, message.chat.id, group=message.chat.type != ChatType.PRIVATE)


def _from_callback(query: CallbackQuery, tenant: str, codec: CallbackCodec) -> Incoming | None:
    if query.from_user.is_bot or query.data is None:
        return None
    message = query.message
    chat_id = message.chat.id if message is not None else query.from_user.id
    payload = codec.decode(query.data)
    label = _button_label(message, query.data) if isinstance(message, Message) else ""
    inbound = Inbound(CHANNEL, str(chat_id), text=label, payload=payload or "", tenant=tenant,
                      display_name=query.from_user.full_name)
    group = message is not None and message.chat.type != ChatType.PRIVATE
    return Incoming(inbound, chat_id, callback_id=query.id, expired_button=payload is None,
                    group=group)


def _button_label(message: Message, data: str) -> str:
    """The label of the tapped button, so the conversation log reads like the chat."""
    markup = message.reply_markup
    for row in markup.inline_keyboard if markup else ():
        for button in row:
            if button.callback_data == data:
                return button.text
    return ""
