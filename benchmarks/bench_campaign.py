"""Campaigns at national scale: planning 120,000 recipients, dispatch at the configured rate,
raw dispatch with the limits lifted, and peak memory.

    .venv/bin/python benchmarks/bench_campaign.py [--recipients 120000] [--database-url URL]

- plan: `scheduler.campaigns.plan` over N linked clinics (held outbox rows written), timed.
- paced: a dispatcher process (tests/fakes/campaign_dispatcher.py: real outbox, campaign
  pre-send check, TelegramSender, PTB) at the configured rate against the fake Bot API in
  this process; throughput = messages / (last - first arrival) at the fake.
- raw: the same with the limits lifted (1,000,000/s overall, 1,000/s per chat).
- memory: peak RSS of this process (planning) and of the dispatcher (ru_maxrss, children).
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import update  # noqa: E402
from sqlalchemy.exc import DBAPIError  # noqa: E402
from sqlmodel import col, select  # noqa: E402

from db.engine import make_engine, make_sessionmaker  # noqa: E402
from db.migrate import upgrade  # noqa: E402
from db.models import Institution, Outbox  # noqa: E402
from scheduler import campaigns  # noqa: E402
from tests.fakes.roster import seed_linked_clinics  # noqa: E402
from tests.fakes.telegram_api import FakeTelegramAPI  # noqa: E402

NOW = datetime(2027, 2, 17, 1, 0, tzinfo=UTC)  # 10:00 JST, a business day in the period


async def is_empty(url: str) -> bool:
    """The benchmark seeds its own clinics; it never writes into (or migrates) a database that
    has some. A database without our tables yet is empty."""
    engine = make_engine(url)
    try:
        async with make_sessionmaker(engine)() as session:
            found = (await session.exec(select(Institution.id).limit(1))).first()
    except DBAPIError:
        found = None
    finally:
        await engine.dispose()
    return found is None


async def plan_phase(url: str, n: int) -> tuple[int, float]:
    engine = make_engine(url)
    sessions = make_sessionmaker(engine)
    async with sessions() as session:
        await seed_linked_clinics(session, "13", n, NOW)
    async with sessions() as session:
        start = time.perf_counter()
        c = (await campaigns.plan(session, "13", "dunning", "bench:D-7", NOW)).campaign
        elapsed = time.perf_counter() - start
    await engine.dispose()
    assert c.id is not None and c.recipients == n
    return c.id, elapsed


async def release(url: str, campaign_id: int, count: int) -> None:
    """Approve `count` held rows of the campaign (one slice per phase)."""
    engine = make_engine(url)
    async with make_sessionmaker(engine)() as session:
        ids = (await session.exec(  # type: ignore[call-overload]
            Outbox.__table__.select().with_only_columns(Outbox.__table__.c.id)
            .where(Outbox.__table__.c.campaign_id == campaign_id,
                   Outbox.__table__.c.status == "held").limit(count))).scalars().all()
        await session.exec(update(Outbox).where(col(Outbox.id).in_(ids)).values(  # type: ignore[call-overload]
            status="pending", next_attempt_at=NOW))
        await session.exec(update(campaigns.Campaign).where(  # type: ignore[call-overload]
            col(campaigns.Campaign.id) == campaign_id).values(status="sending"))
        await session.commit()
    await engine.dispose()


async def dispatch_phase(url: str, api: FakeTelegramAPI, count: int, rate: float,
                         per_chat: float, concurrency: int, skip: int = 0) -> float:
    """Messages per second at the fake, after the first `skip` (the limiter's initial burst
    would flatter a short paced run)."""
    seen = len(api.calls)
    start = (NOW + timedelta(minutes=1)).isoformat()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.fakes.campaign_dispatcher", url, api.base_url,
        "--rate", str(rate), "--per-chat", str(per_chat), "--concurrency", str(concurrency),
        "--start", start, cwd=ROOT)
    assert await proc.wait() == 0
    calls = [c for c in api.calls[seen:] if c.method == "sendMessage" and c.ok]
    assert len(calls) == count, (len(calls), count)
    calls = calls[skip:]
    return (len(calls) - 1) / (calls[-1].at - calls[0].at)


async def main_async(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        url = args.database_url or f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}"
        if not await is_empty(url):
            sys.exit(f"{args.database_url} already holds institutions; the benchmark needs an "
                     "empty database (for example: dropdb bench_c && createdb bench_c)")
        upgrade(url)
        campaign_id, plan_s = await plan_phase(url, args.recipients)
        plan_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"plan: {args.recipients:,} recipients in {plan_s:.2f} s "
              f"(peak RSS of the planning process {plan_rss:.0f} MB)")
        async with FakeTelegramAPI() as api:
            for name, count, rate, per_chat, conc in (
                    ("paced", args.paced, args.rate, 1.0, 4),
                    ("raw", args.raw, 1_000_000.0, 1_000.0, args.concurrency)):
                await release(url, campaign_id, count)
                got = await dispatch_phase(url, api, count, rate, per_chat, conc,
                                           skip=int(rate) if name == "paced" else 0)
                target = f" ({got / rate:.1%} of the configured {rate:g}/s)" \
                    if name == "paced" else ""
                print(f"{name}: {count:,} messages at {got:,.0f} msg/s{target}")
        child_rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        print(f"peak RSS of a dispatcher process: {child_rss:.0f} MB")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--recipients", type=int, default=120_000)
    p.add_argument("--paced", type=int, default=500, help="messages in the paced phase")
    p.add_argument("--rate", type=float, default=25.0, help="configured overall rate")
    p.add_argument("--raw", type=int, default=20_000, help="messages in the raw phase")
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--database-url")
    asyncio.run(main_async(p.parse_args()))


if __name__ == "__main__":
    main()
