"""Roster import of 120,000 institutions and status lookups at that size.

Usage:
  .venv/bin/python benchmarks/bench_status.py                      # SQLite (temp file)
  .venv/bin/python benchmarks/bench_status.py --database-url postgresql://postgres@127.0.0.1:55432/bench
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.settings import GMIS_CONTACT_DEFAULT
from db import repo
from db.engine import make_engine, make_sessionmaker
from db.imports import import_roster
from db.migrate import upgrade
from db.models import ChatAccount, Institution
from db.seed import ensure_prefecture
from handlers.context import Context, HandlerConfig
from handlers.dispatch import dispatch
from handlers.messages import Inbound
from handlers.status import status_text
from knowledge.loader import load_knowledge_base
from knowledge.normalize import Analyzer
from knowledge.retriever import Retriever

HEADER = "医療機関コード,名称,種別,特定機能病院,歯科,休院,市区町村,二次医療圏,メール,電話\n"


def write_roster(path: Path, n: int) -> None:
    rnd = random.Random(7)
    with path.open("w", encoding="utf-8") as f:
        f.write(HEADER)
        for i in range(n):
            kind = "病院" if i % 14 == 0 else "診療所"
            f.write(f"{1300000 + i},ベンチ医院{i},{kind},無,"
                    f"{'有' if rnd.random() < 0.01 else '無'},"
                    f"無,区{i % 60},圏{i % 13},c{i}@example.jp,03-0000-{i % 10000:04d}\n")


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))]


async def main(url: str, n: int, lookups: int) -> None:
    upgrade(url)
    engine = make_engine(url)
    sessions = make_sessionmaker(engine)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "roster.csv"
        write_roster(path, n)
        async with sessions() as session:
            await ensure_prefecture(session, "13", time_now().date(), GMIS_CONTACT_DEFAULT)
        t0 = time.perf_counter()
        async with sessions() as session:
            result = await import_roster(session, path, "13")
        import_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        async with sessions() as session:
            again = await import_roster(session, path, "13")
        reimport_s = time.perf_counter() - t0
    assert result.ok and result.created == n and again.unchanged == n
    async with sessions() as session:
        ids = list((await session.exec(select(Institution.id))).all())
    rnd = random.Random(1)
    lookup_ms = []
    for _ in range(lookups):
        iid = rnd.choice(ids)
        t0 = time.perf_counter()
        async with sessions() as session:  # what handlers.status.handle_status does
            found = await repo.institution_and_prefecture(session, "13", iid or 0)
        assert found is not None
        status_text(*found, time_now())
        lookup_ms.append((time.perf_counter() - t0) * 1000)
    turn_ms = await full_turns(sessions, ids, rnd, max(200, lookups // 5))
    await engine.dispose()
    print(f"database: {url.split('://')[0]}  institutions: {n}")
    print(f"roster import: {import_s:.1f} s ({n / import_s:,.0f} rows/s); re-import (no change): "
          f"{reimport_s:.1f} s")
    print(f"status lookup ({lookups}): p50 {statistics.median(lookup_ms):.2f} ms, "
          f"p99 {pct(lookup_ms, 0.99):.2f} ms")
    print(f"full chat turn '報告状況' incl. logging ({len(turn_ms)}): "
          f"p50 {statistics.median(turn_ms):.2f} ms, p99 {pct(turn_ms, 0.99):.2f} ms")


async def full_turns(sessions: async_sessionmaker[AsyncSession], ids: list[int | None],
                     rnd: random.Random, count: int) -> list[float]:
    ctx = Context(Retriever(load_knowledge_base(), Analyzer()), sessions,
                  HandlerConfig("13", GMIS_CONTACT_DEFAULT))
    users = []
    async with sessions() as session:
        for _ in range(50):
            user = uuid.uuid4().hex
            session.add(ChatAccount(channel="demo", external_user_id=user, prefecture_code="13",
                                    institution_id=rnd.choice(ids)))
            users.append(user)
        await session.commit()
    out = []
    for i in range(count):
        t0 = time.perf_counter()
        [reply] = await dispatch(Inbound("demo", users[i % 50], text="報告状況"), ctx)
        out.append((time.perf_counter() - t0) * 1000)
        assert "医療機関コード" in reply.text
    return out


def time_now() -> datetime:
    return datetime.now(UTC)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--institutions", type=int, default=120_000)
    parser.add_argument("--lookups", type=int, default=5000)
    args = parser.parse_args()
    url = args.database_url or f"sqlite+aiosqlite:///{tempfile.mkdtemp()}/bench.db"
    asyncio.run(main(url, args.institutions, args.lookups))
