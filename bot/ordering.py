"""Concurrent across chats, in order within a chat: shared by the chat adapters.

Two messages of one user must not run at the same time (a wizard answer could overtake the
question before it), while different users never wait for each other. Each key has a FIFO
lock, and a message waits for its key's turn *before* it takes one of the working slots:
a clerk who sends four messages in a row holds one slot, not four.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Hashable
from contextlib import asynccontextmanager


class PerKeyGate:
    """`async with gate.turn(key):` runs the block when the key's earlier blocks are done
    and a working slot is free; key None only needs a slot."""

    def __init__(self, slots: int = 16) -> None:
        self._slots = asyncio.BoundedSemaphore(slots)
        self._locks: dict[Hashable, asyncio.Lock] = {}
        self._users: dict[Hashable, int] = {}

    @asynccontextmanager
    async def turn(self, key: Hashable | None) -> AsyncIterator[None]:
        if key is None:
            async with self._slots:
                yield
            return
        lock = self._locks.setdefault(key, asyncio.Lock())
        self._users[key] = self._users.get(key, 0) + 1
        try:
            async with lock, self._slots:
                yield
        finally:
            self._users[key] -= 1
            if not self._users[key]:  # forget idle keys: memory stays bounded
                del self._users[key], self._locks[key]
