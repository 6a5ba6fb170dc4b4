"""Shared fixtures: real databases (SQLite file, PostgreSQL server), the real knowledge base,
and a guard that fails any connection off loopback."""

from __future__ import annotations

import ipaddress
import os
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

from bot.settings import GMIS_CONTACT_DEFAULT
from db.engine import make_engine, make_sessionmaker
from db.migrate import upgrade
from db.models import Prefecture
from db.seed import seed_demo
from handlers.context import Context, HandlerConfig
from knowledge.labelled import training_examples
from knowledge.loader import load_knowledge_base
from knowledge.normalize import Analyzer
from knowledge.retriever import Retriever

NOW = datetime(2026, 11, 24, 1, 0, tzinfo=UTC)  # 10:00 JST on a weekday
DEMO_PREF = "26"


@pytest.fixture(autouse=True)
def _loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never leave the machine: any connection off 127.0.0.0/8 or ::1 fails."""
    real_connect = socket.socket.connect

    def guarded(self: socket.socket, address: object) -> object:
        if isinstance(address, tuple) and self.family in (socket.AF_INET, socket.AF_INET6):
            host = str(address[0])
            try:
                ok = ipaddress.ip_address(host).is_loopback
            except ValueError:
                ok = host == "localhost"
            if not ok:
                raise AssertionError(f"test tried to reach {host}: only loopback is allowed")
        return real_connect(self, address)  # type: ignore[arg-type]

    monkeypatch.setattr(socket.socket, "connect", guarded)


@pytest.fixture(scope="session")
def retriever() -> Retriever:
    return Retriever(load_knowledge_base(), Analyzer(), examples=training_examples())


def _postgres_base() -> str:
    url = os.environ.get("TEST_POSTGRES_URL")
    if not url:
        if os.environ.get("REQUIRE_POSTGRES") == "1":
            pytest.fail("REQUIRE_POSTGRES=1 but TEST_POSTGRES_URL is not set")
        pytest.skip("TEST_POSTGRES_URL not set: PostgreSQL tests skipped")
    return url


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, migrated database of each kind for every test."""
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'test.db'}"
        upgrade(url)
        yield url
        return
    base = _postgres_base()
    name = f"t_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = base.rsplit("/", 1)[0] + "/" + name
    upgrade(url)
    yield url
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def config() -> HandlerConfig:
    return HandlerConfig(default_prefecture=DEMO_PREF, gmis_contact=GMIS_CONTACT_DEFAULT)


@pytest.fixture
async def ctx(database_url: str, retriever: Retriever, config: HandlerConfig,
              ) -> AsyncIterator[Context]:
    engine = make_engine(database_url)
    sessions = make_sessionmaker(engine)
    async with sessions() as session:
        await seed_demo(session, DEMO_PREF, NOW.date(), GMIS_CONTACT_DEFAULT)
    yield Context(retriever, sessions, config, clock=lambda: NOW)
    await engine.dispose()


async def update_prefecture(ctx: Context, code: str, **fields: object) -> None:
    """Set fields of a seeded prefecture, as an operator's settings would."""
    async with ctx.session() as session:
        pref = await session.get(Prefecture, code)
        assert pref is not None
        for name, value in fields.items():
            setattr(pref, name, value)
        session.add(pref)
        await session.commit()
