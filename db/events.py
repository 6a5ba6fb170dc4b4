"""Processed-event ids: a chat platform that retries a delivery gets it handled once.

An event recorded with its payload stays pending until `handled`: a process that answered
the platform and died before handling leaves it to `take_over` (LINE and Telegram never
send an event again once it got its 200)."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from db.engine import insert_for
from db.models import ProcessedEvent

logger = logging.getLogger(__name__)

KEEP = timedelta(days=2)  # Slack retries within minutes; two days is ample


async def first_delivery(session: AsyncSession, channel: str, event_id: str,
                         now: datetime, payload: dict[str, Any] | None = None) -> bool:
    """Record the event id (and, to keep it until handled, the event); True only the first
    time it is seen (safe across processes)."""
    insert = insert_for(session)
    stmt = (insert(ProcessedEvent)
            .values(channel=channel, event_id=event_id[:100], received_at=now, payload=payload)
            .on_conflict_do_nothing(index_elements=["channel", "event_id"])
            .returning(col(ProcessedEvent.event_id)))
    created = (await session.exec(stmt)).first()  # type: ignore[call-overload]
    await session.commit()
    return created is not None


async def handled(session: AsyncSession, channel: str, event_id: str, now: datetime) -> None:
    """The event needs nothing more: it is never taken over."""
    stmt = (update(ProcessedEvent)
            .where(col(ProcessedEvent.channel) == channel,
                   col(ProcessedEvent.event_id) == event_id[:100])
            .values(handled_at=now, payload=None))
    await session.exec(stmt)  # type: ignore[call-overload]
    await session.commit()


TAKE_OVER_ATTEMPTS = 2  # an event that stopped its process twice is given up (logged)


async def take_over(session: AsyncSession, channel: str, received_before: datetime,
                    now: datetime, skip: set[str]
                    ) -> list[tuple[str, dict[str, Any], datetime]]:
    """Events received before `received_before` (and within KEEP) that no process finished,
    each leased to one caller only: (event_id, payload, received_at), oldest first.

    The lease moves `received_at` to now, so an event whose taker stops too is taken over
    again one wait later, up to TAKE_OVER_ATTEMPTS times; then it is marked handled and
    logged, so one event that kills its process cannot do so forever."""
    stmt = (select(ProcessedEvent)
            .where(col(ProcessedEvent.channel) == channel,
                   col(ProcessedEvent.handled_at).is_(None),
                   col(ProcessedEvent.payload).is_not(None),
                   col(ProcessedEvent.received_at) < received_before,
                   col(ProcessedEvent.received_at) >= now - KEEP)
            .order_by(col(ProcessedEvent.received_at), col(ProcessedEvent.event_id)))
    found = [(e.event_id, e.payload, e.received_at, e.attempts)
             for e in (await session.exec(stmt)).all() if e.event_id not in skip]
    taken = []
    for event_id, payload, received, attempts in found:
        give_up = attempts >= TAKE_OVER_ATTEMPTS
        values: dict[str, Any] = (dict(handled_at=now, payload=None) if give_up else
                                  dict(received_at=now, attempts=attempts + 1))
        claim = (update(ProcessedEvent)
                 .where(col(ProcessedEvent.channel) == channel,
                        col(ProcessedEvent.event_id) == event_id,
                        col(ProcessedEvent.handled_at).is_(None),
                        col(ProcessedEvent.received_at) == received)
                 .values(**values))
        ours = (await session.exec(claim)).rowcount == 1  # type: ignore[call-overload]
        if ours and give_up:
            logger.error("%s: event %s was taken over %d times and never finished: given up",
                         channel, event_id, attempts)
        elif ours and payload is not None:
            taken.append((event_id, payload, received))
    await session.commit()
    return taken


async def forget_old(session: AsyncSession, now: datetime) -> None:
    """Drop ids older than KEEP so the table stays small."""
    stmt = delete(ProcessedEvent).where(col(ProcessedEvent.received_at) < now - KEEP)
    await session.exec(stmt)  # type: ignore[call-overload]
    await session.commit()
