"""Our `Reply` as Telegram messages: plain text split below the size limit, buttons as an
inline keyboard, and callback data kept within Telegram's 64 bytes.

Messages go out without a parse mode, so nothing a handler or a staff member writes can be
read as HTML or Markdown: no escaping to forget, no "can't parse entities" errors.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections import OrderedDict
from collections.abc import Iterable
from urllib.parse import urlsplit

from telegram import InlineKeyboardButton, InlineKeyboardMarkup

from handlers.messages import Reply

TEXT_LIMIT = 4000  # Telegram allows 4096 UTF-16 code units; keep a margin
CALLBACK_LIMIT = 64  # bytes of callback_data
TOKEN_PREFIX = "~"  # marks a callback token standing in for a longer payload
EMPTY_TEXT = "以下からお選びください。"

_SENTENCE_END = re.compile(r"(?<=[。！？!?\n])")


def utf16_len(text: str) -> int:
    """Length as Telegram counts it (an emoji outside the BMP counts twice)."""
    return len(text.encode("utf-16-le")) // 2


def split_text(text: str, limit: int = TEXT_LIMIT) -> list[str]:
    """Cut a long text into messages at sentence ends (。！？ or a line break); a single
    sentence longer than the limit is the only thing ever cut in the middle."""
    if utf16_len(text) <= limit:
        return [text] if text.strip() else [EMPTY_TEXT]
    chunks: list[str] = []
    current = ""
    for sentence in (s for s in _SENTENCE_END.split(text) if s):
        if utf16_len(current + sentence) <= limit:
            current += sentence
            continue
        if current.strip():
            chunks.append(current.rstrip())
        current = sentence.lstrip("\n")
        while utf16_len(current) > limit:
            head = _cut(current, limit)
            chunks.append(head)
            current = current[len(head):]
    if current.strip():
        chunks.append(current.rstrip())
    return chunks


def _cut(text: str, limit: int) -> str:
    """The longest prefix within `limit` UTF-16 units, never halving a character."""
    size = 0
    for i, char in enumerate(text):
        size += 2 if ord(char) > 0xFFFF else 1
        if size > limit:
            return text[:i]
    return text


class CallbackCodec:
    """Payloads longer than 64 bytes travel as a short stable token (a hash prefix).

    The token table lives in memory and is bounded: a button older than the table (or from
    before a restart) decodes to None and the user is asked to start again, politely.
    """

    def __init__(self, capacity: int = 50_000) -> None:
        self._tokens: OrderedDict[str, str] = OrderedDict()
        self._capacity = capacity

    def encode(self, payload: str) -> str:
        if len(payload.encode()) <= CALLBACK_LIMIT and not payload.startswith(TOKEN_PREFIX):
            return payload
        digest = hashlib.sha256(payload.encode()).digest()
        token = TOKEN_PREFIX + base64.urlsafe_b64encode(digest).decode()[:24]
        self._tokens[token] = payload
        self._tokens.move_to_end(token)
        while len(self._tokens) > self._capacity:
            self._tokens.popitem(last=False)
        return token

    def decode(self, data: str) -> str | None:
        """The payload behind callback data; None for a token this process no longer knows."""
        if not data.startswith(TOKEN_PREFIX):
            return data
        return self._tokens.get(data)


def keyboard(reply: Reply, codec: CallbackCodec) -> InlineKeyboardMarkup | None:
    """One button per row (Japanese labels are long); links become URL buttons."""
    rows = [[InlineKeyboardButton(b.label, callback_data=codec.encode(b.payload))]
            for b in reply.buttons]
    rows += [[InlineKeyboardButton(link.label, url=link.url)]
             for link in reply.links if _is_web_url(link.url)]
    return InlineKeyboardMarkup(rows) if rows else None


def _is_web_url(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def _text_with_plain_links(reply: Reply) -> str:
    """Links Telegram would refuse as buttons are written out in the text instead."""
    extra = [f"{link.label}: {link.url}" for link in reply.links if not _is_web_url(link.url)]
    return "\n".join([reply.text, *extra]) if extra else reply.text


def parts(replies: Iterable[Reply]) -> list[Reply]:
    """Every message to send, in order, each within the size limit; a reply's buttons and
    links stay with its last part."""
    out: list[Reply] = []
    for reply in replies:
        texts = split_text(_text_with_plain_links(reply))
        out += [Reply(text) for text in texts[:-1]]
        out.append(Reply(texts[-1], reply.buttons,
                         tuple(link for link in reply.links if _is_web_url(link.url))))
    return out
