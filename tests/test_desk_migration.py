"""Migration 0002 (staff desk) upgrades and downgrades on SQLite and PostgreSQL."""

from __future__ import annotations

from alembic import command
from sqlalchemy import create_engine, inspect

from db.engine import async_url, sync_url
from db.migrate import alembic_config, upgrade


def columns(url: str) -> dict[str, set[str]]:
    engine = create_engine(sync_url(async_url(url)))
    try:
        found = inspect(engine)
        return {t: {c["name"] for c in found.get_columns(t)} for t in found.get_table_names()}
    finally:
        engine.dispose()


def test_desk_schema_goes_down_and_up_again(database_url: str) -> None:
    head = columns(database_url)
    assert {"card_ts", "claimed_at", "redmine_url", "resolution"} <= head["escalation"]
    assert {"kbdraft", "processedevent"} <= head.keys()
    command.downgrade(alembic_config(database_url), "0001")
    down = columns(database_url)
    assert "kbdraft" not in down and "card_ts" not in down["escalation"]
    upgrade(database_url)
    assert columns(database_url) == head
