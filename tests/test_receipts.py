"""Receipt numbers count per prefecture: Kyoto's first inquiry is Q26-000001 however many
other prefectures the deployment serves, so a clinic cannot read the deployment's volume
from its number. A receipt is looked up by (prefecture, number), never by the row id."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from itertools import count
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot import cli
from db import repo
from db.engine import make_engine, make_sessionmaker
from db.models import Escalation, KbDraft
from db.seed import ensure_prefecture
from handlers import kb_drafts
from handlers.context import Context
from handlers.dispatch import dispatch
from handlers.messages import Inbound, Reply
from tests.conftest import NOW
from tests.fakes.slack_api import FakeSlackAPI
from tests.test_desk_cli import register
from tests.test_slack_desk import C13, C26, STAFF_A, STAFF_TOKYO, map_channels, running_desk

KYOTO_Q = "分院を開設予定ですが、今年の報告は本院とまとめられますか"
KYOTO_Q2 = "紙の調査票はどこで手に入りますか"
TOKYO_Q = "休診日が多い診療所でも報告の対象になりますか"
RECEIPT = re.compile(r"受付番号は (Q\d{2}-\d{6})")
Sessions = async_sessionmaker[AsyncSession]


def said(text: str, user: str, payload: str | None = None) -> Inbound:
    return Inbound("telegram", user, text=text, payload=payload)


async def inquire(ctx: Context, user: str, question: str, prefecture: str | None = None,
                  ) -> Reply:
    """A clinic asks, taps 「担当者に聞く」 and, the first time, names its prefecture."""
    await dispatch(said(question, user), ctx)
    [reply] = await dispatch(said("担当者に聞く", user, "esc:ask"), ctx)
    if prefecture is not None:
        [reply] = await dispatch(said(prefecture, user), ctx)
    return reply


def receipt_in(reply: Reply) -> str:
    m = RECEIPT.search(reply.text)
    assert m is not None, reply.text
    return m.group(1)


@pytest.fixture
async def two(ctx: Context) -> Context:
    """The bot serves 京都府 (26, its default) and 東京都 (13). Kyoto asks twice, then Tokyo
    once: Tokyo's inquiry is row 3 of the deployment but its prefecture's first."""
    async with ctx.session() as session:
        await ensure_prefecture(session, "13", NOW.date(), "")
    assert receipt_in(await inquire(ctx, "kyoto-1", KYOTO_Q, "京都府")) == "Q26-000001"
    assert receipt_in(await inquire(ctx, "kyoto-1", KYOTO_Q2)) == "Q26-000002"
    assert receipt_in(await inquire(ctx, "tokyo-1", TOKYO_Q, "東京都")) == "Q13-000001"
    return ctx


async def inquiries(ctx: Context) -> list[Escalation]:
    async with ctx.session() as session:
        return list((await session.exec(select(Escalation).order_by(col(Escalation.id)))).all())


async def test_each_prefecture_counts_its_own_receipts(two: Context) -> None:
    """The receipts the clinics were told (in the fixture) are what the rows hold."""
    rows = await inquiries(two)
    assert [(e.id, e.receipt) for e in rows] == [
        (1, "Q26-000001"), (2, "Q26-000002"), (3, "Q13-000001")]
    assert receipt_in(await inquire(two, "tokyo-2", KYOTO_Q2, "東京都")) == "Q13-000002"


async def test_a_clinic_finds_its_inquiry_by_its_prefectures_number(two: Context) -> None:
    [mine] = await dispatch(said("Q13-000001の回答はまだですか", "tokyo-1"), two)
    assert "Q13-000001" in mine.text and TOKYO_Q[:10] in mine.text
    assert "受け付けました" in mine.text
    [by_row_id] = await dispatch(said("Q13-000003の回答はまだですか", "tokyo-1"), two)
    assert "受付番号 Q13-000003 は見つかりませんでした" in by_row_id.text
    # Kyoto's chat holds Q26-000001: the same number in another prefecture is not its own.
    [other] = await dispatch(said("Q13-000001の回答はまだですか", "kyoto-1"), two)
    assert "受付番号 Q13-000001 は見つかりませんでした" in other.text
    assert TOKYO_Q[:10] not in other.text
    [kyoto] = await dispatch(said("Q26-000001の回答はまだですか", "kyoto-1"), two)
    assert "Q26-000001" in kyoto.text and KYOTO_Q[:10] in kyoto.text
    assert TOKYO_Q[:10] not in kyoto.text


async def test_a_supplement_by_receipt_reaches_that_prefectures_inquiry(two: Context) -> None:
    [added] = await dispatch(said("Q13-000001の補足です。当院は有床診療所です。", "tokyo-1"),
                             two)
    assert "受付番号 Q13-000001 のお問い合わせに、いただいた補足を追加し" in added.text
    kyoto_1, _, tokyo_1 = await inquiries(two)
    assert tokyo_1.context["supplements"][0]["text"].endswith("有床診療所です。")
    assert "supplements" not in kyoto_1.context


@pytest.fixture
async def api() -> AsyncIterator[FakeSlackAPI]:
    async with FakeSlackAPI() as fake:
        yield fake


async def test_a_staff_mention_shows_only_its_prefectures_inquiry(two: Context,
                                                                  api: FakeSlackAPI) -> None:
    """Both desks have a 000001: each channel's mention shows its own, never the other's."""
    await map_channels(two)
    async with running_desk(two, api) as d:
        for n, (channel, staff, text) in enumerate([
                (C26, STAFF_A, "Q26-000001"), (C13, STAFF_TOKYO, "Q13-000001"),
                (C13, STAFF_TOKYO, "Q26-000001"), (C13, STAFF_TOKYO, "Q13-000003")]):
            await d.slack.event({"type": "app_mention", "user": staff, "channel": channel,
                                 "text": f"<@UBOT> {text} の件", "ts": f"1700000300.00000{n}"},
                                f"EvReceipt{n}")
    kyoto, tokyo, foreign, by_row_id = (c.params for c in api.of("chat.postMessage")
                                        if str(c.params.get("thread_ts")).startswith("17"))
    assert kyoto["channel"] == C26 and "Q26-000001" in kyoto["text"]
    assert KYOTO_Q[:10] in kyoto["text"] and TOKYO_Q[:10] not in kyoto["text"]
    assert tokyo["channel"] == C13 and "Q13-000001" in tokyo["text"]
    assert TOKYO_Q[:10] in tokyo["text"] and KYOTO_Q[:10] not in tokyo["text"]
    for refused in (foreign, by_row_id):  # Kyoto's receipt; Tokyo's row id as a number
        assert refused["channel"] == C13
        assert KYOTO_Q[:10] not in refused["text"] and TOKYO_Q[:10] not in refused["text"]


async def _account(sessions: Sessions, user: str) -> int:
    async with sessions() as session:
        account = await repo.ensure_account(session, "telegram", user)
        assert account.id is not None
        return account.id


async def _create(sessions: Sessions, pref: str, account_id: int) -> Escalation:
    async with sessions() as session:
        return await repo.create_escalation(session, pref, account_id, "質問", {}, NOW)


async def test_concurrent_inquiries_get_distinct_consecutive_numbers(ctx: Context) -> None:
    """Many clinics of two prefectures escalate at the same moment, each in its own session:
    every inquiry gets a number, none twice, each prefecture counting from 1."""
    async with ctx.session() as session:
        await ensure_prefecture(session, "13", NOW.date(), "")
    account_id = await _account(ctx.sessions, "clinic")
    made = await asyncio.gather(*(_create(ctx.sessions, pref, account_id)
                                  for pref in ["26", "13"] * 6))
    for pref in ("26", "13"):
        assert sorted(e.number or 0 for e in made if e.prefecture_code == pref) == [
            1, 2, 3, 4, 5, 6]
    assert len({e.receipt for e in made}) == 12


async def test_a_number_taken_meanwhile_is_retried_with_the_next(
        ctx: Context, monkeypatch: pytest.MonkeyPatch) -> None:
    """The race made certain: the first try computes a number another inquiry has just
    taken (as a concurrent PostgreSQL transaction would); the unique constraint refuses it
    and the second try takes the next."""
    account_id = await _account(ctx.sessions, "clinic")
    first = await _create(ctx.sessions, "26", account_id)
    real = repo._next_number
    tries = count()

    def stale_then_real(pref: str) -> Any:
        return first.number if next(tries) == 0 else real(pref)

    monkeypatch.setattr(repo, "_next_number", stale_then_real)
    second = await _create(ctx.sessions, "26", account_id)
    assert (first.receipt, second.receipt, next(tries)) == ("Q26-000001", "Q26-000002", 2)


async def _kyoto_draft(sessions: Sessions) -> KbDraft:
    """An answered Kyoto inquiry proposed for the KB, after another prefecture's inquiry
    took row 1: the draft's escalation is row 2 but Kyoto's 000001."""
    account_id = await _account(sessions, "clinic")
    async with sessions() as session:
        await ensure_prefecture(session, "13", NOW.date(), "")
    await _create(sessions, "13", account_id)
    esc = await _create(sessions, "26", account_id)
    async with sessions() as session:
        esc.status, esc.answer = "answered", "分院も別の医療機関として報告してください。"
        session.add(esc)
        await session.commit()
    assert esc.id is not None
    draft, _ = await kb_drafts.create_draft(sessions, "26", esc.id, "U0AAA", NOW)
    return draft


async def test_a_kb_draft_cites_its_inquirys_receipt(ctx: Context) -> None:
    draft = await _kyoto_draft(ctx.sessions)
    async with ctx.session() as session:
        receipt = await kb_drafts.draft_receipt(session, draft)
    assert (draft.escalation_id, receipt) == (2, "Q26-000001")
    entry = kb_drafts.entry_data(draft, receipt, "target", [])
    assert entry["source"] == [{"file": kb_drafts.STAFF_SOURCE,
                                "section": f"Q26-000001 都道府県担当者の回答（{NOW:%Y-%m-%d}）"}]


async def _draft_in(database_url: str) -> int:
    engine = make_engine(database_url)
    try:
        draft = await _kyoto_draft(make_sessionmaker(engine))
        assert draft.id is not None
        return draft.id
    finally:
        await engine.dispose()


def test_kb_drafts_show_prints_the_receipt(
        database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        tmp_path: Path) -> None:
    """The operator reviewing a draft sees the receipt the clinic and staff know."""
    monkeypatch.setenv("DATABASE_URL", database_url)
    register(tmp_path, "26")
    draft_id = asyncio.run(_draft_in(database_url))
    capsys.readouterr()
    assert cli.main(["kb", "drafts", "show", str(draft_id)]) == 0
    assert "問い合わせ Q26-000001 /" in capsys.readouterr().out
