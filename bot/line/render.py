"""Our `Reply` as LINE text messages: text split below LINE's 5,000 characters, buttons as
quick replies (LINE's own way to offer choices under the latest message), links written
into the text (LINE makes URLs in text tappable), batches of at most 5 messages a call.

Quick-reply labels are 20 characters at most, so long labels are shortened; the full label
goes along as the postback's displayText, which LINE shows in the chat as what the user
said. Postback data is at most 300 characters: longer payloads travel as tokens
(bot.render.CallbackCodec).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Iterable

from linebot.v3.messaging import PostbackAction, QuickReply, QuickReplyItem, TextMessage

from bot import render
from handlers.messages import Button, Reply

logger = logging.getLogger(__name__)

TEXT_LIMIT = 5000  # characters of one text message
MESSAGES_PER_CALL = 5  # messages in one reply or push request
QUICK_REPLY_LIMIT = 13  # items under one message
LABEL_LIMIT = 20  # characters of a quick-reply label
DATA_LIMIT = 300  # postback data (the codec counts bytes: always within the characters)
DISPLAY_TEXT_LIMIT = 300


def short_label(label: str, limit: int = LABEL_LIMIT) -> str:
    """A label within `limit` characters: question marks and spaces that end it go first,
    then the rest is cut with …, so 「報告の対象になる医療機関はどこまでですか？」 stays
    recognisable."""
    text = " ".join(label.split())
    if len(text) <= limit:
        return text
    text = text.rstrip("？?。 ")
    return text if len(text) <= limit else text[: limit - 1] + "…"


class Postbacks:
    """Button payloads as postback data, and back: the payload (None once its token is
    forgotten) and the label that was tapped, so the conversation log reads like the chat.
    LINE's postback event carries only the data, so labels are remembered here (bounded)."""

    def __init__(self, capacity: int = 50_000) -> None:
        self._codec = render.CallbackCodec(capacity, DATA_LIMIT)
        self._labels: OrderedDict[str, str] = OrderedDict()
        self._capacity = capacity

    def encode(self, button: Button) -> str:
        data = self._codec.encode(button.payload)
        self._labels[data] = button.label
        self._labels.move_to_end(data)
        while len(self._labels) > self._capacity:
            self._labels.popitem(last=False)
        return data

    def decode(self, data: str) -> tuple[str | None, str]:
        return self._codec.decode(data), self._labels.get(data, "")


def parts(replies: Iterable[Reply]) -> list[Reply]:
    """Every message to send, each within LINE's size; buttons stay with a reply's last part,
    links are written into its text."""
    return render.parts(replies, TEXT_LIMIT)


def message(part: Reply, postbacks: Postbacks) -> TextMessage:
    """One part as a LINE text message, its buttons as quick replies."""
    buttons = part.buttons
    if len(buttons) > QUICK_REPLY_LIMIT:
        logger.warning("line: a reply has %d buttons; LINE shows %d", len(buttons),
                       QUICK_REPLY_LIMIT)
        buttons = buttons[:QUICK_REPLY_LIMIT]
    items = [QuickReplyItem(action=PostbackAction(
        label=short_label(b.label), data=postbacks.encode(b),
        display_text=b.label[:DISPLAY_TEXT_LIMIT])) for b in buttons]
    return TextMessage(text=part.text, quick_reply=QuickReply(items=items) if items else None)


def batches(messages: list[TextMessage]) -> list[list[TextMessage]]:
    """Messages in groups of at most MESSAGES_PER_CALL, in order."""
    return [messages[i:i + MESSAGES_PER_CALL]
            for i in range(0, len(messages), MESSAGES_PER_CALL)]
