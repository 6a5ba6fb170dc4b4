"""Processed-event ids: a chat platform that retries a delivery gets it handled once."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from db.engine import insert_for
from db.models import ProcessedEvent

KEEP = timedelta(days=2)  # Slack retries within minutes; two days is ample


async def first_delivery(session: AsyncSession, channel: str, event_id: str,
                         now: datetime) -> bool:
    """Record the event id; True only the first time it is seen (safe across processes)."""
    insert = insert_for(session)
    stmt = (insert(ProcessedEvent)
            .values(channel=channel, event_id=event_id[:100], received_at=now)
            .on_conflict_do_nothing(index_elements=["channel", "event_id"])
            .returning(col(ProcessedEvent.event_id)))
    created = (await session.exec(stmt)).first()  # type: ignore[call-overload]
    await session.commit()
    return created is not None


async def forget_old(session: AsyncSession, now: datetime) -> None:
    """Drop ids older than KEEP so the table stays small."""
    stmt = delete(ProcessedEvent).where(col(ProcessedEvent.received_at) < now - KEEP)
    await session.exec(stmt)  # type: ignore[call-overload]
    await session.commit()
