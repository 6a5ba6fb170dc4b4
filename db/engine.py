"""Async engine and sessions: one short session per unit of work."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlmodel.ext.asyncio.session import AsyncSession


def async_url(url: str) -> str:
    """Pick the async driver for a plain URL (sqlite → aiosqlite, postgresql → psycopg 3)."""
    for plain, driver in (("sqlite://", "sqlite+aiosqlite://"),
                          ("postgresql://", "postgresql+psycopg://"),
                          ("postgres://", "postgresql+psycopg://")):
        if url.startswith(plain):
            return driver + url[len(plain):]
    return url


def sync_url(url: str) -> str:
    """The blocking-driver URL of the same database, for Alembic."""
    return url.replace("sqlite+aiosqlite://", "sqlite://")


def insert_for(session: AsyncSession) -> Any:
    """The session's dialect INSERT: both have ON CONFLICT DO NOTHING, the generic one has not."""
    dialect = session.bind.dialect.name if session.bind else "sqlite"
    return pg_insert if dialect == "postgresql" else sqlite_insert


def job_store_url(url: str) -> str:
    """Where APScheduler keeps its jobs: the same PostgreSQL database, or a sibling SQLite file.

    The job store is synchronous and runs on the event-loop thread. Sharing one SQLite file
    with the async engine would let it wait on a write lock held by a transaction that
    itself waits for the loop: both sides stall until the busy timeout. A separate file
    has its own lock; on PostgreSQL row locks make sharing safe.
    """
    url = sync_url(async_url(url))
    if url.startswith("sqlite:///") and not url.endswith(":memory:"):
        path = Path(url.removeprefix("sqlite:///"))
        return "sqlite:///" + str(path.with_name(f"{path.stem}.scheduler{path.suffix}"))
    return url


def make_engine(url: str) -> AsyncEngine:
    """Create the engine; SQLite gets WAL and foreign keys so it behaves like a server."""
    url = async_url(url)
    if url.startswith("sqlite"):
        engine = create_async_engine(url, connect_args={"timeout": 30})
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    return create_async_engine(url, pool_pre_ping=True)


def _sqlite_pragmas(dbapi_conn: object, _record: object) -> None:
    cursor = dbapi_conn.cursor()  # type: ignore[attr-defined]
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)
