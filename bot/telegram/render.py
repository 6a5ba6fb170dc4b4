"""Our `Reply` as Telegram messages: plain text split below the size limit, buttons as an
inline keyboard, and callback data kept within Telegram's 64 bytes (bot.render does the
channel-neutral part).

Messages go out without a parse mode, so nothing a handler or a staff member writes can be
read as HTML or Markdown: no escaping to forget, no "can't parse entities" errors.
"""

from __future__ import annotations

from collections.abc import Iterable

from telegram import InlineKeyboardButton, InlineKeyboardMarkup

from bot import render
from bot.render import is_web_url
from handlers.messages import Link, Reply

TEXT_LIMIT = 4000  # Telegram allows 4096 UTF-16 code units; keep a margin
CALLBACK_LIMIT = 64  # bytes of callback_data


class CallbackCodec(render.CallbackCodec):
    """The neutral codec at Telegram's 64-byte callback_data limit."""

    def __init__(self, capacity: int = 50_000) -> None:
        super().__init__(capacity, CALLBACK_LIMIT)


def keyboard(reply: Reply, codec: CallbackCodec) -> InlineKeyboardMarkup | None:
    """One button per row (Japanese labels are long); links become URL buttons."""
    rows = [[InlineKeyboardButton(b.label, callback_data=codec.encode(b.payload))]
            for b in reply.buttons]
    rows += [[InlineKeyboardButton(link.label, url=link.url)]
             for link in reply.links if is_web_url(link.url)]
    return InlineKeyboardMarkup(rows) if rows else None


def _url_button(link: Link) -> bool:
    return is_web_url(link.url)


def parts(replies: Iterable[Reply]) -> list[Reply]:
    """Every message to send, each within Telegram's size; web links stay URL buttons, links
    Telegram would refuse as buttons are written out in the text instead."""
    return render.parts(replies, TEXT_LIMIT, _url_button)
