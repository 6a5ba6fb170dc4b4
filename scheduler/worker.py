"""One background task per channel that keeps the outbox moving.

It runs `dispatch_due` every `interval` seconds, at once when woken (something was just
queued), and back to back while full batches keep coming. `stop()` lets the batch in
flight finish, so a stop never leaves a message sent-but-unrecorded when it can help it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import datetime

from sqlmodel.ext.asyncio.session import AsyncSession

from scheduler.outbox import Sender, dispatch_due
from scheduler.tasks import cancel_and_wait

logger = logging.getLogger(__name__)


class OutboxWorker:
    """Owns exactly one task; `flush()` gives tests and shutdown a deterministic handle."""

    def __init__(self, sessions: Callable[[], AsyncSession], channel: str, sender: Sender,
                 clock: Callable[[], datetime], *, interval: float = 1.0, batch: int = 50,
                 ) -> None:
        self._sessions, self._channel, self._sender = sessions, channel, sender
        self._clock, self._interval, self._batch = clock, interval, batch
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._waiters: list[asyncio.Future[None]] = []

    def start(self) -> None:
        if self._task is None:
            self._stopping = False
            self._task = asyncio.create_task(self._run(), name=f"outbox-{self._channel}")

    def wake(self) -> None:
        """Look for due messages now instead of at the next tick."""
        self._wake.set()

    async def flush(self) -> None:
        """Return after a complete pass that began after this call (nothing due was left).
        Callers bound the wait themselves (`asyncio.timeout`)."""
        if self._task is None or self._task.done():
            raise RuntimeError("the outbox worker is not running")
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        self.wake()
        await waiter

    async def stop(self, grace: float = 10.0) -> None:
        """Finish the batch in flight (up to `grace` seconds), then end the task."""
        task, self._task = self._task, None
        if task is None:
            return
        self._stopping = True
        self._wake.set()
        try:
            await asyncio.wait_for(asyncio.shield(task), grace)
        except TimeoutError:
            logger.warning("outbox worker %s did not stop in %.0fs; cancelling",
                           self._channel, grace)
            await cancel_and_wait(task)
        for waiter in self._waiters:
            waiter.cancel()
        self._waiters.clear()

    async def _run(self) -> None:
        while not self._stopping:
            self._wake.clear()
            waiters, self._waiters = self._waiters, []
            handled = await self._pass()
            if handled >= self._batch:  # more may be due: keep going, waiters included
                self._waiters = waiters + self._waiters
                continue
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)
            if self._stopping:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._interval)

    async def _pass(self) -> int:
        try:
            return await dispatch_due(self._sessions, self._channel, self._sender,
                                      self._clock(), self._batch)
        except Exception:  # the database may be away for a moment; try again next tick
            logger.exception("outbox dispatch failed for channel %s", self._channel)
            return 0
