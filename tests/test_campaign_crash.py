"""Crash safety and concurrent dispatchers, end to end against the fake Telegram server.

Telegram's sendMessage has no idempotency key: if a process dies after Telegram accepted a
message and before the outcome is recorded, nobody can know whether it arrived. Campaign
rows are therefore at-most-once: each is moved to `inflight` (compare-and-set) right before
its send, and a row found `inflight` after a crash becomes `uncertain` and is never resent
(the report counts it). What these tests assert is exactly that: no chat ever receives a
campaign message twice; every recipient ends `sent` with exactly one message, or
`uncertain` — at most `concurrency` rows per crash.
"""

from __future__ import annotations

import asyncio
import random
import signal
import sys
from collections import Counter
from pathlib import Path

import pytest
from sqlmodel import col, select

from db.engine import make_engine, make_sessionmaker
from db.models import Outbox
from scheduler import campaigns
from tests.conftest import NOW
from tests.fakes.roster import seed_linked_clinics
from tests.fakes.telegram_api import FakeTelegramAPI
from tests.test_campaign import IN_PERIOD

ROOT = Path(__file__).resolve().parent.parent
PREF = "26"
CONCURRENCY = 16


async def prepare(url: str, recipients: int) -> None:
    engine = make_engine(url)
    sessions = make_sessionmaker(engine)
    async with sessions() as session:
        await seed_linked_clinics(session, PREF, recipients, NOW)
        c = (await campaigns.plan(session, PREF, "dunning", "crash:D-7", IN_PERIOD)).campaign
        assert c.recipients == recipients
        await campaigns.approve(session, c, "test", IN_PERIOD)
    await engine.dispose()


async def statuses(url: str) -> dict[str, list[str]]:
    engine = make_engine(url)
    async with make_sessionmaker(engine)() as session:
        rows = (await session.exec(select(Outbox.status, Outbox.recipient).where(
            col(Outbox.kind) == "campaign"))).all()
    await engine.dispose()
    found: dict[str, list[str]] = {}
    for status, recipient in rows:
        found.setdefault(status, []).append(recipient)
    return found


async def dispatcher(url: str, api: FakeTelegramAPI, offset: float,
                     ) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.fakes.campaign_dispatcher", url, api.base_url,
        "--offset", str(offset), "--concurrency", str(CONCURRENCY),
        "--start", IN_PERIOD.isoformat(), cwd=ROOT)  # a 督促 goes out in the period


def delivered(api: FakeTelegramAPI) -> Counter[int]:
    return Counter(c.chat_id for c in api.calls_of("sendMessage", ok=True))  # type: ignore[misc]


def assert_at_most_once(api: FakeTelegramAPI, found: dict[str, list[str]], total: int,
                        max_uncertain: int) -> None:
    counts = delivered(api)
    assert max(counts.values()) == 1, "a chat received a campaign message twice"
    sent, uncertain = set(found.get("sent", [])), set(found.get("uncertain", []))
    assert len(sent) + len(uncertain) == total and set(found) <= {"sent", "uncertain"}
    assert {str(chat) for chat in counts} >= sent  # every row marked sent really arrived
    assert {str(chat) for chat in counts} <= sent | uncertain
    assert len(uncertain) <= max_uncertain


@pytest.mark.parametrize("recipients, kills", [(5000, 12)])
async def test_sigkill_at_random_points_never_sends_twice(
        database_url: str, recipients: int, kills: int) -> None:
    await prepare(database_url, recipients)
    rng = random.Random(20261124)
    async with FakeTelegramAPI() as api:
        for n in range(kills):
            proc = await dispatcher(database_url, api, offset=n * 300.0)
            target = len(api.calls) + rng.randint(20, 5000 // (kills + 2))
            try:
                async with asyncio.timeout(60):
                    await api._until(lambda t=target: len(api.calls) >= t)
                await asyncio.sleep(rng.uniform(0, 0.02))  # land anywhere in the cycle
            finally:
                proc.send_signal(signal.SIGKILL)
                await proc.wait()
            assert proc.returncode == -signal.SIGKILL, "the dispatcher finished too early"
        final = await dispatcher(database_url, api, offset=kills * 300.0)
        async with asyncio.timeout(120):
            assert await final.wait() == 0
        found = await statuses(database_url)
        assert_at_most_once(api, found, recipients, kills * CONCURRENCY)
    print(f"\n{kills} kills: sent={len(found.get('sent', []))} "
          f"uncertain={len(found.get('uncertain', []))} "
          "uncertain-but-delivered="
          f"{sum(1 for r in found.get('uncertain', []) if delivered(api)[int(r)])}")


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)  # SKIP LOCKED sharing
async def test_two_dispatchers_on_postgresql_never_send_to_a_recipient_twice(
        database_url: str) -> None:
    await prepare(database_url, 3000)
    async with FakeTelegramAPI() as api:
        procs = [await dispatcher(database_url, api, offset=0.0) for _ in range(2)]
        async with asyncio.timeout(120):
            codes = [await p.wait() for p in procs]
        assert codes == [0, 0]
        found = await statuses(database_url)
        assert_at_most_once(api, found, 3000, 0)
        assert sum(delivered(api).values()) == 3000
