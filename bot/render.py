"""Channel-neutral rendering shared by the chat adapters (Telegram, LINE): sentence-safe
splitting, button payloads kept within a platform's limit, links a platform cannot show
as buttons written into the text, and the adapter-level texts users see.

No chat SDK is imported here, so every adapter can use it.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections import OrderedDict
from collections.abc import Callable, Iterable
from urllib.parse import urlsplit

from handlers.messages import Link, Reply
from handlers.texts import shorten

TOKEN_PREFIX = "~"  # marks a callback token standing in for a longer payload
EMPTY_TEXT = "以下からお選びください。"
EXPIRED_BUTTON = ("このボタンは有効期限が切れました。お手数ですが、もう一度ご質問いただくか、"
                  "メニューから操作をやり直してください。")
GROUP_ONLY_PRIVATE = ("このボットは、個別のチャット（1対1）でご利用ください。"
                      "グループでは医療機関の情報をお知らせできません。")


def late_answer(question: str) -> str:
    """Before an answer that comes long after the question (its process had stopped)."""
    quoted = question.strip() and not question.startswith("/")  # not 「/start」
    asked = f"「{shorten(question, 30)}」への" if quoted else ""
    return f"{asked}お返事が遅くなり、申し訳ありません。"


_SENTENCE_END = re.compile(r"(?<=[。！？!?\n])")


def utf16_len(text: str) -> int:
    """Length in UTF-16 code units (an emoji outside the BMP counts twice), as Telegram and
    LINE count their text limits."""
    return len(text.encode("utf-16-le")) // 2


def split_text(text: str, limit: int) -> list[str]:
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


def is_web_url(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def parts(replies: Iterable[Reply], limit: int,
          as_button: Callable[[Link], bool] = lambda _link: False) -> list[Reply]:
    """Every message to send, in order, each within `limit`; a reply's buttons and the links
    the platform shows as buttons (`as_button`) stay with its last part, other links are
    written out at the end of its text."""
    out: list[Reply] = []
    for reply in replies:
        extra = [f"{link.label}: {link.url}" for link in reply.links if not as_button(link)]
        texts = split_text("\n".join([reply.text, *extra]) if extra else reply.text, limit)
        out += [Reply(text) for text in texts[:-1]]
        out.append(Reply(texts[-1], reply.buttons,
                         tuple(link for link in reply.links if as_button(link))))
    return out


class CallbackCodec:
    """Payloads longer than a platform's button-data limit (`limit` bytes) travel as a short
    stable token (a hash prefix).

    The token table lives in memory and is bounded: a button older than the table (or from
    before a restart) decodes to None and the user is asked to start again, politely.
    """

    def __init__(self, capacity: int = 50_000, limit: int = 64) -> None:
        self._tokens: OrderedDict[str, str] = OrderedDict()
        self._capacity, self._limit = capacity, limit

    def encode(self, payload: str) -> str:
        if len(payload.encode()) <= self._limit and not payload.startswith(TOKEN_PREFIX):
            return payload
        digest = hashlib.sha256(payload.encode()).digest()
        token = TOKEN_PREFIX + base64.urlsafe_b64encode(digest).decode()[:24]
        self._tokens[token] = payload
        self._tokens.move_to_end(token)
        while len(self._tokens) > self._capacity:
            self._tokens.popitem(last=False)
        return token

    def decode(self, data: str) -> str | None:
        """The payload behind button data; None for a token this process no longer knows."""
        if not data.startswith(TOKEN_PREFIX):
            return data
        return self._tokens.get(data)
