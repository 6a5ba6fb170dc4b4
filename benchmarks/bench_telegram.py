"""Telegram end to end: updates per second and latency per update, for one bot process.

fake Bot API (getUpdates) → PTB polling → adapter → handlers.dispatch (account and flow
state read, retrieval, conversation-log write) → SQLite → sendMessage back to the fake.

The fake Bot API runs in a child process (Telegram is not on the bot's CPU either) and
drives the workload: it queues updates, timestamps them, and timestamps each reply when it
arrives. Users are clinic clerks who each send several messages (the knowledge base's
alternative phrasings, menu commands); the k-th reply in a chat answers the k-th update there,
because the adapter keeps each chat in order.

Two phases:
- burst: N updates queued at once; throughput = N / time until the last reply arrived.
- paced: updates offered at a steady rate; latency = reply received - update queued.

    .venv/bin/python benchmarks/bench_telegram.py [--updates 3000] [--rate 200]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import multiprocessing as mp
import os
import random
import statistics
import sys
import tempfile
import time
from datetime import date
from multiprocessing.connection import Connection
from pathlib import Path

from pydantic import SecretStr

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.app import build_app  # noqa: E402
from bot.settings import Settings  # noqa: E402
from bot.telegram import TelegramChannel  # noqa: E402
from db.migrate import upgrade  # noqa: E402
from db.seed import seed_demo  # noqa: E402
from handlers.context import Context  # noqa: E402
from handlers.messages import Inbound, Reply  # noqa: E402
from knowledge.loader import load_knowledge_base  # noqa: E402
from tests.fakes.telegram_api import TOKEN, FakeTelegramAPI  # noqa: E402

MESSAGES_PER_USER = 4


def workload() -> list[str]:
    """The ways clinics ask each knowledge-base question (second phrasing onwards, so not
    the canonical wording), plus the menu commands and a vague 「報告」 (suggestions). A
    phrasing with two question marks may get one reply per question; latency here pairs
    one update with one reply, so those few are left out."""
    questions = [p for entry in load_knowledge_base() for p in entry.phrasings[1:]
                 if p.count("？") + p.count("?") <= 1]
    random.Random(5).shuffle(questions)
    return questions + ["/start", "/status", "報告", "/help"] * max(1, len(questions) // 20)


# ---- the child process: Telegram's side ----------------------------------------------


def fake_side(conn: Connection, n: int, rate: float) -> None:
    asyncio.run(_fake_side(conn, n, rate))


async def _fake_side(conn: Connection, n: int, rate: float) -> None:
    loop = asyncio.get_running_loop()
    async with FakeTelegramAPI() as api:
        conn.send(api.base_url)
        await loop.run_in_executor(None, conn.recv)  # the bot is up
        texts = workload()
        results = []
        for name, count, first, pace in (("warm-up", 400, 1_000_000, None),
                                         ("burst", n, 2_000_000, None),
                                         (f"paced {rate:.0f}/s", int(rate * 10), 3_000_000, rate)):
            updates = [(first + i // MESSAGES_PER_USER, texts[i % len(texts)])
                       for i in range(count)]
            results.append((name, count, *await run_phase(api, updates, pace)))
        conn.send(results[1:])
        await loop.run_in_executor(None, conn.recv)  # the bot has stopped polling


async def run_phase(api: FakeTelegramAPI, updates: list[tuple[int, str]],
                    rate: float | None) -> tuple[float, list[float]]:
    """Feed the updates; returns (elapsed seconds, latency per update in ms)."""
    fed: dict[int, list[float]] = {}
    seen = len(api.calls)
    start = time.perf_counter()
    for i, (chat, text) in enumerate(updates):
        if rate and (delay := start + i / rate - time.perf_counter()) > 0:
            await asyncio.sleep(delay)
        api.send_text(chat, text)
        fed.setdefault(chat, []).append(time.monotonic())
    replied: dict[int, list[float]] = {chat: [] for chat in fed}
    missing = len(updates)
    async with asyncio.timeout(600):
        while missing:
            for call in api.calls[seen:]:
                if call.method == "sendMessage" and call.ok and call.chat_id in replied:
                    replied[call.chat_id].append(call.at)
                    missing -= 1
            seen = len(api.calls)
            if missing:
                await api._tick.wait()
    elapsed = time.perf_counter() - start
    latencies = [(r - f) * 1000 for chat in fed for f, r in zip(fed[chat], replied[chat],
                                                                strict=True)]
    return elapsed, latencies


# ---- this process: the bot ------------------------------------------------------------


async def echo(msg: Inbound, _ctx: Context) -> list[Reply]:
    """--echo: a handler with no database or retrieval, to measure the adapter alone."""
    return [Reply(f"受け付けました：{msg.text}")]


async def bot_side(conn: Connection, concurrency: int, adapter_only: bool,
                   database_url: str | None) -> list[tuple]:  # type: ignore[type-arg]
    loop = asyncio.get_running_loop()
    base_url = await loop.run_in_executor(None, conn.recv)
    with tempfile.TemporaryDirectory() as tmp:
        url = database_url or f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}"
        upgrade(url)
        settings = Settings(_env_file=None, database_url=url,  # type: ignore[call-arg]
                            telegram_token=SecretStr(TOKEN), telegram_api_base=base_url)
        app = build_app(settings)
        async with app.context.session() as session:
            await seed_demo(session, settings.default_prefecture, date.today(),
                            settings.gmis_contact)
        channel = TelegramChannel(settings, app.context, max_concurrent_updates=concurrency,
                                  dispatch=echo if adapter_only else None)
        await channel.start()
        try:
            conn.send("go")
            return await loop.run_in_executor(None, conn.recv)  # type: ignore[no-any-return]
        finally:
            await channel.stop()
            await app.close()
            conn.send("bye")


def pct(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100)[q - 1] if len(values) > 1 else values[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--updates", type=int, default=3000)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--concurrency", type=int, default=16, help="updates handled at once")
    parser.add_argument("--database-url", help="an empty database (default: a new SQLite file)")
    parser.add_argument("--echo", action="store_true",
                        help="replace the domain with an echo handler (adapter cost alone)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    load_before = os.getloadavg()
    ours, theirs = mp.get_context("spawn").Pipe()
    child = mp.get_context("spawn").Process(target=fake_side, args=(theirs, args.updates,
                                                                    args.rate))
    child.start()
    try:
        results = asyncio.run(bot_side(ours, args.concurrency, args.echo,
                                        args.database_url))
    finally:
        child.join(timeout=30)
    print("| phase | updates | updates/s | p50 ms | p95 ms | p99 ms | max ms |")
    print("|---|---|---|---|---|---|---|")
    for name, count, elapsed, lat in results:
        print(f"| {name} | {count} | {count / elapsed:.0f} | {statistics.median(lat):.1f} | "
              f"{pct(lat, 95):.1f} | {pct(lat, 99):.1f} | {max(lat):.1f} |")
    # The box is shared: the load average says how much else was running (2 cores).
    print(f"load average (1 min) before / after: {load_before[0]:.2f} / {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
