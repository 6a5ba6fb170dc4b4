"""The outbox sends each message once, retries politely and never loses a row."""

from __future__ import annotations

from datetime import UTC, timedelta

from sqlmodel import select

from db.models import Outbox
from handlers.context import Context
from scheduler.outbox import Outcome, claim, dispatch_due, enqueue
from tests.conftest import NOW


async def put(ctx: Context, key: str, recipient: str = "r1") -> bool:
    async with ctx.session() as session:
        return await enqueue(session, key=key, channel="demo", recipient=recipient, kind="test",
                             body="本文です", prefecture_code="26", now=NOW)


async def rows(ctx: Context) -> list[Outbox]:
    async with ctx.session() as session:
        return list((await session.exec(select(Outbox).order_by(Outbox.id))).all())


async def test_same_key_is_stored_once(ctx: Context) -> None:
    assert await put(ctx, "k1") is True
    assert await put(ctx, "k1") is False
    assert len(await rows(ctx)) == 1


async def test_timestamps_read_back_aware_in_utc(ctx: Context) -> None:
    """Due times, SLA ages and lockouts compare stored times with an aware clock; SQLite
    stores no offset, so the column type must restore it (a naive value would raise)."""
    await put(ctx, "k1")
    [row] = await rows(ctx)
    assert row.next_attempt_at.utcoffset() == timedelta(0)
    assert row.next_attempt_at == NOW.astimezone(UTC)


async def test_sent_rows_are_not_sent_again(ctx: Context) -> None:
    await put(ctx, "k1")
    sent: list[str] = []

    async def sender(row: Outbox) -> Outcome:
        sent.append(row.idempotency_key)
        return Outcome("sent")

    assert await dispatch_due(ctx.session, "demo", sender, NOW) == 1
    assert await dispatch_due(ctx.session, "demo", sender, NOW + timedelta(hours=1)) == 0
    assert sent == ["k1"]
    [row] = await rows(ctx)
    assert row.status == "sent" and row.sent_at is not None


async def test_retry_after_is_honoured_and_failures_recorded(ctx: Context) -> None:
    await put(ctx, "k1")
    await put(ctx, "k2", "blocked-user")

    async def sender(row: Outbox) -> Outcome:
        if row.recipient == "blocked-user":
            return Outcome("unreachable", "Forbidden: bot was blocked by the user")
        return Outcome("retry", "429", retry_after=30)

    await dispatch_due(ctx.session, "demo", sender, NOW)
    first, second = await rows(ctx)
    assert first.status == "pending" and first.last_error == "429"
    assert abs((first.next_attempt_at - NOW).total_seconds() - 30) < 1
    assert second.status == "unreachable"
    assert await dispatch_due(ctx.session, "demo", sender, NOW + timedelta(seconds=10)) == 0


async def test_a_crashed_claim_becomes_due_again_after_the_lease(ctx: Context) -> None:
    await put(ctx, "k1")
    async with ctx.session() as session:
        [claimed] = await claim(session, "demo", NOW, 10)  # then the process dies
    async with ctx.session() as session:
        assert await claim(session, "demo", NOW + timedelta(seconds=30), 10) == []
        [again] = await claim(session, "demo", NOW + timedelta(minutes=5), 10)
    assert again.id == claimed.id and again.attempts == 2


async def test_claimed_rows_carry_the_attempt_the_database_holds(ctx: Context) -> None:
    """At-most-once sending compares the claimed attempt with the stored one: if they ever
    disagreed, every campaign message would be refused as "claimed elsewhere"."""
    for i in range(3):
        await put(ctx, f"k{i}", recipient=f"r{i}")
    async with ctx.session() as session:
        claimed = await claim(session, "demo", NOW, 10)
    stored = {r.id: r for r in await rows(ctx)}
    assert [(r.status, r.attempts) for r in claimed] == [("sending", 1)] * 3
    assert all(stored[r.id].attempts == r.attempts and stored[r.id].status == "sending"
               for r in claimed)
