"""Migrations 0002 (staff desk), 0005 and 0006 go down and up on SQLite and PostgreSQL."""

from __future__ import annotations

import json

from alembic import command
from sqlalchemy import create_engine, inspect, text
from sqlmodel import Session

from db.engine import async_url, sync_url
from db.migrate import alembic_config, upgrade
from db.models import ChatAccount, Escalation, Prefecture


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
    assert "entry_ids" in head["conversationlog"]  # 0006
    command.downgrade(alembic_config(database_url), "0001")
    down = columns(database_url)
    assert "kbdraft" not in down and "card_ts" not in down["escalation"]
    assert "entry_ids" not in down["conversationlog"]
    upgrade(database_url)
    assert columns(database_url) == head



def test_inquiries_keep_their_institution_through_migration_0005(database_url: str) -> None:
    """The institution an inquiry was asked for moved from the context JSON to a column;
    down and up again, each inquiry keeps it (a relinked chat must still not see it)."""
    engine = create_engine(sync_url(async_url(database_url)))
    try:
        with Session(engine) as session:
            session.add(Prefecture(code="26", name="京都府"))
            account = ChatAccount(channel="demo", external_user_id="u1", prefecture_code="26")
            session.add(account)
            session.commit()
            assert account.id is not None
            for institution in (7, None):
                session.add(Escalation(prefecture_code="26", chat_account_id=account.id,
                                       question="q", context={"history": []},
                                       institution_id=institution))
            session.commit()
        command.downgrade(alembic_config(database_url), "0004")
        with engine.begin() as conn:
            contexts = [json.loads(r[0]) if isinstance(r[0], str) else r[0] for r in conn.execute(
                text("SELECT context FROM escalation ORDER BY id")).all()]
        assert [c.get("institution_id") for c in contexts] == [7, None]  # where 0004 reads it
        upgrade(database_url)
        with engine.begin() as conn:
            got = conn.execute(text("SELECT institution_id FROM escalation ORDER BY id")).all()
        assert [r[0] for r in got] == [7, None]
    finally:
        engine.dispose()
