"""Concurrent across chats, in order within a chat.

PTB's own concurrent mode may run two messages of one user at the same time, and a wizard
answer could then overtake the question before it. Here each chat has a lock (FIFO), so a
user's updates run one after another while different users never wait for each other.

A message waits for its chat's turn *before* it takes one of the `max_concurrent_updates`
working slots: a clerk who sends four messages in a row holds one slot, not four, so
other chats keep the slots busy. PTB's own semaphore is set far above that so it never
caps the work; it would otherwise count messages that are only waiting for their chat.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

from telegram import Update
from telegram.ext import BaseUpdateProcessor

WAITING_PER_SLOT = 64  # PTB's semaphore: messages waiting for their chat, per working slot


class PerChatUpdateProcessor(BaseUpdateProcessor):
    def __init__(self, max_concurrent_updates: int = 16) -> None:
        super().__init__(max_concurrent_updates * WAITING_PER_SLOT)
        self._slots = asyncio.BoundedSemaphore(max_concurrent_updates)
        self._locks: dict[int, asyncio.Lock] = {}
        self._users: dict[int, int] = {}

    async def do_process_update(self, update: object, coroutine: Awaitable[Any]) -> None:
        key = _chat_key(update)
        if key is None:
            async with self._slots:
                await coroutine
            return
        lock = self._locks.setdefault(key, asyncio.Lock())
        self._users[key] = self._users.get(key, 0) + 1
        try:
            async with lock, self._slots:
                await coroutine
        finally:
            self._users[key] -= 1
            if not self._users[key]:  # forget idle chats: memory stays bounded
                del self._users[key], self._locks[key]

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
