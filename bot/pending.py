"""Events a platform got its 200 for before they were handled, kept until they are.

LINE and Telegram's webhook send nothing again once answered 200, and both are answered
before the bot handles the event (they wait only seconds). Each event is recorded with its
payload first; when handled, the payload goes. One a stopped or crashed process left
behind is taken over by a running process of the channel after `TAKE_OVER_AFTER` (again,
should that one stop too, up to db.events.TAKE_OVER_ATTEMPTS), and answered late rather
than never.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.events import first_delivery, forget_old, handled, take_over
from scheduler.tasks import cancel_and_wait

logger = logging.getLogger(__name__)

# A running process handles an event in seconds: one still unhandled this long after it
# arrived belongs to a process that stopped. Checked at start and every TAKE_OVER_EVERY s.
TAKE_OVER_AFTER = timedelta(minutes=10)
TAKE_OVER_EVERY = 60.0

Resume = Callable[[dict[str, Any], datetime], None]  # (payload, received): handle it late


class PendingEvents:
    """One channel's recorded events: record, mark handled, take over what was left."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], channel: str,
                 clock: Callable[[], datetime], resume: Resume) -> None:
        self._sessions, self._channel, self._clock, self._resume = (
            sessions, channel, clock, resume)
        self.in_hand: set[str] = set()  # event ids this process is handling
        self._watch: asyncio.Task[None] | None = None

    async def record(self, event_id: str, payload: dict[str, Any], now: datetime) -> bool:
        """True the first time the event is seen (in any process): it is to be handled."""
        async with self._sessions() as session:
            return await first_delivery(session, self._channel, event_id, now, payload)

    @asynccontextmanager
    async def handling(self, event_id: str) -> AsyncIterator[None]:
        """Around the handling of one event: in hand meanwhile (never taken over), then
        marked handled, also when it failed (a bug is logged, not retried). Cut off at
        shutdown, it is not marked: it stays pending for another process."""
        self.in_hand.add(event_id)
        try:
            try:
                yield
            except asyncio.CancelledError:
                raise
            except Exception:
                await self.handled(event_id)
                raise
            await self.handled(event_id)
        finally:
            self.in_hand.discard(event_id)

    async def handled(self, event_id: str) -> None:
        """Shielded: a shutdown that cuts off the caller here must not leave an answered
        event pending, to be answered again."""
        try:
            await asyncio.shield(self._mark(event_id))
        except Exception:  # it may be answered twice, which beats not at all
            logger.exception("%s: event %s could not be marked handled", self._channel,
                             event_id)

    async def _mark(self, event_id: str) -> None:
        async with self._sessions() as session:
            await handled(session, self._channel, event_id, self._clock())

    async def take_over(self) -> int:
        """Hand the events a stopped process never handled to `resume`; how many."""
        now = self._clock()
        async with self._sessions() as session:
            taken = await take_over(session, self._channel, now - TAKE_OVER_AFTER, now,
                                    set(self.in_hand))
        for event_id, payload, received in taken:
            logger.warning("%s: event %s (received %s) was left unhandled by a stopped "
                           "process: answering it now", self._channel, event_id, received)
            try:
                self._resume(payload, received)
            except Exception as exc:  # a payload this version cannot read: given up
                logger.error("%s: pending event %s could not be read back (%s): given up",
                             self._channel, event_id, type(exc).__name__)
                await self.handled(event_id)
        return len(taken)

    async def start(self) -> None:
        """A first round now (what a crash left is answered as the channel starts), then
        one every TAKE_OVER_EVERY seconds."""
        await self._round()
        self._watch = asyncio.ensure_future(self._keep_taking_over())

    async def stop(self) -> None:
        await cancel_and_wait(self._watch)
        self._watch = None

    async def _keep_taking_over(self) -> None:
        while True:
            await asyncio.sleep(TAKE_OVER_EVERY)
            await self._round()

    async def _round(self) -> None:
        try:
            await self.take_over()
            async with self._sessions() as session:  # ids past any redelivery
                await forget_old(session, self._clock())
        except Exception:  # the database away: the next round tries again
            logger.exception("%s: taking over pending events failed", self._channel)
