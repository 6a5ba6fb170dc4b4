"""Migrations 0002 (staff desk) and 0005–0008 go down and up on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

from alembic import command
from sqlalchemy import create_engine, inspect, text
from sqlmodel import Session

from db import repo
from db.engine import async_url, make_engine, make_sessionmaker, sync_url
from db.migrate import alembic_config, upgrade
from db.models import ChatAccount, Escalation, Prefecture

NOW = datetime(2026, 11, 24, 1, 0, tzinfo=UTC)


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
    assert "number" in head["escalation"]  # 0007
    assert {"payload", "handled_at"} <= head["processedevent"]  # 0008
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
            for number, institution in ((1, 7), (2, None)):
                session.add(Escalation(prefecture_code="26", number=number,
                                       chat_account_id=account.id, question="q",
                                       context={"history": []}, institution_id=institution))
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


def _old_inquiries(database_url: str) -> None:
    """Inquiries as 0006 stored them, receipts from the global row id: Kyoto's are rows 1
    and 3 (Q26-000001, Q26-000003), Tokyo's row 2 (Q13-000002)."""
    command.downgrade(alembic_config(database_url), "0006")
    engine = create_engine(sync_url(async_url(database_url)))
    try:
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO prefecture (code, name, send_start_hour, "
                              "send_end_hour, inquiry_contact, gmis_contact) VALUES "
                              "('26', '京都府', 9, 17, '', ''), ('13', '東京都', 9, 17, '', '')"))
            conn.execute(text("INSERT INTO chataccount (channel, external_user_id, reachable, "
                              "created_at) VALUES ('telegram', 'u1', true, :now)"),
                         {"now": NOW})
            for pref in ("26", "13", "26"):
                conn.execute(text(
                    "INSERT INTO escalation (prefecture_code, chat_account_id, question, "
                    "context, status, tier, created_at, updated_at) VALUES "
                    "(:pref, 1, 'q', '{}', 'open', 1, :now, :now)"), {"pref": pref, "now": NOW})
    finally:
        engine.dispose()


async def test_receipts_already_given_survive_migration_0007(database_url: str) -> None:
    """0007 counts receipt numbers per prefecture. The receipts clinics already hold keep
    naming their inquiry, and a new inquiry continues after its prefecture's highest
    number (never reusing one); a prefecture with none starts at 1."""
    await asyncio.to_thread(_old_inquiries, database_url)
    await asyncio.to_thread(upgrade, database_url)
    engine = make_engine(database_url)
    try:
        async with make_sessionmaker(engine)() as session:
            kept = [await repo.escalation_by_receipt(session, pref, n)
                    for pref, n in (("26", 1), ("13", 2), ("26", 3))]
            assert [e.receipt if e else None for e in kept] == [
                "Q26-000001", "Q13-000002", "Q26-000003"]
            session.add(Prefecture(code="01", name="北海道"))
            await session.commit()
            made = [await repo.create_escalation(session, pref, 1, "新しい質問", {}, NOW)
                    for pref in ("26", "13", "01")]
        assert [e.receipt for e in made] == ["Q26-000004", "Q13-000003", "Q01-000001"]
    finally:
        await engine.dispose()
