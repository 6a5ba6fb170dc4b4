"""The outbox: everything the bot sends on its own initiative is written here first.

A row is inserted once per idempotency key; a dispatcher claims due rows, hands each to
the channel's sender and records the outcome. A crash between claim and send leaves the
row `sending` with a lease; it becomes due again when the lease runs out, and the channel
sender must tolerate that (the key travels with the message).

Kinds may have a policy (scheduler.policies): a pre-send check run on the claimed batch
just before sending (a campaign row whose institution reported meanwhile is `skipped`;
one outside the sending hours is deferred), and a delivery guarantee. Default kinds are
at-least-once: a crash between the platform accepting a message and the outcome being
recorded sends it again. At-most-once kinds (campaigns) are moved to `inflight` by a
compare-and-set right before the send; a row found `inflight` after its lease is marked
`uncertain` and never resent. Platforms like Telegram have no idempotency key, so no
design can make that one row exactly-once; the window is at most `concurrency` rows per
crash, and those rows are counted in reports instead of being guessed at.

Statuses: held (planned, not yet approved) · pending · sending (claimed) · inflight ·
sent · failed · unreachable · skipped · cancelled · uncertain.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import Table, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from db.engine import insert_for
from db.models import Outbox
from scheduler.policies import POLICIES, KindPolicy

logger = logging.getLogger(__name__)

LEASE = timedelta(minutes=2)
MAX_ATTEMPTS = 8
OPEN_STATUSES = ("held", "pending", "sending", "inflight")  # not finished yet

# Status changes of rows already in hand run as Core statements on the table: the ORM's bulk
# UPDATE path (session synchronisation) costs more CPU than the statement itself, twice
# per send window.
_TABLE: Table = Outbox.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Outcome:
    """What a channel sender reports for one message."""

    kind: Literal["sent", "retry", "failed", "unreachable", "skipped", "defer"]
    detail: str = ""
    retry_after: float | None = None  # retry/defer: seconds to wait


Sender = Callable[[Outbox], Awaitable[Outcome]]


async def enqueue(
    session: AsyncSession, *, key: str, channel: str, recipient: str, kind: str, body: str,
    prefecture_code: str | None, now: datetime, payload: Mapping[str, Any] | None = None,
    not_before: datetime | None = None, commit: bool = True,
) -> bool:
    """Insert a message unless its key exists; True when this call created it. With
    `commit=False` it joins the caller's transaction (two rows that must exist together)."""
    values = dict(idempotency_key=key, channel=channel, recipient=recipient, kind=kind,
                  body=body, prefecture_code=prefecture_code, payload=dict(payload or {}),
                  status="pending", attempts=0, created_at=now,
                  next_attempt_at=not_before or now)
    insert = insert_for(session)
    stmt = (insert(Outbox).values(**values)
            .on_conflict_do_nothing(index_elements=["idempotency_key"])
            .returning(col(Outbox.id)))
    created = (await session.exec(stmt)).first()  # type: ignore[call-overload]
    if commit:
        await session.commit()
    return created is not None


async def find(session: AsyncSession, key: str) -> Outbox | None:
    """The row queued under an idempotency key, if any."""
    return (await session.exec(select(Outbox).where(Outbox.idempotency_key == key))).first()


async def send_again(session: AsyncSession, keys: Iterable[str], now: datetime) -> int:
    """Queue rows that failed for good again (caller commits), once what refused them is
    fixed (the bot invited to its channel); returns how many. Rows sent, waiting or
    cancelled are left alone."""
    stmt = (update(Outbox)
            .where(col(Outbox.idempotency_key).in_(list(keys)),
                   col(Outbox.status).in_(("failed", "unreachable")))
            .values(status="pending", attempts=0, next_attempt_at=now, last_error=None))
    return int((await session.exec(stmt)).rowcount or 0)  # type: ignore[call-overload]


async def set_payload(session: AsyncSession, row_id: int, payload: Mapping[str, Any]) -> None:
    """Replace a row's payload in the caller's transaction: what a sent message must remember
    (how many supplements a Redmine issue's description carried) commits with the state it
    belongs to, or not at all."""
    await session.exec(update(Outbox).where(col(Outbox.id) == row_id)  # type: ignore[call-overload]
                       .values(payload=dict(payload)))


