"""A campaign dispatcher as its own process, for crash tests and benchmarks.

    python -m tests.fakes.campaign_dispatcher DATABASE_URL API_BASE [--offset SECONDS]
        [--rate R] [--per-chat R] [--concurrency N] [--batch N] [--start ISO]

It drives the real outbox path (scheduler.outbox.dispatch_due with the campaign policy)
through the real TelegramSender and PTB against the fake Bot API, until no Telegram row
is open any more. The clock is injected: `--start` plus the time elapsed in this process
plus `--offset` (a restarted process passes a larger offset, as if the lease had run out).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from datetime import datetime, timedelta

from sqlalchemy import func
from sqlmodel import col, select
from telegram import Bot

from bot.telegram.render import CallbackCodec
from bot.telegram.request import AiohttpRequest
from bot.telegram.sender import TelegramSender
from db.engine import make_engine, make_sessionmaker
from db.models import Outbox
from scheduler.outbox import dispatch_due
from scheduler.ratelimit import RateLimiter
from tests.fakes.telegram_api import TOKEN


async def run(args: argparse.Namespace) -> int:
    os.environ.setdefault("PTB_TIMEDELTA", "1")
    start, began = datetime.fromisoformat(args.start), time.monotonic()

    def clock() -> datetime:
        return start + timedelta(seconds=time.monotonic() - began + args.offset)

    engine = make_engine(args.database_url)
    sessions = make_sessionmaker(engine)
    limiter = RateLimiter(args.rate, args.per_chat, clock=time.monotonic)
    # The transport the running bot uses (bot.telegram.channel), not PTB's httpx default.
    request = AiohttpRequest(pool_size=max(8, args.concurrency))
    async with Bot(TOKEN, base_url=f"{args.api}/bot", request=request) as bot:
        sender = TelegramSender(bot, sessions, limiter, CallbackCodec(), clock, lambda: None,
                                "26")
        while True:
            handled = await dispatch_due(sessions, "telegram", sender, clock(), args.batch,
                                         concurrency=args.concurrency)
            if handled:
                continue
            async with sessions() as session:
                stmt = select(func.count()).select_from(Outbox).where(
                    Outbox.channel == "telegram",
                    # held rows wait for approval (the benchmark releases a slice per phase)
                    col(Outbox.status).in_(("pending", "sending", "inflight")))
                if not (await session.exec(stmt)).one():
                    break
            await asyncio.sleep(0.05)
    await engine.dispose()
    return 0


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("database_url")
    p.add_argument("api")
    p.add_argument("--offset", type=float, default=0.0)
    p.add_argument("--rate", type=float, default=1_000_000.0)
    p.add_argument("--per-chat", type=float, default=1_000.0)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--batch", type=int, default=200)
    p.add_argument("--start", default="2026-11-24T10:00:00+09:00")
    return asyncio.run(run(p.parse_args()))


if __name__ == "__main__":
    raise SystemExit(main())
