"""PTB's update processor on our per-chat gate (bot.ordering): concurrent across chats, in
order within a chat.

PTB's own concurrent mode may run two messages of one user at the same time. PTB's own
semaphore is set far above our working slots so it never caps the work; it would otherwise
count messages that are only waiting for their chat.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

from telegram import Update
from telegram.ext import BaseUpdateProcessor

from bot.ordering import PerKeyGate

WAITING_PER_SLOT = 64  # PTB's semaphore: messages waiting for their chat, per working slot


class PerChatUpdateProcessor(BaseUpdateProcessor):
    def __init__(self, max_concurrent_updates: int = 16) -> None:
        super().__init__(max_concurrent_updates * WAITING_PER_SLOT)
        self._gate = PerKeyGate(max_concurrent_updates)

    async def do_process_update(self, update: object, coroutine: Awaitable[Any]) -> None:
        async with self._gate.turn(_chat_key(update)):
            await coroutine

    async def initialize(self) -> None:
        """Nothing to allocate."""

    async def shutdown(self) -> None:
        """Nothing to release; PTB waits for running updates itself."""


def _chat_key(update: object) -> int | None:
    if not isinstance(update, Update):
        return None
    chat = update.effective_chat
    if chat is not None:
        return chat.id
    user = update.effective_user
    return user.id if user is not None else None
