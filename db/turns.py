"""The two statements every message runs, batched across messages in flight.

Each message still waits for its own result (its sender read, its log row committed) before
it goes on, exactly as with one statement each; but requests that arrive while another is
in flight share the next round trip. Under load that is one query and one commit for many
messages instead of one each (SQLite also stops queueing writers on its file lock); alone,
a message pays what it always did.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any, Generic, TypeVar

from sqlalchemy.ext.asyncio import AsyncConnection

from db import repo

logger = logging.getLogger(__name__)

Begin = Callable[[], AbstractAsyncContextManager[AsyncConnection]]
Item = TypeVar("Item")
Result = TypeVar("Result")


class Batched(Generic[Item, Result]):
    """Run `work(conn, items)` for every item waiting, in one transaction per batch."""

    def __init__(self, name: str,
                 work: Callable[[AsyncConnection, list[Item]], Awaitable[list[Result]]]) -> None:
        self._name, self._work = name, work
        self._queue: list[tuple[Item, asyncio.Future[Result]]] = []
        self._lock: asyncio.Lock | None = None

    async def submit(self, begin: Begin, item: Item) -> Result:
        """This item's result, once its batch has committed; raises if the item failed."""
        done: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._queue.append((item, done))
        async with self._mutex():  # FIFO: the first waiter runs everything queued so far
            if not done.done():
                batch, self._queue = self._queue, []
                await self._run(begin, batch)
        return done.result()

    def _mutex(self) -> asyncio.Lock:
        if self._lock is None:  # created inside the running loop, on first use
            self._lock = asyncio.Lock()
        return self._lock

    async def _run(self, begin: Begin, batch: list[tuple[Item, asyncio.Future[Result]]],
                   ) -> None:
        try:
            async with begin() as conn:
                results = await self._work(conn, [item for item, _ in batch])
        except asyncio.CancelledError:
            self._queue[:0] = batch  # not ours alone: the next waiter runs them
            raise
        except Exception as exc:
            if len(batch) == 1:
                batch[0][1].set_exception(exc)
                return
            logger.warning("%s: batch of %d failed; retrying one by one", self._name, len(batch))
            for one in batch:  # one bad item must not cost the others theirs
                await self._run(begin, [one])
            return
        for (_, done), result in zip(batch, results, strict=True):
            done.set_result(result)


async def _write_turns(conn: AsyncConnection, rows: list[dict[str, Any]]) -> list[None]:
    await repo.log_turns(conn, rows)
    return [None] * len(rows)


class TurnStore:
    """Reads senders and writes conversation-log rows for the dispatcher."""

    def __init__(self) -> None:
        self._reads: Batched[tuple[str, str], repo.Sender | None] = Batched(
            "sender read", repo.load_senders)
        self._writes: Batched[dict[str, Any], None] = Batched("conversation log", _write_turns)

    async def sender(self, begin: Begin, channel: str, user_id: str) -> repo.Sender | None:
        """The account and flow state of who wrote; None before their first message."""
        return await self._reads.submit(begin, (channel, user_id))

    async def write(self, begin: Begin, fields: dict[str, Any]) -> None:
        """Commit one conversation-log row; returns once it is committed."""
        await self._writes.submit(begin, fields)
