"""Operator commands of the staff desk: map a prefecture's Slack channel, queue a digest."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from bot import cli
from db.engine import async_url, make_engine, make_sessionmaker, sync_url
from db.models import ChatAccount, Escalation, KbDraft
from knowledge.loader import load_knowledge_base


def query(url: str, sql: str) -> list[tuple[object, ...]]:
    engine = create_engine(sync_url(async_url(url)))
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(text(sql)).all()]
    finally:
        engine.dispose()


def register(tmp_path: Path, *prefectures: str) -> None:
    """A roster for each prefecture: the desk commands refuse one that has none."""
    for code in prefectures:
        roster = tmp_path / f"roster-{code}.csv"
        roster.write_text("医療機関コード,名称,種別,特定機能病院,歯科,休院,市区町村,二次医療圏\n"
                          f"{code}10001,テスト診療所,診療所,無,無,無,中央区,中央\n",
                          encoding="utf-8")
        assert cli.main(["import-roster", str(roster), "--prefecture", code]) == 0


def test_slack_channel_maps_once_and_refuses_a_taken_channel(
        database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        tmp_path: Path) -> None:
    monkeypatch.setenv("DATABASE_URL", database_url)
    register(tmp_path, "13", "26")
    assert cli.main(["slack-channel", "--prefecture", "13", "--channel", "C0TOKYO"]) == 0
    assert query(database_url, "SELECT code, slack_channel FROM prefecture ORDER BY code") == [
        ("13", "C0TOKYO"), ("26", None)]
    assert cli.main(["slack-channel", "--prefecture", "26", "--channel", "C0TOKYO"]) == 1
    assert "すでに都道府県コード 13" in capsys.readouterr().err
    assert cli.main(["slack-channel", "--prefecture", "26", "--channel", "#総務"]) == 2
    assert cli.main(["slack-channel", "--prefecture", "13", "--channel", "C0TOKYO2"]) == 0
    assert query(database_url, "SELECT slack_channel FROM prefecture WHERE code = '13'") == [
        ("C0TOKYO2",)]


def test_desk_digest_queues_the_digest_for_slack(
        database_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DATABASE_URL", database_url)
    register(tmp_path, "26")
    assert cli.main(["slack-channel", "--prefecture", "26", "--channel", "C0KYOTO"]) == 0
    assert cli.main(["desk", "digest", "--prefecture", "26"]) == 0
    [(channel, recipient, kind, body)] = query(
        database_url, "SELECT channel, recipient, kind, body FROM outbox")
    assert (channel, recipient, kind) == ("slack", "C0KYOTO", "digest")
    assert "日次まとめ" in str(body) and "報告状況" in str(body)


def test_kb_drafts_list_on_an_empty_desk(
        database_url: str, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("DATABASE_URL", database_url)
    assert cli.main(["kb", "drafts", "list"]) == 0
    assert "下書きはありません" in capsys.readouterr().out
    assert cli.main(["kb", "drafts", "show", "99"]) == 1
    assert "#99 は見つかりません" in capsys.readouterr().err


def test_desk_digest_run_twice_the_same_day_is_queued_once(
        database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        tmp_path: Path) -> None:
    """An operator test: a second `desk digest` the same day posted the digest again. One a
    day per prefecture (the 9:00 job shares it); the second run says it was queued already."""
    monkeypatch.setenv("DATABASE_URL", database_url)
    register(tmp_path, "13", "26")
    assert cli.main(["slack-channel", "--prefecture", "26", "--channel", "C0KYOTO"]) == 0
    assert cli.main(["desk", "digest", "--prefecture", "26"]) == 0
    assert "日次まとめを送信待ちに入れました" in capsys.readouterr().out
    assert cli.main(["desk", "digest", "--prefecture", "26"]) == 0
    again = capsys.readouterr().out
    assert "都道府県 26 の本日の日次まとめは、" in again and "送信待ちに入れ済みです" in again
    assert "1日1回のため、もう一度は送りません" in again and "入れました" not in again
    assert cli.main(["desk", "digest", "--prefecture", "13"]) == 0  # another prefecture's own
    assert query(database_url, "SELECT prefecture_code, count(*) FROM outbox "
                 "WHERE kind = 'digest' GROUP BY prefecture_code ORDER BY prefecture_code") == [
        ("13", 1), ("26", 1)]


async def _draft(url: str, answer: str) -> int:
    """A staff answer proposed for the KB, as 「KBに追加」 stores it."""
    engine = make_engine(url)
    try:
        async with make_sessionmaker(engine)() as session:
            account = ChatAccount(channel="telegram", external_user_id="u1", prefecture_code="26")
            session.add(account)
            await session.flush()
            esc = Escalation(prefecture_code="26", number=1, chat_account_id=account.id or 0,
                             question="分院は別に報告が必要ですか", status="answered",
                             answer=answer)
            session.add(esc)
            await session.flush()
            draft = KbDraft(prefecture_code="26", escalation_id=esc.id or 0,
                            question=esc.question, answer=answer,
                            phrasings=["分院も報告がいる？", "本院と分院はまとめられる？"])
            session.add(draft)
            await session.commit()
            return draft.id or 0
    finally:
        await engine.dispose()


def test_kb_drafts_approve_refuses_one_prefectures_contact_details(
        database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        tmp_path: Path) -> None:
    """An operator test: approving put 京都府's own number and address into the knowledge
    base every prefecture's clinics read. Refused, naming each item and the way on."""
    kb = tmp_path / "entries"
    shutil.copytree(Path(cli.__file__).parent.parent / "knowledge" / "entries", kb)
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("KNOWLEDGE_DIR", str(kb))
    register(tmp_path, "26")
    local = ("分院も別の医療機関として報告してください。ご不明な点は当府の医療政策課"
             "（０７５－４１４－４０００、iryo@pref.kyoto.lg.jp）へ。")
    draft_id = asyncio.run(_draft(database_url, local))
    before = (kb / "scope.yaml").read_text(encoding="utf-8")
    assert cli.main(["kb", "drafts", "approve", str(draft_id), "--category", "scope"]) == 1
    err = capsys.readouterr().err
    assert f"下書き #{draft_id} の回答には、一つの都道府県にだけ当てはまる内容がある" in err
    for item in ("電話・FAX番号「075-414-4000」", "メールアドレス「iryo@pref.kyoto.lg.jp」",
                 "「当府」"):
        assert f"  ・{item}" in err, err
    assert f"kb drafts edit {draft_id} --file 回答.txt" in err and "--force" in err
    assert (kb / "scope.yaml").read_text(encoding="utf-8") == before
    fixed = tmp_path / "answer.txt"
    fixed.write_text("分院も別の医療機関として報告してください。ご不明な点は都道府県の担当窓口へ。\n",
                     encoding="utf-8")
    assert cli.main(["kb", "drafts", "edit", str(draft_id), "--file", str(fixed)]) == 0
    assert "まだ一つの都道府県" not in capsys.readouterr().out
    assert cli.main(["kb", "drafts", "approve", str(draft_id), "--category", "scope"]) == 0
    entry = {e.id: e for e in load_knowledge_base(kb)}[f"scope-desk-{draft_id}"]
    assert entry.answer == fixed.read_text(encoding="utf-8").strip()


def test_kb_drafts_approve_force_takes_a_national_number(
        database_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    kb = tmp_path / "entries"
    shutil.copytree(Path(cli.__file__).parent.parent / "knowledge" / "entries", kb)
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("KNOWLEDGE_DIR", str(kb))
    register(tmp_path, "26")
    national = "研修の修了証はMAMIS（0120-110-030）にお問い合わせください。"
    draft_id = asyncio.run(_draft(database_url, national))
    approve = ["kb", "drafts", "approve", str(draft_id), "--category", "scope"]
    assert cli.main(approve) == 1
    assert cli.main([*approve, "--force"]) == 0
    assert {e.id: e for e in load_knowledge_base(kb)}[f"scope-desk-{draft_id}"].answer == national
