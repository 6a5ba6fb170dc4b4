"""The outbox: everything the bot sends on its own initiative is written here first.

A row is inserted once per idempotency key; a dispatcher claims due rows, hands each to
the channel's sender and records the outcome. A crash between claim and send leaves the
row `sending` with a lease; it becomes due again when the lease runs out, and the channel
sender must tolerate that (the key travels with the message).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from db.models import Outbox

logger = logging.getLogger(__name__)

LEASE = timedelta(minutes=2)
MAX_ATTEMPTS = 8


@dataclass(frozen=True)
class Outcome:
    """What a channel sender reports for one message."""

    kind: Literal["sent", "retry", "failed", "unreachable"]
    detail: str = ""
    retry_after: float | None = None


Sender = Callable[[Outbox], Awaitable[Outcome]]


async def enqueue(
    session: AsyncSession, *, key: str, channel: str, recipient: str, kind: str, body: str,
    prefecture_code: str | None, now: datetime, payload: Mapping[str, Any] | None = None,
    not_before: datetime | None = None,
) -> bool:
    """Insert a message unless its key exists; True when this call created it."""
    values = dict(idempotency_key=key, channel=channel, recipient=recipient, kind=kind,
                  body=body, prefecture_code=prefecture_code, payload=dict(payload or {}),
                  status="pending", attempts=0, created_at=now,
                  next_attempt_at=not_before or now)
    dialect = session.bind.dialect.name if session.bind else "sqlite"
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    stmt = (insert(Outbox).values(**values)
            .on_conflict_do_nothing(index_elements=["idempotency_key"])
            .returning(col(Outbox.id)))
    created = (await session.exec(stmt)).first()  # type: ignore[call-overload]
    await session.commit()
    return created is not None


async def claim(session: AsyncSession, channel: str, now: datetime, limit: int) -> list[Outbox]:
    """Lease up to `limit` due rows of a channel; concurrent dispatchers never share a row."""
    stmt = (
        select(Outbox)
        .where(Outbox.channel == channel, col(Outbox.status).in_(("pending", "sending")),
               Outbox.next_attempt_at <= now)
        .order_by(col(Outbox.next_attempt_at), col(Outbox.id))
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    rows = list((await session.exec(stmt)).all())
    for row in rows:
        row.status, row.next_attempt_at = "sending", now + LEASE
        row.attempts += 1
        session.add(row)
    await session.commit()
    return rows


async def record(session: AsyncSession, row_id: int, outcome: Outcome, now: datetime,
                 attempts: int) -> None:
    """Store a send outcome; retries back off exponentially, honouring retry_after."""
    values: dict[str, Any] = {"last_error": outcome.detail or None}
    if outcome.kind == "sent":
        values.update(status="sent", sent_at=now, last_error=None)
    elif outcome.kind == "retry" and attempts < MAX_ATTEMPTS:
        delay = outcome.retry_after if outcome.retry_after is not None else 2 ** attempts
        values.update(status="pending", next_attempt_at=now + timedelta(seconds=delay))
    else:
        values.update(status="unreachable" if outcome.kind == "unreachable" else "failed")
    await session.exec(update(Outbox).where(col(Outbox.id) == row_id).values(**values))  # type: ignore[call-overload]
    await session.commit()


async def dispatch_due(
    sessions: Callable[[], AsyncSession], channel: str, sender: Sender, now: datetime,
    limit: int = 50,
) -> int:
    """Send one batch of due rows through `sender`; returns how many were handled."""
    async with sessions() as session:
        rows = await claim(session, channel, now, limit)
    for row in rows:
        try:
            outcome = await sender(row)
        except Exception as exc:  # a sender bug must not lose the row
            logger.exception("sender failed for outbox row %s", row.id)
            outcome = Outcome("retry", f"{type(exc).__name__}")
        async with sessions() as session:
            assert row.id is not None
            await record(session, row.id, outcome, now, row.attempts)
    return len(rows)
