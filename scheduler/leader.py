"""Leader election with a lease row: only one process fires schedules; all may send.

APScheduler 3 cannot share a job store between schedulers, so exactly one process runs
one. The lease is a row (name, holder, expires_at) taken with a conditional UPDATE — free,
expired, or already ours — and renewed well before it expires. It works the same on SQLite
and PostgreSQL. If a paused leader overlaps a new one for a moment, nothing is sent twice:
campaigns are unique per (prefecture, kind, run) and outbox rows per (campaign, recipient).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import or_, update
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from db.engine import insert_for
from db.models import SchedulerLease


async def try_lead(session: AsyncSession, name: str, holder: str, now: datetime,
                   ttl: timedelta) -> bool:
    """Take or renew the lease; True when `holder` holds it until now + ttl."""
    insert = insert_for(session)
    await session.exec(insert(SchedulerLease).values(  # type: ignore[call-overload]
        name=name, holder="", expires_at=now).on_conflict_do_nothing(index_elements=["name"]))
    stmt = (update(SchedulerLease)
            .where(col(SchedulerLease.name) == name,
                   or_(col(SchedulerLease.holder) == holder,
                       col(SchedulerLease.expires_at) <= now))
            .values(holder=holder, expires_at=now + ttl))
    taken = (await session.exec(stmt)).rowcount  # type: ignore[call-overload]
    await session.commit()
    return bool(taken)


async def release(session: AsyncSession, name: str, holder: str, now: datetime) -> None:
    """Give the lease up at shutdown so another process can lead at once."""
    stmt = (update(SchedulerLease)
            .where(col(SchedulerLease.name) == name, col(SchedulerLease.holder) == holder)
            .values(expires_at=now))
    await session.exec(stmt)  # type: ignore[call-overload]
    await session.commit()