async def claim(session: AsyncSession, channel: str, now: datetime, limit: int) -> list[Outbox]:
    """Lease up to `limit` due rows of a channel; concurrent dispatchers never share a row.
    At-most-once rows left `inflight` by a crashed dispatcher become `uncertain` here.

    The batch is leased by one UPDATE ... RETURNING instead of an ORM flush of one UPDATE
    per row; the database counts the attempt, so a row carries the number it holds."""
    await session.exec(update(Outbox).where(  # type: ignore[call-overload]
        Outbox.channel == channel, col(Outbox.status) == "inflight",
        Outbox.next_attempt_at <= now).values(status="uncertain",
                                                last_error="crashed while sending"))
    due = (
        select(col(Outbox.id))
        .where(Outbox.channel == channel, col(Outbox.status).in_(("pending", "sending")),
               Outbox.next_attempt_at <= now)
        .order_by(col(Outbox.next_attempt_at), col(Outbox.id))
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    ids = list((await session.exec(due)).all())
    rows: list[Outbox] = []
    if ids:
        stmt = (update(Outbox).where(col(Outbox.id).in_(ids))
                .values(status="sending", next_attempt_at=now + LEASE,
                        attempts=col(Outbox.attempts) + 1)
                .returning(Outbox))
        rows = list((await session.exec(stmt)).scalars())  # type: ignore[call-overload]
    await session.commit()
    position = {row_id: i for i, row_id in enumerate(ids)}
    return sorted(rows, key=lambda row: position[row.id])  # due order: each chat's order


async def record_many(session: AsyncSession, outcomes: Iterable[tuple[int, Outcome, int]],
                      now: datetime) -> None:
    """Store outcomes in one transaction (plain successes in one statement); retries back
    off exponentially, honouring retry_after."""
    outcomes = list(outcomes)  # read twice below
    sent = [row_id for row_id, outcome, _ in outcomes if outcome == SENT]
    if sent:
        await session.exec(update(_TABLE).where(_TABLE.c.id.in_(sent)).values(  # type: ignore[call-overload]
            status="sent", sent_at=now, last_error=None))
    for row_id, outcome, attempts in outcomes:
        if outcome != SENT:
            await session.exec(update(_TABLE).where(_TABLE.c.id == row_id).values(  # type: ignore[call-overload]
                **_values(outcome, now, attempts)))
    await session.commit()


def _values(outcome: Outcome, now: datetime, attempts: int) -> dict[str, Any]:
    values: dict[str, Any] = {"last_error": outcome.detail or None}
    if outcome.kind == "sent":
        values.update(status="sent", sent_at=now, last_error=None)
    elif outcome.kind == "skipped":
        values.update(status="skipped")
    elif outcome.kind == "defer":  # not now (outside sending hours): not an attempt
        values.update(status="pending", attempts=max(0, attempts - 1),
                      next_attempt_at=now + timedelta(seconds=outcome.retry_after or 60))
    elif outcome.kind == "retry" and attempts < MAX_ATTEMPTS:
        delay = outcome.retry_after if outcome.retry_after is not None else 2 ** attempts
        values.update(status="pending", next_attempt_at=now + timedelta(seconds=delay))
    else:
        values.update(status="unreachable" if outcome.kind == "unreachable" else "failed")
    return values


async def dispatch_due(
    sessions: Callable[[], AsyncSession], channel: str, sender: Sender, now: datetime,
    limit: int = 50, *, concurrency: int = 1, policies: Mapping[str, KindPolicy] | None = None,
) -> int:
    """Send one batch of due rows through `sender`; returns how many were handled.

    Up to `concurrency` rows are sent at once, never two to the same recipient (their order
    is kept). Kind policies (default: scheduler.policies.POLICIES) check rows first and
    decide the delivery guarantee."""
    policies = POLICIES if policies is None else policies
    async with sessions() as session:
        rows = await claim(session, channel, now, limit)
        verdicts = await _pre_send(session, rows, now, policies)
        if verdicts:
            await record_many(session, [(r.id, verdicts[r.id], r.attempts) for r in rows
                                        if r.id in verdicts], now)  # type: ignore[misc]
    todo = [row for row in rows if row.id not in verdicts]
    for window in _windows(todo, max(1, concurrency)):
        window = await _own(sessions, window, policies, now)
        results = await asyncio.gather(*(_send(sender, row) for row in window))
        async with sessions() as session:
            await record_many(session, [(r.id, o, r.attempts) for r, o in  # type: ignore[misc]
                                        zip(window, results, strict=True)], now)
    return len(rows)


SENT = Outcome("sent")


async def _send(sender: Sender, row: Outbox) -> Outcome:
    try:
        return await sender(row)
    except Exception as exc:  # a sender bug must not lose the row
        logger.exception("sender failed for outbox row %s", row.id)
        return Outcome("retry", f"{type(exc).__name__}")


async def _pre_send(session: AsyncSession, rows: list[Outbox], now: datetime,
                    policies: Mapping[str, KindPolicy]) -> dict[int, Outcome]:
    """Ask each kind's check about its rows; rows it has a verdict on are not sent."""
    verdicts: dict[int, Outcome] = {}
    for kind in {row.kind for row in rows}:
        policy = policies.get(kind)
        if policy is not None and policy.check is not None:
            verdicts.update(await policy.check(session, [r for r in rows if r.kind == kind],
                                               now))
    return verdicts


def _windows(rows: list[Outbox], size: int) -> Iterable[list[Outbox]]:
    """Consecutive groups of up to `size` rows with distinct recipients."""
    window: list[Outbox] = []
    recipients: set[str] = set()
    for row in rows:
        if len(window) >= size or row.recipient in recipients:
            yield window
            window, recipients = [], set()
        window.append(row)
        recipients.add(row.recipient)
    if window:
        yield window


async def _own(sessions: Callable[[], AsyncSession], window: list[Outbox],
               policies: Mapping[str, KindPolicy], now: datetime) -> list[Outbox]:
    """Move at-most-once rows to `inflight` if they are still ours (same claim, same attempt):
    a dispatcher whose lease ran out loses them here instead of sending them twice."""
    strict = [r for r in window if (p := policies.get(r.kind)) is not None and p.at_most_once]
    if not strict:
        return window
    owned: set[int] = set()
    async with sessions() as session:
        for attempts in {r.attempts for r in strict}:
            ids = [r.id for r in strict if r.attempts == attempts]
            stmt = (update(_TABLE)
                    .where(_TABLE.c.id.in_(ids), _TABLE.c.status == "sending",
                           _TABLE.c.attempts == attempts)
                    .values(status="inflight", next_attempt_at=now + LEASE)
                    .returning(_TABLE.c.id))
            owned.update((await session.exec(stmt)).scalars().all())  # type: ignore[call-overload]
        await session.commit()
    lost = [r.id for r in strict if r.id not in owned]
    if lost:
        logger.warning("outbox rows %s were re-claimed elsewhere; not sending them", lost)
    # Compare ids, not rows: `row in list` would call the models' pydantic __eq__ per pair.
    strict_ids = {r.id for r in strict}
    return [r for r in window if r.id not in strict_ids or r.id in owned]
